"""A held-out low-light camera for evaluation only: training never imports this module.

:mod:`smokeclear.synthetic.lowlight` trains on power-law, sRGB and Rec. 709 response
curves, white Poisson-Gaussian noise with blurred colour noise, red/blue gain casts
and a ``1 - s r^p`` vignette. To check that the restorer learned low light rather
than that model, this one differs in every part:

- **response curves** of other families: a sigmoid in log exposure (film-like, with
  a toe and a shoulder) and the generalised gamma curve of Ng, Chang and Tsui (2007),
  ``f(x) = x ** (p0 + p1 x)``, the two-parameter fit they found to hold for the
  DoRF database of real cameras (Grossberg and Nayar);
- **vignetting** by the cos^4 law of a lens, ``1 / (1 + (r / f) ** 2) ** 2``, elliptical
  and off-centre;
- **noise**: heteroscedastic in linear light with its own gains, plus row banding
  (a per-row offset, as a rolling readout gives) and a black-level pedestal that
  the camera does not subtract exactly;
- **colour casts** along a colour-temperature line (warm: red up, blue down; cool:
  the reverse) with a green-magenta tint, instead of independent red and blue gains.

Images are ``(H, W, 3)`` float32 RGB in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: Light levels of the evaluation rows: the frame keeps 1 / k of the linear light.
HELDOUT_EXPOSURES = (4.0, 12.0)
#: Samples of the response curves' lookup tables (inverted by interpolation).
_CURVE_SAMPLES = 4096


@dataclass(frozen=True)
class HeldOutCurve:
    """A monotone response curve on [0, 1], tabulated so it can be inverted."""

    name: str
    encode: Callable[[np.ndarray], np.ndarray]  # linear -> encoded, monotone, 0 -> 0, 1 -> 1

    def decode(self, encoded: np.ndarray) -> np.ndarray:
        """The inverse of :attr:`encode` by interpolation in its table."""
        linear = np.linspace(0.0, 1.0, _CURVE_SAMPLES)
        return np.interp(np.clip(encoded, 0.0, 1.0), self.encode(linear), linear)


def sigmoid_curve(slope: float, middle: float) -> HeldOutCurve:
    """A film-like curve: a logistic in ``log2`` exposure around ``middle`` (in stops
    below white), rescaled so 0 and 1 map to 0 and 1."""

    def encode(linear: np.ndarray) -> np.ndarray:
        stops = np.log2(np.clip(linear, 2.0**-16, 1.0))
        low, high = (1.0 / (1.0 + np.exp(-slope * (s - middle))) for s in (-16.0, 0.0))
        value = 1.0 / (1.0 + np.exp(-slope * (stops - middle)))
        return np.where(linear <= 0, 0.0, (value - low) / (high - low))

    return HeldOutCurve(f"sigmoid slope {slope:.2f}, middle {middle:.1f} stops", encode)


def generalised_gamma_curve(p0: float, p1: float) -> HeldOutCurve:
    """Ng, Chang and Tsui's generalised gamma: ``x ** (p0 + p1 x)`` (monotone for
    ``p0 > 0``, ``p1 >= 0``)."""

    def encode(linear: np.ndarray) -> np.ndarray:
        linear = np.clip(linear, 0.0, 1.0)
        return linear ** (p0 + p1 * linear)

    return HeldOutCurve(f"generalised gamma {p0:.2f} + {p1:.2f} x", encode)


def heldout_curve(rng: np.random.Generator) -> HeldOutCurve:
    """A sigmoid (slope 0.6-0.9 per stop, middle 2-3.5 stops below white) or a
    generalised gamma (p0 0.35-0.5, p1 0.15-0.3) curve, alike likely."""
    if rng.random() < 0.5:
        return sigmoid_curve(float(rng.uniform(0.6, 0.9)), -float(rng.uniform(2.0, 3.5)))
    return generalised_gamma_curve(float(rng.uniform(0.35, 0.5)), float(rng.uniform(0.15, 0.3)))


def cos4_vignette(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """The cos^4 law, ``(H, W)`` float32 in (0, 1]: an off-centre ellipse, focal length
    0.8-1.6 half-diagonals."""
    centre_y = rng.uniform(0.35, 0.65) * height
    centre_x = rng.uniform(0.35, 0.65) * width
    aspect = rng.uniform(0.8, 1.25)
    focal = rng.uniform(0.8, 1.6) * 0.5 * float(np.hypot(height, width))
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    radius = np.hypot((ys - centre_y) * aspect, (xs - centre_x) / aspect) / focal
    return (1.0 / (1.0 + radius * radius) ** 2).astype(np.float32)


def temperature_gains(rng: np.random.Generator) -> np.ndarray:
    """RGB gains of a white balance set for the wrong light: ``t`` in +-0.3 moves red
    by ``exp(t)`` and blue by ``exp(-t)``; a tint in +-0.1 moves green by ``exp(tint)``."""
    temperature = rng.uniform(-0.3, 0.3)
    tint = rng.uniform(-0.1, 0.1)
    return np.exp(np.array([temperature, tint, -temperature], np.float32))


def banded_noise(linear: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Heteroscedastic noise with row banding for ``(H, W, 3)`` linear light.

    Per-pixel variance ``a x + b^2`` (a 2e-4-2e-3, b 2e-4-1.5e-3), plus a per-row
    offset of 3e-4-1e-3, common to the channels, that a rolling readout leaves.
    """
    gain = rng.uniform(2e-4, 2e-3)
    floor = rng.uniform(2e-4, 1.5e-3)
    sigma = np.sqrt(gain * np.clip(linear, 0.0, None) + floor * floor)
    pixels = sigma * rng.standard_normal(linear.shape).astype(np.float32)
    rows = rng.uniform(3e-4, 1e-3) * rng.standard_normal((linear.shape[0], 1, 1))
    return (pixels + rows).astype(np.float32)


def heldout_darken(clean: np.ndarray, exposure: float, rng: np.random.Generator) -> np.ndarray:
    """``clean`` as the held-out camera records it with ``1 / exposure`` of the light.

    Decode with a drawn held-out curve, take ``1 / exposure`` of the light, apply a
    temperature cast and cos^4 vignetting, add banded noise and a pedestal of up to
    0.002, encode with the same curve, round to 8 bits.

    Args:
        clean: ``(H, W, 3)`` float RGB in [0, 1].
    Returns:
        ``(H, W, 3)`` float32 RGB in [0, 1].
    """
    curve = heldout_curve(rng)
    height, width = clean.shape[:2]
    linear = curve.decode(np.clip(clean, 0.0, 1.0)).astype(np.float32)
    linear = linear * temperature_gains(rng) / exposure
    linear = linear * cos4_vignette(height, width, rng)[..., None]
    linear = linear + banded_noise(linear, rng) + rng.uniform(0.0, 0.002)
    encoded = curve.encode(np.clip(linear, 0.0, 1.0))
    return (np.round(np.clip(encoded, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)
