"""The view the display shows: layout of raw and restored frames, and the mode label.

Drawn on copies, on the CPU, in the sink side of the graph. BYPASS is marked with
an amber frame around the whole view as well as its label, so nobody mistakes a
raw picture for a restored one at a glance. The mode label sits top right, on the
restored half of a side-by-side or split view; :func:`compose_view` marks the raw
half RAW top left, so each half says what it is.
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
RAW_LABEL = "RAW"
RAW_COLOUR = (235, 235, 235)


def compose_view(view: str, raw: np.ndarray, restored: np.ndarray | None) -> np.ndarray:
    """Lay out the raw and restored frames. Both ``(H, W, 3)`` uint8 BGR.

    ``restored`` None (BYPASS) puts the raw frame where the restored one would be.
    Returns a new array: ``(H, W, 3)``, or ``(H, 2W, 3)`` for side-by-side.
    The raw half of side-by-side and split is labelled RAW (top left); the mode
    label that :func:`draw_status` puts top right then marks the other half.
    """
    shown = raw if restored is None else restored
    if view == "processed":
        return shown.copy()
    if view == "side-by-side":
        image = np.concatenate([raw, shown], axis=1)
    elif view == "split":
        width = raw.shape[1]
        half = width // 2
        image = np.concatenate([raw[:, :half], shown[:, half:]], axis=1)
        cv2.line(
            image, (half, 0), (half, image.shape[0] - 1), (255, 255, 255), max(1, width // 400)
        )
    else:
        raise ValueError(f"unknown view {view!r}; choose one of {VIEWS}")
    _draw_label(image, RAW_LABEL, RAW_COLOUR, right=False)
    return image


def view_size(view: str, width: int, height: int) -> tuple[int, int]:
    """(width, height) of the composed view for frames of ``width x height``."""
    return (2 * width, height) if view == "side-by-side" else (width, height)


def draw_status(image: np.ndarray, mode: Mode, detail: str = "", alert: str = "") -> np.ndarray:
    """Draw the mode label (and a border for BYPASS) onto ``image`` in place.

    ``alert``: a fault the viewer must see (``REC STOPPED: disk full``), red, top right.
    """
    height, width = image.shape[:2]
    scale, thickness = _text_scale(image)
    colour = MODE_COLOURS[mode]
    if mode is Mode.BYPASS:
        border = max(3, width // 160)
        cv2.rectangle(image, (0, 0), (width - 1, height - 1), colour, border)
    pad = _draw_label(image, mode.value, colour, right=True)
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
        (alert_width, text_height), _ = cv2.getTextSize(
            alert, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness
        )
        # Below the mode label's box (top right).
        origin = (max(pad, width - alert_width - 2 * pad), 4 * pad + 2 * text_height)
        red = (0, 0, 255)
        font = cv2.FONT_HERSHEY_SIMPLEX
        cv2.putText(image, alert, origin, font, scale, red, thickness, cv2.LINE_AA)
    return image


def _text_scale(image: np.ndarray) -> tuple[float, int]:
    """Font scale and stroke thickness for labels on ``image``, from its size."""
    height, width = image.shape[:2]
    scale = max(0.4, min(width, 2 * height) / 1400)
    return scale, max(1, round(2 * scale))


def _draw_label(image: np.ndarray, label: str, colour: tuple[int, int, int], right: bool) -> int:
    """``label`` in ``colour`` on a black box in the top left or top right corner.

    Returns the padding used, for text placed relative to it.
    """
    scale, thickness = _text_scale(image)
    (text_width, text_height), baseline = cv2.getTextSize(
        label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness
    )
    pad = max(4, round(8 * scale))
    box_width = 2 * pad + text_width
    left = image.shape[1] - pad - box_width if right else pad
    cv2.rectangle(
        image, (left, pad), (left + box_width, 3 * pad + text_height + baseline), (0, 0, 0), -1
    )
    cv2.putText(
        image,
        label,
        (left + pad, 2 * pad + text_height),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        colour,
        thickness,
        cv2.LINE_AA,
    )
    return pad


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
