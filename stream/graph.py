"""The threaded graph: capture -> preprocess -> infer -> postprocess -> presenter -> sinks.

One thread per stage, joined by :class:`~smokeclear.stream.queues.BoundedQueue`.

Live sources (cameras, streams, the synthetic scene): every queue holds one frame
and drops the oldest, so latency cannot build up; the presenter applies the
deadline rule (:mod:`smokeclear.stream.presenter`) and reads raw frames straight
from capture, so it keeps showing the live picture (BYPASS) whatever the engine
does. A watchdog replaces an engine that hangs or keeps failing with a fresh one,
started in the background, while the view stays in BYPASS. Every output passes
the output guard (:mod:`smokeclear.engines.output_guard`) first: a rejected frame
is shown raw, BYPASS; three rejections in a row count as a failing engine.

Offline sources (files, folders): queues block, every frame is processed and
presented in order; a frame whose inference fails is shown raw, marked BYPASS.

The presenter runs on the calling thread (OpenCV windows want the main thread);
sinks are closed, and recordings finalised, however the run ends.

Live controls (:class:`~smokeclear.stream.controls.LiveControls`): the viewer
changes the detail gain while the graph runs (``[`` and ``]`` in the window); the
infer stage hands each change to its engine before the next frame, and to a fresh
engine after a hang. A service also switches the surgeon's bypass
(:meth:`LiveControls.set_bypass`: raw frames, labelled) and the restorer
(:meth:`Graph.switch_engine`: BYPASS while the new engine warms, the old one kept if
the new one fails).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2

from smokeclear.engines.base import Engine
from smokeclear.engines.output_guard import guarded_download
from smokeclear.errors import FrameFormatError, UserError
from smokeclear.stream.controls import LiveControls
from smokeclear.stream.frame import Frame, Mode
from smokeclear.stream.infer import InferWorker
from smokeclear.stream.overlay import (
    compose_view,
    detail_gain_label,
    draw_status,
    no_signal_card,
    view_size,
)
from smokeclear.stream.presenter import DeadlinePresenter, Presentation
from smokeclear.stream.queues import END_OF_STREAM, BoundedQueue, Empty, Overflow, QueueClosed
from smokeclear.stream.sinks import Sink
from smokeclear.stream.sources import Source, SourceLost, to_bgr8
from smokeclear.stream.stats import Counters, LatencyLog, RunReport, Timeline

log = logging.getLogger(__name__)

#: Longest the presenter sleeps: the window must be pumped and stop requests seen.
PRESENTER_TICK_NS = 20_000_000
RECONNECT_BACKOFF_S = (0.25, 0.5, 1.0, 2.0, 4.0)


@dataclass(frozen=True)
class GraphSettings:
    width: int  # output frame size; sources are resized to it
    height: int
    fps: float  # frame-rate budget; also the recording rate
    budget_ms: float | None = None  # capture-to-display deadline; default one frame period
    view: str = "processed"
    detail_gain: float | None = None  # the engine's starting detail gain; None: no detail stage
    warmup_frames: int = 10
    max_frames: int | None = None
    no_signal_after_ms: float | None = None  # default: max(500 ms, 3 frame periods)
    restart_after_s: float = 2.0  # engine hung or failing this long -> fresh engine
    # Keep only the newest N latency samples per stage and N timeline windows (an
    # always-on service: flat memory); None: all (a run's report).
    latency_window: int | None = None

    @property
    def budget_ns(self) -> int:
        budget_ms = self.budget_ms if self.budget_ms is not None else 1000.0 / self.fps
        return int(budget_ms * 1e6)

    @property
    def no_signal_after_ns(self) -> int:
        if self.no_signal_after_ms is not None:
            return int(self.no_signal_after_ms * 1e6)
        return max(500_000_000, 3 * self.budget_ns)


class Graph:
    """Runs one source through an engine to the sinks.

    Args:
        source: opened.
        engine: started, for frames of ``settings.width x settings.height``.
        engine_factory: makes a fresh, unstarted engine of the same kind (recovery).
        sinks: started by the graph, closed by it.
        stop: set from outside (signals, a service) to end the run cleanly.
        engine_reason: why this backend, for the report.
    """

    def __init__(
        self,
        source: Source,
        engine: Engine,
        engine_factory: Callable[[], Engine],
        sinks: list[Sink],
        settings: GraphSettings,
        stop: threading.Event | None = None,
        engine_reason: str = "",
    ) -> None:
        self.source = source
        self.engine = engine
        self.engine_factory = engine_factory
        self.sinks = sinks
        self.settings = settings
        self.stop = stop or threading.Event()
        self.engine_reason = engine_reason
        self.controls = LiveControls(settings.detail_gain)
        self.realtime = source.live
        self.counters = Counters()
        self.latency = LatencyLog(settings.warmup_frames, settings.latency_window)
        self.timeline = Timeline(max_windows=settings.latency_window)
        self.fatal: BaseException | None = None
        self.wakeup = threading.Event()
        self.capture_done = threading.Event()
        live, offline = Overflow.DROP_OLDEST, Overflow.BLOCK
        policy = live if self.realtime else offline
        capacity = 1 if self.realtime else 4
        self.to_preprocess: BoundedQueue[Frame] = BoundedQueue(
            "capture->preprocess", capacity, policy
        )
        self.to_infer: BoundedQueue[Frame] = BoundedQueue("preprocess->infer", capacity, policy)
        self.to_postprocess: BoundedQueue[Frame] = BoundedQueue(
            "infer->postprocess", capacity, policy
        )
        self.processed: BoundedQueue[Frame] = BoundedQueue(
            "postprocess->presenter", 2 if self.realtime else 4, policy, self.wakeup
        )
        # Live only: every captured frame goes straight to the presenter too (BYPASS path).
        self.captured: BoundedQueue[Frame] = BoundedQueue(
            "capture->presenter", 4, Overflow.DROP_OLDEST, self.wakeup
        )
        self.infer_worker: InferWorker | None = None
        self._threads: list[threading.Thread] = []
        self._generation = 0
        self._next_restart_ns = 0
        self._restart_backoff_s = settings.restart_after_s
        self._shown_times: list[int] = []
        # Outputs of the current engine the guard stopped since its last good one (watchdog).
        self.guard_rejections_in_a_row = 0
        self.switching_to: str | None = None  # the restorer a switch_engine() is warming
        self.last_mode: Mode | None = None  # what the view showed last, and when (monotonic)
        self.last_presented_ns = 0

    # ------------------------------------------------------------------ public

    def run(self) -> RunReport:
        """Run until end of stream, ``max_frames``, a stop request or a fatal error."""
        started = time.monotonic()
        stopped_by = "end of stream"
        width, height = view_size(self.settings.view, self.settings.width, self.settings.height)
        started_sinks: list[Sink] = []
        try:
            for sink in self.sinks:
                sink.start(width, height, self.settings.fps)
                started_sinks.append(sink)
            self._start_threads()
            stopped_by = self._present_live() if self.realtime else self._present_offline()
        finally:
            self.stop.set()
            self._shutdown()
            for sink in started_sinks:
                try:
                    sink.close()
                except Exception as error:  # the others must still be finalised
                    log.error("closing %s failed: %s", sink.name, error)
            self.counters.recording_errors = sum(getattr(x, "errors", 0) for x in started_sinks)
        if isinstance(self.fatal, UserError):
            raise self.fatal
        if self.fatal is not None:
            raise RuntimeError(f"the graph stopped on an error: {self.fatal}") from self.fatal
        return self._report(time.monotonic() - started, stopped_by)

    # ------------------------------------------------------------------ threads

    def _start_threads(self) -> None:
        self._spawn("capture", self._capture)  # first: _shutdown relies on it
        self._spawn("preprocess", self._stage, self.to_preprocess, self.to_infer, self._preprocess)
        self._spawn(
            "postprocess", self._stage, self.to_postprocess, self.processed, self._postprocess
        )
        self.infer_worker = InferWorker(self, 0, self.engine)
        self.infer_worker.thread.start()

    def _spawn(self, name: str, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _capture(self) -> None:
        settings, source = self.settings, self.source
        seq = 0
        try:
            while not self.stop.is_set():
                if settings.max_frames is not None and seq >= settings.max_frames:
                    break
                try:
                    raw = source.read()
                except SourceLost as lost:
                    if not self.realtime:
                        raise
                    log.warning("%s; reconnecting (the view shows NO SIGNAL meanwhile)", lost)
                    if not self._reconnect():
                        break
                    continue
                if raw is None:
                    break
                try:
                    image = to_bgr8(raw)
                except FrameFormatError as error:
                    self.counters.bad_frames += 1
                    if self.counters.bad_frames in (1, 100) or self.counters.bad_frames % 1000 == 0:
                        log.error(
                            "skipping unusable frame from %s: %s (%d so far)",
                            source.name,
                            error,
                            self.counters.bad_frames,
                        )
                    continue
                if image.shape[:2] != (settings.height, settings.width):
                    image = cv2.resize(
                        image, (settings.width, settings.height), interpolation=cv2.INTER_AREA
                    )
                frame = Frame(seq, image, time.monotonic_ns())
                frame.stamps["captured"] = frame.captured_ns
                self.counters.captured += 1
                if self.realtime:
                    self.captured.put(frame)
                self.to_preprocess.put(frame)
                seq += 1
        except QueueClosed:
            pass
        except BaseException as error:  # a fatal source error ends the run with its message
            self.fatal = error
            self.stop.set()
        finally:
            self.to_preprocess.close()
            self.captured.close()
            self.capture_done.set()
            self.wakeup.set()

    def _reconnect(self) -> bool:
        for attempt in range(10**9):
            delay = RECONNECT_BACKOFF_S[min(attempt, len(RECONNECT_BACKOFF_S) - 1)]
            if self.stop.wait(delay):
                return False
            try:
                self.source.close()
                self.source.open()
            except Exception as error:
                if attempt in (0, 5) or attempt % 30 == 0:
                    log.warning("reconnect to %s failed (%s); retrying", self.source.name, error)
                continue
            log.info("reconnected to %s", self.source.name)
            self.counters.reconnects += 1
            return True
        return False

    def _stage(
        self, inbox: BoundedQueue[Frame], outbox: BoundedQueue[Frame], work: Callable[[Frame], bool]
    ) -> None:
        try:
            while True:
                item = inbox.get()
                if item is END_OF_STREAM:
                    break
                try:
                    forward = work(item)
                except Exception as error:
                    log.error(
                        "%s failed on frame %d: %s",
                        threading.current_thread().name,
                        item.seq,
                        error,
                    )
                    forward = not self.realtime  # offline: still show it, raw
                    item.engine = item.tensor = None
                if forward:
                    outbox.put(item)
        except QueueClosed:
            pass
        finally:
            outbox.close()

    def _preprocess(self, frame: Frame) -> bool:
        frame.stamp("preprocess_start")
        # Read once: the watchdog may swap self.engine from the presenter thread. The
        # frame keeps its engine, and only that engine infers and downloads it.
        engine = self.engine
        frame.tensor = engine.upload(frame.image)
        frame.engine = engine
        frame.stamp("preprocess_end")
        return True

    def _postprocess(self, frame: Frame) -> bool:
        if frame.tensor is None or frame.engine is None:  # offline frame not inferred
            return True
        frame.stamp("postprocess_start")
        engine, frame.engine = frame.engine, None
        output, problem = guarded_download(
            engine, frame.tensor, frame.image, self.settings.height, self.settings.width
        )
        frame.tensor = None
        if problem is not None:
            self._reject(frame, engine, problem)
            return not self.realtime  # live: the presenter shows the live frame (BYPASS)
        self.guard_rejections_in_a_row = 0
        frame.output = output
        frame.stamp("postprocess_end")
        self.counters.processed += 1
        self.latency.record_stages(frame)
        return True

    def _reject(self, frame: Frame, engine: Engine, problem: str) -> None:
        """Count and log an output the guard stopped; the frame goes on raw (BYPASS)."""
        total = self.counters.count_rejection(problem)
        if total in (1, 10) or total % 100 == 0:
            message = "%s output of frame %d is %s: shown raw (BYPASS), %d rejected so far"
            log.error(message, engine.name, frame.seq, problem, total)
        if engine is self.engine:  # frames of a replaced engine do not count against its successor
            self.guard_rejections_in_a_row += 1

    # ------------------------------------------------------------------ presenter

    def _present_live(self) -> str:
        settings = self.settings
        presenter = DeadlinePresenter(settings.budget_ns, settings.no_signal_after_ns)
        while True:
            if self.stop.is_set():
                return "fatal error" if self.fatal else "stop request"
            self.wakeup.clear()
            presenter.forced_bypass = self.controls.bypass or self.switching_to is not None
            for frame in self.captured.drain():
                presenter.on_captured(frame)
            for frame in self.processed.drain():
                presenter.on_processed(frame)
            now = time.monotonic_ns()
            presentation = presenter.poll(now)
            if presentation is not None:
                self._present(presentation)
            self.counters.late = presenter.late
            self._watchdog(now)
            if not all(sink.pump() for sink in self.sinks):
                return "user (window closed)"
            if self.capture_done.is_set() and not len(self.captured) and presenter.idle:
                if self.fatal is not None:
                    return "fatal error"
                # Capture also ends when stop is set (e.g. while reconnecting).
                return "stop request" if self.stop.is_set() else "end of stream"
            wake_at = min(presenter.next_wakeup_ns(now), now + PRESENTER_TICK_NS)
            remaining = (wake_at - time.monotonic_ns()) / 1e9
            if remaining > 0:
                self.wakeup.wait(remaining)

    def _present_offline(self) -> str:
        while True:
            if self.stop.is_set():
                return "fatal error" if self.fatal else "stop request"
            try:
                item = self.processed.get(timeout=PRESENTER_TICK_NS / 1e9)
            except Empty:
                if not all(sink.pump() for sink in self.sinks):
                    return "user (window closed)"
                continue
            if item is END_OF_STREAM:
                return "end of stream" if self.fatal is None else "fatal error"
            mode = Mode.PROCESSED if item.output is not None else Mode.BYPASS
            self._present(Presentation(mode, item))
            if not all(sink.pump() for sink in self.sinks):
                return "user (window closed)"

    def _present(self, presentation: Presentation) -> None:
        settings, frame = self.settings, presentation.frame
        detail = self._detail()
        if frame is None:
            width, height = view_size(settings.view, settings.width, settings.height)
            view = no_signal_card(width, height, detail)
            self.counters.no_signal += 1
        else:
            restored = frame.output if presentation.mode is Mode.PROCESSED else None
            alerts = [getattr(sink, "alert", None) for sink in self.sinks]
            if self.controls.bypass:
                alerts.insert(0, "RAW: bypass switch on")
            elif self.switching_to is not None:
                alerts.insert(0, f"starting {self.switching_to}")
            alert = " ".join(filter(None, alerts))
            view = draw_status(
                compose_view(settings.view, frame.image, restored), presentation.mode, detail, alert
            )
            if presentation.mode is Mode.PROCESSED:
                self.counters.shown_processed += 1
            else:
                self.counters.bypassed += 1
                self.counters.count_bypass(self._bypass_reason())
        presented_ns = time.monotonic_ns()
        self.last_mode, self.last_presented_ns = presentation.mode, presented_ns
        if frame is not None:
            frame.stamps["presented"] = presented_ns
            self.latency.record_presented(frame, presentation.mode, presented_ns)
        latency_ns = presented_ns - frame.captured_ns if frame is not None else None
        self.timeline.record(presentation.mode, latency_ns, presented_ns)
        self._shown_times.append(presented_ns)
        del self._shown_times[:-30]
        for sink in self.sinks:
            sink.write(view)

    def _bypass_reason(self) -> str:
        if self.controls.bypass:
            return "switch"
        if self.switching_to is not None:
            return "engine starting"
        return "deadline"

    def switch_engine(self, factory: Callable[[], Engine], label: str) -> threading.Thread:
        """Replace the engine with one of ``factory``'s, started in the background.

        The view shows BYPASS (labelled) while the new engine starts; if it fails to
        build or start, the current engine keeps running and the error is logged. The
        watchdog's replacements come from ``factory`` once it has taken over. Returns
        the thread doing it (join it to wait).
        """
        thread = threading.Thread(
            target=self._switch_engine, args=(factory, label), name="switch-engine", daemon=True
        )
        self.switching_to = label
        thread.start()
        return thread

    def _switch_engine(self, factory: Callable[[], Engine], label: str) -> None:
        try:
            engine = factory()
            engine.start(self.settings.height, self.settings.width)
        except Exception as error:
            self.counters.engine_switch_failures += 1
            log.error("could not start %s: %s (keeping %s)", label, error, self.engine.name)
            self.switching_to = None
            return
        previous = self.infer_worker
        self.engine_factory = factory
        self._generation += 1
        self.engine = engine
        self.infer_worker = InferWorker(self, self._generation, engine)
        self.infer_worker.thread.start()
        self.switching_to = None
        log.info("switched to %s (%s)", label, engine.name)
        if previous is not None and previous.engine is not None:
            previous.thread.join(timeout=self.settings.restart_after_s)
            # A frame it inferred may still be downloading in postprocess: give it time.
            if not previous.thread.is_alive() and not self.stop.wait(0.5):
                previous.engine.close()

    @property
    def shown_fps(self) -> float:
        """The rate of the last 30 views shown (0 before two)."""
        times = self._shown_times[-30:]
        if len(times) > 1 and times[-1] > times[0]:
            return (len(times) - 1) / ((times[-1] - times[0]) / 1e9)
        return 0.0

    def _detail(self) -> str:
        rate = self.shown_fps
        gain = detail_gain_label(self.controls.detail_gain, self.controls.detail_gain_fixed)
        return f"{self.engine.name}  {rate:4.1f} fps" + (f"  {gain}" if gain else "")

    def _watchdog(self, now_ns: int) -> None:
        """Replace an engine that hangs or keeps failing (the view is in BYPASS meanwhile)."""
        worker = self.infer_worker
        if worker is None or now_ns < self._next_restart_ns:
            return
        limit_ns = int(self.settings.restart_after_s * 1e9)
        hung = worker.busy_since_ns is not None and now_ns - worker.busy_since_ns > limit_ns
        failing = worker.consecutive_failures >= 3
        rejected = self.guard_rejections_in_a_row >= 3
        if not (hung or failing or rejected):
            return
        if hung:
            why = f"inference hung for {(now_ns - (worker.busy_since_ns or now_ns)) / 1e9:.1f} s"
        elif failing:
            why = f"inference failed {worker.consecutive_failures} times in a row"
        else:
            why = f"the output guard rejected {self.guard_rejections_in_a_row} frames in a row"
        self.guard_rejections_in_a_row = 0
        log.error("%s: starting a fresh engine in the background", why)
        self.counters.engine_restarts += 1
        self._generation += 1
        self.infer_worker = InferWorker(self, self._generation, None)
        self.infer_worker.thread.start()
        self._next_restart_ns = now_ns + int(self._restart_backoff_s * 1e9)
        self._restart_backoff_s = min(self._restart_backoff_s * 2, 60.0)

    # ------------------------------------------------------------------ shutdown

    @property
    def _queues(self) -> tuple[BoundedQueue[Frame], ...]:
        return (
            self.to_preprocess,
            self.to_infer,
            self.to_postprocess,
            self.processed,
            self.captured,
        )

    def _shutdown(self) -> None:
        for queue in self._queues:
            queue.close()
        for thread in self._threads:
            thread.join(timeout=2.0)
        worker = self.infer_worker
        if worker is not None:
            worker.thread.join(timeout=2.0)
        # Never close a capture device under a thread still reading it.
        capture = self._threads[0] if self._threads else None
        if capture is None or not capture.is_alive():
            self.source.close()
        else:
            log.warning(
                "capture thread did not stop in time; leaving %s to process exit", self.source.name
            )

    def _report(self, seconds: float, stopped_by: str) -> RunReport:
        self.timeline.tick(time.monotonic_ns(), final=True)
        queues = {
            queue.name: {
                "capacity": queue.capacity,
                "high_water": queue.high_water,
                "dropped": queue.dropped,
            }
            for queue in self._queues
            if queue.put_count
        }
        return RunReport(
            source=self.source.name,
            engine=self.engine.name,
            backend_reason=self.engine_reason,
            width=self.settings.width,
            height=self.settings.height,
            budget_ms=self.settings.budget_ns / 1e6,
            realtime=self.realtime,
            seconds=seconds,
            counters=self.counters,
            latency=self.latency.summary(),
            queues=queues,
            stopped_by=stopped_by,
            timeline=self.timeline.windows,
        )
