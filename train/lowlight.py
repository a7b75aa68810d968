"""lowlight recipe: gamma-darkened frames, the paper's three losses and its evaluation.

Data (paper Sec. IV-A, adapted to the OR):

- clean frames (synthetic scene frames of the training seeds, and the training
  split of any clean-photo folders given by path), randomly cropped, flipped and
  rotated by multiples of 90 degrees, then darkened
  (:mod:`smokeclear.synthetic.lowlight`):

  - by the paper's global gamma in (2, 4),
  - or by a per-pixel gamma field (a lit spot near the scope, a dark far field;
    ours, ``local_fraction`` of the patches),
  - or not at all (``identity_fraction``: a well-lit frame must come out as it
    went in, so the restorer can stay on in a chain);

  plus Gaussian noise with a standard deviation drawn up to ``noise_max``;
- real pairs by path in the LOL layout (``low/`` + ``high/``, matched by file
  name; ``input``/``dark`` and ``normal``/``gt``/``target`` are also accepted).

Loss (paper Eq. 7): ``L_mse + 0.05 L_per + 1e-3 L_adv``. ``L_per`` is the mean
squared difference of VGG-16 ``relu2_2`` features (Eq. 5; the layer Johnson et
al., the paper's [53], use for restoration) and needs a local weights file;
without one it is off, which is logged as a warning and recorded in the weights.
``L_adv`` trains the paper's Table I discriminator (ten convs with LeakyReLU,
a sigmoid) with the standard GAN loss of Eq. 6; the generator minimises
``-log D(G(L))``.

Evaluation: the paper's synthetic protocol (gamma 3 + 1 % Gaussian noise) on
held-out frames, the same noise over dark cavities (a gamma field up to 3), and
any real pairs; PSNR, SSIM and the colour-constancy MSE in HSV of its Table III,
against the gamma inverse (``x ** (1/3)``, which knows the protocol's gamma) and
CLAHE on the lightness channel.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from smokeclear.config import bounded
from smokeclear.synthetic.lowlight import (
    EVAL_GAMMA,
    EVAL_NOISE_SIGMA,
    darken,
    gamma_field,
)
from smokeclear.train import data, evaluation
from smokeclear.train.evaluation import EvalRow
from smokeclear.train.losses import (
    AdversarialObjective,
    discriminator_loss,
    generator_loss,
)
from smokeclear.train.metrics import hsv_mse, psnr, ssim
from smokeclear.train.recipe import (
    TINY_TRAIN,
    EvalRun,
    Perceptual,
    Recipe,
    TrainingSampler,
    well_exposed_frames,
)

log = logging.getLogger(__name__)

#: Perceptual loss layer of VGG-16 (Eq. 5).
VGG_LAYERS = ("relu2_2",)
#: Table I: output channels of the discriminator's convs in multiples of the first's (32).
DISCRIMINATOR_CHANNELS = (1, 2, 2, 4, 4, 8, 8, 16, 16)
#: CLAHE baseline settings (OpenCV defaults for the clip limit, 8x8 tiles).
CLAHE_CLIP_LIMIT = 2.0
CLAHE_TILES = (8, 8)


@dataclass(frozen=True)
class LowlightTrainConfig:
    patch_size: int = bounded(128, 8, 4096)  # paper: 128 (the Table I discriminator's input)
    batch_size: int = bounded(10, 1, 4096)  # paper: 10
    learning_rate: float = bounded(
        1e-4, 0, 1, low_open=True
    )  # paper: 1e-4, halved every 8000 iterations
    betas: tuple[float, float] = bounded((0.9, 0.999), 0, 1)  # paper: Adam defaults
    weight_decay: float = bounded(1e-5, 0, 1e6)  # paper: 1e-5
    steps_per_epoch: int = bounded(200, 1, 10_000_000)
    max_epochs: int = bounded(100, 1, 1_000_000)  # paper: 20000 iterations
    patience: int = bounded(8, 0, 1_000_000)
    min_delta: float = bounded(1e-4, 0, 1e6)
    plateau_patience: int = bounded(0, 0, 1_000_000)
    perceptual_weight: float = bounded(0.05, 0, 1e6)  # paper: lambda_p
    adversarial_weight: float = bounded(1e-3, 0, 1e6)  # paper: lambda_a
    discriminator_width: int = bounded(32, 1, 1024)  # paper (Table I): 32, doubling to 512
    gamma_range: tuple[float, float] = bounded((2.0, 4.0), 1, 100)  # paper: gamma in (2, 4)
    noise_max: float = bounded(0.02, 0, 1)  # noise standard deviation drawn from U(0, noise_max)
    local_fraction: float = bounded(0.2, 0, 1)  # patches darkened by a gamma field (ours)
    identity_fraction: float = bounded(0.1, 0, 1)  # patches left at their exposure (ours)
    scene_fraction: float = bounded(
        0.5, 0, 1
    )  # share of patches from the synthetic scene (rest: photos)
    real_fraction: float = bounded(0.3, 0, 1)  # share of batches from real pairs, when given
    validation_size: int = bounded(32, 1, 100_000)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.patch_size < 8 or self.patch_size % 8:
            raise ValueError(f"patch_size must be a multiple of 8, got {self.patch_size}")
        if self.adversarial_weight > 0 and (self.patch_size < 128 or self.patch_size % 32):
            raise ValueError(
                "with the adversarial loss on, patch_size must be a multiple of 32 and at "
                "least 128 (the Table I discriminator: five stride-2 convs, then a 4x4 "
                f"conv); got {self.patch_size}"
            )
        low, high = self.gamma_range
        if not 1.0 <= low <= high:
            raise ValueError(f"gamma_range must satisfy 1 <= low <= high, got {self.gamma_range}")
        if self.local_fraction + self.identity_fraction > 1:
            raise ValueError("local_fraction + identity_fraction must be <= 1")


# --------------------------------------------------------------------------- data


def darken_for_training(
    clean: np.ndarray, config: LowlightTrainConfig, rng: np.random.Generator
) -> np.ndarray:
    """One training darkening of ``clean``: global gamma, gamma field or none, plus noise."""
    draw = rng.random()
    if draw < config.identity_fraction:
        gamma: float | np.ndarray = 1.0
    elif draw < config.identity_fraction + config.local_fraction:
        height, width = clean.shape[:2]
        gamma = gamma_field(height, width, float(rng.uniform(*config.gamma_range)), rng)
    else:
        gamma = float(rng.uniform(*config.gamma_range))
    return darken(clean, gamma, float(rng.uniform(0.0, config.noise_max)), rng)


@dataclass
class DarkSampler(TrainingSampler[LowlightTrainConfig]):
    """Draws ``(dark, clean)`` training batches; deterministic for a given generator."""

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(dark, clean)``, each ``(size, 3, P, P)`` float32 RGB in [0, 1]."""

        def synthetic() -> list[tuple[np.ndarray, np.ndarray]]:
            cleans = [self.clean_patch() for _ in range(size)]
            return [(darken_for_training(c, self.config, self.rng), c) for c in cleans]

        return data.real_or_synthetic_batch(
            self.frames.real_pairs, self.config, size, self.rng, synthetic
        )


