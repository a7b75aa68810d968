import numpy as np
import pytest

from smokeclear.train.metrics import psnr, ssim


def test_psnr_known_value():
    reference = np.zeros((4, 4, 3))
    assert psnr(reference, reference + 0.1) == pytest.approx(20.0)
    assert psnr(reference, reference) == float("inf")


def test_ssim_is_one_for_identical_and_falls_with_noise(rng):
    image = rng.random((48, 48, 3))
    assert ssim(image, image) == pytest.approx(1.0)
    slightly = np.clip(image + 0.02 * rng.standard_normal(image.shape), 0, 1)
    heavily = np.clip(image + 0.2 * rng.standard_normal(image.shape), 0, 1)
    assert 1.0 > ssim(image, slightly) > ssim(image, heavily)


def test_shape_mismatch():
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(np.zeros((2, 2, 3)), np.zeros((3, 2, 3)))
