"""torch backend: CUDA FP16 (channels-last, CUDA graphs) on a GPU, FP32 on the CPU.

On a GPU every stage of a frame runs on one CUDA stream owned by the engine, so the
upload, the restorer and the conversion back are ordered without host round
trips; ``infer`` synchronises that stream before it returns, so the graph's stage
timestamps measure finished GPU work. The guided-filter pyramid inside the
networks always computes in FP32, whatever the precision of the convolutions.

CUDA graphs: after a warm-up at a frame size, the restorer's kernels are captured
once and replayed for every later frame of that size (a new size captures again).
Replay removes the per-kernel launch cost that dominates small convnets. The
graph reads a static input buffer and writes a static output; ``infer`` copies
the frame in and the result out, so the upload and download stages, which run in
other threads, never see a buffer the next replay overwrites.

Detail gain: a detail stage reads its gain from a one-element buffer on every
run, so :meth:`TorchEngine.set_detail_gain` writes that buffer in place, on the
engine's stream, and a captured graph (or a compiled module) sees the new value
on its next replay without a new capture.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from smokeclear.engines.base import EngineError, check_frame
from smokeclear.engines.cuda_runtime import HostTensor, PinnedPools
from smokeclear.engines.device_pixels import bgr8_to_input, output_to_bgr8
from smokeclear.engines.output_guard import device_range
from smokeclear.nets.smooth import DetailMagnify

log = logging.getLogger(__name__)


class TorchEngine:
    def __init__(
        self,
        build_module: Callable[[], nn.Module],
        device: str = "cpu",
        half: bool | None = None,
        cuda_graphs: bool | None = None,
        compile_module: bool = False,
    ) -> None:
        """
        Args:
            build_module: returns the restorer chain (FP32, CPU, eval mode).
            device: "cpu" or "cuda[:N]".
            half: FP16 convolutions; default True on CUDA, False on the CPU.
            cuda_graphs: capture and replay per frame size; default True on CUDA.
            compile_module: run the module through ``torch.compile`` (slow first frame).
        """
        self.build_module = build_module
        self.device = torch.device(device)
        self.half = self.device.type == "cuda" if half is None else half
        on_cuda = self.device.type == "cuda"
        self.cuda_graphs = on_cuda if cuda_graphs is None else cuda_graphs
        if self.cuda_graphs and not on_cuda:
            raise ValueError("CUDA graphs need a CUDA device")
        self.compile_module = compile_module
        precision = "fp16" if self.half else "fp32"
        suffix = "-graphs" if self.cuda_graphs else ""
        suffix += "-compiled" if compile_module else ""
        self.name = f"torch-{self.device.type}-{precision}{suffix}"
        self._module: Callable[[torch.Tensor], torch.Tensor] | None = None
        self._stream: torch.cuda.Stream | None = None
        self._graphs: dict[tuple[int, ...], _CapturedGraph] = {}
        self._detail_stages: list[DetailMagnify] = []
        self._staging: PinnedStaging | None = None
        self.input_multiple = 1

    def start(self, height: int, width: int) -> None:
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise EngineError("CUDA requested but torch sees no CUDA device")
        module = self.build_module().eval().to(self.device)
        self.input_multiple = module.input_multiple
        if self.half:
            module = module.half()
        if self.device.type == "cuda":
            module = module.to(memory_format=torch.channels_last)
            self._stream = torch.cuda.Stream(self.device)
            self._staging = PinnedStaging(self.device, self._stream)
            torch.backends.cudnn.benchmark = True
        # After .half() and .to(): these are the buffers the module that runs reads.
        self._detail_stages = [m for m in module.modules() if isinstance(m, DetailMagnify)]
        self._module = self.prepare(module, height, width)
        warmup = np.zeros((height, width, 3), np.uint8)
        for _ in range(3 if self.device.type == "cuda" else 1):
            self.download(self.infer(self.upload(warmup)), height, width)

    @property
    def cuda_stream(self) -> torch.cuda.Stream | None:
        """The CUDA stream every stage of this engine runs on (None on the CPU)."""
        return self._stream

    def _on_stream(self):
        if self._stream is None:
            return contextlib.nullcontext()
        return torch.cuda.stream(self._stream)

    @torch.inference_mode()
    def upload(self, frame: np.ndarray) -> torch.Tensor:
        """``(H, W, 3)`` uint8 BGR host frame -> ``(1, 3, H', W')`` RGB [0, 1] on the device."""
        check_frame(frame)
        with self._on_stream():
            if self._staging is None:
                pixels = torch.from_numpy(frame)
            else:
                pixels = self._staging.to_device(frame)
            dtype = torch.float16 if self.half else torch.float32
            tensor = bgr8_to_input(pixels, self.input_multiple, dtype)
            if self.device.type == "cuda":
                tensor = tensor.contiguous(memory_format=torch.channels_last)
            return tensor

    def prepare(
        self, module: nn.Module, height: int, width: int
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """The callable ``infer`` runs (the module on its device; subclasses compile it)."""
        if self.compile_module:
            return torch.compile(module, mode="max-autotune-no-cudagraphs", dynamic=False)
        return module

    @torch.inference_mode()
    def infer(self, tensor: torch.Tensor) -> torch.Tensor:
        if self._module is None:
            raise EngineError("engine used before start()")
        try:
            with self._on_stream():
                output = self._replay(tensor) if self.cuda_graphs else self._module(tensor)
            if self._stream is not None:
                self._stream.synchronize()
        except Exception as error:
            raise EngineError(f"torch inference failed: {error}") from error
        return output

    def _replay(self, tensor: torch.Tensor) -> torch.Tensor:
        key = (*tensor.shape, *tensor.stride())
        graph = self._graphs.get(key)
        if graph is None:
            if len(self._graphs) >= MAX_GRAPHS:  # a stream of ever-new sizes: forget the oldest
                self._graphs.pop(next(iter(self._graphs)))
            graph = _CapturedGraph(self._module, tensor, self._stream)
            self._graphs[key] = graph
            log.debug("captured a CUDA graph for input %s", tuple(tensor.shape))
        return graph.run(tensor)

    @torch.inference_mode()
    def set_detail_gain(self, gain: float) -> bool:
        if not self._detail_stages:
            return False
        # On the engine's stream: ordered before the next run (or graph replay) on it.
        with self._on_stream():
            for stage in self._detail_stages:
                stage.set_gain(gain)
        return True

    @torch.inference_mode()
    def output_range(self, tensor: torch.Tensor, height: int, width: int) -> np.ndarray:
        """Per-channel ``[min, max]`` of an ``infer`` output, reduced on the device (the guard).

        See :mod:`smokeclear.engines.output_guard`; runs on the engine's stream.
        """
        with self._on_stream():
            return device_range(tensor, height, width)

    @torch.inference_mode()
    def download(self, tensor: torch.Tensor, height: int, width: int) -> np.ndarray:
        """Device ``(1, 3, H', W')`` RGB -> ``(height, width, 3)`` uint8 BGR host frame."""
        with self._on_stream():
            pixels = output_to_bgr8(tensor, height, width)
            if self._staging is None:
                return pixels.numpy()
            return self._staging.to_host(pixels)

    def close(self) -> None:
        self._module = None
        self._graphs.clear()
        self._detail_stages = []
        if self._staging is not None:
            self._staging.close()
            self._staging = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


#: Frame sizes whose graphs an engine keeps (each holds its activations' memory).
MAX_GRAPHS = 4


class _CapturedGraph:
    """One restorer call captured as a CUDA graph, with its static input and output."""

    def __init__(self, module: Callable, example: torch.Tensor, stream: torch.cuda.Stream) -> None:
        self.input = example.clone()
        # Warm up on the capture stream first: cuDNN picks its algorithms and the
        # caching allocator settles before anything is recorded.
        for _ in range(2):
            module(self.input)
        stream.synchronize()
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, stream=stream):
            self.output = module(self.input)

    def run(self, tensor: torch.Tensor) -> torch.Tensor:
        self.input.copy_(tensor)
        self.graph.replay()
        return self.output.clone()


class PinnedStaging:
    """Host <-> device copies of uint8 frames through reused page-locked buffers.

    One pinned pool per frame shape (:class:`~smokeclear.engines.cuda_runtime.PinnedPools`),
    its memory from torch's pinned allocator. An upload's host buffer stays out of its
    pool until the CUDA event recorded after its asynchronous copy has passed; a
    download's buffer is the returned array itself and goes back when the graph
    drops the frame. In steady state no frame allocates host memory.
    """

    def __init__(self, device: torch.device, stream: torch.cuda.Stream) -> None:
        self.device = device
        self.stream = stream
        self._blocks: dict[int, torch.Tensor] = {}
        self._pools = PinnedPools(self._allocate, self._free)
        # Uploads whose copy may still read their host buffer, oldest first.
        self._uploading: deque[tuple[torch.cuda.Event, HostTensor]] = deque()

    def to_device(self, frame: np.ndarray) -> torch.Tensor:
        """``(H, W, 3)`` uint8 host frame -> the same on the device (copy queued on the stream)."""
        while self._uploading and self._uploading[0][0].query():
            self._uploading.popleft()
        staged = self._pools.pool(frame.shape, np.uint8).take()
        np.copyto(staged.array, frame)
        pixels = torch.from_numpy(staged.array).to(self.device, non_blocking=True)
        done = torch.cuda.Event()
        done.record(self.stream)
        self._uploading.append((done, staged))
        return pixels

    def to_host(self, pixels: torch.Tensor) -> np.ndarray:
        """``(H, W, 3)`` uint8 device frame -> a pooled host array (waits for the copy)."""
        staged = self._pools.pool(tuple(pixels.shape), np.uint8)
        array = staged.take().array
        torch.from_numpy(array).copy_(pixels, non_blocking=True)
        done = torch.cuda.Event()
        done.record(self.stream)
        done.synchronize()
        return array

    def _allocate(self, nbytes: int) -> int:
        block = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
        self._blocks[block.data_ptr()] = block
        return block.data_ptr()

    def _free(self, pointer: int) -> None:
        self._blocks.pop(pointer, None)

    def close(self) -> None:
        self.stream.synchronize()
        self._uploading.clear()
        self._pools.close()
