"""Smoke rendering: fractal density fields and the scattering composite.

Smoke is composited with the atmospheric scattering model the desmoke paper
starts from (its Eq. 1): ``I = J * (1 - d) + A * d`` where ``d = 1 - t`` is the
smoke density (one minus transmission) and ``A`` the smoke colour. The paper's
synthetic test set renders Photoshop "clouds" at 50 / 75 / 100 % layer opacity;
:func:`cloud_density` and :data:`DENSITY_OPACITY` reproduce that recipe. A cloud
layer screened over an image at opacity o is ``I = J + o c (1 - J)``: the
composite above with white smoke of density ``o c``. With clouds of mean value
about 0.5 this gives smoky inputs of about 16 / 12 / 10 dB PSNR, as in the
paper's Table 1.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Layer opacity per density level of the paper's synthetic test set (Sec. 4.3.1).
DENSITY_OPACITY: dict[str, float] = {"low": 0.5, "medium": 0.75, "high": 1.0}

#: Densest smoke a cloud reaches at 100 % opacity. Full cover (1.0) would leave
#: nothing of the scene to recover; real plumes seldom hide tissue completely.
MAX_CLOUD_DENSITY = 0.95


def fractal_noise(
    height: int,
    width: int,
    rng: np.random.Generator,
    *,
    base_cells: int = 4,
    octaves: int = 5,
    persistence: float = 0.5,
) -> np.ndarray:
    """Value-noise fBm in [0, 1].

    Each octave is a random grid upsampled with bicubic interpolation; grids
    double in resolution and halve in amplitude, as Photoshop's "render clouds".

    Returns:
        ``(height, width)`` float32 in [0, 1].
    """
    if height < 1 or width < 1:
        raise ValueError(f"noise size must be positive, got {width}x{height}")
    field = np.zeros((height, width), np.float32)
    amplitude, total = 1.0, 0.0
    aspect = width / height
    for octave in range(octaves):
        cells_y = base_cells * 2**octave
        cells_x = max(1, round(cells_y * aspect))
        grid = rng.random((cells_y + 1, cells_x + 1), dtype=np.float32)
        field += amplitude * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        total += amplitude
        amplitude *= persistence
    field /= total
    low, high = float(field.min()), float(field.max())
    return (field - low) / max(high - low, 1e-6)


def cloud_density(height: int, width: int, rng: np.random.Generator, opacity: float) -> np.ndarray:
    """A Photoshop-style cloud layer at ``opacity``, as smoke density in [0, 1].

    Returns:
        ``(height, width)`` float32, at most ``opacity * MAX_CLOUD_DENSITY``.
    """
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must lie in [0, 1], got {opacity}")
    clouds = fractal_noise(height, width, rng, base_cells=int(rng.integers(2, 5)))
    return (opacity * MAX_CLOUD_DENSITY * clouds).astype(np.float32)


def random_smoke_colour(rng: np.random.Generator) -> np.ndarray:
    """Smoke colour ``A`` as float32 RGB in [0, 1]: light grey with a slight warm tint."""
    grey = rng.uniform(0.78, 0.95)
    tint = rng.uniform(-0.03, 0.03, size=3)
    tint[0] = abs(tint[0])  # light from a xenon / LED source scatters slightly warm
    return np.clip(grey + tint, 0.0, 1.0).astype(np.float32)


def composite_smoke(clean: np.ndarray, density: np.ndarray, smoke_colour: np.ndarray) -> np.ndarray:
    """Scattering composite ``I = J * (1 - d) + A * d``.

    Args:
        clean: ``(H, W, 3)`` float32 in [0, 1], any colour order (``smoke_colour``
            must use the same order).
        density: ``(H, W)`` float32 in [0, 1].
        smoke_colour: ``(3,)`` float32 in [0, 1].

    Returns:
        ``(H, W, 3)`` float32 in [0, 1].
    """
    if clean.ndim != 3 or clean.shape[2] != 3:
        raise ValueError(f"clean must be (H, W, 3), got {clean.shape}")
    if density.shape != clean.shape[:2]:
        raise ValueError(f"density {density.shape} does not match image {clean.shape[:2]}")
    d = density[..., None]
    return clean * (1.0 - d) + smoke_colour.reshape(1, 1, 3) * d
