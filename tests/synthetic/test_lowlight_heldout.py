"""Tests for the held-out low-light camera (tiny images, seeded, CPU only)."""

from __future__ import annotations

import numpy as np
import pytest

from smokeclear.synthetic.lowlight import srgb_decode
from smokeclear.synthetic.lowlight_heldout import (
    HELDOUT_EXPOSURES,
    banded_noise,
    cos4_vignette,
    generalised_gamma_curve,
    heldout_curve,
    heldout_darken,
    sigmoid_curve,
    temperature_gains,
)


@pytest.mark.parametrize(
    "curve",
    [sigmoid_curve(0.6, -2.0), sigmoid_curve(0.9, -3.5), generalised_gamma_curve(0.35, 0.25)],
)
def test_heldout_curves_map_0_and_1_rise_and_invert(curve) -> None:
    linear = np.linspace(0.0, 1.0, 1001)

    encoded = curve.encode(linear)

    assert encoded[0] == pytest.approx(0.0, abs=1e-6) and encoded[-1] == pytest.approx(1.0)
    assert np.all(np.diff(encoded) > 0), f"{curve.name} must rise"
    np.testing.assert_allclose(curve.decode(encoded), linear, atol=2e-4)


def test_heldout_curves_are_not_the_training_families() -> None:
    linear = np.linspace(0.01, 1.0, 100)
    for seed in range(10):
        curve = heldout_curve(np.random.default_rng(seed))
        encoded = curve.encode(linear)
        # No power law fits: the local exponent d log f / d log x is not constant.
        exponent = np.gradient(np.log(encoded), np.log(linear))
        assert exponent.max() - exponent.min() > 0.1, f"{curve.name} is nearly a power law"


def test_cos4_vignette_peaks_at_one_and_falls_towards_the_corners() -> None:
    falloff = cos4_vignette(48, 64, np.random.default_rng(2))

    assert falloff.shape == (48, 64) and falloff.dtype == np.float32
    assert falloff.max() == pytest.approx(1.0, abs=0.01) and falloff.min() > 0.1
    assert falloff[[0, 0, -1, -1], [0, -1, 0, -1]].min() < 0.8


def test_temperature_gains_move_red_and_blue_apart() -> None:
    for seed in range(10):
        red, green, blue = temperature_gains(np.random.default_rng(seed))
        assert red * blue == pytest.approx(1.0, rel=1e-5), "warm or cool, not brighter"
        assert np.exp(-0.1) - 1e-6 <= green <= np.exp(0.1) + 1e-6


def test_banded_noise_has_rows_that_share_an_offset() -> None:
    linear = np.full((200, 300, 3), 0.05, np.float32)

    noise = banded_noise(linear, np.random.default_rng(0))

    row_means = noise.mean(axis=(1, 2))
    pixel_part = noise.std() / np.sqrt(300 * 3)
    assert row_means.std() > 2 * pixel_part, "rows carry their own offset"
    assert noise.std() > 1e-4


def test_heldout_darken_darkens_by_about_the_exposure_and_is_deterministic() -> None:
    clean = np.random.default_rng(0).uniform(0.2, 0.9, (48, 64, 3)).astype(np.float32)
    for exposure in HELDOUT_EXPOSURES:
        dark = heldout_darken(clean, exposure, np.random.default_rng(3))
        assert dark.shape == clean.shape and dark.dtype == np.float32
        assert dark.min() >= 0.0 and dark.max() <= 1.0
        kept = srgb_decode(dark).mean() / srgb_decode(clean).mean()
        assert 0.2 / exposure < kept < 3.0 / exposure, f"1/{exposure:g}: kept {kept:.3f}"
        again = heldout_darken(clean, exposure, np.random.default_rng(3))
        np.testing.assert_array_equal(dark, again)
    assert not np.array_equal(
        heldout_darken(clean, 4.0, np.random.default_rng(3)),
        heldout_darken(clean, 4.0, np.random.default_rng(4)),
    )
