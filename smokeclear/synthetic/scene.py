"""Procedural laparoscopic scene: the demo video source and desmoking ground truth.

:class:`LaparoscopicScene` renders frame ``index`` of an endless synthetic
laparoscope video as a :class:`SceneFrame`: the smoky view, the same view
without smoke, and the smoke density that relates the two by the scattering
model of :mod:`smokeclear.synthetic.smoke`, ``I = J * (1 - d) + A * d``.

Everything random is drawn once in the constructor, so :meth:`LaparoscopicScene.render`
is a pure function of the constructor arguments and the frame index: frames can
be rendered in any order, which training on random indices needs. The scene
repeats every :data:`LOOP_PERIOD_S` seconds, and seamlessly: every motion
frequency is a whole number of cycles per loop and the smoke schedule wraps.

The renderer works in "diagonal units" (lengths as fractions of the frame
diagonal), so a seed gives the same scene at every size of one aspect ratio:
64x36 shows what 1920x1080 shows, only coarser.

A frame is built from, back to front:

* tissue: organ regions with creases, colour variation, blood vessels, fine
  grain and wet specular highlights, precomputed as one texture larger than the
  frame and viewed through a slowly panning, zooming, breathing camera;
* an instrument: a cylindrical metal shaft from the frame edge with a two-jaw
  tip moving on a Lissajous path;
* the scope optics: light falloff towards a dark circular border;
* smoke: puffs emitted at the jaw tip while the cautery is on, which rise,
  spread and fade, shaped by scrolling noise, over a faint haze that builds up
  with cautery use and clears slowly.

``render(index, highlights=False)`` leaves out the specular highlights (the wet
tissue's and the instrument's) and nothing else: with ``render(index)`` it
makes a ground-truth pair for highlight removal.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

from smokeclear.synthetic.smoke import fractal_noise, random_smoke_colour

#: The scene repeats after this many seconds. The smoke schedule is drawn for
#: one period; motions complete whole cycles in it, so the loop has no seam.
LOOP_PERIOD_S = 600.0

#: Smallest frame side accepted: below this the instrument and smoke puffs
#: shrink under a pixel and the smoke grid (1/4 resolution) to a few cells.
MIN_FRAME_SIDE = 16

#: The tissue texture is this many times the frame in each dimension, so that
#: the camera can pan, zoom out and roll without leaving it.
TEXTURE_MARGIN = 1.6

#: Narrower tissue textures are rendered at this width and shrunk, so that a
#: tiny frame shows the same scene as a large one rather than a coarser one.
MIN_TEXTURE_DETAIL_WIDTH = 640

#: Smoke density is computed at 1/SMOKE_DOWNSCALE of the frame size: it is
#: smooth, and the per-frame cost drops by the square of this.
SMOKE_DOWNSCALE = 4

#: Densest smoke anywhere. Full cover (1.0) would leave nothing to recover.
MAX_SMOKE_DENSITY = 0.9

_TWO_PI = 2.0 * math.pi


@dataclass(frozen=True)
class SceneFrame:
    """One rendered frame.

    Attributes:
        smoky: ``(H, W, 3)`` uint8 BGR in [0, 255]: what the camera sees.
        clean: ``(H, W, 3)`` uint8 BGR in [0, 255]: the same frame without smoke.
        smoke_density: ``(H, W)`` float32 in [0, :data:`MAX_SMOKE_DENSITY`]: ``d``
            in ``smoky = clean * (1 - d) + A * d``, with ``A`` the scene's
            :attr:`LaparoscopicScene.smoke_colour_bgr`.
    """

    smoky: np.ndarray
    clean: np.ndarray
    smoke_density: np.ndarray


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

#: Instrument metal, RGB: a cool grey steel, lit by the scope's white light.
_STEEL_RGB = np.array([168.0, 172.0, 178.0])


#: Sub-pixel bits of the coordinates handed to cv2's drawing functions: slow
#: motion and thin lines stay smooth instead of snapping to whole pixels.
_FIXED_POINT_BITS = 4


def _fixed_point(xy: np.ndarray) -> tuple[int, int]:
    """A pixel position (x, y) as cv2's fixed-point drawing coordinates."""
    scaled = np.round(np.asarray(xy) * (1 << _FIXED_POINT_BITS)).astype(np.int64)
    return int(scaled[0]), int(scaled[1])


def _fixed_point_polygon(points_xy: np.ndarray) -> np.ndarray:
    """``(N, 2)`` pixel positions as an int32 fixed-point polygon for cv2."""
    return np.round(points_xy * (1 << _FIXED_POINT_BITS)).astype(np.int32)


def _rgb_to_bgr(colour_rgb: tuple[int, int, int] | np.ndarray) -> np.ndarray:
    return np.asarray(colour_rgb, np.float32)[::-1] / 255.0


