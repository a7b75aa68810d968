"""Modules that wrap restorers for deployment: work scale and chains."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from smokeclear.nets.guided_filter import fast_guided_upsample

#: Fast guided upsampling window at the work scale, and its regulariser
#: (He & Sun use r of a few pixels and eps around 1e-4..1e-2 for [0, 1] images).
UPSAMPLE_RADIUS = 2
UPSAMPLE_EPS = 1e-4
#: The scales a restorer can run at: full, half and quarter of the frame.
WORK_SCALES = (1.0, 0.5, 0.25)


class WorkScale(nn.Module):
    """Run ``restorer`` at ``scale`` of the input size (1, 0.5 or 0.25), return full size.

    The input is area-downsampled, restored, and the result carried back to full
    resolution by fast guided upsampling with the full-resolution input as guide,
    so edges and fine texture come from the real frame. ``scale`` 1 is the
    identity wrapper.

    Shape:
        ``(B, 3, H, W)`` -> ``(B, 3, H, W)``, H and W multiples of
        :attr:`input_multiple`.
    """

    def __init__(self, restorer: nn.Module, scale: float) -> None:
        super().__init__()
        if scale not in WORK_SCALES:
            raise ValueError(f"work scale must be 1, 0.5 or 0.25, got {scale}")
        self.restorer = restorer
        self.scale = scale

    @property
    def divisor(self) -> int:
        """The pooling factor, ``1 / scale``."""
        return round(1 / self.scale)

    @property
    def input_multiple(self) -> int:
        return self.restorer.input_multiple * self.divisor

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.divisor == 1:
            return self.restorer(image)
        guide_high = image.float()
        guide_low = F.avg_pool2d(guide_high, self.divisor)
        restored_low = self.restorer(guide_low.to(image.dtype)).float()
        output = fast_guided_upsample(
            guide_low, restored_low, guide_high, UPSAMPLE_RADIUS, UPSAMPLE_EPS
        )
        return output.to(image.dtype)


class RestorerChain(nn.Module):
    """Restorers applied one after another in a single pass (e.g. desmoke -> lowlight).

    Shape:
        ``(B, 3, H, W)`` -> ``(B, 3, H, W)``; H, W multiples of every member's
        ``input_multiple`` (their least common multiple).
    """

    def __init__(self, restorers: list[nn.Module]) -> None:
        super().__init__()
        if not restorers:
            raise ValueError("a chain needs at least one restorer")
        self.restorers = nn.ModuleList(restorers)

    @property
    def input_multiple(self) -> int:
        return math.lcm(*(restorer.input_multiple for restorer in self.restorers))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        for index, restorer in enumerate(self.restorers):
            image = restorer(image)
            if index < len(self.restorers) - 1:
                # Each restorer's contract is an image in [0, 1].
                image = image.clamp(0.0, 1.0)
        return image


def run_padded(module: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """Run ``module`` on an image of any size: replicate-pad to its multiple, crop back.

    Shape:
        ``(B, 3, H, W)`` -> ``(B, 3, H, W)``.
    """
    multiple = module.input_multiple
    height, width = image.shape[-2:]
    pad_bottom, pad_right = -height % multiple, -width % multiple
    if pad_bottom or pad_right:
        image = F.pad(image, (0, pad_right, 0, pad_bottom), mode="replicate")
    return module(image)[..., :height, :width]
