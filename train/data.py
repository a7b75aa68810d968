"""Clean frames for synthetic degradations, and their train / validation / test split.

Clean frames come from the synthetic laparoscopic scene (always available, and its
seeds are split) and from folders of clean images the user points to (split by a
hash of the file name, so the split is the same on every machine and run).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import cv2
import numpy as np
import torch

from smokeclear.errors import UserError
from smokeclear.synthetic.scene import LaparoscopicScene

if TYPE_CHECKING:
    from smokeclear.train.options import TrainOptions

Split = Literal["train", "val", "test"]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

#: Scene seeds per split: disjoint, so test frames are never trained on.
SCENE_SEEDS: dict[Split, tuple[int, ...]] = {
    "train": tuple(range(0, 8)),
    "val": (1000, 1001),
    "test": (2000, 2001, 2002, 2003),
}

#: Training frames of the scene are rendered at this size, then cropped to patches.
SCENE_TRAIN_SIZE = (320, 240)
#: Evaluation frames: 16:9, multiples of 32 (every restorer's multiple so far), close
#: to the desmoke paper's 512 x 512 area.
SCENE_EVAL_SIZE = (512, 288)
EVAL_FRAMES_PER_SCENE = 10
#: Validation pairs do not depend on the training seed, so runs compare.
VALIDATION_SEED = 999_999


def frame_sources(options: TrainOptions, photos: int) -> dict[str, Any]:
    """The training frames' provenance for a recipe's ``data_recipe`` metadata.

    Args:
        options: the recipe's training options (``clean_dirs``, ``init_weights``).
        photos: how many clean photos were loaded for training.
    """
    return {
        "scene_seeds": list(SCENE_SEEDS["train"]),
        "clean_dirs": [str(p) for p in options.clean_dirs],
        "clean_photos": photos,
        "init_weights": str(options.init_weights) if options.init_weights else None,
        "split": "sha1(file name) % 10: 0-1 test, 2 validation, 3-9 train",
    }


def split_of(name: str) -> Split:
    """Deterministic split of a file name: 20 % test, 10 % validation, 70 % train."""
    bucket = int(hashlib.sha1(name.encode()).hexdigest(), 16) % 10
    return "test" if bucket < 2 else "val" if bucket == 2 else "train"


def image_files(folder: Path) -> list[Path]:
    """Sorted image files directly inside ``folder``, with a user-facing error if none."""
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder", "Pass a folder of clean images.")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(
            f"no images in {folder}",
            f"Put {', '.join(IMAGE_SUFFIXES)} files in it, or leave the option out.",
        )
    return files


def read_rgb(path: Path) -> np.ndarray:
    """An image file as ``(H, W, 3)`` float32 RGB in [0, 1]."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UserError(f"cannot read image {path}", "Check that the file is a readable image.")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def load_clean_folders(folders: list[Path], split: Split) -> list[np.ndarray]:
    """All images of ``split`` in ``folders``, as float32 RGB in [0, 1]."""
    return [
        read_rgb(path)
        for folder in folders
        for path in image_files(folder)
        if split_of(path.name) == split
    ]


def scenes_for(split: Split, width: int, height: int) -> list[LaparoscopicScene]:
    return [LaparoscopicScene(width, height, seed=seed) for seed in SCENE_SEEDS[split]]


