"""The smooth paper's energy (Eq. 1-8) as differentiable, vectorised PyTorch.

``E = E_d + lambda_f E_f + lambda_e E_e`` of an output ``T`` for an input ``I``:

- data term ``E_d``: the mean squared difference of T and I;
- edge-preserving term ``E_e`` (Eq. 4): the mean over the important edge points
  ``B`` of ``(E(T) - E(I))^2``, with the edge response ``E`` of Eq. 3;
- flattening term ``E_f`` (Eq. 5): ``sum_j w_ij |T_i - T_j|^p_i`` over an
  ``h x h`` window, with ``p_i`` and ``w_ij`` chosen per pixel by Eq. 8:
  ``p_large`` (2) with the spatial affinity of Eq. 7 (times ``alpha``) where
  ``E_i(I) < c1`` and ``E_i(T) - E_i(I) > c2``, else ``p_small`` (0.8) with the
  YUV colour affinity of Eq. 6.

Where the paper leaves a detail open, the public Torch/CUDA code
(``fqnchina/ImageSmoothing``: ``EdgeComputation``, ``EdgeDetector`` and
``SmoothAndEdgeTerm``) decides, and its thresholds are kept:

- intensities are 8-bit (``[0, 255]``): the images here are ``[0, 1]`` and are
  scaled by 255 inside, so ``c1 = 20``, ``c2 = 10`` and the energy's size are the
  original's;
- Eq. 3 sums the channels first, as the paper writes it, and takes the
  public code's neighbourhood: the 8-neighbourhood plus the four pixels two
  steps away along the axes, divided by 6; neighbours outside the image count
  0. (The public CUDA kernel appears to read a single colour plane; on a grey
  edge the channel sum is three times that, so ``c1``, ``c2`` and the
  detector's thresholds bite at a third of the contrast they did there);
- colour affinities come from the input's YUV (``U = 0.492 (B - Y)``,
  ``V = 0.877 (R - Y)`` on [0, 1]) and are cut to 0 below 0.3;
- pixels with ``E(I) = 0`` that gain an edge response also get ``p_large``;
- the flattening term skips the important edge points themselves;
- every term is a mean over ``3 H W`` (the paper's Eq. 2 sums the channels);
- the gradient of ``|x|^p`` is the public code's ``p min(|x|^(p-1), 1)`` with
  ``x`` in 8-bit levels: finite at ``x = 0`` for ``p < 1``, and for ``p = 2``
  no steeper than at one level, so the few pixels that switch to the
  ``alpha``-weighted L2 term cannot swamp a step (training with the uncapped L2
  gradient diverged here). The value is that gradient's integral
  (:func:`_penalty`: ``|x|^p`` bent to a straight line past the cap; Huber for
  ``p = 2``), so the energy we report is the one training descends. With
  ``|x|^p`` itself, a pixel switched to L2 next to a real edge cost a thousand
  times an ordinary one, and the energy's value did not follow the descent.

The important edge map ``B`` comes from :func:`important_edges`, the public
code's heuristic detector (the paper defers it to its supplement).

Memory stays ``O(H W)`` whatever the window: the flattening term loops over the
``h^2 - 1`` window offsets with whole-image tensor operations and computes its
own gradient in the same loop (:class:`_Flattening`), instead of keeping
``h^2`` intermediate images for autograd.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from smokeclear.config import bounded

#: Images are scaled to 8-bit levels inside the energy (the public code's units).
LEVELS = 255.0
#: Eq. 3's neighbourhood: the 8-neighbourhood and the four axis pixels at distance 2.
EDGE_OFFSETS = (
    *((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)),
    *((-2, 0), (2, 0), (0, -2), (0, 2)),
)
#: Eq. 3's normaliser in the public code.
EDGE_DIVISOR = 6.0


@dataclass(frozen=True)
class EnergyConfig:
    """The energy's parameters; the defaults are the paper's (Sec. 4)."""

    sigma_color: float = bounded(0.1, 0, 1e6, low_open=True)  # sigma_r, on [0, 1] YUV
    sigma_space: float = bounded(7.0, 0, 1e6, low_open=True)  # sigma_s, pixels
    flatten_weight: float = bounded(1.0, 0, 1e6)  # lambda_f
    edge_weight: float = bounded(0.1, 0, 1e6)  # lambda_e
    large_weight: float = bounded(5.0, 0, 1e6)  # alpha: the L2 term's amplification
    p_large: float = bounded(2.0, 0, 2, low_open=True)
    p_small: float = bounded(0.8, 0, 2, low_open=True)
    c1: float = 20.0  # edge response thresholds, 8-bit units; detail enhancement: c1 = inf
    c2: float = 10.0  #                                       ... and c2 = 0
    window: int = bounded(21, 3, 255)  # h
    color_floor: float = bounded(0.3, 0, 1)  # colour affinities below this count 0 (public code)
    expand_large: int = bounded(
        0, 0, 255
    )  # grow p_large regions by this many pixels (stylisation: 3, a 7x7)

    def __post_init__(self) -> None:
        if self.window < 3 or self.window % 2 == 0:
            raise ValueError(f"window must be odd and >= 3, got {self.window}")
        if self.sigma_color <= 0 or self.sigma_space <= 0:
            raise ValueError("sigma_color and sigma_space must be > 0")
        if not 0 < self.p_small <= 2 or not 0 < self.p_large <= 2:
            raise ValueError("p_small and p_large must be in (0, 2]")
        if self.expand_large < 0:
            raise ValueError(f"expand_large must be >= 0, got {self.expand_large}")


@dataclass(frozen=True)
class EnergyTerms:
    """One evaluation of the energy; each field a scalar tensor (the total is differentiable)."""

    total: torch.Tensor
    data: torch.Tensor
    flatten: torch.Tensor
    edge: torch.Tensor
    large_fraction: torch.Tensor  # share of pixels regularised with p_large


# --------------------------------------------------------------------------- Eq. 3


def _shifted_pair(image: torch.Tensor, dy: int, dx: int) -> tuple[tuple[slice, slice], ...]:
    """Index pairs ``(centre, neighbour)`` over the region where ``i + (dy, dx)`` is inside."""
    height, width = image.shape[-2:]
    rows = slice(max(0, -dy), height - max(0, dy))
    cols = slice(max(0, -dx), width - max(0, dx))
    rows_n = slice(max(0, dy), height - max(0, -dy))
    cols_n = slice(max(0, dx), width - max(0, -dx))
    return (rows, cols), (rows_n, cols_n)


def _pad_to(region: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Zero-pad a centre-region tensor from :func:`_shifted_pair` back to the full size."""
    return F.pad(region, (max(0, -dx), max(0, dx), max(0, -dy), max(0, dy)))


