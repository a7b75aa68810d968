"""A sixth restorer is a network, a recipe, a YAML and one registry entry.

This file is all of them for a toy restorer ("toy": a residual 8-channel net that
undoes a darkening), registered at test time and taken through train (one step)
-> eval -> export -> a short live run, in-process, through the same commands a
user types. The registry is restored afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from smokeclear.cli import main
from smokeclear.registry import REGISTRY, RestorerSpec, register, unregister
from smokeclear.train import data, evaluation
from smokeclear.train.evaluation import EvalRow
from smokeclear.train.recipe import EvalRun, Recipe, TrainingSampler, tiny_config_yaml

pytestmark = pytest.mark.timeout(900)

# --------------------------------------------------------------------------- nets/toy.py


@dataclass(frozen=True)
class ToyConfig:
    width: int = 8


class ToyNet(nn.Module):
    """``(B, 3, H, W)`` RGB float in [0, 1] -> the same, any H and W."""

    input_multiple = 1

    def __init__(self, config: ToyConfig) -> None:
        super().__init__()
        self.config = config
        self.body = nn.Sequential(
            nn.Conv2d(3, config.width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(config.width, 3, 3, padding=1),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return image + self.body(image)


# --------------------------------------------------------------------------- train/toy.py


@dataclass(frozen=True)
class ToyTrainConfig:
    patch_size: int = 32
    batch_size: int = 2
    learning_rate: float = 1e-3
    steps_per_epoch: int = 1
    max_epochs: int = 1
    patience: int = 1
    min_delta: float = 0.0
    plateau_patience: int = 0
    scene_fraction: float = 1.0
    validation_size: int = 2
    seed: int = 0


@dataclass
class DarkSampler(TrainingSampler[ToyTrainConfig]):
    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        cleans = [self.clean_patch() for _ in range(size)]
        return data.to_batch([clean * 0.5 for clean in cleans]), data.to_batch(cleans)


def evaluate(run: EvalRun) -> list[EvalRow]:
    cases = [(clean, clean * 0.5) for clean in evaluation.held_out_cleans(run.options)]
    return run.score([("darkened", cases)], {"input": lambda dark: dark})


RECIPE = Recipe(
    train_config=ToyTrainConfig,
    sampler=DarkSampler,
    describe=lambda network: f"width {network.width}",
    data_recipe=lambda config: {"darkening": "clean * 0.5"},
    loss=lambda config, objective: "mse",
    evaluate=evaluate,
    table_column="data",
    tiny_network={"width": 8},
    tiny_train={"patch_size": 32, "batch_size": 2},
)


# --------------------------------------------------------------------------- the entry


@pytest.fixture
def toy(tmp_path: Path):
    """The toy's registry entry (configs/toy.yaml in tmp), removed again afterwards."""
    config = tmp_path / "toy.yaml"
    config.write_text(tiny_config_yaml(RECIPE))
    spec = RestorerSpec(
        name="toy",
        summary="undoes a darkening (a test's toy)",
        network=f"{__name__}:ToyNet",
        network_config=f"{__name__}:ToyConfig",
        default_config=config,
        weights=tmp_path / "toy.safetensors",
        recipe=f"{__name__}:RECIPE",
        input_multiple=1,
    )
    register(spec)
    try:
        yield spec
    finally:
        unregister("toy")
    assert "toy" not in REGISTRY


def test_a_new_restorer_trains_evaluates_exports_and_runs_live(toy, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "toy", "--out", str(run)]) == 0
    weights = run / "toy.safetensors"
    assert weights.is_file(), capsys.readouterr().err
    assert "toy: best validation PSNR" in capsys.readouterr().out

    assert main(["eval", "toy", "--weights", str(weights), "--frames-per-scene", "1"]) == 0
    table = capsys.readouterr().out
    assert "| darkened | 4 |" in table and "toy PSNR (dB)" in table, table
    assert "Do no harm" in table and "| scene frames | 4 |" in table, "every eval has the row"

    exports = tmp_path / "onnx"
    assert main(["export", "toy", "--out", str(exports), "--weights", str(weights)]) == 0
    assert (exports / "toy.onnx").is_file() and (exports / "toy.fp16.onnx").is_file()

    arguments = ["--restorer", "toy", "--display", "none", "--max-frames", "5"]
    code = main([*arguments, "--size", "64x48", "--weights", str(weights)])
    assert code == 0, capsys.readouterr().err
