from pathlib import Path

import numpy as np
import pytest

from smokeclear.engines.onnxruntime_engine import OnnxRuntimeEngine
from smokeclear.errors import UserError
from smokeclear.registry import get_restorer
from smokeclear.runtime import EngineRequest, onnx_model


def test_corrupt_model_is_a_user_error(tmp_path: Path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x08\x07garbage" * 50)
    with pytest.raises(UserError, match="cannot be loaded") as error:
        OnnxRuntimeEngine(path).start(32, 32)
    assert "re-export" in error.value.fix


def test_missing_model(tmp_path: Path):
    with pytest.raises(UserError, match="does not exist"):
        OnnxRuntimeEngine(tmp_path / "none.onnx").start(32, 32)


def test_unavailable_provider(tmp_path: Path):
    with pytest.raises(UserError, match="none of the onnxruntime providers"):
        OnnxRuntimeEngine(tmp_path / "x.onnx", providers=("NoSuchProvider",)).start(32, 32)


def test_a_detail_model_needs_a_starting_gain(tiny_smooth_weights):
    request = EngineRequest(
        (get_restorer("smooth"),), weights={"smooth": tiny_smooth_weights}, detail_gain=2.0
    )
    path = onnx_model(request)
    with pytest.raises(UserError, match="needs a detail gain") as error:
        OnnxRuntimeEngine(path).start(32, 32)
    assert "--detail-gain" in error.value.fix
    engine = OnnxRuntimeEngine(path, detail_gain=2.0)
    assert engine.set_detail_gain(1.0) is False, "nothing to change before start"
    engine.start(32, 32)
    assert engine.set_detail_gain(1.0) is True
    frame = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    out = engine.download(engine.infer(engine.upload(frame)), 32, 32)
    assert np.abs(out.astype(int) - frame).max() <= 1, "gain 1 returns the frame"
