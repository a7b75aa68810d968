"""Engine-only speed: upload, infer and download of one restorer chain at one size.

Batch 1, warm-up excluded. ``infer`` returns only when the device work is done
(the torch CUDA backend synchronises its stream), so host monotonic timestamps
around each call measure finished work. Frames are synthetic-scene frames, rotated
among several so that caches do not flatter the numbers.

    smokeclear bench engine-speed --restorer desmoke --size 640x360 \
        --work-scale 0.5 --iterations 100 --json bench/results/cpu/engine.json
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from smokeclear.engines.base import Engine
from smokeclear.runtime import EngineRequest, create_engine
from smokeclear.stream.stats import percentiles


def measure(
    request: EngineRequest, width: int, height: int, iterations: int, warmup: int = 5
) -> dict[str, Any]:
    """Time ``iterations`` frames after ``warmup`` untimed ones."""
    engine, choice = create_engine(request)
    engine.start(height, width)
    try:
        samples = time_engine(engine, scene_frames(width, height), iterations, warmup)
    finally:
        engine.close()
    stats = {name: percentiles(values).__dict__ for name, values in samples.items()}
    mean_total_s = sum(samples["total"]) / len(samples["total"]) / 1e9
    return {
        "restorers": request.label,
        "engine": engine.name,
        "backend_reason": choice.reason,
        "width": width,
        "height": height,
        "work_scale": request.work_scale,
        "iterations": iterations,
        "fps": 1.0 / mean_total_s,
        "latency_ms": stats,
    }


def scene_frames(width: int, height: int, count: int = 8) -> list[np.ndarray]:
    """Smoky synthetic-scene frames, ``(height, width, 3)`` uint8 BGR, to rotate among
    (so that caches do not flatter the numbers)."""
    from smokeclear.synthetic.scene import LaparoscopicScene

    scene = LaparoscopicScene(width, height, seed=11)
    return [scene.render(index * 17).smoky for index in range(count)]


def time_engine(
    engine: Engine,
    frames: list[np.ndarray],
    iterations: int,
    warmup: int = 5,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> dict[str, list[int]]:
    """Durations in ns of ``upload``, ``infer``, ``download`` and their ``total``.

    Args:
        engine: started for the size of ``frames``.
        frames: ``(H, W, 3)`` uint8 BGR, used in turn.
        iterations: timed frames, after ``warmup`` untimed ones.
        clock: monotonic nanoseconds (a parameter for the tests).

    Returns:
        One list per name, ``iterations`` long. On a CUDA stream also ``gpu_infer``:
        CUDA-event time of ``infer`` on the engine's stream (the end event is recorded
        once ``infer`` has synchronised, which adds microseconds of host return).
    """
    height, width = frames[0].shape[:2]
    stream = cuda_stream(engine)
    events = None
    if stream is not None:
        import torch

        events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
    samples: dict[str, list[int]] = {"upload": [], "infer": [], "download": [], "total": []}
    if events is not None:
        samples["gpu_infer"] = []
    for index in range(warmup + iterations):
        t0 = clock()
        tensor = engine.upload(frames[index % len(frames)])
        if events is not None:
            events[0].record(stream)
        t1 = clock()
        output = engine.infer(tensor)
        t2 = clock()
        if events is not None:
            events[1].record(stream)
        engine.download(output, height, width)
        t3 = clock()
        if index < warmup:
            continue
        for name, value in (
            ("upload", t1 - t0),
            ("infer", t2 - t1),
            ("download", t3 - t2),
            ("total", t3 - t0),
        ):
            samples[name].append(value)
        if events is not None:
            events[1].synchronize()
            samples["gpu_infer"].append(round(events[0].elapsed_time(events[1]) * 1e6))
    return samples


def cuda_stream(engine: Engine) -> Any:
    """The torch handle of the CUDA stream ``engine`` runs on; None for CPU engines.

    The torch and AOTInductor engines expose a ``torch.cuda.Stream``, TensorRT a raw
    ``cudaStream_t`` handle, as ``cuda_stream``; onnxruntime has none.
    """
    stream = getattr(engine, "cuda_stream", None)
    if stream is None:
        return None
    import torch

    if isinstance(stream, torch.cuda.Stream):
        return stream
    return torch.cuda.ExternalStream(int(stream))


def print_engine_speed(
    request: EngineRequest, sizes: list[tuple[int, int]], iterations: int, json_path: Path | None
) -> int:
    """``smokeclear bench engine-speed``: measure each size, print a line each, write JSON."""
    results = []
    for width, height in sizes:
        result = measure(request, width, height, iterations)
        results.append(result)
        total = result["latency_ms"]["total"]
        infer = result["latency_ms"]["infer"]
        print(
            f"{result['restorers']} {result['engine']} {width}x{height} "
            f"work scale {request.work_scale:g}: {result['fps']:.1f} fps, total p50 "
            f"{total['p50']:.2f} p99 {total['p99']:.2f} ms, infer p50 {infer['p50']:.2f} ms"
        )
    if json_path:
        write_results(json_path, results)
    return 0


def write_results(path: Path, results: list[dict[str, Any]]) -> None:
    """``{"machine": ..., "results": results}`` as JSON at ``path`` (folders made)."""
    from smokeclear.bench.machine import machine

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine(), "results": results}, indent=2))
