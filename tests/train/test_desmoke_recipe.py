from pathlib import Path

from smokeclear.registry import get_restorer
from smokeclear.train import driver
from smokeclear.train.options import EvalOptions, TrainOptions

DESMOKE = get_restorer("desmoke")


def test_evaluation_table_has_the_papers_rows(tiny_weights: Path, tmp_path: Path):
    json_path = tmp_path / "eval.json"
    rows = driver.evaluate(
        DESMOKE, EvalOptions(weights=tiny_weights, frames_per_scene=1, json_path=json_path)
    )
    assert [row.label for row in rows][:3] == ["low", "medium", "high"]
    table_rows = [row for row in rows if row.reference == "clean"]
    for row in table_rows:
        assert set(row.scores) == {"smoky input", "DCP", "desmoke"}
    inputs = [row.scores["smoky input"]["psnr"][0] for row in rows[:3]]
    assert inputs[0] > inputs[1] > inputs[2], "denser smoke, lower input PSNR"
    (harm,) = [row for row in rows if row.reference == "input"]
    assert harm.label == "scene frames" and set(harm.scores) == {"desmoke"}
    table = driver.format_table(DESMOKE, rows)
    assert table.split("\n\n")[0].count("\n") == len(table_rows) + 1 and json_path.is_file()
    assert "Do no harm" in table


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
