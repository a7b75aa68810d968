"""The graph view: N live graphs at once (synthetic source paced at a fixed rate ->
engine -> NullSink), and whether the frame-rate budget holds.

A row says what ran: how many frames the engines restored per second of source
time (``restored_fps``), how many of those the presenter showed within the
deadline (``achieved_fps``), and how many it could not use (``deadline_misses``:
restored too late for their frame, whose slot the live raw frame had filled).
The presenter's own ``late`` counter misses those once it has fallen back to
showing raw frames at capture, so a row built on it alone read "0.0 fps, 0
deadline misses" for an engine that ran: in bench/results/cpu/bench.json,
onnxruntime at 640x360 restored 105 of 150 frames (infer p50 86 ms against a
66.7 ms deadline at 15 fps) and the row showed none of them.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from smokeclear.bench.config import BenchConfig
from smokeclear.bench.engine_view import GPU_MEMORY_KEYS, GpuMemory, VariantAtSize
from smokeclear.bench.stage_cpu import StageCpu
from smokeclear.bench.variants import EngineMaker, Variant
from smokeclear.engines.base import Engine
from smokeclear.runtime import EngineRequest
from smokeclear.stream.frame import Frame, Mode
from smokeclear.stream.stats import (
    END_TO_END,
    STAGES,
    LatencyLog,
    percentiles,
    resident_memory_mb,
)

#: The graph's budget holds while every stream achieves this share of the target rate...
MIN_FPS_FRACTION = 0.95
#: ...and shows at most this share of its frames raw (BYPASS).
MAX_BYPASS_RATE = 0.05
#: Frames the synthetic source renders up front and replays (rendering 1080p costs ~30 ms).
LOOP_FRAMES = 16
COUNTERS = (
    "captured",
    "processed",
    "shown_processed",
    "bypassed",
    "dropped",
    "late",
    "infer_errors",
    "engine_restarts",
)


#: Capture to restored (postprocess done) of every frame restored past the warm-up,
#: shown or not: what the engine's frames cost against the deadline.
RESTORED = "capture to restored"


class RestoredLatencyLog(LatencyLog):
    """The graph's latency log, plus :data:`RESTORED` for every restored frame.

    The graph logs end-to-end latency only for frames it shows; a frame restored too
    late is dropped unlogged, so a row could not say by how much the engine missed.
    """

    def __init__(self, warmup_frames: int) -> None:
        super().__init__(warmup_frames)
        self._restored_ns: list[int] = []
        self._restored_lock = threading.Lock()

    def record_stages(self, frame: Frame) -> None:
        super().record_stages(frame)
        finished_ns = frame.stamps.get("postprocess_end")
        if frame.seq >= self.warmup_frames and finished_ns is not None:
            with self._restored_lock:
                self._restored_ns.append(finished_ns - frame.captured_ns)

    def samples(self, name: str) -> list[int]:
        if name != RESTORED:
            return super().samples(name)
        with self._restored_lock:
            return list(self._restored_ns)


@dataclass(frozen=True)
class GraphSummary:
    """What concurrent graphs measured: rates per stream, the verdict, pooled latency.

    Per stream, past the warm-up, in frames per second of the source's time:
    ``restored_fps`` made by the engine, ``achieved_fps`` of them shown within the
    deadline; ``bypass_rate`` is the share of shown frames that were raw.
    """

    achieved_fps: list[float]
    achieved_fps_min: float
    achieved_fps_total: float
    restored_fps: list[float]
    restored_fps_min: float
    bypass_rate: list[float]
    bypass_rate_max: float
    budget_ok: bool
    budget_broken_because: str | None
    budget_ms: float
    counters: dict[str, int]
    deadline_misses: int  # restored past the warm-up, not shown: late for their deadline
    latency_ms: dict[str, dict[str, float]]
    end_to_end_quantiles_ms: list[float]  # p0..p100 of restored frames shown
    reports: list[dict[str, Any]]


@dataclass(frozen=True)
class GraphRow(VariantAtSize):
    """One graph run: the variant, the size, the stream count and what they measured."""

    summary: GraphSummary
    streams: int
    fps_target: float
    frames_per_stream: int
    warmup_frames: int
    cpu: dict[str, Any]
    rss_mb: float | None
    peak_gpu_memory_mb: float | None = None
    gpu_memory_in_use_delta_mb: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, flat: the summary's keys first, GPU memory only on a GPU."""
        data = asdict(self)
        data = data.pop("summary") | data
        for key in GPU_MEMORY_KEYS:
            if data[key] is None:
                del data[key]
        return data


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
    engines: EngineMaker,
    request: EngineRequest,
    variant: Variant,
    width: int,
    height: int,
    streams: int,
    config: BenchConfig,
) -> GraphRow:
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
    started: list[Engine] = []
    sources: list[SyntheticSource] = []
    graphs: list[Graph] = []

    def fresh_engine() -> Engine:
        return engines.make(request, variant)

    try:
        for index in range(streams):
            engine = fresh_engine()
            started.append(engine)
            engine.start(height, width)
            source = SyntheticSource(width, height, config.fps, seed=index, loop_frames=LOOP_FRAMES)
            sources.append(source)
            source.open()
            graph = Graph(
                source, engine, fresh_engine, [NullSink()], settings, engine_reason=variant.label
            )
            graph.latency = RestoredLatencyLog(warmup)
            graphs.append(graph)
        reports, cpu = run_graphs(graphs)
        gpu_memory = memory.figures()
    finally:
        for graph in graphs:  # the watchdog may have replaced an engine
            if graph.engine not in started:
                graph.engine.close()
        for engine in started:
            engine.close()
        for source in sources:
            source.close()
    return GraphRow(
        summary=summarise_graphs(
            graphs, reports, [source.skipped for source in sources], config.fps, warmup
        ),
        restorers=request.label,
        backend=variant.backend,
        precision=variant.precision,
        device=variant.device,
        engine=reports[0].engine,
        baseline=variant.baseline,
        width=width,
        height=height,
        streams=streams,
        fps_target=config.fps,
        frames_per_stream=frames,
        warmup_frames=warmup,
        cpu=cpu,
        rss_mb=resident_memory_mb(),
        **gpu_memory,
    )


