"""enhance recipe: weak-camera pairs (or real ones), the DPED losses and the evaluation.

Data (paper Sec. 2-3, adapted to the OR):

- real pairs by path, DPED's layout first: a folder holding the weak camera's
  images (``iphone/``, ``blackberry/``, ``sony/``, ``phone/`` or ``input/``) and the
  good camera's (``canon/``, ``dslr/`` or ``target/``), matched by file name, e.g.
  ``dped/iphone/training_data``. ``real_fraction`` of the batches come from them;
- otherwise, or for the rest: clean frames (synthetic scene frames of the training
  seeds, and the training split of any clean-photo folders given by path), randomly
  cropped, turned and mirrored, run through the synthetic weak camera of
  :mod:`smokeclear.synthetic.weak_camera` (blur, veil, colour cast, gamma, noise,
  JPEG); ``identity_fraction`` of them are left as they are and ``mild_fraction``
  get the weak camera at a fraction of its strength (ours: a good frame must come
  out as it went in, and a nearly good one nearly so, so the restorer can stay on in
  a chain). Frames are rescaled by a factor in ``scale_range`` before cropping: the
  runtime runs the net at work scale 1 and 0.5.

Loss (paper Eq. 8): ``content + 0.4 texture + 0.1 colour + 400 TV`` with the terms
of :mod:`smokeclear.train.enhance_losses`, the weights from the config. The
content term needs local VGG-19 weights; without them it is off, which is logged
as a warning and recorded in the weights. The texture discriminator is trained
with its own Adam on each batch (the paper's pre-training of it is left out, as in
the public code). ``pixel_weight`` (ours, 0 in the paper's preset) adds the
unblurred colour loss, which holds fine detail where the content term would. On
patches whose target is their input (the identity share) only the terms that
compare with the target count: texture and TV there could only pull the output away
from the input.

Start: :func:`identity_network` builds the network so that it returns its input
(46 dB on held-out scene frames, 40 dB on photos). DPED maps the frame directly,
with no global residual; trained from random weights the net settles on the
average correction and applies it to good frames too (the earlier shipped weights
left clean frames at 21-23 dB). From the identity it only has to learn the
corrections.
``python -m smokeclear.train.enhance identity OUT.safetensors`` writes it for
``smokeclear train enhance --init``.

Evaluation: PSNR / SSIM of the input, of a classical auto-levels baseline and of
the network against the clean frame, on held-out frames through the weak camera
(all faults, then each fault alone) and on any real pairs given by path (the
paper's Table 2 protocol: the weak camera's image scored against the good one's).
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from smokeclear.config import bounded, load_config
from smokeclear.nets.enhance import TANH_SCALE, EnhanceConfig, EnhanceNet
from smokeclear.nets.loading import save_weights
from smokeclear.registry import get_restorer
from smokeclear.synthetic.weak_camera import NO_FAULTS, WeakCameraFaults, degrade, milder
from smokeclear.train import data, evaluation
from smokeclear.train.enhance_losses import (
    TextureDiscriminator,
    color_loss,
    content_loss,
    log_mse_loss,
    pixel_loss,
    tv_loss,
)
from smokeclear.train.evaluation import EvalRow
from smokeclear.train.losses import (
    AdversarialObjective,
    discriminator_loss,
    generator_loss,
)
from smokeclear.train.recipe import TINY_TRAIN, EvalRun, Perceptual, Recipe, TrainingSampler

log = logging.getLogger(__name__)

#: The content loss's layer of VGG-19 (Eq. 8).
VGG_LAYERS = ("relu5_4",)
#: The auto-levels baseline stretches each channel from this percentile to its mirror.
LEVELS_PERCENTILE = 1.0


@dataclass(frozen=True)
class EnhanceTrainConfig:
    patch_size: int = bounded(100, 8, 4096)  # paper: 100x100 patches
    batch_size: int = bounded(50, 1, 4096)  # paper: 50
    learning_rate: float = bounded(5e-4, 0, 1, low_open=True)  # paper: Adam, 5e-4
    betas: tuple[float, float] = bounded((0.9, 0.999), 0, 1)  # Adam defaults (public code)
    steps_per_epoch: int = bounded(1000, 1, 10_000_000)
    max_epochs: int = bounded(20, 1, 1_000_000)  # paper: 20k iterations
    patience: int = bounded(5, 0, 1_000_000)
    min_delta: float = bounded(0.01, 0, 1e6)  # dB
    plateau_patience: int = bounded(0, 0, 1_000_000)
    content_weight: float = bounded(
        1.0, 0, 1e6
    )  # paper Eq. 8 (VGG-19 relu5_4; off without --vgg-weights)
    texture_weight: float = bounded(0.4, 0, 1e6)
    color_weight: float = bounded(0.1, 0, 1e6)
    tv_weight: float = bounded(400.0, 0, 1e6)
    pixel_weight: float = bounded(0.0, 0, 1e6)  # ours: the unblurred colour loss
    log_mse_weight: float = bounded(0.0, 0, 1e6)  # ours: minus PSNR per patch, floored
    log_mse_floor_db: float = bounded(40.0, 0, 100)  # the floor
    discriminator_width: int = bounded(48, 1, 1024)  # paper: 48 channels in the first conv
    identity_fraction: float = bounded(0.1, 0, 1)  # ours: patches left as they are
    mild_fraction: float = bounded(0.0, 0, 1)  # ours: patches with milder faults
    mild_strength: float = bounded(0.3, 0, 1)  # their strength: up to this share of faults'
    scale_range: tuple[float, float] = bounded((0.5, 1.0), 0.1, 4)  # rescale before cropping
    scene_fraction: float = bounded(
        0.5, 0, 1
    )  # share of patches from the synthetic scene (rest: photos)
    real_fraction: float = bounded(0.5, 0, 1)  # share of batches from real pairs, when given
    validation_size: int = bounded(32, 1, 100_000)
    seed: int = 0
    faults: WeakCameraFaults = field(default_factory=WeakCameraFaults)

    def __post_init__(self) -> None:
        if self.patch_size < 16:
            raise ValueError(f"patch_size must be >= 16, got {self.patch_size}")
        for name in ("identity_fraction", "mild_fraction", "scene_fraction", "real_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.identity_fraction + self.mild_fraction > 1:
            raise ValueError(
                "identity_fraction + mild_fraction must be at most 1, got "
                f"{self.identity_fraction} + {self.mild_fraction}"
            )
        if not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ValueError(
                f"scale_range must be (low, high) with 0 < low <= high, got {self.scale_range}"
            )


# --------------------------------------------------------------------------- data


@dataclass
class WeakCameraSampler(TrainingSampler[EnhanceTrainConfig]):
    """Draws ``(weak, clean)`` training batches; deterministic for a given generator."""

    def synthetic_pair(self) -> tuple[np.ndarray, np.ndarray]:
        config, rng = self.config, self.rng
        clean = self.clean_patch()
        share = rng.random()
        if share < config.identity_fraction:
            return clean.copy(), clean
        faults = config.faults
        if share < config.identity_fraction + config.mild_fraction:
            faults = milder(faults, rng.uniform(0.0, config.mild_strength))
        return degrade(clean, rng, faults), clean

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weak, clean)``, each ``(size, 3, P, P)`` float32 RGB in [0, 1]."""
        return data.real_or_synthetic_batch(
            self.frames.real_pairs,
            self.config,
            size,
            self.rng,
            lambda: [self.synthetic_pair() for _ in range(size)],
        )


