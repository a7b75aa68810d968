"""A weak endoscope camera, synthesised: what the enhance restorer learns to undo.

The DPED paper trains on real (phone, DSLR) pairs. When no pairs are given, the
enhance recipe makes its own from clean frames by running them through the
faults of a cheap camera chain, in the order light meets them:

1. **optics**: a Gaussian blur (a soft lens, a worn fibre bundle), sigma up to 1.2 px;
2. **veil**: contrast lost towards a flat grey-brown level (flare, a fogged window),
   ``c x + (1 - c) v`` with ``c`` down to 0.6;
3. **colour cast**: per-channel gains (an ageing light cable yellows: blue falls),
   drawn in +-20 %, then scaled so the mean gain is 1;
4. **tone**: a wrong gamma, ``x^g`` with ``g`` in (0.8, 1.4);
5. **sensor noise**: shot plus read noise, ``sigma^2 = a x + b^2``;
6. **compression**: JPEG at quality 30 to 90, on 70 % of frames.

Each fault's strength is drawn independently, and each fault strikes a frame with
``fault_probability`` (1 by default); :class:`WeakCameraFaults` holds the ranges,
:func:`degrade` applies one draw, and :func:`milder` shrinks every range towards no
fault (a good camera's small slips, whose clean frame is close to what it shows).
Images are ``(H, W, 3)`` float32 RGB in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np


@dataclass(frozen=True)
class WeakCameraFaults:
    """The ranges of one camera's faults; every draw is uniform within them."""

    blur_sigma: tuple[float, float] = (0.0, 1.2)  # px
    contrast: tuple[float, float] = (0.6, 1.0)  # 1 = no veil
    veil: tuple[float, float] = (0.15, 0.45)  # the level contrast is lost towards
    cast: float = 0.2  # per-channel gain in 1 +- cast, mean gain 1
    gamma: tuple[float, float] = (0.8, 1.4)
    shot_noise: tuple[float, float] = (0.0, 0.004)  # a in sigma^2 = a x + b^2
    read_noise: tuple[float, float] = (0.0, 0.02)  # b
    jpeg_fraction: float = 0.7
    jpeg_quality: tuple[int, int] = (30, 90)
    # Each of blur, veil, cast, gamma and noise strikes a frame with this probability
    # (JPEG has its own fraction): below 1, frames with one or two faults are common.
    fault_probability: float = 1.0

    def __post_init__(self) -> None:
        low, high = self.contrast
        if not 0 < low <= high <= 1:
            raise ValueError(f"contrast must lie in (0, 1], got {self.contrast}")
        if not 0 <= self.cast < 1:
            raise ValueError(f"cast must be in [0, 1), got {self.cast}")
        if not 0 < self.gamma[0] <= self.gamma[1]:
            raise ValueError(f"gamma must be positive, got {self.gamma}")
        if not 0 <= self.fault_probability <= 1:
            raise ValueError(f"fault_probability must be in [0, 1], got {self.fault_probability}")
        if not 1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100:
            raise ValueError(f"jpeg_quality must lie in 1..100, got {self.jpeg_quality}")


#: No fault at all: :func:`degrade` returns the frame (tests and ablations).
NO_FAULTS = WeakCameraFaults(
    blur_sigma=(0.0, 0.0),
    contrast=(1.0, 1.0),
    cast=0.0,
    gamma=(1.0, 1.0),
    shot_noise=(0.0, 0.0),
    read_noise=(0.0, 0.0),
    jpeg_fraction=0.0,
)


def milder(faults: WeakCameraFaults, strength: float) -> WeakCameraFaults:
    """``faults`` with every strength scaled by ``strength`` in [0, 1] towards no fault.

    0 gives :data:`NO_FAULTS`' effect, 1 gives ``faults``. Blur, veil, cast and noise
    scale linearly; gamma scales in the exponent (``g ** strength``, so 0.8 and 1.4
    move towards 1 alike); JPEG strikes ``strength`` of the frames it did, at a quality
    moved towards 100. Which faults strike (``fault_probability``) is unchanged.
    """
    if not 0 <= strength <= 1:
        raise ValueError(f"strength must be in [0, 1], got {strength}")

    def towards(value: float, none: float) -> float:
        return none + strength * (value - none)

    return replace(
        faults,
        blur_sigma=(towards(faults.blur_sigma[0], 0), towards(faults.blur_sigma[1], 0)),
        contrast=(towards(faults.contrast[0], 1), towards(faults.contrast[1], 1)),
        cast=strength * faults.cast,
        gamma=(faults.gamma[0] ** strength, faults.gamma[1] ** strength),
        shot_noise=(towards(faults.shot_noise[0], 0), towards(faults.shot_noise[1], 0)),
        read_noise=(towards(faults.read_noise[0], 0), towards(faults.read_noise[1], 0)),
        jpeg_fraction=strength * faults.jpeg_fraction,
        jpeg_quality=(
            round(towards(faults.jpeg_quality[0], 100)),
            round(towards(faults.jpeg_quality[1], 100)),
        ),
    )


def degrade(
    clean: np.ndarray, rng: np.random.Generator, faults: WeakCameraFaults | None = None
) -> np.ndarray:
    """One draw of the weak camera over ``clean``; ``(H, W, 3)`` float32 RGB in [0, 1]."""
    faults = faults or WeakCameraFaults()
    if clean.ndim != 3 or clean.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got {clean.shape}")
    image = np.clip(clean.astype(np.float32), 0.0, 1.0)

    def strikes() -> bool:
        """Whether the next fault hits this frame (no draw when every fault always does)."""
        return faults.fault_probability >= 1.0 or rng.random() < faults.fault_probability

    if strikes():
        sigma = rng.uniform(*faults.blur_sigma)
        if sigma > 0.05:
            image = cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)

    if strikes():
        contrast = rng.uniform(*faults.contrast)
        veil = rng.uniform(*faults.veil) * np.array([1.0, 0.9, 0.8], np.float32)  # grey-brown
        image = contrast * image + (1.0 - contrast) * veil

    if strikes():
        gains = 1.0 + rng.uniform(-faults.cast, faults.cast, 3)
        image = image * (gains / gains.mean()).astype(np.float32)

    if strikes():
        image = np.clip(image, 0.0, 1.0) ** rng.uniform(*faults.gamma)

    if strikes():
        shot, read = rng.uniform(*faults.shot_noise), rng.uniform(*faults.read_noise)
        if shot > 0 or read > 0:
            noise = rng.normal(0.0, 1.0, image.shape)
            image = image + noise * np.sqrt(shot * image + read * read)

    image = np.clip(image, 0.0, 1.0).astype(np.float32)
    if rng.random() < faults.jpeg_fraction:
        image = jpeg(image, int(rng.integers(faults.jpeg_quality[0], faults.jpeg_quality[1] + 1)))
    return image


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """A JPEG round trip at ``quality`` (8-bit, 4:2:0 as OpenCV writes it)."""
    bgr8 = cv2.cvtColor(np.round(image * 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".jpg", bgr8, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
