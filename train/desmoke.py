"""desmoke recipe: synthetic smoke data, MSE training and the paper's evaluation.

Data: smoke rendered over clean frames with the scattering model, in two styles
that the paper's own data mixes (Blender plumes and Photoshop clouds): plumes of
the synthetic laparoscopic scene, and cloud layers at random opacity over clean
frames (scene frames and any folders of clean images given by path).

Evaluation (paper Sec. 4.3.1): held-out clean frames with cloud smoke at 50 / 75 /
100 % opacity (low / medium / high), PSNR and SSIM of the smoky input, of the dark
channel prior and of the model. A fourth row uses the scene's own plumes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from smokeclear.config import bounded
from smokeclear.synthetic.smoke import (
    DENSITY_OPACITY,
    cloud_density,
    composite_smoke,
    random_smoke_colour,
)
from smokeclear.train import data, evaluation
from smokeclear.train.data import SCENE_EVAL_SIZE
from smokeclear.train.dcp import dehaze_dcp
from smokeclear.train.evaluation import EvalRow
from smokeclear.train.loop import Batch
from smokeclear.train.recipe import TINY_TRAIN, EvalRun, Recipe, TrainingSampler

log = logging.getLogger(__name__)


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
    validation_size: int = bounded(48, 1, 100_000)
    seed: int = 0


@dataclass
class PairSampler(TrainingSampler[DesmokeTrainConfig]):
    """Draws (smoky, clean) training patches; deterministic for a given generator."""

    def pair(self) -> tuple[np.ndarray, np.ndarray]:
        """One ``(patch, patch, 3)`` float32 RGB pair in [0, 1]."""
        rng = self.rng
        if not self.frames.photos or rng.random() < self.config.scene_fraction:
            scene = self.frames.scenes[int(rng.integers(len(self.frames.scenes)))]
            frame = scene.render(int(rng.integers(0, 20 * 60 * 30)))
            smoky, clean = data.random_crop(
                (data.bgr8_to_rgb(frame.smoky), data.bgr8_to_rgb(frame.clean)),
                self.config.patch_size,
                rng,
            )
            if rng.random() < 0.5:  # clouds over the plumes: denser, more varied smoke
                smoky = self._clouds(smoky)
        else:
            photo = self.frames.photos[int(rng.integers(len(self.frames.photos)))]
            (clean,) = data.random_crop((photo,), self.config.patch_size, rng)
            smoky = self._clouds(clean)
        if rng.random() < 0.5:
            smoky, clean = smoky[:, ::-1], clean[:, ::-1]
        return np.clip(smoky, 0.0, 1.0), clean

    def batch(self, size: int) -> Batch:
        pairs = [self.pair() for _ in range(size)]
        smoky = np.stack([p[0] for p in pairs]).transpose(0, 3, 1, 2)
        clean = np.stack([p[1] for p in pairs]).transpose(0, 3, 1, 2)
        return torch.from_numpy(np.ascontiguousarray(smoky)), torch.from_numpy(
            np.ascontiguousarray(clean)
        )

    def _clouds(self, image: np.ndarray) -> np.ndarray:
        rng = self.rng
        density = cloud_density(*image.shape[:2], rng, opacity=float(rng.uniform(0.2, 1.0)))
        return composite_smoke(image, density, random_smoke_colour(rng))


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
    for scene in data.scenes_for("test", *SCENE_EVAL_SIZE):
        for index in range(0, 3000, 7):
            frame = scene.render(index)
            if frame.smoke_density.mean() > 0.05:
                plume_cases.append((data.bgr8_to_rgb(frame.clean), data.bgr8_to_rgb(frame.smoky)))
            if len(plume_cases) >= options.frames_per_scene * (1 + scene.seed - 2000):
                break
    sets.append(("scene plumes", plume_cases))
    return run.score(sets, {"smoky input": lambda smoky: smoky, "DCP": dehaze_dcp})


RECIPE = Recipe(
    train_config=DesmokeTrainConfig,
    sampler=PairSampler,
    describe=lambda network: f"width {network.width}",
    data_recipe=lambda config: {
        "smoke": "scattering composite I = J(1-d) + A d; scene plumes and fractal "
        "cloud layers at opacity U(0.2, 1.0) (max density 0.85)"
    },
    loss=lambda config, objective: "mse",
    evaluate=evaluate,
    table_column="density",
    tiny_network={"width": 4, "max_channels": 16},
    tiny_train={**TINY_TRAIN, "patch_size": 64},
)
