"""cuda-python runtime helpers: import, error checks, GPU identity, pinned host buffers.

cuda-python (``cuda.bindings.runtime``, ``cuda.cudart`` before 12.8) is imported
inside :func:`require_cudart`, so this module imports anywhere, without a GPU.
"""

from __future__ import annotations

import ctypes
import threading
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from smokeclear.engines.base import EngineError
from smokeclear.errors import UserError

GPU_EXTRA_FIX = (
    'Install the GPU extra: pip install "smokeclear[gpu]" (needs an NVIDIA driver), '
    "or use --backend onnxruntime or --backend torch."
)
#: More host buffers of one shape than this in use means frames are leaking.
MAX_BUFFERS_IN_FLIGHT = 16


def require_cudart() -> Any:
    """cuda-python's runtime module (``cuda.bindings.runtime``; ``cuda.cudart`` before 12.8)."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime
        except ImportError:
            raise UserError(
                "the tensorrt backend needs cuda-python, which is not installed", GPU_EXTRA_FIX
            ) from None
    return runtime


def cuda_check(result: tuple, what: str) -> Any:
    """Unwrap a cuda-python call: ``(error, *values)`` -> the value(s), or EngineError.

    Every cuda-python function returns a tuple whose first item is the error code
    (``cudaSuccess`` is 0).
    """
    error, *values = result
    if int(error) != 0:
        raise EngineError(f"{what} failed: {getattr(error, 'name', error)} ({int(error)})")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def cuda_gpu_count() -> int:
    """CUDA GPUs cuda-python can see (0 without cuda-python or a driver)."""
    try:
        cudart = require_cudart()
        return int(cuda_check(cudart.cudaGetDeviceCount(), "cudaGetDeviceCount"))
    except (UserError, EngineError):
        return 0


def gpu_identity(device: int = 0) -> tuple[str, str]:
    """``(name, compute capability)`` of a GPU, e.g. ``("NVIDIA H100 80GB HBM3", "9.0")``."""
    cudart = require_cudart()
    properties = cuda_check(cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = properties.name
    if isinstance(name, bytes):
        name = name.split(b"\0", 1)[0].decode(errors="replace")
    return str(name).strip(), f"{properties.major}.{properties.minor}"


class HostTensor:
    """One frame's array in a pooled page-locked host buffer.

    ``array`` views memory the pool owns: the buffer is handed back (or freed, once
    the pool is closed) when ``array`` and every view of it are garbage-collected,
    so an engine may hand ``array`` itself to the graph as a downloaded frame.
    """

    __slots__ = ("array", "pointer")

    def __init__(self, array: np.ndarray, pointer: int) -> None:
        self.array = array
        self.pointer = pointer


class PinnedPool:
    """Reusable page-locked host buffers of one shape and dtype.

    Args:
        allocate: ``nbytes -> pointer`` (``cudaMallocHost`` in the engine).
        free: ``pointer -> None`` (``cudaFreeHost``).
        limit: most buffers alive at once; more means frames are leaking.
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        dtype: np.dtype,
        allocate: Callable[[int], int],
        free: Callable[[int], None],
        limit: int = MAX_BUFFERS_IN_FLIGHT,
    ) -> None:
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.nbytes = int(np.prod(self.shape)) * self.dtype.itemsize
        self._allocate = allocate
        self._free = free
        self.limit = limit
        self._lock = threading.Lock()
        self._idle: list[int] = []
        self._allocated = 0
        self._closed = False

    @property
    def allocated(self) -> int:
        return self._allocated

    def take(self) -> HostTensor:
        with self._lock:
            if self._closed:
                raise EngineError("engine used after close()")
            if self._idle:
                pointer = self._idle.pop()
            else:
                if self._allocated >= self.limit:
                    raise EngineError(
                        f"{self._allocated} host buffers of shape {self.shape} are in use: "
                        "frames are not being released"
                    )
                pointer = self._allocate(self.nbytes)
                self._allocated += 1
        raw = (ctypes.c_byte * self.nbytes).from_address(pointer)
        array = np.frombuffer(raw, dtype=self.dtype).reshape(self.shape)
        # Not at interpreter exit: the CUDA context may be gone by then, and so is the process.
        weakref.finalize(array, self._give_back, pointer).atexit = False
        return HostTensor(array, pointer)

    def _give_back(self, pointer: int) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(pointer)
                return
            self._allocated -= 1
        self._free(pointer)

    def close(self) -> None:
        """Free the idle buffers now; buffers still held are freed when released."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            self._allocated -= len(idle)
        for pointer in idle:
            self._free(pointer)


class PinnedPools:
    """One :class:`PinnedPool` per shape and dtype, made on first use; thread-safe.

    Args:
        allocate: ``nbytes -> pointer``, handed to every pool.
        free: ``pointer -> None``.
    """

    def __init__(self, allocate: Callable[[int], int], free: Callable[[int], None]) -> None:
        self._allocate = allocate
        self._free = free
        self._lock = threading.Lock()
        self._pools: dict[tuple[tuple[int, ...], np.dtype], PinnedPool] = {}

    def pool(self, shape: tuple[int, ...], dtype: np.dtype) -> PinnedPool:
        key = (tuple(shape), np.dtype(dtype))
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                pool = PinnedPool(shape, dtype, self._allocate, self._free)
                self._pools[key] = pool
            return pool

    def close(self) -> None:
        """Close every pool (see :meth:`PinnedPool.close`) and forget them."""
        with self._lock:
            for pool in self._pools.values():
                pool.close()
            self._pools.clear()