# --------------------------------------------------------------------------- loss


class Discriminator(nn.Module):
    """The paper's Table I: ten convs with LeakyReLU, five of them 5x5 stride 2, a sigmoid.

    The last conv is 4x4 without padding: a 128 px input gives one score, larger
    inputs a grid of scores. Returns logits; the sigmoid is in the loss
    (``binary_cross_entropy_with_logits``, the same function, numerically safe).

    Shape:
        ``(B, 3, H, W)`` RGB in [0, 1], H and W multiples of 32, at least 128 ->
        ``(B, 1, H/32 - 3, W/32 - 3)``.
    """

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for index, multiple in enumerate(DISCRIMINATOR_CHANNELS):
            out_channels = width * multiple
            strided = index % 2 == 0  # Conv k-1: 5x5 stride 2; Conv k-2: 3x3 stride 1
            kernel, stride = (5, 2) if strided else (3, 1)
            layers += [
                nn.Conv2d(in_channels, out_channels, kernel, stride, padding=kernel // 2),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            in_channels = out_channels
        layers.append(nn.Conv2d(in_channels, 1, 4))
        self.body = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.body(image * 2.0 - 1.0)


def perceptual_mse(vgg: nn.Module, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 5: ``||phi(G(R)) - phi(I)||^2 / (C H W)``, averaged over layers and the batch."""
    with torch.no_grad():
        target_features = vgg(target)
    terms = [F.mse_loss(a, b) for a, b in zip(vgg(output), target_features, strict=True)]
    return torch.stack(terms).mean()


class LowlightObjective(AdversarialObjective):
    """The paper's Eq. 7 with its own discriminator and optimizer.

    Args:
        vgg: frozen VGG-16 features at :data:`VGG_LAYERS`; None turns ``L_per`` off.
    """

    def __init__(self, config: LowlightTrainConfig, vgg: nn.Module | None) -> None:
        super().__init__(
            config,
            vgg,
            config.adversarial_weight,
            lambda: Discriminator(config.discriminator_width),
            config.weight_decay,
        )

    def __call__(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        dark, clean = batch
        output = model(dark)
        terms = {"mse": F.mse_loss(output, clean)}
        if self.vgg is not None:
            terms["perceptual"] = perceptual_mse(self.vgg, output, clean)
        if self.adversary is not None:
            terms["adversarial"] = self._adversarial(output, clean)
        self.last_terms = {name: float(value.detach()) for name, value in terms.items()}
        weights = {
            "mse": 1.0,
            "perceptual": self.config.perceptual_weight,
            "adversarial": self.config.adversarial_weight,
        }
        return sum(weights[name] * value for name, value in terms.items())

    def _adversarial(self, output: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        """Step the discriminator on this batch, then return the generator's loss."""
        assert self.adversary is not None
        self.adversary.step(discriminator_loss, clean, output)
        return generator_loss(self.adversary.judge(output))


def _data_recipe(config: LowlightTrainConfig) -> dict[str, Any]:
    return {
        "darkening": f"clean ** gamma, gamma U{tuple(config.gamma_range)} (paper); "
        f"{config.local_fraction:.0%} a per-pixel gamma field (lit spot, dark far field); "
        f"{config.identity_fraction:.0%} left as they are; Gaussian noise sigma "
        f"U(0, {config.noise_max})",
        "augmentation": "random crops, flips, 90-degree rotations",
    }


def _loss(config: LowlightTrainConfig, objective: Any) -> dict[str, Any]:
    return {
        "terms": "mse + 0.05 perceptual + 1e-3 adversarial (Eq. 7)",
        "discriminator": f"Table I, first width {config.discriminator_width} (paper: 32)",
    }


# --------------------------------------------------------------------------- evaluation


def gamma_inverse(dark: np.ndarray, gamma: float = EVAL_GAMMA) -> np.ndarray:
    """Baseline: undo the protocol's gamma, ``dark ** (1 / gamma)`` (knows gamma; no denoising)."""
    return np.clip(dark, 0.0, 1.0) ** (1.0 / gamma)


def clahe(dark: np.ndarray) -> np.ndarray:
    """Baseline: CLAHE on the L channel of CIELAB (OpenCV, clip limit 2, 8x8 tiles)."""
    pixels = np.round(np.clip(dark, 0.0, 1.0) * 255).astype(np.uint8)
    lab = cv2.cvtColor(pixels, cv2.COLOR_RGB2LAB)
    equaliser = cv2.createCLAHE(clipLimit=CLAHE_CLIP_LIMIT, tileGridSize=CLAHE_TILES)
    lab[..., 0] = equaliser.apply(lab[..., 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB).astype(np.float32) / 255.0


#: Eval metrics: PSNR, SSIM and the paper's Table III colour errors.
METRICS: dict[str, evaluation.Metric] = {
    "psnr": psnr,
    "ssim": ssim,
    **{
        f"mse_{channel}": (lambda clean, output, c=channel: hsv_mse(clean, output)[c])
        for channel in ("hsv", "h", "s", "v")
    },
}


def evaluate(run: EvalRun) -> list[EvalRow]:
    """The paper's protocol and dark cavities on held-out frames, and any real pairs."""
    protocol, cavities = [], []
    for index, clean in enumerate(evaluation.held_out_cleans(run.options)):
        rng = np.random.default_rng([17, index])
        protocol.append((clean, darken(clean, EVAL_GAMMA, EVAL_NOISE_SIGMA, rng)))
        field = gamma_field(*clean.shape[:2], EVAL_GAMMA, rng)
        cavities.append((clean, darken(clean, field, EVAL_NOISE_SIGMA, rng)))
    noise = f"{EVAL_NOISE_SIGMA:.0%} noise"
    sets = [
        (f"paper protocol: gamma {EVAL_GAMMA:g} + {noise}", protocol),
        (f"dark cavities: gamma field up to {EVAL_GAMMA:g} + {noise}", cavities),
    ]
    baselines = {"input": lambda dark: dark, "gamma inverse": gamma_inverse, "CLAHE": clahe}
    return run.score(sets, baselines, METRICS)


RECIPE = Recipe(
    train_config=LowlightTrainConfig,
    sampler=DarkSampler,
    describe=lambda network: (
        f"width {network.width}, edge width {network.edge_width}, "
        f"{network.rnn_channels} RNN channels"
    ),
    data_recipe=_data_recipe,
    loss=_loss,
    evaluate=evaluate,
    objective=LowlightObjective,
    perceptual=Perceptual(
        "vgg16", VGG_LAYERS, "the paper's VGG-16 term (lambda_p 0.05)", "perceptual_weight"
    ),
    tiny_network={"width": 2, "edge_width": 2, "scale_channels": 1},
    tiny_train={
        **TINY_TRAIN,
        "patch_size": 128,  # the Table I discriminator's smallest input
        "adversarial_weight": 0.001,
        "discriminator_width": 2,
    },
    harmless=well_exposed_frames,
)
