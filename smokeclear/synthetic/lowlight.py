"""Low-light synthesis: the lowlight paper's gamma darkening, and the OR's dark cavities.

The paper (Sec. IV-A, after Lore et al.) darkens clean images by a gamma in (2, 4)
and adds a small Gaussian noise, so the network learns not to amplify sensor
noise; its test protocol is gamma 3 plus 1 % Gaussian noise (standard deviation
0.01 of the [0, 1] range).

A global gamma darkens every pixel alike, which the paper itself calls a
limitation. A laparoscope's light sits at its tip, so what goes dark in surgery
is the far field: the tissue near the scope stays lit while a cavity behind it
falls off into the dark. :func:`gamma_field` draws that as a smooth per-pixel
gamma, 1 around a random lit spot rising to a maximum towards the rest of the
frame, with a little low-frequency wobble.

A gamma also stands in for a whole capture chain; :func:`capture` runs one (a
camera response curve, exposure lost in linear light, Poisson-Gaussian and colour
noise, a white-balance cast, vignetting), see the camera model section below.

Images are ``(H, W, 3)`` float32 RGB in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

#: The paper's training range of the darkening gamma (Sec. IV-A).
PAPER_GAMMA_RANGE = (2.0, 4.0)
#: The paper's synthetic test protocol (Sec. IV-B): gamma 3 and 1 % Gaussian noise.
EVAL_GAMMA = 3.0
EVAL_NOISE_SIGMA = 0.01


def darken(
    clean: np.ndarray,
    gamma: float | np.ndarray,
    noise_sigma: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """``clean ** gamma`` plus Gaussian noise of ``noise_sigma``, clipped to [0, 1].

    Args:
        clean: ``(H, W, 3)`` float RGB in [0, 1].
        gamma: one gamma, or a per-pixel ``(H, W)`` map.
    """
    if np.ndim(gamma) == 2:
        gamma = np.asarray(gamma)[..., None]
    dark = np.clip(clean, 0.0, 1.0) ** gamma
    if noise_sigma > 0:
        dark = dark + rng.normal(0.0, noise_sigma, dark.shape)
    return np.clip(dark, 0.0, 1.0).astype(np.float32)


def gamma_field(height: int, width: int, gamma_max: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth ``(H, W)`` float32 gamma map: 1 at a lit spot, up to ``gamma_max`` far from it.

    The spot lies in the middle half of the frame; gamma rises with a smoothstep of
    the distance from it over a radius of 0.3 to 0.9 of the frame diagonal, and a
    coarse random grid, upsampled, adds up to +-10 % wobble.
    """
    centre_y = rng.uniform(0.25, 0.75) * height
    centre_x = rng.uniform(0.25, 0.75) * width
    radius = rng.uniform(0.3, 0.9) * float(np.hypot(height, width))
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    distance = np.clip(np.hypot(ys - centre_y, xs - centre_x) / radius, 0.0, 1.0)
    ramp = distance * distance * (3.0 - 2.0 * distance)  # smoothstep
    wobble = cv2.resize(
        rng.uniform(-0.1, 0.1, (4, 4)).astype(np.float32),
        (width, height),
        interpolation=cv2.INTER_CUBIC,
    )
    field = 1.0 + (gamma_max - 1.0) * np.clip(ramp + wobble, 0.0, 1.0)
    return field.astype(np.float32)


# --------------------------------------------------------------------------- camera model
#
# The paper's gamma stands in for a whole capture chain. A dim scope light loses
# exposure in *linear* light, the sensor adds noise whose variance grows with the
# signal (photon shot noise) on top of a floor (read noise), part of it in colour
# (demosaicing spreads a channel's error over neighbours), the white balance can be
# off, the optics darken the corners, and only then does the camera's response
# curve (CRF) encode it. :func:`capture` runs that chain on a clean frame; it first
# decodes the frame with the same CRF, so with nothing drawn it returns the frame.
# The held-out model for evaluation (``lowlight_heldout``) uses other curve
# families and noise; training never imports it.


def srgb_decode(encoded: np.ndarray) -> np.ndarray:
    """The sRGB transfer function, inverted: encoded [0, 1] -> linear [0, 1] (IEC 61966-2-1)."""
    encoded = np.clip(encoded, 0.0, 1.0)
    return np.where(encoded <= 0.04045, encoded / 12.92, ((encoded + 0.055) / 1.055) ** 2.4)


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    """The sRGB transfer function: linear [0, 1] -> encoded [0, 1]."""
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)


def rec709_decode(encoded: np.ndarray) -> np.ndarray:
    """The Rec. 709 camera curve (OETF), inverted: a linear toe below 0.081, power 1/0.45 above."""
    encoded = np.clip(encoded, 0.0, 1.0)
    return np.where(encoded < 0.081, encoded / 4.5, ((encoded + 0.099) / 1.099) ** (1 / 0.45))


def rec709_encode(linear: np.ndarray) -> np.ndarray:
    """The Rec. 709 camera curve (OETF): linear [0, 1] -> encoded [0, 1]."""
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear < 0.018, 4.5 * linear, 1.099 * linear**0.45 - 0.099)


@dataclass(frozen=True)
class ResponseCurve:
    """A camera response curve and its inverse, both on arrays in [0, 1]."""

    name: str
    encode: Callable[[np.ndarray], np.ndarray]  # linear -> encoded
    decode: Callable[[np.ndarray], np.ndarray]  # encoded -> linear