def summarise_graphs(
    graphs: list[Any], reports: list[Any], skipped: list[int], fps: float, warmup: int
) -> GraphSummary:
    """Rates, budget verdict, counters and pooled latency of concurrent graph runs.

    Args:
        graphs: finished :class:`~smokeclear.stream.graph.Graph` runs (their latency logs).
        reports: their RunReports, in the same order.
        skipped: frames each source skipped while its capture thread was starved.
        fps: the source's rate.
        warmup: frames excluded from every figure at the start of each run.
    """
    processed_name, bypass_name = END_TO_END[Mode.PROCESSED], END_TO_END[Mode.BYPASS]
    achieved, restored, bypass = [], [], []
    deadline_misses = 0
    for graph, report, source_skipped in zip(graphs, reports, skipped, strict=True):
        shown = len(graph.latency.samples(processed_name))
        raw = len(graph.latency.samples(bypass_name))
        # The log times postprocess once per restored frame past the warm-up, shown or not.
        made = len(graph.latency.samples("postprocess"))
        source_seconds = (report.counters.captured + source_skipped - warmup) / fps
        achieved.append(shown / source_seconds if source_seconds > 0 else 0.0)
        restored.append(made / source_seconds if source_seconds > 0 else 0.0)
        bypass.append(raw / (shown + raw) if shown + raw else 1.0)
        deadline_misses += max(0, made - shown)
    latency = {}
    for name in [*STAGES, *END_TO_END.values(), RESTORED]:
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
    totals = {name: sum(getattr(report.counters, name) for report in reports) for name in COUNTERS}
    # Frames a starved capture thread skipped, as a camera's are lost while nobody reads.
    totals["source_skipped"] = sum(skipped)
    broken = budget_verdict(achieved, bypass, fps)
    return GraphSummary(
        achieved_fps=achieved,
        achieved_fps_min=min(achieved),
        achieved_fps_total=sum(achieved),
        restored_fps=restored,
        restored_fps_min=min(restored),
        bypass_rate=bypass,
        bypass_rate_max=max(bypass),
        budget_ok=broken is None,
        budget_broken_because=broken,
        budget_ms=reports[0].budget_ms,
        counters=totals,
        deadline_misses=deadline_misses,
        latency_ms=latency,
        end_to_end_quantiles_ms=quantiles,
        reports=[report.to_dict() for report in reports],
    )


def graph_line(row: GraphRow) -> str:
    """One progress line of ``row``: restored and shown rates, latency, the verdict."""
    summary = row.summary
    end_to_end = summary.latency_ms.get(END_TO_END[Mode.PROCESSED])
    latency = (
        f"end to end p50 {end_to_end['p50']:.1f} p99 {end_to_end['p99']:.1f} ms"
        if end_to_end
        else f"no restored frame within the {summary.budget_ms:.1f} ms budget"
    )
    restored = summary.latency_ms.get(RESTORED)
    if restored and not end_to_end:
        latency += f" (restored p50 {restored['p50']:.1f} ms after capture)"
    verdict = (
        "budget holds" if summary.budget_ok else f"budget broken ({summary.budget_broken_because})"
    )
    return (
        f"restored {summary.restored_fps_min:.1f} fps, shown in time "
        f"{summary.achieved_fps_min:.1f} fps (worst stream), bypassed "
        f"{summary.bypass_rate_max:.1%}, {latency}; {verdict}"
    )
