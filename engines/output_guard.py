"""The output guard: may an engine's output be shown (or written) as PROCESSED?

One rule, on the per-channel minimum and maximum of a strided subsample of the
frame (about 64 samples along the short side), in [0, 1] units:

- any non-finite value in the subsample: rejected (NaN weights, an fp16 overflow);
- the output's largest channel spread at most ``FLAT_OUTPUT`` (constant up to uint8
  rounding) while the input's is at least ``TEXTURED_INPUT``: rejected. No restorer
  turns a textured frame into a flat one; a broken engine or all-NaN weights
  (clamped to black in a uint8 frame model) do.

Spreads use the values the engine computed, before ``download`` clamps them:
the guard stops broken engines, not poor restorations. An untrained network may
well push a whole frame below 0 (black on screen) with values that still vary;
that is a model to retrain, and the guard lets it through. It is deliberately
conservative: a single sample that differs lets a frame through (the test suite
checks every shipped restorer on synthetic and real frames for zero rejections).
An output judged as a float tensor is not judged again after its download.

Two implementations of the statistics, tested to agree: :func:`device_range` on
a torch tensor (one small reduction on the engine's device, six numbers come
back to the host) and :func:`host_range` on a numpy array (the frame a
TensorRT or onnxruntime frame model returns, or onnxruntime's float output).
This module imports torch only inside :func:`device_range`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Samples along the short side of the frame (the stride follows from it).
SAMPLES_PER_SIDE = 64
#: An output channel spread at or below this is flat (uint8 rounding: 2 levels).
FLAT_OUTPUT = 2 / 255
#: An input whose largest channel spread is at least this is textured.
TEXTURED_INPUT = 24 / 255

NOT_FINITE = "not finite (NaN or inf)"
CONSTANT = "constant although the input frame is not"


def sample_step(height: int, width: int) -> int:
    """Stride of the subsample: about ``SAMPLES_PER_SIDE`` samples along the short side."""
    return max(1, -(-min(height, width) // SAMPLES_PER_SIDE))


def host_range(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Per-channel ``[min, max]`` of a host frame or tensor, shape (2, 3) float64 in [0, 1] units.

    Args:
        pixels: ``(H, W, 3)`` uint8 BGR frame, or ``(1, 3, H', W')`` float RGB
            (values may leave [0, 1]; H' >= height, W' >= width).
    """
    step = sample_step(height, width)
    if pixels.ndim == 3:
        sample = pixels[:height:step, :width:step, :].transpose(2, 0, 1)
    elif pixels.ndim == 4:
        sample = pixels[0, :, :height:step, :width:step]
    else:
        raise ValueError(f"the output guard takes HWC or NCHW arrays, got shape {pixels.shape}")
    # One small copy, channel first: numpy reduces a contiguous row ~40x faster than
    # the strided columns of the HWC view.
    flat = np.ascontiguousarray(sample).reshape(sample.shape[0], -1)
    scale = 1 / 255 if pixels.dtype == np.uint8 else 1.0
    ranges = np.stack([flat.min(axis=1), flat.max(axis=1)]).astype(np.float64)
    return ranges * scale


def device_range(tensor: Any, height: int, width: int) -> np.ndarray:
    """:func:`host_range` of a torch tensor, reduced where the tensor lives.

    Args:
        tensor: ``(1, 3, H', W')`` float RGB or ``(H, W, 3)`` uint8 BGR, any device.

    One strided view, a min and a max per channel, and one copy of six numbers to
    the host (which waits for the work queued before it on the current stream).
    """
    import torch

    step = sample_step(height, width)
    if tensor.ndim == 3:
        sample = tensor[:height:step, :width:step, :].permute(2, 0, 1)
    elif tensor.ndim == 4:
        sample = tensor[0, :, :height:step, :width:step]
    else:
        raise ValueError(f"the output guard takes HWC or NCHW tensors, got {tuple(tensor.shape)}")
    scale = 1 / 255 if tensor.dtype == torch.uint8 else 1.0
    flat = sample.reshape(sample.shape[0], -1).float()
    ranges = torch.stack([flat.amin(dim=1), flat.amax(dim=1)])  # amin / amax propagate NaN
    return ranges.cpu().numpy().astype(np.float64) * scale


def judge(output_range: np.ndarray, input_range: np.ndarray) -> str | None:
    """The rule: None when the output may be shown, else the problem (``NOT_FINITE``, ``CONSTANT``).

    Args:
        output_range, input_range: ``(2, C)`` per-channel ``[min, max]`` in [0, 1] units.
    """
    if not np.isfinite(output_range).all():
        return NOT_FINITE
    flat = float((output_range[1] - output_range[0]).max()) <= FLAT_OUTPUT
    textured = float((input_range[1] - input_range[0]).max()) >= TEXTURED_INPUT
    return CONSTANT if flat and textured else None


def guarded_download(
    engine: Any, tensor: Any, image: np.ndarray, height: int, width: int
) -> tuple[np.ndarray | None, str | None]:
    """``engine.download`` behind the guard: ``(output, None)`` or ``(None, problem)``.

    Args:
        engine: the engine that inferred ``tensor``. One with ``output_range(tensor,
            height, width)`` (the torch engine) is judged on the device before the
            download; any other on its float output if that is a numpy array, else
            on the downloaded frame.
        image: ``(H, W, 3)`` uint8 BGR, the frame that went in.
    """
    reference = host_range(image, height, width)
    output_range = getattr(engine, "output_range", None)
    if output_range is not None:
        statistics = output_range(tensor, height, width)
    elif isinstance(tensor, np.ndarray) and tensor.dtype.kind == "f":
        statistics = host_range(tensor, height, width)
    else:  # a uint8 frame (clamped in the model's graph), or a buffer only download reads
        output = engine.download(tensor, height, width)
        problem = judge(host_range(output, height, width), reference)
        return (None, problem) if problem is not None else (output, None)
    problem = judge(statistics, reference)
    if problem is not None:
        return None, problem
    return engine.download(tensor, height, width), None
