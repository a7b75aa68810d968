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
