import numpy as np
import pytest

from smokeclear.synthetic.smoke import (
    DENSITY_OPACITY,
    MAX_CLOUD_DENSITY,
    SMOKE_STYLES,
    TRACE_DENSITY,
    cloud_density,
    composite_smoke,
    fractal_noise,
    random_varied_colour,
    render_smoke,
    scatter_composite,
    scope_light,
    smoke_shape,
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


@pytest.mark.parametrize("style", SMOKE_STYLES)
def test_every_smoke_style_is_a_density_pattern_with_peak_one(rng, style):
    shape = smoke_shape(24, 40, rng, style)
    assert shape.shape == (24, 40) and shape.dtype == np.float32
    assert shape.min() >= 0.0 and shape.max() == pytest.approx(1.0)


def test_styles_differ_in_coverage(rng):
    cover = {
        style: np.mean([smoke_shape(48, 48, rng, style).mean() for _ in range(6)])
        for style in SMOKE_STYLES
    }
    assert cover["haze"] > 0.6 > cover["clouds"] > cover["wisps"], f"haze even, wisps thin: {cover}"
    with pytest.raises(ValueError, match="unknown smoke style"):
        smoke_shape(8, 8, rng, "fog")


def test_scattering_blurs_what_lies_behind_the_smoke():
    checkerboard = np.indices((32, 32)).sum(axis=0) % 2
    clean = np.repeat(checkerboard[..., None], 3, axis=2).astype(np.float32)
    density = np.full((32, 32), 0.5, np.float32)
    light = np.ones((32, 32), np.float32)
    colour = np.full(3, 0.8, np.float32)
    airlight_only = scatter_composite(clean, density, colour, light, blur_sigma=0.0)
    scattered = scatter_composite(clean, density, colour, light, blur_sigma=2.0)
    np.testing.assert_allclose(airlight_only, composite_smoke(clean, density, colour), atol=1e-6)
    # at density 0.5 half the checkerboard is blurred flat: half its contrast is left
    assert scattered.std() < 0.6 * airlight_only.std(), "the checkerboard must lose contrast"
    dark = scatter_composite(clean, density, colour, 0.2 * light, blur_sigma=0.0)
    assert dark.mean() < airlight_only.mean(), "smoke in the dark glows less"


def test_scope_light_is_bright_in_its_spot_and_dark_far_away(rng):
    light = scope_light(40, 60, rng, scene=np.full((40, 60, 3), 0.5, np.float32))
    assert light.shape == (40, 60) and light.max() == pytest.approx(1.0) and light.min() > 0.0


def test_smoke_colours_range_from_grey_to_yellow_brown(rng):
    colours = np.array([random_varied_colour(rng) for _ in range(200)])
    warmth = colours[:, 0] - colours[:, 2]
    assert warmth.min() < 0.1 and warmth.max() > 0.25, "grey and yellow-brown both drawn"
    assert colours.min() >= 0.0 and colours.max() <= 1.0


def test_render_smoke_spans_trace_to_near_opaque(rng):
    clean = rng.random((32, 32, 3), dtype=np.float32)
    changes = [np.abs(render_smoke(clean, rng) - clean).max() for _ in range(40)]
    assert min(changes) < 0.1 and max(changes) > 0.6, f"from trace to dense: {changes}"
    traces = [np.abs(render_smoke(clean, rng, TRACE_DENSITY) - clean).max() for _ in range(20)]
    # density d moves a pixel by at most d towards the airlight and d towards its blur
    assert max(traces) <= 2 * TRACE_DENSITY + 1e-6, "a trace changes every pixel very little"
    with pytest.raises(ValueError):
        render_smoke(clean, rng, max_density=0.0)


def test_render_smoke_heavy_share_draws_dense_smoke(rng):
    clean = np.zeros((32, 32, 3), np.float32)  # black: the smoke alone shows

    def mean_change(**shares):
        return np.mean([render_smoke(clean, rng, **shares).mean() for _ in range(30)])

    assert mean_change(heavy_fraction=1.0) > 1.5 * mean_change(heavy_fraction=0.0)
    with pytest.raises(ValueError, match="paper_fraction"):
        render_smoke(clean, rng, paper_fraction=1.5)
