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

Training draws more varied smoke (:func:`render_smoke`): haze, clouds, plumes and
wisps, white-grey to yellow-brown, lit by the scope light, scattering the scene
behind it. The paper's protocol above stays as it is: the evaluation uses it.
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


# ------------------------------------------------------------------ varied smoke for training
#
# The paper's clouds above are one kind of smoke. Surgical smoke also comes as a
# thin even haze over the field, as plumes rising from the instrument tip and as
# thin wisps; it ranges from white-grey to yellow-brown (burnt tissue); it
# scatters, so what lies behind it loses sharpness as well as contrast; and it
# glows only as bright as the scope light that reaches it. :func:`render_smoke`
# draws all of these for training. The evaluation's unseen smoke lives apart, in
# :mod:`smokeclear.synthetic.smoke_heldout`, with other physics.

#: Shapes of smoke :func:`smoke_shape` draws from.
SMOKE_STYLES = ("haze", "clouds", "plume", "wisps")
#: Densest smoke :func:`render_smoke` draws: near-opaque, with a trace of the scene left.
MAX_SMOKE_DENSITY = 0.97
#: Smoke at most this dense counts as a trace: nothing a surgeon would want removed.
TRACE_DENSITY = 0.05

#: Yellow-brown of smoke from burnt tissue, RGB, before the scope light scales it.
_BROWN_SMOKE = np.array([0.80, 0.66, 0.42], np.float32)


def smoke_shape(height: int, width: int, rng: np.random.Generator, style: str) -> np.ndarray:
    """A smoke density pattern of ``style`` (one of :data:`SMOKE_STYLES`), peak 1.

    Returns:
        ``(height, width)`` float32 in [0, 1] with maximum 1.
    """
    if style == "haze":  # even haze: nearly flat, a slow swell across the field
        swell = fractal_noise(height, width, rng, base_cells=2, octaves=2)
        shape = 1.0 - rng.uniform(0.0, 0.35) * swell
    elif style == "clouds":
        shape = fractal_noise(height, width, rng, base_cells=int(rng.integers(2, 6)))
        shape = shape ** rng.uniform(0.6, 2.5)
    elif style == "plume":
        shape = _plume(height, width, rng)
    elif style == "wisps":
        shape = _wisps(height, width, rng)
    else:
        raise ValueError(f"unknown smoke style {style!r}; known: {', '.join(SMOKE_STYLES)}")
    shape = shape.astype(np.float32)
    return shape / max(float(shape.max()), 1e-6)


