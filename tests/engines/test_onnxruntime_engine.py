from pathlib import Path

import pytest

from smokeclear.engines.onnxruntime_engine import OnnxRuntimeEngine
from smokeclear.errors import UserError


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
