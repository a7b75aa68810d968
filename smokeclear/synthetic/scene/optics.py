"""The scope optics: light falloff towards a dark circular border."""

from __future__ import annotations

import math

import numpy as np


def scope_illumination(height: int, width: int) -> np.ndarray:
    """Laparoscope light falloff: bright centre, dark rim, black outside the image circle.

    Returns:
        ``(height, width)`` float32 in [0, 1].
    """
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    half_diagonal = 0.5 * math.hypot(width, height)
    radius = np.hypot(xs - 0.5 * (width - 1), ys - 0.5 * (height - 1)) / half_diagonal
    # The light cone is narrower than the lens's field: brightness falls
    # smoothly from the centre to about half at the corners.
    centre_to_corner_loss = 0.55
    falloff = 1.0 - centre_to_corner_loss * np.clip(radius, 0.0, 1.0) ** 2
    # The scope's image circle just clips the frame corners (mild black border).
    circle_radius, circle_softness = 0.93, 0.06
    circle = np.clip((circle_radius - radius) / circle_softness + 0.5, 0.0, 1.0)
    circle = circle * circle * (3.0 - 2.0 * circle)  # smoothstep: a soft optical edge
    return (falloff * circle).astype(np.float32)
