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
    Capture,
    capture,
    darken,
    gamma_field,
    radial_falloff,
    training_curve,
)
from smokeclear.train import data, evaluation
from smokeclear.train.evaluation import WELL_EXPOSED_LUMA, EvalRow, mean_luma
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
    local_fraction: float = bounded(0.1, 0, 1)  # patches darkened by a gamma field (ours)
    identity_fraction: float = bounded(0.35, 0, 1)  # well-exposed patches, target = input (ours)
    identity_noise_max: float = bounded(0.01, 0, 1)  # sensor noise on half of those, kept
    camera_fraction: float = bounded(0.3, 0, 1)  # patches through the camera model (ours)
    exposure_range: tuple[float, float] = bounded((4.0, 16.0), 1, 1000)  # light lost, log-uniform
    shot_noise_range: tuple[float, float] = bounded((1e-5, 1e-3), 0, 1)  # Poisson gain, log-unif.
    read_noise_max: float = bounded(1e-3, 0, 1)  # noise floor sigma in linear light, uniform
    cast_max: float = bounded(0.25, 0, 2)  # |log| of the red and blue white-balance gains
    vignette_max: float = bounded(0.6, 0, 0.95)  # light the corners lose
    far_field_max: float = bounded(3.0, 1, 100)  # gamma field before the camera, up to this
    scale_range: tuple[float, float] = bounded((0.5, 1.0), 0.1, 4)  # runtime work scales
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
        if self.local_fraction + self.identity_fraction + self.camera_fraction > 1:
            raise ValueError("local_fraction + identity_fraction + camera_fraction must be <= 1")
        for name in ("exposure_range", "shot_noise_range", "scale_range"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"{name} must satisfy 0 < low <= high, got {(low, high)}")


# --------------------------------------------------------------------------- data


#: Darkenings drawn again (at most this often) while the result is not yet under-exposed.
DARKEN_TRIES = 3


