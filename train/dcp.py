"""Dark channel prior dehazing (He, Sun & Tang 2011): the desmoke paper's DCP baseline.

Defaults as in He et al.: 15x15 patches, omega 0.95, the atmospheric light taken
at the brightest input pixel among the 0.1 % of pixels with the highest dark
channel, transmission refined by a guided filter (r = 60, eps = 1e-4) on the grey
image, and t clamped at 0.1.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from smokeclear.nets.guided_filter import guided_filter


def dark_channel(image: np.ndarray, patch: int) -> np.ndarray:
    """Per-pixel minimum over colour and a ``patch x patch`` window. ``(H, W, 3)`` -> ``(H, W)``."""
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (patch, patch))
    return cv2.erode(image.min(axis=2), kernel)


def atmospheric_light(image: np.ndarray, dark: np.ndarray, fraction: float = 0.001) -> np.ndarray:
    """The input colour at the brightest pixel among the top ``fraction`` of the dark channel."""
    count = max(1, int(dark.size * fraction))
    haziest = np.argpartition(dark.ravel(), -count)[-count:]
    candidates = image.reshape(-1, 3)[haziest]
    return candidates[np.argmax(candidates.sum(axis=1))]


def dehaze_dcp(
    image: np.ndarray,
    patch: int = 15,
    omega: float = 0.95,
    t_min: float = 0.1,
    radius: int = 60,
    eps: float = 1e-4,
) -> np.ndarray:
    """Dehaze an RGB float image in [0, 1]. ``(H, W, 3)`` -> ``(H, W, 3)`` in [0, 1]."""
    image = image.astype(np.float32)
    light = atmospheric_light(image, dark_channel(image, patch))
    transmission = 1.0 - omega * dark_channel(image / np.maximum(light, 1e-3), patch)
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    refined = guided_filter(
        torch.from_numpy(grey)[None, None],
        torch.from_numpy(transmission.astype(np.float32))[None, None],
        radius,
        eps,
    )[0, 0].numpy()
    transmission = np.maximum(refined, t_min)[..., None]
    return np.clip((image - light) / transmission + light, 0.0, 1.0)
