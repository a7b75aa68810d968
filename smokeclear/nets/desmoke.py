"""desmoke: encoder-decoder with Laplacian-pyramid inputs (desmoke paper, Sec. 3).

Layout, after the paper's Fig. 2:

- the guided-filter Laplacian pyramid of the input (6 levels, r = 3, eps = 1.0);
- an encoder of "Conv -> BN -> ReLU" blocks over six resolutions joined by five
  max-pool downsamplings; the smoky image X enters level 1 and the detail layers
  D2..D5 are concatenated to the pooled features at levels 2..5, to give back the
  detail that pooling loses;
- a decoder of five 2x2 transposed-conv upsamplings, each followed by a skip
  concatenation and a block that is deeper than its encoder counterpart;
- a 1x1 conv to RGB, added to the input: the network outputs the smoke-free
  image as ``X + correction`` (global residual learning). The paper outputs the
  image from the last conv; with the same network, data and seed the residual form
  reached 22.9 dB validation PSNR after 300 Adam steps where the direct form
  reached 18.6 dB (2-core CPU, batch 8, 128 px patches), so it trains in the time
  we have. Either way no physical model or transmission map is estimated.

With ``smoke_gate`` (ours, not in the paper) a 1x1 conv on the last decoder
features predicts a map ``g`` in (0, 1), and the correction is ``g`` times the
RGB head's: ``X + g * correction``. Where ``g`` is 0 the output is the input
exactly, so a frame without smoke can pass unchanged however the rest of the
network would move it; training's identity patches teach ``g`` where that is.

Density gate (ours, not in the paper, on by default): smoke lifts the darkest colour
channel towards the smoke's own grey, so where the input's regional dark channel
(the minimum over colour of the frame averaged over 8x8 blocks, eroded and smoothed
over 3x3 blocks) is below ``pass_through_density[0]`` the output is the input, and
the correction fades in up to ``pass_through_density[1]``. A region whose darkest
channel shows no smoke is left alone whatever the network would do to it, and a local
plume still gets the whole correction where it lies. On the validation split
(0.1, 0.2) raised the shipped weights' do-no-harm by 3.3 dB for 0.04 dB of the
paper's light clouds (docs/desmoke.md).

Max pooling is used without indices (TensorRT rejects MaxPool index outputs).
Channel counts double per level from ``width`` and stop at ``max_channels``;
``width`` 8 is the real-time preset shipped with the package.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from smokeclear.config import bounded
from smokeclear.nets.checks import check_image_batch
from smokeclear.nets.gates import check_band, ramp
from smokeclear.nets.pyramid import laplacian_pyramid

#: The smoke gate's starting bias: sigmoid(4) = 0.98, the correction almost whole.
GATE_OPEN_BIAS = 4.0
#: The density gate's block: the dark channel is taken of 8x8-pixel means.
DENSITY_BLOCK = 8


@dataclass(frozen=True)
class DesmokeConfig:
    width: int = bounded(8, 1, 1024)
    max_channels: int = bounded(64, 1, 1024)
    encoder_convs: int = bounded(2, 1, 16)
    decoder_convs: int = bounded(3, 1, 16)
    levels: int = bounded(6, 3, 10)
    guided_radius: int = bounded(3, 0, 64)
    guided_eps: float = bounded(1.0, 0, 1e6, low_open=True)
    smoke_gate: bool = False  # ours: X + g * correction, g a predicted map in (0, 1)
    #: regional dark channel below which the input passes through, and from which the
    #: whole correction applies (the density gate; equal values: off)
    pass_through_density: tuple[float, float] = bounded((0.1, 0.2), 0, 1)

    def __post_init__(self) -> None:
        if self.width < 1 or self.max_channels < self.width:
            raise ValueError(
                f"need 1 <= width <= max_channels, got width {self.width}, "
                f"max_channels {self.max_channels}"
            )
        if self.levels < 3:
            raise ValueError(f"levels must be >= 3 (the paper uses 6), got {self.levels}")
        if self.encoder_convs < 1 or self.decoder_convs < 1:
            raise ValueError("encoder_convs and decoder_convs must be >= 1")
        check_band("pass_through_density", self.pass_through_density)


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def conv_block(in_channels: int, out_channels: int, depth: int) -> nn.Sequential:
    layers = [conv_bn_relu(in_channels, out_channels)]
    layers += [conv_bn_relu(out_channels, out_channels) for _ in range(depth - 1)]
    return nn.Sequential(*layers)


def regional_dark_channel(image: torch.Tensor, block: int = DENSITY_BLOCK) -> torch.Tensor:
    """The density gate's smoke estimate: ``(B, 3, H, W)`` -> ``(B, 1, H, W)`` FP32.

    The minimum over colour of ``block x block`` means, eroded and then box-smoothed
    over 3x3 blocks, resized back bilinearly. H and W must be multiples of ``block``.
    """
    # in FP32 whatever the network's dtype: means over many pixels
    small = F.avg_pool2d(image.float(), block)
    dark = small.amin(dim=1, keepdim=True)
    dark = -F.max_pool2d(-dark, 3, stride=1, padding=1)
    dark = F.avg_pool2d(dark, 3, stride=1, padding=1, count_include_pad=False)
    return F.interpolate(dark, scale_factor=float(block), mode="bilinear", align_corners=False)


class DesmokeNet(nn.Module):
    """Laplacian-pyramid U-Net.

    Shape:
        ``(B, 3, H, W)`` RGB float in [0, 1], H and W multiples of
        :attr:`input_multiple` -> ``(B, 3, H, W)`` RGB float, about [0, 1]
        (not clamped: clamp when converting to pixels).
    """

    def __init__(self, config: DesmokeConfig) -> None:
        super().__init__()
        self.config = config
        levels = config.levels
        channels = [min(config.width * 2**level, config.max_channels) for level in range(levels)]
        # Detail layers D2..D_{N-1} go to encoder levels 2..N-1 (D2..D5 for N = 6).
        self.detail_levels = tuple(range(1, levels - 1))
        self.encoder = nn.ModuleList()
        for level in range(levels):
            in_channels = 3 if level == 0 else channels[level - 1]
            if level in self.detail_levels:
                in_channels += 3
            self.encoder.append(conv_block(in_channels, channels[level], config.encoder_convs))
        self.upsample = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for level in reversed(range(levels - 1)):
            self.upsample.append(nn.ConvTranspose2d(channels[level + 1], channels[level], 2, 2))
            self.decoder.append(
                conv_block(2 * channels[level], channels[level], config.decoder_convs)
            )
        self.to_rgb = nn.Conv2d(channels[0], 3, 1)
        self.to_gate = nn.Conv2d(channels[0], 1, 1) if config.smoke_gate else None

    @property
    def input_multiple(self) -> int:
        multiple = 2 ** (self.config.levels - 1)
        low, high = self.config.pass_through_density
        return max(multiple, DENSITY_BLOCK) if high > low else multiple

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        check_image_batch(image, self.input_multiple)
        config = self.config
        # The pyramid runs in FP32 whatever the network's dtype (guided-filter variance).
        details = laplacian_pyramid(image, config.levels, config.guided_radius, config.guided_eps)
        dtype = self.to_rgb.weight.dtype
        features = []
        hidden = image.to(dtype)
        for level, block in enumerate(self.encoder):
            if level > 0:
                hidden = F.max_pool2d(hidden, 2)
            if level in self.detail_levels:
                hidden = torch.cat([hidden, details[level].to(dtype)], dim=1)
            hidden = block(hidden)
            features.append(hidden)
        skips = reversed(features[:-1])
        for upsample, block, skip in zip(self.upsample, self.decoder, skips, strict=True):
            hidden = block(torch.cat([upsample(hidden), skip], dim=1))
        correction = self.to_rgb(hidden)
        if self.to_gate is not None:
            correction = torch.sigmoid(self.to_gate(hidden)) * correction
        low, high = config.pass_through_density
        if high > low:
            opened = ramp(regional_dark_channel(image), (low, high))
            correction = opened.to(dtype) * correction
        return image.to(dtype) + correction

    def open_gate(self, bias: float = GATE_OPEN_BIAS) -> None:
        """Start the smoke gate fully open (``g`` = sigmoid(``bias``) everywhere), so a
        network fine-tuned with the gate starts as the one it was loaded from."""
        if self.to_gate is None:
            raise ValueError("this network has no smoke gate (smoke_gate: false)")
        with torch.no_grad():
            self.to_gate.weight.zero_()
            self.to_gate.bias.fill_(bias)
