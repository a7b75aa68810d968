"""Shape checks at the networks' public entry points."""

from __future__ import annotations

import torch


def check_image_batch(image: torch.Tensor, multiple: int) -> None:
    """Raise ValueError unless ``image`` is ``(B, 3, H, W)`` with H, W multiples of ``multiple``."""
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) RGB, got {tuple(image.shape)}")
    height, width = image.shape[-2:]
    if height % multiple or width % multiple:
        raise ValueError(f"H and W must be multiples of {multiple}, got {height}x{width}")
