"""The view the display shows: layout of raw and restored frames, and the mode label.

Drawn on copies, on the CPU, in the sink side of the graph. BYPASS is marked with
an amber frame around the whole view as well as its label, so nobody mistakes a
raw picture for a restored one at a glance.
"""

from __future__ import annotations

import cv2
import numpy as np

from smokeclear.stream.frame import Mode

VIEWS = ("processed", "side-by-side", "split")

#: BGR colours per mode.
MODE_COLOURS = {
    Mode.PROCESSED: (80, 200, 60),
    Mode.BYPASS: (0, 170, 255),
    Mode.NO_SIGNAL: (40, 40, 230),
}


def compose_view(view: str, raw: np.ndarray, restored: np.ndarray | None) -> np.ndarray:
    """Lay out the raw and restored frames. Both ``(H, W, 3)`` uint8 BGR.

    ``restored`` None (BYPASS) puts the raw frame where the restored one would be.
    Returns a new array: ``(H, W, 3)``, or ``(H, 2W, 3)`` for side-by-side.
    """
    shown = raw if restored is None else restored
    if view == "processed":
        return shown.copy()
    if view == "side-by-side":
        return np.concatenate([raw, shown], axis=1)
    if view == "split":
        width = raw.shape[1]
        half = width // 2
        image = np.concatenate([raw[:, :half], shown[:, half:]], axis=1)
        cv2.line(
            image, (half, 0), (half, image.shape[0] - 1), (255, 255, 255), max(1, width // 400)
        )
        return image
    raise ValueError(f"unknown view {view!r}; choose one of {VIEWS}")


def view_size(view: str, width: int, height: int) -> tuple[int, int]:
    """(width, height) of the composed view for frames of ``width x height``."""
    return (2 * width, height) if view == "side-by-side" else (width, height)


def draw_status(image: np.ndarray, mode: Mode, detail: str = "", alert: str = "") -> np.ndarray:
    """Draw the mode label (and a border for BYPASS) onto ``image`` in place.

    ``alert``: a fault the viewer must see (``REC STOPPED: disk full``), red, top right.
    """
    height, width = image.shape[:2]
    scale = max(0.4, min(width, 2 * height) / 1400)
    thickness = max(1, round(2 * scale))
    colour = MODE_COLOURS[mode]
    if mode is Mode.BYPASS:
        border = max(3, width // 160)
        cv2.rectangle(image, (0, 0), (width - 1, height - 1), colour, border)
    label = mode.value
    (text_width, text_height), baseline = cv2.getTextSize(
        label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness
    )
    pad = max(4, round(8 * scale))
    cv2.rectangle(
        image, (pad, pad), (3 * pad + text_width, 3 * pad + text_height + baseline), (0, 0, 0), -1
    )
    cv2.putText(
        image,
        label,
        (2 * pad, 2 * pad + text_height),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        colour,
        thickness,
        cv2.LINE_AA,
    )
    if detail:
        cv2.putText(
            image,
            detail,
            (pad, height - pad),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale * 0.6,
            (235, 235, 235),
            max(1, thickness // 2),
            cv2.LINE_AA,
        )
    if alert:
        (alert_width, _), _ = cv2.getTextSize(alert, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        origin = (max(pad, width - alert_width - 2 * pad), 2 * pad + text_height)
        red = (0, 0, 255)
        font = cv2.FONT_HERSHEY_SIMPLEX
        cv2.putText(image, alert, origin, font, scale, red, thickness, cv2.LINE_AA)
    return image


def detail_gain_label(gain: float | None, fixed: bool = False) -> str:
    """The status-line text for the detail gain: "detail x2.5", "" without a detail stage.

    ``fixed``: the engine cannot change the gain live (the keys do nothing).
    """
    if gain is None:
        return ""
    return f"detail x{gain:g}" + (" (fixed)" if fixed else "")


def no_signal_card(width: int, height: int, detail: str = "") -> np.ndarray:
    """A dark card saying NO SIGNAL, ``(height, width, 3)`` uint8 BGR."""
    card = np.full((height, width, 3), 24, np.uint8)
    return draw_status(card, Mode.NO_SIGNAL, detail)