# --------------------------------------------------------------------------- start


def identity_network(config: EnhanceConfig, noise: float = 0.02, seed: int = 0) -> EnhanceNet:
    """An :class:`EnhanceNet` that returns its input (at width 24: 46 dB on held-out scene
    frames, 40 dB on photos; the piecewise-linear fit alone is within 7e-3, the rest is
    the noise weights).

    Every weight starts at ``noise`` times PyTorch's default draw (so every unit
    still learns), plus a path that carries the frame through:

    - the head's 9x9 conv gives ``relu(x_c - k / n)`` for each colour ``c`` and
      ``n = width // 3`` knots ``k / n`` (centre taps, biases ``-k / n``);
    - each residual block's last instance norm scales by 1e-3, so the block adds
      next to nothing until it learns to (the skip carries the features);
    - the tail's two 3x3 convs pass those ``3 n`` channels on;
    - ``to_rgb`` sums them with the slopes of a least-squares piecewise-linear fit
      of ``atanh((x - 0.5) / 0.58)``, the inverse of the output's scaled tanh.
    """
    if config.width < 3:
        raise ValueError(f"an identity start needs width >= 3, got {config.width}")
    torch.manual_seed(seed)
    net = EnhanceNet(config)
    knots_per_colour = config.width // 3
    knots = torch.arange(knots_per_colour, dtype=torch.float64) / knots_per_colour
    grid = torch.linspace(0, 1, 1001, dtype=torch.float64)
    basis = torch.cat([torch.relu(grid[:, None] - knots), torch.ones_like(grid)[:, None]], dim=1)
    inverse_tanh = torch.atanh((grid - 0.5) / TANH_SCALE)[:, None]
    slopes = torch.linalg.lstsq(basis, inverse_tanh).solution[:, 0].tolist()

    def centre(conv: nn.Conv2d) -> torch.Tensor:
        return conv.weight[:, :, conv.kernel_size[0] // 2, conv.kernel_size[1] // 2]

    with torch.no_grad():
        for parameter in net.parameters():
            parameter.mul_(noise)
        for colour in range(3):
            for knot in range(knots_per_colour):
                channel = colour * knots_per_colour + knot
                centre(net.head[0])[channel, colour] += 1.0
                net.head[0].bias[channel] = -float(knots[knot])
                centre(net.to_rgb)[colour, channel] += slopes[knot]
            net.to_rgb.bias[colour] = slopes[-1]
        for block in net.blocks:
            last_norm = block.body[4]
            last_norm.weight.fill_(1e-3)
            last_norm.bias.zero_()
        for layer in net.tail:
            for channel in range(3 * knots_per_colour):
                centre(layer[0])[channel, channel] += 1.0
    return net


# --------------------------------------------------------------------------- loss


class EnhanceObjective(AdversarialObjective):
    """The paper's Eq. 8 (plus the optional pixel term) with its own texture discriminator.

    Args:
        vgg: frozen VGG-19 features at :data:`VGG_LAYERS`; None turns the content loss off.
    """

    def __init__(self, config: EnhanceTrainConfig, vgg: nn.Module | None) -> None:
        super().__init__(
            config,
            vgg,
            config.texture_weight,
            lambda: TextureDiscriminator(config.patch_size, config.discriminator_width),
        )
        self.weights = {
            "content": config.content_weight,
            "texture": config.texture_weight,
            "color": config.color_weight,
            "tv": config.tv_weight,
            "pixel": config.pixel_weight,
            "log_mse": config.log_mse_weight,
        }
        self.log_mse_floor_db = config.log_mse_floor_db

    def __call__(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        weak, clean = batch
        output = model(weak)
        # Texture and TV judge the output alone; where the target is the input, any
        # pull of theirs is away from it. They see the other patches only.
        to_fix = (weak != clean).flatten(1).any(dim=1)
        terms: dict[str, torch.Tensor] = {}
        if self.vgg is not None and self.weights["content"] > 0:
            with torch.no_grad():
                (target_features,) = self.vgg(clean)
            (features,) = self.vgg(output)
            terms["content"] = content_loss(features, target_features)
        if self.adversary is not None:
            self.adversary.step(discriminator_loss, clean, output)
            if to_fix.any():
                terms["texture"] = generator_loss(self.adversary.judge(output[to_fix]))
        if self.weights["color"] > 0:
            terms["color"] = color_loss(output, clean)
        if self.weights["tv"] > 0 and to_fix.any():
            terms["tv"] = tv_loss(output[to_fix])
        if self.weights["pixel"] > 0:
            terms["pixel"] = pixel_loss(output, clean)
        if self.weights["log_mse"] > 0:
            terms["log_mse"] = log_mse_loss(output, clean, self.log_mse_floor_db)
        self.last_terms = {name: float(value.detach()) for name, value in terms.items()}
        return sum(self.weights[name] * value for name, value in terms.items())


def _data_recipe(config: EnhanceTrainConfig) -> dict[str, Any]:
    return {
        "degradation": "synthetic weak camera (smokeclear.synthetic.weak_camera): blur, "
        "veil, colour cast, gamma, shot + read noise, JPEG; "
        f"{config.identity_fraction:.0%} of the patches left as they are, "
        f"{config.mild_fraction:.0%} at up to {config.mild_strength:.0%} of the faults' strength",
        "augmentation": f"rescaled by {config.scale_range[0]:g} to {config.scale_range[1]:g}, "
        "random crops, flips, 90-degree rotations",
    }


def _loss(config: EnhanceTrainConfig, objective: Any) -> dict[str, Any]:
    return {
        "terms": " + ".join(
            f"{weight:g} {name}" for name, weight in objective.weights.items() if weight > 0
        ),
        "texture": f"grayscale discriminator, first width {config.discriminator_width} (paper: 48)",
    }


# --------------------------------------------------------------------------- evaluation


def auto_levels(image: np.ndarray, percentile: float = LEVELS_PERCENTILE) -> np.ndarray:
    """Baseline: stretch each channel from its ``percentile`` to its ``100 - percentile``.

    The classical one-click fix for a veil and a colour cast (no sharpening, no denoising).
    """
    low = np.percentile(image, percentile, axis=(0, 1))
    high = np.percentile(image, 100 - percentile, axis=(0, 1))
    stretched = (image - low) / np.maximum(high - low, 1e-3)
    return np.clip(stretched, 0.0, 1.0).astype(np.float32)


#: Evaluation sets of synthetic faults: the whole weak camera, then each fault alone,
#: each drawn from the upper part of its training range so that every frame is hit.
EVAL_FAULTS: dict[str, WeakCameraFaults] = {
    "weak camera (all faults)": WeakCameraFaults(),
    "optics blur only": replace(NO_FAULTS, blur_sigma=(0.6, 1.2)),
    "veil, cast and gamma only": replace(
        NO_FAULTS, contrast=(0.6, 0.8), cast=0.2, gamma=(0.8, 1.4)
    ),
    "sensor noise only": replace(NO_FAULTS, shot_noise=(0.002, 0.004), read_noise=(0.01, 0.02)),
    "JPEG only": replace(NO_FAULTS, jpeg_fraction=1.0, jpeg_quality=(30, 60)),
}


def evaluate(run: EvalRun) -> list[EvalRow]:
    """Held-out frames through the weak camera (all faults, each alone), and any real pairs."""
    cleans = evaluation.held_out_cleans(run.options)
    sets = []
    for set_index, (label, faults) in enumerate(EVAL_FAULTS.items()):
        cases = [
            (clean, degrade(clean, np.random.default_rng([23, set_index, index]), faults))
            for index, clean in enumerate(cleans)
        ]
        sets.append((label, cases))
    return run.score(sets, {"input": lambda weak: weak, "auto levels": auto_levels})


RECIPE = Recipe(
    train_config=EnhanceTrainConfig,
    sampler=WeakCameraSampler,
    describe=lambda network: f"width {network.width}, {network.blocks} blocks",
    data_recipe=_data_recipe,
    loss=_loss,
    evaluate=evaluate,
    objective=EnhanceObjective,
    perceptual=Perceptual(
        "vgg19",
        VGG_LAYERS,
        "the paper's VGG-19 content loss (weight 1)",
        "content_weight",
        key="content",
    ),
    tiny_network={"width": 4, "blocks": 1},
    tiny_train={**TINY_TRAIN, "discriminator_width": 2},
)


def main(argv: list[str] | None = None) -> None:
    """``python -m smokeclear.train.enhance identity OUT``: the identity start as weights."""
    parser = argparse.ArgumentParser(prog="python -m smokeclear.train.enhance")
    parser.add_argument("what", choices=["identity"], help="the start to write")
    parser.add_argument("out", type=Path, help="the .safetensors file to write")
    parser.add_argument("--config", type=Path, help="YAML whose network: section sizes the net")
    args = parser.parse_args(argv)
    spec = get_restorer("enhance")
    network = load_config(EnhanceConfig, args.config or spec.default_config, section="network")
    save_weights(
        identity_network(network),
        args.out,
        spec,
        {"start": "identity (smokeclear.train.enhance.identity_network), untrained"},
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
