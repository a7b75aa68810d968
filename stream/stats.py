"""Counters and latency percentiles per stage and end to end, warm-up excluded."""

from __future__ import annotations

import os
import threading
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from smokeclear.stream.frame import Frame, Mode

#: Stage name -> (start stamp, end stamp) on a Frame.
STAGES: dict[str, tuple[str, str]] = {
    "preprocess": ("preprocess_start", "preprocess_end"),
    "infer": ("infer_start", "infer_end"),
    "postprocess": ("postprocess_start", "postprocess_end"),
}
END_TO_END = {Mode.PROCESSED: "end to end, processed", Mode.BYPASS: "end to end, bypass"}


@dataclass(frozen=True)
class Percentiles:
    """Latency summary in milliseconds."""

    count: int
    p50: float
    p95: float
    p99: float
    max: float


def percentiles(samples_ns: list[int]) -> Percentiles:
    """p50 / p95 / p99 / max in ms of nanosecond samples (linear interpolation)."""
    if not samples_ns:
        return Percentiles(0, float("nan"), float("nan"), float("nan"), float("nan"))
    values = np.asarray(samples_ns, dtype=np.float64) / 1e6
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return Percentiles(len(values), float(p50), float(p95), float(p99), float(values.max()))


class LatencyLog:
    """Per-stage and end-to-end latency samples of frames past the warm-up.

    Args:
        warmup_frames: frames with ``seq`` below this are not recorded (first-use
            allocations, caches and clocks settling).
        max_samples: keep only the newest this many per name, so an always-on
            service's memory stays flat; None: keep all (a run's report).

    ``observers`` are called with ``(name, nanoseconds)`` for every sample recorded
    (e.g. a Prometheus histogram), on the thread that recorded it: keep them cheap.
    """

    def __init__(self, warmup_frames: int, max_samples: int | None = None) -> None:
        self.warmup_frames = warmup_frames
        self._samples: dict[str, list[int] | deque[int]] = defaultdict(
            list if max_samples is None else lambda: deque(maxlen=max_samples)
        )
        self._lock = threading.Lock()
        self.observers: list[Callable[[str, int], None]] = []

    def record_stages(self, frame: Frame) -> None:
        """Record the stage durations of a processed frame (called once per frame)."""
        if frame.seq < self.warmup_frames:
            return
        with self._lock:
            for stage, (start, end) in STAGES.items():
                if start in frame.stamps and end in frame.stamps:
                    self._add(stage, frame.stamps[end] - frame.stamps[start])

    def record_presented(self, frame: Frame, mode: Mode, presented_ns: int) -> None:
        """Record capture-to-display latency of a frame shown in ``mode``."""
        if frame.seq < self.warmup_frames or mode not in END_TO_END:
            return
        with self._lock:
            self._add(END_TO_END[mode], presented_ns - frame.captured_ns)

    def _add(self, name: str, sample_ns: int) -> None:
        self._samples[name].append(sample_ns)
        for observe in self.observers:
            observe(name, sample_ns)

    def samples(self, name: str) -> list[int]:
        """A copy of the recorded samples (ns) of a stage or end-to-end ``name``."""
        with self._lock:
            return list(self._samples.get(name, ()))

    def summary(self) -> dict[str, Percentiles]:
        with self._lock:
            order = [*STAGES, *END_TO_END.values()]
            return {
                name: percentiles(self._samples[name]) for name in order if self._samples.get(name)
            }


