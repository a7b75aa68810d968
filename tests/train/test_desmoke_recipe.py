from pathlib import Path

from smokeclear.registry import get_restorer
from smokeclear.train import desmoke, driver
from smokeclear.train.options import EvalOptions, TrainOptions

DESMOKE = get_restorer("desmoke")


def test_evaluation_table_has_the_papers_rows(tiny_weights: Path, tmp_path: Path):
    json_path = tmp_path / "eval.json"
    rows = driver.evaluate(
        DESMOKE, EvalOptions(weights=tiny_weights, frames_per_scene=1, json_path=json_path)
    )
    assert [row.label for row in rows][:3] == ["low", "medium", "high"]
    for row in rows:
        assert set(row.scores) == {"smoky input", "DCP", "desmoke"}
    inputs = [row.scores["smoky input"]["psnr"][0] for row in rows[:3]]
    assert inputs[0] > inputs[1] > inputs[2], "denser smoke, lower input PSNR"
    table = driver.format_table(DESMOKE, rows)
    assert table.count("\n") == len(rows) + 1 and json_path.is_file()


def test_train_runs_end_to_end_and_writes_fp16_weights(tmp_path: Path):
    import torch

    from smokeclear.nets.loading import read_weights

    config = tmp_path / "tiny.yaml"
    config.write_text(
        "network: {width: 4, max_channels: 8}\n"
        "train: {patch_size: 64, batch_size: 2, steps_per_epoch: 2, max_epochs: 1,"
        " validation_size: 2}\n"
    )
    result = driver.train(
        DESMOKE, TrainOptions(out_dir=tmp_path / "run", config_path=config, progress=False)
    )
    assert result.epochs == 1
    tensors, metadata = read_weights(tmp_path / "run" / "desmoke.safetensors")
    assert all(t.dtype == torch.float16 for t in tensors.values() if t.is_floating_point())
    assert "data_recipe" in metadata and "train_config" in metadata


def test_fine_tuning_starts_from_given_weights(tmp_path: Path, tiny_weights: Path):
    from smokeclear.nets.loading import weights_metadata

    config = tmp_path / "short.yaml"
    config.write_text(
        "train: {patch_size: 64, batch_size: 2, steps_per_epoch: 1, max_epochs: 1,"
        " validation_size: 2}\n"
    )
    driver.train(
        DESMOKE,
        TrainOptions(
            out_dir=tmp_path / "run", config_path=config, init_weights=tiny_weights, progress=False
        ),
    )
    metadata = weights_metadata(tmp_path / "run" / "desmoke.safetensors")
    assert metadata["network_config"]["width"] == 4, "the network comes from the init file"
    assert metadata["data_recipe"]["init_weights"] == str(tiny_weights)


def test_validation_pairs_do_not_depend_on_the_training_seed():
    import numpy as np

    first = driver.validation_batch(
        DESMOKE, desmoke.DesmokeTrainConfig(seed=0, validation_size=2, patch_size=32), []
    )
    second = driver.validation_batch(
        DESMOKE, desmoke.DesmokeTrainConfig(seed=5, validation_size=2, patch_size=32), []
    )
    np.testing.assert_array_equal(first[0].numpy(), second[0].numpy())
