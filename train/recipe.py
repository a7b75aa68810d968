"""What a restorer's training recipe hands the generic driver (:mod:`smokeclear.train.driver`).

A recipe module (``train/x.py``) holds only what is particular to its restorer: the
data sampler, the objective, how validation scores, the evaluation sets and
baselines, and the words that go into the weights' metadata. It ends with one
``RECIPE = Recipe(...)`` that the registry entry names (``"smokeclear.train.x:RECIPE"``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
from torch import nn

from smokeclear.train import data
from smokeclear.train.evaluation import (
    DEFAULT_METRICS,
    HARM_METRICS,
    EvalRow,
    Method,
    Metric,
    evaluate_sets,
    network_method,
    nothing_to_fix,
    well_exposed,
)
from smokeclear.train.loop import Batch, Objective, Validation
from smokeclear.train.options import EvalOptions

#: ``(clean, degraded)`` cases of one evaluation set, ``(H, W, 3)`` float32 RGB in [0, 1].
Cases = list[tuple[np.ndarray, np.ndarray]]


class Sampler(Protocol):
    def batch(self, size: int) -> Any:
        """One training batch; the recipe's objective (or MSE) knows its form."""
        ...


@dataclass(frozen=True)
class TrainingFrames:
    """A recipe's image sources for one split: clean photos (``(H, W, 3)`` float32 RGB
    in [0, 1]), synthetic scenes, and ``(degraded, clean)`` real pairs."""

    photos: list[np.ndarray]
    scenes: list[Any]
    real_pairs: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)


#: The tests' tiny training run: one epoch of one step on small batches; a recipe's
#: ``tiny_train`` starts from it.
TINY_TRAIN = {
    "patch_size": 32,
    "batch_size": 2,
    "steps_per_epoch": 1,
    "max_epochs": 1,
    "validation_size": 2,
}

ConfigT = TypeVar("ConfigT")


@dataclass
class TrainingSampler(Generic[ConfigT]):
    """What every recipe's sampler draws from: its frames, its train config and a
    generator (deterministic for a given one); subclasses add ``batch``."""

    frames: TrainingFrames
    config: ConfigT
    rng: np.random.Generator = field(default_factory=np.random.default_rng)

    def clean_patch(self) -> np.ndarray:
        """A clean ``config.patch_size`` crop of a scene frame or photo (see
        :func:`data.clean_patch`), ``(P, P, 3)`` float32 RGB in [0, 1], rescaled first
        by the config's ``scale_range`` where it has one."""
        config = self.config
        return data.clean_patch(
            self.frames.photos,
            self.frames.scenes,
            config.patch_size,
            config.scene_fraction,
            self.rng,
            getattr(config, "scale_range", (1.0, 1.0)),
        )


@dataclass(frozen=True)
class Perceptual:
    """A VGG feature loss the recipe trains with when ``--vgg-weights`` is given.

    ``weight_field`` names the train-config weight that turns it off at 0; ``key``
    names the term in the weights' loss metadata.
    """

    arch: str  # "vgg16" or "vgg19"
    layers: tuple[str, ...]
    term: str  # how the warning names it, e.g. "the paper's VGG-19 term (lambda 0.2)"
    weight_field: str
    key: str = "perceptual"

    def describe(self) -> str:
        """e.g. ``"VGG-19 relu5_4"``."""
        return f"VGG-{self.arch.removeprefix('vgg')} " + ",".join(self.layers)


@dataclass(frozen=True)
class EvalRun:
    """What a recipe's evaluation gets from the driver."""

    name: str  # the restorer's: the network's method name in the tables
    model: nn.Module  # FP32, eval mode, on the CPU, at the options' work scale
    config: Any  # the recipe's train config from the restorer's default YAML
    options: EvalOptions
    real_pairs: list[tuple[str, Cases]]  # ("real pairs: FOLDER", cases) per --pairs-dir
    trained_dirs: tuple[str, ...] = ()  # names of the clean folders the weights trained on

    def methods(self, baselines: dict[str, Method]) -> dict[str, Method]:
        """The degraded input and classical ``baselines``, then the network under its name."""
        return {**baselines, self.name: network_method(self.model)}

    def score(
        self,
        sets: list[tuple[str, Cases]],
        baselines: dict[str, Method],
        metrics: dict[str, Metric] = DEFAULT_METRICS,
    ) -> list[EvalRow]:
        """``sets`` and the real pairs through :meth:`methods`: the table's rows, written
        where the options say."""
        return evaluate_sets(
            sets + self.real_pairs,
            self.methods(baselines),
            self.options.json_path,
            self.options.examples_path,
            metrics,
        )


