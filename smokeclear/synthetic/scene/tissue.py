"""The tissue texture: organ regions with creases, colour, blood vessels, grain and
wet specular highlights."""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from smokeclear.synthetic.scene.primitives import FIXED_POINT_BITS, TWO_PI, fixed_point_polygon
from smokeclear.synthetic.smoke import fractal_noise


class _OrganType(NamedTuple):
    colour_rgb: tuple[int, int, int]
    vessel_visibility: float  # 0: vessels hidden (liver), 1: fully shown (serosa)
    bumpiness: float  # relative height of small surface bumps (fat lobules: high)
    weight: float  # how often a region is of this type


_ORGAN_TYPES: tuple[_OrganType, ...] = (
    _OrganType((232, 136, 118), 1.0, 0.6, 3.0),  # peritoneum / serosa: pale pink
    _OrganType((214, 96, 78), 0.8, 0.8, 3.0),  # bowel wall: pink-red
    _OrganType((240, 196, 96), 0.7, 1.6, 1.5),  # fat: yellow, lobulated
    _OrganType((132, 42, 34), 0.1, 0.3, 1.2),  # liver: dark red-brown, smooth
    _OrganType((190, 60, 46), 0.4, 1.0, 1.5),  # muscle: red
)

#: Vessel colours, RGB. Deep vessels show through the serosa as blue-purple veins.
_SURFACE_VESSEL_RGB = (110, 14, 18)
_DEEP_VESSEL_RGB = (104, 52, 78)


def _rgb_to_bgr(colour_rgb: tuple[int, int, int] | np.ndarray) -> np.ndarray:
    return np.asarray(colour_rgb, np.float32)[::-1] / 255.0


