"""Where presented views go: an OpenCV window, a video recorder, or nowhere.

Sinks receive finished views, ``(H, W, 3)`` uint8 BGR, from the presenter. The
recorder encodes in its own thread behind a bounded queue, so a slow disk never
stalls the display; it is finalised on close, which the graph guarantees on
end of stream, Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from smokeclear.errors import UserError
from smokeclear.stream.queues import END_OF_STREAM, BoundedQueue, Overflow

log = logging.getLogger(__name__)

#: Container suffix -> FourCC that OpenCV's FFmpeg backend writes there.
CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "mp4v"}


class Sink(Protocol):
    name: str

    def start(self, width: int, height: int, fps: float) -> None: ...

    def write(self, view: np.ndarray) -> None: ...

    def pump(self) -> bool:
        """Service the sink between frames; False when the user asked to stop."""
        ...

    def close(self) -> None: ...


class NullSink:
    """Discards views (headless runs, benchmarks); counts them."""

    name = "null"

    def __init__(self) -> None:
        self.frames = 0

    def start(self, width: int, height: int, fps: float) -> None:
        pass

    def write(self, view: np.ndarray) -> None:
        self.frames += 1

    def pump(self) -> bool:
        return True

    def close(self) -> None:
        pass


def display_available() -> bool:
    """Whether an OpenCV window can open here (a desktop session on Linux)."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


#: What ``cv2.waitKey(1) & 0xFF`` returns when no key was pressed.
NO_KEY = 0xFF
STOP_KEYS = (ord("q"), 27)  # q, Esc


class WindowSink:
    """An OpenCV window. ``q`` or Esc, or closing the window, stops the run.

    Args:
        on_key: called with every other key pressed (its code, 0-254), e.g.
            :meth:`smokeclear.stream.controls.LiveControls.handle_key`. It runs in the
            display loop: an error in it is logged, never raised.
    """

    name = "window"

    def __init__(
        self, title: str = "smokeclear", on_key: Callable[[int], object] | None = None
    ) -> None:
        self.title = title
        self.on_key = on_key
        self._open = False

    def start(self, width: int, height: int, fps: float) -> None:
        if not display_available():
            raise UserError(
                "no display to open a window on (DISPLAY is not set)",
                "Use --display none, or run from a desktop session.",
            )
        cv2.namedWindow(self.title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO)
        cv2.resizeWindow(self.title, width, height)
        self._open = True

    def write(self, view: np.ndarray) -> None:
        cv2.imshow(self.title, view)

    def pump(self) -> bool:
        key = cv2.waitKey(1) & 0xFF
        if key in STOP_KEYS:
            return False
        if key != NO_KEY and self.on_key is not None:
            try:
                self.on_key(key)
            except Exception as error:  # a control must never take the display down
                log.warning("key %r: %s", chr(key), error)
        try:
            return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1
        except cv2.error:
            return False

    def close(self) -> None:
        if self._open:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
            self._open = False


class VideoRecorder:
    """Encodes views to a video file in a background thread.

    Args:
        path: output file; the suffix picks the codec (:data:`CODECS`).
        lossless_queue: block instead of dropping when the encoder falls behind
            (offline runs); live runs drop the newest view and count it.
    """

    name = "recorder"

    def __init__(self, path: Path, lossless_queue: bool = False) -> None:
        self.path = path
        suffix = path.suffix.lower()
        if suffix not in CODECS:
            raise UserError(
                f"cannot record to {path.name}: unknown video container",
                f"Use one of: {', '.join(CODECS)}.",
            )
        if not path.parent.is_dir():
            raise UserError(
                f"cannot record to {path}: folder {path.parent} does not exist",
                "Create the folder or choose another --record path.",
            )
        self._lossless = lossless_queue
        self._queue: BoundedQueue[np.ndarray] | None = None
        self._thread: threading.Thread | None = None
        self._writer: cv2.VideoWriter | None = None
        self.frames_written = 0
        self.error: str | None = None

    @property
    def dropped(self) -> int:
        return self._queue.dropped if self._queue else 0

    def start(self, width: int, height: int, fps: float) -> None:
        fourcc = cv2.VideoWriter_fourcc(*CODECS[self.path.suffix.lower()])
        writer = cv2.VideoWriter(str(self.path), fourcc, max(1.0, fps), (width, height))
        if not writer.isOpened():
            raise UserError(
                f"cannot open {self.path} for writing",
                "Check the folder is writable and the container is supported.",
            )
        self._writer = writer
        capacity = max(8, round(2 * fps))
        policy = Overflow.BLOCK if self._lossless else Overflow.DROP_NEWEST
        self._queue = BoundedQueue("presenter->recorder", capacity, policy)
        self._thread = threading.Thread(target=self._encode, name="recorder", daemon=True)
        self._thread.start()

    def write(self, view: np.ndarray) -> None:
        assert self._queue is not None, "recorder used before start()"
        if self._queue.put(view) is False and self._queue.dropped in (1, 100, 1000):
            log.warning(
                "recorder is falling behind: %d views dropped from %s so far",
                self._queue.dropped,
                self.path.name,
            )

    def pump(self) -> bool:
        return True

    def _encode(self) -> None:
        assert self._queue is not None and self._writer is not None
        while True:
            view = self._queue.get()
            if view is END_OF_STREAM:
                break
            try:
                self._writer.write(view)
                self.frames_written += 1
            except cv2.error as error:  # keep draining, report at close
                self.error = str(error)

    def close(self) -> None:
        """Flush queued views and finalise the file (writes the container index)."""
        if self._queue is None:
            return
        self._queue.close()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        log.info(
            "recorded %d frames to %s%s",
            self.frames_written,
            self.path,
            f" ({self.dropped} dropped)" if self.dropped else "",
        )
        if self.error:
            log.error("recording %s had encoder errors: %s", self.path, self.error)
        self._queue = None
