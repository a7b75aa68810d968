"""``smokeclear bench``: restorers x backends x precisions x sizes x streams, in one run.

Two views of speed, measured in the same run so that every ratio compares like
with like:

- **engine only**: batch 1, warm-up excluded; upload, infer and download timed
  with the host's monotonic clock (``infer`` returns finished work: every engine
  synchronises), plus the GPU time of ``infer`` from CUDA events on the engine's
  stream (:func:`smokeclear.bench.engine_speed.time_engine`);
- **graph**: N copies of the live graph (synthetic source paced at a fixed rate ->
  the engine -> a NullSink) run concurrently, N = 1, 2, 4, 8 until the budget
  breaks: a stream achieves less than 95 % of the target rate, or bypasses more
  than 5 % of the frames it shows (:func:`budget_verdict`).

Ratios: speed-up of each backend against torch FP32 eager of the same chain at
the same size; FLOPs per frame counted by ``torch.utils.flop_counter`` on the torch
module; achieved FLOP/s against a dense matmul peak measured in the same run
(FP16 on a GPU, FP32 on the CPU); the papers' figures at their sizes. Cost: peak
GPU memory, host RSS, CPU time per stage. The report (markdown, plots, papers,
targets) is :mod:`smokeclear.bench.report`.

Backends that cannot run here, and precisions a backend does not offer, are
listed with the reason (``skipped``); a variant that fails while measured is
listed with its error (``failed``). Nothing is dropped silently.
"""

from __future__ import annotations

import logging
import os
import re
import resource
import shlex
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from smokeclear import __version__
from smokeclear.bench.engine_speed import machine, scene_frames, time_engine
from smokeclear.engines.base import Engine, padded_size
from smokeclear.engines.select import BACKENDS, cuda_device_name, importable, unavailable_reason
from smokeclear.errors import UserError
from smokeclear.registry import REGISTRY, parse_chain
from smokeclear.stream.frame import Mode
from smokeclear.stream.stats import END_TO_END, STAGES, percentiles, resident_memory_mb

log = logging.getLogger(__name__)

SCHEMA = "smokeclear-bench/1"
BENCH_BACKENDS = tuple(backend for backend in BACKENDS if backend != "auto")
#: --quick: no compile step (TensorRT and AOTInductor build for minutes on first use).
QUICK_BACKENDS = ("torch", "onnxruntime")
PRECISIONS = ("fp32", "fp16")
STREAMS = (1, 2, 4, 8)
GPU_SIZES = ((640, 360), (1280, 720), (1920, 1080), (3840, 2160))
CPU_SIZES = ((320, 180), (640, 360), (1280, 720))
QUICK_SIZES = {"cuda": ((640, 360),), "cpu": ((320, 180),)}
DEFAULT_FPS = {"cuda": 60.0, "cpu": 15.0}
#: The graph's budget holds while every stream achieves this share of the target rate...
MIN_FPS_FRACTION = 0.95
#: ...and shows at most this share of its frames raw (BYPASS).
MAX_BYPASS_RATE = 0.05
#: Frames the synthetic source renders up front and replays (rendering 1080p costs ~30 ms).
LOOP_FRAMES = 16
STAGE_THREADS = ("capture", "preprocess", "infer", "postprocess", "presenter")


