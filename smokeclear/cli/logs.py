"""What the command line prints on stderr: ``smokeclear: ...`` lines, and no native noise."""

from __future__ import annotations

import logging
import os
import sys


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prefix = {
            logging.WARNING: "warning: ",
            logging.ERROR: "error: ",
            logging.CRITICAL: "error: ",
        }.get(record.levelno, "")
        return f"smokeclear: {prefix}{record.getMessage()}"


def configure_logging(verbose: bool) -> logging.Handler:
    """Log to stderr as ``smokeclear: ...``; returns the handler so main() can remove it."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    logger = logging.getLogger("smokeclear")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    return handler


def quiet_native_logs(verbose: bool) -> None:
    """OpenCV and FFmpeg print their own lines on stderr ("moov atom not found"); the
    user gets ours instead. Read when cv2 loads, so this runs before any cv2 import."""
    os.environ.setdefault("OPENCV_LOG_LEVEL", "INFO" if verbose else "ERROR")
    # FFmpeg's av_log levels: -8 quiet, 24 warning.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "24" if verbose else "-8")
