"""enhance: the DPED image transformation network (enhance paper, Sec. 4 and Fig. 7).

Layout, from the paper and its public TensorFlow code (``aiff22/DPED``, ``models.py``):

- a 9x9 conv with ReLU;
- four residual blocks, each ``relu(norm(conv3x3(x)))`` twice, the block's input
  added after the second ReLU (the public code's order);
- two 3x3 convs with ReLU and a 9x9 conv to RGB;
- a scaled tanh: ``0.58 tanh(x) + 0.5``, so the output spans about [-0.08, 1.08]
  and black and white are reached without saturating the tanh.

Every conv has ``width`` channels (64 in the paper). The paper says batch norm in
the blocks; its public code uses instance norm with a learned scale and shift and
``eps = 1e-3``, which is what this network has (one image's statistics, so a frame
is enhanced the same whatever else is in the batch). Instance norm sums over the
whole frame: it exports as ``InstanceNormalization``, which FP16 models keep in FP32
(``smokeclear.export.fp16.FP32_OP_TYPES``).

No stride: any H and W (``input_multiple`` 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from smokeclear.config import bounded
from smokeclear.nets.checks import check_image_batch

#: The public code's instance-norm epsilon.
NORM_EPS = 1e-3
#: ``TANH_SCALE * tanh(x) + 0.5``: the public code's output.
TANH_SCALE = 0.58


@dataclass(frozen=True)
class EnhanceConfig:
    width: int = bounded(64, 1, 1024)  # paper: 64 channels in every conv
    blocks: int = bounded(4, 0, 64)  # paper: four residual blocks

    def __post_init__(self) -> None:
        if self.width < 1:
            raise ValueError(f"width must be >= 1, got {self.width}")
        if self.blocks < 0:
            raise ValueError(f"blocks must be >= 0, got {self.blocks}")


def conv_relu(in_channels: int, out_channels: int, kernel: int) -> nn.Sequential:
    """A ``kernel x kernel`` conv that keeps the size, then ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2), nn.ReLU(inplace=True)
    )


class ResidualBlock(nn.Module):
    """``x + relu(norm(conv(relu(norm(conv(x))))))``: the skip added after the ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.InstanceNorm2d(channels, eps=NORM_EPS, affine=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.InstanceNorm2d(channels, eps=NORM_EPS, affine=True),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class EnhanceNet(nn.Module):
    """Maps a frame to its enhanced version directly (no global residual, as in DPED).

    Shape:
        ``(B, 3, H, W)`` RGB float in [0, 1] -> ``(B, 3, H, W)`` RGB in about
        [-0.08, 1.08] (not clamped).
    """

    input_multiple = 1

    def __init__(self, config: EnhanceConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or EnhanceConfig()
        w = config.width
        self.head = conv_relu(3, w, 9)
        self.blocks = nn.Sequential(*(ResidualBlock(w) for _ in range(config.blocks)))
        self.tail = nn.Sequential(conv_relu(w, w, 3), conv_relu(w, w, 3))
        self.to_rgb = nn.Conv2d(w, 3, 9, padding=4)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        check_image_batch(image, self.input_multiple)
        features = self.tail(self.blocks(self.head(image)))
        return TANH_SCALE * torch.tanh(self.to_rgb(features)) + 0.5
