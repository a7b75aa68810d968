"""dereflect recipe: synthetic reflections, the paper's four losses and its evaluation.

Data (paper Sec. 5, adapted to the OR):

- clean frames (test-split-free synthetic scene frames rendered without their
  specular highlights, and any clean-photo folders given by path) with a reflection
  composed by the paper's Eq. 6 with gamma (``alpha`` from ``alpha_range``: 1, not
  the paper's [0.8, 1], which dims the input against its target): saturated
  specular blobs and streaks, sometimes plus a blurred reflection of another frame
  (:mod:`smokeclear.synthetic.reflection`);
- the scene's own wet-tissue highlights: a frame rendered with and without them
  (``alpha = 1``, the reflection layer is the linear-light difference);
- a share of patches with no reflection at all (target = input, ``identity_fraction``),
  so the network learns to leave a clean frame alone; crops are rescaled first
  (``scale_range``), so it sees scenes at the sizes both work scales give it;
- real pairs by path (``blended/`` + ``transmission/`` folders, matched by file
  name), without the composition term, which needs ``alpha`` and ``R``.

Loss (paper Eq. 15): ``0.4 L_comp + 0.2 L_p + 0.4 L_mix + 0.01 L_adv``, iterations
weighted by ``theta^(N-i)`` with ``theta = 0.85``; gradient norm of the Laplacian
kernel clipped to 0.25. The VGG-19 perceptual term needs a local weights file;
without one it is off, which is logged as a warning and recorded in the weights.

Evaluation: PSNR / SSIM of the input, of a classical baseline (inpainting of
near-saturated pixels, the usual non-learned specular removal) and of the model on
held-out frames with synthetic reflections, on the scene's highlights, and on any
real pairs given by path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, NamedTuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from smokeclear.config import bounded
from smokeclear.synthetic.reflection import GAMMA, synthesize
from smokeclear.train import data, evaluation
from smokeclear.train.data import SCENE_EVAL_SIZE
from smokeclear.train.evaluation import EvalRow
from smokeclear.train.losses import (
    AdversarialObjective,
    PatchDiscriminator,
    gamma_expand,
    iteration_weights,
    perceptual_l1,
    relativistic_losses,
    ssim,
)
from smokeclear.train.recipe import TINY_TRAIN, EvalRun, Perceptual, Recipe, TrainingSampler

log = logging.getLogger(__name__)

#: Perceptual loss layers ("convk_2" of VGG-19, k = 1..5, after their ReLU).
VGG_LAYERS = ("relu1_2", "relu2_2", "relu3_2", "relu4_2", "relu5_2")
#: The baseline inpaints pixels whose brightest channel reaches this.
SATURATION_THRESHOLD = 0.92


@dataclass(frozen=True)
class DereflectTrainConfig:
    patch_size: int = bounded(96, 8, 4096)
    batch_size: int = bounded(4, 1, 4096)
    learning_rate: float = bounded(2e-4, 0, 1, low_open=True)  # paper: 2e-4
    betas: tuple[float, float] = bounded((0.5, 0.99), 0, 1)  # paper: Adam beta1 0.5, beta2 0.99
    steps_per_epoch: int = bounded(200, 1, 10_000_000)
    max_epochs: int = bounded(60, 1, 1_000_000)  # paper: 60
    patience: int = bounded(8, 0, 1_000_000)
    min_delta: float = bounded(1e-4, 0, 1e6)
    plateau_patience: int = bounded(0, 0, 1_000_000)
    theta: float = bounded(0.85, 0, 1)  # iteration weighting theta^(N - i)
    ssim_weight: float = bounded(0.84, 0, 1)  # beta in L_mix = beta L_SSIM + (1 - beta) L_pixel
    composition_weight: float = bounded(0.4, 0, 1e6)  # lambda_1 .. lambda_4 (Eq. 15)
    perceptual_weight: float = bounded(0.2, 0, 1e6)
    mix_weight: float = bounded(0.4, 0, 1e6)
    adversarial_weight: float = bounded(0.01, 0, 1e6)
    perceptual_scales: tuple[float, float, float] = bounded(
        (1.0, 0.8, 0.6), 0, 1e6
    )  # gamma_1, 3, 5
    laplacian_clip: float = bounded(
        0.25, 0, 1e6, low_open=True
    )  # gradient-norm clip of the Laplacian kernel
    discriminator_width: int = bounded(16, 1, 1024)
    scene_fraction: float = bounded(
        0.6, 0, 1
    )  # share of patches from the synthetic scene (rest: photos)
    scene_highlight_fraction: float = bounded(0.5, 0, 1)  # of scene patches: its own highlights
    real_fraction: float = bounded(0.3, 0, 1)  # share of batches from real pairs, when given
    #: Eq. 6's alpha: the paper's U(0.8, 1) dims the input against its target, which taught
    #: the net to brighten every frame; highlights add light and glass is not in the scope
    alpha_range: tuple[float, float] = bounded((1.0, 1.0), 0, 1)
    #: share of synthetic patches with no reflection (target = input): do no harm
    identity_fraction: float = bounded(0.2, 0, 1)
    scale_range: tuple[float, float] = bounded((0.5, 1.0), 0.1, 4)
    validation_size: int = bounded(32, 1, 100_000)
    seed: int = 0


class ReflectionBatch(NamedTuple):
    """Training images, ``(B, 3, H, W)`` RGB float32 in [0, 1].

    ``reflection`` and ``alpha`` (``(B,)``) are known for synthetic batches only.
    """

    blended: torch.Tensor
    transmission: torch.Tensor
    reflection: torch.Tensor | None
    alpha: torch.Tensor | None


# --------------------------------------------------------------------------- data


def scene_highlight_pair(
    scene: Any, index: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """A scene frame with and without its specular highlights, as Eq. 6 with ``alpha = 1``.

    Returns:
        ``(blended, transmission, reflection, alpha)``: ``(H, W, 3)`` float32 RGB in
        [0, 1]; the reflection is the linear-light difference, back in display space.
    """
    blended = data.bgr8_to_rgb(scene.render(index).clean)
    transmission = data.bgr8_to_rgb(scene.render(index, highlights=False).clean)
    return blended, transmission, highlight_layer(blended, transmission), 1.0


def highlight_layer(blended: np.ndarray, transmission: np.ndarray) -> np.ndarray:
    """The reflection of Eq. 6 with ``alpha = 1``: the linear-light difference, display space."""
    linear = np.clip(blended**GAMMA - transmission**GAMMA, 0.0, 1.0)
    return (linear ** (1 / GAMMA)).astype(np.float32)


@dataclass
class ReflectionSampler(TrainingSampler[DereflectTrainConfig]):
    """Draws training batches; deterministic for a given generator."""

    def synthetic(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """One ``(blended, transmission, reflection, alpha)`` patch triple and its alpha."""
        rng, config = self.rng, self.config
        size, scales = config.patch_size, config.scale_range
        identity = rng.random() < config.identity_fraction
        use_scene = not self.frames.photos or rng.random() < config.scene_fraction
        if use_scene:
            scene = self.frames.scenes[int(rng.integers(len(self.frames.scenes)))]
            index = int(rng.integers(0, 20 * 60 * 30))
            if not identity and rng.random() < config.scene_highlight_fraction:
                blended, transmission, _, alpha = scene_highlight_pair(scene, index)
                blended, transmission = data.random_crop((blended, transmission), size, rng, scales)
                # from the rescaled pair, so that Eq. 6 holds exactly for the crop
                return blended, transmission, highlight_layer(blended, transmission), alpha
            clean = data.bgr8_to_rgb(scene.render(index, highlights=False).clean)
        else:
            clean = self.frames.photos[int(rng.integers(len(self.frames.photos)))]
        (transmission,) = data.random_crop((clean,), size, rng, scales)
        if identity:
            return transmission, transmission, np.zeros_like(transmission), 1.0
        (source,) = data.random_crop((self._any_clean(),), size, rng, scales)
        pair = synthesize(
            np.ascontiguousarray(transmission),
            rng,
            reflection_source=source,
            alpha_range=config.alpha_range,
        )
        return pair.blended, pair.transmission, pair.reflection, pair.alpha

    def _any_clean(self) -> np.ndarray:
        if self.frames.photos and self.rng.random() < 0.5:
            return self.frames.photos[int(self.rng.integers(len(self.frames.photos)))]
        scene = self.frames.scenes[int(self.rng.integers(len(self.frames.scenes)))]
        return data.bgr8_to_rgb(scene.render(int(self.rng.integers(0, 36000))).clean)

    def batch(self, size: int) -> ReflectionBatch:
        if self.frames.real_pairs and self.rng.random() < self.config.real_fraction:
            pairs = data.random_pair_crops(
                self.frames.real_pairs, self.config.patch_size, size, self.rng
            )
            blended, transmission = (_stack([p[k] for p in pairs]) for k in (0, 1))
            return ReflectionBatch(blended, transmission, None, None)
        triples = [self.synthetic() for _ in range(size)]
        flips = self.rng.random(size) < 0.5
        images = [
            _stack([t[k] for t in triples], flips=flips) for k in range(3)
        ]  # blended, transmission, reflection
        alpha = torch.tensor([t[3] for t in triples], dtype=torch.float32)
        return ReflectionBatch(*images, alpha)


def _stack(images: list[np.ndarray], flips: np.ndarray | None = None) -> torch.Tensor:
    """``(H, W, 3)`` images -> ``(B, 3, H, W)`` float32, mirrored where ``flips``."""
    batch = data.to_batch(images)
    if flips is not None:
        mask = torch.from_numpy(flips)
        batch[mask] = batch[mask].flip(-1)
    return batch


# --------------------------------------------------------------------------- loss


class DereflectObjective(AdversarialObjective):
    """The paper's Eq. 15 over the unrolled iterations, with its own discriminator.

    Args:
        vgg: frozen VGG-19 features at :data:`VGG_LAYERS`; None turns ``L_p`` off.
    """

    def __init__(self, config: DereflectTrainConfig, vgg: nn.Module | None) -> None:
        super().__init__(
            config,
            vgg,
            config.adversarial_weight,
            lambda: PatchDiscriminator(config.discriminator_width),
        )

    def __call__(self, model: nn.Module, batch: ReflectionBatch) -> torch.Tensor:
        config = self.config
        outputs = model.iterate(batch.blended, side_outputs=self.vgg is not None)
        weights = iteration_weights(len(outputs), config.theta)
        terms: dict[str, torch.Tensor] = {
            "mix": mix_loss(
                [o.transmission for o in outputs], batch.transmission, weights, config.ssim_weight
            )
        }
        if batch.reflection is not None and batch.alpha is not None:
            terms["composition"] = composition_loss(
                outputs, batch.blended, batch.transmission, batch.reflection, batch.alpha, weights
            )
        last = outputs[-1]
        if self.vgg is not None:
            terms["perceptual"] = multiscale_perceptual_loss(
                self.vgg,
                [last.transmission, last.side_half, last.side_quarter],
                batch.transmission,
                config.perceptual_scales,
            )
        if self.adversary is not None:
            terms["adversarial"] = self._adversarial(last.transmission, batch.transmission)
        self.last_terms = {name: float(value.detach()) for name, value in terms.items()}
        lambdas = {
            "composition": config.composition_weight,
            "perceptual": config.perceptual_weight,
            "mix": config.mix_weight,
            "adversarial": config.adversarial_weight,
        }
        return sum(lambdas[name] * value for name, value in terms.items())

    def _adversarial(self, restored: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        """Step the discriminator on this batch, then return the generator's loss."""
        assert self.adversary is not None
        self.adversary.step(lambda real, fake: relativistic_losses(real, fake)[1], clean, restored)
        generator_loss, _ = relativistic_losses(
            self.adversary.judge(clean), self.adversary.judge(restored)
        )
        return generator_loss

    def after_backward(self, model: nn.Module) -> None:
        torch.nn.utils.clip_grad_norm_(
            [model.step.laplacian.kernel], max_norm=self.config.laplacian_clip
        )


