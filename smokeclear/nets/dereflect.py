"""dereflect: location-aware recurrent reflection removal (dereflect paper, Sec. 3).

Layout, after the paper's Fig. 2 and its public inference code; one iteration
``i`` maps ``(I, T_{i-1}, h, c)`` to ``(T_i, R_i, C_i, h, c)``, with ``T_0 = I`` and
``N = iterations`` (3 in the paper) unrolled in :meth:`DereflectNet.forward`:

Stage 1 (reflection detection, transmission-feature suppression, ConvLSTM):

- image features: conv ``6 -> w`` on ``[I, T_{i-1}]``, then two groups of
  SE-ResBlocks (no normalisation, SE reduction 2, residual scale 0.1);
- multi-scale Laplacian features: one learnable depthwise 3x3 kernel,
  initialised to ``[0,-1,0; -1,4,-1; 0,-1,0]``, applied to ``[I, T_{i-1}]`` at
  scales 1, 1/2, 1/4, 1/8 (bilinear down, filter, bilinear back up; Eq. 4), a
  conv ``24 -> w`` with PReLU and a group of PReLU SE-ResBlocks;
- the reflection confidence map ``C_i = sigmoid(conv(...))`` (Eq. 5);
- suppression: a further group refines the Laplacian features, which are then
  multiplied by ``C_i``, so transmission-dominated regions drop out;
- a ConvLSTM over ``[image features, suppressed features, h]``:
  ``c = f*c + i*g``, ``h = o*tanh(c)``, state ``2w`` channels at full resolution;
  ``R_i`` comes from ``h`` (ReLU, non-negative).

Stage 2 (transmission): the contextual auto-encoder on ``[I, T_{i-1}, R_i, 1 - C_i]``:
5x5 conv, two stride-2 downsamplings to 1/4, residual CBAM blocks after the convs,
dilated convs 2/4/8/16, two transposed-conv upsamplings (each smoothed by a
reflection pad and a 2x2 average as in the public code) with additive skips, and
side outputs at 1/4 and 1/2 for the multi-scale perceptual loss (Eq. 10).

Channels follow ``width`` ``w``: the paper's network is ``w = 32`` (features 32,
LSTM 64, auto-encoder 64/128/256, 10.9 M parameters). The shipped real-time
preset is much narrower; see ``configs/dereflect.yaml``.

Departures, each a config switch:

- ``residual`` (default on): ``T_i = T_{i-1} + correction`` instead of the paper's
  ``ReLU(conv)``; residual learning is what made desmoke train in a CPU budget,
  and it lets every iteration refine the previous estimate. The side outputs are
  residual on the pooled ``T_{i-1}`` likewise.
- the ConvLSTM's four gate convs are one conv with ``4 x 2w`` outputs, split: the
  same function and parameters, one kernel launch instead of four.
- ``confidence_gate`` (default on): each iteration's transmission is blended with
  the input by that iteration's reflection confidence, ``T_i = I + C_i (T_i - I)``,
  so the network changes a frame only where it locates a reflection, and a frame
  without one passes nearly unchanged (the issue's do-no-harm; ungated, the shipped
  width-4 net moved clean frames by 29 dB PSNR).
- ``pass_through_whiteness`` (default ``(0.6, 0.8)``, radius 48): the final output is
  blended with the input by :func:`whiteness_gate`, open only near pixels whose
  darkest channel is high (a specular highlight is near white; tissue keeps one
  channel low), so tissue away from highlights passes unchanged (the confidence gate
  alone still darkened clean frames by 2-4 grey levels).
- the global poolings of SE and CBAM channel attention are written as
  ``mean``/``amax`` so the FP16 export keeps these frame-wide reductions in FP32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from smokeclear.config import bounded
from smokeclear.nets.checks import check_image_batch
from smokeclear.nets.gates import check_band, ramp

#: The paper's kernel initialisation (its Sec. 3, ``k_L``).
LAPLACIAN_KERNEL = ((0.0, -1.0, 0.0), (-1.0, 4.0, -1.0), (0.0, -1.0, 0.0))
#: Laplacian scales besides full resolution (Eq. 4: 1/2, 1/4, 1/8).
LAPLACIAN_DOWNSCALES = (2, 4, 8)
#: The whiteness gate's grid: its dilation and smoothing run on blocks of this many
#: pixels (the network's input multiple, so every frame it takes divides).
WHITENESS_BLOCK = 8


@dataclass(frozen=True)
class DereflectConfig:
    width: int = bounded(32, 2, 1024)  # the paper's: 32 (features), LSTM 2w, auto-encoder 2w/4w/8w
    iterations: int = bounded(3, 1, 16)  # paper: N = 3
    se_blocks: int = bounded(3, 1, 64)  # SE-ResBlocks per group (paper: 3 per group, 4 groups)
    se_reduction: int = bounded(2, 1, 1024)
    res_scale: float = bounded(0.1, 0, 10)
    residual: bool = True  # T_i = T_{i-1} + correction (ours); False: ReLU output (paper)
    confidence_gate: bool = True  # T_i = I + C_i (T_i - I) (ours): change only where C_i is
    #: the gate's C_i rescaled: 0 at or below the first value, 1 from the second (equal: as is)
    pass_through_confidence: tuple[float, float] = bounded((0.0, 0.0), 0, 1)
    #: the whiteness gate (ours): the output is the input where no pixel within
    #: ``whiteness_radius`` has its darkest channel above the first value, the whole
    #: correction from the second (equal values: off)
    pass_through_whiteness: tuple[float, float] = bounded((0.6, 0.8), 0, 1)
    whiteness_radius: int = bounded(48, 0, 256)  # pixels at the network's resolution

    def __post_init__(self) -> None:
        if self.width < 2:
            raise ValueError(f"width must be >= 2, got {self.width}")
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        if self.se_blocks < 1 or self.se_reduction < 1:
            raise ValueError("se_blocks and se_reduction must be >= 1")
        check_band("pass_through_confidence", self.pass_through_confidence)
        check_band("pass_through_whiteness", self.pass_through_whiteness)
        if self.whiteness_radius < 0:
            raise ValueError(f"whiteness_radius must be >= 0, got {self.whiteness_radius}")


class SqueezeExcitation(nn.Module):
    """Channel gating by a two-layer MLP of the global average."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.float().mean(dim=(2, 3)).to(x.dtype)
        return x * torch.sigmoid(self.mlp(pooled))[:, :, None, None]


