"""lowlight: hybrid content / edge network with a spatially variant RNN (lowlight paper, Sec. III).

Layout, after the paper's Fig. 2 and 3 and its Sec. III-D (the official code is
Caffe and not public; widths are not given in the paper, so they are config):

Content stream, a residual encoder-decoder (RED-Net style, symmetric additive skips):

- three encoder blocks at 1/2, 1/4 and 1/8 of the input, ``w``, ``2w``, ``4w``
  channels; each block is three 3x3 convs with ReLU, the first strided by 2, and
  a skip from the first conv's output to the third's (a residual link);
- the first two convs of the encoder are dilated by 2 (the paper's Sec. III-D);
- a decoder of 4x4 stride-2 transposed convs back through 1/4 and 1/2 to full
  size; at 1/4 and 1/2 the encoder features of that scale are added (symmetric
  skip) and the edge stream's decoder features of that scale are concatenated
  (the bridge between the streams), then a three-conv block.

Edge stream:

- a weight network, an encoder-decoder of the same kind (blocks at 1/2, 1/4, 1/8,
  additive skips) on the image and its horizontal and vertical gradients, whose
  last conv gives one ``g`` and one ``p`` map per direction and RNN channel:
  ``g = tanh(.)`` and ``p = sigmoid(.)``, so the recurrence stays stable
  (``0 <= p <= 1``) while ``g / (1 - p)`` can exceed 1: the unnormalised gain the
  paper's Eq. 3 adds to Liu et al.'s Eq. 2;
- multi-scale features ``x``: down-convolutions of the image by 1/2, 1/4 and 1/8
  (``scale_channels`` each), resized back to full size (bilinear) and
  concatenated with the image, ``C = 3 + 3 * scale_channels`` channels;
- the spatially variant RNN ``h[k] = g[k] x[k] + p[k] h[k-1]`` scanned left to
  right, right to left, top to bottom and bottom to top, merged by an elementwise
  max (:mod:`smokeclear.nets.spatial_rnn`, a doubling scan, no loop over pixels).

Fusion: the content stream's full-size features and the RNN's ``C`` edge channels
are concatenated and mapped to RGB by two 3x3 convs (ReLU between). The output
is the enhanced image itself, as in the paper (no global residual: a low-light
input is far from its enhancement).

Exposure gate (ours, not in the paper): a frame whose mean luma is already that of
a well-exposed frame passes through. Over ``pass_through_luma = (low, high)`` the
output blends from the network's (mean luma ``<= low``) to the input (``>= high``),
a ramp, so a scene whose light changes slowly does not flicker at one threshold.
A learnt identity left 24-30 dB of change on well-exposed frames (a small net cannot
tell a dim but well-exposed frame from a darkened one); the gate makes that decision
on the whole frame, where it is not ambiguous.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from smokeclear.config import bounded
from smokeclear.nets.checks import check_image_batch
from smokeclear.nets.gates import check_band, ramp
from smokeclear.nets.spatial_rnn import DIRECTIONS, SpatialRNN

#: Downsampling ratios of the encoders and of the multi-scale RNN features.
SCALES = (2, 4, 8)

#: Rec. 709 luma weights of R, G and B.
REC709_LUMA = (0.2126, 0.7152, 0.0722)


@dataclass(frozen=True)
class LowlightConfig:
    width: int = bounded(32, 1, 1024)  # content stream channels at 1/2 (1/4: 2w, 1/8: 4w)
    edge_width: int = bounded(16, 1, 1024)  # weight network channels at 1/2 (1/4: 2v, 1/8: 4v)
    scale_channels: int = bounded(3, 1, 64)  # RNN features per down-convolution scale
    dilation: int = bounded(2, 1, 64)  # paper: the first two content convs are dilated by 2
    max_length: int = bounded(4096, 8, 32768)  # longest frame side an exported graph scans exactly
    #: mean luma from which the output blends towards the input, reaching it at the second
    #: value (the exposure gate; equal values: off)
    pass_through_luma: tuple[float, float] = bounded((0.25, 0.4), 0, 1)

    def __post_init__(self) -> None:
        if self.width < 1 or self.edge_width < 1 or self.scale_channels < 1:
            raise ValueError(
                "width, edge_width and scale_channels must be >= 1, got "
                f"{self.width}, {self.edge_width}, {self.scale_channels}"
            )
        if self.dilation < 1:
            raise ValueError(f"dilation must be >= 1, got {self.dilation}")
        if self.max_length < 8:
            raise ValueError(f"max_length must be >= 8, got {self.max_length}")
        check_band("pass_through_luma", self.pass_through_luma)

    @property
    def rnn_channels(self) -> int:
        """``C``: the image and ``scale_channels`` per down-convolution scale."""
        return 3 + len(SCALES) * self.scale_channels


class ResidualBlock(nn.Module):
    """Three 3x3 convs with ReLU; the first may stride or dilate; skip from the first.

    ``y = relu(c3(relu(c2(a))) + a)`` with ``a = relu(c1(x))``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        dilations: tuple[int, int] = (1, 1),
    ) -> None:
        super().__init__()
        first, second = dilations
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=first, dilation=first)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=second, dilation=second)
        self.conv3 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        entry = self.relu(self.conv1(x))
        return self.relu(self.conv3(self.relu(self.conv2(entry))) + entry)


