"""Cameras, network streams and video files through OpenCV (V4L2 and FFmpeg backends)."""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path

import cv2
import numpy as np

from smokeclear.errors import UserError
from smokeclear.stream.sources import SourceLost

log = logging.getLogger(__name__)

#: Network streams: TCP for RTSP (no smeared frames from lost UDP packets), no
#: demuxer buffering (latency), and time-outs so a dead camera does not hang a read.
FFMPEG_LOW_LATENCY = "rtsp_transport;tcp|fflags;nobuffer|flags;low_delay"
TIMEOUT_MS = 5000


class OpenedCapture:
    """A ``cv2.VideoCapture`` whose first frame was read to prove it delivers.

    The first frame is handed out by the first :meth:`read`, so nothing is lost.
    """

    def __init__(self, capture: cv2.VideoCapture, first: np.ndarray) -> None:
        self.capture = capture
        self.height, self.width = first.shape[:2]
        self.fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
        self._first: np.ndarray | None = first

    def read(self) -> np.ndarray | None:
        """The next frame, or None when the capture delivers none."""
        if self._first is not None:
            frame, self._first = self._first, None
            return frame
        ok, frame = self.capture.read()
        return frame if ok and frame is not None else None

    def release(self) -> None:
        self.capture.release()


def open_capture(capture: cv2.VideoCapture, failure: UserError) -> OpenedCapture:
    """Probe ``capture`` with one read; release it and raise ``failure`` if it fails."""
    ok, frame = capture.read() if capture.isOpened() else (False, None)
    if not ok or frame is None:
        capture.release()
        raise failure
    return OpenedCapture(capture, frame)


class _CaptureSource:
    """What the OpenCV sources share: size and rate from the probe, reading, closing."""

    name: str
    width = height = 0
    fps = 0.0
    _opened: OpenedCapture | None = None

    def _use(self, capture: cv2.VideoCapture, failure: UserError) -> None:
        """Read from ``capture`` from now on; ``failure`` when it delivers no first frame."""
        opened = open_capture(capture, failure)
        self._opened = opened
        self.width, self.height, self.fps = opened.width, opened.height, opened.fps

    def _next(self) -> np.ndarray | None:
        return self._opened.read() if self._opened is not None else None

    def _next_live(self, lost: str) -> np.ndarray:
        """The next frame of a live source, which has no end: none is ``SourceLost(lost)``."""
        if self._opened is None:  # never connected (--reconnect forever), or closed
            raise SourceLost(f"{self.name} is not connected")
        frame = self._next()
        if frame is None:
            raise SourceLost(lost)
        return frame

    def close(self) -> None:
        if self._opened is not None:
            self._opened.release()
            self._opened = None


class CameraSource(_CaptureSource):
    """A V4L2 device (``/dev/videoN``) or camera index (``N``). Live.

    Args:
        fourcc: capture format to ask for (``MJPG``, ``YUYV``, ``NV12``); OpenCV
            converts every one of them to BGR. None keeps the driver's default.
    """

    live = True

    def __init__(
        self,
        spec: str,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        fourcc: str | None = None,
    ) -> None:
        self.spec = spec
        self.requested = (width, height, fps)
        self.fourcc = fourcc
        self.name = spec

    def open(self) -> None:
        if self.spec.startswith("/dev/"):
            path = Path(self.spec)
            if not path.exists():
                raise UserError(
                    f"camera {self.spec} not found",
                    "Check the camera is plugged in (ls /dev/video*), or use --source synthetic.",
                )
            if not os.access(path, os.R_OK | os.W_OK):
                raise UserError(
                    f"no permission to open camera {self.spec}",
                    "Add your user to the video group (sudo usermod -aG video $USER) "
                    "and log in again.",
                )
        target: int | str = int(self.spec) if self.spec.isdigit() else self.spec
        backend = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
        capture = cv2.VideoCapture(target, backend)
        if not capture.isOpened():
            raise UserError(
                f"cannot open camera {self.spec}",
                "Check that no other program is using it, and that it is a video capture device.",
            )
        if self.fourcc:
            capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.fourcc))
        width, height, fps = self.requested
        if width and height:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        if fps:
            capture.set(cv2.CAP_PROP_FPS, fps)
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not a backlog
        self._use(
            capture,
            UserError(
                f"camera {self.spec} opened but delivers no frames",
                "Check the cable and the capture format (--camera-format).",
            ),
        )

    def read(self) -> np.ndarray | None:
        return self._next_live(f"camera {self.spec} stopped delivering frames")


class NetworkSource(_CaptureSource):
    """An RTSP / RTMP / HTTP / UDP stream through FFmpeg. Live."""

    live = True

    def __init__(self, url: str) -> None:
        self.url = url
        self.name = redact_credentials(url)

    def open(self) -> None:
        # FFmpeg reads its options from the environment when the capture is created.
        os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", FFMPEG_LOW_LATENCY)
        capture = cv2.VideoCapture(
            self.url,
            cv2.CAP_FFMPEG,
            [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                TIMEOUT_MS,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                TIMEOUT_MS,
            ],
        )
        self._use(
            capture,
            UserError(
                f"cannot receive the stream {self.name}",
                "Check the URL, the network and that the stream is running (try it with ffplay).",
            ),
        )

    def read(self) -> np.ndarray | None:
        return self._next_live(f"stream {self.name} stopped")


class VideoFileSource(_CaptureSource):
    """A video file: offline, every frame in order.

    A file that ends before the frame count its header declares (cut off while it
    was copied or recorded) is read to its end with a warning: frames read against
    frames declared.
    """

    live = False

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)
        self.frame_count = 0  # declared by the container; 0 when it does not say
        self.frames_read = 0
        self._ended = False

    def open(self) -> None:
        if not os.access(self.path, os.R_OK):
            raise UserError(
                f"cannot read {self.path} (permission denied)", "Check the file's permissions."
            )
        self._use(
            cv2.VideoCapture(str(self.path)),
            UserError(
                f"cannot decode video {self.path}",
                "Check it is a video file FFmpeg can read (try ffprobe on it).",
            ),
        )
        self.frame_count = int(self._opened.capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)

    def read(self) -> np.ndarray | None:
        frame = self._next()
        if frame is not None:
            self.frames_read += 1
        elif not self._ended:
            self._ended = True
            if self.frames_read < self.frame_count:
                log.warning(
                    "%s ended after %d of the %d frames it declares: the file is truncated",
                    self.path,
                    self.frames_read,
                    self.frame_count,
                )
        return frame


def redact_credentials(url: str) -> str:
    """``rtsp://user:secret@host/x`` -> ``rtsp://***@host/x`` for logs."""
    return re.sub(r"(://)[^/@]+@", r"\1***@", url)
