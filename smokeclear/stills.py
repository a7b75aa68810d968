"""Read and write stills faithfully: depth, alpha and orientation kept, no half files.

The engines take 8-bit BGR. A still of any other kind is restored like this:

- **Depth.** 8-bit BGR goes through unchanged. For 16-bit (and float TIFF) the
  restorer sees the top 8 bits, and only its *change* is carried back, in float,
  onto the full-depth input: ``out = in + scale * (restored8 - in8)``, with
  ``scale`` 257 for 16-bit and 1/255 for float. Gradations the restorer leaves
  alone survive bit for bit; the output is written at the input depth (16-bit
  PNG/TIFF; a float still is written as float TIFF, or 16-bit PNG).
- **Alpha** is split off before, passed through unchanged, and put back after:
  RGBA in, RGBA out, same alpha.
- **Grey** is restored as three equal channels, and the change is brought back to
  one channel with the BT.601 luma weights (cv2's BGR2GRAY): grey in, grey out.
- **EXIF orientation** is applied on read, so the pixels are upright as a viewer
  shows them, and written without the tag (cv2's IMREAD_UNCHANGED, the only flag
  that keeps alpha, ignores the tag; Pillow reads it).

Writes go to a hidden temporary name in the target's folder, renamed into place
with ``os.replace`` once complete: a failed or interrupted run never leaves a
half file under the final name.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from smokeclear.errors import UserError
from smokeclear.stream.sources import to_bgr8

EXIF_ORIENTATION = 0x0112

#: Full-depth units per 8-bit step, by input dtype.
_DEPTH_SCALE = {np.dtype(np.uint8): 1.0, np.dtype(np.uint16): 257.0, np.dtype(np.float32): 1 / 255}


class StillError(Exception):
    """One still that cannot be restored; ``reason`` is short ("empty file")."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path.name}: {reason}")
        self.path = path
        self.reason = reason


def read_still(path: Path) -> np.ndarray:
    """The upright pixels of ``path`` at their own depth.

    Returns:
        ``(H, W)`` grey, ``(H, W, 3)`` BGR or ``(H, W, 4)`` BGRA; uint8, uint16 or
        float32, EXIF orientation applied.

    Raises:
        StillError: empty, not an image, or of a kind no engine takes.
    """
    try:
        size = path.stat().st_size
    except OSError as error:
        raise StillError(path, f"cannot be read ({error.strerror})") from None
    if size == 0:
        raise StillError(path, "empty file")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise StillError(path, _why_unreadable(path))
    if image.dtype == np.float64:
        image = image.astype(np.float32)
    if image.dtype not in _DEPTH_SCALE:
        raise StillError(path, f"unsupported pixel type {image.dtype} (use 8- or 16-bit)")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
        raise StillError(path, f"unsupported shape {image.shape} (use grey, RGB or RGBA)")
    return np.ascontiguousarray(_upright(image, _orientation(path)))


def restore_still(image: np.ndarray, restore8: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply ``restore8`` (``(H, W, 3)`` uint8 BGR in and out) to a still of any
    kind :func:`read_still` returns; the result has the input's shape and dtype."""
    alpha = image[:, :, 3] if image.ndim == 3 and image.shape[2] == 4 else None
    colour = image[:, :, :3] if alpha is not None else image
    scale = _DEPTH_SCALE[image.dtype]
    in8 = to_bgr8(colour)  # the top 8 bits
    restored8 = restore8(in8)
    if colour.ndim == 3 and image.dtype == np.uint8:
        out = restored8  # the engine's own output, bit for bit
    else:
        change = restored8.astype(np.float32) - in8.astype(np.float32)
        if colour.ndim == 2:
            change = cv2.cvtColor(change, cv2.COLOR_BGR2GRAY)
        out = _at_depth(colour.astype(np.float32) + np.float32(scale) * change, image.dtype)
    if alpha is not None:
        out = np.dstack([out, alpha])
    return out


def write_still(path: Path, image: np.ndarray) -> None:
    """Write ``image`` to ``path`` (.png or .tif/.tiff) via a temporary name and a rename.

    A float image is written as float TIFF, or 16-bit PNG (PNG holds no float).

    Raises:
        UserError: the folder is missing, read-only, full or not writable.
    """
    if image.dtype == np.float32 and path.suffix.lower() == ".png":
        image = _at_depth(image * np.float32(65535), np.dtype(np.uint16))
    ok, encoded = cv2.imencode(path.suffix.lower(), image)
    if not ok:
        raise UserError(f"cannot encode {path.name}", "Write stills as .png or .tif.")
    try:
        descriptor, temporary = tempfile.mkstemp(
            prefix=f".{path.stem}.", suffix=f".partial{path.suffix}", dir=path.parent
        )
    except OSError as error:
        raise _unwritable(path.parent, error) from None
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(encoded.tobytes())
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes it 0o600
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise _unwritable(path.parent, error) from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def check_writable_folder(folder: Path) -> None:
    """UserError, before any work, when stills cannot be created in ``folder``."""
    try:
        descriptor, probe = tempfile.mkstemp(prefix=".smokeclear-probe.", dir=folder)
    except OSError as error:
        raise _unwritable(folder, error) from None
    os.close(descriptor)
    os.unlink(probe)


def _unwritable(folder: Path, error: OSError) -> UserError:
    return UserError(
        f"cannot write into {folder}: {error.strerror or error}",
        "Choose a folder you can write to, on a disk with free space.",
    )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _why_unreadable(path: Path) -> str:
    with path.open("rb") as file:
        head = file.read(512)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "not a readable image"
    if all(c.isprintable() or c.isspace() for c in text):
        return f"text, not a {path.suffix.lstrip('.').upper()} image"
    return "not a readable image"


def _orientation(path: Path) -> int:
    """The EXIF orientation tag (1-8) of ``path``; 1 (upright) when it has none."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            value = image.getexif().get(EXIF_ORIENTATION, 1)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError):
        return 1  # cv2 read it and Pillow cannot: no tag Pillow could give
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _upright(image: np.ndarray, orientation: int) -> np.ndarray:
    """Undo EXIF ``orientation`` (as Pillow's ImageOps.exif_transpose does)."""
    transposed = image.swapaxes(0, 1)
    return {
        1: image,
        2: image[:, ::-1],  # mirrored left-right
        3: image[::-1, ::-1],  # rotated 180
        4: image[::-1],  # mirrored top-bottom
        5: transposed,  # mirrored along the main diagonal
        6: transposed[:, ::-1],  # rotated 90 counter-clockwise: turn it clockwise
        7: transposed[::-1, ::-1],  # mirrored along the anti-diagonal
        8: transposed[::-1],  # rotated 90 clockwise: turn it counter-clockwise
    }[orientation]


def _at_depth(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Float values in ``dtype``'s units, rounded and clipped to its range."""
    if dtype == np.float32:
        return values.astype(np.float32)
    top = np.iinfo(dtype).max
    return np.clip(np.rint(values), 0, top).astype(dtype)
