"""One contract, every backend this machine has: same pictures, any size, clear errors.

TensorRT and CUDA backends join the parameter list where they are installed and
skip with the reason where not. The AOTInductor CPU package takes minutes to
compile, so tests/engines/test_aoti_engine.py checks it once instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from smokeclear.engines.onnxruntime_engine import OnnxRuntimeEngine
from smokeclear.engines.select import unavailable_reason
from smokeclear.registry import get_restorer
from smokeclear.runtime import EngineRequest, create_engine, onnx_model

DESMOKE = get_restorer("desmoke")
SMOOTH = get_restorer("smooth")


def on_cuda(backend: tuple[str, str], id: str, *marks) -> object:
    """A backend that runs on a CUDA GPU: marked ``gpu``, skipped with the reason without one."""
    needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
    return pytest.param(backend, id=id, marks=[pytest.mark.gpu, *marks, needs_gpu])


BACKENDS = [
    pytest.param(("onnxruntime", "cpu"), id="onnxruntime-cpu"),
    # The same restorer exported with the pixel work in the graph (uint8 frames in and out).
    pytest.param(("onnxruntime-frames", "cpu"), id="onnxruntime-frames-cpu"),
    pytest.param(("torch", "cpu"), id="torch-cpu"),
    on_cuda(("torch", "cuda"), "torch-cuda-graphs"),
    on_cuda(("aoti", "cuda"), "aoti-cuda", pytest.mark.slow),
    pytest.param(
        ("tensorrt", "cuda"),
        id="tensorrt",
        marks=[
            pytest.mark.trt,
            pytest.mark.skipif(
                unavailable_reason("tensorrt") is not None,
                reason=f"TensorRT backend cannot run here: {unavailable_reason('tensorrt')}",
            ),
        ],
    ),
]
#: uint8 outputs of FP32 backends agree to rounding; FP16 ones to a few levels.
TOLERANCE = {"cpu": 1, "cuda": 4}


@pytest.fixture(params=BACKENDS)
def backend(request) -> tuple[str, str]:
    return request.param


def engine_for(request: EngineRequest, backend_name: str):
    if backend_name == "onnxruntime-frames":
        path = onnx_model(request, frame_io=True)
        return OnnxRuntimeEngine(path, detail_gain=request.detail_gain)
    engine, _ = create_engine(request)
    return engine


def make_engine(backend: tuple[str, str], weights: Path, work_scale: float = 1.0):
    name, device = backend
    request = EngineRequest(
        (DESMOKE,),
        backend=name.removesuffix("-frames"),
        device=device,
        work_scale=work_scale,
        weights={"desmoke": weights},
    )
    return engine_for(request, name)


def scene_frame(width: int, height: int) -> np.ndarray:
    from smokeclear.synthetic.scene import LaparoscopicScene

    return LaparoscopicScene(width, height, seed=2).render(40).smoky


def test_engines_match_the_torch_reference(backend, tiny_weights, torch_reference):
    engine = make_engine(backend, tiny_weights)
    engine.start(48, 64)
    frame = scene_frame(64, 48)
    out = engine.download(engine.infer(engine.upload(frame)), 48, 64)
    expected = torch_reference(tiny_weights, frame)
    difference = np.abs(out.astype(int) - expected).max()
    assert difference <= TOLERANCE[backend[1]], f"{engine.name}: max difference {difference}"
    engine.close()


def test_engines_follow_frame_size_changes(backend, tiny_weights, torch_reference):
    engine = make_engine(backend, tiny_weights)
    engine.start(48, 64)
    for height, width in [(37, 53), (64, 96), (32, 32)]:
        frame = scene_frame(width, height)
        out = engine.download(engine.infer(engine.upload(frame)), height, width)
        assert out.shape == (height, width, 3) and out.dtype == np.uint8
        expected = torch_reference(tiny_weights, frame)
        assert np.abs(out.astype(int) - expected).max() <= TOLERANCE[backend[1]]


def test_engines_at_half_work_scale(backend, tiny_weights):
    engine = make_engine(backend, tiny_weights, work_scale=0.5)
    engine.start(72, 100)
    out = engine.download(engine.infer(engine.upload(scene_frame(100, 72))), 72, 100)
    assert out.shape == (72, 100, 3)


@pytest.mark.parametrize(
    "frame",
    [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 4), np.uint8)],
)
def test_engines_refuse_frames_outside_the_contract(backend, tiny_weights, frame):
    engine = make_engine(backend, tiny_weights)
    engine.start(32, 32)
    with pytest.raises(ValueError, match="uint8 BGR"):
        engine.upload(frame)


# --------------------------------------------------------------------------- detail gain


def smooth_engine(backend: tuple[str, str], weights: Path, detail_gain: float | None):
    name, device = backend
    request = EngineRequest(
        (SMOOTH,),
        backend=name.removesuffix("-frames"),
        device=device,
        weights={"smooth": weights},
        detail_gain=detail_gain,
    )
    engine = engine_for(request, name)
    engine.start(48, 64)
    return engine


def test_detail_gain_changes_the_next_frame(backend, tiny_smooth_weights):
    """Gain 1 gives the frame back, gain 0 the smooth picture, 3 something else again."""
    frame = scene_frame(64, 48)
    smooth = smooth_engine(backend, tiny_smooth_weights, None)
    smoothed = smooth.download(smooth.infer(smooth.upload(frame)), 48, 64)
    assert smooth.set_detail_gain(2.0) is False, f"{smooth.name}: smooth mode has no detail stage"
    smooth.close()
    assert np.abs(smoothed.astype(int) - frame).max() > 4, "the tiny smoother changes the frame"

    engine = smooth_engine(backend, tiny_smooth_weights, 1.0)
    tolerance = TOLERANCE[backend[1]]

    def run() -> np.ndarray:
        return engine.download(engine.infer(engine.upload(frame)), 48, 64)

    assert np.abs(run().astype(int) - frame).max() <= tolerance, "gain 1 returns the frame"
    if backend[0] == "aoti":  # the package compiles the gain in
        assert engine.set_detail_gain(0.0) is False
        engine.close()
        return
    assert engine.set_detail_gain(0.0) is True
    difference = np.abs(run().astype(int) - smoothed).max()
    assert difference <= tolerance, f"{engine.name}: gain 0 should be the smooth picture"
    assert engine.set_detail_gain(3.0) is True
    magnified = run().astype(int)
    assert np.abs(magnified - frame).max() > 4 and np.abs(magnified - smoothed).max() > 4
    engine.close()


def test_engines_without_a_detail_stage_refuse_a_gain(backend, tiny_weights):
    engine = make_engine(backend, tiny_weights)
    engine.start(32, 32)
    assert engine.set_detail_gain(2.0) is False
    engine.close()
