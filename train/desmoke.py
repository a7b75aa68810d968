"""desmoke recipe: synthetic smoke data, MSE training and the paper's evaluation.

Data: smoke rendered over clean frames (scene frames and any folders of clean
images given by path): the synthetic scene's own plumes, and varied smoke
(:func:`smokeclear.synthetic.smoke.render_smoke`: haze, clouds, plumes and wisps,
white-grey to yellow-brown, lit by the scope light, scattering what lies behind
it). A share of patches has no smoke (target = input) and a share only a trace,
so the network learns to leave clean frames alone. Crops are rescaled first, so
the network sees scenes at the sizes both work scales give it.

Evaluation (paper Sec. 4.3.1): held-out clean frames with cloud smoke at 50 / 75 /
100 % opacity (low / medium / high), PSNR and SSIM of the smoky input, of the dark
channel prior and of the model. A row uses the scene's own plumes, and four rows
the unseen generator (:mod:`smokeclear.synthetic.smoke_heldout`, imported by the
evaluation only) at its density levels.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from smokeclear.config import bounded
from smokeclear.nets.loading import build_network, load_restorer, save_weights
from smokeclear.registry import get_restorer
from smokeclear.synthetic.smoke import (
    DENSITY_OPACITY,
    TRACE_DENSITY,
    cloud_density,
    composite_smoke,
    random_smoke_colour,
    render_smoke,
)
from smokeclear.train import data, evaluation
from smokeclear.train.data import SCENE_EVAL_SIZE
from smokeclear.train.dcp import dehaze_dcp
from smokeclear.train.evaluation import EvalRow
from smokeclear.train.loop import Batch, StatelessObjective
from smokeclear.train.recipe import TINY_TRAIN, EvalRun, Recipe, TrainingSampler

log = logging.getLogger(__name__)

#: The training losses ``loss:`` names.
LOSSES = ("mse", "log_mse")


@dataclass(frozen=True)
class DesmokeTrainConfig:
    patch_size: int = bounded(128, 8, 4096)
    batch_size: int = bounded(8, 1, 4096)
    learning_rate: float = bounded(1e-3, 0, 1, low_open=True)
    steps_per_epoch: int = bounded(200, 1, 10_000_000)
    max_epochs: int = bounded(40, 1, 1_000_000)
    patience: int = bounded(8, 0, 1_000_000)
    min_delta: float = bounded(1e-4, 0, 1e6)
    plateau_patience: int = bounded(0, 0, 1_000_000)
    scene_fraction: float = bounded(0.5, 0, 1)
    #: share of patches without smoke (target = input): do no harm on clean frames
    identity_fraction: float = bounded(0.2, 0, 1)
    #: share of patches with only a trace of smoke (peak density <= TRACE_DENSITY)
    trace_fraction: float = bounded(0.1, 0, 1)
    #: share of the smoky patches that are scene frames with the scene's own plumes
    plume_fraction: float = bounded(0.3, 0, 1)
    #: share of render_smoke draws that are the paper's cloud layers (its evaluation's kind)
    paper_cloud_fraction: float = bounded(0.25, 0, 1)
    #: share of render_smoke draws whose peak density lies in the upper 40 % (heavy smoke)
    heavy_fraction: float = bounded(0.0, 0, 1)
    scale_range: tuple[float, float] = bounded((0.5, 1.0), 0.1, 4)
    #: "mse" (the paper's) or "log_mse": the mean over patches of log10(MSE + floor),
    #: so a patch counts by its PSNR and a clean patch's small error is not drowned out
    loss: str = "mse"
    #: log_mse's floor: errors below it (PSNR above -10 log10 of it) no longer count
    log_mse_floor: float = bounded(1e-5, 0, 1, low_open=True)
    validation_size: int = bounded(48, 1, 100_000)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.identity_fraction + self.trace_fraction > 1.0:
            raise ValueError(
                f"identity_fraction {self.identity_fraction} + trace_fraction "
                f"{self.trace_fraction} exceed 1"
            )
        low, high = self.scale_range
        if low > high:
            raise ValueError(f"scale_range ({low}, {high}) must go from low to high")


@dataclass
class PairSampler(TrainingSampler[DesmokeTrainConfig]):
    """Draws (smoky, clean) training patches; deterministic for a given generator."""

    def pair(self) -> tuple[np.ndarray, np.ndarray]:
        """One ``(smoky, clean)`` pair of ``(patch, patch, 3)`` float32 RGB in [0, 1]."""
        rng, config = self.rng, self.config
        share = rng.random()
        if share < config.identity_fraction:
            clean = self.clean_patch()
            smoky = clean
        elif share < config.identity_fraction + config.trace_fraction:
            clean = self.clean_patch()
            smoky = render_smoke(clean, rng, max_density=TRACE_DENSITY)
        elif self.frames.scenes and rng.random() < config.plume_fraction:
            scene = self.frames.scenes[int(rng.integers(len(self.frames.scenes)))]
            frame = scene.render(int(rng.integers(0, 20 * 60 * 30)))
            smoky, clean = data.random_crop(
                (data.bgr8_to_rgb(frame.smoky), data.bgr8_to_rgb(frame.clean)),
                config.patch_size,
                rng,
                config.scale_range,
            )
            if rng.random() < 0.5:  # more smoke over the plumes: denser, more varied
                smoky = self.smoke(np.ascontiguousarray(smoky))
        else:
            clean = self.clean_patch()
            smoky = self.smoke(clean)
        if rng.random() < 0.5:
            smoky, clean = smoky[:, ::-1], clean[:, ::-1]
        return np.clip(smoky, 0.0, 1.0), clean

    def smoke(self, clean: np.ndarray) -> np.ndarray:
        """``clean`` behind :func:`render_smoke` at this config's paper-cloud and heavy shares."""
        return render_smoke(
            clean,
            self.rng,
            paper_fraction=self.config.paper_cloud_fraction,
            heavy_fraction=self.config.heavy_fraction,
        )

    def batch(self, size: int) -> Batch:
        pairs = [self.pair() for _ in range(size)]
        smoky = np.stack([p[0] for p in pairs]).transpose(0, 3, 1, 2)
        clean = np.stack([p[1] for p in pairs]).transpose(0, 3, 1, 2)
        return torch.from_numpy(np.ascontiguousarray(smoky)), torch.from_numpy(
            np.ascontiguousarray(clean)
        )


