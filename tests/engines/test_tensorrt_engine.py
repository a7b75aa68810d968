"""The tensorrt backend: what runs everywhere (imports, errors, buffers, conversions,
backend selection) and, where TensorRT and a GPU exist, a real engine end to end."""

from __future__ import annotations

import enum
import gc
import sys
from pathlib import Path

import numpy as np
import pytest

from smokeclear.engines.base import EngineError, bgr8_into_nchw, bgr8_to_nchw
from smokeclear.engines.cuda_runtime import PinnedPool, PinnedPools, cuda_check, require_cudart
from smokeclear.engines.select import BACKENDS, choose_backend, unavailable_reason
from smokeclear.engines.tensorrt_engine import TensorRTEngine
from smokeclear.engines.tensorrt_support import profile_covers, require_tensorrt
from smokeclear.errors import UserError


def test_start_without_tensorrt_is_the_install_hint(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(UserError) as error:
        TensorRTEngine(tmp_path / "x.plan").start(64, 64)
    assert "needs TensorRT" in error.value.problem
    assert 'pip install "smokeclear[gpu]"' in error.value.fix and "--backend" in error.value.fix


def test_missing_cuda_python_is_the_install_hint(monkeypatch):
    for name in ("cuda", "cuda.bindings", "cuda.cudart"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(UserError, match="cuda-python"):
        require_cudart()
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(UserError, match="TensorRT"):
        require_tensorrt()


def test_engine_refuses_frames_before_start(tmp_path):
    engine = TensorRTEngine(tmp_path / "x.plan")
    assert engine.name == "tensorrt"
    with pytest.raises(EngineError, match="before start"):
        engine.upload(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(EngineError, match="before start"):
        engine.infer(np.zeros((1, 3, 8, 8), np.float32))
    engine.close()  # closing an engine that never started is harmless


def test_detail_gain_before_start_is_refused(tmp_path):
    """Only a started engine knows whether its plan has a detail_gain input."""
    engine = TensorRTEngine(tmp_path / "x.plan", detail_gain=2.0)
    assert engine.detail_gain == 2.0
    assert engine.set_detail_gain(3.0) is False


# --------------------------------------------------------------------------- cuda_check


class FakeError(enum.IntEnum):
    """Shaped like cuda-python's ``cudaError_t`` (an IntEnum, success 0)."""

    cudaSuccess = 0
    cudaErrorMemoryAllocation = 2


def test_cuda_check_unwraps_values_and_raises_with_the_error_name():
    assert cuda_check((FakeError.cudaSuccess,), "cudaFree") is None
    assert cuda_check((FakeError.cudaSuccess, 1234), "cudaMalloc") == 1234
    assert cuda_check((FakeError.cudaSuccess, 1, 2), "call") == (1, 2)
    with pytest.raises(EngineError, match=r"cudaMalloc failed: cudaErrorMemoryAllocation \(2\)"):
        cuda_check((FakeError.cudaErrorMemoryAllocation, 0), "cudaMalloc")


# --------------------------------------------------------------------------- pure helpers


def test_profile_covers():
    profile = ((1, 3, 64, 64), (1, 3, 128, 128), (1, 3, 256, 512))
    assert profile_covers(profile, (1, 3, 64, 64))
    assert profile_covers(profile, (1, 3, 256, 512))
    assert not profile_covers(profile, (1, 3, 32, 128))
    assert not profile_covers(profile, (1, 3, 128, 1024))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize(("height", "width", "multiple"), [(48, 64, 16), (50, 70, 16), (33, 9, 8)])
def test_bgr8_into_matches_the_shared_conversion(rng, dtype, height, width, multiple):
    frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    expected = bgr8_to_nchw(frame, multiple)
    out = np.full(expected.shape, -1, dtype)
    bgr8_into_nchw(frame, out)
    tolerance = 0 if dtype == np.float32 else 1e-3
    np.testing.assert_allclose(out.astype(np.float32), expected, atol=tolerance, rtol=0)


# --------------------------------------------------------------------------- pinned pool


class HostMemory:
    """``allocate``/``free`` over ordinary host memory, so the pool logic runs without CUDA."""

    def __init__(self) -> None:
        self.live: dict[int, np.ndarray] = {}
        self.allocations = 0

    def allocate(self, nbytes: int) -> int:
        block = np.zeros(nbytes, np.uint8)
        self.live[block.ctypes.data] = block
        self.allocations += 1
        return block.ctypes.data

    def free(self, pointer: int) -> None:
        del self.live[pointer]


def test_pool_reuses_a_buffer_once_its_frame_is_dropped():
    memory = HostMemory()
    pool = PinnedPool((1, 3, 4, 5), np.float32, memory.allocate, memory.free)
    first = pool.take()
    assert first.array.shape == (1, 3, 4, 5) and first.array.dtype == np.float32
    first.array[:] = 7
    pointer = first.pointer
    second = pool.take()
    assert second.pointer != pointer, "a held buffer is never handed out twice"
    del first
    gc.collect()
    third = pool.take()
    assert third.pointer == pointer and memory.allocations == 2
    assert third.array.flags.writeable


def test_pool_limit_catches_leaking_frames():
    memory = HostMemory()
    pool = PinnedPool((1, 3, 2, 2), np.float16, memory.allocate, memory.free, limit=3)
    held = [pool.take() for _ in range(3)]
    with pytest.raises(EngineError, match="not being released"):
        pool.take()
    assert len(held) == 3


def test_pool_close_frees_idle_buffers_now_and_held_ones_on_release():
    memory = HostMemory()
    pool = PinnedPool((1, 3, 2, 2), np.float32, memory.allocate, memory.free)
    held, idle = pool.take(), pool.take()
    del idle
    gc.collect()
    pool.close()
    assert len(memory.live) == 1, "the idle buffer is freed at close"
    with pytest.raises(EngineError, match="after close"):
        pool.take()
    del held
    gc.collect()
    assert memory.live == {} and pool.allocated == 0


def test_pools_make_one_pool_per_shape_and_dtype_and_close_them_all():
    memory = HostMemory()
    pools = PinnedPools(memory.allocate, memory.free)
    first = pools.pool((1, 3, 2, 2), np.float32)
    assert pools.pool((1, 3, 2, 2), np.float32) is first, "the same shape reuses its pool"
    assert pools.pool((1, 3, 2, 2), np.float16) is not first
    assert pools.pool((2, 2, 3), np.uint8).take().array.shape == (2, 2, 3)
    gc.collect()
    pools.close()
    assert memory.live == {}, "closing frees every idle buffer"
    with pytest.raises(EngineError, match="after close"):
        first.take()


# --------------------------------------------------------------------------- backend selection


def test_tensorrt_is_a_backend_and_says_why_it_cannot_run(monkeypatch):
    assert "tensorrt" in BACKENDS
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert "TensorRT is not installed" in unavailable_reason("tensorrt")
    with pytest.raises(UserError, match="backend tensorrt cannot run here"):
        choose_backend("tensorrt")


def test_tensorrt_needs_cuda_python_and_a_gpu(monkeypatch):
    importable = {"tensorrt": True, "cuda.bindings": False, "cuda.cudart": False}
    monkeypatch.setattr("smokeclear.engines.select.importable", lambda name: importable[name])
    assert "cuda-python" in unavailable_reason("tensorrt")
    importable["cuda.bindings"] = True
    monkeypatch.setattr("smokeclear.engines.cuda_runtime.cuda_gpu_count", lambda: 0)
    assert "no CUDA GPU" in unavailable_reason("tensorrt")
    monkeypatch.setattr("smokeclear.engines.cuda_runtime.cuda_gpu_count", lambda: 1)
    assert unavailable_reason("tensorrt") is None


def test_choosing_tensorrt_when_it_can_run(monkeypatch):
    monkeypatch.setattr("smokeclear.engines.select.tensorrt_unavailable_reason", lambda: None)
    choice = choose_backend("tensorrt")
    assert (choice.backend, choice.device) == ("tensorrt", "cuda")
    with pytest.raises(UserError, match="GPU only"):
        choose_backend("tensorrt", "cpu")


# --------------------------------------------------------------------------- with TensorRT


@pytest.mark.trt
@pytest.mark.gpu
def test_real_engine_matches_onnxruntime_and_reuses_the_cache(
    tmp_path, rng, monkeypatch, tiny_conv_onnx
):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (smokeclear[gpu])")
    from smokeclear.engines.cuda_runtime import cuda_gpu_count
    from smokeclear.engines.onnxruntime_engine import OnnxRuntimeEngine
    from smokeclear.engines.tensorrt_engine import CachedPlan
    from smokeclear.export.tensorrt_build import build_engine, shape_profile

    if cuda_gpu_count() == 0:
        pytest.skip("TensorRT needs a CUDA GPU visible to cuda-python")
    monkeypatch.setenv("SMOKECLEAR_CACHE", str(tmp_path / "cache"))
    onnx_path = tiny_conv_onnx(tmp_path / "tiny.onnx")
    profile = shape_profile(["64x48", "96x64"], 8)
    builds = []

    def build(plan: Path):
        builds.append(plan)
        return build_engine(onnx_path, plan, precision="fp32", profile=profile)

    source = CachedPlan(onnx_path, "fp32", profile, 3, build, input_multiple=8, label="tiny")
    reference = OnnxRuntimeEngine(onnx_path)
    reference.start(48, 64)
    for generation in range(2):
        engine = TensorRTEngine(source)
        engine.start(48, 64)
        assert engine.name == "tensorrt-fp32"
        for _ in range(3):  # replayed CUDA graph, buffers recycled
            frame = rng.integers(0, 256, (45, 60, 3), dtype=np.uint8)
            output = engine.download(engine.infer(engine.upload(frame)), 45, 60)
            expected = reference.download(reference.infer(reference.upload(frame)), 45, 60)
            assert np.abs(output.astype(int) - expected).max() <= 1
        engine.close()
        assert len(builds) == 1, f"generation {generation}: the cached plan is reused"
    with pytest.raises(UserError, match="outside the engine's shape profile"):
        TensorRTEngine(source).start(480, 640)
