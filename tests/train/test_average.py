from pathlib import Path

import pytest
import torch

from smokeclear.nets.loading import load_restorer, save_weights, weights_metadata
from smokeclear.registry import get_restorer
from smokeclear.train import average

DESMOKE = get_restorer("desmoke")


SMALL_RUN = {"patch_size": 32, "validation_size": 2}


def _epoch(tiny_weights: Path, path: Path, epoch: int, shift: float, folders=()) -> Path:
    network = load_restorer(DESMOKE, tiny_weights)
    with torch.no_grad():
        network.to_rgb.bias.add_(shift)
    metadata = {
        "epoch": epoch,
        "val_psnr": 99.0,
        "train_config": SMALL_RUN,
        "data_recipe": {"seed": epoch, "clean_dirs": [str(f) for f in folders]},
    }
    save_weights(network, path, DESMOKE, metadata)
    return path


def test_the_mean_of_epochs(tmp_path: Path, tiny_weights: Path, capsys):
    files = [_epoch(tiny_weights, tmp_path / f"e{k}.safetensors", k, 0.1 * k) for k in (1, 2, 3)]
    out = tmp_path / "mean.safetensors"
    assert average.main(["desmoke", str(out), *map(str, files)]) == 0
    assert "the mean of 3 files" in capsys.readouterr().out
    source, mean = load_restorer(DESMOKE, tiny_weights), load_restorer(DESMOKE, out)
    torch.testing.assert_close(mean.to_rgb.bias, source.to_rgb.bias + 0.2, atol=1e-3, rtol=0)
    torch.testing.assert_close(mean.to_rgb.weight, source.to_rgb.weight, atol=1e-3, rtol=0)
    metadata = weights_metadata(out)
    assert [entry["epoch"] for entry in metadata["averaged"]] == [1, 2, 3]
    assert metadata["data_recipe"]["seed"] == 3, "the last file's metadata"
    # its own validation score, not the last epoch's
    assert 0 < metadata["val_psnr"] < 99.0

    # a mean of a mean (and a file of no run) says what it was made of
    again = tmp_path / "again.safetensors"
    assert average.main(["desmoke", str(again), str(tiny_weights), str(out)]) == 0
    (source, mean_entry) = weights_metadata(again)["averaged"]
    assert source == {"file": tiny_weights.name, "epoch": None}
    assert [entry["epoch"] for entry in mean_entry["averaged"]] == [1, 2, 3]


def test_a_run_whose_clean_folder_is_gone_is_not_scored(tmp_path: Path, tiny_weights: Path, capsys):
    gone = tmp_path / "photos"
    epoch = _epoch(tiny_weights, tmp_path / "e1.safetensors", 1, 0.0, folders=[gone])
    out = tmp_path / "mean.safetensors"
    assert average.main(["desmoke", str(out), str(epoch)]) == 2
    assert f"clean folders {gone} are not here" in capsys.readouterr().err


def test_files_of_other_networks_are_refused(tmp_path: Path, tiny_weights: Path, capsys):
    from smokeclear.nets.desmoke import DesmokeConfig, DesmokeNet

    other = tmp_path / "other.safetensors"
    save_weights(DesmokeNet(DesmokeConfig(width=2, max_channels=8)), other, DESMOKE, {})
    out = tmp_path / "mean.safetensors"
    assert average.main(["desmoke", str(out), str(tiny_weights), str(other)]) == 2
    assert "another network config" in capsys.readouterr().err and not out.exists()
    with pytest.raises(SystemExit):
        average.main(["desmoke", str(out)])
