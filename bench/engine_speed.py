"""Engine-only speed: upload, infer and download of one restorer chain at one size.

Batch 1, warm-up excluded. ``infer`` returns only when the device work is done
(the torch CUDA backend synchronises its stream), so host monotonic timestamps
around each call measure finished work. Frames are synthetic-scene frames, rotated
among several so that caches do not flatter the numbers.

    python -m smokeclear.bench.engine_speed --restorer desmoke --size 640x360 \
        --work-scale 0.5 --iterations 100 --json bench/results/cpu/engine.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from smokeclear.cli import parse_size, parse_work_scale
from smokeclear.engines.base import Engine
from smokeclear.registry import parse_chain
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
        "work_divisor": request.work_divisor,
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


def machine() -> dict[str, str]:
    import onnxruntime
    import torch

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "threads": str(torch.get_num_threads()),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = str(torch.version.cuda)
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--restorer", default="desmoke")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--device")
    parser.add_argument(
        "--size", action="append", default=[], help="WIDTHxHEIGHT, repeatable (default 640x360)"
    )
    parser.add_argument("--work-scale", default="1")
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    request = EngineRequest(
        tuple(parse_chain(args.restorer)),
        backend=args.backend,
        device=args.device,
        work_divisor=parse_work_scale(args.work_scale),
    )
    results = []
    for size in args.size or ["640x360"]:
        width, height = parse_size(size)
        result = measure(request, width, height, args.iterations)
        results.append(result)
        total = result["latency_ms"]["total"]
        infer = result["latency_ms"]["infer"]
        print(
            f"{result['restorers']} {result['engine']} {width}x{height} "
            f"work 1/{request.work_divisor}: {result['fps']:.1f} fps, total p50 "
            f"{total['p50']:.2f} p99 {total['p99']:.2f} ms, infer p50 {infer['p50']:.2f} ms"
        )
    if args.json:
        write_results(args.json, results)
    return 0


def write_results(path: Path, results: list[dict[str, Any]]) -> None:
    """``{"machine": ..., "results": results}`` as JSON at ``path`` (folders made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine(), "results": results}, indent=2))


if __name__ == "__main__":
    from smokeclear.errors import exit_status

    raise SystemExit(exit_status("smokeclear.bench.engine_speed", main))
