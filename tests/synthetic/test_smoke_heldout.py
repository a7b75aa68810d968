import numpy as np
import pytest

from smokeclear.synthetic.smoke_heldout import (
    EXTINCTION_RGB,
    HELDOUT_LEVELS,
    extinction_for,
    heldout_smoke,
    optical_depth,
    point_light,
)


def test_optical_depth_is_positive_with_mean_one(rng):
    tau = optical_depth(24, 40, rng)
    assert tau.shape == (24, 40) and tau.dtype == np.float32
    assert tau.min() >= 0.0 and tau.mean() == pytest.approx(1.0, rel=1e-4)


@pytest.mark.parametrize("transmission", list(HELDOUT_LEVELS.values()))
def test_extinction_meets_the_levels_mean_transmission(rng, transmission):
    tau = optical_depth(32, 32, rng)
    beta = extinction_for(tau, transmission)
    realised = np.exp(-beta * tau[::4, ::4, None] * EXTINCTION_RGB).mean()
    assert realised == pytest.approx(transmission, abs=1e-3)
    with pytest.raises(ValueError):
        extinction_for(tau, 1.0)


def test_levels_are_ordered_from_light_to_very_heavy():
    transmissions = list(HELDOUT_LEVELS.values())
    assert transmissions == sorted(transmissions, reverse=True)
    clean = np.full((32, 48, 3), 0.3, np.float32)
    changes = [
        np.abs(heldout_smoke(clean, np.random.default_rng(5), t) - clean).mean()
        for t in transmissions
    ]
    assert changes == sorted(changes), f"denser smoke must change the frame more: {changes}"


def test_blue_dims_faster_and_the_light_falls_off(rng):
    assert EXTINCTION_RGB[0] < EXTINCTION_RGB[1] < EXTINCTION_RGB[2]
    light = point_light(30, 40, rng)
    assert light.max() <= 1.0 and light.min() < 0.9 * light.max(), "inverse square falls off"
    smoky = heldout_smoke(rng.random((16, 16, 3), dtype=np.float32), rng, 0.5)
    assert smoky.shape == (16, 16, 3) and smoky.min() >= 0.0 and smoky.max() <= 1.0
    with pytest.raises(ValueError):
        heldout_smoke(np.zeros((8, 8)), rng, 0.5)
