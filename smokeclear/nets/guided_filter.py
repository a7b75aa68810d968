"""Guided filter (He, Sun & Tang) and the fast guided upsampling (He & Sun), in FP32.

Box means use average pooling with ``count_include_pad=False``: the window mean
over the pixels inside the image, exactly He's reference ``boxfilter(I, r) ./ N``.
Not cumsum: TensorRT's CumSum has open bugs for multi-axis and reverse use
(onnx-tensorrt #1034, TensorRT #4551). Variances ``E[x^2] - E[x]^2`` cancel badly,
so everything runs in FP32 and the variance is clamped at zero.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def box_mean(image: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a ``(2r+1) x (2r+1)`` window, clipped at the image border.

    Separable: the valid part of a window is a rectangle, so the 2-D mean is a
    vertical mean of horizontal means. Cost is O(r) per pixel, not O(r^2).

    Shape:
        ``(B, C, H, W)`` -> ``(B, C, H, W)``, same dtype.
    """
    if image.ndim != 4:
        raise ValueError(f"box_mean expects (B, C, H, W), got {tuple(image.shape)}")
    if radius < 1:
        return image
    size = 2 * radius + 1
    rows = F.avg_pool2d(image, (size, 1), stride=1, padding=(radius, 0), count_include_pad=False)
    return F.avg_pool2d(rows, (1, size), stride=1, padding=(0, radius), count_include_pad=False)


def guided_filter_coefficients(
    guide: torch.Tensor, source: torch.Tensor, radius: int, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The local linear model ``q = a * I + b`` of the guided filter, per window.

    ``guide`` may have one channel (a grey guide for every source channel) or as
    many channels as ``source`` (each channel guides itself).

    Returns:
        ``(a, b)``, each ``(B, C, H, W)`` float32 with C the source's channels.
    """
    guide, source = guide.float(), source.float()
    mean_guide = box_mean(guide, radius)
    mean_source = box_mean(source, radius)
    variance = (box_mean(guide * guide, radius) - mean_guide * mean_guide).clamp_min(0.0)
    covariance = box_mean(guide * source, radius) - mean_guide * mean_source
    a = covariance / (variance + eps)
    b = mean_source - a * mean_guide
    return a, b


def guided_filter(
    guide: torch.Tensor, source: torch.Tensor, radius: int, eps: float
) -> torch.Tensor:
    """Edge-preserving smoothing of ``source`` steered by ``guide`` (He et al., Alg. 1).

    Args:
        guide: ``(B, 1 or C, H, W)``.
        source: ``(B, C, H, W)``.
        radius: window radius r (window side 2r+1).
        eps: regulariser; larger means smoother (in the units of guide^2).

    Returns:
        ``(B, C, H, W)`` float32.
    """
    _check_pair(guide, source)
    a, b = guided_filter_coefficients(guide, source, radius, eps)
    return box_mean(a, radius) * guide.float() + box_mean(b, radius)


def fast_guided_upsample(
    guide_low: torch.Tensor,
    output_low: torch.Tensor,
    guide_high: torch.Tensor,
    radius: int,
    eps: float,
) -> torch.Tensor:
    """Carry a low-resolution result to full resolution (fast guided filter).

    Fits ``output_low ~ a * guide_low + b`` per window at low resolution, upsamples
    the smoothed ``a`` and ``b`` bilinearly and applies them to the full-resolution
    guide. A restorer whose effect is locally affine in the input (smoke is:
    ``J = (I - A d) / (1 - d)``) keeps its full-resolution detail this way.

    Shape:
        guide_low ``(B, C, h, w)``, output_low ``(B, C, h, w)``,
        guide_high ``(B, C, H, W)`` -> ``(B, C, H, W)`` float32.
    """
    _check_pair(guide_low, output_low)
    a, b = guided_filter_coefficients(guide_low, output_low, radius, eps)
    size = guide_high.shape[-2:]
    a = F.interpolate(box_mean(a, radius), size=size, mode="bilinear", align_corners=False)
    b = F.interpolate(box_mean(b, radius), size=size, mode="bilinear", align_corners=False)
    return a * guide_high.float() + b


def _check_pair(guide: torch.Tensor, source: torch.Tensor) -> None:
    if guide.ndim != 4 or source.ndim != 4:
        raise ValueError(
            f"guided filter expects (B, C, H, W) tensors, got {tuple(guide.shape)} "
            f"and {tuple(source.shape)}"
        )
    if guide.shape[-2:] != source.shape[-2:] or guide.shape[1] not in (1, source.shape[1]):
        raise ValueError(
            f"guide {tuple(guide.shape)} must match source {tuple(source.shape)} in H, W "
            "and have 1 or the same number of channels"
        )