def resident_memory_mb() -> float | None:
    """This process's resident set size in MiB (Linux), None where unknown."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class Timeline:
    """Per-window counts, end-to-end latency and memory: shows drift over long runs.

    Args:
        window_s: window length in seconds.
    """

    def __init__(self, window_s: float = 10.0, max_windows: int | None = None) -> None:
        self.window_ns = int(window_s * 1e9)
        self.max_windows = max_windows  # keep only the newest (an always-on service)
        self.windows: list[dict[str, float | int | None]] = []
        self._start_ns: int | None = None
        self._window_start_ns = 0
        self._shown = {mode: 0 for mode in Mode}
        self._latencies: list[int] = []

    def record(self, mode: Mode, latency_ns: int | None, now_ns: int) -> None:
        self.tick(now_ns)
        self._shown[mode] += 1
        if mode is Mode.PROCESSED and latency_ns is not None:
            self._latencies.append(latency_ns)

    def tick(self, now_ns: int, final: bool = False) -> None:
        """Close the current window when it is over (or ``final``)."""
        if self._start_ns is None:
            self._start_ns = self._window_start_ns = now_ns
            return
        if not final and now_ns - self._window_start_ns < self.window_ns:
            return
        seconds = (now_ns - self._window_start_ns) / 1e9
        latency = percentiles(self._latencies)
        self.windows.append(
            {
                "start_s": round((self._window_start_ns - self._start_ns) / 1e9, 1),
                "seconds": round(seconds, 2),
                "shown_processed": self._shown[Mode.PROCESSED],
                "bypassed": self._shown[Mode.BYPASS],
                "no_signal": self._shown[Mode.NO_SIGNAL],
                "end_to_end_p50_ms": None if not latency.count else round(latency.p50, 2),
                "end_to_end_p99_ms": None if not latency.count else round(latency.p99, 2),
                "rss_mb": resident_memory_mb(),
            }
        )
        if self.max_windows is not None:
            del self.windows[: -self.max_windows]
        self._window_start_ns = now_ns
        self._shown = {mode: 0 for mode in Mode}
        self._latencies = []


@dataclass
class Counters:
    captured: int = 0
    processed: int = 0  # inference finished
    shown_processed: int = 0
    bypassed: int = 0  # live raw frame shown instead
    no_signal: int = 0  # NO SIGNAL cards shown
    late: int = 0  # processed, but past the deadline: discarded
    infer_errors: int = 0
    bad_frames: int = 0  # source frames in a format we cannot use
    engine_restarts: int = 0
    engine_switch_failures: int = 0  # Graph.switch_engine: the new engine did not start
    reconnects: int = 0  # a lost live source opened again
    recording_errors: int = 0  # recordings stopped by a failed write or a full disk
    # Outputs the output guard stopped, by problem (each frame was shown raw, BYPASS).
    guard_rejected: dict[str, int] = field(default_factory=dict)
    # BYPASS frames by why: deadline (missed or failed), switch (the bypass switch),
    # engine starting (a restorer switch warming up).
    bypassed_by_reason: dict[str, int] = field(default_factory=dict)

    def count_bypass(self, reason: str) -> None:
        self.bypassed_by_reason[reason] = self.bypassed_by_reason.get(reason, 0) + 1

    def count_rejection(self, problem: str) -> int:
        """Count an output the guard stopped; returns the total so far (all problems)."""
        self.guard_rejected[problem] = self.guard_rejected.get(problem, 0) + 1
        return sum(self.guard_rejected.values())

    @property
    def dropped(self) -> int:
        """Captured frames never shown, neither processed nor as BYPASS."""
        return max(0, self.captured - self.shown_processed - self.bypassed)


@dataclass
class RunReport:
    source: str
    engine: str
    backend_reason: str
    width: int
    height: int
    budget_ms: float
    realtime: bool
    seconds: float
    counters: Counters
    latency: dict[str, Percentiles]
    queues: dict[str, dict[str, int]] = field(default_factory=dict)
    stopped_by: str = "end of stream"
    timeline: list[dict[str, float | int | None]] = field(default_factory=list)

    @property
    def presented_fps(self) -> float:
        shown = self.counters.shown_processed + self.counters.bypassed
        return shown / self.seconds if self.seconds > 0 else 0.0

    @property
    def processed_fps(self) -> float:
        return self.counters.processed / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["counters"]["dropped"] = self.counters.dropped
        data["presented_fps"] = self.presented_fps
        data["processed_fps"] = self.processed_fps
        return data

    def format(self) -> str:
        c = self.counters
        mode = "live, deadline" if self.realtime else "offline, every frame"
        lines = [
            f"source {self.source} at {self.width}x{self.height}, engine {self.engine} "
            f"({self.backend_reason})",
            f"{self.seconds:.1f} s ({mode} {self.budget_ms:.1f} ms), stopped by {self.stopped_by}",
            f"frames: captured {c.captured} | processed {c.processed} "
            f"| shown processed {c.shown_processed} | bypassed {c.bypassed} "
            f"| dropped {c.dropped} | late {c.late}",
            f"rate: {self.processed_fps:.1f} fps processed, {self.presented_fps:.1f} fps shown",
        ]
        extras = {
            "inference errors": c.infer_errors,
            "engine restarts": c.engine_restarts,
            "unusable source frames": c.bad_frames,
            "NO SIGNAL frames": c.no_signal,
            "recording errors": c.recording_errors,
        }
        extras.update({f"outputs rejected as {why}": n for why, n in c.guard_rejected.items()})
        noted = [f"{name} {value}" for name, value in extras.items() if value]
        if noted:
            lines.append("also: " + ", ".join(noted))
        if not self.latency:
            lines.append("latency: no frame got past the warm-up; run longer to measure it")
        else:
            lines.append(
                f"{'latency (ms, warm-up excluded)':32} {'n':>6} {'p50':>8} {'p95':>8} "
                f"{'p99':>8} {'max':>8}"
            )
            for name, p in self.latency.items():
                lines.append(
                    f"  {name:30} {p.count:6d} {p.p50:8.2f} {p.p95:8.2f} {p.p99:8.2f} {p.max:8.2f}"
                )
        return "\n".join(lines)
