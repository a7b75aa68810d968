"""The daemon's pipelines: one live graph each, in its own threads, in one process.

A :class:`Pipeline` runs :func:`~smokeclear.stream.live.run_live` in a thread of its
own, forever: a source that cannot connect shows NO SIGNAL and is retried (reconnect
``forever``), an engine that hangs or fails is replaced by the graph's watchdog, and
a run that ends anyway (a file source ends, a fatal error) is started again after a
back-off. One pipeline's fault never reaches another: they share nothing but the
process (and the GPU).

Two sinks ride on every graph: :class:`PreviewTap` keeps the newest shown view for
the MJPEG preview (a reference, no copy: the graph makes a fresh view per frame), and
:class:`RecordingSwitch` records when asked to, to ``<pipeline>-<UTC start>-NNNN.mkv``
segments, deleting the oldest first when the disk runs low if configured to.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from smokeclear.errors import UserError
from smokeclear.stream.frame import Mode
from smokeclear.stream.serve.config import PipelineConfig, RecordConfig
from smokeclear.stream.sinks import VideoRecorder
from smokeclear.stream.stats import Counters, percentiles

if TYPE_CHECKING:
    from smokeclear.runtime import EngineRequest
    from smokeclear.stream.graph import Graph
    from smokeclear.stream.live import LiveSettings

log = logging.getLogger(__name__)

#: Seconds between restarts of a pipeline whose run ended, doubling up to the last.
RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
#: Latency samples kept per stage for the status page (the histograms see all).
LATENCY_WINDOW = 2048
#: A pipeline is "showing frames" if its view changed this recently.
SHOWING_WITHIN_S = 2.0

#: ``(pipeline, stage, seconds)`` for every latency sample (the Prometheus histograms).
LatencyObserver = Callable[[str, str, float], None]


class PreviewTap:
    """A sink that keeps the newest view, ``(H, W, 3)`` uint8 BGR, for the preview."""

    name = "preview"

    def __init__(self) -> None:
        self.latest: np.ndarray | None = None
        self.views = 0  # views seen: the preview sends a frame only when this moved

    def start(self, width: int, height: int, fps: float) -> None:
        pass

    def write(self, view: np.ndarray) -> None:
        self.latest = view  # one reference store: nothing on the display path waits
        self.views += 1

    def pump(self) -> bool:
        return True

    def close(self) -> None:
        pass


class RecordingSwitch:
    """A sink that records while switched on, across graph restarts.

    Each start makes a new :class:`VideoRecorder` on ``<dir>/<pipeline>-<UTC start
    time>.mkv`` in segments (``...-0001.mkv``, ``...-0002.mkv``); a full disk stops
    it with an alert on the view (never the view itself).
    """

    name = "recorder"

    def __init__(self, pipeline: str, config: RecordConfig | None, live: bool = True) -> None:
        self.pipeline = pipeline
        self.config = config
        self.live = live
        self.wanted = config is not None and config.autostart
        self._format: tuple[int, int, float] | None = None
        self._recorder: VideoRecorder | None = None
        self._lock = threading.Lock()
        self.files: list[Path] = []  # finished segments, oldest first
        self.deleted = 0  # segments deleted to make room
        self._finished_errors = 0

    @property
    def recording(self) -> bool:
        recorder = self._recorder
        return recorder is not None and recorder.alert is None

    @property
    def alert(self) -> str | None:
        recorder = self._recorder
        return recorder.alert if recorder is not None else None

    @property
    def errors(self) -> int:
        recorder = self._recorder
        return self._finished_errors + (recorder.errors if recorder is not None else 0)

    @property
    def current_file(self) -> Path | None:
        recorder = self._recorder
        return recorder.writing if recorder is not None else None

    def segments(self) -> list[Path]:
        """Every segment this pipeline wrote in this process, the current one included."""
        recorder = self._recorder
        current = list(recorder.files) if recorder is not None else []
        partial = self.current_file
        return self.files + current + ([partial] if partial is not None else [])

    def start(self, width: int, height: int, fps: float) -> None:
        self._format = (width, height, fps)
        if self.wanted:
            self._begin()

    def write(self, view: np.ndarray) -> None:
        recorder = self._recorder
        if recorder is not None:
            recorder.write(view)

    def pump(self) -> bool:
        return True

    def close(self) -> None:
        """The graph ended: finalise the file (a restart records to a new one)."""
        with self._lock:
            self._end()
            self._format = None

    def set(self, on: bool) -> None:
        """Start or stop recording; a UserError when this pipeline has no ``record``."""
        if self.config is None:
            raise UserError(
                f"pipeline {self.pipeline} has no record section",
                "Add `record: {dir: /var/lib/smokeclear/recordings}` to it and reload.",
            )
        with self._lock:
            self.wanted = on
            if not on:
                self._end()
            elif self._format is not None and (self._recorder is None or self.alert):
                self._end()  # a recording stopped by a full disk: start a fresh one
                self._begin()

    def _begin(self) -> None:
        assert self.config is not None and self._format is not None
        started = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        path = Path(self.config.dir) / f"{self.pipeline}-{started}.mkv"
        recorder = VideoRecorder(
            path,
            lossless_queue=not self.live,
            segment_seconds=self.config.segment_seconds,
            min_free_gb=self.config.min_free_gb,
            make_room=self._delete_oldest if self.config.delete_oldest else None,
        )
        recorder.start(*self._format)
        self._recorder = recorder

    def _end(self) -> None:
        recorder, self._recorder = self._recorder, None
        if recorder is not None:
            recorder.close()
            self.files.extend(recorder.files)
            self._finished_errors += recorder.errors

    def _delete_oldest(self) -> None:
        """Delete this pipeline's oldest finished recordings until min_free_gb is free
        again (with one more GB of headroom, so it does not run at every check)."""
        assert self.config is not None and self.config.min_free_gb is not None
        folder = Path(self.config.dir)
        keep = {self.current_file}
        candidates = sorted(
            (p for p in folder.glob(f"{self.pipeline}-*.mkv") if p not in keep),
            key=lambda p: p.stat().st_mtime,
        )
        target = (self.config.min_free_gb + 1.0) * 1e9
        for path in candidates:
            if shutil.disk_usage(folder).free >= target:
                return
            size = path.stat().st_size
            path.unlink()
            self.deleted += 1
            log.warning("deleted %s (%.1f MB) to keep disk space for recording", path, size / 1e6)


@dataclasses.dataclass
class PipelineStatus:
    """What the API reports of one pipeline."""

    name: str
    source: str
    restorer: str
    engine: str | None
    mode: str | None
    showing: bool
    fps: float
    latency_ms: dict[str, dict[str, float]]
    recording: dict[str, Any]
    bypass: bool
    switching_to: str | None
    error: str | None
    restarts: int


class Pipeline:
    """One configured pipeline, run until :meth:`stop`.

    Args:
        config: its section of the YAML.
        observe_latency: called with ``(pipeline, stage, seconds)`` for every latency
            sample of every graph it runs (the Prometheus histograms).
    """

    def __init__(
        self, config: PipelineConfig, observe_latency: LatencyObserver | None = None
    ) -> None:
        self.config = config
        self.name = config.name
        self.restorer = config.restorer  # the API may switch it; a restart keeps the switch
        self.observe_latency = observe_latency
        self.preview = PreviewTap()
        self.recording = RecordingSwitch(config.name, config.record)
        self.graph: Graph | None = None
        self.error: str | None = None  # why the last run ended, when it failed
        self.restarts = 0
        self.previous_counters = Counters()  # totals of the graphs that ended
        self.stopping = threading.Event()
        self._bypass = False
        self._switch_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"pipeline-{self.name}", daemon=True)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the graph and finalise its recording (SIGTERM, a reload)."""
        self.stopping.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("pipeline %s did not stop within %g s", self.name, timeout)

    def settings(self) -> LiveSettings:
        from smokeclear.stream.live import LiveSettings, device_defaults

        config = self.config
        defaults = device_defaults(config.backend, config.device)
        return LiveSettings(
            source=config.source,
            request=self.request(self.restorer),
            defaults=defaults,
            size=parse_optional_size(config.size),
            fps=config.fps,
            budget_ms=config.budget_ms,
            display=config.display,
            view=config.view,
            reconnect="forever",
            fullscreen=True,
            latency_window=LATENCY_WINDOW,
        )

    def request(self, restorer: str) -> EngineRequest:
        """The engine request of this pipeline with ``restorer``; UserError if unknown."""
        from smokeclear.parsing import parse_work_scale
        from smokeclear.registry import parse_chain
        from smokeclear.runtime import EngineRequest
        from smokeclear.stream.live import device_defaults

        config = self.config
        scale = (
            parse_work_scale(config.work_scale)
            if config.work_scale
            else device_defaults(config.backend, config.device).work_scale
        )
        return EngineRequest(
            restorers=tuple(parse_chain(restorer)),
            backend=config.backend,
            device=config.device,
            work_scale=scale,
        )

    def _run(self) -> None:
        from smokeclear.stream.live import run_live

        attempt = 0
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                report = run_live(
                    self.settings(),
                    self.stopping,
                    sinks=[self.preview, self.recording],
                    on_graph=self._attach,
                )
                self.error = None if self.stopping.is_set() else f"stopped by {report.stopped_by}"
            except UserError as error:
                self.error = str(error)
                log.error("pipeline %s: %s", self.name, error)
            except Exception as error:  # a bug or a driver fault: this pipeline restarts
                self.error = f"{type(error).__name__}: {error}"
                log.exception("pipeline %s failed", self.name)
            finally:
                self._detach()
            if self.stopping.is_set():
                break
            attempt = 0 if time.monotonic() - started > 60 else attempt + 1
            delay = RESTART_BACKOFF_S[min(attempt, len(RESTART_BACKOFF_S) - 1)]
            log.warning("pipeline %s ended (%s); restarting in %g s", self.name, self.error, delay)
            self.restarts += 1
            if self.stopping.wait(delay):
                break

    def _attach(self, graph: Graph) -> None:
        graph.controls.set_bypass(self._bypass)
        if self.observe_latency is not None:
            observe = self.observe_latency
            graph.latency.observers.append(lambda stage, ns: observe(self.name, stage, ns / 1e9))
        self.graph = graph

    def _detach(self) -> None:
        graph, self.graph = self.graph, None
        if graph is not None:
            add_counters(self.previous_counters, graph.counters)

    # ------------------------------------------------------------------ controls

    @property
    def bypass(self) -> bool:
        return self._bypass

    def set_bypass(self, on: bool) -> None:
        self._bypass = on
        graph = self.graph
        if graph is not None:
            graph.controls.set_bypass(on)
        log.info("pipeline %s: bypass switch %s", self.name, "on" if on else "off")

    def switch_restorer(self, restorer: str, timeout: float = 300.0) -> tuple[bool, str]:
        """Switch to ``restorer`` live; ``(switched, why)``. UserError if it is unknown.

        The view shows BYPASS while the new engine starts; if it fails, the current
        one goes on. Waits for the outcome (at most ``timeout``).
        """
        from smokeclear.runtime import engine_factory

        request = self.request(restorer)  # UserError for an unknown restorer
        label = request.label
        with self._switch_lock:
            graph = self.graph
            if graph is None:
                self.restorer = label  # not running now: the next start uses it
                return True, "the pipeline is starting; it will start with it"
            failures = graph.counters.engine_switch_failures
            graph.switch_engine(engine_factory(request), label).join(timeout)
            if graph.counters.engine_switch_failures > failures or graph.switching_to:
                return False, f"{label} did not start (see the log); still running {self.restorer}"
            self.restorer = label
            return True, f"switched to {label}"

    # ------------------------------------------------------------------ status

    def counters(self) -> Counters:
        """Totals since the daemon started (graphs restarted included)."""
        totals = dataclasses.replace(
            self.previous_counters,
            guard_rejected=dict(self.previous_counters.guard_rejected),
            bypassed_by_reason=dict(self.previous_counters.bypassed_by_reason),
        )
        graph = self.graph
        if graph is not None:
            add_counters(totals, graph.counters)
        return totals

    @property
    def showing(self) -> bool:
        """Frames (PROCESSED or BYPASS) reached the view within SHOWING_WITHIN_S."""
        graph = self.graph
        return (
            graph is not None
            and graph.last_mode in (Mode.PROCESSED, Mode.BYPASS)
            and time.monotonic_ns() - graph.last_presented_ns < SHOWING_WITHIN_S * 1e9
        )

    def status(self) -> PipelineStatus:
        graph = self.graph
        latency: dict[str, dict[str, float]] = {}
        if graph is not None:
            for stage in ("infer", "end to end, processed", "end to end, bypass"):
                samples = graph.latency.samples(stage)
                if samples:
                    p = percentiles(samples)
                    latency[stage] = {"p50": round(p.p50, 2), "p99": round(p.p99, 2)}
        recording = self.recording
        current = recording.current_file
        return PipelineStatus(
            name=self.name,
            source=self.config.source,
            restorer=self.restorer,
            engine=graph.engine.name if graph is not None else None,
            mode=graph.last_mode.value if graph is not None and graph.last_mode else None,
            showing=self.showing,
            fps=round(graph.shown_fps, 1) if graph is not None else 0.0,
            latency_ms=latency,
            recording={
                "configured": recording.config is not None,
                "on": recording.recording,
                "file": str(current) if current else None,
                "segments": len(recording.segments()),
                "alert": recording.alert,
            },
            bypass=self.bypass,
            switching_to=graph.switching_to if graph is not None else None,
            error=self.error,
            restarts=self.restarts,
        )