@dataclass(frozen=True)
class BenchConfig:
    """What one bench run measures. Sizes are ``(width, height)``."""

    restorers: tuple[str, ...]  # each a restorer or a comma-separated chain
    backends: tuple[str, ...]
    precisions: tuple[str, ...]
    sizes: tuple[tuple[int, int], ...]  # both views
    paper_sizes: tuple[tuple[int, int], ...] = ()  # engine view only: the papers' sizes
    streams: tuple[int, ...] = STREAMS
    fps: float = 60.0
    graph_seconds: float = 10.0
    iterations: int = 100
    warmup: int = 10
    matmul_seconds: float = 3.0
    matmul_size: int | None = None  # default: 8192 (FP16, GPU), 2048 (FP32, CPU)
    device: str = "cpu"
    work_divisor: int = 1
    threads: int | None = None  # torch and onnxruntime CPU threads; None: theirs
    weights: dict[str, Path] = field(default_factory=dict)
    quick: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["sizes"] = [size_text(size) for size in self.sizes]
        data["paper_sizes"] = [size_text(size) for size in self.paper_sizes]
        data["weights"] = {name: str(path) for name, path in self.weights.items()}
        return data

    def command_line(self) -> str:
        """The command that repeats this run, every option spelled out."""
        parts = ["smokeclear", "bench", *(["--quick"] if self.quick else [])]
        for chain in self.restorers:
            parts += ["--restorer", chain]
        parts += [
            "--backends",
            ",".join(self.backends),
            "--precisions",
            ",".join(self.precisions),
            "--sizes",
            ",".join(size_text(size) for size in self.sizes),
            "--paper-sizes" if self.paper_sizes else "--no-paper-sizes",
            "--streams",
            ",".join(str(count) for count in self.streams),
            "--fps",
            f"{self.fps:g}",
            "--graph-seconds",
            f"{self.graph_seconds:g}",
            "--iterations",
            str(self.iterations),
            "--warmup",
            str(self.warmup),
            "--matmul-seconds",
            f"{self.matmul_seconds:g}",
            "--device",
            self.device,
            "--work-scale",
            {1: "1", 2: "0.5", 4: "0.25"}[self.work_divisor],
        ]
        if self.threads:
            parts += ["--threads", str(self.threads)]
        for name, path in self.weights.items():
            parts += ["--weights", f"{name}={path}"]
        return shlex.join(parts)


def size_text(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def make_config(
    *,
    quick: bool = False,
    device: str | None = None,
    restorers: tuple[str, ...] | None = None,
    backends: tuple[str, ...] | None = None,
    precisions: tuple[str, ...] | None = None,
    sizes: tuple[tuple[int, int], ...] | None = None,
    paper_sizes: bool | None = None,
    streams: tuple[int, ...] | None = None,
    fps: float | None = None,
    graph_seconds: float | None = None,
    iterations: int | None = None,
    warmup: int | None = None,
    matmul_seconds: float | None = None,
    work_divisor: int = 1,
    threads: int | None = None,
    weights: dict[str, Path] | None = None,
) -> BenchConfig:
    """A checked configuration; None means the default (for ``device`` and ``quick``).

    Raises:
        UserError: an unknown restorer or backend, or a value out of range.
    """
    from smokeclear.bench.report import PAPER_FIGURES

    if device is None:
        device = "cuda" if cuda_device_name() else "cpu"
    elif device == "cuda" and cuda_device_name() is None:
        raise UserError(
            "--device cuda was asked for but torch sees no CUDA GPU",
            "Check the NVIDIA driver (nvidia-smi), or leave --device out.",
        )
    chains = restorers or tuple(REGISTRY)
    for chain in chains:
        parse_chain(chain)  # unknown names are the user's error, before any work
    backends = backends or (QUICK_BACKENDS if quick else BENCH_BACKENDS)
    unknown = [backend for backend in backends if backend not in BENCH_BACKENDS]
    if unknown:
        raise UserError(
            f"unknown backend {unknown[0]!r} in --backends",
            f"Choose from: {', '.join(BENCH_BACKENDS)}.",
        )
    precisions = precisions or PRECISIONS
    if not set(precisions) <= set(PRECISIONS):
        raise UserError(f"bad --precisions {','.join(precisions)!r}", "Use fp32, fp16 or both.")
    if paper_sizes is None:  # with the default sizes of a full run
        paper_sizes = sizes is None and not quick
    if sizes is None:
        sizes = QUICK_SIZES[device] if quick else (GPU_SIZES if device == "cuda" else CPU_SIZES)
    singles = {chain for chain in chains if "," not in chain}
    extra_sizes: tuple[tuple[int, int], ...] = ()
    if paper_sizes:
        for figure in PAPER_FIGURES:
            size = (figure.width, figure.height)
            if figure.restorer in singles and size not in sizes and size not in extra_sizes:
                extra_sizes += (size,)
    streams = streams or ((1, 2) if quick else STREAMS)
    if any(not 1 <= count <= 64 for count in streams):
        raise UserError(f"--streams {streams} is out of range", "Use counts from 1 to 64.")
    fps = fps if fps is not None else DEFAULT_FPS[device]
    if not 1 <= fps <= 1000:
        raise UserError(f"--fps {fps} is out of range", "Use a rate between 1 and 1000.")
    config = BenchConfig(
        restorers=chains,
        backends=tuple(backends),
        precisions=tuple(precisions),
        sizes=tuple(sizes),
        paper_sizes=extra_sizes,
        streams=tuple(streams),
        fps=fps,
        graph_seconds=graph_seconds if graph_seconds is not None else (3.0 if quick else 10.0),
        iterations=iterations
        if iterations is not None
        else (20 if quick else 100 if device == "cuda" else 30),
        warmup=warmup if warmup is not None else (3 if quick else 10),
        matmul_seconds=matmul_seconds if matmul_seconds is not None else (1.0 if quick else 3.0),
        device=device,
        work_divisor=work_divisor,
        threads=threads,
        weights=dict(weights or {}),
        quick=quick,
    )
    if config.graph_seconds < 0 or config.iterations < 1 or config.warmup < 0:
        raise UserError(
            "--graph-seconds, --warmup must be >= 0 and --iterations >= 1",
            "Check the numbers given.",
        )
    if threads is not None and threads < 1:
        raise UserError(f"--threads {threads} must be at least 1", "Leave it out for the default.")
    return config


# --------------------------------------------------------------------------- variants


@dataclass(frozen=True)
class Variant:
    """One backend at one precision on one device."""

    backend: str
    precision: str
    device: str

    @property
    def baseline(self) -> bool:
        """torch FP32 eager: what every speed-up is measured against."""
        return self.backend == "torch" and self.precision == "fp32"

    @property
    def label(self) -> str:
        return f"{self.backend}-{self.precision}"


def variant_reason(backend: str, precision: str, device: str) -> str | None:
    """None when ``backend`` can run at ``precision`` on ``device`` here, else why not."""
    why = unavailable_reason(backend, device)
    if why is not None:
        return why
    if backend == "tensorrt" and precision == "fp32":
        return "smokeclear builds FP16 TensorRT engines only (strongly typed FP16 ONNX)"
    if backend in ("torch", "aoti") and precision == "fp16" and device != "cuda":
        return f"{backend} runs FP16 on a CUDA GPU only; this run is on the CPU"
    if backend == "onnxruntime" and precision == "fp16":
        import onnxruntime

        if device != "cuda" or "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            return (
                "onnxruntime's CPU provider upcasts FP16 models to FP32 (nothing to measure); "
                "FP16 needs onnxruntime-gpu on a CUDA GPU"
            )
    return None


