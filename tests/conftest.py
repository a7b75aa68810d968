"""Shared fixtures: tiny trained-looking weights, test-double engines, log policing.

Tests run on the CPU by default. Markers: ``gpu`` (needs CUDA), ``trt`` (needs
TensorRT), ``slow``. Any test that logs an ERROR fails unless it is marked
``expect_errors``: an error in the log is a bug until a test says otherwise.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "expect_errors: the test provokes ERROR log records")


@pytest.fixture(autouse=True)
def _fail_on_error_logs(request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger="smokeclear")
    yield
    if request.node.get_closest_marker("expect_errors"):
        return
    errors = [r for r in caplog.get_records("call") if r.levelno >= logging.ERROR]
    if errors:
        pytest.fail("unexpected ERROR log: " + "; ".join(r.getMessage() for r in errors))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """One ONNX cache per test session, never the user's."""
    monkeypatch.setenv("SMOKECLEAR_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A width-4 desmoke network with non-trivial random weights and BN statistics."""
    import torch

    from smokeclear.nets.desmoke import DesmokeConfig, DesmokeNet
    from smokeclear.nets.loading import save_weights
    from smokeclear.registry import get_restorer

    torch.manual_seed(0)
    net = DesmokeNet(DesmokeConfig(width=4, max_channels=16))
    net.train()
    with torch.no_grad():  # give BatchNorm real running statistics
        for _ in range(3):
            net(torch.rand(2, 3, 64, 64))
    path = tmp_path_factory.mktemp("weights") / "tiny-desmoke.safetensors"
    save_weights(net.eval(), path, get_restorer("desmoke"), {"purpose": "tests"})
    return path


@pytest.fixture(scope="session")
def tiny_dereflect_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A width-2 dereflect network (one SE block per group) with random weights."""
    import torch

    from smokeclear.nets.dereflect import DereflectConfig, DereflectNet
    from smokeclear.nets.loading import save_weights
    from smokeclear.registry import get_restorer

    torch.manual_seed(0)
    net = DereflectNet(DereflectConfig(width=2, se_blocks=1)).eval()
    path = tmp_path_factory.mktemp("weights") / "tiny-dereflect.safetensors"
    save_weights(net, path, get_restorer("dereflect"), {"purpose": "tests"})
    return path


@pytest.fixture(scope="session")
def tiny_lowlight_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A width-2 lowlight network with random weights."""
    import torch

    from smokeclear.nets.loading import save_weights
    from smokeclear.nets.lowlight import LowlightConfig, LowlightNet
    from smokeclear.registry import get_restorer

    torch.manual_seed(0)
    net = LowlightNet(LowlightConfig(width=2, edge_width=2, scale_channels=1)).eval()
    path = tmp_path_factory.mktemp("weights") / "tiny-lowlight.safetensors"
    save_weights(net, path, get_restorer("lowlight"), {"purpose": "tests"})
    return path


@pytest.fixture(scope="session")
def tiny_smooth_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A width-8 smooth network with real batch-norm statistics and a visible residual."""
    import torch

    from smokeclear.nets.loading import save_weights
    from smokeclear.nets.smooth import SmoothConfig, SmoothNet
    from smokeclear.registry import get_restorer

    torch.manual_seed(0)
    net = SmoothNet(SmoothConfig(width=8, dilations=(2, 1)))
    # The output conv starts at zero (identity); residuals of several 8-bit levels
    # (about 6 on average here) make smooth, detail and input frames tell apart.
    torch.nn.init.normal_(net.to_rgb.weight, std=100.0)
    net.train()
    with torch.no_grad():  # give BatchNorm real running statistics
        for _ in range(3):
            net(torch.rand(2, 3, 32, 32))
    path = tmp_path_factory.mktemp("weights") / "tiny-smooth.safetensors"
    save_weights(net.eval(), path, get_restorer("smooth"), {"purpose": "tests"})
    return path


@pytest.fixture(scope="session")
def tiny_enhance_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A width-4, one-block enhance network with random weights."""
    import torch

    from smokeclear.nets.enhance import EnhanceConfig, EnhanceNet
    from smokeclear.nets.loading import save_weights
    from smokeclear.registry import get_restorer

    torch.manual_seed(0)
    net = EnhanceNet(EnhanceConfig(width=4, blocks=1)).eval()
    path = tmp_path_factory.mktemp("weights") / "tiny-enhance.safetensors"
    save_weights(net, path, get_restorer("enhance"), {"purpose": "tests"})
    return path


@pytest.fixture
def fp32_by_op():
    """``by_op(onnx_path) -> {op_type: {kept FP32?, ...}}`` under the FP16 export rule."""

    def by_op(path: Path) -> dict[str, set[bool]]:
        import onnx

        from smokeclear.export.fp16 import fp32_node_names

        model = onnx.load(str(path))
        kept = set(fp32_node_names(model))
        kinds: dict[str, set[bool]] = {}
        for node in model.graph.node:
            kinds.setdefault(node.op_type, set()).add(node.name in kept)
        return kinds

    return by_op


@pytest.fixture
def tiny_conv_onnx():
    """Writes a one-conv ONNX restorer: ``make(path, fp16=False, multiple=8) -> path``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def make(path: Path, fp16: bool = False, multiple: int = 8) -> Path:
        """image (1, 3, H, W) float32 -> 3x3 Conv -> Relu -> restored, dynamic H and W.

        ``fp16``: the AutoCast shape (FP32 I/O, Cast to FP16, FP16 weights, Cast back).
        """
        rng = np.random.default_rng(0)
        weight = rng.normal(0, 0.2, (3, 3, 3, 3)).astype(np.float16 if fp16 else np.float32)
        nodes, source = [], "image"
        if fp16:
            nodes.append(helper.make_node("Cast", ["image"], ["image16"], to=TensorProto.FLOAT16))
            source = "image16"
        nodes.append(helper.make_node("Conv", [source, "weight"], ["conv"], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", ["conv"], ["relu"], name="node_relu"))
        if fp16:
            nodes.append(helper.make_node("Cast", ["relu"], ["restored"], to=TensorProto.FLOAT))
        else:
            nodes[-1].output[0] = "restored"
        shape = [1, 3, "h", "w"]
        graph = helper.make_graph(
            nodes,
            "tiny",
            [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
            [helper.make_tensor_value_info("restored", TensorProto.FLOAT, shape)],
            [numpy_helper.from_array(weight, "weight")],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        model.ir_version = 9
        entry = model.metadata_props.add()
        entry.key, entry.value = "input_multiple", str(multiple)
        onnx.checker.check_model(model)
        onnx.save(model, str(path))
        return path

    return make


@pytest.fixture
def engine_key():
    """Makes an engine-cache key (H100, TensorRT 10, FP16, 720p-1080p); kwargs change fields."""
    import dataclasses

    from smokeclear.engines.engine_cache import EngineKey

    key = EngineKey(
        onnx_sha256="ab" * 32,
        tensorrt_version="10.13.3.9",
        gpu_name="NVIDIA H100 80GB HBM3",
        compute_capability="9.0",
        precision="fp16",
        profile=((1, 3, 736, 1280), (1, 3, 736, 1280), (1, 3, 1088, 1920)),
        optimization_level=3,
    )
    return lambda **changes: dataclasses.replace(key, **changes)


@pytest.fixture
def torch_reference():
    """``restore(weights, frame)``: FP32 torch desmoke of a uint8 BGR frame, as engines return."""
    import torch

    from smokeclear.nets.loading import load_restorer
    from smokeclear.nets.wrappers import run_padded
    from smokeclear.registry import get_restorer

    def restore(weights: Path, frame: np.ndarray) -> np.ndarray:
        net = load_restorer(get_restorer("desmoke"), weights)
        rgb = frame[:, :, ::-1].transpose(2, 0, 1).copy()
        tensor = torch.from_numpy(rgb).float()[None] / 255
        with torch.inference_mode():
            out = run_padded(net, tensor)[0].clamp(0, 1)
        return (out.numpy().transpose(1, 2, 0)[:, :, ::-1] * 255 + 0.5).astype(np.uint8)

    return restore


# --------------------------------------------------------------------------- test doubles


class InvertEngine:
    """A numpy engine double: output = 255 - input, with optional delay, hang or failure.

    Args:
        delay_s: time each ``infer`` takes.
        hang: an event; ``infer`` blocks until it is set (a hung GPU).
        fail_every: ``infer`` raises on every n-th call (1: always).
    """

    def __init__(
        self, delay_s: float = 0.0, hang: threading.Event | None = None, fail_every: int = 0
    ) -> None:
        self.name = "invert-double"
        self.delay_s = delay_s
        self.hang = hang
        self.fail_every = fail_every
        self.calls = 0
        self.started = 0
        self.closed = False

    def start(self, height: int, width: int) -> None:
        self.started += 1

    def upload(self, frame: np.ndarray) -> np.ndarray:
        return frame.copy()

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.hang is not None:
            self.hang.wait()
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail_every and self.calls % self.fail_every == 0:
            raise RuntimeError("simulated inference failure")
        return 255 - tensor

    def download(self, tensor: np.ndarray, height: int, width: int) -> np.ndarray:
        return tensor[:height, :width]

    def set_detail_gain(self, gain: float) -> bool:
        return False  # no detail stage

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def invert_engine_class() -> type[InvertEngine]:
    return InvertEngine
