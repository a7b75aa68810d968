"""Tests for low-light synthesis (tiny images, seeded, CPU only)."""

from __future__ import annotations

import numpy as np
import pytest

from smokeclear.synthetic.lowlight import (
    EVAL_GAMMA,
    EVAL_NOISE_SIGMA,
    PAPER_GAMMA_RANGE,
    darken,
    gamma_field,
)


def random_image(rng: np.random.Generator, height: int = 32, width: int = 48) -> np.ndarray:
    return rng.random((height, width, 3), dtype=np.float32)


def test_paper_constants() -> None:
    assert PAPER_GAMMA_RANGE == (2.0, 4.0), "Sec. IV-A: gamma in (2, 4)"
    assert EVAL_GAMMA == 3.0 and EVAL_NOISE_SIGMA == 0.01, "Sec. IV-B: gamma 3 + 1 % noise"


def test_darken_without_noise_is_the_gamma_power(rng: np.random.Generator) -> None:
    clean = random_image(rng)

    dark = darken(clean, 3.0, 0.0, rng)

    np.testing.assert_allclose(dark, clean**3, rtol=1e-6, atol=1e-7)
    assert dark.mean() < clean.mean(), "a gamma above 1 darkens"
    np.testing.assert_array_equal(darken(clean, 1.0, 0.0, rng), clean)


def test_darken_adds_gaussian_noise_of_the_given_sigma(rng: np.random.Generator) -> None:
    clean = np.full((64, 64, 3), 0.7, np.float32)  # 0.7**2 = 0.49: far from the clip

    dark = darken(clean, 2.0, 0.02, rng)

    residual = dark.astype(np.float64) - 0.49
    assert abs(residual.mean()) < 2e-3, f"noise should be zero-mean, got {residual.mean():.4f}"
    assert residual.std() == pytest.approx(0.02, rel=0.05), f"std {residual.std():.4f}"


def test_darken_clips_to_unit_range_and_returns_float32(rng: np.random.Generator) -> None:
    clean = random_image(rng).astype(np.float64) * 1.4 - 0.2  # outside [0, 1] on both sides

    dark = darken(clean, 2.5, 0.5, rng)

    assert dark.dtype == np.float32 and dark.shape == clean.shape
    assert dark.min() == 0.0 and dark.max() == 1.0, "heavy noise must saturate at both ends"


def test_a_gamma_map_darkens_per_pixel(rng: np.random.Generator) -> None:
    clean = random_image(rng, 16, 16)
    gamma = np.ones((16, 16), np.float32)
    gamma[:, 8:] = 3.0

    dark = darken(clean, gamma, 0.0, rng)

    assert dark.shape == clean.shape
    np.testing.assert_allclose(dark[:, :8], clean[:, :8], rtol=1e-6)
    np.testing.assert_allclose(dark[:, 8:], clean[:, 8:] ** 3, rtol=1e-5, atol=1e-7)


def test_darken_is_deterministic_for_a_seed() -> None:
    clean = random_image(np.random.default_rng(0))
    first = darken(clean, 3.0, 0.01, np.random.default_rng(5))
    second = darken(clean, 3.0, 0.01, np.random.default_rng(5))
    other = darken(clean, 3.0, 0.01, np.random.default_rng(6))
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize(("height", "width"), [(32, 32), (48, 64), (64, 40)])
def test_gamma_field_has_the_frame_shape_and_stays_in_range(height: int, width: int) -> None:
    field = gamma_field(height, width, 3.0, np.random.default_rng(0))

    assert field.shape == (height, width) and field.dtype == np.float32
    assert field.min() >= 1.0 and field.max() <= 3.0 + 1e-6


@pytest.mark.parametrize("seed", range(8))
def test_gamma_field_is_lit_at_a_spot_and_dark_far_from_it(seed: int) -> None:
    gamma_max = 3.0

    field = gamma_field(48, 64, gamma_max, np.random.default_rng(seed))

    # The wobble is +-10 % of the range (a little more after cubic upsampling).
    assert field.min() <= 1.0 + 0.15 * (gamma_max - 1), f"no lit spot: min {field.min():.3f}"
    assert field.max() >= 1.0 + 0.4 * (gamma_max - 1), f"no dark far field: max {field.max()}"
    lit = np.unravel_index(field.argmin(), field.shape)
    dark = np.unravel_index(field.argmax(), field.shape)
    apart = np.hypot(lit[0] - dark[0], lit[1] - dark[1]) / np.hypot(48, 64)
    assert apart > 0.2, f"the lit spot and the darkest pixel are only {apart:.2f} diagonals apart"


@pytest.mark.parametrize("seed", range(8))
def test_gamma_field_is_smooth(seed: int) -> None:
    field = gamma_field(48, 64, 3.0, np.random.default_rng(seed))

    step = max(np.abs(np.diff(field, axis=0)).max(), np.abs(np.diff(field, axis=1)).max())
    assert step < 0.1 * (3.0 - 1.0), f"neighbouring gammas differ by up to {step:.3f}"


def test_gamma_field_of_gamma_max_one_is_flat() -> None:
    field = gamma_field(32, 32, 1.0, np.random.default_rng(0))
    np.testing.assert_array_equal(field, np.ones((32, 32), np.float32))


def test_gamma_field_is_deterministic_for_a_seed() -> None:
    first = gamma_field(32, 48, 3.0, np.random.default_rng(3))
    second = gamma_field(32, 48, 3.0, np.random.default_rng(3))
    other = gamma_field(32, 48, 3.0, np.random.default_rng(4))
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)
