"""What the CLI hands the driver's ``train`` and ``evaluate``; unusable flags are errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smokeclear.train.data import EVAL_FRAMES_PER_SCENE, Split


@dataclass(frozen=True)
class TrainOptions:
    out_dir: Path
    clean_dirs: tuple[Path, ...] = ()
    config_path: Path | None = None
    resume: bool = False
    init_weights: Path | None = None  # start from these weights (fine-tuning)
    max_epochs: int | None = None
    steps_per_epoch: int | None = None
    progress: bool = True
    pairs_dirs: tuple[Path, ...] = ()  # real pairs in the restorer's PairLayout
    vgg_weights: Path | None = None  # torchvision VGG state dict for a perceptual loss
    keep_epochs: bool = False  # also keep each epoch's weights (epochNNN.safetensors)


@dataclass(frozen=True)
class EvalOptions:
    weights: Path | None = None
    clean_dirs: tuple[Path, ...] = ()
    frames_per_scene: int = EVAL_FRAMES_PER_SCENE
    json_path: Path | None = None
    examples_path: Path | None = None  # a PNG of one case per row, every method side by side
    pairs_dirs: tuple[Path, ...] = ()  # also score real pairs in the restorer's PairLayout
    work_scale: float = 1.0  # run the network at this scale of each frame, as the runtime does
    #: the held-out split scored: "test" to report, "val" to tune on (gate thresholds...)
    split: Split = "test"
    #: network config values replacing the weights' own (``--set``), e.g. a gate's thresholds
    network_overrides: dict[str, Any] = field(default_factory=dict)