def _tileable_noise(
    height: int, width: int, rng: np.random.Generator, base_cells: int
) -> np.ndarray:
    """Fractal noise that wraps around at its borders, so it can scroll forever.

    Noise of twice the size is cross-faded with copies of itself shifted by one
    tile; at every border the blend reaches the same sample from both sides.

    Returns:
        ``(height, width)`` float32 in [0, 1].
    """
    big = fractal_noise(2 * height, 2 * width, rng, base_cells=base_cells)
    fade_y = (np.arange(height, dtype=np.float32) / height)[:, None]
    fade_x = (np.arange(width, dtype=np.float32) / width)[None, :]
    tile = (
        big[:height, :width] * fade_y * fade_x
        + big[height:, :width] * (1 - fade_y) * fade_x
        + big[:height, width:] * fade_y * (1 - fade_x)
        + big[height:, width:] * (1 - fade_y) * (1 - fade_x)
    )
    # Renormalise: the blend averages samples mid-tile, which narrows the range.
    low, high = float(tile.min()), float(tile.max())
    return ((tile - low) / max(high - low, 1e-6)).astype(np.float32)


def _tile_2x2(tile: np.ndarray) -> np.ndarray:
    """``tile`` repeated twice along each axis, for cheap wrapped scrolling."""
    return np.ascontiguousarray(np.tile(tile, (2, 2) + (1,) * (tile.ndim - 2)))


def _lognormal_modulation(noise: np.ndarray, contrast: float) -> np.ndarray:
    """Turn noise into a positive multiplier with mean about 1.

    ``exp(contrast * z)`` of the standardised noise ``z``: one standard
    deviation of noise scales by ``exp(contrast)``, so thin and thick patches
    differ by a ratio rather than an offset, as in real turbulent smoke.

    Returns:
        float32 array shaped like ``noise``, positive.
    """
    standardised = (noise - noise.mean()) / max(float(noise.std()), 1e-6)
    return np.exp(contrast * standardised - 0.5 * contrast**2).astype(np.float32)


def _gaussian_profile(samples: np.ndarray, centres: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """``(len(centres), len(samples))`` Gaussians, cut off far out in their tails.

    The exponent is floored: ``exp`` of a large negative number is a subnormal
    float, and arithmetic on subnormals is dozens of times slower.
    """
    exponent = -0.5 * ((samples[None] - centres[:, None]) / sigmas[:, None]) ** 2
    tail_floor = -40.0  # exp(-40) ~ 4e-18: nothing on screen
    return np.exp(np.maximum(exponent, tail_floor))


def _loop_frequencies(
    rng: np.random.Generator, count: int, low_hz: float, high_hz: float
) -> np.ndarray:
    """Random frequencies in [low_hz, high_hz], each a whole number of cycles per loop."""
    cycles = np.round(rng.uniform(low_hz, high_hz, count) * LOOP_PERIOD_S)
    return (np.maximum(cycles, 1.0) / LOOP_PERIOD_S).astype(np.float64)


class _SineSum:
    """A smooth random signal: a sum of sinusoids with loop-periodic frequencies."""

    def __init__(
        self,
        rng: np.random.Generator,
        terms: int,
        low_hz: float,
        high_hz: float,
        amplitude: float,
    ) -> None:
        self.frequencies_hz = _loop_frequencies(rng, terms, low_hz, high_hz)
        self.phases = rng.uniform(0.0, _TWO_PI, terms)
        # Split the amplitude so that the sum stays within +-amplitude.
        weights = rng.uniform(0.5, 1.0, terms)
        self.amplitudes = amplitude * weights / weights.sum()

    def at(self, time_s: float) -> float:
        return float(self.over(np.array([time_s]))[0])

    def over(self, times_s: np.ndarray) -> np.ndarray:
        """The signal at each of ``times_s``, same shape, float64."""
        waves = np.sin(_TWO_PI * self.frequencies_hz * times_s[..., None] + self.phases)
        return (self.amplitudes * waves).sum(axis=-1)


# --------------------------------------------------------------------------- tissue


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
        heading, thickness = rng.uniform(0, _TWO_PI), rng.uniform(*thickness_range)
        for branch in _grow_vessel_tree(start, heading, thickness, rng):
            points = _fixed_point_polygon(branch.points_xy * diagonal).tolist()
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
                    _FIXED_POINT_BITS,
                )
    sigma_px = max(0.5, blur_units * diagonal)
    blurred = cv2.GaussianBlur(mask, (0, 0), sigma_px)
    return blurred.astype(np.float32) * np.float32(1.0 / 255.0)


