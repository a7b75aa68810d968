import math

import numpy as np
import pytest
import torch

from smokeclear.train import metrics
from smokeclear.train.losses import (
    PatchDiscriminator,
    discriminator_loss,
    gamma_expand,
    gaussian_window,
    generator_loss,
    iteration_weights,
    perceptual_l1,
    relativistic_losses,
    ssim,
)


def smooth_image(generator: torch.Generator, size: int = 48) -> torch.Tensor:
    """A ``(1, 3, size, size)`` image in [0, 1] with structure at several scales."""
    coarse = torch.rand(1, 3, size // 8, size // 8, generator=generator)
    image = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")
    return (0.8 * image + 0.2 * torch.rand(1, 3, size, size, generator=generator)).clamp(0, 1)


def test_ssim_of_identical_images_is_one_per_image():
    images = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    score = ssim(images, images)
    assert score.shape == (2,), f"expected one score per image, got shape {tuple(score.shape)}"
    torch.testing.assert_close(score, torch.ones(2), atol=1e-5, rtol=0)


def test_ssim_falls_with_noise():
    generator = torch.Generator().manual_seed(1)
    image = smooth_image(generator)
    slightly = (image + 0.02 * torch.randn(image.shape, generator=generator)).clamp(0, 1)
    heavily = (image + 0.2 * torch.randn(image.shape, generator=generator)).clamp(0, 1)
    slight_score, heavy_score = ssim(image, slightly).item(), ssim(image, heavily).item()
    assert 1.0 > slight_score > heavy_score, (
        f"expected 1 > SSIM(slight noise) > SSIM(heavy noise), got {slight_score}, {heavy_score}"
    )


def test_ssim_agrees_with_the_skimage_metric():
    """Same window (11 taps, sigma 1.5) and constants. skimage filters with reflect
    padding and then crops (window - 1) / 2 pixels per side, which leaves exactly our
    valid region: only float32 vs float64 rounding remains."""
    generator = torch.Generator().manual_seed(2)
    image = smooth_image(generator)
    other = (image + 0.08 * torch.randn(image.shape, generator=generator)).clamp(0, 1)
    ours = ssim(image, other).item()

    def hwc(x: torch.Tensor) -> np.ndarray:
        return x[0].permute(1, 2, 0).double().numpy()

    reference = metrics.ssim(hwc(image), hwc(other))
    assert ours == pytest.approx(reference, abs=1e-3), f"skimage SSIM {reference}, ours {ours}"
    assert ours < 0.98, (
        f"the pair should differ clearly for the check to mean something, SSIM {ours}"
    )


def test_ssim_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shapes differ"):
        ssim(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 20))


def test_ssim_is_differentiable():
    generator = torch.Generator().manual_seed(3)
    target = smooth_image(generator, 24)
    prediction = (target + 0.1 * torch.randn(target.shape, generator=generator)).clamp(0, 1)
    prediction.requires_grad_(True)
    (1 - ssim(prediction, target)).mean().backward()
    assert prediction.grad is not None
    assert torch.isfinite(prediction.grad).all(), "SSIM gradient has NaN or inf"
    assert prediction.grad.abs().sum() > 0, "SSIM gradient is zero everywhere"


def test_gaussian_window_is_normalised_and_symmetric():
    window = gaussian_window(11, 1.5, channels=3)
    assert window.shape == (3, 1, 11, 11)
    torch.testing.assert_close(window.sum(dim=(1, 2, 3)), torch.ones(3))
    torch.testing.assert_close(window, window.flip(-1))
    torch.testing.assert_close(window, window.flip(-2))
    torch.testing.assert_close(window, window.transpose(-1, -2))
    assert window[0, 0, 5, 5] == window.max(), "the peak should sit at the centre"


def test_iteration_weights_favour_the_last_iteration():
    assert iteration_weights(3, 0.85) == pytest.approx([0.85**2, 0.85, 1.0])


def test_gamma_expand_clamps_negatives_and_raises_to_gamma():
    assert gamma_expand(torch.tensor([-0.5, -1e-6]), 2.2).tolist() == [0.0, 0.0]
    x = torch.linspace(0, 1, 11)
    torch.testing.assert_close(gamma_expand(x, 2.2), x**2.2)


def test_relativistic_losses_are_log2_for_equal_scores():
    scores = torch.full((2, 1, 4, 4), 0.7)
    generator, discriminator = relativistic_losses(scores, scores.clone())
    assert generator.item() == pytest.approx(math.log(2))
    assert discriminator.item() == pytest.approx(math.log(2))


def test_relativistic_losses_reward_the_side_that_wins():
    high, low = torch.full((2, 1, 4, 4), 10.0), torch.full((2, 1, 4, 4), -10.0)
    generator, discriminator = relativistic_losses(real_scores=low, fake_scores=high)
    assert generator.item() < 1e-3, f"fakes look more real: generator loss {generator.item()}"
    assert discriminator.item() > 10, f"critic fooled: discriminator loss {discriminator.item()}"
    generator, discriminator = relativistic_losses(real_scores=high, fake_scores=low)
    assert generator.item() > 10, f"fakes spotted: generator loss {generator.item()}"
    assert discriminator.item() < 1e-3, f"critic right: discriminator loss {discriminator.item()}"


def test_patch_discriminator_scores_eighth_resolution_patches():
    torch.manual_seed(0)
    critic = PatchDiscriminator(width=8)
    scores = critic(torch.rand(2, 3, 64, 64))
    assert scores.shape == (2, 1, 8, 8)


def test_perceptual_l1():
    generator = torch.Generator().manual_seed(4)
    features = [
        torch.rand(1, 4, 8, 8, generator=generator),
        torch.rand(1, 8, 4, 4, generator=generator),
    ]
    assert perceptual_l1(features, [f.clone() for f in features]).item() == 0.0
    shifted = [f + 0.5 for f in features]
    assert perceptual_l1(features, shifted).item() == pytest.approx(0.5)
    with pytest.raises(ValueError):
        perceptual_l1(features, features[:1])


def test_gan_losses_match_hand_computed_values():
    zeros = torch.zeros(3, 1, 1, 1)
    assert discriminator_loss(zeros, zeros).item() == pytest.approx(2 * math.log(2))
    assert generator_loss(zeros).item() == pytest.approx(math.log(2))
    real, fake = torch.full((2, 1, 1, 1), 1.0), torch.full((2, 1, 1, 1), -2.0)
    # -log(sigmoid(1)) - log(1 - sigmoid(-2)) = log(1 + e^-1) + log(1 + e^-2)
    expected = math.log1p(math.exp(-1)) + math.log1p(math.exp(-2))
    assert discriminator_loss(real, fake).item() == pytest.approx(expected, rel=1e-6)
    # -log(sigmoid(-2)) = log(1 + e^2): the generator is punished for an obvious fake
    assert generator_loss(fake).item() == pytest.approx(math.log1p(math.exp(2)), rel=1e-6)
    confident = discriminator_loss(torch.full((1,), 20.0), torch.full((1,), -20.0))
    assert confident.item() < 1e-8, "a discriminator that is right and sure has no loss"