def _plume(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Anisotropic blobs rising from a point and spreading as they go, broken up by noise."""
    size = max(height, width)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    source = np.array([rng.uniform(0, width), rng.uniform(0.3 * height, 1.1 * height)])
    angle = rng.uniform(-0.6, 0.6)  # radians off vertical: smoke rises, drifting sideways
    direction = np.array([np.sin(angle), -np.cos(angle)])
    length = rng.uniform(0.3, 1.2) * size
    aspect = rng.uniform(1.0, 3.0)  # blobs stretch along the rise
    start_sigma = rng.uniform(0.02, 0.08) * size
    shape = np.zeros((height, width), np.float32)
    for step in np.linspace(0.0, 1.0, int(rng.integers(6, 16))):
        centre = source + direction * length * step + rng.normal(0, 0.04 * size, 2)
        sigma = start_sigma * (1.0 + 3.0 * step)
        along = (xs - centre[0]) * direction[0] + (ys - centre[1]) * direction[1]
        across = -(xs - centre[0]) * direction[1] + (ys - centre[1]) * direction[0]
        distance2 = (along / (aspect * sigma)) ** 2 + (across / sigma) ** 2
        shape += np.exp(-0.5 * distance2) * (1.0 - 0.6 * step)
    breakup = fractal_noise(height, width, rng, base_cells=int(rng.integers(3, 7)))
    return shape * (0.35 + 0.65 * breakup)


def _wisps(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Thin streaks: the ridges of noise stretched along a random direction."""
    stretch = rng.uniform(3.0, 8.0)
    side = int(np.ceil(np.hypot(height, width)))
    noise = fractal_noise(side, max(2, round(side / stretch)), rng, base_cells=3, octaves=4)
    noise = cv2.resize(noise, (side, side), interpolation=cv2.INTER_LINEAR)
    ridges = (1.0 - np.abs(2.0 * noise - 1.0)) ** rng.uniform(4.0, 12.0)
    turn = cv2.getRotationMatrix2D((side / 2, side / 2), rng.uniform(0, 180), 1.0)
    ridges = cv2.warpAffine(ridges, turn, (side, side), borderMode=cv2.BORDER_REFLECT)
    top, left = (side - height) // 2, (side - width) // 2
    ridges = ridges[top : top + height, left : left + width]
    patches = fractal_noise(height, width, rng, base_cells=2, octaves=3)
    return ridges * (0.3 + 0.7 * patches)


def scope_light(
    height: int, width: int, rng: np.random.Generator, scene: np.ndarray | None = None
) -> np.ndarray:
    """How brightly the scope light lights the smoke: a smooth map, bright in the lit
    spot, dark in the far field; with ``scene`` (the clean ``(H, W, 3)`` image) it also
    follows the scene's own smoothed brightness (near tissue is lit, far field dark).

    Returns:
        ``(height, width)`` float32 in (0, 1], maximum 1.
    """
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    size = max(height, width)
    centre_x, centre_y = rng.uniform(-0.2, 1.2) * width, rng.uniform(-0.2, 1.2) * height
    spread = rng.uniform(0.3, 1.2) * size
    floor = rng.uniform(0.1, 0.7)
    spot = np.exp(-0.5 * ((xs - centre_x) ** 2 + (ys - centre_y) ** 2) / spread**2)
    light = floor + (1.0 - floor) * spot
    if scene is not None:
        brightness = cv2.GaussianBlur(scene.mean(axis=2), (0, 0), 0.15 * size)
        follow = rng.uniform(0.0, 0.6)
        light *= (1.0 - follow) + follow * brightness / max(float(brightness.max()), 1e-3)
    return (light / max(float(light.max()), 1e-6)).astype(np.float32)


def random_varied_colour(rng: np.random.Generator) -> np.ndarray:
    """Smoke colour from white-grey to yellow-brown, float32 RGB in [0, 1]."""
    grey = random_smoke_colour(rng)
    brown = _BROWN_SMOKE * rng.uniform(0.8, 1.15)
    return np.clip(grey + rng.beta(0.7, 2.0) * (brown - grey), 0.0, 1.0).astype(np.float32)


def scatter_composite(
    clean: np.ndarray,
    density: np.ndarray,
    smoke_colour: np.ndarray,
    light: np.ndarray,
    blur_sigma: float,
) -> np.ndarray:
    """Smoke that scatters: ``I = S * (1 - d) + A * L * d`` with
    ``S = J * (1 - d) + blur(J) * d``, the scene seen through the smoke, as sharp as
    the smoke is thin.

    Args:
        clean: ``(H, W, 3)`` float32 RGB in [0, 1].
        density: ``(H, W)`` float32 in [0, 1].
        smoke_colour: ``(3,)`` float32 RGB in [0, 1].
        light: ``(H, W)`` float32 in [0, 1], the scope light on the smoke.
        blur_sigma: the scattering blur in pixels; 0 scatters nothing.

    Returns:
        ``(H, W, 3)`` float32 in [0, 1].
    """
    if light.shape != density.shape:
        raise ValueError(f"light {light.shape} does not match density {density.shape}")
    seen = clean
    if blur_sigma > 0:
        blurred = cv2.GaussianBlur(clean, (0, 0), blur_sigma)
        seen = clean + (blurred - clean) * density[..., None]
    airlight = smoke_colour.reshape(1, 1, 3) * light[..., None]
    d = density[..., None]
    return seen * (1.0 - d) + airlight * d


def render_smoke(
    clean: np.ndarray,
    rng: np.random.Generator,
    max_density: float = MAX_SMOKE_DENSITY,
    paper_fraction: float = 0.25,
    heavy_fraction: float = 0.0,
) -> np.ndarray:
    """``clean`` behind smoke of a random style, strength, colour, light and scatter.

    The peak density is drawn uniformly up to ``max_density`` (from trace wisps to
    near-opaque at the default; pass :data:`TRACE_DENSITY` for a trace only), or,
    for ``heavy_fraction`` of draws, from its upper 40 %. ``paper_fraction`` of
    draws are the paper's white cloud layers under flat light.

    Args:
        clean: ``(H, W, 3)`` float32 RGB in [0, 1].

    Returns:
        ``(H, W, 3)`` float32 RGB in [0, 1].
    """
    if not 0.0 < max_density <= 1.0:
        raise ValueError(f"max_density must lie in (0, 1], got {max_density}")
    height, width = clean.shape[:2]
    for name, share in (("paper_fraction", paper_fraction), ("heavy_fraction", heavy_fraction)):
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {share}")
    heavy = rng.random() < heavy_fraction
    peak = rng.uniform(0.6 if heavy else 0.01, 1.0) * max_density
    if rng.random() < paper_fraction:
        density = peak * fractal_noise(height, width, rng, base_cells=int(rng.integers(2, 5)))
        return np.clip(composite_smoke(clean, density, random_smoke_colour(rng)), 0.0, 1.0)
    style = SMOKE_STYLES[int(rng.integers(len(SMOKE_STYLES)))]
    density = peak * smoke_shape(height, width, rng, style)
    if rng.random() < 0.3:
        light = np.ones((height, width), np.float32)
    else:
        light = scope_light(height, width, rng, clean)
    blur_sigma = float(rng.choice([0.0, rng.uniform(0.5, 4.0)], p=[0.2, 0.8]))
    smoky = scatter_composite(clean, density, random_varied_colour(rng), light, blur_sigma)
    return np.clip(smoky, 0.0, 1.0)