def _tissue_texture(
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


# --------------------------------------------------------------------------- optics


def _scope_illumination(height: int, width: int) -> np.ndarray:
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


# --------------------------------------------------------------------------- instrument


#: Shaft half-width at the jaws, diagonal units (a 5 mm grasper seen from ~8 cm).
_SHAFT_HALF_WIDTH = 0.022
#: The shaft looks this much wider where it enters the view: nearer the camera.
_SHAFT_TAPER = 1.6
#: Jaw length, diagonal units.
_JAW_LENGTH = 0.065
_MAX_JAW_OPENING_RAD = math.radians(50.0)
#: Where the shaft enters: this far from the frame centre, as a fraction of the
#: width (0.5 is the frame edge), so the shaft always crosses the edge.
_ENTRY_OFFSET = 0.62

#: A jaw's outline as (along, across) pairs: ``along`` is the fraction of the
#: jaw's length from the hinge, ``across`` is in shaft half-widths towards the
#: jaw's outer flank (negative: past the centre line, towards the other jaw).
_JAW_OUTLINE = np.array([(0.0, 0.85), (0.6, 0.7), (1.0, 0.25), (0.95, 0.0), (0.0, -0.05)])
#: The lit upper face of a jaw, inside the outline, same coordinates.
_JAW_LIT_FACE = np.array([(0.05, 0.55), (0.6, 0.42), (0.9, 0.15), (0.85, 0.06), (0.05, 0.05)])
#: A jaw's specular glint: from and to, same coordinates.
_JAW_GLINT = np.array([(0.15, 0.35), (0.75, 0.25)])


class _InstrumentPose(NamedTuple):
    entry_xy: np.ndarray  # where the shaft enters, pixels, outside the frame
    pivot_xy: np.ndarray  # end of the shaft where the jaws hinge, pixels
    jaw_tip_xy: np.ndarray  # where the closed jaws touch tissue, pixels
    half_width_px: float  # shaft half-width at the pivot
    jaw_opening_rad: float


def _shaft_band(pose: _InstrumentPose, normal: np.ndarray, low: float, high: float) -> np.ndarray:
    """The quad between lateral positions ``low`` and ``high`` (-1..1) along the shaft."""
    entry_half_width = _SHAFT_TAPER * pose.half_width_px
    return np.array(
        [
            pose.entry_xy + normal * high * entry_half_width,
            pose.pivot_xy + normal * high * pose.half_width_px,
            pose.pivot_xy + normal * low * pose.half_width_px,
            pose.entry_xy + normal * low * entry_half_width,
        ]
    )


def _jaw_points(
    pivot_xy: np.ndarray,
    jaw_axis: np.ndarray,
    jaw_outward: np.ndarray,
    jaw_length: float,
    half_width_px: float,
    along_across: np.ndarray,
) -> np.ndarray:
    """Jaw coordinates (see :data:`_JAW_OUTLINE`) to ``(N, 2)`` pixel positions."""
    along = np.outer(along_across[:, 0] * jaw_length, jaw_axis)
    across = np.outer(along_across[:, 1] * half_width_px, jaw_outward)
    return pivot_xy + along + across


def _draw_instrument(image: np.ndarray, pose: _InstrumentPose, *, glints: bool = True) -> None:
    """Draw a laparoscopic grasper into ``image`` (uint8 BGR, in place).

    The shaft is a cylinder lit from the camera: nested bands, darker towards
    the silhouette where the surface turns away, plus a specular streak.

    Args:
        glints: draw the specular streak along the shaft and the glint on each
            jaw; without them the steel shows only its diffuse shading.
    """
    axis = pose.pivot_xy - pose.entry_xy
    axis /= max(float(np.linalg.norm(axis)), 1e-6)
    normal = np.array([-axis[1], axis[0]])
    steel_bgr = _STEEL_RGB[::-1]

    band_count = 14
    ambient, diffuse = 0.18, 0.72
    for band in range(band_count):
        outer = 1.0 - band / band_count  # lateral position, 1 at the silhouette
        lateral = outer - 0.5 / band_count
        facing = math.sqrt(max(0.0, 1.0 - lateral * lateral))  # normal . view
        shade = ambient + diffuse * facing**1.5
        # Only the silhouette needs anti-aliasing; steps between bands are small.
        line_type = cv2.LINE_AA if band == 0 else cv2.LINE_8
        cv2.fillConvexPoly(
            image,
            _fixed_point_polygon(_shaft_band(pose, normal, -outer, outer)),
            (steel_bgr * shade).tolist(),
            line_type,
            _FIXED_POINT_BITS,
        )
    if glints:
        # The streak is off the axis because the light fibres sit beside the lens.
        cv2.fillConvexPoly(
            image,
            _fixed_point_polygon(_shaft_band(pose, normal, 0.28, 0.42)),
            (250, 250, 248),
            cv2.LINE_AA,
            _FIXED_POINT_BITS,
        )
    # Insulation ring and hinge: a dark band just behind the jaws.
    ring_length = 0.5 * pose.half_width_px
    ring = np.array(
        [
            pose.pivot_xy - axis * ring_length + normal * pose.half_width_px,
            pose.pivot_xy + normal * 0.8 * pose.half_width_px,
            pose.pivot_xy - normal * 0.8 * pose.half_width_px,
            pose.pivot_xy - axis * ring_length - normal * pose.half_width_px,
        ]
    )
    cv2.fillConvexPoly(
        image,
        _fixed_point_polygon(ring),
        (steel_bgr * 0.22).tolist(),
        cv2.LINE_AA,
        _FIXED_POINT_BITS,
    )

    jaw_length = float(np.linalg.norm(pose.jaw_tip_xy - pose.pivot_xy))
    glint_px = max(1, round(0.18 * pose.half_width_px))
    for side in (-1.0, 1.0):
        angle = side * 0.5 * pose.jaw_opening_rad
        jaw_axis = axis * math.cos(angle) + normal * math.sin(angle)
        jaw_outward = side * np.array([-jaw_axis[1], jaw_axis[0]])  # to its outer flank
        jaw = (pose.pivot_xy, jaw_axis, jaw_outward, jaw_length, pose.half_width_px)
        for face, shade in ((_JAW_OUTLINE, 0.35), (_JAW_LIT_FACE, 0.8)):
            cv2.fillPoly(
                image,
                [_fixed_point_polygon(_jaw_points(*jaw, face))],
                (steel_bgr * shade).tolist(),
                cv2.LINE_AA,
                _FIXED_POINT_BITS,
            )
        if not glints:
            continue
        glint_from, glint_to = _jaw_points(*jaw, _JAW_GLINT)
        cv2.line(
            image,
            _fixed_point(glint_from),
            _fixed_point(glint_to),
            (245, 245, 245),
            glint_px,
            cv2.LINE_AA,
            _FIXED_POINT_BITS,
        )


# --------------------------------------------------------------------------- smoke


class _SmokeSchedule(NamedTuple):
    """Cautery activations and the smoke puffs they emit, for one loop period."""

    activation_start_s: np.ndarray  # (N,) float64
    activation_duration_s: np.ndarray  # (N,) float64
    haze_optical_depth: np.ndarray  # (N,) float64: haze each activation leaves behind
    puff_emit_s: np.ndarray  # (P,) float64
    puff_xy: np.ndarray  # (P, 2) float64: emission point, diagonal units
    puff_jet: np.ndarray  # (P, 2) float64: initial updraught, diagonal units per second
    puff_velocity: np.ndarray  # (P, 2) float64: drift, diagonal units per second
    puff_radius: np.ndarray  # (P,) float64: initial radius, diagonal units
    puff_growth: np.ndarray  # (P,) float64: radius growth, diagonal units per second
    puff_aspect: np.ndarray  # (P,) float64: width / height of the blob
    puff_optical_depth: np.ndarray  # (P,) float64: peak optical depth at emission
    puff_lifetime_s: np.ndarray  # (P,) float64


#: Surgeons cauterise in bursts: spells of work alternate with quiet spells
#: (dissecting, changing instruments). Durations in seconds.
_BUSY_SPELL_S = (8.0, 30.0)
_QUIET_SPELL_S = (5.0, 25.0)
#: Cautery activations per second within a busy spell (a few per 10 s overall).
_ACTIVATION_RATE_HZ = 0.55
_ACTIVATION_DURATION_S = (0.5, 2.0)
#: Puffs emitted per second of activation.
_PUFF_RATE_HZ = 10.0
_PUFF_LIFETIME_S = (2.5, 5.0)
#: How fast the haze clears (1/e time) once the cautery stops.
_HAZE_CLEAR_S = 9.0
#: 1/e time in which a puff's initial jet slows to the ambient drift.
_JET_SLOWDOWN_S = 0.8
#: Rise time of a fresh puff: smoke bursts out of the tissue almost at once.
_PUFF_ATTACK_S = 0.12


# --------------------------------------------------------------------------- scene


class LaparoscopicScene:
    """An endless synthetic laparoscope video with an instrument and cautery smoke.

    Args:
        width: frame width in pixels, at least :data:`MIN_FRAME_SIDE`.
        height: frame height in pixels, at least :data:`MIN_FRAME_SIDE`.
        fps: frames per second; frame ``index`` shows time ``index / fps``.
        seed: seeds every random choice of the scene.
        smoke: ``False`` renders no smoke (``smoky`` equals ``clean``). The
            tissue, camera and instrument do not depend on it.

    Attributes:
        smoke_colour_bgr: ``(3,)`` float32 BGR in [0, 1], the smoke colour ``A``;
            a multiple of 1/255, so the uint8 composite is exact up to rounding.
    """

    def __init__(
        self, width: int, height: int, fps: float = 30.0, seed: int = 0, smoke: bool = True
    ) -> None:
        if not (isinstance(width, numbers.Integral) and isinstance(height, numbers.Integral)):
            raise ValueError(f"frame size must be whole pixels, got {width}x{height}")
        if width < MIN_FRAME_SIDE or height < MIN_FRAME_SIDE:
            raise ValueError(
                f"frame must be at least {MIN_FRAME_SIDE}x{MIN_FRAME_SIDE} pixels, "
                f"got {width}x{height}"
            )
        if not (isinstance(fps, numbers.Real) and math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a positive number, got {fps}")
        self.width = int(width)
        self.height = int(height)
        self.fps = float(fps)
        self.seed = int(seed)
        self.smoke = bool(smoke)
        self._diagonal = math.hypot(self.width, self.height)

        # Independent streams per component: the tissue of a seed is the same
        # with or without smoke, and tuning the smoke does not reshuffle the organs.
        tissue_seed, motion_seed, smoke_seed = np.random.SeedSequence(self.seed).spawn(3)
        self._init_tissue(np.random.default_rng(tissue_seed))
        self._init_motion(np.random.default_rng(motion_seed))
        self._init_smoke(np.random.default_rng(smoke_seed))

    # ----------------------------------------------------------------- construction

    def _init_tissue(self, rng: np.random.Generator) -> None:
        # Flicker of the highlights: a coarse grid of independent slow waves, as
        # the wet film on the tissue moves with breathing and heartbeat.
        flicker_grid = (6, 4)
        self._flicker_hz = _loop_frequencies(rng, flicker_grid[0] * flicker_grid[1], 0.5, 2.0)
        self._flicker_hz = self._flicker_hz.reshape(flicker_grid[1], flicker_grid[0])
        self._flicker_phase = rng.uniform(0.0, _TWO_PI, self._flicker_hz.shape)
        texture_w = math.ceil(TEXTURE_MARGIN * self.width)
        texture_h = math.ceil(TEXTURE_MARGIN * self.height)
        # Small textures are rendered larger and shrunk: slopes, highlights and
        # vessels need some pixels to come out as they do at full size.
        supersample = max(1, math.ceil(MIN_TEXTURE_DETAIL_WIDTH / texture_w))
        texture = _tissue_texture(
            supersample * texture_h, supersample * texture_w, supersample * self._diagonal, rng
        )
        if supersample > 1:
            texture = cv2.resize(texture, (texture_w, texture_h), interpolation=cv2.INTER_AREA)
        self._texture = texture
        self._illumination = _scope_illumination(self.height, self.width)
        illumination_u8 = cv2.convertScaleAbs(self._illumination, alpha=255)
        self._illumination_bgr = cv2.cvtColor(illumination_u8, cv2.COLOR_GRAY2BGR)

    def _init_motion(self, rng: np.random.Generator) -> None:
        # Camera: the assistant's slow drift, plus breathing (about 15 per minute).
        self._pan_x = _SineSum(rng, 3, 0.01, 0.06, amplitude=0.12)  # diagonal units
        self._pan_y = _SineSum(rng, 3, 0.01, 0.06, amplitude=0.08)
        self._zoom = _SineSum(rng, 2, 0.01, 0.04, amplitude=0.08)  # relative
        self._roll = _SineSum(rng, 2, 0.01, 0.04, amplitude=math.radians(4.0))
        self._breath_hz = _loop_frequencies(rng, 1, 0.22, 0.28)[0]
        self._breath_phase = rng.uniform(0.0, _TWO_PI)

        # Instrument: enters from the left or right, low in the frame, and its tip
        # wanders over the middle of the view.
        self._entry_side = 1.0 if rng.random() < 0.5 else -1.0
        self._entry_height = rng.uniform(0.55, 0.95)  # fraction of the frame height
        self._tip_centre = np.array([rng.uniform(0.42, 0.58), rng.uniform(0.42, 0.55)])
        self._tip_x = _SineSum(rng, 2, 0.03, 0.09, amplitude=0.2)  # fraction of width
        self._tip_y = _SineSum(rng, 2, 0.03, 0.09, amplitude=0.16)  # fraction of height
        self._tip_depth = _SineSum(rng, 2, 0.02, 0.06, amplitude=0.12)  # relative size
        self._jaw_wave = _SineSum(rng, 2, 0.1, 0.3, amplitude=1.0)

    def _init_smoke(self, rng: np.random.Generator) -> None:
        schedule_rng, noise_rng = rng.spawn(2)
        self._schedule = self._draw_schedule(schedule_rng)
        smoke_rgb = random_smoke_colour(schedule_rng)
        # Quantised so that the uint8 blend uses exactly this colour.
        self.smoke_colour_bgr = (np.round(smoke_rgb[::-1] * 255.0) / 255.0).astype(np.float32)
        smoke_bgr_u8 = np.round(self.smoke_colour_bgr * 255.0).astype(np.uint8)
        self._smoke_colour_image = np.tile(smoke_bgr_u8, (self.height, self.width, 1))

        grid_w = max(4, round(self.width / SMOKE_DOWNSCALE))
        grid_h = max(4, round(self.height / SMOKE_DOWNSCALE))
        self._smoke_grid = (grid_h, grid_w)
        self._smoke_px_per_unit = self._diagonal * grid_w / self.width
        self._smoke_illumination = cv2.resize(
            self._illumination, (grid_w, grid_h), interpolation=cv2.INTER_AREA
        )
        # Noise that shapes the plumes, scrolled upwards with the rising smoke:
        # two fields at different scales thin the smoke into wisps, and a
        # two-channel field displaces it into curls.
        self._wisp_modulation = tuple(
            _tile_2x2(
                _lognormal_modulation(_tileable_noise(grid_h, grid_w, noise_rng, cells), 0.65)
            )
            for cells in (4, 10)
        )
        self._swirl_noise = _tile_2x2(
            np.dstack(
                [
                    _tileable_noise(grid_h, grid_w, noise_rng, base_cells=4) - 0.5,
                    _tileable_noise(grid_h, grid_w, noise_rng, base_cells=4) - 0.5,
                ]
            )
        )
        self._haze_modulation = _tile_2x2(
            _lognormal_modulation(_tileable_noise(grid_h, grid_w, noise_rng, base_cells=2), 0.5)
        )
        # Scroll velocities (x, y) in tiles per loop: whole numbers keep the loop
        # seamless. About one frame height per 10 s, like the smoke's own rise.
        self._wisp_scroll = (
            np.array([noise_rng.integers(-15, 16), -noise_rng.integers(40, 70)]),
            np.array([noise_rng.integers(-30, 31), -noise_rng.integers(60, 100)]),
        )
        self._swirl_scroll = np.array([noise_rng.integers(-20, 21), -noise_rng.integers(20, 40)])
        self._haze_scroll = np.array([noise_rng.integers(-10, 11), -noise_rng.integers(5, 15)])
        self._smoke_grid_x, self._smoke_grid_y = np.meshgrid(
            np.arange(grid_w, dtype=np.float32), np.arange(grid_h, dtype=np.float32)
        )

    def _draw_schedule(self, rng: np.random.Generator) -> _SmokeSchedule:
        # The video opens with a busy spell whose first activation comes within
        # a second, so that the demo shows smoke at once.
        spell_starts = [rng.uniform(0.2, 1.0, 1)]
        spell_time = 0.0
        while spell_time < LOOP_PERIOD_S:
            busy_s = rng.uniform(*_BUSY_SPELL_S)
            count = rng.poisson(_ACTIVATION_RATE_HZ * busy_s)
            spell_starts.append(spell_time + rng.uniform(0.0, busy_s, count))
            spell_time += busy_s + rng.uniform(*_QUIET_SPELL_S)
        starts = np.concatenate(spell_starts)
        starts = np.sort(starts[(starts >= 0.0) & (starts < LOOP_PERIOD_S)])
        activation_count = len(starts)
        durations = rng.uniform(*_ACTIVATION_DURATION_S, activation_count)
        haze = rng.uniform(0.015, 0.035, activation_count) * durations

        puffs_per_activation = np.maximum(2, np.round(durations * _PUFF_RATE_HZ)).astype(int)
        puff_count = int(puffs_per_activation.sum())
        owner = np.repeat(np.arange(activation_count), puffs_per_activation)
        emit = starts[owner] + rng.uniform(0.0, 1.0, puff_count) * durations[owner]
        emit_xy = self._jaw_tips_xy(emit) / self._diagonal
        emit_xy = emit_xy.reshape(puff_count, 2) + rng.normal(0.0, 0.006, (puff_count, 2))
        # Smoke rises (towards the top of the image, the usual patient-up view),
        # with a draught common to all puffs of an activation.
        draught = rng.normal(0.0, 0.02, (activation_count, 2))
        velocity = draught[owner] + np.stack(
            [rng.normal(0.0, 0.01, puff_count), -rng.uniform(0.01, 0.03, puff_count)], axis=1
        )
        # Hot smoke leaves the tissue as a fast upward jet that soon slows down.
        jet = np.stack(
            [rng.normal(0.0, 0.03, puff_count), -rng.uniform(0.06, 0.16, puff_count)], axis=1
        )
        return _SmokeSchedule(
            activation_start_s=starts,
            activation_duration_s=durations,
            haze_optical_depth=haze,
            puff_emit_s=emit,
            puff_xy=emit_xy,
            puff_jet=jet,
            puff_velocity=velocity,
            puff_radius=rng.uniform(0.01, 0.02, puff_count),
            puff_growth=rng.uniform(0.015, 0.035, puff_count),
            puff_aspect=rng.uniform(0.8, 1.5, puff_count),
            puff_optical_depth=rng.uniform(0.3, 0.8, puff_count),
            puff_lifetime_s=rng.uniform(*_PUFF_LIFETIME_S, puff_count),
        )

    # ----------------------------------------------------------------- motion

    def _camera_matrix(self, time_s: float) -> np.ndarray:
        """Affine map from frame pixels to texture pixels (for ``WARP_INVERSE_MAP``)."""
        # Breathing lifts the abdominal wall with the scope in it: the tissue
        # comes closer and drifts a little up and down the view.
        breath = math.sin(_TWO_PI * self._breath_hz * time_s + self._breath_phase)
        breath_zoom, breath_lift = 0.015, 0.006  # relative, diagonal units
        zoom = 1.0 + self._zoom.at(time_s) + breath_zoom * breath
        roll = self._roll.at(time_s)
        texture_h, texture_w = self._texture.shape[:2]
        centre_x = 0.5 * texture_w + self._pan_x.at(time_s) * self._diagonal
        centre_y = (
            0.5 * texture_h + (self._pan_y.at(time_s) + breath_lift * breath) * self._diagonal
        )
        scale = 1.0 / zoom
        cos_r, sin_r = scale * math.cos(roll), scale * math.sin(roll)
        half_w, half_h = 0.5 * self.width, 0.5 * self.height
        return np.array(
            [
                [cos_r, -sin_r, centre_x - cos_r * half_w + sin_r * half_h],
                [sin_r, cos_r, centre_y - sin_r * half_w - cos_r * half_h],
            ]
        )

    def _jaw_tips_xy(self, times_s: np.ndarray) -> np.ndarray:
        """Where the jaws touch tissue at each of ``times_s``: ``(..., 2)`` (x, y) pixels."""
        return np.stack(
            [
                (self._tip_centre[0] + self._tip_x.over(times_s)) * self.width,
                (self._tip_centre[1] + self._tip_y.over(times_s)) * self.height,
            ],
            axis=-1,
        )

    def _instrument_pose(self, time_s: float) -> _InstrumentPose:
        tip = self._jaw_tips_xy(np.array(time_s))
        entry = np.array(
            [
                (0.5 + self._entry_side * _ENTRY_OFFSET) * self.width,
                self._entry_height * self.height,
            ]
        )
        # Moving towards the camera makes the whole instrument look bigger.
        depth_scale = 1.0 + self._tip_depth.at(time_s)
        jaw_length = _JAW_LENGTH * self._diagonal * depth_scale
        axis = tip - entry
        axis /= max(float(np.linalg.norm(axis)), 1e-6)
        # Jaws open and close while dissecting and clamp shut on the tissue
        # while the cautery is on.
        opening = 0.5 + 0.5 * self._jaw_wave.at(time_s)
        opening *= 1.0 - self._cautery_level(time_s)
        return _InstrumentPose(
            entry_xy=entry,
            pivot_xy=tip - axis * jaw_length,
            jaw_tip_xy=tip,
            half_width_px=_SHAFT_HALF_WIDTH * self._diagonal * depth_scale,
            jaw_opening_rad=_MAX_JAW_OPENING_RAD * opening,
        )

    def _cautery_level(self, time_s: float) -> float:
        """1 while the cautery is on, 0 off, with a short ramp at either end."""
        schedule = self._schedule
        since_start = (time_s - schedule.activation_start_s) % LOOP_PERIOD_S
        ramp_s = 0.2
        level = np.clip(since_start / ramp_s, 0, 1) * np.clip(
            (schedule.activation_duration_s + ramp_s - since_start) / ramp_s, 0, 1
        )
        return float(level.max(initial=0.0))

    # ----------------------------------------------------------------- smoke

    def _smoke_density(self, time_s: float) -> np.ndarray:
        """Smoke density at the smoke grid resolution, ``(h, w)`` float32 in [0, 1)."""
        schedule = self._schedule
        grid_h, grid_w = self._smoke_grid
        px_per_unit = self._smoke_px_per_unit
        loop_time = time_s % LOOP_PERIOD_S

        age = (loop_time - schedule.puff_emit_s) % LOOP_PERIOD_S
        alive = age < schedule.puff_lifetime_s
        age = age[alive]
        radius = schedule.puff_radius[alive] + schedule.puff_growth[alive] * age
        jet_travel_s = _JET_SLOWDOWN_S * (1.0 - np.exp(-age / _JET_SLOWDOWN_S))
        centre = (
            schedule.puff_xy[alive]
            + schedule.puff_jet[alive] * jet_travel_s[:, None]
            + schedule.puff_velocity[alive] * age[:, None]
        )
        # Optical depth: a fast attack, then the puff thins as it spreads (the
        # same smoke over a larger area) and dissipates towards its end of life.
        life_left = 1.0 - age / schedule.puff_lifetime_s[alive]
        depth = (
            schedule.puff_optical_depth[alive]
            * (1.0 - np.exp(-age / _PUFF_ATTACK_S))
            * (schedule.puff_radius[alive] / radius)
            * life_left**1.5
        )
        # Each puff is a separable Gaussian, so summing all of them is one
        # (h, P) @ (P, w) matrix product instead of P full-grid evaluations.
        # cv2.gemm, not numpy's BLAS: OpenBLAS threads stall for milliseconds
        # when other work (this pipeline's other stages) holds the cores.
        sigma_x = radius * schedule.puff_aspect[alive] * px_per_unit
        sigma_y = radius * px_per_unit
        # On a coarse grid a narrow puff falls between samples; widening it by
        # the footprint of a grid cell (keeping its total smoke) avoids that.
        cell_sigma = 0.5
        widened_x = np.hypot(sigma_x, cell_sigma)
        widened_y = np.hypot(sigma_y, cell_sigma)
        depth = depth * (sigma_x / widened_x) * (sigma_y / widened_y)
        sigma_x, sigma_y = widened_x, widened_y
        xs = np.arange(grid_w, dtype=np.float64) + 0.5
        ys = np.arange(grid_h, dtype=np.float64) + 0.5
        profile_x = _gaussian_profile(xs, centre[:, 0] * px_per_unit, sigma_x)
        profile_y = _gaussian_profile(ys, centre[:, 1] * px_per_unit, sigma_y)
        if len(depth) == 0:
            plume = np.zeros((grid_h, grid_w), np.float32)
        else:
            weighted_y = np.ascontiguousarray((profile_y * depth[:, None]).T, dtype=np.float32)
            plume = cv2.gemm(weighted_y, profile_x.astype(np.float32), 1.0, None, 0.0)
            # Far tails multiply out to subnormal floats, which the CPU handles
            # dozens of times slower; they are invisible, so drop them.
            plume[plume < 1e-9] = 0.0

        # Turbulence: displace the smooth blobs by a scrolling noise field, so that
        # their outlines curl, then thin them out into wisps.
        swirl_px = 0.12 * px_per_unit
        swirl = self._scrolled(self._swirl_noise, self._swirl_scroll, loop_time)
        plume = cv2.remap(
            plume,
            self._smoke_grid_x + swirl_px * swirl[..., 0],
            self._smoke_grid_y + swirl_px * swirl[..., 1],
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        for modulation, scroll in zip(self._wisp_modulation, self._wisp_scroll, strict=True):
            plume *= self._scrolled(modulation, scroll, loop_time)

        since_start = (loop_time - schedule.activation_start_s) % LOOP_PERIOD_S
        build_up = np.clip(since_start / schedule.activation_duration_s, 0.0, 1.0)
        after_end = np.maximum(since_start - schedule.activation_duration_s, 0.0)
        clearing = np.exp(-after_end / _HAZE_CLEAR_S)
        haze_depth = float((schedule.haze_optical_depth * build_up * clearing).sum())
        haze = self._scrolled(self._haze_modulation, self._haze_scroll, loop_time)
        optical_depth = plume + haze_depth * haze

        # Smoke adds up as optical depth; what it hides is 1 - transmission.
        density = MAX_SMOKE_DENSITY * (1.0 - np.exp(-optical_depth))
        # Smoke only glows where the scope's light reaches it.
        return density * self._smoke_illumination

    @staticmethod
    def _scrolled(
        tiles_2x2: np.ndarray, tiles_per_loop: np.ndarray, loop_time: float
    ) -> np.ndarray:
        """A tile moved by ``tiles_per_loop`` (x, y) tile sizes per loop, wrapping around.

        Args:
            tiles_2x2: the tile repeated twice in each direction (see
                :func:`_tile_2x2`), so that every shifted view lies inside it:
                ``BORDER_WRAP`` would do the same at four times the cost.
        """
        tile_h, tile_w = tiles_2x2.shape[0] // 2, tiles_2x2.shape[1] // 2
        loop_fraction = loop_time / LOOP_PERIOD_S
        shift_x = (tiles_per_loop[0] * loop_fraction % 1.0) * tile_w
        shift_y = (tiles_per_loop[1] * loop_fraction % 1.0) * tile_h
        # The inverse map samples the source at (x - shift), moving the pattern
        # by +shift; one tile added keeps the sample inside the 2x2 copy.
        source_from_output = np.array([[1.0, 0.0, tile_w - shift_x], [0.0, 1.0, tile_h - shift_y]])
        return cv2.warpAffine(
            tiles_2x2,
            source_from_output,
            (tile_w, tile_h),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )

    # ----------------------------------------------------------------- rendering

    def render(self, index: int, highlights: bool = True) -> SceneFrame:
        """Render frame ``index`` (time ``index / fps``).

        Args:
            index: frame number, a whole number >= 0.
            highlights: draw the specular highlights: the wet tissue's mirror
                images of the scope light and the instrument's streak and jaw
                glints. ``render(i)`` and ``render(i, highlights=False)`` are
                otherwise identical, so they pair a frame with its
                highlight-free ground truth (for highlight / reflection removal).

        Returns:
            The frame; see :class:`SceneFrame` for shapes, dtypes and ranges.
        """
        if not isinstance(index, numbers.Integral) or index < 0:
            raise ValueError(f"frame index must be a whole number >= 0, got {index!r}")
        time_s = int(index) / self.fps
        # Motions repeat every loop; folding the time in keeps sin() accurate
        # for huge indices.
        time_s %= LOOP_PERIOD_S

        view = cv2.warpAffine(
            self._texture,
            self._camera_matrix(time_s),
            (self.width, self.height),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REFLECT,
        )
        clean = cv2.cvtColor(view, cv2.COLOR_BGRA2BGR)
        if highlights:
            flicker_depth = 0.25
            waves = np.sin(_TWO_PI * self._flicker_hz * time_s + self._flicker_phase)
            flicker = 1.0 - flicker_depth + flicker_depth * waves
            flicker = cv2.resize(
                np.round(flicker * 255).astype(np.uint8),
                (self.width, self.height),
                interpolation=cv2.INTER_LINEAR,
            )
            wet_glare = cv2.multiply(cv2.extractChannel(view, 3), flicker, scale=1.0 / 255.0)
            cv2.add(clean, cv2.cvtColor(wet_glare, cv2.COLOR_GRAY2BGR), dst=clean)

        _draw_instrument(clean, self._instrument_pose(time_s), glints=highlights)
        clean = cv2.multiply(clean, self._illumination_bgr, scale=1.0 / 255.0)

        if not self.smoke:
            return SceneFrame(
                smoky=clean.copy(),
                clean=clean,
                smoke_density=np.zeros((self.height, self.width), np.float32),
            )
        density = cv2.resize(
            self._smoke_density(time_s),
            (self.width, self.height),
            interpolation=cv2.INTER_LINEAR,
        )
        np.clip(density, 0.0, MAX_SMOKE_DENSITY, out=density)
        # cv2.blendLinear evaluates composite_smoke's I = J (1 - d) + A d in uint8
        # at a twentieth of its cost; the tests check that the two agree.
        smoky = cv2.blendLinear(clean, self._smoke_colour_image, 1.0 - density, density)
        return SceneFrame(smoky=smoky, clean=clean, smoke_density=density)


__all__ = ["LOOP_PERIOD_S", "MAX_SMOKE_DENSITY", "LaparoscopicScene", "SceneFrame"]
