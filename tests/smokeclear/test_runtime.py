import logging
import math
from pathlib import Path

import pytest

from smokeclear.errors import UserError
from smokeclear.registry import get_restorer, parse_chain
from smokeclear.runtime import EngineRequest, aoti_package, build_chain, onnx_key, onnx_model

DESMOKE = get_restorer("desmoke")
SMOOTH = get_restorer("smooth")


def test_onnx_models_are_cached_by_content(tiny_weights: Path, tmp_path: Path, caplog):
    request = EngineRequest((DESMOKE,), weights={"desmoke": tiny_weights})
    path = onnx_model(request)
    stamp = path.stat().st_mtime_ns
    assert onnx_model(request) == path and path.stat().st_mtime_ns == stamp, "reused"
    other = tmp_path / "other.safetensors"
    other.write_bytes(tiny_weights.read_bytes() + b"")
    assert onnx_key(EngineRequest((DESMOKE,), weights={"desmoke": other})) == onnx_key(request)
    assert onnx_key(
        EngineRequest((DESMOKE,), work_scale=0.5, weights={"desmoke": tiny_weights})
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


# --------------------------------------------------------------------------- detail mode


def test_build_chain_folds_batch_norm_without_changing_the_output(tiny_smooth_weights: Path):
    import torch

    from smokeclear.nets.loading import load_restorer

    chain = build_chain(EngineRequest((SMOOTH,), weights={"smooth": tiny_smooth_weights}))
    left = [type(m).__name__ for m in chain.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert not left, f"every batch norm should be folded into its conv, found {left}"
    unfolded = load_restorer(SMOOTH, tiny_smooth_weights).eval()
    image = torch.rand(1, 3, 24, 40, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, folded = unfolded(image), chain(image)
    assert (expected - image).abs().max() > 4 / 255, "the tiny net should change the image"
    torch.testing.assert_close(folded, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("chain", ["smooth", "desmoke,smooth"])
def test_detail_gain_wraps_the_smooth_member(chain, tiny_smooth_weights, tiny_weights):
    import torch

    from smokeclear.nets.smooth import DetailMagnify, SmoothNet

    specs = tuple(parse_chain(chain))
    weights = {"smooth": tiny_smooth_weights, "desmoke": tiny_weights}
    smooth = build_chain(EngineRequest(specs, weights=weights))
    detail = build_chain(EngineRequest(specs, weights=weights, detail_gain=2.5))
    stages = [m for m in detail.modules() if isinstance(m, DetailMagnify)]
    assert len(stages) == 1 and isinstance(stages[0].smoother, SmoothNet)
    assert stages[0].detail_gain.item() == 2.5
    image = torch.rand(1, 3, 32, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        if chain == "smooth":
            base = smooth(image)
            torch.testing.assert_close(detail(image), base + 2.5 * (image - base))
        else:  # desmoke, then smooth's detail magnification of desmoke's output
            assert not torch.allclose(detail(image), smooth(image), atol=1e-3)


def test_detail_gain_without_smooth_is_a_user_error(tiny_weights):
    request = EngineRequest((DESMOKE,), weights={"desmoke": tiny_weights}, detail_gain=2.0)
    with pytest.raises(UserError, match="--detail-gain needs the smooth restorer") as error:
        build_chain(request)
    assert "--restorer smooth" in error.value.fix


@pytest.mark.parametrize("gain", [-0.5, math.nan, math.inf])
def test_detail_gain_must_be_finite_and_not_negative(gain, tiny_smooth_weights):
    request = EngineRequest((SMOOTH,), weights={"smooth": tiny_smooth_weights}, detail_gain=gain)
    with pytest.raises(UserError, match="--detail-gain"):
        build_chain(request)


def test_detail_mode_is_in_the_onnx_cache_key_and_name_but_not_the_gain(tiny_smooth_weights):
    weights = {"smooth": tiny_smooth_weights}
    smooth = EngineRequest((SMOOTH,), weights=weights)
    detail = EngineRequest((SMOOTH,), weights=weights, detail_gain=2.0)
    other_gain = EngineRequest((SMOOTH,), weights=weights, detail_gain=3.5)
    assert onnx_key(detail) != onnx_key(smooth)
    assert onnx_key(detail) == onnx_key(other_gain)
    path = onnx_model(detail)
    assert path.name.startswith("smooth-detail-w1-") and onnx_model(other_gain) == path
    assert not onnx_model(smooth).name.startswith("smooth-detail")


def test_aoti_packages_are_keyed_by_mode_and_gain(tiny_smooth_weights, monkeypatch):
    """The package compiles the gain in (it is no runtime input there), so it is in the key."""
    import torch

    compiled = []

    def fake_compile(module, example, path):
        compiled.append(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"package")

    monkeypatch.setattr("smokeclear.export.aoti.compile_package", fake_compile)
    weights = {"smooth": tiny_smooth_weights}
    example = torch.rand(1, 3, 8, 8)
    paths = [
        aoti_package(EngineRequest((SMOOTH,), weights=weights, detail_gain=gain), None, example)
        for gain in (None, 2.0, 3.0, 2.0)
    ]
    assert "-detail-" not in paths[0].name and "-detail-" in paths[1].name
    assert len(set(paths)) == 3 and paths[3] == paths[1] and len(compiled) == 3
