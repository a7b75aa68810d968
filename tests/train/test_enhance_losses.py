"""DPED losses on hand-made inputs: colour, total variation, content, texture."""

import pytest
import torch

from smokeclear.train.enhance_losses import (
    LUMA,
    TextureDiscriminator,
    blur,
    blur_kernel,
    color_loss,
    content_loss,
    grayscale,
    log_mse_loss,
    pixel_loss,
    tv_loss,
)
from smokeclear.train.losses import generator_loss


def textured(seed: int = 0, size: int = 64) -> torch.Tensor:
    """Fine texture (pixel noise) over a smooth colour ramp: what the colour loss must ignore."""
    generator = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0.2, 0.8, size).view(1, 1, 1, size).expand(1, 3, size, size)
    tint = torch.tensor([1.0, 0.8, 0.6]).view(1, 3, 1, 1)
    return (ramp * tint + 0.15 * torch.randn(1, 3, size, size, generator=generator)).clamp(0, 1)


@pytest.mark.parametrize("shift", [1, 2])
def test_color_loss_barely_sees_a_small_shift_that_mse_sees(shift):
    """The paper's Fig. 6: for shifts up to 2 px the colour loss is far below MSE."""
    image = textured()
    moved = torch.roll(image, shifts=shift, dims=-1)
    inner = (..., slice(16, -16), slice(16, -16))  # away from the roll's wrap-around
    mse = float(((image - moved) ** 2)[inner].mean())
    colour = float(((blur(image) - blur(moved)) ** 2)[inner].mean())
    assert colour < mse / 50, f"colour {colour:.2e} vs MSE {mse:.2e}"


def test_color_loss_sees_a_colour_cast_and_is_zero_on_the_same_image():
    image = textured()
    assert color_loss(image, image).item() == 0.0
    cast = image * torch.tensor([1.0, 1.0, 0.8]).view(1, 3, 1, 1)  # less blue
    blue_norm = float((blur(image)[:, 2] - blur(cast)[:, 2]).pow(2).sum())
    assert color_loss(cast, image).item() == pytest.approx(blue_norm, rel=1e-5)
    assert color_loss(cast, image).item() > 1.0


def test_color_and_pixel_losses_are_squared_norms_per_image_averaged_over_the_batch():
    target = torch.zeros(2, 3, 8, 8)
    output = torch.stack([torch.full((3, 8, 8), 0.5), torch.zeros(3, 8, 8)])
    # ||X - Y||^2: 192 pixels at 0.25 in the first image, nothing in the second.
    assert pixel_loss(output, target).item() == pytest.approx(192 * 0.25 / 2)
    flat = torch.full((1, 3, 48, 48), 0.5)
    assert color_loss(flat, flat * 0).item() > 0.25 * 20 * 20 * 3, "inner pixels keep 0.5"


def test_blur_kernel_is_the_public_codes_gaussian_of_3_sqrt_2_px():
    kernel = blur_kernel()
    assert kernel.shape == (21, 21)
    assert kernel.sum().item() == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(kernel, kernel.T)
    torch.testing.assert_close(kernel, kernel.flip(0))
    offsets = torch.arange(21.0) - 10
    marginal = kernel.sum(dim=0)
    spread = float((marginal * offsets**2).sum().sqrt())
    assert 4.0 < spread < 4.5, f"std {spread:.2f} px, expected about 3 sqrt(2) = 4.24"


def test_blur_is_normalised_away_from_the_border():
    flat = torch.full((1, 3, 48, 48), 0.7)
    torch.testing.assert_close(blur(flat)[..., 10:-10, 10:-10], flat[..., 10:-10, 10:-10])


def test_tv_loss_values_on_hand_made_images():
    assert tv_loss(torch.full((2, 3, 8, 8), 0.3)).item() == 0.0
    ramp = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 3, 8, 8) * 0.1
    assert tv_loss(ramp).item() == pytest.approx(0.01), "dx = 0.1 everywhere, dy = 0"
    checker = (torch.arange(8).view(8, 1) + torch.arange(8).view(1, 8)) % 2
    checker = checker.float().expand(1, 3, 8, 8)
    assert tv_loss(checker).item() == pytest.approx(2.0), "salt-and-pepper costs most"


def test_content_loss_is_the_mean_squared_feature_difference():
    a = torch.zeros(1, 4, 2, 2)
    b = torch.ones(1, 4, 2, 2) * 3
    assert content_loss(a, b).item() == 9.0
    assert content_loss(b, b).item() == 0.0


def test_grayscale_is_tensorflows_luma():
    colours = torch.eye(3).view(3, 3, 1, 1)  # pure red, green, blue
    luma = grayscale(colours).flatten().tolist()
    assert luma == pytest.approx(list(LUMA))


def test_texture_discriminator_sees_luma_only_and_gives_one_logit_per_patch():
    torch.manual_seed(0)
    critic = TextureDiscriminator(patch_size=32, width=6).eval()
    image = torch.rand(2, 3, 32, 32)
    logits = critic(image)
    assert logits.shape == (2,)
    # The same luma in other colours: the texture critic cannot tell them apart.
    luma = grayscale(image)
    recoloured = luma.expand(2, 3, 32, 32).clone()
    torch.testing.assert_close(critic(recoloured), logits, rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="32x32"):
        critic(torch.rand(1, 3, 40, 40))


def test_one_generator_step_on_the_texture_loss_fools_a_fixed_critic_more():
    torch.manual_seed(1)
    critic = TextureDiscriminator(patch_size=32, width=6).eval()
    fake = torch.rand(2, 3, 32, 32, requires_grad=True)
    before = generator_loss(critic(fake))
    (grad,) = torch.autograd.grad(before, fake)
    after = generator_loss(critic(fake - 0.05 * grad.sign()))
    assert after.item() < before.item()


def test_log_mse_is_minus_psnr_per_image_floored_and_weighs_good_images_alike():
    target = torch.full((2, 3, 8, 8), 0.5)
    output = target.clone()
    output[0] += 0.1  # MSE 1e-2: 20 dB
    output[1] += 0.01  # MSE 1e-4: 40 dB
    floor = 60.0
    value = log_mse_loss(output, target, floor)
    assert value.item() == pytest.approx(-(20 + 40) / 2, abs=0.05), "minus the mean PSNR"
    assert log_mse_loss(target, target, 40.0).item() == pytest.approx(-40.0), "the floor"

    output.requires_grad_(True)
    log_mse_loss(output, target, floor).backward()
    bad, good = (float(output.grad[i].abs().mean()) for i in range(2))
    assert good > 5 * bad, "a small error on a good image pulls harder than on a bad one"
