"""A folder of images as an offline source, in file-name order."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from smokeclear.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def image_files(folder: Path) -> list[Path]:
    """The image files in ``folder``, by name. Hidden ones are left out: a killed
    restore's ``.NAME.*.partial.png`` temporaries, macOS's ``._NAME.png`` forks."""
    return sorted(
        path
        for path in folder.iterdir()
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and path.name[0] != "."
    )


class ImageFolderSource:
    live = False

    def __init__(self, folder: Path, fps: float = 30.0) -> None:
        self.folder = folder
        self.fps = fps
        self.name = str(folder)
        self.files: list[Path] = []
        self.width = self.height = 0
        self._next = 0

    def open(self) -> None:
        self.files = image_files(self.folder)
        if not self.files:
            raise UserError(
                f"no images in folder {self.folder}",
                f"Put {', '.join(IMAGE_SUFFIXES)} files there.",
            )
        first = self._load(self.files[0])
        self.height, self.width = first.shape[:2]
        self._next = 0

    def read(self) -> np.ndarray | None:
        if self._next >= len(self.files):
            return None
        path = self.files[self._next]
        self._next += 1
        return self._load(path)

    @staticmethod
    def _load(path: Path) -> np.ndarray:
        from smokeclear.stills import StillError, read_still

        try:
            return read_still(path)  # upright: EXIF orientation applied
        except StillError as error:
            raise UserError(
                f"cannot read image {path}: {error.reason}",
                "Replace or remove that file.",
            ) from None

    def close(self) -> None:
        pass
