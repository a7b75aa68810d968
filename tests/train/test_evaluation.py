"""The do-no-harm rows: frames with nothing to fix, scored against the input itself."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from smokeclear.cli import main
from smokeclear.train import data, evaluation
from smokeclear.train.options import EvalOptions


def grey(level: float, size: int = 8) -> np.ndarray:
    return np.full((size, size, 3), level, np.float32)


def test_well_exposed_takes_mid_tones_and_refuses_dark_or_blown_frames():
    assert evaluation.well_exposed(grey(0.45))
    assert not evaluation.well_exposed(grey(0.1)), "too dark"
    assert not evaluation.well_exposed(grey(0.9)), "too bright"
    half_black = grey(0.6)
    half_black[:4] = 0.0
    assert not evaluation.well_exposed(half_black), "mean fine, but half of it crushed"


def write_named_images(folder: Path, count: int) -> list[str]:
    folder.mkdir()
    names = [f"frame{index:02d}.png" for index in range(count)]
    for name in names:
        cv2.imwrite(str(folder / name), np.full((8, 8, 3), 128, np.uint8))
    return names


def test_a_folder_is_scored_whole_unless_the_weights_trained_on_it(tmp_path: Path):
    names = write_named_images(tmp_path / "frames", 20)
    options = EvalOptions(clean_dirs=(tmp_path / "frames",), frames_per_scene=0)
    (scenes, (label, images)) = evaluation.nothing_to_fix(options)
    assert scenes == ("scene frames", []) and label == "frames" and len(images) == 20
    (_, (label, images)) = evaluation.nothing_to_fix(options, trained_dirs=("frames",))
    held_out = [name for name in names if data.split_of(name) == "test"]
    assert label == "frames (test split)" and len(images) == len(held_out) < 20


def test_the_val_split_takes_other_scenes_and_photos_than_the_test_split(tmp_path: Path):
    names = write_named_images(tmp_path / "frames", 40)
    by_split = {}
    for split in ("test", "val"):
        options = EvalOptions(clean_dirs=(tmp_path / "frames",), frames_per_scene=1, split=split)
        cleans = evaluation.held_out_cleans(options)
        scenes = len(data.SCENE_SEEDS[split])
        photos = [name for name in names if data.split_of(name) == split]
        assert len(cleans) == scenes + len(photos) and photos, split
        (_, (label, _)) = evaluation.nothing_to_fix(options, trained_dirs=("frames",))
        assert label == f"frames ({split} split)"
        by_split[split] = cleans[0]
    assert not np.array_equal(by_split["test"], by_split["val"]), "different scenes"


def test_eval_set_parses_yaml_values_and_refuses_what_is_not_key_value(capsys):
    from smokeclear.cli.train import network_setting

    assert network_setting("pass_through_density=[0.1, 0.2]") == (
        "pass_through_density",
        [0.1, 0.2],
    )
    assert network_setting(" whiteness_radius=24") == ("whiteness_radius", 24)
    assert main(["eval", "desmoke", "--set", "width"]) == 2
    assert "'width' is not KEY=VALUE" in capsys.readouterr().err
    assert main(["eval", "desmoke", "--set", "width=[1"]) == 2
    assert "is not YAML" in capsys.readouterr().err


def test_harm_rows_score_output_against_input_and_format_as_a_table():
    images = [grey(0.5, 16), grey(0.3, 16)]
    darker = evaluation.harm_rows(
        [("scene frames", images), ("empty", [])], "net", lambda image: image - 0.01
    )
    (row,) = darker
    assert row.reference == evaluation.INPUT_REFERENCE and row.images == 2
    assert row.scores["net"]["psnr"][0] == pytest.approx(40.0, abs=1e-3)
    assert row.scores["net"]["ssim"][0] < 1.0 and row.scores["net"]["ciede2000"][0] > 0.0
    table = evaluation.format_harm_table(darker, "Do no harm")
    assert "| scene frames | 2 | 40.00 ± 0.00 |" in table
    assert table.splitlines()[2] == "| frames | images | PSNR (dB) | SSIM | CIEDE2000 |"


def test_eval_refuses_a_work_scale_the_runtime_does_not_run(capsys):
    assert main(["eval", "desmoke", "--work-scale", "0.3"]) == 2
    assert "--work-scale" in capsys.readouterr().err
