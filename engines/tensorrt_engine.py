"""tensorrt backend: a serialised TensorRT engine (plan) run with cuda-python.

Written against the TensorRT 10 / 11 name-based API (``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``) and cuda-python's runtime bindings
(``cuda.bindings.runtime``, which NVIDIA's samples use since TensorRT 10.14). Both
are imported inside :meth:`TensorRTEngine.start`, so this module imports anywhere.

Memory and threads. The graph calls ``upload``, ``infer`` and ``download`` from
three threads for different frames at once, so nothing a frame holds is shared:

- ``upload`` (preprocess thread) converts the BGR frame into a page-locked host
  buffer taken from a pool; ``download`` (postprocess thread) reads another.
  A buffer goes back to its pool when the frame that holds it is dropped, which
  covers frames the graph skips as well as frames it shows.
- ``infer`` (inference thread) owns the device buffers, the execution context and
  the stream: copy in, run, copy out, synchronise. Device buffers are static per
  input shape, so after one warm-up run the TensorRT launch is captured once as a
  CUDA graph and replayed for every later frame of that shape.

Frames cross the boundary as ``(H, W, 3)`` uint8 BGR; inside, the engine input is
``(1, 3, H', W')`` RGB in [0, 1], H' and W' edge-padded to the model's input
multiple, float32 (or float16 when the engine's I/O is FP16).

Detail gain: a model with a detail stage has a second input, ``detail_gain``
(shape (1,)). It lives in one small device buffer bound once at ``start``; ``infer``
copies the current gain into it on the engine's stream before every launch, so a
captured CUDA graph, which reads that fixed address, stays valid when it changes.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from smokeclear.engines.base import (
    DETAIL_GAIN_INPUT,
    EngineError,
    check_frame,
    nchw_to_bgr8,
    padded_size,
)
from smokeclear.errors import UserError

log = logging.getLogger(__name__)

GPU_EXTRA_FIX = (
    'Install the GPU extra: pip install "smokeclear[gpu]" (needs an NVIDIA driver), '
    "or use --backend onnxruntime or --backend torch."
)
#: More host buffers of one shape than this in use means frames are leaking.
MAX_BUFFERS_IN_FLIGHT = 16

Shape = tuple[int, ...]
Profile = tuple[Shape, Shape, Shape]


# --------------------------------------------------------------------------- optional imports


def require_tensorrt() -> Any:
    """``import tensorrt``, or the user's error saying how to get it."""
    try:
        import tensorrt
    except ImportError:
        raise UserError(
            "the tensorrt backend needs TensorRT, which is not installed", GPU_EXTRA_FIX
        ) from None
    return tensorrt


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


# --------------------------------------------------------------------------- pure helpers


def profile_covers(profile: Profile, shape: Shape) -> bool:
    """Whether an NCHW ``shape`` lies inside the (min, opt, max) ``profile``."""
    minimum, _, maximum = profile
    return all(low <= size <= high for low, size, high in zip(minimum, shape, maximum, strict=True))


def bgr8_into(frame: np.ndarray, out: np.ndarray) -> None:
    """Write a ``(H, W, 3)`` uint8 BGR frame into ``out`` as ``(1, 3, H', W')`` RGB [0, 1].

    The same conversion as :func:`smokeclear.engines.base.bgr8_to_nchw`, written
    into a preallocated (page-locked) float32 or float16 buffer; H' >= H and W' >= W
    are filled by edge replication.
    """
    height, width = frame.shape[:2]
    padded_height, padded_width = out.shape[2:]
    rgb = frame[:, :, ::-1]
    if (padded_height, padded_width) != (height, width):
        rgb = np.pad(
            rgb, ((0, padded_height - height), (0, padded_width - width), (0, 0)), mode="edge"
        )
    np.multiply(rgb.transpose(2, 0, 1), np.float32(1 / 255), out=out[0], casting="unsafe")


class HostTensor:
    """One frame's NCHW tensor in a pooled page-locked host buffer.

    ``array`` views memory the pool owns: the buffer is handed back (or freed, once
    the pool is closed) when this object is garbage-collected.
    """

    __slots__ = ("__weakref__", "array", "pointer")

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
        shape: Shape,
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
        tensor = HostTensor(array, pointer)
        # Not at interpreter exit: the CUDA context may be gone by then, and so is the process.
        weakref.finalize(tensor, self._give_back, pointer).atexit = False
        return tensor

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


