"""Frame sources and the one function that opens a ``--source`` string.

``--source`` accepts:

- ``synthetic`` or ``synthetic:SEED``: the built-in laparoscopic scene (live);
- ``/dev/videoN`` or a camera index ``N``: a V4L2 / OpenCV camera (live);
- ``rtsp://``, ``rtmp://``, ``http(s)://``, ``udp://``, ``tcp://`` URLs: network
  streams through FFmpeg (live);
- a video file (offline: every frame, in order);
- a folder of images (offline, sorted by name).

Live sources are real-time: the graph keeps only the newest frame. Offline
sources are processed completely: nothing is dropped.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

import numpy as np

from smokeclear.errors import FrameFormatError, UserError


class SourceLost(RuntimeError):
    """A live source stopped delivering (camera unplugged, stream dropped)."""


class Source(Protocol):
    name: str
    live: bool  # real-time (keep newest) vs offline (every frame)
    fps: float  # native frame rate, 0.0 when unknown
    width: int  # native size, valid after open()
    height: int

    def open(self) -> None:
        """Connect. Raises UserError with the fix when it cannot."""

    def read(self) -> np.ndarray | None:
        """The next frame (any format :func:`to_bgr8` accepts); None at end of stream.

        Live sources block until the next frame is due and raise SourceLost when
        the device or stream goes away.
        """

    def close(self) -> None: ...


URL_PATTERN = re.compile(r"^(rtsp|rtsps|rtmp|http|https|udp|tcp|srt)://", re.IGNORECASE)


def open_source(
    spec: str,
    width: int | None = None,
    height: int | None = None,
    fps: float | None = None,
    camera_format: str | None = None,
) -> Source:
    """Create and open the source named by ``spec`` (see the module docstring).

    ``width``, ``height`` and ``fps`` are requests: the synthetic scene renders at
    them, cameras are asked for them; the graph resizes whatever arrives.
    ``camera_format`` (``MJPG``, ``YUYV``, ``NV12``) is asked of cameras only.
    """
    source = create_source(spec, width, height, fps, camera_format)
    source.open()
    return source


def create_source(
    spec: str,
    width: int | None = None,
    height: int | None = None,
    fps: float | None = None,
    camera_format: str | None = None,
) -> Source:
    """The source named by ``spec``, not yet opened (arguments as :func:`open_source`).

    Raises:
        UserError: ``spec`` names nothing (a missing file, a bad synthetic seed).
    """
    from smokeclear.stream.sources.folder import ImageFolderSource
    from smokeclear.stream.sources.opencv import CameraSource, NetworkSource, VideoFileSource
    from smokeclear.stream.sources.synthetic import SyntheticSource

    source: Source
    if spec == "synthetic" or spec.startswith("synthetic:"):
        seed_text = spec.partition(":")[2] or "0"
        if not seed_text.isdigit():
            raise UserError(
                f"bad synthetic seed {seed_text!r}",
                "Use --source synthetic or synthetic:SEED with an integer seed.",
            )
        source = SyntheticSource(width or 1280, height or 720, fps or 30.0, int(seed_text))
    elif spec.isdigit() or spec.startswith("/dev/video"):
        source = CameraSource(spec, width, height, fps, fourcc=camera_format)
    elif URL_PATTERN.match(spec):
        source = NetworkSource(spec)
    elif Path(spec).is_dir():
        source = ImageFolderSource(Path(spec), fps or 30.0)
    elif Path(spec).exists():
        source = VideoFileSource(Path(spec))
    else:
        raise UserError(
            f"source {spec!r} not found",
            "Give a camera (/dev/video0), a video file, an image folder, an rtsp:// URL "
            "or `synthetic`.",
        )
    return source


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Normalise a frame to ``(H, W, 3)`` uint8 BGR.

    Accepts grey ``(H, W)`` / ``(H, W, 1)``, BGR ``(H, W, 3)``, BGRA ``(H, W, 4)``,
    in uint8, uint16 (top 8 bits kept) or finite float in [0, 1].

    Raises:
        FrameFormatError: anything else.
    """
    import cv2

    if not isinstance(image, np.ndarray):
        raise FrameFormatError(f"frame is a {type(image).__name__}, not an image array")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        if not np.isfinite(image).all():
            raise FrameFormatError("frame holds non-finite values (NaN or inf)")
        image = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise FrameFormatError(f"frame has unsupported pixel type {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    raise FrameFormatError(f"frame has unsupported shape {image.shape}")