def plan_variants(config: BenchConfig) -> tuple[list[Variant], list[dict[str, str]]]:
    """The variants to run, torch FP32 eager (the baseline) first, and the skipped ones.

    The baseline runs whenever torch can, asked for or not: every speed-up needs it.
    """
    runnable: list[Variant] = []
    skipped: list[dict[str, str]] = []
    baseline = Variant("torch", "fp32", config.device)
    if variant_reason("torch", "fp32", config.device) is None:
        runnable.append(baseline)
    for backend in BENCH_BACKENDS:
        for precision in PRECISIONS:
            variant = Variant(backend, precision, config.device)
            if variant == baseline and runnable:
                continue
            why = variant_reason(backend, precision, config.device)
            if why is None and backend not in config.backends:
                why = (
                    f"left out by --quick (it runs {', '.join(QUICK_BACKENDS)}: no compile step)"
                    if config.quick and config.backends == QUICK_BACKENDS
                    else "not in --backends"
                )
            elif why is None and precision not in config.precisions:
                why = "not in --precisions"
            if why is None:
                runnable.append(variant)
            else:
                skipped.append(
                    {
                        "backend": backend,
                        "precision": precision,
                        "device": config.device,
                        "reason": why,
                    }
                )
    return runnable, skipped


def make_engine(request: Any, variant: Variant, threads: int | None = None) -> Engine:
    """A fresh, unstarted engine of ``variant`` for ``request`` (an EngineRequest)."""
    if variant.backend in ("torch", "aoti"):
        from smokeclear.bench import backends

        # The baseline is eager; the others run as deployed (CUDA graphs on a GPU).
        graphs = variant.device == "cuda" and not variant.baseline
        kind = backends.Variant(variant.label, variant.backend, variant.precision == "fp16", graphs)
        return backends.make_engine(request, kind, variant.device)
    if variant.backend == "onnxruntime":
        from smokeclear.engines.onnxruntime_engine import OnnxRuntimeEngine
        from smokeclear.runtime import onnx_fp16_model, onnx_model

        path = onnx_fp16_model(request) if variant.precision == "fp16" else onnx_model(request)
        providers = ("CPUExecutionProvider",) if variant.device == "cpu" else None
        return OnnxRuntimeEngine(path, providers=providers, threads=threads)
    from smokeclear.runtime import tensorrt_engine

    return tensorrt_engine(request)