class LogMseObjective(StatelessObjective):
    """The mean over patches of ``log10(MSE + floor)``: minus a tenth of their mean PSNR.

    Under plain MSE a batch is ruled by its smokiest patches (an error of 0.01 against a
    clean patch's 0.0001), so the network learns to trade a clean frame's exactness for
    a little more smoke removal; here a dB gained on a clean patch counts as much as a
    dB on smoke, as in the eval's mean PSNR. Below ``floor`` an error no longer counts.
    """

    def __init__(self, floor: float) -> None:
        self.floor = floor

    def __call__(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        smoky, clean = batch
        mse = (model(smoky) - clean).pow(2).flatten(1).mean(dim=1)
        return torch.log10(mse + self.floor).mean()


def objective(config: DesmokeTrainConfig, vgg: nn.Module | None) -> LogMseObjective | None:
    """``loss: log_mse``'s objective; None for plain MSE."""
    return LogMseObjective(config.log_mse_floor) if config.loss == "log_mse" else None


def describe_loss(config: DesmokeTrainConfig, objective: LogMseObjective | None) -> str:
    if config.loss == "log_mse":
        return f"mean over patches of log10(mse + {config.log_mse_floor:g})"
    return "mse"


# --------------------------------------------------------------------------- evaluation


def evaluate(run: EvalRun) -> list[EvalRow]:
    """The paper's Table 1 on our held-out data, plus a row for the scene's plumes."""
    options = run.options
    images = evaluation.held_out_cleans(options)
    sets = []
    for level_index, (level, opacity) in enumerate(DENSITY_OPACITY.items()):
        cases = []
        for image_index, clean in enumerate(images):
            rng = np.random.default_rng([7, level_index, image_index])
            density = cloud_density(*clean.shape[:2], rng, opacity)
            smoky = np.clip(composite_smoke(clean, density, random_smoke_colour(rng)), 0, 1)
            cases.append((clean, smoky.astype(np.float32)))
        sets.append((level, cases))
    plume_cases = []
    for count, scene in enumerate(data.scenes_for(options.split, *SCENE_EVAL_SIZE), start=1):
        for index in range(0, 3000, 7):
            frame = scene.render(index)
            if frame.smoke_density.mean() > 0.05:
                plume_cases.append((data.bgr8_to_rgb(frame.clean), data.bgr8_to_rgb(frame.smoky)))
            if len(plume_cases) >= options.frames_per_scene * count:
                break
    sets.append(("scene plumes", plume_cases))
    sets += unseen_smoke_sets(images)
    return run.score(sets, {"smoky input": lambda smoky: smoky, "DCP": dehaze_dcp})


def unseen_smoke_sets(images: list[np.ndarray]) -> list[tuple[str, list]]:
    """``("unseen: LEVEL", cases)`` per density level of the held-out generator."""
    # Imported here, not at the top: the training sampler above must never reach it
    # (tests/train/test_desmoke_recipe.py checks).
    from smokeclear.synthetic.smoke_heldout import HELDOUT_LEVELS, heldout_smoke

    sets = []
    for level_index, (level, transmission) in enumerate(HELDOUT_LEVELS.items()):
        cases = [
            (clean, heldout_smoke(clean, np.random.default_rng([11, level_index, k]), transmission))
            for k, clean in enumerate(images)
        ]
        sets.append((f"unseen: {level}", cases))
    return sets


RECIPE = Recipe(
    train_config=DesmokeTrainConfig,
    sampler=PairSampler,
    describe=lambda network: f"width {network.width}",
    data_recipe=lambda config: {
        "smoke": "scene plumes (plume_fraction of smoky patches, half with more smoke "
        "on top) and render_smoke: haze / clouds / plume / wisps, peak density U(0.01, 0.97), "
        "white-grey to yellow-brown, scope light, scattering blur",
        "paper_cloud_fraction": config.paper_cloud_fraction,
        "heavy_fraction": config.heavy_fraction,
        "identity_fraction": config.identity_fraction,
        "trace_fraction": config.trace_fraction,
        "trace_density": TRACE_DENSITY,
        "plume_fraction": config.plume_fraction,
        "scale_range": list(config.scale_range),
    },
    loss=describe_loss,
    objective=objective,
    evaluate=evaluate,
    table_column="density",
    tiny_network={"width": 4, "max_channels": 16},
    tiny_train={**TINY_TRAIN, "patch_size": 64},
)


def gated_network(weights: Path) -> nn.Module:
    """The desmoke network in ``weights`` with a smoke gate added, fully open
    (:meth:`DesmokeNet.open_gate`), so that fine-tuning starts from what it does."""
    spec = get_restorer("desmoke")
    trained = load_restorer(spec, weights)
    if trained.config.smoke_gate:
        raise ValueError(f"{weights} already has a smoke gate; fine-tune it with --init")
    config = dataclasses.replace(trained.config, smoke_gate=True)
    network = build_network(spec, config)
    missing, unexpected = network.load_state_dict(trained.state_dict(), strict=False)
    if unexpected or any(not key.startswith("to_gate.") for key in missing):
        raise ValueError(f"{weights} does not fit a gated desmoke net: {missing} {unexpected}")
    network.open_gate()
    return network


def main(argv: list[str] | None = None) -> None:
    """``python -m smokeclear.train.desmoke gate IN OUT``: IN's network with an open smoke gate."""
    parser = argparse.ArgumentParser(prog="python -m smokeclear.train.desmoke")
    parser.add_argument("what", choices=["gate"], help="the start to write")
    parser.add_argument("weights", type=Path, help="the desmoke .safetensors to start from")
    parser.add_argument("out", type=Path, help="the .safetensors file to write")
    args = parser.parse_args(argv)
    try:
        network = gated_network(args.weights)
    except ValueError as error:
        parser.error(str(error))
    save_weights(
        network,
        args.out,
        get_restorer("desmoke"),
        {"start": f"{args.weights.name} with an open smoke gate (train.desmoke.gated_network)"},
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