def upsample(in_channels: int, out_channels: int) -> nn.Sequential:
    """A 4x4 stride-2 transposed conv (exactly doubles H and W) with ReLU."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, 4, 2, padding=1), nn.ReLU(inplace=True)
    )


class EncoderDecoder(nn.Module):
    """Blocks at 1/2, 1/4, 1/8 and back, with additive skips; bridge inputs optional.

    With ``bridge_channels`` the decoder block at 1/4 (then 1/2) also takes that
    many channels of features from outside (the other stream), concatenated.

    Shape:
        ``(B, in, H, W)``, H and W multiples of 8 -> full-size ``(B, c, H, W)``
        features and the decoder features at 1/4 ``(B, 2c, H/4, W/4)`` and 1/2
        ``(B, c, H/2, W/2)``.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        dilation: int = 1,
        bridge_channels: tuple[int, int] = (0, 0),
    ) -> None:
        super().__init__()
        c = channels
        self.encode1 = ResidualBlock(in_channels, c, 2, (dilation, dilation))
        self.encode2 = ResidualBlock(c, 2 * c, 2)
        self.encode3 = ResidualBlock(2 * c, 4 * c, 2)
        self.up3 = upsample(4 * c, 2 * c)
        self.decode2 = ResidualBlock(2 * c + bridge_channels[0], 2 * c)
        self.up2 = upsample(2 * c, c)
        self.decode1 = ResidualBlock(c + bridge_channels[1], c)
        self.up1 = upsample(c, c)

    def forward(
        self, x: torch.Tensor, bridges: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        half = self.encode1(x)
        quarter = self.encode2(half)
        eighth = self.encode3(quarter)
        decoded_quarter = self.up3(eighth) + quarter
        if bridges is not None:
            decoded_quarter = torch.cat([decoded_quarter, bridges[0]], dim=1)
        decoded_quarter = self.decode2(decoded_quarter)
        decoded_half = self.up2(decoded_quarter) + half
        if bridges is not None:
            decoded_half = torch.cat([decoded_half, bridges[1]], dim=1)
        decoded_half = self.decode1(decoded_half)
        return self.up1(decoded_half), decoded_quarter, decoded_half


class MultiScaleFeatures(nn.Module):
    """The RNN's input ``x``: the image and its 1/2, 1/4, 1/8 down-convolutions, resized back.

    Shape:
        ``(B, 3, H, W)`` -> ``(B, 3 + 3 * scale_channels, H, W)``.
    """

    def __init__(self, scale_channels: int) -> None:
        super().__init__()
        # kernel 2s, stride s, padding s/2: exactly H/s for H a multiple of s.
        self.down = nn.ModuleList(
            nn.Conv2d(3, scale_channels, 2 * s, stride=s, padding=s // 2) for s in SCALES
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        resized = [
            F.interpolate(conv(image), scale_factor=s, mode="bilinear", align_corners=False)
            for conv, s in zip(self.down, SCALES, strict=True)
        ]
        return torch.cat([image, *resized], dim=1)


def image_gradients(image: torch.Tensor) -> torch.Tensor:
    """Forward differences along x then y, zero at the last column / row.

    Shape:
        ``(B, C, H, W)`` -> ``(B, 2C, H, W)``.
    """
    dx = F.pad(image[..., :, 1:] - image[..., :, :-1], (0, 1, 0, 0))
    dy = F.pad(image[..., 1:, :] - image[..., :-1, :], (0, 0, 0, 1))
    return torch.cat([dx, dy], dim=1)


class LowlightNet(nn.Module):
    """Hybrid content / edge stream low-light enhancement.

    Shape:
        ``(B, 3, H, W)`` RGB float in [0, 1], H and W multiples of
        :attr:`input_multiple` (8) and at most ``max_length`` -> ``(B, 3, H, W)``
        RGB float, about [0, 1] (not clamped).
    """

    def __init__(self, config: LowlightConfig) -> None:
        super().__init__()
        self.config = config
        w, v, c = config.width, config.edge_width, config.rnn_channels
        self.weights = EncoderDecoder(9, v)  # image + x and y gradients
        self.to_gates = nn.Conv2d(v, 2 * len(DIRECTIONS) * c, 3, padding=1)
        self.features = MultiScaleFeatures(config.scale_channels)
        self.rnn = SpatialRNN(config.max_length)
        self.content = EncoderDecoder(3, w, config.dilation, bridge_channels=(2 * v, v))
        self.fuse = nn.Sequential(
            nn.Conv2d(w + c, w, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(w, 3, 3, padding=1)
        )

    @property
    def input_multiple(self) -> int:
        return max(SCALES)

    def edges(self, image: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """The edge stream: RNN output ``(B, C, H, W)`` and the weight net's decoder features."""
        weight_features, quarter, half = self.weights(
            torch.cat([image, image_gradients(image)], dim=1)
        )
        g, p = torch.chunk(self.to_gates(weight_features), 2, dim=1)
        hidden = self.rnn(self.features(image), torch.tanh(g), torch.sigmoid(p))
        return hidden, (quarter, half)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        check_image_batch(image, self.input_multiple)
        image = image.to(self.fuse[0].weight.dtype)
        hidden, bridges = self.edges(image)
        content, _, _ = self.content(image, bridges)
        return self.gate(image, self.fuse(torch.cat([content, hidden], dim=1)))

    def gate(self, image: torch.Tensor, enhanced: torch.Tensor) -> torch.Tensor:
        """``enhanced`` blended towards ``image`` by the frame's mean luma (the exposure gate)."""
        low, high = self.config.pass_through_luma
        if high <= low:
            return enhanced
        weights = image.new_tensor(REC709_LUMA, dtype=torch.float32).view(1, 3, 1, 1)
        # in FP32: a frame-wide mean, kept out of FP16 in an exported engine
        luma = (image.float() * weights).sum(dim=1).mean(dim=(1, 2))
        passed = ramp(luma, (low, high)).to(enhanced.dtype)
        return enhanced + passed.view(-1, 1, 1, 1) * (image - enhanced)
