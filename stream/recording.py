"""Crash-safe video files through PyAV: what both ``--record`` and ``restore`` write.

``cv2.VideoWriter`` writes an MP4 index (moov) only when it is released, so a killed
process leaves a file nothing can open. Here FFmpeg's muxers are driven directly:

* .mp4 / .m4v / .mov: fragmented MP4 (``frag_keyframe+empty_moov+default_base_moof``)
  with a keyframe every second, each fragment flushed to the file as it closes;
* .mkv: Matroska, one cluster a second, flushed likewise.

A SIGKILL or power loss therefore costs at most the fragment being written (about a
second). A file is written to ``NAME.partial.SUFFIX`` in the same folder and renamed
to ``NAME.SUFFIX`` when it is complete, so a failed run never leaves a half file
under the final name; the partial file itself stays playable.

Frames are ``(H, W, 3)`` uint8 BGR. Sizes are kept exactly: H.264 in 4:2:0 needs
even sizes, so an odd size is encoded in 4:4:4 (no row or column dropped).
"""

from __future__ import annotations

import functools
import logging
import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from smokeclear.errors import UserError

log = logging.getLogger(__name__)

#: Video container suffix -> FFmpeg muxer, and the muxer options that keep it playable
#: up to its last flushed fragment after a kill.
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
FRAGMENTED_MP4 = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"}
MATROSKA = {"cluster_time_limit": "1000", "flush_packets": "1"}


def write_errors() -> tuple[type[BaseException], ...]:
    """What a failed write raises: the OS's errors (ENOSPC, EIO, ...) and FFmpeg's."""
    import av

    return (OSError, av.error.FFmpegError)


def check_container(path: Path, what: str = "record") -> None:
    """UserError unless ``path`` names a container that survives a kill."""
    suffix = path.suffix.lower()
    if suffix == ".avi":
        raise UserError(
            f"cannot {what} to {path.name}: an AVI file is unreadable if the run is killed "
            "before it ends",
            f"Use {path.with_suffix('.mkv').name} or {path.with_suffix('.mp4').name}.",
        )
    if suffix not in CONTAINERS:
        raise UserError(
            f"cannot {what} to {path.name}: unknown video container",
            f"Use one of: {', '.join(CONTAINERS)}.",
        )


def partial_path(path: Path) -> Path:
    """Where ``path`` is written until it is complete: ``out.mp4`` -> ``out.partial.mp4``."""
    return path.with_name(f"{path.stem}.partial{path.suffix}")


@functools.cache
def video_codec() -> str:
    """H.264 (libx264) where this FFmpeg has it, else MPEG-4 part 2; said once."""
    import av

    try:
        av.codec.Codec("libx264", "w")
        return "libx264"
    except Exception:  # not built in: PyAV raises different errors by version
        log.warning("libx264 is not in this FFmpeg build: recording MPEG-4 part 2 (mpeg4)")
        return "mpeg4"


class CheckedFile:
    """The file FFmpeg writes through, keeping the first OS error.

    FFmpeg's muxers note a failed write (ENOSPC) in the I/O context and carry on, so
    ``mux`` does not raise; :meth:`check` after each packet makes the first failed
    write an ``OSError`` at once.
    """

    def __init__(self, path: Path) -> None:
        self._raw = open(path, "wb", buffering=0)  # noqa: SIM115 (closed by close())
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self._raw.write(data)
        except OSError as error:
            self.error = self.error or error
            raise

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def check(self) -> None:
        """Raise the first failed write's OSError, if any."""
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """Flush the file to the disk (a power cut after this keeps it), then close it."""
        try:
            os.fsync(self._raw.fileno())
        except OSError as error:
            self.error = self.error or error
        try:
            self._raw.close()
        except OSError as error:
            self.error = self.error or error


class VideoWriter:
    """One video file, written as frames arrive and playable after a kill.

    Args:
        path: the final file; it is written at :func:`partial_path` until :meth:`close`.
        width, height: frame size in pixels, kept exactly.
        fps: frame rate; a keyframe (and a flushed fragment) every second of it.
        live: tune the encoder for latency (no look-ahead) rather than compression.

    :meth:`write` raises ``OSError`` or ``av.error.FFmpegError`` when the file cannot
    be written (a full disk): the caller stops and calls :meth:`close`.
    """

    def __init__(self, path: Path, width: int, height: int, fps: float, live: bool = False):
        import av

        check_container(path)
        self.path = path
        self.partial = partial_path(path)
        self.size = (width, height)
        self.frames = 0
        muxer = CONTAINERS[path.suffix.lower()]
        options = MATROSKA if muxer == "matroska" else FRAGMENTED_MP4
        rate = Fraction(max(1.0, fps)).limit_denominator(1001)
        codec = video_codec()
        try:
            self._file = CheckedFile(self.partial)
            self._container = av.open(self._file, "w", format=muxer, options=options)
        except write_errors() as error:
            raise UserError(
                f"cannot open {self.partial} for writing: {error}",
                "Check that the folder is writable and has free space.",
            ) from None
        stream = self._container.add_stream(codec, rate=rate)
        stream.width, stream.height = width, height
        odd = width % 2 or height % 2
        stream.pix_fmt = "yuv444p" if codec == "libx264" and odd else "yuv420p"
        stream.gop_size = max(1, round(float(rate)))  # a keyframe, so a fragment, a second
        if codec == "libx264":
            # Offline, a short look-ahead: frames inside the encoder are lost to a kill too.
            # Live, the encoder shares the machine with the restorer: the cheapest preset
            # on one thread (at crf 18 the file is bigger, not worse).
            stream.options = {"crf": "18"} | (
                {"preset": "ultrafast", "tune": "zerolatency", "threads": "1"}
                if live
                else {"preset": "fast", "rc-lookahead": "10"}
            )
        else:
            stream.bit_rate = 8 * width * height * max(1, round(float(rate))) // 10
        self._stream = stream
        self.codec = codec

    def write(self, frame: np.ndarray) -> None:
        """Encode one ``(H, W, 3)`` uint8 BGR frame of the writer's size."""
        import av

        if frame.shape != (self.size[1], self.size[0], 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"frame {frame.shape} {frame.dtype} does not match the recording's "
                f"{self.size[0]}x{self.size[1]} uint8 BGR"
            )
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="bgr24")
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)
            self._file.check()
        self.frames += 1

    def close(self, complete: bool = True) -> Path:
        """Flush the encoder and finalise the file; returns where it is.

        ``complete``: rename it to its final name; otherwise it stays at its partial
        name (a failed write). A new error while flushing is logged (one the caller
        already caught is not): what was already written stays playable.
        """
        errors = write_errors()
        failed_before = self._file.error is not None  # the caller reports that one
        failure: BaseException | None = None
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
                self._file.check()
        except errors as error:
            failure = error
        try:
            self._container.close()  # also after a failed flush: it frees the encoder
            self._file.check()
        except errors as error:
            failure = failure or error
        self._file.close()
        if failure is not None:
            complete = False
            if not failed_before:
                log.error("could not finalise %s: %s", self.partial, self._file.error or failure)
        if not complete or not self.partial.exists():
            return self.partial
        os.replace(self.partial, self.path)
        sync_folder(self.path.parent)
        return self.path


def sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX: fsync the directory); best effort."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows cannot open a directory; its renames need no sync here
        return
    try:
        os.fsync(descriptor)
    except OSError as error:
        log.warning("could not sync %s after finalising a recording: %s", folder, error)
    finally:
        os.close(descriptor)