def engine_request(config: BenchConfig, chain: str) -> Any:
    from smokeclear.runtime import EngineRequest

    specs = tuple(parse_chain(chain))
    names = {spec.name for spec in specs}
    return EngineRequest(
        specs,
        device=config.device,
        work_divisor=config.work_divisor,
        weights={name: path for name, path in config.weights.items() if name in names},
    )


# --------------------------------------------------------------------------- measurements


def matmul_peak(device: str, seconds: float, size: int | None = None) -> dict[str, Any]:
    """Dense matmul FLOP/s here: FP16 on a GPU, FP32 on the CPU; the best timed window.

    Each window is ``torch.matmul`` of two ``size x size`` matrices (2 size^3 FLOPs),
    ten on a GPU between CUDA events, one on the CPU; windows repeat for ``seconds``.
    """
    import torch

    cuda = device == "cuda"
    dtype = torch.float16 if cuda else torch.float32
    size = size or (8192 if cuda else 2048)
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    b = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    out = torch.empty_like(a)
    torch.matmul(a, b, out=out)  # warm-up: library load, kernel choice
    if cuda:
        torch.cuda.synchronize()
    per_window = 10 if cuda else 1
    flops = 2 * size**3 * per_window
    best = 0.0
    windows = 0
    deadline = time.monotonic() + seconds
    while windows == 0 or time.monotonic() < deadline:
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(per_window):
                torch.matmul(a, b, out=out)
            end.record()
            end.synchronize()
            elapsed_s = start.elapsed_time(end) / 1e3
        else:
            t0 = time.perf_counter_ns()
            torch.matmul(a, b, out=out)
            elapsed_s = (time.perf_counter_ns() - t0) / 1e9
        best = max(best, flops / elapsed_s)
        windows += 1
    return {
        "device": device,
        "dtype": "fp16" if cuda else "fp32",
        "size": size,
        "seconds": seconds,
        "matmuls": windows * per_window,
        "flops_per_s": best,
        "method": f"best window of torch.matmul on two {size}x{size} matrices",
    }


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
    request: Any,
    variant: Variant,
    frames: list[np.ndarray],
    config: BenchConfig,
    flops: int | None,
    peak_flops_per_s: float | None,
) -> dict[str, Any]:
    """Engine-only figures of one variant at the size of ``frames``."""
    height, width = frames[0].shape[:2]
    memory = GpuMemory(variant.device)
    started = time.monotonic()
    engine = make_engine(request, variant, config.threads)
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
    return {
        "restorers": request.label,
        "backend": variant.backend,
        "precision": variant.precision,
        "device": variant.device,
        "engine": engine.name,
        "baseline": variant.baseline,
        "width": width,
        "height": height,
        "iterations": config.iterations,
        "warmup": config.warmup,
        "start_s": start_s,
        "fps": 1e9 / mean_ns["total"],
        "infer_fps": 1e9 / mean_ns["infer"],
        "mean_ms": {name: value / 1e6 for name, value in mean_ns.items()},
        "latency_ms": {name: asdict(percentiles(values)) for name, values in samples.items()},
        "flops_per_frame": flops,
        "achieved_flops_per_s": achieved,
        "achieved_flops_timing": timing,
        "fraction_of_peak": achieved / peak_flops_per_s if achieved and peak_flops_per_s else None,
        "speedup_vs_torch_fp32_eager": None,
        # Warm-up included; 100 % is one core busy (intra-op pools count too).
        "process_cpu_percent": cpu.figures["process_cpu_percent"],
        "rss_mb": resident_memory_mb(),
        **gpu_memory,
    }


