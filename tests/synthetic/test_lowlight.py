"""Tests for low-light synthesis (tiny images, seeded, CPU only)."""

from __future__ import annotations

import numpy as np
import pytest

from smokeclear.synthetic.lowlight import (
    EVAL_GAMMA,
    EVAL_NOISE_SIGMA,
    PAPER_GAMMA_RANGE,
    REC709,
    SRGB,
    Capture,
    ResponseCurve,
    capture,
    darken,
    gamma_field,
    poisson_gaussian_noise,
    power_curve,
    radial_falloff,
    srgb_decode,
    training_curve,
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


# --------------------------------------------------------------------------- camera model


@pytest.mark.parametrize("curve", [SRGB, REC709, power_curve(2.2), power_curve(1.8)])
def test_response_curves_round_trip_and_are_monotone(curve: ResponseCurve) -> None:
    linear = np.linspace(0.0, 1.0, 257)

    encoded = curve.encode(linear)

    assert encoded[0] == pytest.approx(0.0, abs=1e-9) and encoded[-1] == pytest.approx(1.0)
    assert np.all(np.diff(encoded) > 0), f"{curve.name} must rise"
    assert np.all(encoded >= linear - 1e-9), f"{curve.name} must brighten the dark end"
    np.testing.assert_allclose(curve.decode(encoded), linear, atol=1e-6)


def test_srgb_and_rec709_match_their_standards() -> None:
    # sRGB: 0.5 encoded is 0.214 linear; Rec. 709: 0.018 linear is 0.081 encoded.
    assert float(srgb_decode(np.array(0.5))) == pytest.approx(0.21404, abs=1e-4)
    assert float(REC709.encode(np.array(0.018))) == pytest.approx(0.081, abs=1e-3)
    assert float(power_curve(2.2).encode(np.array(0.5))) == pytest.approx(0.5 ** (1 / 2.2))


def test_training_curves_are_the_four_families() -> None:
    names = {training_curve(np.random.default_rng(seed)).name for seed in range(40)}
    assert {"gamma 2.20", "sRGB", "Rec. 709"} <= names
    drawn = [float(n.split()[1]) for n in names if n.startswith("gamma") and n != "gamma 2.20"]
    assert drawn and all(1.8 <= g <= 2.6 for g in drawn), names


def test_capture_with_nothing_drawn_returns_the_frame(rng: np.random.Generator) -> None:
    clean = random_image(rng)

    for curve in (SRGB, REC709, power_curve(2.2)):
        exact = capture(clean, Capture(curve, quantise=False), rng)
        np.testing.assert_allclose(exact, clean, atol=1e-5, err_msg=curve.name)
        eight_bit = capture(clean, Capture(curve), rng)
        assert np.abs(eight_bit - clean).max() <= 0.5 / 255 + 1e-5, "8-bit rounding only"


def test_capture_divides_the_linear_light_by_the_exposure(rng: np.random.Generator) -> None:
    clean = random_image(rng)

    dark = capture(clean, Capture(SRGB, exposure=8.0, quantise=False), rng)

    np.testing.assert_allclose(srgb_decode(dark), srgb_decode(clean) / 8.0, atol=1e-6)
    power = capture(clean, Capture(power_curve(2.0), exposure=4.0, quantise=False), rng)
    np.testing.assert_allclose(power, clean / 2.0, atol=1e-6)  # (x^2 / 4) ** 0.5


def test_capture_applies_the_cast_and_the_vignette_in_linear_light() -> None:
    rng = np.random.default_rng(0)
    clean = np.full((16, 16, 3), 0.5, np.float32)
    vignette = np.linspace(0.5, 1.0, 16 * 16, dtype=np.float32).reshape(16, 16)
    drawn = Capture(SRGB, gains=(1.2, 1.0, 0.8), vignette=vignette, quantise=False)

    dark = capture(clean, drawn, rng)

    expected = srgb_decode(clean) * np.array([1.2, 1.0, 0.8]) * vignette[..., None]
    np.testing.assert_allclose(srgb_decode(dark), expected, atol=1e-6)


def test_radial_falloff_is_one_near_the_centre_and_darkest_in_a_corner() -> None:
    falloff = radial_falloff(40, 60, 0.5, 2.0, np.random.default_rng(1))

    assert falloff.shape == (40, 60) and falloff.dtype == np.float32
    assert falloff.max() > 0.98 and falloff.min() >= 0.5 - 1e-6
    corners = falloff[[0, 0, -1, -1], [0, -1, 0, -1]]
    assert corners.max() < 0.85 and falloff[20, 30] > 0.95


def test_sensor_noise_grows_with_the_signal() -> None:
    rng = np.random.default_rng(0)
    shot, read = 1e-3, 1e-3
    for level in (0.0, 0.05, 0.5):
        linear = np.full((128, 128, 3), level, np.float32)
        noise = poisson_gaussian_noise(linear, shot, read, 0.0, rng)
        expected = np.sqrt(shot * level + read * read)
        assert noise.std() == pytest.approx(expected, rel=0.05), f"at {level}"
        assert abs(noise.mean()) < 0.05 * expected


def test_colour_noise_is_blotchy_and_independent_across_channels() -> None:
    linear = np.full((128, 128, 3), 0.1, np.float32)

    def neighbour_correlation(noise: np.ndarray) -> float:
        return float(np.corrcoef(noise[:, 1:, 0].ravel(), noise[:, :-1, 0].ravel())[0, 1])

    white = poisson_gaussian_noise(linear, 1e-3, 0.0, 0.0, np.random.default_rng(0))
    colour = poisson_gaussian_noise(linear, 1e-3, 0.0, 1.0, np.random.default_rng(0))

    assert abs(neighbour_correlation(white)) < 0.05
    assert neighbour_correlation(colour) > 0.5, "colour noise spreads over neighbours"
    channels = np.corrcoef(colour[..., 0].ravel(), colour[..., 1].ravel())[0, 1]
    assert abs(channels) < 0.1, "each channel its own: it shows as colour, not grey"
    assert colour.std() == pytest.approx(white.std(), rel=0.05), "the same variance"
