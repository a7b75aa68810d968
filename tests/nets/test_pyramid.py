import pytest
import torch

from smokeclear.nets.pyramid import laplacian_pyramid, reconstruct


def test_pyramid_reconstructs_its_input_exactly():
    torch.manual_seed(0)
    image = torch.rand(2, 3, 64, 96)
    layers = laplacian_pyramid(image, levels=6, radius=3, eps=1.0)
    torch.testing.assert_close(reconstruct(layers), image, atol=1e-6, rtol=0)


def test_pyramid_levels_halve_and_last_is_the_base():
    image = torch.rand(1, 3, 64, 32)
    layers = laplacian_pyramid(image, levels=6, radius=3, eps=1.0)
    assert [tuple(layer.shape[-2:]) for layer in layers] == [
        (64, 32),
        (32, 16),
        (16, 8),
        (8, 4),
        (4, 2),
        (2, 1),
    ]
    # Detail layers are zero-mean-ish band-pass; the last layer is a low-pass image.
    assert layers[-1].min() >= 0 and layers[-1].max() <= 1
    assert abs(float(layers[1].mean())) < 0.05


def test_detail_layers_vanish_on_a_flat_image():
    layers = laplacian_pyramid(torch.full((1, 3, 32, 32), 0.4), levels=4, radius=3, eps=1.0)
    for detail in layers[:-1]:
        assert float(detail.abs().max()) < 1e-6, "a flat image has no detail"


def test_pyramid_runs_in_float32_for_half_input():
    layers = laplacian_pyramid(torch.rand(1, 3, 32, 32).half(), levels=3, radius=3, eps=1.0)
    assert all(layer.dtype == torch.float32 for layer in layers)


def test_pyramid_rejects_sizes_that_do_not_divide():
    with pytest.raises(ValueError, match="multiples of 32"):
        laplacian_pyramid(torch.rand(1, 3, 48, 64), levels=6, radius=3, eps=1.0)