def mix_loss(
    transmissions: list[torch.Tensor],
    target: torch.Tensor,
    weights: list[float],
    ssim_weight: float,
) -> torch.Tensor:
    """``L_mix = beta L_SSIM + (1 - beta) L_pixel`` (Eq. 11-13), summed over iterations."""
    total = target.new_zeros(())
    for weight, estimate in zip(weights, transmissions, strict=True):
        structural = (1.0 - ssim(estimate, target)).mean()
        pixel = F.l1_loss(estimate, target)
        total = total + weight * (ssim_weight * structural + (1.0 - ssim_weight) * pixel)
    return total


def composition_loss(
    outputs: list[Any],
    blended: torch.Tensor,
    transmission: torch.Tensor,
    reflection: torch.Tensor,
    alpha: torch.Tensor,
    weights: list[float],
    gamma: float = GAMMA,
) -> torch.Tensor:
    """``L_comp = L_C + L_res`` (Eq. 7-9), summed over iterations with ``weights``.

    ``L_C``: the blend re-composed with the confidence map as the mask ``W = 1 - C``
    (Eq. 7) against the input. ``L_res``: Eq. 6 in linear light with one layer
    predicted and the other known, against the linearised input.

    Shape:
        images ``(B, 3, H, W)``; ``alpha`` ``(B,)``; each output carries
        ``transmission``, ``reflection`` (``(B, 3, H, W)``) and ``confidence``
        (``(B, 1, H, W)``).
    """
    a = alpha.view(-1, 1, 1, 1)
    linear_input = gamma_expand(blended, gamma)
    linear_transmission = gamma_expand(transmission, gamma)
    linear_reflection = gamma_expand(reflection, gamma)
    total = blended.new_zeros(())
    for weight, output in zip(weights, outputs, strict=True):
        recomposed = (1.0 - output.confidence) * transmission + reflection
        with_predicted_reflection = a * linear_transmission + gamma_expand(output.reflection, gamma)
        with_predicted_transmission = (
            a * gamma_expand(output.transmission, gamma) + linear_reflection
        )
        total = total + weight * (
            F.mse_loss(recomposed, blended)
            + F.mse_loss(with_predicted_reflection, linear_input)
            + F.mse_loss(with_predicted_transmission, linear_input)
        )
    return total


