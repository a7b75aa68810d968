"""Tests for reflection synthesis (tiny images, seeded, CPU only)."""

from __future__ import annotations

import numpy as np
import pytest

from smokeclear.synthetic.reflection import (
    GAMMA,
    SyntheticPair,
    blend_reflection,
    reflection_layer,
    specular_highlights,
    synthesize,
)

#: Float32 round trips through ``x ** gamma ** (1 / gamma)`` stay within this.
FLOAT_TOLERANCE = 1e-5


def random_image(rng: np.random.Generator, height: int = 32, width: int = 48) -> np.ndarray:
    return rng.random((height, width, 3), dtype=np.float32)


def test_blend_without_reflection_returns_the_transmission(rng: np.random.Generator) -> None:
    transmission = random_image(rng)

    blended, clean, reflection = blend_reflection(transmission, np.zeros_like(transmission), 1.0)

    np.testing.assert_allclose(blended, transmission, atol=FLOAT_TOLERANCE)
    np.testing.assert_array_equal(clean, transmission)
    assert not reflection.any(), "expected a zero reflection to stay zero"


def test_blend_follows_eq6_with_gamma() -> None:
    transmission = np.full((2, 2, 3), 0.5, np.float32)
    reflection_linear = np.full((2, 2, 3), 0.1, np.float32)

    blended, clean, reflection = blend_reflection(transmission, reflection_linear, 0.9)

    expected = (0.9 * 0.5**2.2 + 0.1) ** (1 / 2.2)
    np.testing.assert_allclose(blended, expected, rtol=1e-5)
    np.testing.assert_allclose(clean, 0.5)
    np.testing.assert_allclose(reflection, 0.1 ** (1 / 2.2), rtol=1e-5)


def test_blend_clips_to_unit_range_and_returns_float32(rng: np.random.Generator) -> None:
    transmission = random_image(rng).astype(np.float64)
    reflection_linear = 3.0 * random_image(rng)  # much of it above 1: saturates

    outputs = blend_reflection(transmission, reflection_linear, 0.95)

    for name, image in zip(("blended", "transmission", "reflection"), outputs, strict=True):
        assert image.dtype == np.float32, f"{name}: expected float32, got {image.dtype}"
        assert image.shape == transmission.shape, f"{name}: expected {transmission.shape}"
        assert image.min() >= 0.0 and image.max() <= 1.0, (
            f"{name}: expected values in [0, 1], got [{image.min()}, {image.max()}]"
        )
    assert (outputs[0] == 1.0).any(), "expected reflections above 1 to saturate to 1"


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan")])
def test_blend_rejects_alpha_outside_unit_range(alpha: float) -> None:
    image = np.zeros((4, 4, 3), np.float32)
    with pytest.raises(ValueError, match="alpha"):
        blend_reflection(image, image, alpha)


def test_blend_rejects_mismatched_shapes_naming_them() -> None:
    transmission = np.zeros((4, 4, 3), np.float32)
    reflection_linear = np.zeros((4, 5, 3), np.float32)
    with pytest.raises(ValueError, match=r"\(4, 5, 3\).*\(4, 4, 3\)"):
        blend_reflection(transmission, reflection_linear, 0.9)
    with pytest.raises(ValueError, match="H, W, 3"):
        blend_reflection(transmission[..., 0], reflection_linear[..., 0], 0.9)


def test_blend_rejects_uint8_images() -> None:
    image = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="255"):
        blend_reflection(image, np.zeros((4, 4, 3), np.float32), 0.9)


def test_reflection_layer_is_a_blurred_linear_copy(rng: np.random.Generator) -> None:
    source = random_image(rng)

    layer = reflection_layer(source, rng, strength=0.4)

    assert layer.shape == source.shape and layer.dtype == np.float32, (
        f"expected {source.shape} float32, got {layer.shape} {layer.dtype}"
    )
    assert layer.min() >= 0.0 and layer.max() <= 0.4 + FLOAT_TOLERANCE, (
        f"expected values in [0, strength], got [{layer.min()}, {layer.max()}]"
    )
    np.testing.assert_allclose(layer.mean(), 0.4 * (source**GAMMA).mean(), rtol=0.05)
    assert layer.std() < 0.4 * (source**GAMMA).std() / 2, "expected blur to smooth the noise"


