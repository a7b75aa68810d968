"""The engine interface, and the host (numpy) reference of the pixel work.

Boundaries (shape, dtype, colour order, range):

- host frame, into ``upload`` and out of ``download``: ``(H, W, 3)`` uint8 BGR
  (OpenCV's layout), [0, 255], on the host.
- device tensor, out of ``upload``, through ``infer``, into ``download``: on the
  engine's device, owned by the engine that made it (a frame keeps its engine from
  upload to download). Either the restorer's input ``(1, 3, H', W')`` RGB float32
  or float16 in [0, 1], H' and W' edge-padded up to the input multiple; or, for a
  model with the pixel work in its graph (``frame_io``), the frame itself,
  ``(H, W, 3)`` uint8 BGR. Its type is the backend's (``torch.Tensor``, a numpy
  array for onnxruntime on the CPU, a pooled page-locked buffer for TensorRT).
- restorer output, inside ``infer``: like its input, values may leave [0, 1];
  ``download`` crops to ``height x width``, clamps and rounds half up.

The pixel work is written once per place it runs: as pure torch functions on the
device (:mod:`smokeclear.engines.device_pixels`, also traced into frame models),
and here as numpy functions for the host, the reference those are tested against
and what onnxruntime uses for a restorer model. This module must not import torch:
a deployment box (onnxruntime / TensorRT) has none.

Lifecycle (Holoscan's): construct (store arguments only), ``start`` (load, warm up),
``upload`` / ``infer`` / ``download`` per frame, ``close``. The three per-frame
calls may run on three threads for different frames at once. Between frames, on
the thread that calls ``infer``, ``set_detail_gain`` changes the gain of a detail stage.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

#: The second input of exported models with a detail stage: float32, shape (1,).
DETAIL_GAIN_INPUT = "detail_gain"


class EngineError(RuntimeError):
    """Inference failed at run time (as opposed to a user error at start-up)."""


class Engine(Protocol):
    #: e.g. "onnxruntime-cpu", "torch-cuda-fp16"
    name: str

    def start(self, height: int, width: int) -> None:
        """Load the model and warm it up for ``height x width`` frames."""

    def upload(self, frame: np.ndarray) -> Any:
        """``(H, W, 3)`` uint8 BGR host frame -> device tensor (see the module docstring).

        Raises ValueError naming the contract for any other array.
        """

    def infer(self, tensor: Any) -> Any:
        """Device tensor -> the restored device tensor, same layout. Finished on return."""

    def download(self, tensor: Any, height: int, width: int) -> np.ndarray:
        """Device tensor -> ``(height, width, 3)`` uint8 BGR host frame (cropped, clamped)."""

    def set_detail_gain(self, gain: float) -> bool:
        """Detail magnification gain for the next ``infer`` (after ``start``).

        Returns True when the model has a detail stage and the gain applies to the next
        frame; False when it has none, or when this engine cannot change it live.
        """

    def close(self) -> None:
        """Release the model and device memory."""


def padded_size(height: int, width: int, multiple: int) -> tuple[int, int]:
    """``(H', W')``: H and W rounded up to ``multiple`` (symbolic sizes work too)."""
    return height + (-height % multiple), width + (-width % multiple)


def bgr8_to_nchw(frame: np.ndarray, multiple: int) -> np.ndarray:
    """``(H, W, 3)`` uint8 BGR -> ``(1, 3, H', W')`` float32 RGB in [0, 1], edge-padded."""
    check_frame(frame)
    shape = (1, 3, *padded_size(frame.shape[0], frame.shape[1], multiple))
    tensor = np.empty(shape, np.float32)
    bgr8_into_nchw(frame, tensor)
    return tensor


def bgr8_into_nchw(frame: np.ndarray, out: np.ndarray) -> None:
    """Write ``(H, W, 3)`` uint8 BGR into ``out``, ``(1, 3, H', W')`` RGB [0, 1].

    ``out`` (float32 or float16, e.g. a pooled page-locked buffer) sets the padded
    size: H' >= H and W' >= W are filled by edge replication.
    """
    height, width = frame.shape[:2]
    padded_height, padded_width = out.shape[2:]
    rgb = frame[:, :, ::-1]
    if (padded_height, padded_width) != (height, width):
        rgb = np.pad(
            rgb, ((0, padded_height - height), (0, padded_width - width), (0, 0)), mode="edge"
        )
    np.multiply(rgb.transpose(2, 0, 1), np.float32(1 / 255), out=out[0], casting="unsafe")


def nchw_to_bgr8(tensor: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(1, 3, H', W')`` float RGB -> ``(height, width, 3)`` uint8 BGR, clamped and rounded."""
    image = tensor[0, ::-1, :height, :width].transpose(1, 2, 0)
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)


def check_frame(frame: np.ndarray) -> None:
    if (
        not isinstance(frame, np.ndarray)
        or frame.dtype != np.uint8
        or frame.ndim != 3
        or frame.shape[2] != 3
    ):
        description = (
            f"{frame.dtype} {frame.shape}"
            if isinstance(frame, np.ndarray)
            else type(frame).__name__
        )
        raise ValueError(f"engines take (H, W, 3) uint8 BGR frames, got {description}")
