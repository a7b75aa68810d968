"""Live faults: the view keeps running, labelled and on time, whatever breaks.

Each case runs a live 64x48 graph at 30 fps for about a second with one fault,
then checks the invariants of ``conftest.check_live_invariants``.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from smokeclear.stream.frame import Mode
from smokeclear.stream.sinks import VideoRecorder


def test_camera_unplugged_and_replugged_shows_no_signal_then_recovers(kit):
    source = kit.UnpluggedSource(frames=45, lose_at=10, failed_opens=1)
    graph, shown = kit.watched_graph(source, kit.InvertEngine(), no_signal_after_ms=150)
    report = graph.run()
    kit.check_live_invariants(graph, shown, report)
    modes = shown.modes()
    assert Mode.NO_SIGNAL in modes, f"a 0.75 s gap must show NO SIGNAL: {report.format()}"
    after = modes[modes.index(Mode.NO_SIGNAL) :]
    assert Mode.PROCESSED in after, "restored frames come back after the camera is replugged"
    # The camera kept its clock while unplugged: frames of the gap are gone, the rest come.
    assert report.counters.captured > 15, f"capture resumes after the replug: {report.format()}"
    assert source.opens == 2, "one failed reopen, then the camera is back"


@pytest.mark.expect_errors
@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(np.zeros((48, 64, 2), np.uint8), id="wrong-shape"),
        pytest.param(np.zeros((48, 64, 3), np.int32), id="wrong-dtype"),
        pytest.param(np.zeros(7, np.uint8), id="flat"),
    ],
)
def test_corrupt_frame_is_skipped_and_counted(kit, bad):
    source = kit.CorruptFrameSource(frames=20, bad={5: bad, 6: bad})
    graph, shown = kit.watched_graph(source, kit.InvertEngine())
    report = graph.run()
    kit.check_live_invariants(graph, shown, report)
    assert report.counters.bad_frames == 2
    assert report.counters.captured == 18
    assert shown.count(Mode.PROCESSED) > 0


@pytest.mark.expect_errors
@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")
def test_nan_float_frame_is_skipped_not_shown(kit):
    nan = np.full((48, 64, 3), np.nan, np.float32)
    source = kit.CorruptFrameSource(frames=20, bad={5: nan})
    graph, shown = kit.watched_graph(source, kit.InvertEngine())
    report = graph.run()
    kit.check_live_invariants(graph, shown, report)
    assert report.counters.bad_frames == 1, "a NaN frame is unusable, like a wrong shape"


@pytest.mark.expect_errors
@pytest.mark.parametrize("engine_kind", ["exception", "out-of-memory"])
def test_failing_engine_bypasses_then_a_fresh_engine_takes_over(kit, engine_kind):
    failing = (
        kit.InvertEngine(fail_every=1) if engine_kind == "exception" else kit.OutOfMemoryEngine()
    )
    healthy = kit.InvertEngine()
    graph, shown = kit.watched_graph(
        kit.synthetic(30), failing, lambda: healthy, restart_after_s=0.2
    )
    report = graph.run()
    kit.check_live_invariants(graph, shown, report)
    assert report.counters.infer_errors >= 3
    assert report.counters.engine_restarts >= 1 and healthy.started == 1
    modes = shown.modes()
    assert modes[0] is Mode.BYPASS, "frames the failing engine lost are shown raw"
    assert Mode.PROCESSED in modes, "the fresh engine's frames are shown restored"


@pytest.mark.expect_errors
def test_hung_engine_bypasses_then_a_fresh_engine_takes_over(kit):
    hang = threading.Event()
    stuck, healthy = kit.InvertEngine(hang=hang), kit.InvertEngine()
    graph, shown = kit.watched_graph(kit.synthetic(30), stuck, lambda: healthy, restart_after_s=0.3)
    try:
        report = graph.run()
    finally:
        hang.set()
    kit.check_live_invariants(graph, shown, report)
    modes = shown.modes()
    assert modes[0] is Mode.BYPASS
    assert report.counters.engine_restarts >= 1
    assert Mode.PROCESSED in modes, "a fresh engine replaces the hung one"


@pytest.mark.expect_errors
def test_recording_keeps_every_shown_view_through_engine_failures(kit, tmp_path):
    path = tmp_path / "case.mkv"
    recorder = VideoRecorder(path)
    healthy = kit.InvertEngine()
    graph, shown = kit.watched_graph(
        kit.synthetic(30), kit.InvertEngine(fail_every=2), lambda: healthy, sinks=[recorder]
    )
    report = graph.run()
    kit.check_live_invariants(graph, shown, report)
    assert recorder.dropped == 0
    assert kit.video_frames(path) == len(shown.views), "the recording plays every shown view"
