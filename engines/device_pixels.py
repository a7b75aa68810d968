"""Pixel work on the device, as pure torch functions: BGR uint8 frames <-> restorer tensors.

Written once and run wherever the tensors live (CUDA for the torch and AOTInductor
backends, the CPU in tests); :class:`PixelIO` wraps a restorer with them, so the
same code is traced into an exported graph whose I/O is the frame itself.
:func:`smokeclear.engines.base.bgr8_to_nchw` is the host (numpy) reference they
are tested against.

Layouts (STYLE rule 3):

- frame: ``(H, W, 3)`` uint8, BGR (OpenCV's order), [0, 255].
- restorer input / output: ``(1, 3, H', W')`` RGB float in [0, 1] (float32 or float16),
  H' and W' padded up to the input multiple by edge replication; outputs may
  leave [0, 1] and are clamped on the way back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from smokeclear.engines.base import padded_size


def check_frame_tensor(frame: torch.Tensor) -> None:
    if frame.dtype != torch.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frames are (H, W, 3) uint8 BGR, got {frame.dtype} {tuple(frame.shape)}")


def bgr8_to_input(frame: torch.Tensor, multiple: int, dtype: torch.dtype) -> torch.Tensor:
    """``(H, W, 3)`` uint8 BGR -> ``(1, 3, H', W')`` RGB in [0, 1], edge-padded to ``multiple``.

    The padded size (:func:`~smokeclear.engines.base.padded_size`) stays symbolic
    under ``torch.export``: one exported graph pads every frame size.
    """
    height, width = frame.shape[0], frame.shape[1]
    tensor = frame.permute(2, 0, 1).flip(0).unsqueeze(0).to(dtype).mul_(1.0 / 255.0)
    padded_height, padded_width = padded_size(height, width, multiple)
    return F.pad(tensor, (0, padded_width - width, 0, padded_height - height), mode="replicate")


def output_to_bgr8(tensor: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(1, 3, H', W')`` RGB -> ``(height, width, 3)`` uint8 BGR: cropped, clamped, rounded.

    Rounds half up (``+ 0.5`` then truncate), as the numpy reference does.
    """
    image = tensor[0, :, :height, :width].flip(0).permute(1, 2, 0)
    return (image.float() * 255.0).add_(0.5).clamp_(0, 255).to(torch.uint8)


class PixelIO(nn.Module):
    """A restorer whose input and output are frames: ``(H, W, 3)`` uint8 BGR, any H and W.

    The restorer sees ``(1, 3, H', W')`` RGB float32 padded to its ``input_multiple``.
    """

    def __init__(self, restorer: nn.Module) -> None:
        super().__init__()
        self.restorer = restorer
        self.input_multiple = restorer.input_multiple

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        tensor = bgr8_to_input(frame, self.input_multiple, torch.float32)
        restored = self.restorer(tensor)
        return output_to_bgr8(restored, frame.shape[0], frame.shape[1])
