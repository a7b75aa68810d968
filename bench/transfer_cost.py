"""CPU cost per frame of an engine's upload + download at 1080p.

``smokeclear bench transfer-cost`` prints, per backend, the CPU seconds
(this thread: ``time.thread_time``; the whole process: ``time.process_time``) that
``upload`` and ``download`` take per frame around a one-convolution restorer, and
separately the process CPU of ``infer``: a frame model (``frame_io``) moves the pixel
work from upload/download into the graph, so its inference grows by what the
conversions cost there. Backends: torch CPU, onnxruntime CPU (restorer model and
frame model), and torch CUDA when a GPU is present.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from smokeclear.bench.engine_speed import write_results


def tiny_restorer(multiple: int = 16):
    import torch
    from torch import nn

    class OneConv(nn.Module):
        input_multiple = multiple

        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)
            with torch.no_grad():
                self.conv.weight.copy_(torch.eye(3)[:, :, None, None])
                self.conv.bias.zero_()

        def forward(self, image):
            return self.conv(image)

    return OneConv().eval()


def cost_per_frame(engine, height: int, width: int, frames: int) -> dict[str, float]:
    """Mean CPU milliseconds per frame of ``upload`` + ``download``, and of ``infer``."""
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    engine.start(height, width)
    try:
        uploaded = engine.upload(frame)
        output = engine.infer(uploaded)
        engine.download(output, height, width)
        thread = process = inference = inference_wall = 0.0
        for _ in range(frames):
            thread_start, process_start = time.thread_time(), time.process_time()
            engine.upload(frame)
            engine.download(output, height, width)
            thread += time.thread_time() - thread_start
            process += time.process_time() - process_start
            infer_start, wall_start = time.process_time(), time.perf_counter()
            engine.infer(uploaded)
            inference += time.process_time() - infer_start
            inference_wall += time.perf_counter() - wall_start
    finally:
        engine.close()
    return {
        "thread_ms": 1e3 * thread / frames,
        "process_ms": 1e3 * process / frames,
        "infer_ms": 1e3 * inference / frames,
        "infer_wall_ms": 1e3 * inference_wall / frames,
    }


def engines(directory: Path):
    """``(label, engine)`` for every backend this machine runs."""
    import torch

    from smokeclear.engines.onnxruntime_engine import OnnxRuntimeEngine
    from smokeclear.engines.torch_engine import TorchEngine
    from smokeclear.export.onnx_export import export_onnx

    module = tiny_restorer()
    yield "torch-cpu", TorchEngine(lambda: module, device="cpu")
    path = directory / "one-conv.onnx"
    export_onnx(module, path, {"restorers": "one-conv"})
    yield "onnxruntime-cpu", OnnxRuntimeEngine(path, providers=("CPUExecutionProvider",))
    frames = directory / "one-conv.frames.onnx"
    export_onnx(module, frames, {"restorers": "one-conv"}, frame_io=True)
    yield "onnxruntime-frames", OnnxRuntimeEngine(frames, providers=("CPUExecutionProvider",))
    if torch.cuda.is_available():
        yield "torch-cuda", TorchEngine(lambda: tiny_restorer(), device="cuda")


def print_transfer_cost(sizes: list[tuple[int, int]], frames: int, json_path: Path | None) -> int:
    """``smokeclear bench transfer-cost``: one line per backend and size; the rows as JSON
    (beside the machine, as ``engine-speed`` writes them)."""
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for width, height in sizes:
            for label, engine in engines(Path(directory)):
                cost = cost_per_frame(engine, height, width, frames)
                size = f"{width}x{height}"
                rows.append({"backend": label, "size": size, "frames": frames, **cost})
                print(
                    f"{label:18s} upload + download at {size}: "
                    f"{cost['thread_ms']:6.2f} ms thread CPU, "
                    f"{cost['process_ms']:6.2f} ms process CPU; "
                    f"infer {cost['infer_ms']:6.2f} ms process CPU, "
                    f"{cost['infer_wall_ms']:6.2f} ms wall "
                    f"(per frame, {frames} frames)"
                )
    if json_path:
        write_results(json_path, rows)
    return 0
