"""Reflection synthesis: training triples for single-image reflection removal.

Images are composed with the linear alpha-blending model of the ``dereflect``
paper (Dong et al., "Location-aware Single Image Reflection Removal", ICCV 2021,
its Eq. 6, taken from Zhang et al. and IBCLN), in linear light:
``I~ = alpha * T~ + R~`` with ``T~ = T ** gamma`` the transmission and ``R~`` the
reflection, both linearised with :data:`GAMMA`. As in the paper's training set
(Sec. 5) alpha is drawn from [0.8, 1.0] and the sum is gamma-corrected back to
display space, giving the triple ``(I, T, R)`` that its composition loss
(Sec. 4) supervises.

The paper's reflections are photographs seen in window glass. Under a
laparoscope the reflections that hide tissue are different: the scope's point
light mirrored in wet tissue and steel instruments, which the issue describes
as "small saturated blobs and streaks on wet tissue". :func:`specular_highlights`
draws those; they exceed 1 in linear light, so they clip to white after
blending, as they do on a real sensor. :func:`synthesize` adds, half of the
time, a defocused glass-style reflection of another image
(:func:`reflection_layer`) so that the classic case stays covered.

All images are float32 RGB ``(H, W, 3)``; display-space images lie in [0, 1].
Frames from :class:`smokeclear.synthetic.scene.LaparoscopicScene` are uint8 BGR
and must be converted first (``cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) / 255``).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import cv2
import numpy as np

#: Display gamma: ``linear = display ** GAMMA`` (the paper's ``g_inv``).
GAMMA = 2.2

#: Alpha range of the paper's synthetic training data (Sec. 5).
ALPHA_RANGE = (0.8, 1.0)

#: Probability that :func:`synthesize` adds a reflection of ``reflection_source``.
REFLECTION_LAYER_PROBABILITY = 0.5

#: Strength of that reflection in linear light, drawn uniformly.
REFLECTION_STRENGTH_RANGE = (0.15, 0.5)

#: Defocus blur of a reflection layer, Gaussian sigma in pixels, drawn uniformly.
REFLECTION_BLUR_SIGMA_RANGE_PX = (1.0, 5.0)

#: Highlight counts per square of the short side, from this side length up.
_FULL_COUNT_SIDE = 256
_BLOB_COUNT_RANGE = (4, 30)
_STREAK_COUNT_RANGE = (0, 4)

#: Blob semi-major axis as a fraction of the short side, and semi-minor / major.
_BLOB_RADIUS_RANGE = (0.01, 0.03)
_BLOB_ASPECT_RANGE = (0.35, 1.0)
#: Peak linear brightness of a blob or streak core: above 1, so it saturates.
_CORE_RANGE = (1.5, 3.0)
#: Fraction of blobs that sit along the wet ridges rather than anywhere.
_CLUSTERED_FRACTION_RANGE = (0.5, 0.9)
#: Blob scatter about its ridge, fraction of the short side (standard deviation).
_RIDGE_SCATTER = 0.03
#: Streak length as a fraction of the short side, and its width in pixels.
_STREAK_LENGTH_RANGE = (0.05, 0.25)
_STREAK_THICKNESS_RANGE_PX = (1, 3)
#: Heading change between streak segments, radians (standard deviation).
_STREAK_BEND_RAD = 0.35
#: Halo around each core: Gaussian sigma as a fraction of the short side, and gain.
_HALO_SIGMA = 0.02
_HALO_GAIN_RANGE = (0.3, 0.7)
#: Blur that softens the drawn cores' hard edges, pixels.
_CORE_SOFTEN_SIGMA_PX = 0.6

#: Sub-pixel bits for cv2's drawing functions.
_SHIFT_BITS = 4
_SHIFT_SCALE = 1 << _SHIFT_BITS


@dataclass(frozen=True)
class SyntheticPair:
    """One training example for reflection removal.

    Attributes:
        blended: ``(H, W, 3)`` float32 RGB in [0, 1]: the input ``I``, with reflections.
        transmission: ``(H, W, 3)`` float32 RGB in [0, 1]: the target ``T``.
        reflection: ``(H, W, 3)`` float32 RGB in [0, 1]: ``R``, the reflection
            gamma-corrected to display space (clipped: highlights saturate).
        alpha: the blending weight of the transmission, in the drawn range.
    """

    blended: np.ndarray
    transmission: np.ndarray
    reflection: np.ndarray
    alpha: float


def _check_image(name: str, image: np.ndarray) -> None:
    """Raise ValueError unless ``image`` is a floating ``(H, W, 3)`` array."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name} must be (H, W, 3), got shape {image.shape}")
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(
            f"{name} must be float in [0, 1], got {image.dtype}; divide uint8 images by 255"
        )