def edge_response(image: torch.Tensor) -> torch.Tensor:
    """Eq. 3, ``E_i = sum_j |sum_c (I_ic - I_jc)|`` (public code's neighbourhood, / 6).

    Shape:
        ``(B, C, H, W)`` in 8-bit levels -> ``(B, 1, H, W)``.
    """
    summed = image.sum(dim=1, keepdim=True)
    response = torch.zeros_like(summed)
    for dy, dx in EDGE_OFFSETS:
        (rows, cols), (rows_n, cols_n) = _shifted_pair(summed, dy, dx)
        difference = (summed[..., rows, cols] - summed[..., rows_n, cols_n]).abs()
        response = response + _pad_to(difference, dy, dx)
    return response / EDGE_DIVISOR


# --------------------------------------------------------------------------- edge map B


@torch.no_grad()
def important_edges(edges: torch.Tensor, window: int = 21, min_length: int = 20) -> torch.Tensor:
    """The public code's heuristic important-edge detector on an edge response.

    A pixel is a candidate when its response stands out from most of its
    ``window x window`` neighbourhood: with ``25 < E < 60``, more than 200 of the
    neighbours are lower by over 20; with ``E >= 60``, by over 30. Candidates on
    fragments no longer than ``min_length`` pixels in every direction are dropped
    (the public code traces chains in four directions; here 8-connected
    components whose bounding box is at most ``min_length`` on both sides).

    Shape:
        ``(B, 1, H, W)`` responses (8-bit units) -> ``(B, 1, H, W)`` bool.
    """
    radius = window // 2
    weak, strong = (edges > 25) & (edges < 60), edges >= 60
    lower_weak = torch.zeros_like(edges)
    lower_strong = torch.zeros_like(edges)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy == 0 and dx == 0:
                continue
            (rows, cols), (rows_n, cols_n) = _shifted_pair(edges, dy, dx)
            drop = edges[..., rows, cols] - edges[..., rows_n, cols_n]
            lower_weak += _pad_to((drop > 20).to(edges.dtype), dy, dx)
            lower_strong += _pad_to((drop > 30).to(edges.dtype), dy, dx)
    candidates = (weak & (lower_weak > 200)) | (strong & (lower_strong > 200))
    masks = candidates.cpu().numpy()
    for index in range(masks.shape[0]):
        masks[index, 0] = _drop_short_fragments(masks[index, 0], min_length)
    return torch.from_numpy(masks).to(edges.device)


def _drop_short_fragments(mask: np.ndarray, min_length: int) -> np.ndarray:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=8
    )
    keep = np.zeros(count, bool)
    keep[1:] = np.maximum(stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT]) > min_length
    return keep[labels]


# --------------------------------------------------------------------------- Eq. 5-8