def power_curve(gamma: float) -> ResponseCurve:
    """``encoded = linear ** (1 / gamma)``: gamma 2.2 is the classic display-matched curve."""

    def encode(linear: np.ndarray) -> np.ndarray:
        return np.clip(linear, 0.0, 1.0) ** (1.0 / gamma)

    def decode(encoded: np.ndarray) -> np.ndarray:
        return np.clip(encoded, 0.0, 1.0) ** gamma

    return ResponseCurve(f"gamma {gamma:.2f}", encode, decode)


SRGB = ResponseCurve("sRGB", srgb_encode, srgb_decode)
REC709 = ResponseCurve("Rec. 709", rec709_encode, rec709_decode)
#: Power-law curves of training draw their gamma from this range (2.2 among them).
TRAINING_POWER_GAMMAS = (1.8, 2.6)


def training_curve(rng: np.random.Generator) -> ResponseCurve:
    """One of the training CRFs, alike likely: gamma 2.2, sRGB, Rec. 709, or a power
    law with gamma in :data:`TRAINING_POWER_GAMMAS`."""
    choice = int(rng.integers(4))
    if choice == 0:
        return power_curve(2.2)
    if choice == 1:
        return SRGB
    if choice == 2:
        return REC709
    return power_curve(float(rng.uniform(*TRAINING_POWER_GAMMAS)))


def radial_falloff(
    height: int, width: int, strength: float, power: float, rng: np.random.Generator
) -> np.ndarray:
    """A scope's vignetting, ``(H, W)`` float32 in (0, 1]: ``1 - strength * r ** power``.

    ``r`` is the distance from an optical centre jittered by up to 10 % of the frame,
    over the half-diagonal (clipped at 1), so the corners lose ``strength`` of the light.
    """
    centre_y = (0.5 + rng.uniform(-0.1, 0.1)) * height
    centre_x = (0.5 + rng.uniform(-0.1, 0.1)) * width
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    radius = np.hypot(ys - centre_y, xs - centre_x) / (0.5 * float(np.hypot(height, width)))
    return (1.0 - strength * np.clip(radius, 0.0, 1.0) ** power).astype(np.float32)


def poisson_gaussian_noise(
    linear: np.ndarray,
    shot: float,
    read: float,
    chroma: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Sensor noise for ``linear`` ``(H, W, 3)`` light: variance ``shot * x + read ** 2``.

    Gaussian approximation of Poisson-Gaussian noise (Foi et al. 2008). ``chroma``
    in [0, 1] is the share of the noise that is colour noise: independent per
    channel and blurred over ~2 px, as demosaicing leaves it; the rest is white
    and independent per channel. Returns the noise (not the noisy image).
    """
    sigma = np.sqrt(shot * np.clip(linear, 0.0, None) + read * read)
    white = rng.standard_normal(linear.shape).astype(np.float32)
    if chroma > 0:
        blotches = cv2.GaussianBlur(
            rng.standard_normal(linear.shape).astype(np.float32), (0, 0), 1.0
        )
        blotches /= max(float(blotches.std()), 1e-6)
        white = np.sqrt(1.0 - chroma) * white + np.sqrt(chroma) * blotches
    return sigma * white


@dataclass(frozen=True)
class Capture:
    """One drawn low-light capture of a clean frame (see :func:`capture`)."""

    curve: ResponseCurve
    exposure: float = 1.0  # light lost in linear light: the frame gets 1 / exposure of it
    gains: tuple[float, float, float] = (1.0, 1.0, 1.0)  # RGB white balance in linear light
    vignette: np.ndarray | None = None  # (H, W) falloff in (0, 1], see radial_falloff
    shot_noise: float = 0.0  # Poisson gain: noise variance shot_noise * x, x linear
    read_noise: float = 0.0  # noise floor, standard deviation in linear light
    chroma_noise: float = 0.0  # share of the noise that is blurred colour noise
    quantise: bool = True  # encode to 8 bits, as the camera's output is


def capture(clean: np.ndarray, drawn: Capture, rng: np.random.Generator) -> np.ndarray:
    """``clean`` as the camera of ``drawn`` records it in low light.

    Decodes ``clean`` with ``drawn.curve``, takes ``1 / exposure`` of the light,
    applies the white-balance gains and the vignetting, adds sensor noise, clips and
    encodes with the same curve (then to 8 bits). With every field at its default
    the frame comes back up to the curve's round trip and 8-bit rounding.

    Args:
        clean: ``(H, W, 3)`` float RGB in [0, 1].
    Returns:
        ``(H, W, 3)`` float32 RGB in [0, 1].
    """
    linear = drawn.curve.decode(np.clip(clean, 0.0, 1.0)).astype(np.float32)
    linear = linear * (np.asarray(drawn.gains, np.float32) / drawn.exposure)
    if drawn.vignette is not None:
        linear = linear * drawn.vignette[..., None]
    if drawn.shot_noise > 0 or drawn.read_noise > 0:
        linear = linear + poisson_gaussian_noise(
            linear, drawn.shot_noise, drawn.read_noise, drawn.chroma_noise, rng
        )
    encoded = drawn.curve.encode(np.clip(linear, 0.0, 1.0))
    if drawn.quantise:
        encoded = np.round(encoded * 255.0) / 255.0
    return np.clip(encoded, 0.0, 1.0).astype(np.float32)
