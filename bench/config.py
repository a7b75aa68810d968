"""What one bench run measures: :class:`BenchConfig`, its defaults and its checks."""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from smokeclear.bench.papers import paper_figures
from smokeclear.engines.select import BACKENDS, cuda_device_name
from smokeclear.errors import UserError
from smokeclear.registry import REGISTRY, parse_chain

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
    work_scale: float = 1.0
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
            f"{self.work_scale:g}",
        ]
        if self.threads:
            parts += ["--threads", str(self.threads)]
        for name, path in self.weights.items():
            parts += ["--weights", f"{name}={path}"]
        return shlex.join(parts)


def size_text(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def default_restorers(quick: bool) -> tuple[str, ...]:
    """Every registered restorer; --quick: the first only (a first run exports each
    restorer's ONNX, ~17 s apiece on a 2-core CPU, and --quick is a minute's smoke test)."""
    names = tuple(REGISTRY)
    return names[:1] if quick else names


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
    work_scale: float = 1.0,
    threads: int | None = None,
    weights: dict[str, Path] | None = None,
) -> BenchConfig:
    """A checked configuration; None means the default (for ``device`` and ``quick``).

    Raises:
        UserError: an unknown restorer or backend, or a value out of range.
    """
    if device is None:
        device = "cuda" if cuda_device_name() else "cpu"
    elif device == "cuda" and cuda_device_name() is None:
        raise UserError(
            "--device cuda was asked for but torch sees no CUDA GPU",
            "Check the NVIDIA driver (nvidia-smi), or leave --device out.",
        )
    chains = restorers or default_restorers(quick)
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
        for figure in paper_figures():
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
        work_scale=work_scale,
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