def rgb_to_yuv(image: torch.Tensor) -> torch.Tensor:
    """Analogue YUV as in the public code: ``Y`` (BT.601), ``0.492 (B - Y)``, ``0.877 (R - Y)``.

    Shape:
        ``(B, 3, H, W)`` RGB -> ``(B, 3, H, W)`` YUV, same units.
    """
    red, green, blue = image[:, 0:1], image[:, 1:2], image[:, 2:3]
    luma = 0.299 * red + 0.587 * green + 0.114 * blue
    return torch.cat([luma, 0.492 * (blue - luma), 0.877 * (red - luma)], dim=1)


@torch.no_grad()
def large_p_mask(
    edges_input: torch.Tensor, edges_output: torch.Tensor, config: EnergyConfig
) -> torch.Tensor:
    """Eq. 8: where ``p_large`` applies (``E(I) < c1`` and ``E(T) - E(I) > c2``).

    Also where the input is perfectly flat (``E(I) = 0``) and the output is not
    (public code), grown by ``expand_large`` pixels when set.

    Shape:
        two ``(B, 1, H, W)`` responses -> ``(B, 1, H, W)`` bool.
    """
    gain = edges_output - edges_input
    large = ((edges_input < config.c1) & (gain > config.c2)) | ((edges_input == 0) & (gain > 0))
    if config.expand_large:
        size = 2 * config.expand_large + 1
        large = F.max_pool2d(large.float(), size, 1, config.expand_large) > 0
    return large


def window_offsets(window: int) -> list[tuple[int, int]]:
    """Every offset of a ``window x window`` neighbourhood but the centre."""
    radius = window // 2
    return [
        (dy, dx)
        for dy in range(-radius, radius + 1)
        for dx in range(-radius, radius + 1)
        if (dy, dx) != (0, 0)
    ]


def half_window_offsets(window: int) -> list[tuple[int, int]]:
    """One offset of each ``+-(dy, dx)`` pair of :func:`window_offsets`."""
    return [(dy, dx) for dy, dx in window_offsets(window) if dy > 0 or (dy == 0 and dx > 0)]


class _Flattening(torch.autograd.Function):
    """``sum_{c, i, j} m_i w_ij |T_ic - T_jc|^p_i`` and its gradient, one window offset at a time.

    ``w_ij`` is ``alpha * exp(-r^2 / 2 sigma_s^2)`` where ``large_i``, else the
    input's YUV affinity (floored); ``m_i`` is 0 on important edge points.

    Both affinities are symmetric and ``|T_i - T_j|`` is too, so each unordered
    pair ``{i, j}`` is visited once, with ``i`` and ``j`` each as the centre: half
    the offsets of the window. The colour affinities are kept from the forward
    pass for the backward pass (one ``(B, 1, H, W)`` map per offset).
    """

    @staticmethod
    def forward(ctx, output, yuv, large, active, config):
        large_active = large.to(output.dtype) * active
        small_active = active - large_active
        color_scale = -1.0 / (2 * config.sigma_color**2)
        total = output.new_zeros(())
        small_weights, large_weights = [], []
        for dy, dx in half_window_offsets(config.window):
            centre, neighbour = _shifted_pair(output, dy, dx)
            color = torch.exp(color_scale * _squared_distance(yuv, centre, neighbour))
            small_weight = (color * (color >= config.color_floor)) * (
                small_active[(..., *centre)] + small_active[(..., *neighbour)]
            )
            large_weight = _spatial_weight(dy, dx, config) * (
                large_active[(..., *centre)] + large_active[(..., *neighbour)]
            )
            small_weights.append(small_weight)
            large_weights.append(large_weight)
            magnitude = (output[(..., *centre)] - output[(..., *neighbour)]).abs()
            total = total + (small_weight * _penalty(magnitude, config.p_small)).sum()
            total = total + (large_weight * _penalty(magnitude, config.p_large)).sum()
        ctx.save_for_backward(output)
        ctx.weights = (small_weights, large_weights)
        ctx.config = config
        return total

    @staticmethod
    def backward(ctx, grad_total):
        (output,) = ctx.saved_tensors
        config = ctx.config
        grad = torch.zeros_like(output)
        offsets = half_window_offsets(config.window)
        for (dy, dx), small_weight, large_weight in zip(offsets, *ctx.weights, strict=True):
            centre, neighbour = _shifted_pair(output, dy, dx)
            difference = output[(..., *centre)] - output[(..., *neighbour)]
            magnitude = difference.abs()
            term = small_weight * _slope(magnitude, config.p_small) + large_weight * _slope(
                magnitude, config.p_large
            )
            term = term * difference.sign()
            grad[(..., *centre)] += term
            grad[(..., *neighbour)] -= term
        ctx.weights = None
        return grad * grad_total, None, None, None, None


