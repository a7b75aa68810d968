"""Loss terms shared by the restorers' recipes: pure, differentiable, vectorised.

Images are ``(B, 3, H, W)`` RGB float in [0, 1] unless a docstring says otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: SSIM constants of Wang et al. 2004 for a dynamic range of 1.
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2


def gaussian_window(size: int, sigma: float, channels: int) -> torch.Tensor:
    """A normalised ``(channels, 1, size, size)`` Gaussian for depthwise convolution."""
    coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    profile = torch.exp(-(coords**2) / (2 * sigma**2))
    profile = profile / profile.sum()
    return (profile[:, None] * profile[None, :]).expand(channels, 1, size, size).contiguous()


def ssim(
    prediction: torch.Tensor, target: torch.Tensor, window: int = 11, sigma: float = 1.5
) -> torch.Tensor:
    """Mean SSIM (Gaussian 11x11, sigma 1.5, valid region) per image.

    Shape:
        ``(B, C, H, W)`` twice, H and W >= ``window`` -> ``(B,)``.
    """
    if prediction.shape != target.shape:
        raise ValueError(f"shapes differ: {tuple(prediction.shape)} vs {tuple(target.shape)}")
    channels = prediction.shape[1]
    kernel = gaussian_window(window, sigma, channels).to(prediction)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, kernel, groups=channels)

    mu_p, mu_t = blur(prediction), blur(target)
    var_p = blur(prediction * prediction) - mu_p**2
    var_t = blur(target * target) - mu_t**2
    covariance = blur(prediction * target) - mu_p * mu_t
    score = ((2 * mu_p * mu_t + SSIM_C1) * (2 * covariance + SSIM_C2)) / (
        (mu_p**2 + mu_t**2 + SSIM_C1) * (var_p + var_t + SSIM_C2)
    )
    return score.flatten(1).mean(dim=1)


def iteration_weights(iterations: int, theta: float) -> list[float]:
    """``theta^(N - i)`` for ``i = 1..N``: the last iteration weighs 1 (dereflect Eq. 8)."""
    return [theta ** (iterations - i) for i in range(1, iterations + 1)]


def gamma_expand(image: torch.Tensor, gamma: float) -> torch.Tensor:
    """Display -> linear light, ``x^gamma`` (the paper's ``g_inv``), on ``x`` clamped to >= 0."""
    return image.clamp_min(0.0) ** gamma


def relativistic_losses(
    real_scores: torch.Tensor, fake_scores: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Relativistic average GAN losses (Jolicoeur-Martineau 2019), as ERRNet uses them.

    ``D(x, y) = sigmoid(C(x) - mean C(y))``: a real image should look more real than
    the average fake, and a fake less real than the average real.

    Args:
        real_scores, fake_scores: critic outputs ``C`` of any equal shape.

    Returns:
        ``(generator_loss, discriminator_loss)``. The generator loss is
        ``-log D(T_hat, T) - log(1 - D(T, T_hat))`` (the paper's Eq. 14 written out).
    """
    real_vs_fake = real_scores - fake_scores.mean()
    fake_vs_real = fake_scores - real_scores.mean()
    ones, zeros = torch.ones_like(real_scores), torch.zeros_like(real_scores)
    generator = F.binary_cross_entropy_with_logits(
        fake_vs_real, ones
    ) + F.binary_cross_entropy_with_logits(real_vs_fake, zeros)
    discriminator = F.binary_cross_entropy_with_logits(
        real_vs_fake, ones
    ) + F.binary_cross_entropy_with_logits(fake_vs_real, zeros)
    return generator / 2, discriminator / 2


class PatchDiscriminator(nn.Module):
    """A multi-layer convolutional critic scoring overlapping patches (PatchGAN).

    Shape:
        ``(B, 3, H, W)`` -> ``(B, 1, H / 8, W / 8)`` raw scores (logits).
    """

    def __init__(self, width: int = 32, layers: int = 3) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv2d(3, width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        channels = width
        for _ in range(layers - 1):
            blocks += [
                nn.Conv2d(channels, channels * 2, 4, 2, 1),
                nn.GroupNorm(1, channels * 2),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            channels *= 2
        blocks.append(nn.Conv2d(channels, 1, 3, 1, 1))
        self.body = nn.Sequential(*blocks)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.body(image * 2.0 - 1.0)


def perceptual_l1(
    features: list[torch.Tensor], target_features: list[torch.Tensor]
) -> torch.Tensor:
    """Mean over layers of the L1 distance between feature maps."""
    terms = [F.l1_loss(a, b) for a, b in zip(features, target_features, strict=True)]
    return torch.stack(terms).mean()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The standard GAN's discriminator loss, ``-log D(real) - log(1 - D(fake))``, from logits.

    lowlight's Eq. 6 and the cross-entropy enhance's texture discriminator minimises;
    ``binary_cross_entropy_with_logits`` keeps both terms finite for a sure discriminator.
    """
    return F.binary_cross_entropy_with_logits(
        real_logits, torch.ones_like(real_logits)
    ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The generator's loss in its non-saturating form (Goodfellow et al.): ``-log D(fake)``."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


class Adversary:
    """A discriminator with its own Adam, stepped once per generator batch.

    ``step`` trains the discriminator on the batch (fakes detached); ``judge`` then
    scores images with the discriminator's weights frozen, so the generator's loss
    sends gradients to the generator only. The state holds both for ``--resume``.
    """

    def __init__(
        self,
        discriminator: nn.Module,
        learning_rate: float,
        betas: tuple[float, float],
        weight_decay: float = 0.0,
    ) -> None:
        self.discriminator = discriminator
        self.optimizer = torch.optim.Adam(
            discriminator.parameters(), lr=learning_rate, betas=betas, weight_decay=weight_decay
        )

    def step(
        self,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        real: torch.Tensor,
        fake: torch.Tensor,
    ) -> None:
        """One optimizer step on ``loss_fn(D(real), D(fake))``, ``fake`` detached."""
        loss = loss_fn(self.discriminator(real), self.discriminator(fake.detach()))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def judge(self, images: torch.Tensor) -> torch.Tensor:
        """``D(images)`` with the discriminator frozen (gradients reach ``images`` only)."""
        self.discriminator.requires_grad_(False)
        try:
            return self.discriminator(images)
        finally:
            self.discriminator.requires_grad_(True)

    def state_dict(self) -> dict[str, Any]:
        return {
            "discriminator": self.discriminator.state_dict(),
            "discriminator_optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.discriminator.load_state_dict(state["discriminator"])
        self.optimizer.load_state_dict(state["discriminator_optimizer"])


class AdversarialObjective:
    """Base of the recipes' objectives with an optional :class:`Adversary`.

    ``--resume`` state is the adversary's (discriminator and its Adam), or nothing
    without one; ``after_backward`` does nothing unless a recipe clips gradients.
    """

    adversary: Adversary | None = None

    def __init__(
        self,
        config: Any,
        vgg: nn.Module | None,
        adversarial_weight: float,
        discriminator: Callable[[], nn.Module],
        weight_decay: float = 0.0,
    ) -> None:
        """Keeps ``config`` (with ``learning_rate`` and ``betas``) and the VGG features;
        ``discriminator()`` is made, with its Adam, only where ``adversarial_weight > 0``."""
        self.config = config
        self.vgg = vgg
        if adversarial_weight > 0:
            self.adversary = Adversary(
                discriminator(), config.learning_rate, config.betas, weight_decay
            )
        self.last_terms: dict[str, float] = {}

    def after_backward(self, model: nn.Module) -> None:
        """Nothing to clip by default."""

    def state_dict(self) -> dict[str, Any]:
        return self.adversary.state_dict() if self.adversary is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.adversary is not None:
            self.adversary.load_state_dict(state)
