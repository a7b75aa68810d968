"""TensorRT helpers shared by the engine and the builder: import, logger, plans, profiles.

``tensorrt`` is imported inside :func:`require_tensorrt`, so this module imports
anywhere, without TensorRT.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from smokeclear.engines.cuda_runtime import GPU_EXTRA_FIX
from smokeclear.errors import UserError

log = logging.getLogger(__name__)

#: One image input shape: ``(1, 3, H', W')`` with H' and W' padded to the input multiple
#: (a restorer model), or ``(H, W, 3)`` (a frame model, uint8 BGR).
Shape = tuple[int, ...]
#: A TensorRT optimisation profile of the image input: ``(min, opt, max)`` shapes.
ShapeProfile = tuple[Shape, Shape, Shape]


def require_tensorrt() -> Any:
    """``import tensorrt``, or the user's error saying how to get it."""
    try:
        import tensorrt
    except ImportError:
        raise UserError(
            "the tensorrt backend needs TensorRT, which is not installed", GPU_EXTRA_FIX
        ) from None
    return tensorrt


def tensorrt_logger(trt: Any) -> Any:
    """A ``trt.ILogger`` writing to Python logging; keeps error texts in ``.errors``.

    TensorRT's errors are logged as warnings: the caller turns a failure into an
    exception (or, for a stale cached plan, into a rebuild) with the whole story.
    """
    severity = trt.ILogger.Severity

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, level, msg):
            if level in (severity.INTERNAL_ERROR, severity.ERROR):
                self.errors.append(msg)
                log.warning("TensorRT: %s", msg)
            elif level == severity.WARNING:
                log.warning("TensorRT: %s", msg)
            elif level == severity.INFO:
                log.debug("TensorRT: %s", msg)

    return Logger()


def deserializer(runtime: Any) -> Callable[[bytes], Any]:
    """``plan bytes -> ICudaEngine``, or None when TensorRT rejects them.

    TensorRT returns None (and logs why) for a corrupt or truncated plan and for
    one built by another TensorRT version or for another GPU.
    """

    def deserialize(plan: bytes) -> Any:
        try:
            return runtime.deserialize_cuda_engine(plan)
        except Exception as error:  # some versions raise instead of returning None
            log.warning("TensorRT: %s", error)
            return None

    return deserialize


def profile_covers(profile: ShapeProfile, shape: Shape) -> bool:
    """Whether an NCHW ``shape`` lies inside the (min, opt, max) ``profile``."""
    minimum, _, maximum = profile
    return all(low <= size <= high for low, size, high in zip(minimum, shape, maximum, strict=True))


def frame_size(shape: Shape) -> tuple[int, int]:
    """``(H, W)`` of an engine input: a frame ``(H, W, 3)`` or a tensor ``(1, 3, H, W)``."""
    return (shape[0], shape[1]) if len(shape) == 3 else (shape[2], shape[3])
