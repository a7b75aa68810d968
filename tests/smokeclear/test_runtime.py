import logging
from pathlib import Path

from smokeclear.registry import get_restorer
from smokeclear.runtime import EngineRequest, onnx_key, onnx_model

DESMOKE = get_restorer("desmoke")


def test_onnx_models_are_cached_by_content(tiny_weights: Path, tmp_path: Path, caplog):
    request = EngineRequest((DESMOKE,), weights={"desmoke": tiny_weights})
    path = onnx_model(request)
    stamp = path.stat().st_mtime_ns
    assert onnx_model(request) == path and path.stat().st_mtime_ns == stamp, "reused"
    other = tmp_path / "other.safetensors"
    other.write_bytes(tiny_weights.read_bytes() + b"")
    assert onnx_key(EngineRequest((DESMOKE,), weights={"desmoke": other})) == onnx_key(request)
    assert onnx_key(
        EngineRequest((DESMOKE,), work_divisor=2, weights={"desmoke": tiny_weights})
    ) != onnx_key(request)


def test_a_corrupt_cache_entry_is_exported_again(tiny_weights: Path, caplog):
    request = EngineRequest((DESMOKE,), weights={"desmoke": tiny_weights})
    path = onnx_model(request)
    path.write_bytes(path.read_bytes()[:500])
    with caplog.at_level(logging.WARNING):
        again = onnx_model(request)
    assert again == path and "exporting it again" in caplog.text
    import onnx

    onnx.checker.check_model(str(path))
