"""``smokeclear bench``: restorers x backends x precisions x sizes x streams, in one run.

Two views of speed, measured in the same run so that every ratio compares like
with like:

- **engine only** (:mod:`~smokeclear.bench.engine_view`): batch 1, warm-up
  excluded; upload, infer and download timed with the host's monotonic clock
  (``infer`` returns finished work: every engine synchronises), plus the GPU time
  of ``infer`` from CUDA events on the engine's stream;
- **graph** (:mod:`~smokeclear.bench.graph_view`): N copies of the live graph
  (synthetic source paced at a fixed rate -> the engine -> a NullSink) run
  concurrently, N = 1, 2, 4, 8 until the budget breaks: a stream achieves less than
  95 % of the target rate, or bypasses more than 5 % of the frames it shows.

Ratios: speed-up of each backend against torch FP32 eager of the same chain at
the same size; FLOPs per frame counted by ``torch.utils.flop_counter`` on the torch
module; achieved FLOP/s against a dense matmul peak measured in the same run
(:mod:`~smokeclear.bench.machine`); the papers' figures at their sizes. Cost: peak
GPU memory, host RSS, CPU time per stage. The report (markdown, plots, papers,
targets) is :mod:`smokeclear.bench.report`.

Backends that cannot run here, and precisions a backend does not offer, are
listed with the reason (``skipped``); a variant that fails while measured is
listed with its error (``failed``). Nothing is dropped silently.
"""

from __future__ import annotations

import logging
import os
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from smokeclear.bench.config import SCHEMA, BenchConfig, size_text
from smokeclear.bench.engine_speed import scene_frames
from smokeclear.bench.engine_view import (
    EngineRow,
    add_speedups,
    count_flops,
    engine_line,
    engine_row,
)
from smokeclear.bench.graph_view import GraphRow, graph_line, graph_row
from smokeclear.bench.machine import machine_details, matmul_peak
from smokeclear.bench.variants import EngineMaker, Variant, engine_request, plan_variants
from smokeclear.engines.select import importable
from smokeclear.errors import UserError
from smokeclear.stream.stats import resident_memory_mb

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Failure:
    """A variant that failed while measured (the JSON's ``failed`` entries)."""

    view: str  # engine or graph
    restorers: str
    backend: str
    precision: str
    size: str
    error: str  # the exception's type and first line


def failure(view: str, chain: str, variant: Variant, size: str, error: Exception) -> Failure:
    text = f"{type(error).__name__}: {str(error).splitlines()[0][:300] if str(error) else ''}"
    log.warning("bench: %s %s %s %s failed: %s", view, chain, variant.label, size, text)
    return Failure(view, chain, variant.backend, variant.precision, size, text)


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
        progress(f"  skipped {entry.backend} {entry.precision}: {entry.reason}")
    cores = os.cpu_count() or 1
    if load_before[0] >= cores:
        progress(
            f"  warning: load average {load_before[0]:.1f} on {cores} cores before the run: "
            "other processes share the CPU and every figure will be low"
        )
    peak = None
    if importable("torch"):
        peak = matmul_peak(config.device, config.matmul_seconds, config.matmul_size)
        progress(
            f"matmul peak ({peak['dtype']}, {peak['size']}x{peak['size']}): "
            f"{peak['flops_per_s'] / 1e12:.3f} TFLOP/s"
        )
    engines = EngineMaker(config.threads)
    failed: list[Failure] = []
    engine_rows = measure_engines(config, variants, engines, peak, failed, progress)
    graph_rows = measure_graphs(config, variants, engines, failed, progress)
    results: dict[str, Any] = {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": config.command_line(),
        "wall_s": None,
        "machine": machine_details(config.device)
        | {"load_average_before": list(load_before), "load_average_after": list(os.getloadavg())},
        "configuration": config.to_dict(),
        "skipped": [asdict(entry) for entry in skipped],
        "failed": [asdict(entry) for entry in failed],
        "matmul_peak": peak,
        "engine": [row.to_dict() for row in engine_rows],
        "graph": [row.to_dict() for row in graph_rows],
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


def measure_engines(
    config: BenchConfig,
    variants: list[Variant],
    engines: EngineMaker,
    peak: dict[str, Any] | None,
    failed: list[Failure],
    progress: Callable[[str], None],
) -> list[EngineRow]:
    """The engine-only rows of every chain, size and variant; failures go to ``failed``."""
    peak_flops = peak["flops_per_s"] if peak else None
    engine_sizes = [*config.sizes, *config.paper_sizes]
    rows: list[EngineRow] = []
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
                    row = engine_row(engines, request, variant, frames, config, flops, peak_flops)
                except UserError:
                    raise
                except Exception as error:
                    failed.append(
                        failure("engine", request.label, variant, f"{width}x{height}", error)
                    )
                    progress(f"{prefix}: failed ({failed[-1].error})")
                    continue
                rows.append(row)
                progress(f"{prefix} [{row.engine}]: {engine_line(row)}")
    return add_speedups(rows)


def measure_graphs(
    config: BenchConfig,
    variants: list[Variant],
    engines: EngineMaker,
    failed: list[Failure],
    progress: Callable[[str], None],
) -> list[GraphRow]:
    """The graph rows: per chain, size and variant, more streams until the budget breaks."""
    rows: list[GraphRow] = []
    if config.graph_seconds <= 0:
        return rows
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
                        row = graph_row(engines, request, variant, width, height, streams, config)
                    except UserError:
                        raise
                    except Exception as error:
                        size = f"{width}x{height}"
                        failed.append(failure("graph", request.label, variant, size, error))
                        progress(f"{prefix}: failed ({failed[-1].error})")
                        break
                    rows.append(row)
                    progress(f"{prefix}: {graph_line(row)}")
                    if not row.summary.budget_ok:
                        break
    return rows
