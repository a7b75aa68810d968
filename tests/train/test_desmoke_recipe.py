import ast
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from smokeclear.config import load_config
from smokeclear.errors import UserError
from smokeclear.registry import get_restorer
from smokeclear.train import desmoke, driver
from smokeclear.train.options import EvalOptions, TrainOptions
from smokeclear.train.recipe import TrainingFrames

DESMOKE = get_restorer("desmoke")


def test_evaluation_table_has_the_papers_rows(tiny_weights: Path, tmp_path: Path):
    json_path = tmp_path / "eval.json"
    rows = driver.evaluate(
        DESMOKE, EvalOptions(weights=tiny_weights, frames_per_scene=1, json_path=json_path)
    )
    labels = [row.label for row in rows]
    assert labels[:3] == ["low", "medium", "high"]
    unseen = [row for row in rows if row.label.startswith("unseen: ")]
    assert [row.label for row in unseen] == [
        "unseen: light",
        "unseen: medium",
        "unseen: heavy",
        "unseen: very heavy",
    ]
    unseen_inputs = [row.scores["smoky input"]["psnr"][0] for row in unseen]
    assert unseen_inputs[0] > unseen_inputs[-1], "very heavy unseen smoke hides more than light"
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

    # Resuming needs neither --init nor a network: section: the checkpoint has its shape.
    driver.train(
        DESMOKE,
        TrainOptions(
            out_dir=tmp_path / "run",
            config_path=config,
            resume=True,
            max_epochs=2,
            progress=False,
        ),
    )
    metadata = weights_metadata(tmp_path / "run" / "desmoke.safetensors")
    assert metadata["network_config"]["width"] == 4 and metadata["epochs"] == 2
    assert metadata["data_recipe"]["init_weights"] == str(tiny_weights), "a resumed run's start"


def _sampler(rng, **fields) -> desmoke.PairSampler:
    photos = [rng.random((40, 48, 3), dtype=np.float32) for _ in range(2)]
    config = replace(desmoke.DesmokeTrainConfig(), patch_size=16, scene_fraction=0.0, **fields)
    return desmoke.PairSampler(TrainingFrames(photos, []), config, rng)


def test_training_never_reaches_the_unseen_generator(monkeypatch, rng):
    heldout = "smokeclear.synthetic.smoke_heldout"
    tree = ast.parse(Path(desmoke.__file__).read_text())
    for function in ast.walk(tree):
        if isinstance(function, ast.FunctionDef) and function.name != "unseen_smoke_sets":
            for node in ast.walk(function):
                assert not (isinstance(node, ast.ImportFrom) and node.module == heldout), (
                    f"only the evaluation may import {heldout}, not {function.name}"
                )
    top_level = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    assert all(heldout not in ast.dump(node) for node in top_level), "no top-level import"
    monkeypatch.setitem(sys.modules, heldout, None)  # importing it now fails
    smoky, clean = _sampler(rng).batch(16)
    assert smoky.shape == clean.shape == (16, 3, 16, 16)


def test_identity_and_trace_shares(rng):
    smoky, clean = _sampler(rng, identity_fraction=1.0, trace_fraction=0.0).batch(4)
    assert np.array_equal(smoky, clean), "identity patches: target = input"
    smoky, clean = _sampler(rng, identity_fraction=0.0, trace_fraction=1.0).batch(8)
    assert 0 < (smoky - clean).abs().max() <= 0.1, "trace patches: a little smoke only"
    smoky, clean = _sampler(rng, identity_fraction=0.0, trace_fraction=0.0).batch(8)
    assert (smoky - clean).abs().amax(dim=(1, 2, 3)).max() > 0.1, "smoky patches"


def test_config_rejects_shares_over_one(tmp_path: Path):
    config = tmp_path / "bad.yaml"
    config.write_text("train: {identity_fraction: 0.7, trace_fraction: 0.5}\n")
    with pytest.raises(UserError, match="exceed 1"):
        load_config(desmoke.DesmokeTrainConfig, config, section="train")


def test_the_gated_start_does_what_its_source_did(tmp_path: Path, tiny_weights: Path, capsys):
    import torch

    from smokeclear.nets.loading import load_restorer, weights_metadata

    out = tmp_path / "gated.safetensors"
    desmoke.main(["gate", str(tiny_weights), str(out)])
    source, gated = load_restorer(DESMOKE, tiny_weights), load_restorer(DESMOKE, out)
    assert weights_metadata(out)["network_config"]["smoke_gate"] is True
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        change, gated_change = source(image) - image, gated(image) - image
    torch.testing.assert_close(gated_change, torch.sigmoid(torch.tensor(4.0)) * change)
    with pytest.raises(SystemExit):
        desmoke.main(["gate", str(out), str(tmp_path / "twice.safetensors")])
    assert "already has a smoke gate" in capsys.readouterr().err


def test_log_mse_counts_each_patch_by_its_psnr():
    import torch

    objective = desmoke.objective(replace(desmoke.DesmokeTrainConfig(), loss="log_mse"), None)
    clean = torch.zeros(2, 3, 8, 8)
    output = torch.stack([torch.full((3, 8, 8), 0.1), torch.full((3, 8, 8), 0.001)])
    loss = objective(torch.nn.Identity(), (output, clean))
    # PSNR 20 dB and 60 dB; the floor 1e-5 caps the second at 50 dB (plus the 1e-6 error)
    expected = (np.log10(0.01 + 1e-5) + np.log10(1e-6 + 1e-5)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert desmoke.objective(desmoke.DesmokeTrainConfig(), None) is None, "mse: the driver's"


def test_log_mse_trains_and_is_recorded_with_every_epoch_kept(tmp_path: Path, tiny_weights: Path):
    from smokeclear.nets.loading import weights_metadata

    config = tmp_path / "log.yaml"
    config.write_text(
        "train: {patch_size: 64, batch_size: 2, steps_per_epoch: 2, max_epochs: 1,"
        " validation_size: 2, loss: log_mse}\n"
    )
    options = TrainOptions(
        out_dir=tmp_path / "run",
        config_path=config,
        init_weights=tiny_weights,
        progress=False,
        keep_epochs=True,
        max_epochs=2,
    )
    driver.train(DESMOKE, options)
    kept = sorted(path.name for path in (tmp_path / "run").glob("epoch*.safetensors"))
    assert kept == ["epoch001.safetensors", "epoch002.safetensors"]
    assert weights_metadata(tmp_path / "run" / "epoch001.safetensors")["epoch"] == 1
    metadata = weights_metadata(tmp_path / "run" / "desmoke.safetensors")
    assert metadata["loss"] == "mean over patches of log10(mse + 1e-05)"
    assert metadata["train_config"]["loss"] == "log_mse"


def test_config_rejects_an_unknown_loss(tmp_path: Path):
    config = tmp_path / "bad.yaml"
    config.write_text("train: {loss: l1}\n")
    with pytest.raises(UserError, match="loss must be one of mse, log_mse"):
        load_config(desmoke.DesmokeTrainConfig, config, section="train")
