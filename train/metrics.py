"""Full-reference image quality: PSNR and SSIM (Wang et al. 2004)."""

from __future__ import annotations

import numpy as np


def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    """PSNR in dB of ``test`` against ``reference``, both float in [0, 1], same shape."""
    _check_pair(reference, test)
    mse = float(np.mean((reference.astype(np.float64) - test.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


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


def _check_pair(reference: np.ndarray, test: np.ndarray) -> None:
    if reference.shape != test.shape:
        raise ValueError(f"images differ in shape: {reference.shape} vs {test.shape}")
