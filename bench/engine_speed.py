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
from pathlib import Path
from typing import Any

from smokeclear.cli import parse_size, parse_work_scale
from smokeclear.registry import parse_chain
from smokeclear.runtime import EngineRequest, create_engine
from smokeclear.stream.stats import percentiles


def measure(
    request: EngineRequest, width: int, height: int, iterations: int, warmup: int = 5
) -> dict[str, Any]:
    """Time ``iterations`` frames after ``warmup`` untimed ones."""
    from smokeclear.synthetic.scene import LaparoscopicScene

    scene = LaparoscopicScene(width, height, seed=11)
    frames = [scene.render(index * 17).smoky for index in range(8)]
    engine, choice = create_engine(request)
    engine.start(height, width)
    samples: dict[str, list[int]] = {"upload": [], "infer": [], "download": [], "total": []}
    for index in range(warmup + iterations):
        frame = frames[index % len(frames)]
        t0 = time.perf_counter_ns()
        tensor = engine.upload(frame)
        t1 = time.perf_counter_ns()
        output = engine.infer(tensor)
        t2 = time.perf_counter_ns()
        engine.download(output, height, width)
        t3 = time.perf_counter_ns()
        if index >= warmup:
            for name, value in (
                ("upload", t1 - t0),
                ("infer", t2 - t1),
                ("download", t3 - t2),
                ("total", t3 - t0),
            ):
                samples[name].append(value)
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
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine(), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
