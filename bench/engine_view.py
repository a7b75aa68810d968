"""The engine-only view: one engine, batch 1, upload + infer + download timed per frame.

Every figure of one variant at one size is an :class:`EngineRow`; the rows become
the JSON's ``engine`` list (:meth:`EngineRow.to_dict`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from smokeclear.bench.config import BenchConfig
from smokeclear.bench.engine_speed import time_engine
from smokeclear.bench.stage_cpu import StageCpu
from smokeclear.bench.variants import EngineMaker, Variant
from smokeclear.engines.base import padded_size
from smokeclear.engines.select import importable
from smokeclear.runtime import EngineRequest
from smokeclear.stream.stats import percentiles, resident_memory_mb

log = logging.getLogger(__name__)

#: Keys of the GPU memory figures: written only for a run on a GPU.
GPU_MEMORY_KEYS = ("peak_gpu_memory_mb", "gpu_memory_in_use_delta_mb")


@dataclass(frozen=True)
class VariantAtSize:
    """What a bench row measured: a variant of one chain at one size, on a named engine.

    The leading keys of both views' rows (:class:`EngineRow` and the graph view's).
    """

    restorers: str
    backend: str
    precision: str
    device: str
    engine: str
    baseline: bool
    width: int
    height: int


@dataclass(frozen=True)
class EngineRow(VariantAtSize):
    """Engine-only figures of one variant of one chain at one size.

    Times in ms, rates in frames (or FLOPs) per second; ``latency_ms`` maps
    ``upload``, ``infer``, ``download``, ``total`` (and ``gpu_infer`` on a CUDA
    stream) to their percentiles.
    """

    iterations: int
    warmup: int
    start_s: float
    fps: float  # upload + infer + download in series
    infer_fps: float
    mean_ms: dict[str, float]
    latency_ms: dict[str, dict[str, float]]
    flops_per_frame: int | None
    achieved_flops_per_s: float | None
    achieved_flops_timing: str  # "gpu_infer" (CUDA events) or "infer" (host clock)
    fraction_of_peak: float | None
    speedup_vs_torch_fp32_eager: float | None
    process_cpu_percent: float | None  # warm-up included; 100 = one core busy
    rss_mb: float | None
    peak_gpu_memory_mb: float | None = None
    gpu_memory_in_use_delta_mb: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: GPU memory keys only where there is a GPU."""
        data = asdict(self)
        for key in GPU_MEMORY_KEYS:
            if data[key] is None:
                del data[key]
        return data


def count_flops(request: Any, width: int, height: int) -> int | None:
    """FLOPs of one frame through the torch module at its padded size.

    ``torch.utils.flop_counter`` counts convolutions and matmuls, 2 FLOPs per
    multiply-add, not element-wise ops. Counted on meta tensors (no compute); on
    the CPU if an op has no meta kernel. None without torch.
    """
    if not importable("torch"):
        return None
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from smokeclear.runtime import build_chain

    for device in ("meta", "cpu"):
        module = build_chain(request).to(device)
        padded_height, padded_width = padded_size(height, width, module.input_multiple)
        try:
            with torch.inference_mode(), FlopCounterMode(display=False) as counter:
                module(torch.zeros(1, 3, padded_height, padded_width, device=device))
        except Exception as error:  # an op without a meta kernel
            log.debug("counting FLOPs on %s failed (%s)", device, error)
            continue
        return int(counter.get_total_flops())
    return None


class GpuMemory:
    """Peak torch-allocator memory and the device's memory in use, on CUDA; nothing on CPU.

    The torch allocator sees the torch and AOTInductor engines; TensorRT and
    onnxruntime allocate outside it, so the device-wide figure (which counts other
    processes too) is given beside it.
    """

    def __init__(self, device: str) -> None:
        self.cuda = device == "cuda"
        self.used_before = 0
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            free, total = torch.cuda.mem_get_info()
            self.used_before = total - free

    def figures(self) -> dict[str, float]:
        """Call while the engines still hold their memory."""
        if not self.cuda:
            return {}
        import torch

        torch.cuda.synchronize()
        free, total = torch.cuda.mem_get_info()
        return {
            "peak_gpu_memory_mb": torch.cuda.max_memory_allocated() / 2**20,
            "gpu_memory_in_use_delta_mb": (total - free - self.used_before) / 2**20,
        }


