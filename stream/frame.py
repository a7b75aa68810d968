"""A frame on its way through the graph, and the display modes."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from smokeclear.engines.base import Engine


class Mode(enum.Enum):
    """What the display is showing. Always drawn on the view."""

    PROCESSED = "PROCESSED"  # the restored frame, within its deadline
    BYPASS = "BYPASS"  # the live raw frame: processing missed the deadline or failed
    NO_SIGNAL = "NO SIGNAL"  # no frame from the source for a while


@dataclass(eq=False)
class Frame:
    """One captured frame and what the stages did with it.

    ``image`` is the raw frame, ``(H, W, 3)`` uint8 BGR at the output size; it is
    never modified (the presenter draws on copies). ``stamps`` holds monotonic
    nanosecond timestamps per stage event: ``captured``, ``preprocess_start``,
    ``preprocess_end``, ``infer_start``, ``infer_end``, ``postprocess_start``,
    ``postprocess_end``, ``presented``.
    """

    seq: int
    image: np.ndarray
    captured_ns: int
    stamps: dict[str, int] = field(default_factory=dict)
    tensor: Any = None  # device tensor, between preprocess and postprocess
    # The engine that uploaded ``tensor``: the only one that may infer and download it.
    engine: Engine | None = None
    output: np.ndarray | None = None  # restored (H, W, 3) uint8 BGR

    def stamp(self, event: str) -> int:
        now = time.monotonic_ns()
        self.stamps[event] = now
        return now
