"""Loop-periodic signals, wrapping noise and sub-pixel drawing: what every part of
the scene is built from."""

from __future__ import annotations

import math

import numpy as np

from smokeclear.synthetic.smoke import fractal_noise

#: The scene repeats after this many seconds. The smoke schedule is drawn for
#: one period; motions complete whole cycles in it, so the loop has no seam.
LOOP_PERIOD_S = 600.0


TWO_PI = 2.0 * math.pi


#: Sub-pixel bits of the coordinates handed to cv2's drawing functions: slow
#: motion and thin lines stay smooth instead of snapping to whole pixels.
FIXED_POINT_BITS = 4


def fixed_point(xy: np.ndarray) -> tuple[int, int]:
    """A pixel position (x, y) as cv2's fixed-point drawing coordinates."""
    scaled = np.round(np.asarray(xy) * (1 << FIXED_POINT_BITS)).astype(np.int64)
    return int(scaled[0]), int(scaled[1])


def fixed_point_polygon(points_xy: np.ndarray) -> np.ndarray:
    """``(N, 2)`` pixel positions as an int32 fixed-point polygon for cv2."""
    return np.round(points_xy * (1 << FIXED_POINT_BITS)).astype(np.int32)


def tileable_noise(
    height: int, width: int, rng: np.random.Generator, base_cells: int
) -> np.ndarray:
    """Fractal noise that wraps around at its borders, so it can scroll forever.

    Noise of twice the size is cross-faded with copies of itself shifted by one
    tile; at every border the blend reaches the same sample from both sides.

    Returns:
        ``(height, width)`` float32 in [0, 1].
    """
    big = fractal_noise(2 * height, 2 * width, rng, base_cells=base_cells)
    fade_y = (np.arange(height, dtype=np.float32) / height)[:, None]
    fade_x = (np.arange(width, dtype=np.float32) / width)[None, :]
    tile = (
        big[:height, :width] * fade_y * fade_x
        + big[height:, :width] * (1 - fade_y) * fade_x
        + big[:height, width:] * fade_y * (1 - fade_x)
        + big[height:, width:] * (1 - fade_y) * (1 - fade_x)
    )
    # Renormalise: the blend averages samples mid-tile, which narrows the range.
    low, high = float(tile.min()), float(tile.max())
    return ((tile - low) / max(high - low, 1e-6)).astype(np.float32)


def tile_2x2(tile: np.ndarray) -> np.ndarray:
    """``tile`` repeated twice along each axis, for cheap wrapped scrolling."""
    return np.ascontiguousarray(np.tile(tile, (2, 2) + (1,) * (tile.ndim - 2)))


def lognormal_modulation(noise: np.ndarray, contrast: float) -> np.ndarray:
    """Turn noise into a positive multiplier with mean about 1.

    ``exp(contrast * z)`` of the standardised noise ``z``: one standard
    deviation of noise scales by ``exp(contrast)``, so thin and thick patches
    differ by a ratio rather than an offset, as in real turbulent smoke.

    Returns:
        float32 array shaped like ``noise``, positive.
    """
    standardised = (noise - noise.mean()) / max(float(noise.std()), 1e-6)
    return np.exp(contrast * standardised - 0.5 * contrast**2).astype(np.float32)


def gaussian_profile(samples: np.ndarray, centres: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """``(len(centres), len(samples))`` Gaussians, cut off far out in their tails.

    The exponent is floored: ``exp`` of a large negative number is a subnormal
    float, and arithmetic on subnormals is dozens of times slower.
    """
    exponent = -0.5 * ((samples[None] - centres[:, None]) / sigmas[:, None]) ** 2
    tail_floor = -40.0  # exp(-40) ~ 4e-18: nothing on screen
    return np.exp(np.maximum(exponent, tail_floor))


def loop_frequencies(
    rng: np.random.Generator, count: int, low_hz: float, high_hz: float
) -> np.ndarray:
    """Random frequencies in [low_hz, high_hz], each a whole number of cycles per loop."""
    cycles = np.round(rng.uniform(low_hz, high_hz, count) * LOOP_PERIOD_S)
    return (np.maximum(cycles, 1.0) / LOOP_PERIOD_S).astype(np.float64)


class SineSum:
    """A smooth random signal: a sum of sinusoids with loop-periodic frequencies."""

    def __init__(
        self,
        rng: np.random.Generator,
        terms: int,
        low_hz: float,
        high_hz: float,
        amplitude: float,
    ) -> None:
        self.frequencies_hz = loop_frequencies(rng, terms, low_hz, high_hz)
        self.phases = rng.uniform(0.0, TWO_PI, terms)
        # Split the amplitude so that the sum stays within +-amplitude.
        weights = rng.uniform(0.5, 1.0, terms)
        self.amplitudes = amplitude * weights / weights.sum()

    def at(self, time_s: float) -> float:
        return float(self.over(np.array([time_s]))[0])

    def over(self, times_s: np.ndarray) -> np.ndarray:
        """The signal at each of ``times_s``, same shape, float64."""
        waves = np.sin(TWO_PI * self.frequencies_hz * times_s[..., None] + self.phases)
        return (self.amplitudes * waves).sum(axis=-1)
