"""Where presented views go: an OpenCV window, a video recorder, or nowhere.

Sinks receive finished views, ``(H, W, 3)`` uint8 BGR, from the presenter. The
recorder encodes in its own thread behind a bounded queue, so a slow disk never
stalls the display; it is finalised on close, which the graph guarantees on
end of stream, Ctrl-C and SIGTERM, and its files stay playable after a kill.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from smokeclear.errors import UserError
from smokeclear.stream.queues import END_OF_STREAM, BoundedQueue, Overflow
from smokeclear.stream.recording import VideoWriter, check_container, write_errors

log = logging.getLogger(__name__)


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
        fullscreen: fill the monitor the window opens on (an OR display).
    """

    name = "window"

    def __init__(
        self,
        title: str = "smokeclear",
        on_key: Callable[[int], object] | None = None,
        fullscreen: bool = False,
    ) -> None:
        self.title = title
        self.on_key = on_key
        self.fullscreen = fullscreen
        self._open = False

    def start(self, width: int, height: int, fps: float) -> None:
        if not display_available():
            raise UserError(
                "no display to open a window on (DISPLAY is not set)",
                "Use --display none, or run from a desktop session.",
            )
        cv2.namedWindow(self.title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO)
        cv2.resizeWindow(self.title, width, height)
        if self.fullscreen:
            cv2.setWindowProperty(self.title, cv2.WND_PROP_FULLSCREEN, cv2.WINDOW_FULLSCREEN)
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
    """Encodes views to crash-safe video files (:mod:`smokeclear.stream.recording`) in
    a background thread.

    A failed write (a full disk) or a disk below ``min_free_gb`` stops the recording,
    never the run: the file is finalised, :attr:`alert` says why for the view and
    :attr:`errors` counts it.

    Args:
        path: output file (.mp4, .m4v, .mov or .mkv). With segments, ``case.mp4``
            becomes ``case-0001.mp4``, ``case-0002.mp4``, ... in the same folder.
        lossless_queue: block instead of dropping when the encoder falls behind
            (offline runs); live runs drop the newest view and count it.
        segment_seconds: close the file and start the next after this many seconds
            of video; None: one file.
        min_free_gb: stop recording when the folder's disk has less free space than
            this many GB (checked about once a second); None: no check.
        make_room: called (on the recorder's thread) when the disk is below
            ``min_free_gb``, before the recording is stopped: e.g. delete the oldest
            recordings. The recording goes on if there is room afterwards.
    """

    name = "recorder"

    def __init__(
        self,
        path: Path,
        lossless_queue: bool = False,
        segment_seconds: float | None = None,
        min_free_gb: float | None = None,
        make_room: Callable[[], None] | None = None,
    ) -> None:
        check_container(path)
        if not path.parent.is_dir():
            raise UserError(
                f"cannot record to {path}: folder {path.parent} does not exist",
                "Create the folder or choose another --record path.",
            )
        if segment_seconds is not None and not (
            math.isfinite(segment_seconds) and segment_seconds >= 1
        ):
            raise UserError(
                f"--record-segment-seconds {segment_seconds:g} is out of range",
                "Give the length of each file in seconds, at least 1 (e.g. 600).",
            )
        if min_free_gb is not None and not (math.isfinite(min_free_gb) and min_free_gb >= 0):
            raise UserError(
                f"--min-free-gb {min_free_gb:g} is out of range",
                "Give the free space to keep in GB, 0 or more (e.g. 2).",
            )
        self.path = path
        self.segment_seconds = segment_seconds
        self.min_free_gb = min_free_gb
        self.make_room = make_room
        self._lossless = lossless_queue
        self._queue: BoundedQueue[np.ndarray] | None = None
        self._thread: threading.Thread | None = None
        self._writer: VideoWriter | None = None
        self._format: tuple[int, int, float] = (0, 0, 0.0)
        self._next_disk_check = 0.0
        self.files: list[Path] = []  # closed files, in order (a partial name if it failed)
        self.frames_written = 0
        self.errors = 0  # recordings stopped by a failed write or a full disk
        self.alert: str | None = None  # shown on the view once the recording stopped

    @property
    def dropped(self) -> int:
        return self._queue.dropped if self._queue else 0

    @property
    def writing(self) -> Path | None:
        """The (partial) file being written now; None once stopped or closed."""
        writer = self._writer
        return writer.partial if writer is not None else None

    def segment_path(self, index: int) -> Path:
        """The file of segment ``index`` (from 1), or the path itself without segments."""
        if self.segment_seconds is None:
            return self.path
        return self.path.with_name(f"{self.path.stem}-{index:04d}{self.path.suffix}")

    def start(self, width: int, height: int, fps: float) -> None:
        self._format = (width, height, fps)
        self._writer = self._open(1)
        log.info(
            "recording %s (%s): written as %s until it ends; if the run is killed, "
            "that file plays up to its last second",
            self._writer.path,
            self._writer.codec,
            self._writer.partial.name,
        )
        capacity = max(8, round(2 * fps))
        policy = Overflow.BLOCK if self._lossless else Overflow.DROP_NEWEST
        self._queue = BoundedQueue("presenter->recorder", capacity, policy)
        self._thread = threading.Thread(target=self._encode, name="recorder", daemon=True)
        self._thread.start()

    def _open(self, index: int) -> VideoWriter:
        width, height, fps = self._format
        return VideoWriter(self.segment_path(index), width, height, fps, live=not self._lossless)

    def write(self, view: np.ndarray) -> None:
        assert self._queue is not None, "recorder used before start()"
        if self.alert is not None:
            return  # stopped: the view keeps running without it
        if self._queue.put(view) is False and self._queue.dropped in (1, 100, 1000):
            log.warning(
                "recorder is falling behind: %d views dropped from %s so far",
                self._queue.dropped,
                self.path.name,
            )

    def pump(self) -> bool:
        return True

    def _encode(self) -> None:
        assert self._queue is not None
        fps = self._format[2]
        per_segment = round(self.segment_seconds * fps) if self.segment_seconds else 0
        errors = write_errors()
        while True:
            view = self._queue.get()
            if view is END_OF_STREAM:
                break
            if self._writer is None:
                continue  # stopped: drain the queue
            try:
                if per_segment and self._writer.frames >= per_segment:
                    self._finish()
                    self._writer = self._open(len(self.files) + 1)
                if self._disk_low():
                    continue
                self._writer.write(view)
                self.frames_written += 1
            except (*errors, ValueError, UserError) as error:
                full = getattr(error, "errno", None) == errno.ENOSPC
                self._stop("REC STOPPED: disk full" if full else "REC STOPPED: write error", error)
        if self._writer is not None:
            self._finish()

    def _disk_low(self) -> bool:
        """Stop recording when the disk has less than ``min_free_gb`` free (once a second)."""
        if self.min_free_gb is None or time.monotonic() < self._next_disk_check:
            return False
        self._next_disk_check = time.monotonic() + 1.0
        free_gb = shutil.disk_usage(self.path.parent).free / 1e9
        if free_gb < self.min_free_gb and self.make_room is not None:
            try:
                self.make_room()
            except OSError as error:
                log.warning("could not make room in %s: %s", self.path.parent, error)
            free_gb = shutil.disk_usage(self.path.parent).free / 1e9
        if free_gb >= self.min_free_gb:
            return False
        self._stop(
            "REC STOPPED: disk almost full",
            f"{free_gb:.2f} GB free in {self.path.parent}, "
            f"below --min-free-gb {self.min_free_gb:g}",
        )
        return True

    def _stop(self, alert: str, reason: object) -> None:
        """End the recording on a failure; the view goes on with ``alert`` on it."""
        self.errors += 1
        self.alert = alert
        writer = self._writer
        self._writer = None
        where = writer.close() if writer is not None else self.path
        if writer is not None:
            self.files.append(where)
        log.error(
            "%s: %s; recording stopped after %d frames, kept in %s (playable)",
            alert,
            reason,
            self.frames_written,
            where,
        )

    def _finish(self) -> None:
        assert self._writer is not None
        where = self._writer.close()
        self.files.append(where)
        if where != self._writer.path:
            self.errors += 1
            log.error("%s could not be finalised: what was written stays in it", where)
        self._writer = None

    def close(self) -> None:
        """Flush queued views and finalise the file."""
        if self._queue is None:
            return
        self._queue.close()
        if self._thread is not None:
            self._thread.join(timeout=30)
        log.info(
            "recorded %d frames to %s%s",
            self.frames_written,
            ", ".join(str(path) for path in self.files) or self.path,
            f" ({self.dropped} dropped)" if self.dropped else "",
        )
        self._queue = None
