"""Unseen smoke: a second generator, for evaluation only; training never imports it.

It differs from :mod:`smokeclear.synthetic.smoke` in physics and parameters, so that
a score on it tells whether desmoke learnt smoke or learnt our training generator:

- **Beer-Lambert transmission** ``t_c = exp(-beta * k_c * tau)`` per colour channel,
  with a slightly wavelength-dependent extinction ``k_c`` (fine particles scatter
  blue a little more than red), instead of one density for all channels;
- **optical depth** ``tau`` from Gaussian puffs advected along a smooth swirling flow
  plus domain-warped sine noise, instead of value-noise fBm, plumes or wisps;
- **an inverse-square point light**: the airlight of each pixel falls off as
  ``z^2 / (r^2 + z^2)`` from the point under the light tip;
- **forward-scattering glow**: part of the airlight is spread by a wide Gaussian
  PSF, so light bleeds from lit smoke into dark regions.

``I = J * t + (1 - g) * S + g * (S * PSF)`` with ``S = A * L * (1 - t)``.

Density levels are set by the mean transmission over the frame and the channels
(:data:`HELDOUT_LEVELS`): ``beta`` is solved for each frame so that it is met.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Mean transmission (over pixels and channels) of each density level.
HELDOUT_LEVELS: dict[str, float] = {
    "light": 0.8,
    "medium": 0.6,
    "heavy": 0.4,
    "very heavy": 0.25,
}

#: Relative extinction per RGB channel: blue dims slightly faster than red.
EXTINCTION_RGB = np.array([0.9, 1.0, 1.12], np.float32)


def optical_depth(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Optical depth ``tau``: advected Gaussian puffs plus domain-warped sine noise.

    Returns:
        ``(height, width)`` float32 >= 0 with mean 1.
    """
    size = max(height, width)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) / size
    # A smooth flow of a few random rotational modes; puffs ride it from their sources.
    modes = rng.normal(0.0, 1.0, (3, 4))

    def flow(point: np.ndarray) -> np.ndarray:
        x, y = point
        u = sum(a * np.sin(2.5 * (b * x + c * y) + d) for a, b, c, d in modes)
        v = sum(a * np.cos(2.5 * (c * x - b * y) + d) for a, b, c, d in modes)
        return 0.02 * np.array([u, v - 1.5])  # a mean upward drift: warm smoke rises

    tau = np.zeros((height, width), np.float32)
    for _ in range(int(rng.integers(2, 5))):  # sources
        point = np.array([rng.uniform(0, width / size), rng.uniform(0, height / size)])
        radius = rng.uniform(0.02, 0.06)
        for _ in range(int(rng.integers(8, 20))):  # puffs emitted along the path
            distance2 = (xs - point[0]) ** 2 + (ys - point[1]) ** 2
            tau += np.exp(-0.5 * distance2 / radius**2)
            point = point + flow(point) + rng.normal(0.0, 0.01, 2)
            radius *= 1.12
    # Domain-warped sine noise: a sum of random plane waves, sampled at warped points.
    warp_x = sum(np.sin(f * (xs * c + ys * s) + p) for f, c, s, p in _waves(rng, 3, 3.0))
    warp_y = sum(np.sin(f * (xs * c + ys * s) + p) for f, c, s, p in _waves(rng, 3, 3.0))
    wx, wy = xs + 0.15 * warp_x, ys + 0.15 * warp_y
    veil = sum(np.sin(f * (wx * c + wy * s) + p) / f for f, c, s, p in _waves(rng, 6, 12.0))
    veil = 1.0 + veil / max(float(np.abs(veil).max()), 1e-6)  # in [0, 2]
    tau = tau / max(float(tau.mean()), 1e-6) + rng.uniform(0.2, 1.0) * veil
    return (tau / float(tau.mean())).astype(np.float32)


def _waves(
    rng: np.random.Generator, count: int, top_frequency: float
) -> list[tuple[float, float, float, float]]:
    """``count`` plane waves ``(frequency, cos, sin, phase)`` up to ``top_frequency``."""
    waves = []
    for _ in range(count):
        angle = rng.uniform(0, np.pi)
        frequency = rng.uniform(1.0, top_frequency) * 2.0 * np.pi
        waves.append((frequency, np.cos(angle), np.sin(angle), rng.uniform(0, 2 * np.pi)))
    return waves


def point_light(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Inverse-square light from a point at height ``z`` above a random spot.

    Returns:
        ``(height, width)`` float32 in (0, 1], 1 under the light.
    """
    size = max(height, width)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    spot_x, spot_y = rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.8) * height
    z = rng.uniform(0.3, 0.9) * size
    return (z**2 / ((xs - spot_x) ** 2 + (ys - spot_y) ** 2 + z**2)).astype(np.float32)


def extinction_for(tau: np.ndarray, mean_transmission: float) -> float:
    """``beta`` whose transmission ``exp(-beta * k_c * tau)`` averages ``mean_transmission``
    over pixels and channels (bisection: the mean falls as ``beta`` grows)."""
    if not 0.0 < mean_transmission < 1.0:
        raise ValueError(f"mean transmission must lie in (0, 1), got {mean_transmission}")
    sample = tau[::4, ::4][..., None] * EXTINCTION_RGB
    low, high = 0.0, 1.0
    while np.exp(-high * sample).mean() > mean_transmission:
        high *= 2.0
    for _ in range(40):
        beta = 0.5 * (low + high)
        low, high = (
            (beta, high) if np.exp(-beta * sample).mean() > mean_transmission else (low, beta)
        )
    return 0.5 * (low + high)


def heldout_smoke(
    clean: np.ndarray, rng: np.random.Generator, mean_transmission: float
) -> np.ndarray:
    """``clean`` behind unseen smoke whose mean transmission is ``mean_transmission``.

    Args:
        clean: ``(H, W, 3)`` float32 RGB in [0, 1].

    Returns:
        ``(H, W, 3)`` float32 RGB in [0, 1].
    """
    if clean.ndim != 3 or clean.shape[2] != 3:
        raise ValueError(f"clean must be (H, W, 3), got {clean.shape}")
    height, width = clean.shape[:2]
    tau = optical_depth(height, width, rng)
    beta = extinction_for(tau, mean_transmission)
    transmission = np.exp(-beta * tau[..., None] * EXTINCTION_RGB).astype(np.float32)
    # A warm-white lamp seen through smoke of a random grey level.
    smoke_colour = np.array([1.0, 0.96, 0.9], np.float32) * rng.uniform(0.7, 1.0)
    light = point_light(height, width, rng)
    scattered = smoke_colour * light[..., None] * (1.0 - transmission)
    glow_share = rng.uniform(0.3, 0.6)
    glow = cv2.GaussianBlur(scattered, (0, 0), 0.08 * max(height, width))
    smoky = clean * transmission + (1.0 - glow_share) * scattered + glow_share * glow
    return np.clip(smoky, 0.0, 1.0).astype(np.float32)
