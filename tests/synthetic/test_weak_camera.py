"""The synthetic weak camera: each fault alone, the full draw, bad settings."""

from dataclasses import replace

import numpy as np
import pytest

from smokeclear.synthetic.weak_camera import (
    NO_FAULTS,
    WeakCameraFaults,
    degrade,
    jpeg,
    milder,
)


def frame(seed: int = 0, size: int = 48) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.1, 0.9, size, dtype=np.float32)[None, :, None]
    texture = 0.1 * rng.standard_normal((size, size, 1)).astype(np.float32)
    return np.clip(ramp * np.array([0.9, 0.5, 0.4], np.float32) + texture, 0, 1).astype(np.float32)


def only(**faults) -> WeakCameraFaults:
    return replace(NO_FAULTS, **faults)


def high_frequency(image: np.ndarray) -> float:
    return float(np.abs(np.diff(image, axis=1)).mean())


def test_no_faults_gives_the_frame_back():
    clean = frame()
    np.testing.assert_array_equal(degrade(clean, np.random.default_rng(0), NO_FAULTS), clean)


def test_blur_removes_fine_detail():
    clean = frame()
    blurred = degrade(clean, np.random.default_rng(0), only(blur_sigma=(1.2, 1.2)))
    assert high_frequency(blurred) < 0.6 * high_frequency(clean)


def test_veil_lowers_contrast_towards_the_veil_level():
    clean = frame()
    veiled = degrade(clean, np.random.default_rng(0), only(contrast=(0.6, 0.6), veil=(0.3, 0.3)))
    for channel in range(3):
        assert veiled[..., channel].std() == pytest.approx(
            0.6 * clean[..., channel].std(), rel=1e-4
        )
    expected = 0.6 * clean + 0.4 * 0.3 * np.array([1.0, 0.9, 0.8], np.float32)
    np.testing.assert_allclose(veiled, expected, atol=1e-6)


def test_colour_cast_changes_the_channel_balance_but_not_the_mean_gain():
    clean = np.full((16, 16, 3), 0.5, np.float32)
    cast = degrade(clean, np.random.default_rng(3), only(cast=0.2))
    gains = cast.reshape(-1, 3).mean(0) / 0.5
    assert gains.mean() == pytest.approx(1.0, abs=1e-5)
    assert np.ptp(gains) > 0.02 and np.all(np.abs(gains - 1) <= 0.2 / 0.8 + 1e-6)


def test_gamma_above_one_darkens_the_midtones():
    clean = np.full((8, 8, 3), 0.5, np.float32)
    dark = degrade(clean, np.random.default_rng(0), only(gamma=(1.4, 1.4)))
    np.testing.assert_allclose(dark, 0.5**1.4, rtol=1e-5)


def test_noise_grows_with_brightness_when_it_is_shot_noise():
    dark, bright = np.full((64, 64, 3), 0.1, np.float32), np.full((64, 64, 3), 0.8, np.float32)
    faults = only(shot_noise=(0.004, 0.004))
    noisy_dark = degrade(dark, np.random.default_rng(0), faults)
    noisy_bright = degrade(bright, np.random.default_rng(0), faults)
    assert noisy_dark.std() == pytest.approx(np.sqrt(0.004 * 0.1), rel=0.1)
    assert noisy_bright.std() == pytest.approx(np.sqrt(0.004 * 0.8), rel=0.1)


def test_jpeg_round_trip_is_lossy_but_close_and_keeps_the_format():
    clean = frame()
    decoded = jpeg(clean, 30)
    assert decoded.shape == clean.shape and decoded.dtype == np.float32
    error = np.abs(decoded - clean).mean()
    assert 0.002 < error < 0.1
    assert np.abs(jpeg(clean, 95) - clean).mean() < error


def test_a_full_draw_is_deterministic_in_range_and_visibly_degraded():
    clean = frame(1)
    first = degrade(clean, np.random.default_rng(5))
    np.testing.assert_array_equal(first, degrade(clean, np.random.default_rng(5)))
    assert first.dtype == np.float32 and first.shape == clean.shape
    assert first.min() >= 0.0 and first.max() <= 1.0
    assert not np.array_equal(first, degrade(clean, np.random.default_rng(6)))
    assert np.abs(first - clean).mean() > 0.01


def test_fault_probability_leaves_some_frames_with_few_or_no_faults():
    clean = frame(2)
    never = WeakCameraFaults(fault_probability=0.0, jpeg_fraction=0.0)
    for seed in range(3):
        np.testing.assert_array_equal(degrade(clean, np.random.default_rng(seed), never), clean)
    sometimes = WeakCameraFaults(fault_probability=0.5, jpeg_fraction=0.0)
    errors = [
        np.abs(degrade(clean, np.random.default_rng(seed), sometimes) - clean).mean()
        for seed in range(200)
    ]
    assert min(errors) == 0.0, "no fault at all on some frames (1 in 32)"
    assert max(errors) > 0.02, "several faults on others"


def test_milder_runs_from_no_fault_to_the_full_camera():
    faults = WeakCameraFaults()
    assert milder(faults, 1.0) == faults
    clean = frame(3)
    np.testing.assert_array_equal(
        degrade(clean, np.random.default_rng(4), milder(faults, 0.0)), clean
    )
    half = milder(faults, 0.5)
    assert half.blur_sigma == (0.0, 0.6) and half.contrast == (0.8, 1.0)
    assert half.cast == pytest.approx(0.1) and half.jpeg_fraction == pytest.approx(0.35)
    assert half.gamma == pytest.approx((0.8**0.5, 1.4**0.5)), "halfway in the exponent"
    assert half.jpeg_quality == (65, 95) and half.read_noise == (0.0, 0.01)
    errors = {
        strength: np.mean(
            [
                np.abs(
                    degrade(clean, np.random.default_rng(seed), milder(faults, strength)) - clean
                ).mean()
                for seed in range(20)
            ]
        )
        for strength in (0.1, 0.3, 1.0)
    }
    assert errors[0.1] < errors[0.3] < errors[1.0], f"milder faults change the frame less: {errors}"
    with pytest.raises(ValueError, match="strength"):
        milder(faults, 1.5)


def test_wrong_shapes_and_bad_ranges_are_refused():
    with pytest.raises(ValueError, match="RGB"):
        degrade(np.zeros((8, 8), np.float32), np.random.default_rng(0))
    for settings in (
        {"contrast": (0.0, 1.0)},
        {"cast": 1.0},
        {"gamma": (0.0, 1.0)},
        {"jpeg_quality": (0, 90)},
        {"fault_probability": 1.5},
    ):
        with pytest.raises(ValueError):
            WeakCameraFaults(**settings)