def _organ_regions(
    height: int, width: int, diagonal: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Organ layout: regions that meet in creases, like loops of bowel and lobes.

    A Voronoi partition of noise-warped coordinates, which makes borders meander.

    Returns:
        ``(height, width)`` int32 region index, and ``(height, width)`` float32
        distance to the nearest region border in diagonal units (0 in a crease).
    """
    region_count = int(rng.integers(6, 10))
    centres = rng.uniform((0.0, 0.0), (height / diagonal, width / diagonal), (region_count, 2))
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) / diagonal
    # Warp the coordinates so that region borders meander instead of being straight.
    warp_amplitude = 0.2
    xs = xs + warp_amplitude * (fractal_noise(height, width, rng, base_cells=2, octaves=3) - 0.5)
    ys = ys + warp_amplitude * (fractal_noise(height, width, rng, base_cells=2, octaves=3) - 0.5)
    distances = np.sqrt(
        (ys[None] - centres[:, 0, None, None]) ** 2 + (xs[None] - centres[:, 1, None, None]) ** 2
    )
    nearest_two = np.partition(distances, 1, axis=0)[:2]
    labels = np.argmin(distances, axis=0).astype(np.int32)
    border_distance = nearest_two[1] - nearest_two[0]
    return labels, border_distance.astype(np.float32)


class _VesselBranch(NamedTuple):
    points_xy: np.ndarray  # (N, 2) float64, diagonal units
    widths: np.ndarray  # (N,) float64, diagonal units


def _grow_vessel_tree(
    start_xy: np.ndarray,
    heading: float,
    thickness: float,
    rng: np.random.Generator,
    depth: int = 0,
) -> list[_VesselBranch]:
    """One branching vessel: a tapering random walk whose side branches are walks too.

    Args:
        start_xy: start in diagonal units, (x, y).
        heading: initial direction in radians.
        thickness: initial width in diagonal units; it tapers along the walk and
            at every branch.

    Returns:
        The trunk and all its branches.
    """
    step = 0.012  # diagonal units per segment: short enough for smooth curves
    max_segments = 70
    wiggle_rad = 0.22  # heading change per segment, standard deviation
    taper_per_segment = (0.975, 0.995)
    branch_probability = 0.06  # per segment
    max_branch_depth = 3
    min_thickness = 0.0012

    headings = heading + np.cumsum(rng.normal(0.0, wiggle_rad, max_segments))
    widths = thickness * np.cumprod(np.r_[1.0, rng.uniform(*taper_per_segment, max_segments)])
    moves = step * np.stack([np.cos(headings), np.sin(headings)], axis=1)
    points = np.asarray(start_xy, np.float64) + np.vstack([[0.0, 0.0], np.cumsum(moves, axis=0)])
    # The walk ends where the vessel has thinned out.
    thinned_out = np.flatnonzero(widths <= min_thickness)
    point_count = int(thinned_out[0]) if thinned_out.size else len(widths)
    if point_count < 2:
        return []
    branches = [_VesselBranch(points[:point_count], widths[:point_count])]

    branch_here = rng.random(max_segments) < branch_probability
    sides = np.where(rng.random(max_segments) < 0.5, -1.0, 1.0)
    branch_angles = rng.uniform(0.4, 1.0, max_segments)  # branches leave at 25-60 degrees
    branch_shrink = rng.uniform(0.5, 0.8, max_segments)
    if depth < max_branch_depth:
        for segment in np.flatnonzero(branch_here[: point_count - 1]):
            branches += _grow_vessel_tree(
                points[segment + 1],
                headings[segment] + sides[segment] * branch_angles[segment],
                widths[segment + 1] * branch_shrink[segment],
                rng,
                depth + 1,
            )
    return branches


def _vessel_mask(
    height: int,
    width: int,
    diagonal: float,
    rng: np.random.Generator,
    tree_count: int,
    thickness_range: tuple[float, float],
    blur_units: float,
) -> np.ndarray:
    """Branching vessels drawn into a ``(height, width)`` float32 mask in [0, 1].

    Drawn and blurred in uint8, which cv2 does several times faster than float.
    """
    mask = np.zeros((height, width), np.uint8)
    for _ in range(tree_count):
        start = rng.uniform((0.0, 0.0), (width / diagonal, height / diagonal))
        heading, thickness = rng.uniform(0, TWO_PI), rng.uniform(*thickness_range)
        for branch in _grow_vessel_tree(start, heading, thickness, rng):
            points = fixed_point_polygon(branch.points_xy * diagonal).tolist()
            # cv2 draws integer thicknesses; sub-pixel vessels are drawn one
            # pixel wide and fainter, keeping their visual weight at low resolution.
            widths_px = branch.widths * diagonal
            lines_px = np.maximum(1, np.round(widths_px)).astype(int).tolist()
            strengths = np.round(255 * np.minimum(1.0, widths_px / lines_px)).tolist()
            for segment in range(len(points) - 1):
                cv2.line(
                    mask,
                    points[segment],
                    points[segment + 1],
                    strengths[segment],
                    lines_px[segment],
                    cv2.LINE_AA,
                    FIXED_POINT_BITS,
                )
    sigma_px = max(0.5, blur_units * diagonal)
    blurred = cv2.GaussianBlur(mask, (0, 0), sigma_px)
    return blurred.astype(np.float32) * np.float32(1.0 / 255.0)


def tissue_texture(
    height: int, width: int, frame_diagonal: float, rng: np.random.Generator
) -> np.ndarray:
    """Precompute the tissue the camera looks at, with its specular highlights.

    Each layer is computed at the coarsest resolution that holds its detail:
    the organ layout at 1/4, colour and relief at 1/2, and vessels, grain and
    the final blend at full resolution, in uint8 with OpenCV to keep the
    constructor under a second at 1920x1080.

    Returns:
        ``(height, width, 4)`` uint8: BGR tissue colour, then the specular
        highlight strength in channel 3 (0..255), which the renderer adds to all
        three colour channels after flicker.
    """
    half_h, half_w = max(2, height // 2), max(2, width // 2)
    half_diagonal = frame_diagonal * half_w / width
    layout_h, layout_w = max(2, height // 4), max(2, width // 4)
    layout_diagonal = frame_diagonal * layout_w / width
    # One stream per layer: the noise grids' sizes follow the frame's aspect
    # ratio, and must not shift the draws of the other layers when it changes.
    layout_rng, surface_rng, vessel_rng, grain_rng = rng.spawn(4)

    labels, border_distance = _organ_regions(layout_h, layout_w, layout_diagonal, layout_rng)
    organ_weights = np.array([organ.weight for organ in _ORGAN_TYPES])
    region_organs = layout_rng.choice(
        len(_ORGAN_TYPES), size=labels.max() + 1, p=organ_weights / organ_weights.sum()
    )
    # Per region: its own shade of its organ's colour (BGR), vessel visibility
    # and bumpiness, as five channels upsampled together. Bilinear upsampling
    # softens the borders between regions, which lie in creases anyway.
    region_shades = layout_rng.uniform(0.9, 1.08, (len(region_organs), 3))
    region_traits = np.array(
        [
            [
                *(_rgb_to_bgr(_ORGAN_TYPES[organ].colour_rgb) * shade),
                _ORGAN_TYPES[organ].vessel_visibility,
                _ORGAN_TYPES[organ].bumpiness,
            ]
            for organ, shade in zip(region_organs, region_shades, strict=True)
        ],
        np.float32,
    )
    half = (half_w, half_h)
    traits = cv2.resize(region_traits[labels], half, interpolation=cv2.INTER_LINEAR)
    colour = np.ascontiguousarray(traits[..., :3])
    vessel_visibility, bumpiness = traits[..., 3], traits[..., 4]
    border_distance = cv2.resize(border_distance, half, interpolation=cv2.INTER_LINEAR)

    # Mottling: brightness and redness vary slowly across each organ.
    brightness = fractal_noise(half_h, half_w, surface_rng, base_cells=3)
    redness = fractal_noise(half_h, half_w, surface_rng, base_cells=5)
    congested_bgr = np.array([0.55, 0.65, 1.0], np.float32)  # more blood: less blue, green
    colour *= (0.85 + 0.3 * brightness)[..., None]
    colour *= 1.0 + 0.8 * redness[..., None] * (congested_bgr - 1.0)

    # Surface relief, in diagonal units: rounded organs meeting in creases,
    # gentle swells across each organ, and small bumps (fat lobules, serosal
    # folds). A slight blur rounds the V of each crease so its normal is defined.
    crease_width = 0.05  # how far from a border the surface flattens out
    pillow_height, swell_height, bump_height = 0.03, 0.012, 0.004
    pillow = pillow_height * (1.0 - np.exp(-border_distance / crease_width))
    swells = fractal_noise(half_h, half_w, surface_rng, base_cells=5, octaves=3)
    bumps = fractal_noise(half_h, half_w, surface_rng, base_cells=16, octaves=3)
    relief = pillow + swell_height * swells + bump_height * bumpiness * bumps
    relief = cv2.GaussianBlur(relief, (0, 0), max(0.5, 0.005 * half_diagonal))
    grad_y, grad_x = np.gradient(relief, 1.0 / half_diagonal)
    slope_squared = grad_x**2 + grad_y**2
    # The light comes from the scope, along the view axis: diffuse brightness
    # follows the normal's z component, and creases are shadowed by their walls.
    normal_z = 1.0 / np.sqrt(1.0 + slope_squared)
    ambient, diffuse = 0.3, 0.7
    crease_shadow, crease_shadow_width = 0.6, 0.012  # darkening at a crease floor
    occlusion = 1.0 - crease_shadow * np.exp(-border_distance / crease_shadow_width)
    colour *= (occlusion * (ambient + diffuse * normal_z**3))[..., None]

    # Wet highlights: the mirror image of the light source in the wet surface,
    # where the surface faces the camera squarely (slope near 0): spots on the
    # tops of swells and streaks along ridges, only on the wetter patches.
    mirror_slope = 0.03  # how far from square-on the reflection still shows
    # Patches where the noise exceeds 0.4 are wet, fully so above 0.73.
    wetness = np.clip(3.0 * fractal_noise(half_h, half_w, surface_rng, base_cells=4) - 1.2, 0, 1)
    in_crease = np.exp(-border_distance / 0.015)  # the crease floor is hidden by its walls
    specular = np.exp(-0.5 * slope_squared / mirror_slope**2) * wetness * (1.0 - in_crease)
    # Thin ridges alias into dotted lines at the pixel grid; a light blur joins them.
    specular = cv2.GaussianBlur(
        specular.astype(np.float32), (0, 0), max(0.5, 0.002 * half_diagonal)
    )

    # Vessels: deep ones are blurred by the tissue over them, so half
    # resolution holds them; surface ones are drawn at full resolution.
    full = (width, height)
    deep = _vessel_mask(half_h, half_w, half_diagonal, vessel_rng, 5, (0.006, 0.011), 0.004)
    deep = cv2.resize(deep * vessel_visibility, full, interpolation=cv2.INTER_LINEAR)
    surface = _vessel_mask(height, width, frame_diagonal, vessel_rng, 7, (0.004, 0.008), 0.0012)
    surface *= cv2.resize(vessel_visibility, full, interpolation=cv2.INTER_LINEAR)

    # Fine grain: cells a few thousandths of the frame diagonal wide.
    grain_cell_units = 0.003
    grain_rows = max(2, min(height, round(height / (grain_cell_units * frame_diagonal))))
    grain_cols = max(2, min(width, round(width / (grain_cell_units * frame_diagonal))))
    grain = grain_rng.standard_normal((grain_rows, grain_cols)).astype(np.float32)
    grain = cv2.resize(grain, full, interpolation=cv2.INTER_LINEAR)

    # Full resolution from here on, in uint8: cv2 saturates, rounds and uses
    # both cores, where numpy float passes over ~16 M values would not.
    colour = cv2.convertScaleAbs(
        cv2.resize(colour, full, interpolation=cv2.INTER_LINEAR), alpha=255
    )
    grain_unit = 128  # uint8 fixed point: 128 means a factor of 1
    grain_factor = cv2.convertScaleAbs(grain, alpha=0.035 * grain_unit, beta=grain_unit)
    colour = cv2.multiply(
        colour, cv2.cvtColor(grain_factor, cv2.COLOR_GRAY2BGR), scale=1 / grain_unit
    )
    for vessels, vessel_rgb, opacity in (
        (deep, _DEEP_VESSEL_RGB, 0.45),
        (surface, _SURFACE_VESSEL_RGB, 0.85),
    ):
        alpha = opacity * vessels  # both factors lie in [0, 1]
        vessel_bgr = np.round(_rgb_to_bgr(vessel_rgb) * 255).astype(np.uint8)
        vessel_image = np.tile(vessel_bgr, (height, width, 1))
        colour = cv2.blendLinear(colour, vessel_image, 1.0 - alpha, alpha)

    # Gain above 1 saturates the cores to pure white, leaving a soft rim.
    highlight_gain = 1.8
    specular = cv2.resize(specular.astype(np.float32), full, interpolation=cv2.INTER_CUBIC)
    specular = cv2.convertScaleAbs(specular, alpha=highlight_gain * 255)
    return cv2.merge([*cv2.split(colour), specular])