#: Frame sets with nothing to fix, by label, for a recipe's do-no-harm rows.
FrameSets = list[tuple[str, list[np.ndarray]]]


def clean_frames(run: EvalRun) -> FrameSets:
    """The default frames with nothing to fix: held-out clean scene frames and
    ``--clean-dir`` folders (see :func:`evaluation.nothing_to_fix`)."""
    return nothing_to_fix(run.options, run.trained_dirs)


def well_exposed_frames(run: EvalRun) -> FrameSets:
    """:func:`clean_frames` that are well exposed (:func:`evaluation.well_exposed`)."""
    return [
        (label, [image for image in images if well_exposed(image)])
        for label, images in clean_frames(run)
    ]


def harm_metrics(run: EvalRun) -> dict[str, Metric]:
    return HARM_METRICS


def pair_validation(batch: Any, config: Any) -> Batch:
    """The default validation: PSNR on the first two parts of a sampler's batch."""
    return batch[0], batch[1]


def same_config(config: Any) -> Any:
    return config


@dataclass(frozen=True)
class Recipe:
    """A restorer's training and evaluation, in the pieces the driver does not share.

    Args:
        train_config: frozen dataclass of the YAML's ``train:`` section (with ``seed``,
            ``batch_size``, ``patch_size``, ``validation_size`` and the schedule fields).
        sampler: ``(frames, config, rng) -> Sampler``, deterministic for a given rng.
        describe: network config -> its size for the log, e.g. ``"width 8"``.
        data_recipe: train config -> how the training data is made (metadata).
        loss: ``(train config, objective or None) -> `` the loss's metadata.
        evaluate: the held-out sets, baselines and scores.
        table_column: the first column of the eval table (one row per set); None: a
            block per set with a row per method.
        objective: ``(train config, VGG features or None) -> Objective``; None: MSE.
        perceptual: its optional VGG loss.
        validation_config: the train config the validation sampler draws with.
        validation: ``(validation batch, config) ->`` PSNR pairs or a :class:`Validation`.
        tiny_network, tiny_train: a tiny config (8-channel nets, small patches) for tests.
        harmless: the frames with nothing to fix that the do-no-harm rows score the
            network's output against its input on.
        harm_metrics: what those rows measure (PSNR, SSIM, CIEDE2000).
    """

    train_config: type
    sampler: Callable[[TrainingFrames, Any, np.random.Generator], Sampler]
    describe: Callable[[Any], str]
    data_recipe: Callable[[Any], dict[str, Any]]
    loss: Callable[[Any, Objective | None], Any]
    evaluate: Callable[[EvalRun], list[EvalRow]]
    tiny_network: Mapping[str, Any]
    tiny_train: Mapping[str, Any]
    table_column: str | None = None
    objective: Callable[[Any, nn.Module | None], Objective] | None = None
    perceptual: Perceptual | None = None
    validation_config: Callable[[Any], Any] = same_config
    validation: Callable[[Any, Any], Batch | Validation] = pair_validation
    harmless: Callable[[EvalRun], FrameSets] = clean_frames
    harm_metrics: Callable[[EvalRun], dict[str, Metric]] = harm_metrics


def tiny_config_yaml(recipe: Recipe) -> str:
    """The recipe's tiny config as YAML (``network:`` and ``train:`` sections)."""
    import yaml

    return yaml.safe_dump(
        {"network": dict(recipe.tiny_network), "train": dict(recipe.tiny_train)}, sort_keys=False
    )


def write_tiny_config(recipe: Recipe, path: Path) -> Path:
    path.write_text(tiny_config_yaml(recipe))
    return path
