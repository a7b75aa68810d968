"""The scene itself: :class:`LaparoscopicScene` composes tissue, camera motion, the
instrument, the scope optics and the cautery smoke into :class:`SceneFrame` s."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import cv2
import numpy as np

from smokeclear.synthetic.scene.instrument import (
    ENTRY_OFFSET,
    JAW_LENGTH,
    MAX_JAW_OPENING_RAD,
    SHAFT_HALF_WIDTH,
    InstrumentPose,
    draw_instrument,
)
from smokeclear.synthetic.scene.optics import scope_illumination
from smokeclear.synthetic.scene.plumes import MAX_SMOKE_DENSITY, CauterySmoke
from smokeclear.synthetic.scene.primitives import (
    LOOP_PERIOD_S,
    TWO_PI,
    SineSum,
    loop_frequencies,
)
from smokeclear.synthetic.scene.tissue import tissue_texture

#: Smallest frame side accepted: below this the instrument and smoke puffs
#: shrink under a pixel and the smoke grid (1/4 resolution) to a few cells.
MIN_FRAME_SIDE = 16

#: The tissue texture is this many times the frame in each dimension, so that
#: the camera can pan, zoom out and roll without leaving it.
TEXTURE_MARGIN = 1.6

#: Narrower tissue textures are rendered at this width and shrunk, so that a
#: tiny frame shows the same scene as a large one rather than a coarser one.
MIN_TEXTURE_DETAIL_WIDTH = 640


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
        # Drawn even without smoke: the jaws clamp shut while the cautery is on.
        self._cautery = CauterySmoke(
            np.random.default_rng(smoke_seed),
            self.width,
            self.height,
            self._illumination,
            self._jaw_tips_xy,
        )
        self.smoke_colour_bgr = self._cautery.colour_bgr

    # ----------------------------------------------------------------- construction

    def _init_tissue(self, rng: np.random.Generator) -> None:
        # Flicker of the highlights: a coarse grid of independent slow waves, as
        # the wet film on the tissue moves with breathing and heartbeat.
        flicker_grid = (6, 4)
        self._flicker_hz = loop_frequencies(rng, flicker_grid[0] * flicker_grid[1], 0.5, 2.0)
        self._flicker_hz = self._flicker_hz.reshape(flicker_grid[1], flicker_grid[0])
        self._flicker_phase = rng.uniform(0.0, TWO_PI, self._flicker_hz.shape)
        texture_w = math.ceil(TEXTURE_MARGIN * self.width)
        texture_h = math.ceil(TEXTURE_MARGIN * self.height)
        # Small textures are rendered larger and shrunk: slopes, highlights and
        # vessels need some pixels to come out as they do at full size.
        supersample = max(1, math.ceil(MIN_TEXTURE_DETAIL_WIDTH / texture_w))
        texture = tissue_texture(
            supersample * texture_h, supersample * texture_w, supersample * self._diagonal, rng
        )
        if supersample > 1:
            texture = cv2.resize(texture, (texture_w, texture_h), interpolation=cv2.INTER_AREA)
        self._texture = texture
        self._illumination = scope_illumination(self.height, self.width)
        illumination_u8 = cv2.convertScaleAbs(self._illumination, alpha=255)
        self._illumination_bgr = cv2.cvtColor(illumination_u8, cv2.COLOR_GRAY2BGR)

    def _init_motion(self, rng: np.random.Generator) -> None:
        # Camera: the assistant's slow drift, plus breathing (about 15 per minute).
        self._pan_x = SineSum(rng, 3, 0.01, 0.06, amplitude=0.12)  # diagonal units
        self._pan_y = SineSum(rng, 3, 0.01, 0.06, amplitude=0.08)
        self._zoom = SineSum(rng, 2, 0.01, 0.04, amplitude=0.08)  # relative
        self._roll = SineSum(rng, 2, 0.01, 0.04, amplitude=math.radians(4.0))
        self._breath_hz = loop_frequencies(rng, 1, 0.22, 0.28)[0]
        self._breath_phase = rng.uniform(0.0, TWO_PI)

        # Instrument: enters from the left or right, low in the frame, and its tip
        # wanders over the middle of the view.
        self._entry_side = 1.0 if rng.random() < 0.5 else -1.0
        self._entry_height = rng.uniform(0.55, 0.95)  # fraction of the frame height
        self._tip_centre = np.array([rng.uniform(0.42, 0.58), rng.uniform(0.42, 0.55)])
        self._tip_x = SineSum(rng, 2, 0.03, 0.09, amplitude=0.2)  # fraction of width
        self._tip_y = SineSum(rng, 2, 0.03, 0.09, amplitude=0.16)  # fraction of height
        self._tip_depth = SineSum(rng, 2, 0.02, 0.06, amplitude=0.12)  # relative size
        self._jaw_wave = SineSum(rng, 2, 0.1, 0.3, amplitude=1.0)

    # ----------------------------------------------------------------- motion

    def _camera_matrix(self, time_s: float) -> np.ndarray:
        """Affine map from frame pixels to texture pixels (for ``WARP_INVERSE_MAP``)."""
        # Breathing lifts the abdominal wall with the scope in it: the tissue
        # comes closer and drifts a little up and down the view.
        breath = math.sin(TWO_PI * self._breath_hz * time_s + self._breath_phase)
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

    def _instrument_pose(self, time_s: float) -> InstrumentPose:
        tip = self._jaw_tips_xy(np.array(time_s))
        entry = np.array(
            [
                (0.5 + self._entry_side * ENTRY_OFFSET) * self.width,
                self._entry_height * self.height,
            ]
        )
        # Moving towards the camera makes the whole instrument look bigger.
        depth_scale = 1.0 + self._tip_depth.at(time_s)
        jaw_length = JAW_LENGTH * self._diagonal * depth_scale
        axis = tip - entry
        axis /= max(float(np.linalg.norm(axis)), 1e-6)
        # Jaws open and close while dissecting and clamp shut on the tissue
        # while the cautery is on.
        opening = 0.5 + 0.5 * self._jaw_wave.at(time_s)
        opening *= 1.0 - self._cautery.cautery_level(time_s)
        return InstrumentPose(
            entry_xy=entry,
            pivot_xy=tip - axis * jaw_length,
            jaw_tip_xy=tip,
            half_width_px=SHAFT_HALF_WIDTH * self._diagonal * depth_scale,
            jaw_opening_rad=MAX_JAW_OPENING_RAD * opening,
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
            waves = np.sin(TWO_PI * self._flicker_hz * time_s + self._flicker_phase)
            flicker = 1.0 - flicker_depth + flicker_depth * waves
            flicker = cv2.resize(
                np.round(flicker * 255).astype(np.uint8),
                (self.width, self.height),
                interpolation=cv2.INTER_LINEAR,
            )
            wet_glare = cv2.multiply(cv2.extractChannel(view, 3), flicker, scale=1.0 / 255.0)
            cv2.add(clean, cv2.cvtColor(wet_glare, cv2.COLOR_GRAY2BGR), dst=clean)

        draw_instrument(clean, self._instrument_pose(time_s), glints=highlights)
        clean = cv2.multiply(clean, self._illumination_bgr, scale=1.0 / 255.0)

        if not self.smoke:
            return SceneFrame(
                smoky=clean.copy(),
                clean=clean,
                smoke_density=np.zeros((self.height, self.width), np.float32),
            )
        density = cv2.resize(
            self._cautery.density(time_s),
            (self.width, self.height),
            interpolation=cv2.INTER_LINEAR,
        )
        np.clip(density, 0.0, MAX_SMOKE_DENSITY, out=density)
        # cv2.blendLinear evaluates composite_smoke's I = J (1 - d) + A d in uint8
        # at a twentieth of its cost; the tests check that the two agree.
        smoky = cv2.blendLinear(clean, self._cautery.colour_image, 1.0 - density, density)
        return SceneFrame(smoky=smoky, clean=clean, smoke_density=density)