def _check_unit_interval(name: str, value: float) -> None:
    if not (isinstance(value, numbers.Real) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")


def blend_reflection(
    transmission: np.ndarray,
    reflection_linear: np.ndarray,
    alpha: float,
    gamma: float = GAMMA,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Blend a reflection over a transmission layer by the paper's Eq. 6.

    ``I~ = alpha * T ** gamma + R~`` in linear light, then each layer is
    gamma-corrected back: ``I = clip(I~, 0, 1) ** (1 / gamma)``,
    ``R = clip(R~, 0, 1) ** (1 / gamma)``. The transmission is returned as given
    (clipped to [0, 1]), which is ``T~ ** (1 / gamma)``.

    Args:
        transmission: ``(H, W, 3)`` float RGB in [0, 1], display space.
        reflection_linear: ``(H, W, 3)`` float RGB >= 0, linear light; values
            above 1 saturate.
        alpha: weight of the transmission, in [0, 1].
        gamma: display gamma, > 0.

    Returns:
        ``(blended, transmission, reflection)``, each ``(H, W, 3)`` float32 RGB
        in [0, 1], display space.
    """
    _check_image("transmission", transmission)
    _check_image("reflection_linear", reflection_linear)
    if reflection_linear.shape != transmission.shape:
        raise ValueError(
            f"reflection_linear {reflection_linear.shape} does not match "
            f"transmission {transmission.shape}"
        )
    _check_unit_interval("alpha", alpha)
    if not gamma > 0.0:
        raise ValueError(f"gamma must be > 0, got {gamma!r}")

    display = np.clip(transmission, 0.0, 1.0).astype(np.float32)
    blended_linear = np.float32(alpha) * np.power(display, np.float32(gamma))
    blended_linear += reflection_linear.astype(np.float32, copy=False)
    inverse_gamma = np.float32(1.0 / gamma)
    blended = np.power(np.clip(blended_linear, 0.0, 1.0, out=blended_linear), inverse_gamma)
    reflection = np.power(np.clip(reflection_linear, 0.0, 1.0), inverse_gamma)
    return blended.astype(np.float32), display, reflection.astype(np.float32)


def reflection_layer(source: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """An out-of-focus reflection of ``source`` in linear light.

    The reflected scene lies at another depth than the focused one, so it is
    blurred: Gaussian, sigma drawn from :data:`REFLECTION_BLUR_SIGMA_RANGE_PX`.

    Args:
        source: ``(H, W, 3)`` float RGB in [0, 1], display space: the reflected image.
        strength: linear gain of the reflection, >= 0 (the caller draws it).

    Returns:
        ``(H, W, 3)`` float32 RGB in [0, strength], linear light: ``R~``.
    """
    _check_image("source", source)
    if not (isinstance(strength, numbers.Real) and strength >= 0.0):
        raise ValueError(f"strength must be >= 0, got {strength!r}")
    sigma = rng.uniform(*REFLECTION_BLUR_SIGMA_RANGE_PX)
    linear = np.power(np.clip(source, 0.0, 1.0).astype(np.float32), np.float32(GAMMA))
    blurred = cv2.GaussianBlur(linear, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    return (blurred * np.float32(strength)).astype(np.float32)


def _ridge_points(ridges: np.ndarray, ridge_index: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Points at parameters ``t`` on quadratic Bézier ridges.

    Args:
        ridges: ``(K, 3, 2)`` control points (x, y) in pixels.
        ridge_index: ``(N,)`` which ridge each point is on.
        t: ``(N,)`` curve parameters in [0, 1].

    Returns:
        ``(N, 2)`` float64 points (x, y) in pixels.
    """
    p0, p1, p2 = (ridges[ridge_index, k] for k in range(3))
    s = t[:, None]
    return (1 - s) ** 2 * p0 + 2 * (1 - s) * s * p1 + s**2 * p2


def specular_highlights(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Specular highlights of a laparoscope's light on wet tissue and steel.

    Small saturated blobs (ellipses of random orientation, radii 1–3 % of the
    short side; most of them scattered along a few random ridges, as on folds
    of wet tissue) and up to four thin curved streaks, each a flat core brighter
    than 1 in linear light with a soft Gaussian halo, tinted warm white as
    xenon and LED light sources are. 4–30 blobs and 0–4 streaks per square of
    the short side (a wide frame shows more scene); frames under 256 px get
    fewer, by pixel area, at least one blob, as cores stay at least a pixel wide.

    Args:
        height, width: frame size in pixels, >= 1.

    Returns:
        ``(height, width, 3)`` float32 RGB >= 0, linear light: ``R~``. Mostly
        zero; the cores exceed 1.
    """
    for name, size in (("height", height), ("width", width)):
        if not isinstance(size, numbers.Integral) or size < 1:
            raise ValueError(f"{name} must be a whole number >= 1, got {size!r}")
    short = min(height, width)
    # Counts are for a square of the short side (a wide frame shows more scene)
    # down to _FULL_COUNT_SIDE; smaller frames get fewer, by pixel area, since
    # their cores cannot shrink below a pixel and would otherwise crowd them.
    squares = height * width / short**2
    count_scale = squares * min(1.0, (short / _FULL_COUNT_SIDE) ** 2)
    blob_count = max(1, round(rng.uniform(*_BLOB_COUNT_RANGE) * count_scale))
    streak_count = round(rng.uniform(*_STREAK_COUNT_RANGE) * count_scale)

    # Ridges: quadratic Bézier curves whose control points may lie a little
    # outside the frame, so that folds can cross its edges.
    ridge_count = int(rng.integers(1, 4))
    margin = 0.1 * np.array([width, height])
    ridges = rng.uniform(-margin, np.array([width, height]) + margin, (ridge_count, 3, 2))
    clustered = rng.random(blob_count) < rng.uniform(*_CLUSTERED_FRACTION_RANGE)
    on_ridge = _ridge_points(
        ridges, rng.integers(0, ridge_count, blob_count), rng.random(blob_count)
    )
    on_ridge += rng.normal(0.0, _RIDGE_SCATTER * short, (blob_count, 2))
    # A blob whose ridge point is out of view goes anywhere instead, so that
    # every drawn blob is seen.
    clustered &= np.all((on_ridge >= 0.0) & (on_ridge <= (width - 1, height - 1)), axis=1)
    anywhere = rng.uniform((0.0, 0.0), (width - 1, height - 1), (blob_count, 2))
    centres = np.where(clustered[:, None], on_ridge, anywhere)

    major = np.maximum(rng.uniform(*_BLOB_RADIUS_RANGE, blob_count) * short, 1.0)
    minor = np.maximum(major * rng.uniform(*_BLOB_ASPECT_RANGE, blob_count), 1.0)
    angles_deg = rng.uniform(0.0, 180.0, blob_count)
    blob_cores = rng.uniform(*_CORE_RANGE, blob_count)

    cores = np.zeros((height, width), np.float32)
    centres_fixed = np.round(centres * _SHIFT_SCALE).astype(np.int64)
    axes_fixed = np.round(np.stack([major, minor], axis=1) * _SHIFT_SCALE).astype(np.int64)
    for centre, axes, angle, core in zip(
        centres_fixed.tolist(),
        axes_fixed.tolist(),
        angles_deg.tolist(),
        blob_cores.tolist(),
        strict=True,
    ):
        # Float images get no LINE_AA from cv2; the softening blur below does it.
        cv2.ellipse(cores, centre, axes, angle, 0, 360, core, -1, cv2.LINE_8, _SHIFT_BITS)

    for _ in range(streak_count):
        point_count = int(rng.integers(3, 6))
        length = rng.uniform(*_STREAK_LENGTH_RANGE) * short
        headings = rng.uniform(0.0, 2.0 * math.pi) + np.cumsum(
            rng.normal(0.0, _STREAK_BEND_RAD, point_count - 1)
        )
        steps = (length / (point_count - 1)) * np.stack([np.cos(headings), np.sin(headings)], 1)
        start = rng.uniform((0.0, 0.0), (width, height))
        points = np.vstack([start, start + np.cumsum(steps, axis=0)])
        thickness = int(
            rng.integers(_STREAK_THICKNESS_RANGE_PX[0], _STREAK_THICKNESS_RANGE_PX[1] + 1)
        )
        cv2.polylines(
            cores,
            [np.round(points * _SHIFT_SCALE).astype(np.int32)],
            False,
            float(rng.uniform(*_CORE_RANGE)),
            thickness,
            cv2.LINE_8,
            _SHIFT_BITS,
        )

    cores = cv2.GaussianBlur(cores, (0, 0), _CORE_SOFTEN_SIGMA_PX)
    halo_sigma = max(1.0, _HALO_SIGMA * short * rng.uniform(0.7, 1.3))
    halo = cv2.GaussianBlur(cores, (0, 0), halo_sigma)
    brightness = cores + np.float32(rng.uniform(*_HALO_GAIN_RANGE)) * halo

    # Warm white: red strongest, blue weakest, each core still above 1 in every channel.
    tint_rgb = np.array([1.0, rng.uniform(0.92, 0.98), rng.uniform(0.8, 0.9)], np.float32)
    return brightness[..., None] * tint_rgb


def synthesize(
    transmission: np.ndarray,
    rng: np.random.Generator,
    reflection_source: np.ndarray | None = None,
    alpha_range: tuple[float, float] = ALPHA_RANGE,
) -> SyntheticPair:
    """A training triple: ``transmission`` behind highlights and maybe a reflection.

    Draws ``alpha`` from ``alpha_range``; the linear reflection ``R~`` is
    :func:`specular_highlights`, plus, with probability
    :data:`REFLECTION_LAYER_PROBABILITY` when ``reflection_source`` is given, a
    :func:`reflection_layer` of it at a strength from
    :data:`REFLECTION_STRENGTH_RANGE`; then :func:`blend_reflection`.

    Args:
        transmission: ``(H, W, 3)`` float RGB in [0, 1], display space.
        reflection_source: ``(H, W, 3)`` float RGB in [0, 1], another clean image.
        alpha_range: ``(low, high)`` with ``0 <= low <= high <= 1``.

    Returns:
        The triple and its alpha; see :class:`SyntheticPair`.
    """
    _check_image("transmission", transmission)
    if reflection_source is not None:
        _check_image("reflection_source", reflection_source)
        if reflection_source.shape != transmission.shape:
            raise ValueError(
                f"reflection_source {reflection_source.shape} does not match "
                f"transmission {transmission.shape}"
            )
    low, high = alpha_range
    _check_unit_interval("alpha_range low", low)
    _check_unit_interval("alpha_range high", high)
    if low > high:
        raise ValueError(f"alpha_range must be (low, high) with low <= high, got {alpha_range}")

    alpha = float(rng.uniform(low, high))
    height, width = transmission.shape[:2]
    reflection = specular_highlights(height, width, rng)
    if reflection_source is not None and rng.random() < REFLECTION_LAYER_PROBABILITY:
        strength = float(rng.uniform(*REFLECTION_STRENGTH_RANGE))
        reflection += reflection_layer(reflection_source, rng, strength)
    blended, clean, reflection_display = blend_reflection(transmission, reflection, alpha)
    return SyntheticPair(
        blended=blended, transmission=clean, reflection=reflection_display, alpha=alpha
    )


__all__ = [
    "ALPHA_RANGE",
    "GAMMA",
    "SyntheticPair",
    "blend_reflection",
    "reflection_layer",
    "specular_highlights",
    "synthesize",
]
