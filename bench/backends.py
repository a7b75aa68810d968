"""Compiled backends against torch FP32 eager, same network, same frames, one run.

For each restorer at each size this times engine-only inference (batch 1,
warm-up excluded, ``infer`` synchronised so host timestamps measure finished
device work) for every variant that can run here:

- ``eager-fp32``: torch eager, FP32 (the baseline every speed-up is against);
- ``torch-fp16-graphs``: torch FP16, channels-last, CUDA graphs (GPU only);
- ``aoti``: AOTInductor package (FP16 on a GPU, FP32 on the CPU);

and compares each variant's output with the eager FP32 output on real scene
frames (PSNR, max abs error), which is the FP16-vs-FP32 check on a GPU.

    smokeclear bench backends --restorer desmoke --size 1920x1080 \
        --json bench/results/h100/backends.json
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smokeclear.bench.engine_speed import write_results
from smokeclear.bench.variants import EngineMaker, Variant
from smokeclear.registry import get_restorer
from smokeclear.runtime import EngineRequest
from smokeclear.stream.stats import percentiles


def variants(device: str) -> list[Variant]:
    """torch FP32 eager first (the reference), then the compiled forms on ``device``."""
    if device == "cuda":
        return [
            Variant("torch", "fp32", device),
            Variant("torch", "fp16", device, cuda_graphs=True),
            Variant("aoti", "fp16", device),
            Variant("aoti", "fp16", device, cuda_graphs=True),
        ]
    return [Variant("torch", "fp32", device), Variant("aoti", "fp32", device)]


def label(variant: Variant) -> str:
    """``eager-fp32``, ``torch-fp16-graphs``, ``aoti-fp16``, ... (the rows' ``variant``)."""
    if variant.baseline:
        return "eager-fp32"
    return variant.label + ("-graphs" if variant.cuda_graphs else "")


def run_variant(
    engine, frames: list[np.ndarray], width: int, height: int, iterations: int, warmup: int
) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Timings of ``engine`` and its float outputs on ``frames`` (for the comparison)."""
    started = time.monotonic()
    engine.start(height, width)
    start_s = time.monotonic() - started
    infer_ns: list[int] = []
    for index in range(warmup + iterations):
        tensor = engine.upload(frames[index % len(frames)])
        t0 = time.perf_counter_ns()
        engine.infer(tensor)
        if index >= warmup:
            infer_ns.append(time.perf_counter_ns() - t0)
    outputs = []
    for frame in frames:
        result = engine.infer(engine.upload(frame))
        outputs.append(result[0, :, :height, :width].float().clamp(0, 1).cpu().numpy())
    stats = percentiles(infer_ns)
    timing = {
        "engine": engine.name,
        "start_s": start_s,
        "fps": 1e9 / (sum(infer_ns) / len(infer_ns)),
        "infer_ms": stats.__dict__,
    }
    if torch.cuda.is_available():
        timing["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    engine.close()
    return timing, outputs


def compare(reference: list[np.ndarray], outputs: list[np.ndarray]) -> dict[str, float]:
    pairs = list(zip(reference, outputs, strict=True))
    mse = sum(float(np.mean((a.astype(np.float64) - b) ** 2)) for a, b in pairs) / len(pairs)
    worst = max(float(np.abs(a - b).max()) for a, b in pairs)
    return {"psnr_db": math.inf if mse == 0 else 10 * math.log10(1 / mse), "max_abs_error": worst}


def compare_backends(
    restorers: list[str],
    sizes: list[tuple[int, int]] | None,
    iterations: int,
    warmup: int,
    json_path: Path | None,
) -> int:
    """``smokeclear bench backends``: every variant of each restorer at each size.

    Args:
        sizes: ``(width, height)``; None: 1920x1080 on a GPU, 320x180 on the CPU.
    """
    from smokeclear.synthetic.scene import LaparoscopicScene

    device = "cuda" if torch.cuda.is_available() else "cpu"
    engines = EngineMaker()
    results = []
    for name in restorers:
        request = EngineRequest((get_restorer(name),), device=device)
        for width, height in sizes or [(1920, 1080) if device == "cuda" else (320, 180)]:
            scene = LaparoscopicScene(width, height, seed=11)
            frames = [scene.render(index * 23).smoky for index in range(4)]
            reference: list[np.ndarray] | None = None
            baseline_fps = None
            for variant in variants(device):
                engine = engines.make(request, variant)
                if device == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                timing, outputs = run_variant(engine, frames, width, height, iterations, warmup)
                if reference is None:
                    reference, baseline_fps = outputs, timing["fps"]
                row = {
                    "restorer": name,
                    "size": f"{width}x{height}",
                    "variant": label(variant),
                    **timing,
                    "speedup_over_eager_fp32": timing["fps"] / baseline_fps,
                    "vs_eager_fp32": compare(reference, outputs),
                }
                results.append(row)
                print(
                    f"{name} {width}x{height} {row['variant']:18s} {row['fps']:8.1f} fps  "
                    f"p50 {row['infer_ms']['p50']:7.2f} ms  p99 {row['infer_ms']['p99']:7.2f} ms  "
                    f"x{row['speedup_over_eager_fp32']:.2f}  "
                    f"PSNR vs FP32 {row['vs_eager_fp32']['psnr_db']:.1f} dB",
                    flush=True,
                )
    if json_path:
        write_results(json_path, results)
    return 0