def engine_row(
    engines: EngineMaker,
    request: EngineRequest,
    variant: Variant,
    frames: list[np.ndarray],
    config: BenchConfig,
    flops: int | None,
    peak_flops_per_s: float | None,
) -> EngineRow:
    """Engine-only figures of one variant at the size of ``frames`` (``(H, W, 3)`` uint8 BGR)."""
    height, width = frames[0].shape[:2]
    memory = GpuMemory(variant.device)
    started = time.monotonic()
    engine = engines.make(request, variant)
    try:
        engine.start(height, width)
        start_s = time.monotonic() - started
        with StageCpu() as cpu:
            samples = time_engine(engine, frames, config.iterations, config.warmup)
        gpu_memory = memory.figures()
    finally:
        engine.close()
    mean_ns = {name: float(np.mean(values)) for name, values in samples.items()}
    # FLOP/s from the device's own time when there is one (CUDA events), else the host's.
    timing = "gpu_infer" if "gpu_infer" in samples else "infer"
    achieved = flops / (mean_ns[timing] / 1e9) if flops else None
    return EngineRow(
        restorers=request.label,
        backend=variant.backend,
        precision=variant.precision,
        device=variant.device,
        engine=engine.name,
        baseline=variant.baseline,
        width=width,
        height=height,
        iterations=config.iterations,
        warmup=config.warmup,
        start_s=start_s,
        fps=1e9 / mean_ns["total"],
        infer_fps=1e9 / mean_ns["infer"],
        mean_ms={name: value / 1e6 for name, value in mean_ns.items()},
        latency_ms={name: asdict(percentiles(values)) for name, values in samples.items()},
        flops_per_frame=flops,
        achieved_flops_per_s=achieved,
        achieved_flops_timing=timing,
        fraction_of_peak=achieved / peak_flops_per_s if achieved and peak_flops_per_s else None,
        speedup_vs_torch_fp32_eager=None,
        process_cpu_percent=cpu.figures["process_cpu_percent"],
        rss_mb=resident_memory_mb(),
        **gpu_memory,
    )


def add_speedups(rows: list[EngineRow]) -> list[EngineRow]:
    """``rows`` with their speed-up: mean host infer time of torch FP32 eager over the
    row's, same chain and size (None where the baseline did not run)."""
    baselines = {
        (row.restorers, row.width, row.height): row.mean_ms["infer"] for row in rows if row.baseline
    }
    speedups = [baselines.get((row.restorers, row.width, row.height)) for row in rows]
    return [
        replace(
            row,
            speedup_vs_torch_fp32_eager=None if base is None else base / row.mean_ms["infer"],
        )
        for row, base in zip(rows, speedups, strict=True)
    ]


def engine_line(row: EngineRow) -> str:
    """One progress line of ``row``'s figures."""
    infer = row.latency_ms["infer"]
    text = (
        f"{row.fps:.1f} fps (infer {row.infer_fps:.1f} fps, p50 {infer['p50']:.2f} "
        f"p99 {infer['p99']:.2f} ms)"
    )
    if "gpu_infer" in row.latency_ms:
        text += f", GPU p50 {row.latency_ms['gpu_infer']['p50']:.2f} ms"
    if row.achieved_flops_per_s:
        text += f", {row.achieved_flops_per_s / 1e9:.1f} GFLOP/s"
        if row.fraction_of_peak is not None:
            text += f" ({row.fraction_of_peak:.1%} of peak)"
    return text