@pytest.mark.parametrize(("height", "width"), [(32, 32), (48, 64), (64, 64)])
@pytest.mark.parametrize("seed", range(5))
def test_specular_highlights_are_sparse_and_saturate(height: int, width: int, seed: int) -> None:
    highlights = specular_highlights(height, width, np.random.default_rng(seed))

    assert highlights.shape == (height, width, 3), f"expected {(height, width, 3)}"
    assert highlights.dtype == np.float32, f"expected float32, got {highlights.dtype}"
    assert highlights.min() >= 0.0, f"expected light only, got min {highlights.min()}"
    coverage = (highlights.max(axis=-1) > 0.5).mean()
    assert 0.001 <= coverage <= 0.1, f"expected 0.1-10 % of pixels lit, got {coverage:.2%}"
    assert highlights.min(axis=-1).max() > 1.0, "expected a core that saturates every channel"


def test_specular_highlights_are_warm_white(rng: np.random.Generator) -> None:
    highlights = specular_highlights(64, 64, rng)

    red, green, blue = highlights.reshape(-1, 3).sum(axis=0)
    assert red >= green >= blue > 0.75 * red, (
        f"expected warm white (R >= G >= B, B near R), got sums {red:.1f} {green:.1f} {blue:.1f}"
    )


@pytest.mark.parametrize("size", [(0, 32), (32, 12.5)])
def test_specular_highlights_reject_bad_sizes(size: tuple) -> None:
    with pytest.raises(ValueError, match="whole number"):
        specular_highlights(*size, np.random.default_rng(0))


@pytest.mark.parametrize("with_source", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_synthesize_only_adds_light(seed: int, with_source: bool) -> None:
    rng = np.random.default_rng(seed)
    transmission = random_image(rng, 48, 64)
    source = random_image(rng, 48, 64) if with_source else None

    pair = synthesize(transmission, rng, reflection_source=source)

    assert isinstance(pair, SyntheticPair), f"expected a SyntheticPair, got {type(pair)}"
    assert 0.8 <= pair.alpha <= 1.0, f"expected alpha in the paper's [0.8, 1], got {pair.alpha}"
    for name in ("blended", "transmission", "reflection"):
        image = getattr(pair, name)
        assert image.shape == transmission.shape and image.dtype == np.float32, (
            f"{name}: expected {transmission.shape} float32, got {image.shape} {image.dtype}"
        )
    np.testing.assert_array_equal(pair.transmission, transmission)
    floor = transmission * pair.alpha ** (1 / GAMMA) - FLOAT_TOLERANCE
    assert (pair.blended >= floor).all(), "expected reflections to only add light"
    assert (pair.blended == 1.0).any(), "expected saturated highlights in the blend"


def test_synthesize_respects_alpha_range(rng: np.random.Generator) -> None:
    transmission = random_image(rng)

    alphas = [synthesize(transmission, rng, alpha_range=(0.3, 0.4)).alpha for _ in range(10)]

    assert all(0.3 <= alpha <= 0.4 for alpha in alphas), f"expected alphas in [0.3, 0.4]: {alphas}"
    with pytest.raises(ValueError, match="alpha_range"):
        synthesize(transmission, rng, alpha_range=(0.9, 0.8))


def test_synthesize_rejects_a_source_of_another_size(rng: np.random.Generator) -> None:
    with pytest.raises(ValueError, match="reflection_source"):
        synthesize(random_image(rng, 32, 32), rng, reflection_source=random_image(rng, 32, 48))


def test_synthesize_is_deterministic_for_a_seed() -> None:
    images = np.random.default_rng(7)
    transmission, source = random_image(images), random_image(images)

    first = synthesize(transmission, np.random.default_rng(3), reflection_source=source)
    second = synthesize(transmission, np.random.default_rng(3), reflection_source=source)
    other = synthesize(transmission, np.random.default_rng(4), reflection_source=source)

    for name in ("blended", "reflection"):
        assert np.array_equal(getattr(first, name), getattr(second, name)), (
            f"{name}: expected identical output for the same seed"
        )
    assert first.alpha == second.alpha, "expected the same alpha for the same seed"
    assert not np.array_equal(first.blended, other.blended), "expected another seed to differ"
