"""One live run, from a source spec to a RunReport, without a command line.

``smokeclear run`` parses its arguments into :class:`LiveSettings` and calls
:func:`run_live`; a service running several pipelines in one process calls it once
per pipeline, each in its own thread with its own stop Event.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from smokeclear.errors import UserError
from smokeclear.parsing import refuse_overwriting
from smokeclear.stream.stats import RunReport

if TYPE_CHECKING:
    from smokeclear.runtime import EngineRequest
    from smokeclear.stream.graph import Graph
    from smokeclear.stream.sinks import Sink
    from smokeclear.stream.sources import Source

log = logging.getLogger("smokeclear")

DISPLAYS = ("auto", "window", "none")
VIEWS = ("processed", "side-by-side", "split")
#: never: a live source that cannot connect at start is an error (the CLI's default);
#: forever: keep retrying with backoff, showing NO SIGNAL, until it connects or the
#: run is stopped (unattended use). Mid-stream losses are always retried.
RECONNECT = ("never", "forever")


@dataclass(frozen=True)
class DeviceDefaults:
    """Defaults by where the engine runs: what holds its frame budget there."""

    width: int
    height: int
    fps: float
    work_scale: float


#: GPU: 720p60 at work scale 1. CPU (2 cores measured): 640x360 with the
#: network at work scale 0.5 and fast guided upsampling, at 15 fps.
DEVICE_DEFAULTS = {
    "cuda": DeviceDefaults(1280, 720, 60.0, 1.0),
    "cpu": DeviceDefaults(640, 360, 15.0, 0.5),
}


def device_defaults(backend: str, device: str | None) -> DeviceDefaults:
    """The defaults of the device that ``backend`` on ``device`` resolves to."""
    from smokeclear.engines.select import choose_backend

    return DEVICE_DEFAULTS[choose_backend(backend, device).device]


@dataclass(frozen=True)
class LiveSettings:
    """What one live run shows, and where.

    ``size``, ``fps``: None takes ``defaults`` for the synthetic scene, and the
    source's own otherwise; a file plays at its own rate unless ``fps`` is given.
    """

    source: str  # synthetic[:SEED], /dev/videoN, a camera index, a file, a folder, a URL
    request: EngineRequest
    defaults: DeviceDefaults
    size: tuple[int, int] | None = None  # output (width, height)
    fps: float | None = None  # frame-rate budget
    budget_ms: float | None = None  # capture-to-display deadline; None: one frame period
    display: str = "auto"  # one of DISPLAYS; auto: a window when a desktop is available
    view: str = "processed"  # one of VIEWS
    record: Path | None = None  # record the shown view to this video file
    max_frames: int | None = None  # stop after this many captured frames
    reconnect: str = "never"  # one of RECONNECT: a camera or stream that cannot connect at start
    camera_format: str | None = None  # MJPG, YUYV or NV12 to ask a camera for; None: its default
    record_segment_seconds: float | None = None  # a new --record file every N s; None: one
    min_free_gb: float | None = None  # stop recording below this much free disk; None: no check
    fullscreen: bool = False  # the window fills its monitor (an OR display)
    latency_window: int | None = None  # keep the newest N latency samples (a service); None: all

    def __post_init__(self) -> None:
        if self.fps is not None and not 1 <= self.fps <= 1000:
            raise UserError(f"--fps {self.fps} is out of range", "Use a rate between 1 and 1000.")
        budget = self.budget_ms
        if budget is not None and not (math.isfinite(budget) and 0 < budget <= 60_000):
            raise UserError(
                f"--budget-ms {budget:g} is out of range",
                "Give the capture-to-display deadline in milliseconds, above 0 and at most "
                "60000 (e.g. --budget-ms 33), or leave it out for one frame period.",
            )
        if self.max_frames is not None and self.max_frames < 1:
            raise UserError("--max-frames must be at least 1", "Leave it out to run until stopped.")
        if self.display not in DISPLAYS:
            raise UserError(f"unknown display {self.display!r}", f"Use one of {DISPLAYS}.")
        if self.reconnect not in RECONNECT:
            raise UserError(f"unknown --reconnect {self.reconnect!r}", f"Use one of {RECONNECT}.")
        if self.view not in VIEWS:
            raise UserError(f"unknown view {self.view!r}", f"Use one of {VIEWS}.")

    @property
    def synthetic(self) -> bool:
        return self.source.startswith("synthetic")


def run_live(
    settings: LiveSettings,
    stop: threading.Event | None = None,
    sinks: Sequence[Sink] = (),
    on_graph: Callable[[Graph], None] | None = None,
) -> RunReport:
    """Open the source, build and start the engine, run the graph until the source
    ends, ``max_frames`` or ``stop``; returns the run's report.

    ``sinks``: more sinks for the shown views (a service's preview, its recorder),
    started and closed by the graph. ``on_graph``: called with the graph before it
    runs, so a service can switch it live. On the main thread, SIGINT and SIGTERM set
    ``stop`` while the graph runs.
    """
    from smokeclear.runtime import create_engine, engine_factory
    from smokeclear.stream.graph import Graph, GraphSettings
    from smokeclear.stream.sinks import NullSink, VideoRecorder, WindowSink, display_available
    from smokeclear.stream.sources import create_source

    defaults, request = settings.defaults, settings.request
    size = settings.size
    if size is None and settings.synthetic:
        size = (defaults.width, defaults.height)
    fps_request = settings.fps or (defaults.fps if settings.synthetic else None)
    if settings.record is not None and Path(settings.source).exists():
        refuse_overwriting(settings.record, Path(settings.source), "--record")
    source = create_source(
        settings.source,
        *(size or (None, None)),
        fps=fps_request,
        camera_format=settings.camera_format,
    )
    if not connect(source, settings.reconnect) and size is None:
        size = (defaults.width, defaults.height)
        log.info("until %s connects the view is %dx%d (set it with --size)", source.name, *size)
    # Check the recording path before the engine is built (an export takes seconds).
    recorder = (
        VideoRecorder(
            settings.record,
            lossless_queue=not source.live,
            segment_seconds=settings.record_segment_seconds,
            min_free_gb=settings.min_free_gb,
        )
        if settings.record
        else None
    )
    try:
        width, height = size or (source.width, source.height)
        fps = settings.fps or (defaults.fps if settings.synthetic or not source.fps else source.fps)
        if not source.live and settings.fps is None and source.fps:
            fps = source.fps
        engine, choice = create_engine(request)
        log.info(
            "%s on %s %dx%d @ %g fps: %s backend (%s), network at work scale %g",
            request.label,
            source.name,
            width,
            height,
            fps,
            engine.name,
            choice.reason,
            request.work_scale,
        )
        engine.start(height, width)
        sinks = list(sinks)
        window = None
        if settings.display == "window" or (settings.display == "auto" and display_available()):
            window = WindowSink(fullscreen=settings.fullscreen)
            sinks.append(window)
        elif settings.display == "auto":
            log.info("no display found: running headless (--display none)")
        if recorder is not None:
            sinks.append(recorder)
        if not sinks:
            sinks.append(NullSink())
        graph_settings = GraphSettings(
            width=width,
            height=height,
            fps=fps,
            budget_ms=settings.budget_ms,
            view=settings.view,
            detail_gain=request.detail_gain,
            max_frames=settings.max_frames,
            warmup_frames=max(10, round(fps)),
            latency_window=settings.latency_window,
        )
        stop = stop or threading.Event()
        graph = Graph(
            source, engine, engine_factory(request), sinks, graph_settings, stop, choice.reason
        )
        if on_graph is not None:
            on_graph(graph)
        if window is not None:
            window.on_key = graph.controls.handle_key
            if request.detail_gain is not None:
                log.info("detail x%g: press ] or [ in the window to change it", request.detail_gain)
        with stop_on_signals(stop):
            return graph.run()
    finally:
        source.close()


def connect(source: Source, reconnect: str) -> bool:
    """Open ``source``; True when it connected.

    With ``reconnect`` "forever", a live source (camera, stream) that cannot connect
    is left closed and False returned: the graph's capture thread retries it with
    backoff and the view shows NO SIGNAL meanwhile. Otherwise its error is raised.
    """
    try:
        source.open()
    except UserError as error:
        if reconnect != "forever" or not source.live:
            raise
        log.warning(
            "%s; retrying until it connects (--reconnect forever; Ctrl-C stops)", error.problem
        )
        source.close()
        return False
    return True


def bypass_hint(report: RunReport) -> str | None:
    """What to change when a live run showed mostly BYPASS frames; None otherwise."""
    counters = report.counters
    if not (
        report.realtime and counters.captured > 20 and counters.bypassed > counters.shown_processed
    ):
        return None
    infer = report.latency.get("infer")
    spent = f" (inference p50 {infer.p50:.0f} ms)" if infer else ""
    return (
        f"most frames were bypassed{spent} against a {report.budget_ms:.0f} ms "
        "budget; try a smaller --size, --work-scale 0.5, a lower --fps or a GPU"
    )


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[threading.Event]:
    """SIGINT / SIGTERM set ``stop`` (a clean shutdown); a second Ctrl-C exits at once.

    Python delivers signals to the main thread only: elsewhere this does nothing, and
    whoever runs the thread sets ``stop``.
    """

    def handle(number: int, _: FrameType | None) -> None:
        log.info("%s: stopping (finishing recordings)", signal.Signals(number).name)
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for number in (signal.SIGINT, signal.SIGTERM):
            previous[number] = signal.signal(number, handle)
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
