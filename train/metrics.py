"""Full-reference image quality: PSNR, SSIM (Wang et al. 2004), CIEDE2000, HSV colour error."""

from __future__ import annotations

import numpy as np


def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    """PSNR in dB of ``test`` against ``reference``, both float in [0, 1], same shape."""
    _check_pair(reference, test)
    mse = float(np.mean((reference.astype(np.float64) - test.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


#: The PSNR of rounding to 8 bits (a uniform error of up to half a step: MSE 1 / (12 * 255^2)).
PSNR_8BIT_DB = float(10.0 * np.log10(12 * 255.0**2))


def display_psnr(reference: np.ndarray, test: np.ndarray) -> float:
    """:func:`psnr` capped at :data:`PSNR_8BIT_DB`: a change smaller than 8-bit rounding
    does not show on a display, and a mean over frames stays finite."""
    return min(psnr(reference, test), PSNR_8BIT_DB)


def ssim(reference: np.ndarray, test: np.ndarray) -> float:
    """Mean SSIM with the paper's settings: Gaussian window sigma 1.5, K1 0.01, K2 0.03.

    Args:
        reference, test: ``(H, W, 3)`` float in [0, 1].
    """
    from skimage.metrics import structural_similarity

    _check_pair(reference, test)
    return float(
        structural_similarity(
            reference,
            test,
            channel_axis=-1,
            data_range=1.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
    )


def ciede2000(reference: np.ndarray, test: np.ndarray) -> float:
    """Mean CIEDE2000 colour difference (scikit-image) of two sRGB images.

    About 1 is the smallest difference an observer notices side by side; 2-3 is
    visible at a glance.

    Args:
        reference, test: ``(H, W, 3)`` RGB float in [0, 1] (``test`` is clipped to it).
    """
    from skimage.color import deltaE_ciede2000, rgb2lab

    _check_pair(reference, test)
    lab_reference, lab_test = (
        rgb2lab(np.clip(image, 0.0, 1.0).astype(np.float64)) for image in (reference, test)
    )
    return float(np.mean(deltaE_ciede2000(lab_reference, lab_test)))


def hsv_mse(reference: np.ndarray, test: np.ndarray) -> dict[str, float]:
    """Colour-constancy error of the lowlight paper's Table III: MSE per HSV channel.

    H and S are on [0, 1] and V on [0, 255], as in the paper, and ``hsv`` is the
    mean of the three (its Table III: ``(0.0568 + 0.0136 + 135.47) / 3 = 45.18``),
    so V dominates. Hue is compared around the circle (0.98 and 0.02 are 0.04
    apart): surgical scenes are red, whose hue straddles 0, and a plain difference
    would score a faithful red as a large error.

    Args:
        reference, test: ``(H, W, 3)`` RGB float in [0, 1].

    Returns:
        ``{"hsv", "h", "s", "v"}`` mean squared errors.
    """
    import cv2

    _check_pair(reference, test)
    ref, out = (
        cv2.cvtColor(np.clip(image, 0, 1).astype(np.float32), cv2.COLOR_RGB2HSV).astype(np.float64)
        for image in (reference, test)
    )
    hue = np.abs(ref[..., 0] - out[..., 0]) / 360.0
    hue = np.minimum(hue, 1.0 - hue)
    errors = {
        "h": float(np.mean(hue**2)),
        "s": float(np.mean((ref[..., 1] - out[..., 1]) ** 2)),
        "v": float(np.mean((255.0 * (ref[..., 2] - out[..., 2])) ** 2)),
    }
    return {"hsv": (errors["h"] + errors["s"] + errors["v"]) / 3, **errors}


def _check_pair(reference: np.ndarray, test: np.ndarray) -> None:
    if reference.shape != test.shape:
        raise ValueError(f"images differ in shape: {reference.shape} vs {test.shape}")