def multiscale_perceptual_loss(
    vgg: nn.Module,
    estimates: list[torch.Tensor | None],
    target: torch.Tensor,
    scale_weights: tuple[float, ...],
) -> torch.Tensor:
    """Eq. 10: VGG L1 at full, 1/2 and 1/4 size, weighted by ``scale_weights``."""
    total = target.new_zeros(())
    for estimate, weight in zip(estimates, scale_weights, strict=True):
        if estimate is None:
            raise ValueError("the perceptual loss needs the network's side outputs")
        factor = target.shape[-1] // estimate.shape[-1]
        scaled = target if factor == 1 else F.avg_pool2d(target, factor)
        total = total + weight * perceptual_l1(vgg(estimate), vgg(scaled))
    return total


# --------------------------------------------------------------------------- evaluation


def inpaint_highlights(image: np.ndarray) -> np.ndarray:
    """Baseline: inpaint near-saturated pixels (Telea) from their surroundings.

    Args:
        image: ``(H, W, 3)`` float32 RGB in [0, 1]. Returns the same layout.
    """
    mask = (image.max(axis=2) >= SATURATION_THRESHOLD).astype(np.uint8)
    mask = cv2.dilate(mask, np.ones((3, 3), np.uint8))
    pixels = np.round(image * 255).astype(np.uint8)
    return cv2.inpaint(pixels, mask, 3, cv2.INPAINT_TELEA).astype(np.float32) / 255.0


