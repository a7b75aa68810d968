"""The graph under load and failure, with test-double engines on the synthetic scene.

Timing here is behaviour, not speed: a live graph must drop or bypass rather than
queue, must never show a frame late, and must recover from a hung engine.
Bounds are generous multiples of the budget so a busy CI machine cannot fail them.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from smokeclear.stream import graph as graph_module
from smokeclear.stream.controls import LiveControls
from smokeclear.stream.frame import Mode
from smokeclear.stream.graph import Graph, GraphSettings
from smokeclear.stream.sinks import NullSink, VideoRecorder
from smokeclear.stream.sources import SourceLost
from smokeclear.stream.sources.synthetic import SyntheticSource

WIDTH, HEIGHT = 64, 48


def make_graph(
    engine,
    frames: int,
    *,
    live: bool = True,
    fps: float = 60.0,
    factory=None,
    sinks=None,
    **settings,
) -> tuple[Graph, list[tuple[Mode, int]]]:
    source = SyntheticSource(WIDTH, HEIGHT, fps, seed=3, live=live, max_frames=frames)
    source.open()
    graph = Graph(
        source,
        engine,
        factory or (lambda: engine),
        sinks or [NullSink()],
        GraphSettings(WIDTH, HEIGHT, fps, warmup_frames=0, **settings),
    )
    shown: list[tuple[Mode, int]] = []
    original = graph._present

    def spy(presentation):
        frame = presentation.frame
        shown.append((presentation.mode, frame.seq if frame else -1))
        original(presentation)

    graph._present = spy
    return graph, shown


def test_fast_engine_shows_restored_frames(invert_engine_class):
    graph, shown = make_graph(invert_engine_class(), 30)
    report = graph.run()
    processed = [seq for mode, seq in shown if mode is Mode.PROCESSED]
    assert len(processed) >= 20, f"a 0 ms engine should fit a 16.7 ms budget: {report.format()}"
    assert report.counters.captured == 30


def test_slow_engine_does_not_build_up_latency(invert_engine_class):
    engine = invert_engine_class(delay_s=0.08)  # ~5 frame periods per frame at 60 fps
    graph, shown = make_graph(engine, 90)
    report = graph.run()
    counters = report.counters
    assert counters.bypassed >= 0.7 * counters.captured, report.format()
    assert engine.calls < counters.captured / 2, "frames must be dropped, not queued"
    for name, queue in report.queues.items():
        assert queue["high_water"] <= queue["capacity"], f"{name} overflowed"
    seqs = [seq for _, seq in shown if seq >= 0]
    assert seqs == sorted(set(seqs)), "shown frames only move forward, never repeat"
    assert seqs[-1] >= counters.captured - 3, "the view follows the live source to the end"
    bypass = report.latency["end to end, bypass"]
    assert bypass.max < 5 * report.budget_ms, f"bypass latency grew: {bypass}"
    if "end to end, processed" in report.latency:
        assert report.latency["end to end, processed"].max <= report.budget_ms + 1.0


@pytest.mark.expect_errors
def test_hung_engine_is_bypassed_then_replaced(invert_engine_class):
    hang = threading.Event()
    stuck = invert_engine_class(hang=hang)
    healthy = invert_engine_class()
    graph, shown = make_graph(stuck, 150, factory=lambda: healthy, restart_after_s=0.3)
    try:
        report = graph.run()
    finally:
        hang.set()
    modes = [mode for mode, _ in shown]
    assert Mode.BYPASS in modes[:10], "a hung engine shows the live frame within one budget"
    assert report.counters.engine_restarts >= 1
    assert healthy.started == 1, "the fresh engine was started in the background"
    assert Mode.PROCESSED in modes[modes.index(Mode.BYPASS) :], "restored frames come back"


@pytest.mark.expect_errors
def test_failing_engine_keeps_the_live_view_and_recovers(invert_engine_class):
    failing = invert_engine_class(fail_every=1)
    healthy = invert_engine_class()
    graph, _ = make_graph(failing, 120, factory=lambda: healthy, restart_after_s=0.2)
    report = graph.run()
    assert report.counters.infer_errors >= 3
    assert report.counters.engine_restarts >= 1
    assert report.counters.bypassed > 0 and report.counters.shown_processed > 0


def test_offline_source_loses_no_frame_and_keeps_order(invert_engine_class):
    graph, shown = make_graph(invert_engine_class(delay_s=0.01), 40, live=False)
    report = graph.run()
    assert shown == [(Mode.PROCESSED, seq) for seq in range(40)]
    assert report.counters.dropped == 0 and report.counters.processed == 40


@pytest.mark.expect_errors
def test_offline_inference_failure_shows_the_raw_frame_in_place(invert_engine_class):
    graph, shown = make_graph(invert_engine_class(fail_every=3), 12, live=False)
    graph.run()
    assert [seq for _, seq in shown] == list(range(12))
    assert [mode for mode, _ in shown][2] is Mode.BYPASS


def test_restored_pixels_reach_the_sink(invert_engine_class):
    class Collect(NullSink):
        def __init__(self):
            super().__init__()
            self.views: list[np.ndarray] = []

        def write(self, view):
            self.views.append(view)

    sink = Collect()
    graph, _ = make_graph(invert_engine_class(), 3, live=False, sinks=[sink], view="side-by-side")
    graph.run()
    assert sink.views[0].shape == (HEIGHT, 2 * WIDTH, 3)
    band = slice(27, 37)  # clear of the mode label (top) and the status line (bottom)
    raw_half, restored_half = sink.views[1][band, :WIDTH], sink.views[1][band, WIDTH:]
    np.testing.assert_array_equal(restored_half, 255 - raw_half)


class FlakySource:
    """Live source that is unplugged after 10 frames and comes back after 2 failed opens."""

    live = True
    name = "flaky"
    fps = 60.0
    width, height = WIDTH, HEIGHT

    def __init__(self) -> None:
        self.frames = 0
        self.opens = 0
        self.lost = False

    def open(self) -> None:
        self.opens += 1
        if self.lost and self.opens < 4:
            raise OSError("device busy")
        self.lost = False

    def read(self):
        if self.frames == 10 and not self.lost and self.opens == 1:
            self.lost = True
            raise SourceLost("camera unplugged")
        self.frames += 1
        threading.Event().wait(1 / 60)
        return np.full((HEIGHT, WIDTH), self.frames % 255, np.uint8)  # grey: converted

    def close(self) -> None:
        pass


def test_lost_source_shows_no_signal_and_reconnects(invert_engine_class, monkeypatch):
    monkeypatch.setattr(graph_module, "RECONNECT_BACKOFF_S", (0.2,))
    source = FlakySource()
    source.open()
    engine = invert_engine_class()
    graph = Graph(
        source,
        engine,
        lambda: engine,
        [NullSink()],
        GraphSettings(WIDTH, HEIGHT, 60.0, warmup_frames=0, max_frames=40, no_signal_after_ms=100),
    )
    report = graph.run()
    assert source.opens == 4, "two failed reconnects, then success"
    assert report.counters.no_signal >= 1, "the view said NO SIGNAL while the camera was gone"
    assert report.counters.captured == 40 and report.counters.shown_processed > 20


class BadFormatSource(FlakySource):
    def read(self):
        self.frames += 1
        threading.Event().wait(1 / 120)
        if self.frames % 4 == 0:
            return np.zeros((HEIGHT, WIDTH, 2), np.uint8)  # two channels: unusable
        return np.zeros((HEIGHT * 2, WIDTH * 2, 3), np.uint8)  # wrong size: resized


@pytest.mark.expect_errors
def test_unusable_frames_are_skipped_without_stopping(invert_engine_class):
    engine = invert_engine_class()
    graph = Graph(
        BadFormatSource(),
        engine,
        lambda: engine,
        [NullSink()],
        GraphSettings(WIDTH, HEIGHT, 60.0, warmup_frames=0, max_frames=30),
    )
    report = graph.run()
    assert report.counters.bad_frames >= 5 and report.counters.captured == 30


def test_stop_request_ends_a_live_run_and_finalises_the_recording(invert_engine_class, tmp_path):
    import cv2

    path = tmp_path / "live.mp4"
    recorder = VideoRecorder(path)
    graph, shown = make_graph(invert_engine_class(), 10_000, sinks=[recorder])
    threading.Timer(0.7, graph.stop.set).start()
    report = graph.run()
    assert report.stopped_by == "stop request"
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), "the recording is a playable file"
    frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    assert frames == recorder.frames_written == len(shown) - recorder.dropped
    assert frames > 10


# --------------------------------------------------------------------------- live controls


@pytest.mark.parametrize(
    ("start", "keys", "expected"),
    [
        (2.0, "]", 2.5),
        (2.0, "[[", 1.0),
        (0.5, "[[[", 0.0),  # clamped at 0
        (9.5, "]]]", 10.0),  # clamped at 10
    ],
)
def test_window_keys_step_the_detail_gain_within_its_range(start, keys, expected):
    controls = LiveControls(start)
    for key in keys:
        assert controls.handle_key(ord(key)) is True
    assert controls.detail_gain == expected
    assert controls.handle_key(ord("x")) is False, "other keys are not ours"


def test_controls_count_changes_and_ignore_keys_without_a_detail_stage():
    controls = LiveControls(2.0)
    assert controls.snapshot() == (0, 2.0)
    controls.handle_key(ord("]"))
    controls.handle_key(ord("["))
    assert controls.snapshot() == (2, 2.0), "every change counts, even back to the same value"
    controls.adjust_detail_gain(-5.0)
    controls.adjust_detail_gain(-5.0)
    assert controls.snapshot() == (3, 0.0), "a step that changes nothing is no change"
    smooth = LiveControls(None)
    assert smooth.handle_key(ord("]")) and smooth.snapshot() == (0, None)


class PressKey(NullSink):
    """Presses a key in the 'window' when the n-th view arrives; keeps the status lines."""

    def __init__(self, on_view: int, key: str) -> None:
        super().__init__()
        self.on_view, self.key = on_view, key
        self.on_key = None

    def write(self, view: np.ndarray) -> None:
        super().write(view)
        if self.frames == self.on_view and self.on_key is not None:
            self.on_key(ord(self.key))


def test_graph_hands_a_changed_gain_to_the_engine_before_the_next_frame(
    monkeypatch, gain_engine_class
):
    labels: list[str] = []
    original = graph_module.draw_status

    def spy(image, mode, detail="", alert=""):
        labels.append(detail)
        return original(image, mode, detail, alert)

    monkeypatch.setattr(graph_module, "draw_status", spy)
    engine = gain_engine_class(2.0)
    sink = PressKey(on_view=3, key="]")
    graph, _ = make_graph(engine, 12, live=False, sinks=[sink], detail_gain=2.0)
    sink.on_key = graph.controls.handle_key
    report = graph.run()
    assert report.counters.processed == 12
    assert engine.gains == [2.0, 2.5], "the start gain once, then the key's change once"
    assert engine.applied_at[0] == 0 and 3 <= engine.applied_at[1] < 12
    assert "detail x2" in labels[0] and "detail x2.5" in labels[-1], labels


@pytest.mark.expect_errors
def test_a_fresh_engine_after_a_hang_gets_the_current_gain(gain_engine_class):
    hang = threading.Event()

    class Stuck(gain_engine_class):
        def infer(self, tensor):
            hang.wait()
            return super().infer(tensor)

    stuck, healthy = Stuck(2.0), gain_engine_class(2.0)
    graph, _ = make_graph(stuck, 120, factory=lambda: healthy, restart_after_s=0.3, detail_gain=2.0)
    graph.controls.adjust_detail_gain(1.5)
    try:
        report = graph.run()
    finally:
        hang.set()
    assert report.counters.engine_restarts >= 1 and healthy.started == 1
    assert healthy.gains[:1] == [3.5] and healthy.applied_at[0] == 0, healthy.gains


def test_an_engine_that_cannot_change_the_gain_keeps_its_own(gain_engine_class):
    engine = gain_engine_class(2.0, live=False)
    sink = PressKey(on_view=2, key="]")
    graph, _ = make_graph(engine, 8, live=False, sinks=[sink], detail_gain=2.0)
    sink.on_key = graph.controls.handle_key
    graph.run()
    assert graph.controls.detail_gain == 2.0 and graph.controls.detail_gain_fixed
    assert engine.gains == [2.0], "refused once at the start; later keys change nothing"


class TaggingEngine:
    """Tags every tensor with the engine that made it; breaks down after ``healthy_frames``.

    Args:
        breakdown: "hang" (``infer`` blocks until ``release`` is set) or "fail" (raises).
        log: shared list of ``(upload, infer, download)`` engine ids per downloaded frame.
    """

    def __init__(self, number, breakdown, healthy_frames, release, log):
        self.name = f"tagging-{number}"
        self.number = number
        self.breakdown = breakdown
        self.healthy_frames = healthy_frames
        self.release = release
        self.log = log
        self.calls = 0

    def start(self, height, width):
        pass

    def upload(self, frame):
        return {"upload": self.number, "pixels": frame.copy()}

    def infer(self, tensor):
        self.calls += 1
        if self.calls > self.healthy_frames:
            if self.breakdown == "hang":
                self.release.wait()
            raise RuntimeError("simulated inference failure")
        return {**tensor, "infer": self.number, "pixels": 255 - tensor["pixels"]}

    def download(self, tensor, height, width):
        self.log.append((tensor["upload"], tensor.get("infer"), self.number))
        return tensor["pixels"][:height, :width]

    def set_detail_gain(self, gain):
        return False

    def close(self):
        pass


@pytest.mark.expect_errors
@pytest.mark.parametrize("breakdown", ["hang", "fail"])
def test_every_processed_frame_goes_through_one_engine_while_the_watchdog_swaps(breakdown):
    release, log, made = threading.Event(), [], []

    def factory():
        made.append(TaggingEngine(len(made) + 1, breakdown, 12, release, log))
        return made[-1]

    first = TaggingEngine(0, breakdown, 12, release, log)
    graph, shown = make_graph(first, 240, factory=factory, restart_after_s=0.05)
    graph._restart_backoff_s = 0.05  # many swaps within the run, not an ever-longer wait
    original_watchdog = graph._watchdog

    def watchdog_without_backoff(now_ns):
        original_watchdog(now_ns)
        graph._restart_backoff_s = 0.05

    graph._watchdog = watchdog_without_backoff
    try:
        report = graph.run()
    finally:
        release.set()
    assert report.counters.engine_restarts >= 2, f"the test needs swaps: {report.format()}"
    mixed = [path for path in log if len(set(path)) != 1]
    assert not mixed, f"(upload, infer, download) engines differ: {mixed[:5]} ({len(mixed)})"
    engines_that_processed = {path[0] for path in log}
    assert len(engines_that_processed) >= 2, "frames processed before and after a swap"
    assert report.counters.processed == len(log)
    assert any(mode is Mode.PROCESSED for mode, _ in shown)


# --------------------------------------------------------------------------- output guard


def broken_engine(invert_engine_class, kind: str):
    """An engine double whose output the guard must stop: all NaN, or one flat grey."""

    class Broken(invert_engine_class):
        def infer(self, tensor: np.ndarray) -> np.ndarray:
            self.calls += 1
            if kind == "nan":
                return np.full(tensor.shape, np.nan, np.float32)
            return np.full_like(tensor, 128)

        def download(self, tensor: np.ndarray, height: int, width: int) -> np.ndarray:
            return np.nan_to_num(tensor).astype(np.uint8)[:height, :width]

    engine = Broken()
    engine.name = f"{kind}-double"
    return engine


@pytest.mark.expect_errors
@pytest.mark.parametrize("kind", ["nan", "constant"])
def test_live_guard_shows_no_bad_output_and_replaces_the_engine(invert_engine_class, kind):
    engines = [broken_engine(invert_engine_class, kind) for _ in range(3)]
    fresh = iter(engines[1:])
    graph, shown = make_graph(engines[0], 60, factory=lambda: next(fresh), restart_after_s=0.1)
    report = graph.run()
    counters = report.counters
    assert counters.shown_processed == 0, f"a {kind} output was shown: {report.format()}"
    assert [mode for mode, _ in shown].count(Mode.BYPASS) == counters.bypassed > 0
    reason = {"nan": "not finite (NaN or inf)", "constant": "constant"}[kind]
    assert any(reason in why for why in counters.guard_rejected), counters.guard_rejected
    assert sum(counters.guard_rejected.values()) >= 3
    assert counters.engine_restarts >= 1, "three rejections in a row count as failing"
    assert "guard_rejected" in report.to_dict()["counters"]
    assert "outputs rejected as" in report.format()


@pytest.mark.expect_errors
def test_live_guard_recovers_with_a_healthy_fresh_engine(invert_engine_class):
    healthy = invert_engine_class()
    graph, shown = make_graph(
        broken_engine(invert_engine_class, "nan"), 60, factory=lambda: healthy, restart_after_s=0.1
    )
    report = graph.run()
    modes = [mode for mode, _ in shown]
    assert report.counters.engine_restarts >= 1 and healthy.started == 1
    assert Mode.PROCESSED in modes, f"the healthy engine's frames come back: {report.format()}"


@pytest.mark.expect_errors
@pytest.mark.parametrize("kind", ["nan", "constant"])
def test_offline_guard_shows_every_frame_raw_in_place(invert_engine_class, kind):
    graph, shown = make_graph(broken_engine(invert_engine_class, kind), 8, live=False)
    report = graph.run()
    assert shown == [(Mode.BYPASS, seq) for seq in range(8)]
    assert sum(report.counters.guard_rejected.values()) == 8
    assert report.counters.processed == 0


def test_bypass_switch_shows_raw_frames_labelled_then_restored_again(invert_engine_class):
    graph, shown = make_graph(invert_engine_class(), 120, fps=30.0)
    alerts = []
    original = graph_module.draw_status

    def spy(image, mode, detail="", alert=""):
        alerts.append((mode, alert))
        return original(image, mode, detail, alert)

    graph_module.draw_status, restore = spy, original
    try:

        def toggle():
            while graph.counters.shown_processed < 10:
                graph.stop.wait(0.01)
            graph.controls.set_bypass(True)
            while graph.counters.bypassed_by_reason.get("switch", 0) < 20:
                graph.stop.wait(0.01)
            graph.controls.set_bypass(False)

        threading.Thread(target=toggle, daemon=True).start()
        report = graph.run()
    finally:
        graph_module.draw_status = restore
    modes = [mode for mode, _ in shown]
    first_raw = modes.index(Mode.BYPASS, modes.index(Mode.PROCESSED))
    assert report.counters.bypassed_by_reason.get("switch", 0) >= 20, report.counters
    assert Mode.PROCESSED in modes[first_raw + 20 :], "restored frames come back when it is off"
    switched = [alert for mode, alert in alerts if "bypass switch" in alert]
    assert switched and all(
        mode is Mode.BYPASS for mode, alert in alerts if "bypass switch" in alert
    ), "every view while the switch is on is BYPASS and says so"


def test_switch_engine_bypasses_while_warming_then_uses_the_new_engine(invert_engine_class):
    old = invert_engine_class()
    warming = threading.Event()

    class SlowStart(invert_engine_class):
        def start(self, height, width):
            warming.wait(5)
            super().start(height, width)

    new = SlowStart()
    graph, _ = make_graph(old, 150, fps=30.0)

    def switch():
        while graph.counters.shown_processed < 10:
            graph.stop.wait(0.01)
        graph.switch_engine(lambda: new, "slow")
        while graph.counters.bypassed_by_reason.get("engine starting", 0) < 5:
            graph.stop.wait(0.01)
        warming.set()

    threading.Thread(target=switch, daemon=True).start()
    report = graph.run()
    assert report.counters.bypassed_by_reason.get("engine starting", 0) >= 5, report.counters
    assert new.calls > 10 and graph.engine is new, "the new engine takes over"
    assert graph.engine_factory() is new, "the watchdog replaces it with its own kind"
    assert old.closed, "the old engine is released"
    processed = report.latency["end to end, processed"]
    assert processed.max <= report.budget_ms + 1.0, f"no restored frame shown late: {processed}"


@pytest.mark.expect_errors
def test_switch_engine_keeps_the_old_engine_when_the_new_fails(invert_engine_class):
    old = invert_engine_class()

    def broken():
        raise RuntimeError("no such model")

    graph, shown = make_graph(old, 90, fps=30.0)

    def switch():
        while graph.counters.shown_processed < 10:
            graph.stop.wait(0.01)
        graph.switch_engine(broken, "broken").join()

    threading.Thread(target=switch, daemon=True).start()
    report = graph.run()
    assert report.counters.engine_switch_failures == 1
    assert graph.engine is old and not old.closed
    assert graph.switching_to is None
    late = [mode for mode, _ in shown[-20:]]
    assert Mode.PROCESSED in late, "the old engine goes on restoring"


def test_latency_window_keeps_memory_flat(invert_engine_class):
    graph, _ = make_graph(invert_engine_class(), 40, latency_window=8)
    seen = []
    graph.latency.observers.append(lambda name, ns: seen.append(name))
    graph.run()
    assert len(graph.latency.samples("infer")) == 8
    assert seen.count("infer") > 8, "observers see every sample, the log keeps the newest"