def darken_for_training(
    clean: np.ndarray, config: LowlightTrainConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One training pair ``(input, target)`` from ``clean``; both ``(H, W, 3)`` float32 in [0, 1].

    A draw picks one of: a well-exposed frame (``identity_fraction``; half of them
    with slight sensor noise, and the target is the input as it is, so a good
    frame passes unchanged), a gamma field (``local_fraction``), the camera model
    (``camera_fraction``, :func:`draw_capture`), or else the paper's global gamma.
    The gamma darkenings add Gaussian noise up to ``noise_max``.

    Only a patch whose mean luma is in :data:`WELL_EXPOSED_LUMA` can be an identity
    patch (a dark one is darkened instead), and a darkening is drawn again, up to
    :data:`DARKEN_TRIES` times, while its result is still as bright as a
    well-exposed frame: a patch that looks well exposed must never have a brighter
    target, or the net learns to brighten good frames.
    """
    draw = rng.random()
    low, high = WELL_EXPOSED_LUMA
    if draw < config.identity_fraction and low <= mean_luma(clean) <= high:
        frame = np.clip(clean, 0.0, 1.0).astype(np.float32)
        if rng.random() < 0.5:
            sigma = float(rng.uniform(0.0, config.identity_noise_max))
            frame = darken(frame, 1.0, sigma, rng)
        return frame, frame
    draw = rng.uniform(config.identity_fraction, 1.0) if draw < config.identity_fraction else draw
    for _ in range(DARKEN_TRIES):
        dark = _darkening(clean, draw - config.identity_fraction, config, rng)
        if mean_luma(dark) < low:
            break
    return dark, clean


def _darkening(
    clean: np.ndarray, draw: float, config: LowlightTrainConfig, rng: np.random.Generator
) -> np.ndarray:
    """The camera model, a gamma field or the paper's gamma, as ``draw`` in [0, 1 -
    identity_fraction) falls."""
    height, width = clean.shape[:2]
    if draw < config.camera_fraction:
        if rng.random() < 0.3:  # a dark far field as well as a dim light
            field = gamma_field(height, width, float(rng.uniform(1.0, config.far_field_max)), rng)
            source = darken(clean, field, 0.0, rng)
        else:
            source = clean
        return capture(source, draw_capture(height, width, config, rng), rng)
    if draw < config.camera_fraction + config.local_fraction:
        gamma: float | np.ndarray = gamma_field(
            height, width, float(rng.uniform(*config.gamma_range)), rng
        )
    else:
        gamma = float(rng.uniform(*config.gamma_range))
    return darken(clean, gamma, float(rng.uniform(0.0, config.noise_max)), rng)


def log_uniform(low: float, high: float, rng: np.random.Generator) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def draw_capture(
    height: int, width: int, config: LowlightTrainConfig, rng: np.random.Generator
) -> Capture:
    """A random training capture: a training CRF and an exposure loss always; sensor
    noise (90 %), colour noise within it (50 %), a white-balance cast (50 %) and
    vignetting (50 %) as drawn."""
    gains = (1.0, 1.0, 1.0)
    if rng.random() < 0.5:
        red, blue = np.exp(rng.uniform(-config.cast_max, config.cast_max, 2))
        gains = (float(red), 1.0, float(blue))
    vignette = None
    if rng.random() < 0.5:
        strength = float(rng.uniform(0.0, config.vignette_max))
        vignette = radial_falloff(height, width, strength, float(rng.uniform(2.0, 4.0)), rng)
    shot, read, chroma = 0.0, 0.0, 0.0
    if rng.random() < 0.9:
        shot = log_uniform(*config.shot_noise_range, rng)
        read = float(rng.uniform(0.0, config.read_noise_max))
        chroma = float(rng.uniform(0.0, 1.0)) if rng.random() < 0.5 else 0.0
    return Capture(
        curve=training_curve(rng),
        exposure=log_uniform(*config.exposure_range, rng),
        gains=gains,
        vignette=vignette,
        shot_noise=shot,
        read_noise=read,
        chroma_noise=chroma,
    )


@dataclass
class DarkSampler(TrainingSampler[LowlightTrainConfig]):
    """Draws ``(dark, clean)`` training batches; deterministic for a given generator."""

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(dark, clean)``, each ``(size, 3, P, P)`` float32 RGB in [0, 1]."""

        def synthetic() -> list[tuple[np.ndarray, np.ndarray]]:
            return [
                darken_for_training(self.clean_patch(), self.config, self.rng) for _ in range(size)
            ]

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
    paper = 1.0 - config.identity_fraction - config.camera_fraction - config.local_fraction
    return {
        "darkening": f"{paper:.0%} clean ** gamma, gamma U{tuple(config.gamma_range)} (paper); "
        f"{config.local_fraction:.0%} a per-pixel gamma field (lit spot, dark far field); "
        f"both with Gaussian noise sigma U(0, {config.noise_max}); "
        f"{config.camera_fraction:.0%} a camera model: CRF (gamma 2.2, sRGB, Rec. 709, "
        f"gamma U(1.8, 2.6)) inverted, exposure 1/k in linear light with k log-U"
        f"{tuple(config.exposure_range)}, Poisson-Gaussian noise (gain log-U"
        f"{tuple(config.shot_noise_range)}, floor U(0, {config.read_noise_max}), part colour "
        f"noise), a white-balance cast (|log gain| <= {config.cast_max}), vignetting (up to "
        f"{config.vignette_max:.0%}), a far-field gamma field up to {config.far_field_max} "
        f"(30 %), CRF and 8 bits; {config.identity_fraction:.0%} well-exposed, target = input "
        f"(half with noise up to {config.identity_noise_max})",
        "augmentation": f"random rescaling by U{tuple(config.scale_range)}, crops, flips, "
        "90-degree rotations",
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
    """The paper's protocol, dark cavities and the held-out camera on held-out frames,
    and any real pairs."""
    # Imported here, not at the top: training (the sampler) must never see the
    # held-out camera; tests/train/test_lowlight_recipe.py holds it to that.
    from smokeclear.synthetic.lowlight_heldout import HELDOUT_EXPOSURES, heldout_darken

    protocol, cavities = [], []
    heldout: dict[float, list[tuple[np.ndarray, np.ndarray]]] = {k: [] for k in HELDOUT_EXPOSURES}
    for index, clean in enumerate(evaluation.held_out_cleans(run.options)):
        rng = np.random.default_rng([17, index])
        protocol.append((clean, darken(clean, EVAL_GAMMA, EVAL_NOISE_SIGMA, rng)))
        field = gamma_field(*clean.shape[:2], EVAL_GAMMA, rng)
        cavities.append((clean, darken(clean, field, EVAL_NOISE_SIGMA, rng)))
        for exposure, cases in heldout.items():
            camera_rng = np.random.default_rng([23, index, round(exposure)])
            cases.append((clean, heldout_darken(clean, exposure, camera_rng)))
    noise = f"{EVAL_NOISE_SIGMA:.0%} noise"
    sets = [
        (f"paper protocol: gamma {EVAL_GAMMA:g} + {noise}", protocol),
        (f"dark cavities: gamma field up to {EVAL_GAMMA:g} + {noise}", cavities),
    ]
    sets += [
        (f"held-out camera: 1/{exposure:g} of the light", cases)
        for exposure, cases in heldout.items()
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
