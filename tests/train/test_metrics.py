import cv2
import numpy as np
import pytest

from smokeclear.train.metrics import PSNR_8BIT_DB, ciede2000, display_psnr, hsv_mse, psnr, ssim


def test_psnr_known_value():
    reference = np.zeros((4, 4, 3))
    assert psnr(reference, reference + 0.1) == pytest.approx(20.0)
    assert psnr(reference, reference) == float("inf")


def test_display_psnr_caps_at_8_bit_rounding(rng):
    image = rng.random((64, 64, 3))
    rounded = np.round(image * 255) / 255
    assert display_psnr(image, image) == PSNR_8BIT_DB == pytest.approx(58.92, abs=0.01)
    assert psnr(image, rounded) == pytest.approx(PSNR_8BIT_DB, abs=0.2), "what 8-bit rounding does"
    assert display_psnr(image, image + 0.1) == pytest.approx(20.0)


def test_ssim_is_one_for_identical_and_falls_with_noise(rng):
    image = rng.random((48, 48, 3))
    assert ssim(image, image) == pytest.approx(1.0)
    slightly = np.clip(image + 0.02 * rng.standard_normal(image.shape), 0, 1)
    heavily = np.clip(image + 0.2 * rng.standard_normal(image.shape), 0, 1)
    assert 1.0 > ssim(image, slightly) > ssim(image, heavily)


def test_shape_mismatch():
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(np.zeros((2, 2, 3)), np.zeros((3, 2, 3)))


def hsv_image(hue_degrees: float, saturation: float, value: float) -> np.ndarray:
    """A 4x4 RGB float32 image of one HSV colour (hue in degrees, as OpenCV's float HSV)."""
    hsv = np.empty((4, 4, 3), np.float32)
    hsv[...] = (hue_degrees, saturation, value)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def test_hsv_mse_is_zero_for_identical_images(rng):
    image = rng.random((16, 16, 3)).astype(np.float32)
    assert hsv_mse(image, image) == {"hsv": 0.0, "h": 0.0, "s": 0.0, "v": 0.0}


def test_hsv_mse_measures_value_on_the_0_255_scale():
    grey = np.full((8, 8, 3), 0.5, np.float32)
    errors = hsv_mse(grey, grey - 10 / 255)
    assert errors["v"] == pytest.approx(100.0, rel=1e-3), "10 levels of 255 darker: 10**2"
    assert errors["h"] == 0.0 and errors["s"] == 0.0, "grey has no hue or saturation"
    assert errors["hsv"] == pytest.approx(100.0 / 3, rel=1e-3)


def test_hsv_mse_compares_hue_around_the_circle():
    just_below, just_above = hsv_image(359.0, 1.0, 1.0), hsv_image(1.0, 1.0, 1.0)
    assert just_below[0, 0, 0] == pytest.approx(1.0) and just_above[0, 0, 0] == pytest.approx(1.0)
    errors = hsv_mse(just_below, just_above)
    assert errors["h"] == pytest.approx((2 / 360) ** 2, rel=0.05), "359 and 1 degrees are 2 apart"
    opposite = hsv_mse(hsv_image(0.0, 1.0, 1.0), hsv_image(180.0, 1.0, 1.0))
    assert opposite["h"] == pytest.approx(0.25, rel=1e-3), "the largest hue error is half a turn"


def test_hsv_mse_hsv_is_the_mean_of_h_s_and_v(rng):
    reference = rng.random((16, 16, 3)).astype(np.float32)
    test = np.clip(reference + 0.1 * rng.standard_normal(reference.shape), 0, 1)
    errors = hsv_mse(reference, test)
    assert min(errors["h"], errors["s"], errors["v"]) > 0
    assert errors["hsv"] == pytest.approx((errors["h"] + errors["s"] + errors["v"]) / 3)
    with pytest.raises(ValueError, match="differ in shape"):
        hsv_mse(reference, reference[:8])


def test_ciede2000_is_zero_for_identical_images_and_grows_with_a_colour_shift(rng):
    image = rng.random((16, 16, 3)).astype(np.float32)
    assert ciede2000(image, image) == pytest.approx(0.0, abs=1e-9)
    warmer = image.copy()
    warmer[..., 0] = np.clip(warmer[..., 0] + 0.03, 0, 1)
    much_warmer = image.copy()
    much_warmer[..., 0] = np.clip(much_warmer[..., 0] + 0.2, 0, 1)
    assert 0.0 < ciede2000(image, warmer) < ciede2000(image, much_warmer)
