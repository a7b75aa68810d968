"""What the viewer changes while a graph runs: the detail gain, from the window's keys,
and the bypass switch (raw frames, labelled), from a service's control page.

The infer stage hands each change to its engine before the next frame (see
:class:`~smokeclear.stream.graph.InferWorker`), and to a fresh engine after a hang.
"""

from __future__ import annotations

import threading

#: One ``]`` / ``[`` key press changes the detail gain by this much, within the range.
DETAIL_GAIN_STEP = 0.5
DETAIL_GAIN_RANGE = (0.0, 10.0)
DETAIL_GAIN_KEYS = {ord("]"): DETAIL_GAIN_STEP, ord("["): -DETAIL_GAIN_STEP}


class LiveControls:
    """What the viewer changes while the graph runs; safe to call from any thread.

    Every method holds a lock for a few assignments only, so the display loop never
    waits on the infer stage. ``version`` counts changes: the infer stage applies
    each one once.

    Args:
        detail_gain: the engine's starting detail gain; None when it has no detail
            stage (then the gain cannot be changed).
    """

    def __init__(self, detail_gain: float | None = None) -> None:
        self._lock = threading.Lock()
        self._initial_gain = detail_gain
        self._detail_gain = detail_gain
        self._fixed = False
        self._version = 0
        self._bypass = False

    @property
    def bypass(self) -> bool:
        """The surgeon asked for the raw picture: every frame is shown as BYPASS."""
        return self._bypass  # one bool: read without the lock, once per presenter tick

    def set_bypass(self, on: bool) -> None:
        with self._lock:
            self._bypass = bool(on)

    @property
    def detail_gain(self) -> float | None:
        with self._lock:
            return self._detail_gain

    @property
    def detail_gain_fixed(self) -> bool:
        """True once the engine said it cannot change the gain live."""
        with self._lock:
            return self._fixed

    def snapshot(self) -> tuple[int, float | None]:
        """``(version, detail_gain)``, read together."""
        with self._lock:
            return self._version, self._detail_gain

    def adjust_detail_gain(self, step: float) -> float | None:
        """Add ``step`` to the gain, clamped to :data:`DETAIL_GAIN_RANGE`; the new gain."""
        low, high = DETAIL_GAIN_RANGE
        with self._lock:
            if self._detail_gain is None or self._fixed:
                return self._detail_gain
            gain = min(high, max(low, round(self._detail_gain + step, 6)))
            if gain != self._detail_gain:
                self._detail_gain = gain
                self._version += 1
            return gain

    def fix_detail_gain(self) -> None:
        """The engine cannot change the gain: back to the starting one, and keep it."""
        with self._lock:
            self._detail_gain = self._initial_gain
            self._fixed = True

    def handle_key(self, key: int) -> bool:
        """A key pressed in the window: ``]`` raises the gain, ``[`` lowers it.

        Returns whether the key was one of them.
        """
        step = DETAIL_GAIN_KEYS.get(key)
        if step is None:
            return False
        self.adjust_detail_gain(step)
        return True