class SEResBlock(nn.Module):
    """conv-act-conv, SE gating, scaled residual; no normalisation (as the public code)."""

    def __init__(self, channels: int, reduction: int, res_scale: float, prelu: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.act = nn.PReLU() if prelu else nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.se = SqueezeExcitation(channels, reduction)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.se(self.conv2(self.act(self.conv1(x))))


def se_group(channels: int, config: DereflectConfig, prelu: bool) -> nn.Sequential:
    """``se_blocks`` SE-ResBlocks, each followed by its activation (ReLU or PReLU)."""
    layers: list[nn.Module] = []
    for _ in range(config.se_blocks):
        layers.append(SEResBlock(channels, config.se_reduction, config.res_scale, prelu))
        layers.append(nn.PReLU() if prelu else nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class CBAM(nn.Module):
    """Channel then spatial attention (Woo et al. 2018)."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )
        self.spatial = nn.Conv2d(2, 1, 7, padding=3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wide = x.float()
        average = wide.mean(dim=(2, 3), keepdim=True).to(x.dtype)
        maximum = wide.amax(dim=(2, 3), keepdim=True).to(x.dtype)
        x = x * torch.sigmoid(self.mlp(average) + self.mlp(maximum))
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(pooled))


class CBAMResBlock(nn.Module):
    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
        )
        self.cbam = CBAM(channels, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.cbam(self.body(x))


def conv_relu(
    in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1, dilation: int = 1
) -> nn.Sequential:
    padding = dilation * (kernel - 1) // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride, padding, dilation=dilation),
        nn.ReLU(inplace=True),
    )


def smooth_upsample(in_channels: int, out_channels: int) -> nn.Sequential:
    """2x transposed conv, then a 2x2 average over a 1-px reflection pad (public code)."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1),
        nn.ReflectionPad2d((1, 0, 1, 0)),
        nn.AvgPool2d(2, stride=1),
        nn.ReLU(inplace=True),
    )


class MultiScaleLaplacian(nn.Module):
    """The learnable Laplacian at four scales (Eq. 4).

    Shape:
        ``(B, C, H, W)``, H and W multiples of 8 -> ``(B, 4C, H, W)``: the 1/8, 1/4,
        1/2 and full-scale responses, in that order (as the public code).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        kernel = torch.tensor(LAPLACIAN_KERNEL).expand(channels, 1, 3, 3).clone()
        self.kernel = nn.Parameter(kernel)

    def filter(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.kernel.to(x.dtype), padding=1, groups=x.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        responses = []
        for factor in reversed(LAPLACIAN_DOWNSCALES):
            small = F.interpolate(x, scale_factor=1 / factor, mode="bilinear")
            responses.append(
                F.interpolate(self.filter(small), scale_factor=factor, mode="bilinear")
            )
        responses.append(self.filter(x))
        return torch.cat(responses, dim=1)


class IterationOutput(NamedTuple):
    """One iteration's results; images ``(B, 3, H, W)``, maps ``(B, 1, H, W)``."""

    transmission: torch.Tensor  # T_i, about [0, 1] (not clamped)
    reflection: torch.Tensor  # R_i >= 0
    confidence: torch.Tensor  # C_i in (0, 1): reflection-dominated where high
    side_quarter: torch.Tensor | None  # T_i at 1/4 size (training, perceptual loss)
    side_half: torch.Tensor | None  # T_i at 1/2 size
    hidden: torch.Tensor
    cell: torch.Tensor


class DereflectStep(nn.Module):
    """One iteration ``G_T(I, T_{i-1}, G_R(I, T_{i-1}))`` (Eq. 2, 3)."""

    def __init__(self, config: DereflectConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        state = 2 * w
        # Stage 1: detection and reflection.
        self.laplacian = MultiScaleLaplacian(6)
        self.image_in = conv_relu(6, w)
        self.image_features = nn.Sequential(
            se_group(w, config, prelu=False), se_group(w, config, prelu=False)
        )
        self.laplacian_in = nn.Sequential(nn.Conv2d(6 * 4, w, 3, padding=1), nn.PReLU())
        self.detection = se_group(w, config, prelu=True)
        self.confidence_head = nn.Sequential(
            nn.Conv2d(w, w, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(w, 1, 3, padding=1)
        )
        self.suppression = se_group(w, config, prelu=True)
        self.lstm_gates = nn.Conv2d(2 * w + state, 4 * state, 3, padding=1)
        self.reflection_head = nn.Sequential(
            nn.Conv2d(state, w, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(w, 3, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        # Stage 2: the contextual auto-encoder.
        c1, c2, c4 = 2 * w, 4 * w, 8 * w
        self.encode_full = nn.Sequential(conv_relu(10, c1, kernel=5), CBAMResBlock(c1, 2))
        self.encode_half = nn.Sequential(
            conv_relu(c1, c2, stride=2),
            conv_relu(c2, c2),
            CBAMResBlock(c2, 4),
            CBAMResBlock(c2, 4),
        )
        self.encode_quarter = nn.Sequential(
            conv_relu(c2, c4, stride=2),
            conv_relu(c4, c4),
            conv_relu(c4, c4),
            CBAMResBlock(c4, 8),
            CBAMResBlock(c4, 8),
            CBAMResBlock(c4, 8),
            *(conv_relu(c4, c4, dilation=d) for d in (2, 4, 8, 16)),
            conv_relu(c4, c4),
            conv_relu(c4, c4),
        )
        self.up_half = smooth_upsample(c4, c2)
        self.decode_half = conv_relu(c2, c2)
        self.up_full = smooth_upsample(c2, c1)
        self.decode_full = conv_relu(c1, w)
        self.to_rgb_quarter = nn.Conv2d(c4, 3, 3, padding=1)
        self.to_rgb_half = nn.Conv2d(c2, 3, 3, padding=1)
        self.to_rgb = nn.Conv2d(w, 3, 3, padding=1)

    def forward(
        self,
        image: torch.Tensor,
        previous: torch.Tensor,
        hidden: torch.Tensor,
        cell: torch.Tensor,
        side_outputs: bool = False,
    ) -> IterationOutput:
        pair = torch.cat([image, previous], dim=1)
        features = self.image_features(self.image_in(pair))
        laplacian = self.detection(self.laplacian_in(self.laplacian(pair)))
        confidence = torch.sigmoid(self.confidence_head(laplacian))
        suppressed = self.suppression(laplacian) * confidence
        gates = self.lstm_gates(torch.cat([features, suppressed, hidden], dim=1))
        input_gate, forget_gate, candidate, output_gate = gates.chunk(4, dim=1)
        cell = torch.sigmoid(forget_gate) * cell + torch.sigmoid(input_gate) * torch.tanh(candidate)
        hidden = torch.sigmoid(output_gate) * torch.tanh(cell)
        reflection = self.reflection_head(hidden)

        stage2 = torch.cat([image, previous, reflection, 1.0 - confidence], dim=1)
        full = self.encode_full(stage2)
        half = self.encode_half(full)
        quarter = self.encode_quarter(half)
        up = self.decode_half(self.up_half(quarter) + half)
        out = self.decode_full(self.up_full(up) + full)
        transmission = self._image(self.to_rgb(out), previous, 1)
        if self.config.confidence_gate:
            low, high = self.config.pass_through_confidence
            opened = ramp(confidence, (low, high)) if high > low else confidence
            transmission = image + opened * (transmission - image)
        side_quarter = side_half = None
        if side_outputs:
            side_quarter = self._image(self.to_rgb_quarter(quarter), previous, 4)
            side_half = self._image(self.to_rgb_half(up), previous, 2)
        return IterationOutput(
            transmission, reflection, confidence, side_quarter, side_half, hidden, cell
        )

    def _image(self, head: torch.Tensor, previous: torch.Tensor, factor: int) -> torch.Tensor:
        if not self.config.residual:
            return F.relu(head)
        base = previous if factor == 1 else F.avg_pool2d(previous, factor)
        return base + head


def whiteness_gate(image: torch.Tensor, low: float, high: float, radius: int) -> torch.Tensor:
    """Where a frame may hold a specular highlight: ``(B, 3, H, W)`` -> ``(B, 1, H, W)`` FP32.

    The darkest channel of each pixel (a highlight is the light's colour, near
    white), ramped from 0 at ``low`` to 1 at ``high``; then, on a grid of
    :data:`WHITENESS_BLOCK` pixel blocks (each its maximum), dilated by ``radius``
    (rounded up to whole blocks) and smoothed by a box of the same size, resized
    back bilinearly, and never below the pixel's own ramp. The gate is open on a
    highlight and fades to 0 about ``2 radius`` pixels beyond it (its halo). H and
    W must be multiples of the block when ``radius`` > 0.
    """
    white = image.float().amin(dim=1, keepdim=True)
    gate = ramp(white, (low, high))
    if radius == 0:
        return gate
    steps = -(-radius // WHITENESS_BLOCK)
    size = 2 * steps + 1
    # square windows on the coarse grid: cheap, and what ONNX's reference evaluator runs
    coarse = F.max_pool2d(gate, WHITENESS_BLOCK)
    coarse = F.max_pool2d(coarse, size, stride=1, padding=steps)
    coarse = F.avg_pool2d(coarse, size, stride=1, padding=steps, count_include_pad=False)
    halo = F.interpolate(
        coarse, scale_factor=float(WHITENESS_BLOCK), mode="bilinear", align_corners=False
    )
    return torch.maximum(gate, halo)


class DereflectNet(nn.Module):
    """Recurrent location-aware reflection removal, ``iterations`` steps unrolled.

    One :class:`DereflectStep` is shared by all iterations (the paper's recurrence).

    Shape:
        ``(B, 3, H, W)`` RGB float in [0, 1], H and W multiples of
        :attr:`input_multiple` (8) -> ``(B, 3, H, W)`` RGB float, the last
        iteration's transmission ``T_N`` through the whiteness gate (see
        :func:`whiteness_gate`; :meth:`iterate`, which training uses, is without it),
        about [0, 1] (not clamped).
    """

    def __init__(self, config: DereflectConfig) -> None:
        super().__init__()
        self.config = config
        self.step = DereflectStep(config)

    @property
    def input_multiple(self) -> int:
        return max(LAPLACIAN_DOWNSCALES)

    def iterate(self, image: torch.Tensor, side_outputs: bool = False) -> list[IterationOutput]:
        """Every iteration's :class:`IterationOutput`, for training and inspection."""
        check_image_batch(image, self.input_multiple)
        dtype = self.step.to_rgb.weight.dtype
        image = image.to(dtype)
        batch, _, height, width = image.shape
        state = image.new_zeros(batch, 2 * self.config.width, height, width)
        previous, hidden, cell = image, state, state
        outputs = []
        for _ in range(self.config.iterations):
            result = self.step(image, previous, hidden, cell, side_outputs)
            previous, hidden, cell = result.transmission, result.hidden, result.cell
            outputs.append(result)
        return outputs

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        transmission = self.iterate(image)[-1].transmission
        low, high = self.config.pass_through_whiteness
        if high <= low:
            return transmission
        gate = whiteness_gate(image, low, high, self.config.whiteness_radius)
        image = image.to(transmission.dtype)
        return image + gate.to(transmission.dtype) * (transmission - image)
