"""Cautery smoke: puffs emitted at the jaw tip while the cautery is on, which rise,
spread and fade, shaped by scrolling noise, over a faint haze that builds up with
cautery use and clears slowly."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import cv2
import numpy as np

from smokeclear.synthetic.scene.primitives import (
    LOOP_PERIOD_S,
    gaussian_profile,
    lognormal_modulation,
    tile_2x2,
    tileable_noise,
)
from smokeclear.synthetic.smoke import random_smoke_colour

#: Smoke density is computed at 1/SMOKE_DOWNSCALE of the frame size: it is
#: smooth, and the per-frame cost drops by the square of this.
SMOKE_DOWNSCALE = 4

#: Densest smoke anywhere. Full cover (1.0) would leave nothing to recover.
MAX_SMOKE_DENSITY = 0.9


class SmokeSchedule(NamedTuple):
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


class CauterySmoke:
    """The smoke of one scene: when the cautery fires, and the smoke density that
    leaves at any time of the loop.

    Args:
        rng: draws the schedule, the smoke colour and the shaping noise.
        width: frame width in pixels.
        height: frame height in pixels.
        illumination: ``(height, width)`` float32 in [0, 1], the scope's light:
            smoke only glows where it reaches.
        jaw_tips_xy: where the jaws touch tissue at given times, ``(..., 2)`` (x, y)
            pixels: the puffs start there.

    Attributes:
        colour_bgr: ``(3,)`` float32 BGR in [0, 1], the smoke colour ``A``; a
            multiple of 1/255, so the uint8 composite is exact up to rounding.
        colour_image: ``(height, width, 3)`` uint8 BGR, filled with ``colour_bgr``.
    """

    def __init__(
        self,
        rng: np.random.Generator,
        width: int,
        height: int,
        illumination: np.ndarray,
        jaw_tips_xy: Callable[[np.ndarray], np.ndarray],
    ) -> None:
        self.width = width
        self.height = height
        self._diagonal = math.hypot(width, height)
        schedule_rng, noise_rng = rng.spawn(2)
        self._schedule = self._draw_schedule(schedule_rng, jaw_tips_xy)
        smoke_rgb = random_smoke_colour(schedule_rng)
        # Quantised so that the uint8 blend uses exactly this colour.
        self.colour_bgr = (np.round(smoke_rgb[::-1] * 255.0) / 255.0).astype(np.float32)
        smoke_bgr_u8 = np.round(self.colour_bgr * 255.0).astype(np.uint8)
        self.colour_image = np.tile(smoke_bgr_u8, (self.height, self.width, 1))

        grid_w = max(4, round(self.width / SMOKE_DOWNSCALE))
        grid_h = max(4, round(self.height / SMOKE_DOWNSCALE))
        self._grid = (grid_h, grid_w)
        self._px_per_unit = self._diagonal * grid_w / self.width
        self._illumination = cv2.resize(
            illumination, (grid_w, grid_h), interpolation=cv2.INTER_AREA
        )
        # Noise that shapes the plumes, scrolled upwards with the rising smoke:
        # two fields at different scales thin the smoke into wisps, and a
        # two-channel field displaces it into curls.
        self._wisp_modulation = tuple(
            tile_2x2(lognormal_modulation(tileable_noise(grid_h, grid_w, noise_rng, cells), 0.65))
            for cells in (4, 10)
        )
        self._swirl_noise = tile_2x2(
            np.dstack(
                [
                    tileable_noise(grid_h, grid_w, noise_rng, base_cells=4) - 0.5,
                    tileable_noise(grid_h, grid_w, noise_rng, base_cells=4) - 0.5,
                ]
            )
        )
        self._haze_modulation = tile_2x2(
            lognormal_modulation(tileable_noise(grid_h, grid_w, noise_rng, base_cells=2), 0.5)
        )
        # Scroll velocities (x, y) in tiles per loop: whole numbers keep the loop
        # seamless. About one frame height per 10 s, like the smoke's own rise.
        self._wisp_scroll = (
            np.array([noise_rng.integers(-15, 16), -noise_rng.integers(40, 70)]),
            np.array([noise_rng.integers(-30, 31), -noise_rng.integers(60, 100)]),
        )
        self._swirl_scroll = np.array([noise_rng.integers(-20, 21), -noise_rng.integers(20, 40)])
        self._haze_scroll = np.array([noise_rng.integers(-10, 11), -noise_rng.integers(5, 15)])
        self._grid_x, self._grid_y = np.meshgrid(
            np.arange(grid_w, dtype=np.float32), np.arange(grid_h, dtype=np.float32)
        )

    def _draw_schedule(
        self,
        rng: np.random.Generator,
        jaw_tips_xy: Callable[[np.ndarray], np.ndarray],
    ) -> SmokeSchedule:
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
        emit_xy = jaw_tips_xy(emit) / self._diagonal
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
        return SmokeSchedule(
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

    def cautery_level(self, time_s: float) -> float:
        """1 while the cautery is on, 0 off, with a short ramp at either end."""
        schedule = self._schedule
        since_start = (time_s - schedule.activation_start_s) % LOOP_PERIOD_S
        ramp_s = 0.2
        level = np.clip(since_start / ramp_s, 0, 1) * np.clip(
            (schedule.activation_duration_s + ramp_s - since_start) / ramp_s, 0, 1
        )
        return float(level.max(initial=0.0))

    def density(self, time_s: float) -> np.ndarray:
        """Smoke density at the smoke grid resolution, ``(h, w)`` float32 in [0, 1)."""
        schedule = self._schedule
        grid_h, grid_w = self._grid
        px_per_unit = self._px_per_unit
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
        profile_x = gaussian_profile(xs, centre[:, 0] * px_per_unit, sigma_x)
        profile_y = gaussian_profile(ys, centre[:, 1] * px_per_unit, sigma_y)
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
            self._grid_x + swirl_px * swirl[..., 0],
            self._grid_y + swirl_px * swirl[..., 1],
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
        return density * self._illumination

    @staticmethod
    def _scrolled(
        tiles_2x2: np.ndarray, tiles_per_loop: np.ndarray, loop_time: float
    ) -> np.ndarray:
        """A tile moved by ``tiles_per_loop`` (x, y) tile sizes per loop, wrapping around.

        Args:
            tiles_2x2: the tile repeated twice in each direction (see
                :func:`tile_2x2`), so that every shifted view lies inside it:
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