def bgr8_to_rgb(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 BGR -> float32 RGB in [0, 1]."""
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def random_crop(
    images: tuple[np.ndarray, ...],
    size: int,
    rng: np.random.Generator,
    scale_range: tuple[float, float] = (1.0, 1.0),
) -> tuple[np.ndarray, ...]:
    """The same random ``size x size`` crop of every image (upscaled first if smaller).

    ``scale_range`` rescales the images by a factor drawn from it before cropping, so
    a network sees its scenes at the sizes the runtime's work scales give it (0.5:
    everything half as big). The default leaves them as they are.
    """
    low, high = scale_range
    if (low, high) != (1.0, 1.0):
        images = rescale(images, float(rng.uniform(low, high)))
    height, width = images[0].shape[:2]
    if min(height, width) < size:
        scale = size / min(height, width)
        new_size = (max(size, round(width * scale)), max(size, round(height * scale)))
        images = tuple(
            cv2.resize(image, new_size, interpolation=cv2.INTER_LINEAR) for image in images
        )
        height, width = images[0].shape[:2]
    top = int(rng.integers(0, height - size + 1))
    left = int(rng.integers(0, width - size + 1))
    return tuple(image[top : top + size, left : left + size] for image in images)


def rescale(images: tuple[np.ndarray, ...], factor: float) -> tuple[np.ndarray, ...]:
    """Every image resized by ``factor`` (area averaging when shrinking, as a camera's
    downscale does; bilinear when enlarging)."""
    if factor == 1.0:
        return images
    height, width = images[0].shape[:2]
    new_size = (max(1, round(width * factor)), max(1, round(height * factor)))
    interpolation = cv2.INTER_AREA if factor < 1.0 else cv2.INTER_LINEAR
    return tuple(cv2.resize(image, new_size, interpolation=interpolation) for image in images)


def find_pair_folders(
    root: Path, degraded_names: tuple[str, ...], clean_names: tuple[str, ...]
) -> tuple[Path, Path]:
    """The degraded and clean image folders of a paired data set at ``root``.

    Each is the first of its candidate names that exists under ``root``
    (e.g. LOL's ``low/`` and ``high/``).
    """
    if not root.is_dir():
        raise UserError(
            f"{root} is not a folder",
            f"Pass a folder holding {degraded_names[0]}/ and {clean_names[0]}/.",
        )

    def pick(names: tuple[str, ...]) -> Path:
        for name in names:
            if (root / name).is_dir():
                return root / name
        raise UserError(
            f"{root} has no {names[0]}/ folder (also accepted: {', '.join(names[1:])})",
            f"Put the degraded images in {degraded_names[0]}/ and the clean ones in "
            f"{clean_names[0]}/, with matching file names.",
        )

    return pick(degraded_names), pick(clean_names)


def load_pairs(
    root: Path, degraded_names: tuple[str, ...], clean_names: tuple[str, ...]
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(name, degraded, clean)`` float32 RGB for every file name in both folders of ``root``."""
    degraded_dir, clean_dir = find_pair_folders(root, degraded_names, clean_names)
    targets = {path.name: path for path in image_files(clean_dir)}
    pairs = []
    for path in image_files(degraded_dir):
        if path.name not in targets:
            continue
        degraded, clean = read_rgb(path), read_rgb(targets[path.name])
        if degraded.shape != clean.shape:
            raise UserError(
                f"{path.name}: {degraded_dir.name}/ {degraded.shape[:2]} and "
                f"{clean_dir.name}/ {clean.shape[:2]} differ in size",
                "Give aligned pairs of the same size.",
            )
        pairs.append((path.name, degraded, clean))
    if not pairs:
        raise UserError(
            f"no matching file names in {degraded_dir} and {clean_dir}",
            "Name each degraded image like its clean image.",
        )
    return pairs


def training_frames(
    clean_dirs: Sequence[Path],
    pairs_dirs: Sequence[Path],
    load_pairs: Callable[[Path], list[tuple[str, np.ndarray, np.ndarray]]],
) -> tuple[list[np.ndarray], list[LaparoscopicScene], list[tuple[np.ndarray, np.ndarray]]]:
    """A paired recipe's training sources: the training split of the clean-photo
    folders, the training-seed scenes and the ``(degraded, clean)`` real pairs that
    ``load_pairs`` reads from each of ``pairs_dirs``."""
    photos = load_clean_folders(list(clean_dirs), "train")
    scenes = scenes_for("train", *SCENE_TRAIN_SIZE)
    pairs = [(bad, good) for folder in pairs_dirs for _, bad, good in load_pairs(folder)]
    return photos, scenes, pairs


def clean_patch(
    photos: list[np.ndarray],
    scenes: list[LaparoscopicScene],
    size: int,
    scene_fraction: float,
    rng: np.random.Generator,
    scale_range: tuple[float, float] = (1.0, 1.0),
) -> np.ndarray:
    """A random ``size x size`` crop of a random scene frame (``scene_fraction`` of the
    time, always without photos) or clean photo, rescaled first by a factor drawn from
    ``scale_range`` (see :func:`random_crop`); ``(size, size, 3)`` float32 RGB."""
    if not photos or rng.random() < scene_fraction:
        scene = scenes[int(rng.integers(len(scenes)))]
        image = bgr8_to_rgb(scene.render(int(rng.integers(0, 20 * 60 * 30))).clean)
    else:
        image = photos[int(rng.integers(len(photos)))]
    (patch,) = random_crop((image,), size, rng, scale_range)
    return np.ascontiguousarray(patch)


def oriented_pair_batch(
    pairs: list[tuple[np.ndarray, np.ndarray]], rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(degraded, clean)`` batches of ``pairs``, each pair turned by a random multiple
    of 90 degrees and mirrored half the time (both images alike)."""
    turns = rng.integers(0, 4, len(pairs))
    flips = rng.random(len(pairs)) < 0.5
    oriented = [
        [_orient(image, turn, flip) for image in pair]
        for pair, turn, flip in zip(pairs, turns, flips, strict=True)
    ]
    return to_batch([pair[0] for pair in oriented]), to_batch([pair[1] for pair in oriented])


def _orient(image: np.ndarray, turns: int, flip: bool) -> np.ndarray:
    image = np.rot90(image, int(turns))
    return image[:, ::-1] if flip else image


def real_or_synthetic_batch(
    real_pairs: list[tuple[np.ndarray, np.ndarray]],
    config: Any,
    size: int,
    rng: np.random.Generator,
    synthetic: Callable[[], list[tuple[np.ndarray, np.ndarray]]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """An oriented ``(degraded, clean)`` batch of ``size``: crops of the real pairs with
    probability ``config.real_fraction`` where there are any, else the pairs ``synthetic()``
    draws."""
    if real_pairs and rng.random() < config.real_fraction:
        pairs = random_pair_crops(real_pairs, config.patch_size, size, rng)
    else:
        pairs = synthetic()
    return oriented_pair_batch(pairs, rng)


def random_pair_crops(
    pairs: list[tuple[np.ndarray, np.ndarray]], size: int, count: int, rng: np.random.Generator
) -> list[tuple[np.ndarray, ...]]:
    """``count`` aligned ``size x size`` crops, each from a pair drawn at random."""
    return [random_crop(pairs[int(rng.integers(len(pairs)))], size, rng) for _ in range(count)]


def to_batch(images: list[np.ndarray]) -> torch.Tensor:
    """``(H, W, 3)`` images -> one ``(B, 3, H, W)`` float32 tensor."""
    array = np.stack(images).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
