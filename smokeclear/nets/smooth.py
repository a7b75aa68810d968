"""smooth: the unsupervised edge-preserving smoother (smooth paper, Sec. 3.3 and Fig. 4).

Layout, from the paper and its public Torch code (``fqnchina/ImageSmoothing``):

- three 3x3 convs (the third strided by 2) with batch norm and ReLU;
- ten residual blocks at half resolution, each two 3x3 dilated convs with batch
  norm (ReLU between), the block's input added, then ReLU; the dilations of the
  ten blocks are 2, 2, 4, 4, 8, 8, 16, 16, 1, 1 (two blocks share a factor, which
  doubles, except the last two);
- a 4x4 stride-2 deconvolution back to full size and a 3x3 conv, both with batch
  norm and ReLU, and a 1x1 conv to three channels;
- residual image learning: the output is the input plus that 3-channel residual
  (in 8-bit levels, :data:`RESIDUAL_SCALE`).

That is 26 convolutions, 64 channels each in the paper (``width``). The stride-2
path needs even H and W (``input_multiple`` 2).

For deployment :meth:`SmoothNet.fold_batchnorm` folds every batch norm into the
conv before it (eval statistics), so exported graphs carry no BatchNormalization.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from smokeclear.config import bounded
from smokeclear.nets.checks import check_image_batch

#: The residual is predicted in 8-bit levels, as in the public code (whose images
#: are on [0, 255]): the same weights move the output by the same amounts, so the
#: paper's learning rate means the same thing here.
RESIDUAL_SCALE = 1.0 / 255.0
#: The paper's dilations of its ten residual blocks.
PAPER_DILATIONS = (2, 2, 4, 4, 8, 8, 16, 16, 1, 1)


@dataclass(frozen=True)
class SmoothConfig:
    width: int = bounded(64, 1, 1024)  # paper: 64 feature maps in every conv
    dilations: tuple[int, ...] = bounded(PAPER_DILATIONS, 1, 512)  # one per residual block

    def __post_init__(self) -> None:
        if self.width < 1:
            raise ValueError(f"width must be >= 1, got {self.width}")
        if not self.dilations or any(d < 1 for d in self.dilations):
            raise ValueError(
                f"dilations must be a non-empty list of ints >= 1, got {self.dilations}"
            )


def conv_bn_relu(
    in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1, relu: bool = True
) -> nn.Sequential:
    """3x3 conv (padding keeps the size, or halves it with stride 2), batch norm, ReLU."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, 3, stride, padding=dilation, dilation=dilation),
        nn.BatchNorm2d(out_channels),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class DilatedResidualBlock(nn.Module):
    """``relu(x + bn(conv(relu(bn(conv(x))))))`` with both convs dilated by ``dilation``."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn_relu(channels, channels, dilation=dilation),
            conv_bn_relu(channels, channels, dilation=dilation, relu=False),
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + x)


class SmoothNet(nn.Module):
    """Predicts the smooth image ``T = I + residual(I)``.

    Shape:
        ``(B, 3, H, W)`` RGB float in [0, 1], H and W even -> ``(B, 3, H, W)``
        RGB, about [0, 1] (not clamped).
    """

    input_multiple = 2

    def __init__(self, config: SmoothConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or SmoothConfig()
        w = config.width
        self.head = nn.Sequential(
            conv_bn_relu(3, w), conv_bn_relu(w, w), conv_bn_relu(w, w, stride=2)
        )
        self.blocks = nn.Sequential(*(DilatedResidualBlock(w, d) for d in config.dilations))
        self.up = nn.Sequential(
            nn.ConvTranspose2d(w, w, 4, 2, padding=1), nn.BatchNorm2d(w), nn.ReLU(inplace=True)
        )
        self.tail = conv_bn_relu(w, w)
        self.to_rgb = nn.Conv2d(w, 3, 1)
        # Start at the identity (zero residual): a random residual of a few 8-bit
        # levels already creates spurious edges that the L2 term punishes hard.
        nn.init.zeros_(self.to_rgb.weight)
        nn.init.zeros_(self.to_rgb.bias)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        check_image_batch(image, self.input_multiple)
        features = self.blocks(self.head(image))
        return image + self.to_rgb(self.tail(self.up(features))) * RESIDUAL_SCALE

    @torch.no_grad()
    def fold_batchnorm(self) -> SmoothNet:
        """Fold each batch norm into its conv (eval statistics), in place; returns self.

        The module must be in eval mode: folding bakes in the running statistics.
        """
        if self.training:
            raise RuntimeError("fold_batchnorm() needs eval mode (it bakes in running statistics)")
        for sequence in self.modules():
            if not isinstance(sequence, nn.Sequential):
                continue
            for index in range(len(sequence) - 1):
                conv, norm = sequence[index], sequence[index + 1]
                if isinstance(norm, nn.BatchNorm2d) and isinstance(
                    conv, nn.Conv2d | nn.ConvTranspose2d
                ):
                    transpose = isinstance(conv, nn.ConvTranspose2d)
                    sequence[index] = fuse_conv_bn_eval(conv, norm, transpose=transpose)
                    sequence[index + 1] = nn.Identity()
        return self


def detail_magnify(image: torch.Tensor, base: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """Detail magnification: ``base + gain * (image - base)``.

    ``gain`` 1 gives the image back, 0 the smooth base; above 1 the detail layer
    (what smoothing removed) is amplified.

    Shape:
        ``image``, ``base``: ``(B, 3, H, W)``; ``gain``: a scalar tensor or ``(1,)``.
    """
    return base + gain * (image - base)


class DetailMagnify(nn.Module):
    """A smoother in detail mode: ``base + gain * (input - base)`` with ``base = smoother(input)``.

    ``detail_gain`` is a one-element buffer, so a running engine can change it
    between frames (:meth:`set_gain`); exported ONNX graphs take it as a second
    input named ``detail_gain``.

    Shape:
        ``(B, 3, H, W)`` RGB in [0, 1] -> ``(B, 3, H, W)``.
    """

    def __init__(self, smoother: nn.Module, gain: float) -> None:
        super().__init__()
        self.smoother = smoother
        self.register_buffer("detail_gain", torch.tensor([float(gain)]), persistent=False)

    @property
    def input_multiple(self) -> int:
        return self.smoother.input_multiple

    @torch.no_grad()
    def set_gain(self, gain: float) -> None:
        self.detail_gain.fill_(float(gain))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        base = self.smoother(image)
        return detail_magnify(image, base, self.detail_gain.to(base.dtype))
