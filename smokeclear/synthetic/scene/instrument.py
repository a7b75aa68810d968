"""The instrument: a cylindrical metal shaft from the frame edge with a two-jaw tip."""

from __future__ import annotations

import math
from typing import NamedTuple

import cv2
import numpy as np

from smokeclear.synthetic.scene.primitives import (
    FIXED_POINT_BITS,
    fixed_point,
    fixed_point_polygon,
)

#: Instrument metal, RGB: a cool grey steel, lit by the scope's white light.
_STEEL_RGB = np.array([168.0, 172.0, 178.0])


#: Shaft half-width at the jaws, diagonal units (a 5 mm grasper seen from ~8 cm).
SHAFT_HALF_WIDTH = 0.022
#: The shaft looks this much wider where it enters the view: nearer the camera.
_SHAFT_TAPER = 1.6
#: Jaw length, diagonal units.
JAW_LENGTH = 0.065
MAX_JAW_OPENING_RAD = math.radians(50.0)
#: Where the shaft enters: this far from the frame centre, as a fraction of the
#: width (0.5 is the frame edge), so the shaft always crosses the edge.
ENTRY_OFFSET = 0.62

#: A jaw's outline as (along, across) pairs: ``along`` is the fraction of the
#: jaw's length from the hinge, ``across`` is in shaft half-widths towards the
#: jaw's outer flank (negative: past the centre line, towards the other jaw).
_JAW_OUTLINE = np.array([(0.0, 0.85), (0.6, 0.7), (1.0, 0.25), (0.95, 0.0), (0.0, -0.05)])
#: The lit upper face of a jaw, inside the outline, same coordinates.
_JAW_LIT_FACE = np.array([(0.05, 0.55), (0.6, 0.42), (0.9, 0.15), (0.85, 0.06), (0.05, 0.05)])
#: A jaw's specular glint: from and to, same coordinates.
_JAW_GLINT = np.array([(0.15, 0.35), (0.75, 0.25)])


class InstrumentPose(NamedTuple):
    entry_xy: np.ndarray  # where the shaft enters, pixels, outside the frame
    pivot_xy: np.ndarray  # end of the shaft where the jaws hinge, pixels
    jaw_tip_xy: np.ndarray  # where the closed jaws touch tissue, pixels
    half_width_px: float  # shaft half-width at the pivot
    jaw_opening_rad: float


def _shaft_band(pose: InstrumentPose, normal: np.ndarray, low: float, high: float) -> np.ndarray:
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


def draw_instrument(image: np.ndarray, pose: InstrumentPose, *, glints: bool = True) -> None:
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
            fixed_point_polygon(_shaft_band(pose, normal, -outer, outer)),
            (steel_bgr * shade).tolist(),
            line_type,
            FIXED_POINT_BITS,
        )
    if glints:
        # The streak is off the axis because the light fibres sit beside the lens.
        cv2.fillConvexPoly(
            image,
            fixed_point_polygon(_shaft_band(pose, normal, 0.28, 0.42)),
            (250, 250, 248),
            cv2.LINE_AA,
            FIXED_POINT_BITS,
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
        fixed_point_polygon(ring),
        (steel_bgr * 0.22).tolist(),
        cv2.LINE_AA,
        FIXED_POINT_BITS,
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
                [fixed_point_polygon(_jaw_points(*jaw, face))],
                (steel_bgr * shade).tolist(),
                cv2.LINE_AA,
                FIXED_POINT_BITS,
            )
        if not glints:
            continue
        glint_from, glint_to = _jaw_points(*jaw, _JAW_GLINT)
        cv2.line(
            image,
            fixed_point(glint_from),
            fixed_point(glint_to),
            (245, 245, 245),
            glint_px,
            cv2.LINE_AA,
            FIXED_POINT_BITS,
        )
