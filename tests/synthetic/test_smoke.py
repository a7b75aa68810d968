import numpy as np
import pytest

from smokeclear.synthetic.smoke import (
    DENSITY_OPACITY,
    MAX_CLOUD_DENSITY,
    cloud_density,
    composite_smoke,
    fractal_noise,
)


def test_fractal_noise_spans_zero_to_one(rng):
    noise = fractal_noise(40, 60, rng)
    assert noise.shape == (40, 60) and noise.dtype == np.float32
    assert noise.min() == pytest.approx(0.0) and noise.max() == pytest.approx(1.0)


def test_cloud_density_scales_with_opacity_as_in_the_paper(rng):
    means = {
        level: np.mean([cloud_density(64, 64, rng, o).mean() for _ in range(10)])
        for level, o in DENSITY_OPACITY.items()
    }
    assert means["low"] < means["medium"] < means["high"]
    assert 0.35 < means["high"] < 0.6, "screened clouds average about half density"
    assert cloud_density(32, 32, rng, 1.0).max() <= MAX_CLOUD_DENSITY + 1e-6
    with pytest.raises(ValueError):
        cloud_density(8, 8, rng, 1.5)


def test_composite_is_the_scattering_model():
    clean = np.full((2, 2, 3), 0.2, np.float32)
    density = np.array([[0.0, 0.5], [1.0, 0.25]], np.float32)
    smoke = np.array([1.0, 0.8, 0.6], np.float32)
    out = composite_smoke(clean, density, smoke)
    np.testing.assert_allclose(out[0, 0], clean[0, 0])
    np.testing.assert_allclose(out[1, 0], smoke)
    np.testing.assert_allclose(out[0, 1], 0.5 * clean[0, 1] + 0.5 * smoke)
    with pytest.raises(ValueError):
        composite_smoke(clean, density[:1], smoke)
