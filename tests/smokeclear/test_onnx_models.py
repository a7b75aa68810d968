"""Finding ONNX models without torch: shipped (fresh only), given (checked), cached."""

from pathlib import Path

import pytest

from smokeclear.errors import UserError
from smokeclear.export.ship import main, shipped_requests, stale_reason, write_models
from smokeclear.onnx_models import (
    SHIPPED_DIR,
    find_onnx,
    given_onnx,
    model_metadata,
    shipped_onnx,
)
from smokeclear.registry import get_restorer
from smokeclear.runtime import EngineRequest, cache_dir, onnx_fp16_model, onnx_model

DESMOKE = get_restorer("desmoke")
SMOOTH = get_restorer("smooth")


@pytest.fixture
def shipped(tiny_weights: Path, tmp_path_factory, monkeypatch) -> tuple[EngineRequest, Path]:
    """A models folder the generator wrote for the tiny desmoke weights, as package data."""
    folder = tmp_path_factory.getbasetemp() / "shipped-models"
    monkeypatch.setattr("smokeclear.onnx_models.SHIPPED_DIR", folder)
    request = EngineRequest((DESMOKE,), weights={"desmoke": tiny_weights})
    [path] = write_models([request], folder)
    return request, path


@pytest.fixture
def other_weights(tiny_weights: Path, tmp_path: Path) -> Path:
    """The tiny desmoke network saved again: a valid weights file with other bytes."""
    from smokeclear.nets.loading import load_restorer, save_weights

    path = tmp_path / "retrained.safetensors"
    save_weights(load_restorer(DESMOKE, tiny_weights), path, DESMOKE, {"purpose": "retrained"})
    assert path.read_bytes() != tiny_weights.read_bytes()
    return path


def test_a_fresh_shipped_model_is_used_without_an_export(shipped):
    request, path = shipped
    assert stale_reason(request, path.parent) is None
    assert onnx_model(request) == path, "the shipped model comes before the cache"
    stamp = path.stat().st_mtime_ns
    write_models([request], path.parent)
    assert path.stat().st_mtime_ns == stamp, "the generator should keep a fresh model"


@pytest.mark.usefixtures("shipped")
def test_other_weights_never_use_the_shipped_model(other_weights):
    retrained = EngineRequest((DESMOKE,), weights={"desmoke": other_weights})
    assert shipped_onnx(retrained) is None
    assert find_onnx(retrained) is None, "other weights must be exported, not run shipped"


def test_a_model_of_changed_code_is_stale(shipped, monkeypatch):
    request, path = shipped
    monkeypatch.setattr("smokeclear.onnx_models.code_digest", lambda: "edited network")
    assert shipped_onnx(request) is None
    assert stale_reason(request, path.parent) == "code_sha256 changed"


def test_another_work_scale_is_not_the_shipped_model(shipped):
    request, _ = shipped
    half = EngineRequest(request.restorers, work_scale=0.5, weights=request.weights)
    assert shipped_onnx(half) is None


def test_a_given_model_is_checked_against_the_request(shipped, other_weights, tmp_path):
    _, path = shipped
    given = EngineRequest((DESMOKE,), onnx=path.parent)  # a folder: its desmoke.onnx
    path.parent.joinpath("desmoke.onnx").write_bytes(path.read_bytes())
    assert given_onnx(given) == path.parent / "desmoke.onnx"
    with pytest.raises(UserError, match="is the desmoke model, but --restorer is smooth"):
        given_onnx(EngineRequest((SMOOTH,), onnx=path))
    with pytest.raises(UserError, match="other weights than --weights"):
        given_onnx(EngineRequest((DESMOKE,), weights={"desmoke": other_weights}, onnx=path))
    with pytest.raises(UserError, match="exported for smoothing"):
        given_onnx(EngineRequest((DESMOKE,), detail_gain=2.0, onnx=path))
    with pytest.raises(UserError, match=r"holds no smooth\.onnx") as error:
        given_onnx(EngineRequest((SMOOTH,), onnx=tmp_path))
    assert "smokeclear export smooth" in error.value.fix
    with pytest.raises(UserError, match="does not exist"):
        given_onnx(EngineRequest((DESMOKE,), onnx=tmp_path / "missing.onnx"))


def test_tensorrt_converts_a_shipped_model_to_fp16_in_the_cache(shipped):
    """The package folder may be read-only: the FP16 copy goes to the cache."""
    request, path = shipped
    fp16 = onnx_fp16_model(request)
    assert fp16.parent == cache_dir() / "onnx", f"expected the FP16 model in the cache: {fp16}"
    assert model_metadata(fp16)["precision"] == "fp16"
    assert model_metadata(fp16)["weights_sha256"] == model_metadata(path)["weights_sha256"]
    assert onnx_fp16_model(EngineRequest((DESMOKE,), onnx=fp16)) == fp16, "a given FP16 is used"


def test_the_generator_check_lists_missing_models_and_fails(tmp_path, capsys):
    assert main(["--check", "--out", str(tmp_path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(shipped_requests()) and "desmoke-w0.5.onnx: missing" in lines


@pytest.mark.parametrize("request_", shipped_requests(), ids=lambda r: r.artefact_stem)
def test_shipped_models_are_fresh(request_):
    """Fails when weights, a network or the exporter changed after the models were made."""
    if not any(SHIPPED_DIR.glob("*.onnx")):
        pytest.skip(f"no models in {SHIPPED_DIR}: run python -m smokeclear.export.ship")
    reason = stale_reason(request_, SHIPPED_DIR)
    assert reason is None, (
        f"shipped {request_.artefact_stem}.onnx is {reason}: run python -m smokeclear.export.ship"
    )