# --------------------------------------------------------------------------- the engine


@dataclass(frozen=True)
class CachedPlan:
    """Take the engine from the engine cache, building it there on a miss.

    Args:
        onnx_path: the model to build from (the FP16 ONNX for FP16 on TensorRT 11).
        build: writes a plan for this model and these settings to the given path,
            e.g. :func:`smokeclear.export.tensorrt_build.build_engine` with them bound.
        input_multiple: the model's input multiple (ONNX metadata).
    """

    onnx_path: Path
    precision: str
    profile: Profile
    optimization_level: int
    build: Callable[[Path], Any]
    input_multiple: int
    label: str = ""


@dataclass
class _ShapeState:
    """Static device buffers, output pool and CUDA graph for one input shape."""

    shape: Shape
    output_shape: Shape
    device_input: int
    device_output: int
    output_pool: PinnedPool
    graph: Any = None  # cudaGraphExec_t, or None: enqueue every frame


class TensorRTEngine:
    """Engine protocol over a TensorRT plan.

    Args:
        plan: a plan file, a :class:`CachedPlan` to load (or build) from the cache,
            or a function of the first frame's ``(height, width)`` returning one (the
            runtime's choice: the shape profile is known only at ``start``).
        stream: a ``cudaStream_t`` handle (int) to run on, e.g. the stream of the
            stages around it (``torch.cuda.Stream().cuda_stream``); default: the
            engine creates and owns one. The engine never destroys a stream it was given.
        device: CUDA device index.
        input_multiple: for a bare plan without a sidecar (``PLAN.json``) saying it.
        cuda_graph: capture and replay the launch per shape (off: enqueue every frame).
        detail_gain: the starting gain of an engine with a ``detail_gain`` input
            (required for one; ignored otherwise).
    """

    def __init__(
        self,
        plan: Path | CachedPlan | Callable[[int, int], CachedPlan],
        *,
        stream: int | None = None,
        device: int = 0,
        input_multiple: int | None = None,
        cuda_graph: bool = True,
        detail_gain: float | None = None,
    ) -> None:
        self.plan = plan
        self.external_stream = stream
        self.device = device
        self.requested_multiple = input_multiple
        self.cuda_graph = cuda_graph
        self.detail_gain = detail_gain
        self.name = "tensorrt"
        self.input_multiple = 1
        self.plan_path: Path | None = None
        self._cudart: Any = None
        self._trt: Any = None
        self._runtime: Any = None
        self._engine: Any = None
        self._context: Any = None
        self._stream: int | None = None
        self._owned_stream: Any = None
        self._input_name = ""
        self._output_name = ""
        self._input_dtype = np.dtype(np.float32)
        self._output_dtype = np.dtype(np.float32)
        self._profile: Profile | None = None
        self._input_pools: dict[Shape, PinnedPool] = {}
        self._pools_lock = threading.Lock()
        self._states: dict[Shape, _ShapeState] = {}
        self._bound_shape: Shape | None = None
        # Detail gain: pinned host value, its pool and the bound device buffer (None: no input).
        self._gain_pool: PinnedPool | None = None
        self._gain_host: HostTensor | None = None
        self._gain_device: int | None = None

    @property
    def cuda_stream(self) -> int | None:
        """The ``cudaStream_t`` handle the engine runs on (None before ``start``)."""
        return self._stream

    # ------------------------------------------------------------------ lifecycle

    def start(self, height: int, width: int) -> None:
        trt = require_tensorrt()
        cudart = require_cudart()
        self._trt, self._cudart = trt, cudart
        if cuda_gpu_count() == 0:
            raise UserError(
                "the tensorrt backend needs a CUDA GPU and cuda-python sees none",
                "Check the NVIDIA driver (nvidia-smi), or use --backend onnxruntime.",
            )
        cuda_check(cudart.cudaSetDevice(self.device), "cudaSetDevice")
        logger = tensorrt_logger(trt)
        self._runtime = trt.Runtime(logger)
        deserialize = deserializer(self._runtime)
        if callable(self.plan):
            self.plan = self.plan(height, width)
        engine, precision = self._load(deserialize)
        self._engine = engine

        names = [engine.get_tensor_name(index) for index in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        images = [n for n in inputs if n != DETAIL_GAIN_INPUT]
        if len(images) != 1 or len(outputs) != 1:
            raise UserError(
                f"TensorRT engine {self.plan_path} has inputs {inputs} and outputs {outputs}; "
                f"a restorer engine has one of each (and may take {DETAIL_GAIN_INPUT})",
                "Build it with smokeclear engines build.",
            )
        has_gain = DETAIL_GAIN_INPUT in inputs
        if has_gain and self.detail_gain is None:
            raise UserError(
                f"TensorRT engine {self.plan_path} magnifies detail and needs a detail gain",
                "Pass detail_gain (on the command line: --detail-gain K).",
            )
        self._input_name, self._output_name = images[0], outputs[0]
        self._input_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self._input_name)))
        self._output_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self._output_name)))
        self._profile = tuple(  # type: ignore[assignment]
            tuple(int(size) for size in dims)
            for dims in engine.get_tensor_profile_shape(self._input_name, 0)
        )
        shape = (1, 3, *padded_size(height, width, self.input_multiple))
        if not profile_covers(self._profile, shape):
            minimum, _, maximum = self._profile
            raise UserError(
                f"{width}x{height} frames (padded to {shape[3]}x{shape[2]}) are outside the "
                f"engine's shape profile ({minimum[3]}x{minimum[2]} to {maximum[3]}x{maximum[2]})",
                f"Build one for it: smokeclear engines build --sizes {width}x{height}.",
            )
        self._context = engine.create_execution_context()
        if self._context is None:
            raise EngineError("TensorRT could not create an execution context (GPU memory?)")
        if self.external_stream is not None:
            self._stream = int(self.external_stream)
        else:
            self._owned_stream = cuda_check(cudart.cudaStreamCreate(), "cudaStreamCreate")
            self._stream = int(self._owned_stream)
        if has_gain:
            self._bind_detail_gain(np.dtype(trt.nptype(engine.get_tensor_dtype(DETAIL_GAIN_INPUT))))
        self.name = f"tensorrt-{precision}" if precision else "tensorrt"
        warmup = np.zeros((height, width, 3), np.uint8)
        self.download(self.infer(self.upload(warmup)), height, width)

    def _load(self, deserialize: Callable[[bytes], Any]) -> tuple[Any, str]:
        from smokeclear.engines import engine_cache

        if isinstance(self.plan, CachedPlan):
            source = self.plan
            key = engine_cache.key_for(
                source.onnx_path,
                source.precision,
                source.profile,
                source.optimization_level,
                device=self.device,
            )
            info = {
                "label": source.label,
                "onnx": str(source.onnx_path),
                "input_multiple": source.input_multiple,
            }
            engine, self.plan_path = engine_cache.load_or_build(
                key, source.build, deserialize, info=info
            )
            self.input_multiple = source.input_multiple
            return engine, source.precision
        path = Path(self.plan)
        self.plan_path = path
        if not path.is_file():
            raise UserError(
                f"TensorRT engine {path} does not exist", "Build one with smokeclear engines build."
            )
        engine = deserialize(path.read_bytes())
        if engine is None:
            raise UserError(
                f"TensorRT engine {path} cannot be deserialised (corrupt, truncated, or built "
                "by another TensorRT version or for another GPU)",
                "Rebuild it with smokeclear engines build.",
            )
        info = engine_cache.read_sidecar(engine_cache.sidecar_path(path)) or {}
        multiple = self.requested_multiple or info.get("input_multiple")
        if not multiple:
            raise UserError(
                f"the input multiple of TensorRT engine {path} is unknown (no {path.stem}.json)",
                "Pass input_multiple, or use an engine from smokeclear engines build.",
            )
        self.input_multiple = int(multiple)
        key = info.get("key") or {}
        return engine, str(key.get("precision", ""))

    def _bind_detail_gain(self, dtype: np.dtype) -> None:
        """Allocate and bind the ``detail_gain`` input once; its address never changes."""
        cudart, context = self._cudart, self._context
        self._gain_pool = PinnedPool((1,), dtype, self._malloc_host, self._free_host, limit=1)
        self._gain_host = self._gain_pool.take()
        self._gain_host.array[0] = self.detail_gain
        self._gain_device = int(cuda_check(cudart.cudaMalloc(dtype.itemsize), "cudaMalloc"))
        if not context.set_input_shape(DETAIL_GAIN_INPUT, (1,)):
            raise EngineError(f"TensorRT rejected shape (1,) for {DETAIL_GAIN_INPUT}")
        if not context.set_tensor_address(DETAIL_GAIN_INPUT, self._gain_device):
            raise EngineError(f"TensorRT rejected the address of {DETAIL_GAIN_INPUT}")

    def set_detail_gain(self, gain: float) -> bool:
        # Called between frames on the infer thread: no copy from this buffer is in flight.
        if self._gain_host is None:
            return False
        self._gain_host.array[0] = gain
        self.detail_gain = float(gain)
        return True

    def close(self) -> None:
        cudart = self._cudart
        if cudart is None:
            return
        if self._stream is not None:
            self._quietly(cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        if self._gain_device is not None:
            self._quietly(cudart.cudaFree(self._gain_device), "cudaFree")
            self._gain_device = None
        self._gain_host = None  # back to its pool, which frees it now
        if self._gain_pool is not None:
            self._gain_pool.close()
            self._gain_pool = None
        for state in self._states.values():
            if state.graph is not None:
                self._quietly(cudart.cudaGraphExecDestroy(state.graph), "cudaGraphExecDestroy")
            self._quietly(cudart.cudaFree(state.device_input), "cudaFree")
            self._quietly(cudart.cudaFree(state.device_output), "cudaFree")
            state.output_pool.close()
        self._states.clear()
        with self._pools_lock:
            for pool in self._input_pools.values():
                pool.close()
            self._input_pools.clear()
        if self._owned_stream is not None:
            self._quietly(cudart.cudaStreamDestroy(self._owned_stream), "cudaStreamDestroy")
            self._owned_stream = None
        self._stream = None
        self._context = None
        self._engine = None
        self._runtime = None
        self._bound_shape = None

    @staticmethod
    def _quietly(result: tuple, what: str) -> None:
        try:
            cuda_check(result, what)
        except EngineError as error:
            log.warning("while closing the TensorRT engine: %s", error)

    # ------------------------------------------------------------------ per frame

    def upload(self, frame: np.ndarray) -> HostTensor:
        if self._context is None:
            raise EngineError("engine used before start()")
        check_frame(frame)
        shape = (1, 3, *padded_size(frame.shape[0], frame.shape[1], self.input_multiple))
        tensor = self._input_pool(shape).take()
        bgr8_into(frame, tensor.array)
        return tensor

    def infer(self, tensor: HostTensor | np.ndarray) -> HostTensor:
        if self._context is None:
            raise EngineError("engine used before start()")
        cudart = self._cudart
        if isinstance(tensor, np.ndarray):  # a caller's own NCHW array
            host = self._input_pool(tuple(tensor.shape)).take()
            np.copyto(host.array, tensor, casting="same_kind")
            tensor = host
        try:
            if self.device:
                cuda_check(cudart.cudaSetDevice(self.device), "cudaSetDevice")
            copy_in = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            gain = self._gain_host
            if gain is not None:  # before any launch, the warm-up of a new shape included
                cuda_check(
                    cudart.cudaMemcpyAsync(
                        self._gain_device, gain.pointer, gain.array.nbytes, copy_in, self._stream
                    ),
                    "cudaMemcpyAsync (detail gain to the GPU)",
                )
            state = self._states.get(tensor.array.shape) or self._prepare(tensor.array.shape)
            cuda_check(
                cudart.cudaMemcpyAsync(
                    state.device_input, tensor.pointer, tensor.array.nbytes, copy_in, self._stream
                ),
                "cudaMemcpyAsync (to the GPU)",
            )
            if state.graph is not None:
                cuda_check(cudart.cudaGraphLaunch(state.graph, self._stream), "cudaGraphLaunch")
            else:
                self._enqueue(state)
            output = state.output_pool.take()
            copy_out = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
            cuda_check(
                cudart.cudaMemcpyAsync(
                    output.pointer, state.device_output, output.array.nbytes, copy_out, self._stream
                ),
                "cudaMemcpyAsync (to the host)",
            )
            cuda_check(cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        except EngineError:
            raise
        except Exception as error:
            raise EngineError(f"TensorRT inference failed: {error}") from error
        return output

    def download(self, tensor: HostTensor, height: int, width: int) -> np.ndarray:
        array = tensor.array
        if array.dtype != np.float32:
            array = array.astype(np.float32)
        return nchw_to_bgr8(array, height, width)

    # ------------------------------------------------------------------ internals

    def _input_pool(self, shape: Shape) -> PinnedPool:
        with self._pools_lock:
            pool = self._input_pools.get(shape)
            if pool is None:
                pool = PinnedPool(shape, self._input_dtype, self._malloc_host, self._free_host)
                self._input_pools[shape] = pool
            return pool

    def _malloc_host(self, nbytes: int) -> int:
        cudart = self._cudart
        if self.device:  # the device is per thread; pools grow on the preprocess thread
            cuda_check(cudart.cudaSetDevice(self.device), "cudaSetDevice")
        return int(cuda_check(cudart.cudaMallocHost(nbytes), "cudaMallocHost"))

    def _free_host(self, pointer: int) -> None:
        self._quietly(self._cudart.cudaFreeHost(pointer), "cudaFreeHost")

    def _prepare(self, shape: Shape) -> _ShapeState:
        """Buffers, a warm-up run and (when enabled) a CUDA graph for a new input shape."""
        if self._profile is not None and not profile_covers(self._profile, shape):
            raise EngineError(
                f"input shape {shape} is outside the engine's profile {self._profile}"
            )
        cudart, context = self._cudart, self._context
        if not context.set_input_shape(self._input_name, shape):
            raise EngineError(f"TensorRT rejected input shape {shape}")
        self._bound_shape = None
        output_shape = tuple(int(size) for size in context.get_tensor_shape(self._output_name))
        input_bytes = int(np.prod(shape)) * self._input_dtype.itemsize
        output_bytes = int(np.prod(output_shape)) * self._output_dtype.itemsize
        device_input = int(cuda_check(cudart.cudaMalloc(input_bytes), "cudaMalloc"))
        try:
            device_output = int(cuda_check(cudart.cudaMalloc(output_bytes), "cudaMalloc"))
        except EngineError:
            self._quietly(cudart.cudaFree(device_input), "cudaFree")
            raise
        pool = PinnedPool(output_shape, self._output_dtype, self._malloc_host, self._free_host)
        state = _ShapeState(tuple(shape), output_shape, device_input, device_output, pool)
        self._states[state.shape] = state
        # TensorRT allocates and settles shapes on the first enqueue: run once before
        # capturing, so the graph holds only the steady-state launch.
        self._enqueue(state)
        cuda_check(cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        if self.cuda_graph:
            state.graph = self._capture(state)
        return state

    def _enqueue(self, state: _ShapeState) -> None:
        context = self._context
        if self._bound_shape != state.shape:
            if not context.set_input_shape(self._input_name, state.shape):
                raise EngineError(f"TensorRT rejected input shape {state.shape}")
            context.set_tensor_address(self._input_name, state.device_input)
            context.set_tensor_address(self._output_name, state.device_output)
            self._bound_shape = state.shape
        if not context.execute_async_v3(self._stream):
            raise EngineError("TensorRT execute_async_v3 failed (see the TensorRT messages)")

    def _capture(self, state: _ShapeState) -> Any:
        """Capture one launch into an executable CUDA graph, or None (then enqueue per frame).

        Thread-local capture mode: the pre/postprocess threads may allocate pinned
        memory meanwhile, which global capture would forbid.
        """
        cudart = self._cudart
        mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        graph = None
        try:
            cuda_check(cudart.cudaStreamBeginCapture(self._stream, mode), "cudaStreamBeginCapture")
            try:
                self._enqueue(state)
            finally:
                graph = cuda_check(
                    cudart.cudaStreamEndCapture(self._stream), "cudaStreamEndCapture"
                )
            executable = cuda_check(cudart.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        except Exception as error:
            cudart.cudaGetLastError()  # clear the capture's error so later calls work
            log.warning(
                "CUDA graph capture failed for input %s (%s): TensorRT runs without a graph",
                state.shape,
                error,
            )
            return None
        finally:
            if graph is not None:
                self._quietly(cudart.cudaGraphDestroy(graph), "cudaGraphDestroy")
        log.debug("CUDA graph captured for input %s", state.shape)
        return executable
