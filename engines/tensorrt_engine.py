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

Frames cross the boundary as ``(H, W, 3)`` uint8 BGR. A frame engine (built from
a ``frame_io`` ONNX: uint8 input) takes them as they are: the pixel work runs in
the engine on the GPU, the copies carry uint8 (a quarter of float32's bytes) and
the downloaded frame is the pooled host buffer itself. A restorer engine's input
is ``(1, 3, H', W')`` RGB in [0, 1], H' and W' edge-padded to the model's input
multiple, float32 (or float16 when the engine's I/O is FP16), converted on the
host into the pooled buffer (:func:`~smokeclear.engines.base.bgr8_into_nchw`).

Detail gain: a model with a detail stage has a second input, ``detail_gain``
(shape (1,)). It lives in one small device buffer bound once at ``start``; ``infer``
copies the current gain into it on the engine's stream before every launch, so a
captured CUDA graph, which reads that fixed address, stays valid when it changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from smokeclear.engines.base import (
    DETAIL_GAIN_INPUT,
    EngineError,
    bgr8_into_nchw,
    check_frame,
    nchw_to_bgr8,
    padded_size,
)
from smokeclear.engines.cuda_runtime import (
    HostTensor,
    PinnedPool,
    PinnedPools,
    cuda_check,
    cuda_gpu_count,
    require_cudart,
)
from smokeclear.engines.tensorrt_support import (
    Shape,
    ShapeProfile,
    deserializer,
    frame_size,
    profile_covers,
    require_tensorrt,
    tensorrt_logger,
)
from smokeclear.errors import UserError

log = logging.getLogger(__name__)


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
    profile: ShapeProfile
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
        device: int = 0,
        input_multiple: int | None = None,
        cuda_graph: bool = True,
        detail_gain: float | None = None,
    ) -> None:
        self.plan = plan
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
        self._profile: ShapeProfile | None = None
        self._frame_io = False
        self._input_pools = PinnedPools(self._malloc_host, self._free_host)
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
        # A frame engine (uint8 input) does the pixel work itself: it takes the frame.
        self._frame_io = self._input_dtype == np.uint8
        shape = self._input_shape(height, width)
        if not profile_covers(self._profile, shape):
            minimum, _, maximum = (frame_size(dims) for dims in self._profile)
            padded = frame_size(shape)
            raise UserError(
                f"{width}x{height} frames (as input {padded[1]}x{padded[0]}) are outside the "
                f"engine's shape profile ({minimum[1]}x{minimum[0]} to {maximum[1]}x{maximum[0]})",
                f"Build one for it: smokeclear engines build --sizes {width}x{height}.",
            )
        self._context = engine.create_execution_context()
        if self._context is None:
            raise EngineError("TensorRT could not create an execution context (GPU memory?)")
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
        self._input_pools.close()
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
        tensor = self._input_pools.pool(
            self._input_shape(*frame.shape[:2]), self._input_dtype
        ).take()
        if self._frame_io:
            np.copyto(tensor.array, frame)
        else:
            bgr8_into_nchw(frame, tensor.array)
        return tensor

    def infer(self, tensor: HostTensor | np.ndarray) -> HostTensor:
        if self._context is None:
            raise EngineError("engine used before start()")
        cudart = self._cudart
        if isinstance(tensor, np.ndarray):  # a caller's own NCHW array
            host = self._input_pools.pool(tuple(tensor.shape), self._input_dtype).take()
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
        if self._frame_io:  # the pooled buffer itself: back to its pool with the frame
            return array[:height, :width]
        if array.dtype != np.float32:
            array = array.astype(np.float32)
        return nchw_to_bgr8(array, height, width)

    # ------------------------------------------------------------------ internals

    def _input_shape(self, height: int, width: int) -> Shape:
        if self._frame_io:
            return (height, width, 3)
        return (1, 3, *padded_size(height, width, self.input_multiple))

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
