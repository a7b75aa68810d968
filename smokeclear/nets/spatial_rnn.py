"""The spatially variant linear RNN of the lowlight edge stream, as a doubling scan.

The lowlight paper (Eq. 3) runs ``h[k] = g[k] * x[k] + p[k] * h[k-1]`` with
``h[-1] = 0`` along every row and column, in four directions, and merges the four
hidden maps by an elementwise max ("node-wise max pooling").

A loop over pixels is unusable and an ONNX Loop is slow, so the recurrence runs as
a Hillis-Steele scan. Each position holds the affine map ``h -> A * h + B``
(start ``A = p``, ``B = g * x``); step ``s`` composes every map with the one
``2**s`` positions earlier, ``(A1, B1) then (A2, B2) = (A2 * A1, A2 * B1 + B2)``.
After ``ceil(log2(L))`` steps each position holds the composition back to the
start of its line and, because ``h[-1] = 0``, ``h = B``.

Only Pad (constant), Slice (constant starts/ends), Mul, Add and Max reach the
graph. Not cumsum/cumprod: TensorRT's CumSum has open bugs (see guided_filter.py)
and a cumprod of ``p`` underflows after a few dozen pixels, so ``h`` cannot be
recovered as ``cumprod(p) * cumsum(g x / cumprod(p))``. The pairwise form never
divides; with ``p`` in [0, 1] ``A`` only shrinks and ``B`` stays bounded by the
sum of ``|g x|``, which keeps FP16 safe.

Step count. On a concrete length the scan does ``ceil(log2(L))`` steps. Under
``torch.export`` with a dynamic H or W the length is a SymInt: the step count
would need a guard on its value, which torch.export refuses for a dynamic
dimension, so the caller passes ``max_length`` (the largest side the exported
graph promises to accept) and the scan does ``ceil(log2(max_length))`` steps.
Steps whose shift reaches past the line are harmless: the shifted-in padding is
the identity map ``(A = 1, B = 0)``, so ``A * 1 = A`` and ``A * 0 + B = B``
exactly, bit for bit. The shift pads first and slices with a constant negative
end (``pad(t, (s, 0))[..., :-s]``), which keeps length L even when ``s >= L``, so
no slice bound depends on the symbolic length. A graph exported with
``max_length`` is exact for lines up to ``2**ceil(log2(max_length))``; longer
lines silently lose the contribution of pixels more than that far back, so the
eager path raises when ``L > max_length`` to catch this before export.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Direction order of the four blocks in ``four_direction_scan``'s g and p.
DIRECTIONS = ("left_to_right", "right_to_left", "top_to_bottom", "bottom_to_top")
#: (dim, reverse) per entry of ``DIRECTIONS``.
_DIRECTION_AXES = ((3, False), (3, True), (2, False), (2, True))


def linear_scan(
    x: torch.Tensor,
    g: torch.Tensor,
    p: torch.Tensor,
    dim: int,
    reverse: bool = False,
    max_length: int | None = None,
) -> torch.Tensor:
    """``h[k] = g[k] * x[k] + p[k] * h[k-1]``, ``h[-1] = 0``, along ``dim`` in log2 steps.

    Args:
        x: the sequence values.
        g: weight of the current pixel, any real value.
        p: weight of the previous hidden state, expected in [0, 1] (the caller
            squashes it, e.g. with a sigmoid); not checked.
        dim: 2 scans columns (top to bottom), 3 scans rows (left to right);
            -2 and -1 are accepted.
        reverse: scan from the end (bottom to top, right to left): ``h[k]``
            depends on ``h[k+1]``.
        max_length: needed only when the scanned length is symbolic (dynamic
            export); the scan then does ``ceil(log2(max_length))`` steps. In eager
            mode a line longer than ``max_length`` raises ValueError.

    Shape:
        x, g, p ``(B, C, H, W)``, same shape and dtype -> h ``(B, C, H, W)``, that dtype.
    """
    _check_same_shape(x=x, g=g, p=p)
    dim = _normalise_dim(dim)
    steps = _step_count(x.shape[dim], max_length)
    coefficient, offset = p, g * x
    for step in range(steps):
        shift = 1 << step
        previous_offset = _shift(offset, dim, shift, reverse, fill=0.0)
        if step + 1 < steps:  # the last step's A is never read
            previous_coefficient = _shift(coefficient, dim, shift, reverse, fill=1.0)
            offset = coefficient * previous_offset + offset
            coefficient = coefficient * previous_coefficient
        else:
            offset = coefficient * previous_offset + offset
    return offset


def sequential_scan(
    x: torch.Tensor, g: torch.Tensor, p: torch.Tensor, dim: int, reverse: bool = False
) -> torch.Tensor:
    """The same recurrence as ``linear_scan``, one position at a time (reference only).

    A Python loop over the scanned length: slow, and unrolled into L nodes on
    export. Tests and benchmarks compare ``linear_scan`` against it.

    Shape:
        x, g, p ``(B, C, H, W)`` -> h ``(B, C, H, W)``.
    """
    _check_same_shape(x=x, g=g, p=p)
    dim = _normalise_dim(dim)
    length = x.shape[dim]
    order = range(length - 1, -1, -1) if reverse else range(length)
    hidden = torch.zeros_like(x.select(dim, 0))
    outputs: list[torch.Tensor] = [hidden] * length
    for k in order:
        hidden = g.select(dim, k) * x.select(dim, k) + p.select(dim, k) * hidden
        outputs[k] = hidden
    return torch.stack(outputs, dim=dim)


def four_direction_scan(
    x: torch.Tensor, g: torch.Tensor, p: torch.Tensor, max_length: int | None = None
) -> torch.Tensor:
    """The edge stream's RNN: four directional scans merged by an elementwise max.

    The weight network predicts one g and one p map per direction and channel;
    each direction scans the same ``x``, and the merged output keeps, per
    pixel and channel, the direction with the largest response (the paper's
    node-wise max pooling).

    Args:
        x: the multi-scale features.
        g: pixel weights, four direction blocks of C channels each, in the
            order of ``DIRECTIONS``: left->right, right->left, top->bottom,
            bottom->top (``g.view(B, 4, C, H, W)[:, d]`` is direction d).
        p: recurrence weights, same layout as g, expected in [0, 1].
        max_length: see ``linear_scan``; bounds both H and W.

    Shape:
        x ``(B, C, H, W)``; g, p ``(B, 4C, H, W)`` -> ``(B, C, H, W)``, x's dtype.
    """
    _check_four_direction_shapes(x, g, p)
    g_blocks = torch.chunk(g, 4, dim=1)
    p_blocks = torch.chunk(p, 4, dim=1)
    merged: torch.Tensor | None = None
    for (dim, reverse), g_direction, p_direction in zip(
        _DIRECTION_AXES, g_blocks, p_blocks, strict=True
    ):
        hidden = linear_scan(x, g_direction, p_direction, dim, reverse, max_length)
        merged = hidden if merged is None else torch.maximum(merged, hidden)
    assert merged is not None
    return merged


class SpatialRNN(nn.Module):
    """Four-direction spatially variant linear RNN (no parameters of its own).

    g and p come from the caller's weight network; this module only scans.
    ``max_length`` bounds the frame side an exported graph handles exactly
    (4096 -> 12 doubling steps per direction).
    """

    def __init__(self, max_length: int = 4096) -> None:
        super().__init__()
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        self.max_length = max_length

    def forward(self, x: torch.Tensor, g: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """Shape: x ``(B, C, H, W)``; g, p ``(B, 4C, H, W)`` -> ``(B, C, H, W)``."""
        return four_direction_scan(x, g, p, self.max_length)

    def extra_repr(self) -> str:
        return f"max_length={self.max_length}"


def _step_count(length: int | torch.SymInt, max_length: int | None) -> int:
    if isinstance(length, int):
        if max_length is not None and length > max_length:
            raise ValueError(
                f"scan length {length} exceeds max_length={max_length}; an exported graph "
                "would be wrong for it: raise max_length"
            )
        return (length - 1).bit_length()  # ceil(log2(length)), 0 for length 1
    if max_length is None:
        raise ValueError(
            "the scanned length is symbolic (dynamic export): pass max_length, the "
            "largest side the exported graph must handle"
        )
    return (max_length - 1).bit_length()


def _shift(tensor: torch.Tensor, dim: int, shift: int, reverse: bool, fill: float) -> torch.Tensor:
    """``tensor`` moved ``shift`` places along ``dim``, ``fill`` shifted in, same length.

    Forward scans read the element ``shift`` places earlier, reverse scans the
    one ``shift`` places later. Padding before slicing keeps every bound constant
    and valid even when ``shift`` exceeds the (possibly symbolic) length.
    """
    before, after = (0, shift) if reverse else (shift, 0)
    padding = (before, after) if dim == 3 else (0, 0, before, after)
    padded = F.pad(tensor, padding, value=fill)
    keep = slice(shift, None) if reverse else slice(None, -shift)
    return padded[:, :, :, keep] if dim == 3 else padded[:, :, keep, :]


def _normalise_dim(dim: int) -> int:
    if dim not in (2, 3, -2, -1):
        raise ValueError(f"dim must be 2 (vertical) or 3 (horizontal), got {dim}")
    return dim % 4


def _check_same_shape(**tensors: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    reference = next(iter(tensors.values()))
    if reference.ndim != 4:
        raise ValueError(f"spatial RNN expects (B, C, H, W) tensors, got {shapes}")
    if any(t.shape != reference.shape for t in tensors.values()):
        raise ValueError(f"x, g and p must have the same (B, C, H, W) shape, got {shapes}")
    if any(t.dtype != reference.dtype for t in tensors.values()):
        dtypes = {name: t.dtype for name, t in tensors.items()}
        raise ValueError(f"x, g and p must share one dtype, got {dtypes}")


def _check_four_direction_shapes(x: torch.Tensor, g: torch.Tensor, p: torch.Tensor) -> None:
    if x.ndim != 4 or g.ndim != 4 or p.ndim != 4:
        raise ValueError(
            "four_direction_scan expects 4-D tensors, got "
            f"x {tuple(x.shape)}, g {tuple(g.shape)}, p {tuple(p.shape)}"
        )
    batch, channels, height, width = x.shape
    expected = (batch, 4 * channels, height, width)
    if g.shape != expected or p.shape != expected:
        raise ValueError(
            f"g and p must be (B, 4C, H, W) = {expected} for x {tuple(x.shape)} "
            f"(four direction blocks of C channels), got g {tuple(g.shape)}, p {tuple(p.shape)}"
        )