def parse_optional_size(text: str | None) -> tuple[int, int] | None:
    from smokeclear.parsing import parse_size

    return parse_size(text) if text else None


def add_counters(total: Counters, more: Counters) -> None:
    """Add ``more`` into ``total``, field by field."""
    for field in dataclasses.fields(Counters):
        value = getattr(more, field.name)
        if isinstance(value, dict):
            merged = getattr(total, field.name)
            for key, count in value.items():
                merged[key] = merged.get(key, 0) + count
        else:
            setattr(total, field.name, getattr(total, field.name) + value)


class Pipelines:
    """The running pipelines by name; :meth:`apply` makes them match a config."""

    def __init__(self, observe_latency: LatencyObserver | None = None) -> None:
        self.observe_latency = observe_latency
        self.by_name: dict[str, Pipeline] = {}
        self._lock = threading.Lock()

    def apply(self, configs: tuple[PipelineConfig, ...]) -> dict[str, list[str]]:
        """Start new pipelines, restart changed ones, stop removed ones; unchanged
        ones keep running untouched. Returns the names by what happened to them."""
        wanted = {config.name: config for config in configs}
        changes: dict[str, list[str]] = {"started": [], "restarted": [], "stopped": [], "kept": []}
        with self._lock:
            for name, pipeline in list(self.by_name.items()):
                if wanted.get(name) == pipeline.config:
                    changes["kept"].append(name)
                    continue
                pipeline.stop()
                del self.by_name[name]
                changes["restarted" if name in wanted else "stopped"].append(name)
            for name, config in wanted.items():
                if name in self.by_name:
                    continue
                pipeline = Pipeline(config, self.observe_latency)
                self.by_name[name] = pipeline
                pipeline.start()
                if name not in changes["restarted"]:
                    changes["started"].append(name)
        return changes

    def stop_all(self) -> None:
        with self._lock:
            pipelines = list(self.by_name.values())
            for pipeline in pipelines:
                pipeline.stopping.set()  # all at once: each finalises its recording
            for pipeline in pipelines:
                pipeline.stop()
            self.by_name.clear()

    def get(self, name: str) -> Pipeline | None:
        return self.by_name.get(name)

    def all(self) -> list[Pipeline]:
        return list(self.by_name.values())

    def not_ready(self) -> list[str]:
        """Why the daemon is not ready: one reason per pipeline not showing frames."""
        reasons = []
        for pipeline in self.all():
            if pipeline.showing:
                continue
            graph = pipeline.graph
            if graph is None:
                why = pipeline.error or "starting"
            elif graph.last_mode is Mode.NO_SIGNAL:
                why = "NO SIGNAL from its source"
            else:
                why = "no frame shown yet"
            reasons.append(f"{pipeline.name}: {why}")
        return reasons or ([] if self.by_name else ["no pipelines"])