def add_speedups(rows: list[dict[str, Any]]) -> None:
    """Mean host infer time of torch FP32 eager / that of each row, same chain and size."""
    baselines = {
        (row["restorers"], row["width"], row["height"]): row["mean_ms"]["infer"]
        for row in rows
        if row["baseline"]
    }
    for row in rows:
        baseline = baselines.get((row["restorers"], row["width"], row["height"]))
        row["speedup_vs_torch_fp32_eager"] = (
            baseline / row["mean_ms"]["infer"] if baseline is not None else None
        )


# --------------------------------------------------------------------------- graph view


def budget_verdict(
    achieved_fps: list[float], bypass_rates: list[float], target_fps: float
) -> str | None:
    """None while the frame-rate budget holds for every stream, else why it broke."""
    worst_fps, worst_bypass = min(achieved_fps), max(bypass_rates)
    reasons = []
    if worst_fps < MIN_FPS_FRACTION * target_fps:
        reasons.append(
            f"achieved {worst_fps:.1f} fps < {MIN_FPS_FRACTION:.0%} of {target_fps:g} fps"
        )
    if worst_bypass > MAX_BYPASS_RATE:
        reasons.append(f"bypassed {worst_bypass:.1%} of frames > {MAX_BYPASS_RATE:.0%}")
    return "; ".join(reasons) or None


