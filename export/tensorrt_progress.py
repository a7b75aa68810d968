"""TensorRT build progress: IProgressMonitor callbacks as rate-limited log lines.

Builds take minutes; the user sees each top-level phase start and finish, and
nested phases and steps at most once per interval.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class BuildProgress:
    """Turns IProgressMonitor callbacks into rate-limited INFO lines.

    TensorRT calls these from its own threads, so state is guarded by a lock.
    Top-level phases are always reported when they start and finish; nested phases
    and step counts at most once per ``interval_s``.

    Args:
        interval_s: minimum time between rate-limited lines.
        clock: monotonic seconds (injectable for tests).
        emit: ``logging``-style function taking a format string and arguments.
    """

    def __init__(
        self,
        interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        emit: Callable[..., None] | None = None,
    ) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self.emit = emit or log.info
        self.cancel = threading.Event()
        self._lock = threading.Lock()
        self._steps: dict[str, int] = {}
        self._parents: dict[str, str | None] = {}
        self._started: dict[str, float] = {}
        self._last_emit = -float("inf")

    def _due(self) -> bool:
        now = self.clock()
        if now - self._last_emit >= self.interval_s:
            self._last_emit = now
            return True
        return False

    def phase_start(self, phase: str, parent: str | None, steps: int) -> None:
        with self._lock:
            self._steps[phase] = steps
            self._parents[phase] = parent
            self._started[phase] = self.clock()
            if parent is None:
                self._last_emit = self.clock()
                self.emit("TensorRT build: %s (%d steps)", phase, steps)
            elif self._due():
                self.emit("TensorRT build: %s > %s (%d steps)", parent, phase, steps)

    def step_complete(self, phase: str, step: int) -> bool:
        """Returns False to ask TensorRT to cancel the build (after :attr:`cancel`)."""
        with self._lock:
            if self._due():
                total = self._steps.get(phase, 0)
                self.emit("TensorRT build: %s, step %d/%d", phase, step + 1, total)
        return not self.cancel.is_set()

    def phase_finish(self, phase: str) -> None:
        with self._lock:
            started = self._started.pop(phase, None)
            parent = self._parents.pop(phase, None)
            self._steps.pop(phase, None)
            if parent is None and started is not None:
                self._last_emit = self.clock()
                self.emit("TensorRT build: %s done in %.1f s", phase, self.clock() - started)


def progress_monitor(trt: Any, progress: BuildProgress) -> Any:
    """A ``trt.IProgressMonitor`` forwarding to ``progress`` (never raising into C++)."""

    class Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name, parent_phase, num_steps):
            with contextlib.suppress(Exception):  # a logging failure must not abort a build
                progress.phase_start(phase_name, parent_phase or None, num_steps)

        def step_complete(self, phase_name, step):
            try:
                return progress.step_complete(phase_name, step)
            except Exception:
                return True

        def phase_finish(self, phase_name):
            with contextlib.suppress(Exception):
                progress.phase_finish(phase_name)

    return Monitor()
