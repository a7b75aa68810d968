from pathlib import Path

import pytest
import torch

from smokeclear.errors import UserError
from smokeclear.nets.desmoke import DesmokeConfig, DesmokeNet
from smokeclear.nets.loading import load_restorer, save_weights, weights_metadata
from smokeclear.registry import get_restorer

DESMOKE = get_restorer("desmoke")


def test_weights_round_trip_with_their_own_config(tmp_path: Path):
    net = DesmokeNet(DesmokeConfig(width=4, max_channels=8)).eval()
    path = tmp_path / "w.safetensors"
    save_weights(net, path, DESMOKE, {"val_psnr": 30.5})
    loaded = load_restorer(DESMOKE, path)
    assert loaded.config == net.config, "the config travels in the file's metadata"
    image = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(image), net(image))
    assert weights_metadata(path)["val_psnr"] == 30.5


def test_overrides_replace_config_values_and_are_checked_like_a_config(tmp_path: Path):
    net = DesmokeNet(DesmokeConfig(width=4, max_channels=8)).eval()
    path = tmp_path / "w.safetensors"
    save_weights(net, path, DESMOKE, {})
    loaded = load_restorer(DESMOKE, path, {"pass_through_density": [0.3, 0.5]})
    assert loaded.config.pass_through_density == (0.3, 0.5)
    assert loaded.config.width == 4, "the rest comes from the weights"
    assert load_restorer(DESMOKE, path).config == net.config, "only when asked"
    with pytest.raises(UserError, match=r"unknown key 'gate'.*Valid keys"):
        load_restorer(DESMOKE, path, {"gate": 1})
    with pytest.raises(UserError, match=r"pass_through_density set.*low to high"):
        load_restorer(DESMOKE, path, {"pass_through_density": [0.5, 0.3]})


def test_fp16_weights_load_as_fp32(tmp_path: Path):
    net = DesmokeNet(DesmokeConfig(width=4, max_channels=8)).eval()
    path = tmp_path / "w16.safetensors"
    save_weights(net, path, DESMOKE, {}, dtype=torch.float16)
    loaded = load_restorer(DESMOKE, path)
    assert next(loaded.parameters()).dtype == torch.float32


def test_missing_weights_name_the_file(tmp_path: Path):
    with pytest.raises(UserError, match="does not exist"):
        load_restorer(DESMOKE, tmp_path / "nope.safetensors")


def test_corrupt_weights_are_reported_not_raised_raw(tmp_path: Path):
    path = tmp_path / "corrupt.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(UserError, match="corrupt or not a safetensors file"):
        load_restorer(DESMOKE, path)


def test_truncated_weights_are_reported(tmp_path: Path, tiny_weights: Path):
    path = tmp_path / "truncated.safetensors"
    path.write_bytes(tiny_weights.read_bytes()[:-1000])
    with pytest.raises(UserError, match="corrupt"):
        load_restorer(DESMOKE, path)


def test_weights_of_another_shape_are_reported(tmp_path: Path, tiny_weights: Path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(tiny_weights), "pt") as handle:
        metadata = handle.metadata()
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    tensors["to_rgb.weight"] = torch.zeros(3, 5, 1, 1)
    path = tmp_path / "wrong.safetensors"
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(UserError, match="does not fit the desmoke network"):
        load_restorer(DESMOKE, path)


def test_weights_of_another_restorer_are_refused(tmp_path: Path, tiny_weights: Path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(tiny_weights), "pt") as handle:
        metadata = dict(handle.metadata(), restorer="lowlight")
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    path = tmp_path / "other.safetensors"
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(UserError, match="holds lowlight weights"):
        load_restorer(DESMOKE, path)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_weights_with_non_finite_values_are_refused_at_load(tmp_path: Path, bad: float):
    net = DesmokeNet(DesmokeConfig(width=4, max_channels=8)).eval()
    with torch.no_grad():
        next(net.parameters()).view(-1)[0] = bad  # one value is enough
    path = tmp_path / "bad.safetensors"
    save_weights(net, path, DESMOKE, {}, dtype=torch.float16)
    with pytest.raises(UserError, match=r"bad\.safetensors holds non-finite values") as caught:
        load_restorer(DESMOKE, path)
    assert "shipped weights" in caught.value.fix
