"""Guided-filter Laplacian pyramid, as in the desmoke paper (Sec. 3.1, Eq. 2).

``B_1 = X``, ``B_n = downsample(guided(B_{n-1}))``, ``D_n = B_n - upsample(B_{n+1})``
and ``D_N = B_N``; upsampling is nearest neighbour. The guided filter is
self-guided per channel (r = 3, eps = 1.0 in the paper). Downsampling keeps every
second pixel of the low-passed image (Burt & Adelson's REDUCE without its kernel:
the guided filter is the low-pass). The decomposition reconstructs X exactly for
any filter, since every D_n is defined against the same upsampling.

Implemented once, in FP32, and used by training, ONNX export and the torch
backend alike.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from smokeclear.nets.guided_filter import guided_filter


def laplacian_pyramid(
    image: torch.Tensor, levels: int, radius: int, eps: float
) -> list[torch.Tensor]:
    """Decompose ``image`` into ``levels`` layers ``[D_1, ..., D_N]``.

    Args:
        image: ``(B, C, H, W)`` with H and W multiples of ``2 ** (levels - 1)``.

    Returns:
        ``levels`` float32 tensors; ``D_n`` is ``(B, C, H / 2^(n-1), W / 2^(n-1))``.
    """
    factor = 2 ** (levels - 1)
    if image.ndim != 4 or image.shape[-2] % factor or image.shape[-1] % factor:
        raise ValueError(
            f"pyramid of {levels} levels needs (B, C, H, W) with H, W multiples of {factor}, "
            f"got {tuple(image.shape)}"
        )
    bases = [image.float()]
    for _ in range(levels - 1):
        smoothed = guided_filter(bases[-1], bases[-1], radius, eps)
        bases.append(smoothed[..., ::2, ::2])
    details = [
        base - F.interpolate(coarser, scale_factor=2.0, mode="nearest")
        for base, coarser in itertools.pairwise(bases)
    ]
    return [*details, bases[-1]]


def reconstruct(layers: list[torch.Tensor]) -> torch.Tensor:
    """Invert :func:`laplacian_pyramid`: ``B_n = D_n + upsample(B_{n+1})``."""
    image = layers[-1]
    for detail in reversed(layers[:-1]):
        image = detail + F.interpolate(image, scale_factor=2.0, mode="nearest")
    return image