def _squared_distance(image: torch.Tensor, centre, neighbour) -> torch.Tensor:
    """``sum_c (x_ic - x_jc)^2`` over the region of one offset, ``(B, 1, h, w)``."""
    difference = image[(..., *centre)] - image[(..., *neighbour)]
    return (difference * difference).sum(1, keepdim=True)


def _spatial_weight(dy: int, dx: int, config: EnergyConfig) -> float:
    """Eq. 7 times ``alpha``: the weight of a ``p_large`` pair at offset ``(dy, dx)``."""
    return config.large_weight * math.exp(-(dy * dy + dx * dx) / (2 * config.sigma_space**2))


def _penalty(magnitude: torch.Tensor, p: float) -> torch.Tensor:
    """``|x|^p`` with the slope capped at its value at one level: the integral of :func:`_slope`.

    For ``p < 1``: ``p |x|`` up to one level, ``|x|^p + p - 1`` beyond. For ``p > 1``:
    ``|x|^p`` up to one level, ``p |x| - (p - 1)`` beyond (``p = 2``: the Huber loss
    with ``delta`` one level). ``|x|^p`` itself for ``p = 1``.
    """
    if p == 1:
        return magnitude
    if p < 1:
        # exp(p log x) is several times faster than pow on a CPU; log(0) = -inf is
        # harmless, the branch is not taken there.
        return torch.where(
            magnitude <= 1, p * magnitude, torch.exp(p * torch.log(magnitude)) + p - 1
        )
    return torch.where(magnitude <= 1, magnitude**p, p * magnitude - (p - 1))


def _slope(magnitude: torch.Tensor, p: float) -> torch.Tensor:
    """The public code's gradient of ``|x|^p`` in ``|x|``: ``p min(|x|^(p-1), 1)``, 8-bit levels."""
    if p == 2:
        return 2 * magnitude.clamp(max=1.0)
    if p == 1:
        return torch.ones_like(magnitude)
    return p * torch.exp((p - 1) * torch.log(magnitude)).clamp(max=1.0)


def energy(
    output: torch.Tensor,
    image: torch.Tensor,
    edge_map: torch.Tensor,
    config: EnergyConfig | None = None,
) -> EnergyTerms:
    """The smoothing energy of ``output`` for ``image`` (Eq. 1), differentiable in ``output``.

    Args:
        output: ``T``, ``(B, 3, H, W)`` RGB on [0, 1].
        image: ``I``, the same shape, the input that was smoothed.
        edge_map: ``B``, ``(B, 1, H, W)`` bool important edge points of ``image``
            (:func:`important_edges` of :func:`edge_response`).
    """
    config = config or EnergyConfig()
    if output.shape != image.shape or output.ndim != 4 or output.shape[1] != 3:
        raise ValueError(f"expected two (B, 3, H, W) images, got {output.shape} and {image.shape}")
    if edge_map.shape != (image.shape[0], 1, *image.shape[2:]):
        raise ValueError(f"edge_map must be (B, 1, H, W), got {tuple(edge_map.shape)}")
    output_levels, image_levels = output * LEVELS, image * LEVELS
    edges_input = edge_response(image_levels)
    edges_output = edge_response(output_levels)
    data_term = (output_levels - image_levels).pow(2).mean()
    important = edge_map.to(output.dtype)
    if bool(edge_map.any()):
        edge_term = ((edges_output - edges_input).pow(2) * important).sum() / important.sum()
    else:
        edge_term = output.new_zeros(())
    large = large_p_mask(edges_input, edges_output.detach(), config)
    flatten_sum = _Flattening.apply(
        output_levels, rgb_to_yuv(image).detach(), large, 1.0 - important, config
    )
    flatten_term = flatten_sum / output.numel()
    total = data_term + config.flatten_weight * flatten_term + config.edge_weight * edge_term
    return EnergyTerms(total, data_term, flatten_term, edge_term, large.float().mean())


def edge_map_of(image: torch.Tensor) -> torch.Tensor:
    """``B`` for ``(B, 3, H, W)`` RGB on [0, 1]: :func:`important_edges` of its response."""
    return important_edges(edge_response(image * LEVELS))


def minimise_directly(
    image: torch.Tensor,
    config: EnergyConfig,
    steps: int,
    learning_rate: float,
    edge_map: torch.Tensor | None = None,
) -> torch.Tensor:
    """The energy minimised by Adam on the output pixels, from ``image`` itself (the
    paper's Sec. 5.1 baseline); ``edge_map`` defaults to :func:`edge_map_of` ``image``."""
    edge_map = edge_map_of(image) if edge_map is None else edge_map
    output = image.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([output], lr=learning_rate)
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        energy(output, image, edge_map, config).total.backward()
        optimizer.step()
    return output.detach()
