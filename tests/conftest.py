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


def save_tiny_weights(name: str, path: Path, init=None) -> Path:
    """The recipe's tiny network of restorer ``name`` (``Recipe.tiny_network``), seeded
    random weights, real batch-norm statistics where it has batch norms, saved to ``path``.

    ``init(net)`` may change the fresh network first.
    """
    import torch

    from smokeclear.config import from_mapping
    from smokeclear.nets.loading import build_network, save_weights
    from smokeclear.registry import get_restorer, resolve
    from smokeclear.train.driver import recipe_of

    spec = get_restorer(name)
    config = from_mapping(resolve(spec.network_config), recipe_of(spec).tiny_network, name)
    torch.manual_seed(0)
    net = build_network(spec, config)
    if init is not None:
        init(net)
    if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules()):
        net.train()
        with torch.no_grad():  # give BatchNorm real running statistics
            for _ in range(3):
                net(torch.rand(2, 3, 64, 64))
    save_weights(net.eval(), path, spec, {"purpose": "tests"})
    return path


@pytest.fixture(scope="session")
def tiny_weights_of(tmp_path_factory: pytest.TempPathFactory):
    """``tiny_weights_of(name) -> Path``: tiny weights of any registered restorer, made once."""
    made: dict[str, Path] = {}

    def weights(name: str) -> Path:
        if name not in made:
            folder = tmp_path_factory.mktemp("weights")
            made[name] = save_tiny_weights(name, folder / f"tiny-{name}.safetensors")
        return made[name]

    return weights


@pytest.fixture(scope="session")
def short_live_argv():
    """``short_live_argv(frames, *more)``: the CLI's argv for a short synthetic live run
    at 64x48 on torch with no display; ``more`` names the restorers and their weights."""

    def argv(frames: int, *more: str) -> list[str]:
        return [
            "--display",
            "none",
            "--size",
            "64x48",
            "--fps",
            "30",
            "--max-frames",
            str(frames),
            "--backend",
            "torch",
            *more,
        ]

    return argv


@pytest.fixture(scope="session")
def tiny_weights(tiny_weights_of) -> Path:
    """A width-4 desmoke network with non-trivial random weights and BN statistics."""
    return tiny_weights_of("desmoke")


@pytest.fixture(scope="session")
def tiny_smooth_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny smooth network with a visible residual.

    Its output conv starts at zero (identity); residuals of several 8-bit levels make
    smooth, detail and input frames tell apart.
    """
    import torch

    return save_tiny_weights(
        "smooth",
        tmp_path_factory.mktemp("weights") / "tiny-smooth.safetensors",
        init=lambda net: torch.nn.init.normal_(net.to_rgb.weight, std=100.0),
    )


@pytest.fixture(scope="session")
def export_restorer(tmp_path_factory: pytest.TempPathFactory):
    """``export(net, name, fp32_scopes=()) -> (module, fp32 path, fp16 path)``: ``net`` at
    work scale 1 in eval mode, exported to ONNX and converted to FP16."""

    def export(net, name: str, fp32_scopes: tuple[str, ...] = ()):
        from smokeclear.export.fp16 import convert_to_fp16
        from smokeclear.export.onnx_export import export_onnx
        from smokeclear.nets.wrappers import WorkScale

        module = WorkScale(net, 1.0).eval()
        folder = tmp_path_factory.mktemp(name)
        fp32, fp16 = folder / f"{name}.onnx", folder / f"{name}.fp16.onnx"
        export_onnx(module, fp32, {"restorers": name})
        convert_to_fp16(fp32, fp16, fp32_scopes=fp32_scopes)
        return module, fp32, fp16

    return export


@pytest.fixture
def write_pairs():
    """``write_pairs(root, (degraded, clean) folders, names, size) -> root``: random image
    pairs with matching names; the degraded image is the darker."""
    import cv2

    def write(
        root: Path, folders: tuple[str, str], names=("a.png", "b.png"), size=(48, 48)
    ) -> Path:
        rng = np.random.default_rng(0)
        for folder in folders:
            (root / folder).mkdir(parents=True, exist_ok=True)
            for file in names:
                image = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
                if folder == folders[0]:
                    image //= 8
                cv2.imwrite(str(root / folder / file), image)
        return root

    return write


@pytest.fixture
def run_eval(capsys: pytest.CaptureFixture):
    """``run_eval(name, weights, *flags) -> (exit code, printed table)``: ``smokeclear eval``
    of one restorer on one frame per test scene."""
    from smokeclear.cli import main

    def run(name: str, weights: Path, *flags: object) -> tuple[int, str]:
        arguments = ["eval", name, "--weights", str(weights), "--frames-per-scene", "1"]
        code = main([*arguments, *(str(flag) for flag in flags)])
        return code, capsys.readouterr().out

    return run


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
def input_types_by_op():
    """``by_op(onnx_path) -> {op_type: {element type of its first input, ...}}``."""

    def by_op(path: Path) -> dict[str, set[int]]:
        import onnx

        graph = onnx.shape_inference.infer_shapes(onnx.load(str(path))).graph
        elem_types = {
            value.name: value.type.tensor_type.elem_type
            for value in [*graph.value_info, *graph.input, *graph.output]
        }
        elem_types.update({init.name: init.data_type for init in graph.initializer})
        kinds: dict[str, set[int]] = {}
        for node in graph.node:
            kinds.setdefault(node.op_type, set()).add(elem_types[node.input[0]])
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


class GainEngine(InvertEngine):
    """An engine double with a detail stage: output = frame scaled by the gain it was given.

    Args:
        gain: the detail gain it starts with.
        live: whether ``set_detail_gain`` takes effect (False: the gain is fixed).
    """

    def __init__(self, gain: float, live: bool = True) -> None:
        super().__init__()
        self.name = "gain-double"
        self.gain = gain
        self.live = live
        self.gains: list[float] = []  # every set_detail_gain call
        self.applied_at: list[int] = []  # infer calls before each one

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.clip(tensor * self.gain, 0, 255).astype(np.uint8)

    def set_detail_gain(self, gain: float) -> bool:
        self.gains.append(gain)
        self.applied_at.append(self.calls)
        if self.live:
            self.gain = gain
        return self.live


@pytest.fixture
def invert_engine_class() -> type[InvertEngine]:
    return InvertEngine


@pytest.fixture
def gain_engine_class() -> type[GainEngine]:
    return GainEngine
