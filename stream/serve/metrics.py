"""Prometheus metrics of the daemon: ``smokeclear_*`` series with a ``pipeline`` label.

Counters are read from each pipeline's graph when scraped (:class:`PipelineCollector`),
so the display path pays nothing for them; latency histograms are fed by the graphs'
latency observers (one ``observe`` per sample, a few microseconds). No patient data
is in any series, so ``/metrics`` needs no token.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from smokeclear.stream.serve.pipelines import Pipelines

#: Seconds: from 1 ms (a stage on a GPU) to 1 s (a stalled CPU run).
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.010, 0.017, 0.033, 0.050, 0.1, 0.2, 0.5, 1.0)
#: LatencyLog names -> the ``stage`` label.
STAGE_LABELS = {
    "preprocess": "preprocess",
    "infer": "infer",
    "postprocess": "postprocess",
    "end to end, processed": "end_to_end_processed",
    "end to end, bypass": "end_to_end_bypass",
}


class Metrics:
    """The daemon's registry: the latency histogram and the pipelines' collector."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.latency = Histogram(
            "smokeclear_latency_seconds",
            "Per-stage and capture-to-display latency of frames past the warm-up.",
            ("pipeline", "stage"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._children: dict[tuple[str, str], object] = {}

    def observe_latency(self, pipeline: str, stage: str, seconds: float) -> None:
        key = (pipeline, stage)
        child = self._children.get(key)
        if child is None:
            child = self.latency.labels(pipeline, STAGE_LABELS.get(stage, stage))
            self._children[key] = child
        child.observe(seconds)  # type: ignore[attr-defined]

    def watch(self, pipelines: Pipelines) -> None:
        self.registry.register(PipelineCollector(pipelines))


class PipelineCollector(Collector):
    """Reads every pipeline's counters at scrape time."""

    def __init__(self, pipelines: Pipelines) -> None:
        self.pipelines = pipelines

    def collect(self) -> Iterator[Metric]:
        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> CounterMetricFamily:
            return CounterMetricFamily(f"smokeclear_{name}", doc, labels=("pipeline", *labels))

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"smokeclear_{name}", doc, labels=("pipeline", *labels))

        captured = counter("frames_captured", "Frames read from the source.")
        shown = counter("frames_shown", "Views shown, by mode.", ("mode",))
        processed = counter("frames_processed", "Frames the engine restored.")
        bypassed = counter(
            "frames_bypassed",
            "Raw frames shown as BYPASS, by why: deadline (missed or the engine failed), "
            "switch (the bypass switch), engine starting (a restorer switch).",
            ("reason",),
        )
        dropped = counter("frames_dropped", "Captured frames never shown.")
        late = counter("frames_late", "Restored frames discarded: past their deadline.")
        rejected = counter(
            "outputs_rejected", "Restored frames the output guard stopped.", ("problem",)
        )
        infer_errors = counter("inference_errors", "Inference calls that raised.")
        bad_frames = counter("source_bad_frames", "Source frames in an unusable format.")
        restarts = counter("engine_restarts", "Engines replaced by the watchdog.")
        switch_failures = counter("engine_switch_failures", "Restorer switches that failed.")
        reconnects = counter("source_reconnects", "Times a lost source was opened again.")
        pipeline_restarts = counter("pipeline_restarts", "Runs of the pipeline started again.")
        recording = gauge("recording", "1 while recording.")
        segments = counter("recording_segments", "Recording files started.")
        rec_bytes = gauge("recording_bytes", "Bytes in this pipeline's recording files.")
        rec_errors = counter("recording_errors", "Recordings stopped by a write or disk error.")
        rec_deleted = counter("recording_deleted", "Old recordings deleted to keep disk space.")
        free = gauge("disk_free_bytes", "Free space on the recording folder's disk.")
        up = gauge("showing", "1 while the view shows PROCESSED or BYPASS frames.")
        bypass_switch = gauge("bypass_switch", "1 while the bypass switch is on.")
        for pipeline in self.pipelines.all():
            name = pipeline.name
            c = pipeline.counters()
            captured.add_metric([name], c.captured)
            shown.add_metric([name, "processed"], c.shown_processed)
            shown.add_metric([name, "bypass"], c.bypassed)
            shown.add_metric([name, "no_signal"], c.no_signal)
            processed.add_metric([name], c.processed)
            for reason in ("deadline", "switch", "engine starting"):
                bypassed.add_metric([name, reason], c.bypassed_by_reason.get(reason, 0))
            dropped.add_metric([name], c.dropped)
            late.add_metric([name], c.late)
            for problem, count in c.guard_rejected.items():
                rejected.add_metric([name, problem], count)
            infer_errors.add_metric([name], c.infer_errors)
            bad_frames.add_metric([name], c.bad_frames)
            restarts.add_metric([name], c.engine_restarts)
            switch_failures.add_metric([name], c.engine_switch_failures)
            reconnects.add_metric([name], c.reconnects)
            pipeline_restarts.add_metric([name], pipeline.restarts)
            record = pipeline.recording
            files = record.segments()
            recording.add_metric([name], int(record.recording))
            segments.add_metric([name], len(files))
            rec_bytes.add_metric([name], sum(size_of(path) for path in files))
            rec_errors.add_metric([name], record.errors)
            rec_deleted.add_metric([name], record.deleted)
            if record.config is not None:
                free.add_metric([name], shutil.disk_usage(record.config.dir).free)
            up.add_metric([name], int(pipeline.showing))
            bypass_switch.add_metric([name], int(pipeline.bypass))
        yield from (captured, shown, processed, bypassed, dropped, late, rejected, infer_errors)
        yield from (bad_frames, restarts, switch_failures, reconnects, pipeline_restarts)
        yield from (recording, segments, rec_bytes, rec_errors, rec_deleted, free, up)
        yield bypass_switch
        gpu = gpu_memory_bytes()
        if gpu is not None:
            family = GaugeMetricFamily(
                "smokeclear_gpu_memory_bytes", "GPU memory torch has allocated.", labels=("device",)
            )
            for device, allocated in gpu.items():
                family.add_metric([device], allocated)
            yield family


def size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:  # deleted to make room, or renamed as it closed
        return 0


def gpu_memory_bytes() -> dict[str, int] | None:
    """torch's allocated memory per CUDA device; None without torch loaded or a GPU."""
    torch = sys.modules.get("torch")  # never import it here: a CPU-only daemon may lack it
    if torch is None or not torch.cuda.is_available():
        return None
    return {
        f"cuda:{index}": torch.cuda.memory_allocated(index)
        for index in range(torch.cuda.device_count())
    }