#: Eq. 6's alpha in the evaluation: 1, so a score measures the reflection removed, not a
#: guess at how much the (unknowable) alpha dimmed the frame.
EVAL_ALPHA = (1.0, 1.0)


def evaluate(run: EvalRun) -> list[EvalRow]:
    """Held-out synthetic reflections, the scene's highlights, and any real pairs."""
    options = run.options
    scenes = data.scenes_for(options.split, *SCENE_EVAL_SIZE)
    cleans = evaluation.held_out_cleans(options, highlights=False)
    synthetic = []
    for index, clean in enumerate(cleans):
        rng = np.random.default_rng([11, index])
        source = cleans[(index + len(cleans) // 2) % len(cleans)]
        source = cv2.resize(source, clean.shape[1::-1], interpolation=cv2.INTER_AREA)
        pair = synthesize(clean, rng, reflection_source=source, alpha_range=EVAL_ALPHA)
        synthetic.append((pair.transmission, pair.blended))
    highlights = [
        scene_highlight_pair(scene, 97 * k + 13)[1::-1]
        for scene in scenes
        for k in range(options.frames_per_scene)
    ]
    sets = [("synthetic reflections + highlights", synthetic), ("scene highlights", highlights)]
    return run.score(sets, {"input": lambda blended: blended, "inpaint": inpaint_highlights})


RECIPE = Recipe(
    train_config=DereflectTrainConfig,
    sampler=ReflectionSampler,
    describe=lambda network: f"width {network.width}, {network.iterations} iterations",
    data_recipe=lambda config: {
        "reflection": "Eq. 6 with gamma 2.2: specular blobs and streaks, "
        "half the time plus a blurred reflection of another frame (strength U(0.15, 0.5))",
        "alpha_range": list(config.alpha_range),
        "identity_fraction": config.identity_fraction,
        "scale_range": list(config.scale_range),
        "scene_highlights": "scene frames with vs without their wet-tissue highlights",
    },
    loss=lambda config, objective: {
        "terms": "0.4 composition + 0.2 perceptual + 0.4 mix + 0.01 adversarial (Eq. 15)"
    },
    evaluate=evaluate,
    table_column="data",
    objective=DereflectObjective,
    perceptual=Perceptual(
        "vgg19", VGG_LAYERS, "the paper's VGG-19 term (lambda 0.2)", "perceptual_weight"
    ),
    tiny_network={"width": 2, "se_blocks": 1, "iterations": 2},
    tiny_train={**TINY_TRAIN, "discriminator_width": 4},
    harmless=lambda run: evaluation.nothing_to_fix(run.options, run.trained_dirs, highlights=False),
)
