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

Images are ``(H, W, 3)`` float32 RGB in [0, 1].
"""

from __future__ import annotations

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
