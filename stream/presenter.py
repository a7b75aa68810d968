"""What the live display shows, and when: the frame-deadline rule.

Every captured frame must reach the display within ``budget`` of its capture
(one frame period by default). The rule, applied on every wake-up:

1. The newest restored frame that is still within its deadline, and newer than
   anything shown so far, is shown as PROCESSED.
2. Otherwise, once the oldest captured-but-unshown frame reaches its deadline,
   the newest raw frame (the live picture, never an older one) is shown as
   BYPASS. A hung or failing engine therefore costs at most one budget before
   the view goes to BYPASS: this rule is the watchdog's first line.
3. After ``fallback_after`` deadline misses in a row the presenter stops waiting:
   each raw frame is shown as soon as it is captured (BYPASS, full frame rate,
   no added latency). Waiting would only add up to a budget of latency and, with
   the budget equal to the frame period, halve the shown frame rate (a frame's
   deadline falls when the next frame arrives). Restored frames keep being made
   and timed in the background; after ``recover_after`` of them in a row would
   have met their deadline, the presenter waits for them again.
   ``forced_bypass`` (the bypass switch, an engine being swapped) does the same
   until it is cleared.
4. With no frame from the source for ``no_signal_after``, NO SIGNAL is shown
   (repeated once per budget, so the view is never frozen on an old picture).

Restored frames that arrive after their deadline are discarded (``late``); no
frame is ever shown twice, and the shown sequence numbers only increase.
The class holds no clock and no threads: callers pass the time in.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from smokeclear.stream.frame import Frame, Mode


@dataclass(frozen=True)
class Presentation:
    mode: Mode
    frame: Frame | None  # None for NO SIGNAL


class DeadlinePresenter:
    """The deadline rule for a live source.

    Args:
        budget_ns: the latest a frame may be shown after its capture.
        no_signal_after_ns: source silence after which the view says NO SIGNAL.
        fallback_after: deadline misses in a row before raw frames are shown at once.
        recover_after: in-time restored frames in a row before waiting for them again.
    """

    def __init__(
        self,
        budget_ns: int,
        no_signal_after_ns: int,
        fallback_after: int = 2,
        recover_after: int = 3,
    ) -> None:
        if budget_ns <= 0 or no_signal_after_ns <= 0:
            raise ValueError("budget and no-signal timeout must be positive")
        self.budget_ns = budget_ns
        self.no_signal_after_ns = no_signal_after_ns
        self.fallback_after = fallback_after
        self.recover_after = recover_after
        self.falling_back = False
        self.forced_bypass = False  # set by the caller: show raw frames at once, BYPASS
        self.late = 0
        self._pending: deque[Frame] = deque()  # captured, not yet shown, seq increasing
        self._processed: list[Frame] = []
        self._last_shown_seq = -1
        self._misses_in_a_row = 0
        self._in_time_in_a_row = 0
        self._last_capture_ns: int | None = None
        self._last_no_signal_ns: int | None = None
        self._started_ns: int | None = None

    @property
    def idle(self) -> bool:
        """Nothing captured is waiting to be shown."""
        return not self._pending

    def on_captured(self, frame: Frame) -> None:
        self._pending.append(frame)
        self._last_capture_ns = frame.captured_ns

    def on_processed(self, frame: Frame) -> None:
        self._processed.append(frame)

    def poll(self, now_ns: int) -> Presentation | None:
        """What to show at ``now_ns``, or None to keep the current picture."""
        if self._started_ns is None:
            self._started_ns = now_ns
        restored = self._newest_in_time(now_ns)
        if self.falling_back and self._in_time_in_a_row >= self.recover_after:
            self.falling_back = False
            self._misses_in_a_row = 0
        if self.falling_back or self.forced_bypass:
            if self._pending:
                return self._show(Mode.BYPASS, self._pending[-1])
        elif restored is not None:
            self._misses_in_a_row = 0
            return self._show(Mode.PROCESSED, restored)
        elif self._pending and now_ns >= self._pending[0].captured_ns + self.budget_ns:
            self._misses_in_a_row += 1
            if self._misses_in_a_row >= self.fallback_after:
                self.falling_back = True
                self._in_time_in_a_row = 0
            return self._show(Mode.BYPASS, self._pending[-1])
        last_seen = self._last_capture_ns if self._last_capture_ns is not None else self._started_ns
        if now_ns - last_seen >= self.no_signal_after_ns and (
            self._last_no_signal_ns is None or now_ns - self._last_no_signal_ns >= self.budget_ns
        ):
            self._last_no_signal_ns = now_ns
            return Presentation(Mode.NO_SIGNAL, None)
        return None

    def next_wakeup_ns(self, now_ns: int) -> int:
        """When :meth:`poll` may next have something to show, if nothing arrives first."""
        candidates = [now_ns + self.budget_ns]
        if self._pending:
            candidates.append(self._pending[0].captured_ns + self.budget_ns)
        last_seen = (
            self._last_capture_ns
            if self._last_capture_ns is not None
            else (self._started_ns or now_ns)
        )
        candidates.append(last_seen + self.no_signal_after_ns)
        return max(now_ns, min(candidates))

    def _newest_in_time(self, now_ns: int) -> Frame | None:
        """The newest showable restored frame; also keeps the in-time streak."""
        chosen = None
        for frame in sorted(self._processed, key=lambda f: f.seq):
            finished_ns = frame.stamps.get("postprocess_end", now_ns)
            if finished_ns - frame.captured_ns <= self.budget_ns:
                self._in_time_in_a_row += 1
            else:
                self._in_time_in_a_row = 0
            if frame.seq <= self._last_shown_seq:
                continue  # its slot was already filled by a newer raw frame
            if now_ns - frame.captured_ns <= self.budget_ns:
                chosen = frame
            else:
                self.late += 1
        self._processed.clear()
        return chosen

    def _show(self, mode: Mode, frame: Frame) -> Presentation:
        self._last_shown_seq = frame.seq
        while self._pending and self._pending[0].seq <= frame.seq:
            self._pending.popleft()
        return Presentation(mode, frame)