def graph_warmup_frames(frames: int, fps: float) -> int:
    """Half a second of frames, at least 3, at most a quarter of the run."""
    return max(1, min(max(3, round(fps / 2)), frames // 4))


def stage_of(thread_name: str) -> str | None:
    """``infer-3`` -> ``infer``; None for threads that are not a graph stage."""
    stage = thread_name.split("-")[0]
    return stage if stage in STAGE_THREADS else None


def thread_cpu_seconds(native_id: int) -> float | None:
    """User + system CPU seconds of one thread of this process (Linux /proc), or None."""
    try:
        with open(f"/proc/self/task/{native_id}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # Fields 14 and 15 of stat(5) (utime, stime); the split starts at field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class StageCpu:
    """CPU use of the graph's threads by stage while the block runs, in % of one core.

    Stage threads are Python threads named after their stage (capture, preprocess,
    infer-N, postprocess; the bench names the presenters); a sampler reads their
    CPU time from /proc every ``interval_s`` (a thread's last ``interval_s`` before
    it exits is missed). Native pools (onnxruntime, OpenMP, CUDA) are not Python
    threads: their time is in ``other``, with the main thread's.
    """

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self._last: dict[int, tuple[str, float]] = {}
        self._done = threading.Event()
        self._sampler = threading.Thread(target=self._run, name="bench-cpu-sampler", daemon=True)
        self.figures: dict[str, Any] = {}

    def __enter__(self) -> StageCpu:
        self._wall = time.monotonic()
        self._times = os.times()
        self._sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._sampler.join()
        self._sample()
        wall = time.monotonic() - self._wall
        now = os.times()
        process = (now.user - self._times.user) + (now.system - self._times.system)
        stages: dict[str, float] | None = None
        if os.path.isdir("/proc/self/task"):
            stages = dict.fromkeys(STAGE_THREADS, 0.0)
            for stage, seconds in self._last.values():
                stages[stage] += seconds
            stages["other"] = max(0.0, process - sum(stages.values()))
        self.figures = {
            "process_cpu_percent": 100 * process / wall if wall > 0 else None,
            "stage_cpu_percent": None
            if stages is None
            else {stage: 100 * seconds / wall for stage, seconds in stages.items()},
            "cores": os.cpu_count(),
        }

    def _run(self) -> None:
        while not self._done.wait(self.interval_s):
            self._sample()

    def _sample(self) -> None:
        for thread in threading.enumerate():
            stage = stage_of(thread.name)
            if stage is None or thread.native_id is None:
                continue
            seconds = thread_cpu_seconds(thread.native_id)
            if seconds is not None:
                self._last[thread.native_id] = (stage, seconds)


def run_graphs(graphs: list[Any]) -> tuple[list[Any], dict[str, Any]]:
    """Run the graphs concurrently, each presenter in its own thread.

    Returns their RunReports and the CPU use by stage over the run.
    """
    reports: list[Any] = [None] * len(graphs)
    failures: list[BaseException] = []

    def drive(index: int) -> None:
        try:
            reports[index] = graphs[index].run()
        except BaseException as error:  # reported on the calling thread
            failures.append(error)

    threads = [
        threading.Thread(target=drive, args=(index,), name=f"presenter-{index}", daemon=True)
        for index in range(len(graphs))
    ]
    with StageCpu() as cpu:
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        except BaseException:  # Ctrl-C: stop every graph cleanly
            for graph in graphs:
                graph.stop.set()
            raise
    if failures:
        raise failures[0]
    return reports, cpu.figures


def graph_row(
    request: Any, variant: Variant, width: int, height: int, streams: int, config: BenchConfig
) -> dict[str, Any]:
    """``streams`` live graphs at once, each with its own engine, source and NullSink."""
    from smokeclear.stream.graph import Graph, GraphSettings
    from smokeclear.stream.sinks import NullSink
    from smokeclear.stream.sources.synthetic import SyntheticSource

    frames = max(4, round(config.graph_seconds * config.fps))
    warmup = graph_warmup_frames(frames, config.fps)
    settings = GraphSettings(
        width=width, height=height, fps=config.fps, max_frames=frames, warmup_frames=warmup
    )
    memory = GpuMemory(variant.device)
    engines: list[Engine] = []
    sources: list[SyntheticSource] = []
    graphs: list[Graph] = []

    def fresh_engine() -> Engine:
        return make_engine(request, variant, config.threads)

    try:
        for index in range(streams):
            engine = fresh_engine()
            engines.append(engine)
            engine.start(height, width)
            source = SyntheticSource(width, height, config.fps, seed=index, loop_frames=LOOP_FRAMES)
            sources.append(source)
            source.open()
            graphs.append(
                Graph(
                    source,
                    engine,
                    fresh_engine,
                    [NullSink()],
                    settings,
                    engine_reason=variant.label,
                )
            )
        reports, cpu = run_graphs(graphs)
        gpu_memory = memory.figures()
    finally:
        for graph in graphs:  # the watchdog may have replaced an engine
            if graph.engine not in engines:
                graph.engine.close()
        for engine in engines:
            engine.close()
        for source in sources:
            source.close()
    return summarise_graphs(
        graphs, reports, [source.skipped for source in sources], config.fps, warmup
    ) | {
        "restorers": request.label,
        "backend": variant.backend,
        "precision": variant.precision,
        "device": variant.device,
        "engine": reports[0].engine,
        "baseline": variant.baseline,
        "width": width,
        "height": height,
        "streams": streams,
        "fps_target": config.fps,
        "frames_per_stream": frames,
        "warmup_frames": warmup,
        "cpu": cpu,
        "rss_mb": resident_memory_mb(),
        **gpu_memory,
    }


def summarise_graphs(
    graphs: list[Any], reports: list[Any], skipped: list[int], fps: float, warmup: int
) -> dict[str, Any]:
    """Rates, budget verdict, counters and pooled latency of concurrent graph runs.

    Per stream, past the warm-up: ``achieved_fps`` is restored frames shown per second
    of the source's time (the target rate when every frame is shown restored);
    ``bypass_rate`` the share of shown frames that were raw.
    """
    processed_name, bypass_name = END_TO_END[Mode.PROCESSED], END_TO_END[Mode.BYPASS]
    achieved, bypass = [], []
    for graph, report, source_skipped in zip(graphs, reports, skipped, strict=True):
        shown = len(graph.latency.samples(processed_name))
        raw = len(graph.latency.samples(bypass_name))
        source_seconds = (report.counters.captured + source_skipped - warmup) / fps
        achieved.append(shown / source_seconds if source_seconds > 0 else 0.0)
        bypass.append(raw / (shown + raw) if shown + raw else 1.0)
    latency = {}
    for name in [*STAGES, *END_TO_END.values()]:
        pooled = [value for graph in graphs for value in graph.latency.samples(name)]
        if pooled:
            latency[name] = asdict(percentiles(pooled))
    pooled_end_to_end = [
        value for graph in graphs for value in graph.latency.samples(processed_name)
    ]
    quantiles = (
        [float(v) for v in np.percentile(np.asarray(pooled_end_to_end) / 1e6, np.arange(101))]
        if pooled_end_to_end
        else []
    )
    totals = {
        name: sum(getattr(report.counters, name) for report in reports)
        for name in (
            "captured",
            "processed",
            "shown_processed",
            "bypassed",
            "dropped",
            "late",
            "infer_errors",
            "engine_restarts",
        )
    }
    # Frames a starved capture thread skipped, as a camera's are lost while nobody reads.
    totals["source_skipped"] = sum(skipped)
    broken = budget_verdict(achieved, bypass, fps)
    return {
        "achieved_fps": achieved,
        "achieved_fps_min": min(achieved),
        "achieved_fps_total": sum(achieved),
        "bypass_rate": bypass,
        "bypass_rate_max": max(bypass),
        "budget_ok": broken is None,
        "budget_broken_because": broken,
        "budget_ms": reports[0].budget_ms,
        "counters": totals,
        "deadline_misses": totals["late"],
        "latency_ms": latency,
        "end_to_end_quantiles_ms": quantiles,
        "reports": [report.to_dict() for report in reports],
    }


# --------------------------------------------------------------------------- the run


def machine_details(device: str) -> dict[str, Any]:
    """The machine, its GPU and every library version that bears on the figures."""
    import importlib.metadata

    info: dict[str, Any] = dict(machine())
    info["smokeclear"] = __version__
    info["numpy"] = np.__version__
    info["cpu"] = cpu_model()
    info["cpu_count"] = os.cpu_count()
    for package in ("opencv-python", "onnx", "matplotlib", "cuda-python", "onnxruntime-gpu"):
        try:
            info[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            info[package] = None
    info["tensorrt"] = None
    if importable("tensorrt"):
        import tensorrt

        info["tensorrt"] = tensorrt.__version__
    import onnxruntime

    info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    if device == "cuda":
        import torch

        properties = torch.cuda.get_device_properties(0)
        info["gpu_memory_gb"] = properties.total_memory / 2**30
        info["compute_capability"] = f"{properties.major}.{properties.minor}"
        info["cudnn"] = torch.backends.cudnn.version()
        info["driver"] = nvidia_driver_version()
    return info


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def nvidia_driver_version() -> str | None:
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip().splitlines()[0] if result.stdout.strip() else None


def results_dir(machine_info: dict[str, Any]) -> Path:
    """``bench/results/<gpu>/`` (e.g. ``h100-80gb-hbm3``), ``bench/results/cpu/`` without one."""
    gpu = machine_info.get("gpu")
    if not gpu:
        return Path("bench") / "results" / "cpu"
    slug = re.sub(r"[^a-z0-9]+", "-", gpu.lower()).strip("-")
    return Path("bench") / "results" / (slug.removeprefix("nvidia-") or "gpu")


def _engine_line(row: dict[str, Any]) -> str:
    infer = row["latency_ms"]["infer"]
    text = (
        f"{row['fps']:.1f} fps (infer {row['infer_fps']:.1f} fps, p50 {infer['p50']:.2f} "
        f"p99 {infer['p99']:.2f} ms)"
    )
    if "gpu_infer" in row["latency_ms"]:
        text += f", GPU p50 {row['latency_ms']['gpu_infer']['p50']:.2f} ms"
    if row["achieved_flops_per_s"]:
        text += f", {row['achieved_flops_per_s'] / 1e9:.1f} GFLOP/s"
        if row["fraction_of_peak"] is not None:
            text += f" ({row['fraction_of_peak']:.1%} of peak)"
    return text


def _graph_line(row: dict[str, Any]) -> str:
    end_to_end = row["latency_ms"].get(END_TO_END[Mode.PROCESSED])
    latency = (
        f"end to end p50 {end_to_end['p50']:.1f} p99 {end_to_end['p99']:.1f} ms"
        if end_to_end
        else "no restored frame shown past the warm-up"
    )
    verdict = (
        "budget holds" if row["budget_ok"] else f"budget broken ({row['budget_broken_because']})"
    )
    return (
        f"achieved {row['achieved_fps_min']:.1f} fps (worst stream), bypassed "
        f"{row['bypass_rate_max']:.1%}, {latency}; {verdict}"
    )


def run_bench(config: BenchConfig, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure the whole matrix of ``config``; returns every figure (see the report)."""
    from smokeclear.bench.report import evaluate_targets, paper_references

    started = time.monotonic()
    load_before = os.getloadavg()
    if config.threads and importable("torch"):
        import torch

        torch.set_num_threads(config.threads)
    variants, skipped = plan_variants(config)
    engine_sizes = [*config.sizes, *config.paper_sizes]
    progress(
        f"bench on {config.device}: {', '.join(config.restorers)} | "
        f"{', '.join(v.label + (' (baseline)' if v.baseline else '') for v in variants)} | "
        f"sizes {', '.join(size_text(s) for s in engine_sizes)} | "
        f"graph at {config.fps:g} fps, {config.graph_seconds:g} s, streams "
        f"{','.join(map(str, config.streams))}"
    )
    for entry in skipped:
        progress(f"  skipped {entry['backend']} {entry['precision']}: {entry['reason']}")
    peak = None
    if importable("torch"):
        peak = matmul_peak(config.device, config.matmul_seconds, config.matmul_size)
        progress(
            f"matmul peak ({peak['dtype']}, {peak['size']}x{peak['size']}): "
            f"{peak['flops_per_s'] / 1e12:.3f} TFLOP/s"
        )
    peak_flops = peak["flops_per_s"] if peak else None
    engine_rows: list[dict[str, Any]] = []
    graph_rows: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []

    def record_failure(view: str, chain: str, variant: Variant, size: str, error: Exception):
        text = f"{type(error).__name__}: {str(error).splitlines()[0][:300] if str(error) else ''}"
        log.warning("bench: %s %s %s %s failed: %s", view, chain, variant.label, size, text)
        failed.append(
            {
                "view": view,
                "restorers": chain,
                "backend": variant.backend,
                "precision": variant.precision,
                "size": size,
                "error": text,
            }
        )

    step, steps = 0, len(config.restorers) * len(engine_sizes) * len(variants)
    for chain in config.restorers:
        request = engine_request(config, chain)
        for width, height in engine_sizes:
            frames = scene_frames(width, height)
            flops = count_flops(request, width, height)
            for variant in variants:
                step += 1
                prefix = f"[engine {step}/{steps}] {request.label} {variant.label} {width}x{height}"
                try:
                    row = engine_row(request, variant, frames, config, flops, peak_flops)
                except UserError:
                    raise
                except Exception as error:
                    record_failure("engine", request.label, variant, f"{width}x{height}", error)
                    progress(f"{prefix}: failed ({failed[-1]['error']})")
                    continue
                engine_rows.append(row)
                progress(f"{prefix} [{row['engine']}]: {_engine_line(row)}")
    add_speedups(engine_rows)
    if config.graph_seconds > 0:
        for chain in config.restorers:
            request = engine_request(config, chain)
            for width, height in config.sizes:
                for variant in variants:
                    for streams in config.streams:
                        prefix = (
                            f"[graph] {request.label} {variant.label} {width}x{height} "
                            f"x{streams} @ {config.fps:g} fps"
                        )
                        try:
                            row = graph_row(request, variant, width, height, streams, config)
                        except UserError:
                            raise
                        except Exception as error:
                            size = f"{width}x{height}"
                            record_failure("graph", request.label, variant, size, error)
                            progress(f"{prefix}: failed ({failed[-1]['error']})")
                            break
                        graph_rows.append(row)
                        progress(f"{prefix}: {_graph_line(row)}")
                        if not row["budget_ok"]:
                            break
    results: dict[str, Any] = {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": config.command_line(),
        "wall_s": None,
        "machine": machine_details(config.device)
        | {"load_average_before": list(load_before), "load_average_after": list(os.getloadavg())},
        "configuration": config.to_dict(),
        "skipped": skipped,
        "failed": failed,
        "matmul_peak": peak,
        "engine": engine_rows,
        "graph": graph_rows,
        "cost": {
            # ru_maxrss is in KiB on Linux: the peak of the whole run, not of one row.
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_mb_at_end": resident_memory_mb(),
        },
    }
    results["references"] = paper_references(results)
    results["targets"] = evaluate_targets(results)
    results["wall_s"] = time.monotonic() - started
    return results
