"""One live run without a command line: LiveSettings in, a RunReport out; a stop Event
ends it from another thread, as a service running several pipelines does."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest

from smokeclear.errors import UserError
from smokeclear.stream import graph as graph_module
from smokeclear.stream import sources as sources_module
from smokeclear.stream.live import (
    DEVICE_DEFAULTS,
    LiveSettings,
    bypass_hint,
    run_live,
    stop_on_signals,
)
from smokeclear.stream.sources import SourceLost
from smokeclear.stream.stats import Counters, Percentiles, RunReport

CPU = DEVICE_DEFAULTS["cpu"]


def torch_request(weights: Path):
    from smokeclear.registry import get_restorer
    from smokeclear.runtime import EngineRequest

    return EngineRequest(
        (get_restorer("desmoke"),), backend="torch", device="cpu", weights={"desmoke": weights}
    )


def settings(weights: Path, **overrides) -> LiveSettings:
    values = dict(
        source="synthetic:3",
        request=torch_request(weights),
        defaults=CPU,
        size=(64, 48),
        fps=30.0,
        display="none",
    )
    return LiveSettings(**{**values, **overrides})


def test_a_run_stops_after_max_frames_and_reports(tiny_weights):
    report = run_live(settings(tiny_weights, max_frames=20))
    assert report.counters.captured == 20, report.format()
    assert (report.width, report.height) == (64, 48)
    assert report.realtime, "the synthetic scene is a live source"


def test_the_synthetic_scene_takes_the_device_defaults_without_a_size(tiny_weights):
    small = CPU.__class__(width=48, height=32, fps=20.0, work_scale=1.0)
    report = run_live(settings(tiny_weights, size=None, fps=None, defaults=small, max_frames=3))
    assert (report.width, report.height) == (48, 32), "size from the defaults"
    assert report.budget_ms == pytest.approx(50.0), "one frame period at the defaults' 20 fps"


def test_a_stop_event_ends_a_run_on_a_worker_thread(tiny_weights):
    stop = threading.Event()
    reports: list[RunReport] = []
    worker = threading.Thread(target=lambda: reports.append(run_live(settings(tiny_weights), stop)))
    worker.start()
    threading.Timer(3.0, stop.set).start()
    worker.join(timeout=120)
    assert not worker.is_alive(), "the run ended after stop was set"
    assert reports and reports[0].stopped_by == "stop request", reports


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"fps": 0.5}, "--fps 0.5 is out of range"),
        ({"max_frames": 0}, "--max-frames must be at least 1"),
        ({"display": "tv"}, "unknown display 'tv'"),
        ({"view": "upside-down"}, "unknown view 'upside-down'"),
        ({"reconnect": "sometimes"}, "unknown --reconnect 'sometimes'"),
    ],
)
def test_bad_settings_are_a_user_error(overrides, message, tmp_path):
    with pytest.raises(UserError, match=message):
        settings(tmp_path / "unused.safetensors", **overrides)


def report_with(captured: int, shown: int, bypassed: int, realtime: bool = True) -> RunReport:
    counters = Counters(captured=captured, shown_processed=shown, bypassed=bypassed)
    infer = Percentiles(count=10, p50=120.0, p95=130.0, p99=140.0, max=150.0)
    return RunReport(
        "synthetic", "torch", "", 64, 48, 66.7, realtime, 5.0, counters, {"infer": infer}
    )


def test_the_hint_names_the_fixes_when_most_frames_were_bypassed():
    hint = bypass_hint(report_with(captured=100, shown=10, bypassed=80))
    assert hint is not None and "inference p50 120 ms" in hint and "--work-scale 0.5" in hint
    assert bypass_hint(report_with(captured=100, shown=80, bypassed=10)) is None, "mostly shown"
    assert bypass_hint(report_with(captured=10, shown=1, bypassed=9)) is None, "too short to tell"
    offline = report_with(captured=100, shown=10, bypassed=80, realtime=False)
    assert bypass_hint(offline) is None, "offline runs never bypass for time"


def test_signals_set_the_stop_event_and_the_handlers_come_back():
    before = signal.getsignal(signal.SIGTERM)
    stop = threading.Event()
    with stop_on_signals(stop):
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(5.0), "SIGTERM set the stop event"
    assert signal.getsignal(signal.SIGTERM) is before, "the previous handler is back"


class LateStream:
    """A live stream that refuses its first ``failures`` connections, then delivers."""

    live = True
    name = "rtsp://late"
    fps = 0.0
    width = height = 0

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.opens = 0
        self.connected = False

    def open(self) -> None:
        self.opens += 1
        if self.opens <= self.failures:
            raise UserError("cannot receive the stream rtsp://late", "Check the URL.")
        self.connected = True
        self.width, self.height = 32, 24

    def read(self) -> np.ndarray:
        if not self.connected:
            raise SourceLost("rtsp://late is not connected")
        threading.Event().wait(1 / 60)
        return np.zeros((24, 32, 3), np.uint8)

    def close(self) -> None:
        self.connected = False


@pytest.fixture
def late_stream(monkeypatch):
    """``make(failures)`` -> the LateStream that ``--source rtsp://late`` opens."""
    monkeypatch.setattr(graph_module, "RECONNECT_BACKOFF_S", (0.3,))
    made: list[LateStream] = []

    def make(failures: int) -> LateStream:
        made.append(LateStream(failures))
        monkeypatch.setattr(sources_module, "create_source", lambda *args, **kwargs: made[-1])
        return made[-1]

    return make


def test_reconnect_forever_waits_for_a_stream_showing_no_signal(tiny_weights, late_stream):
    stream = late_stream(failures=3)
    small = CPU.__class__(width=48, height=32, fps=20.0, work_scale=1.0)
    late = settings(
        tiny_weights, source="rtsp://late", reconnect="forever", size=None, defaults=small
    )
    report = run_live(dataclasses.replace(late, fps=None, max_frames=10))
    assert stream.opens == 4, "three refused connections, then the fourth delivered"
    assert report.counters.captured == 10, report.format()
    assert report.counters.no_signal >= 1, "the view said NO SIGNAL while waiting"
    assert (report.width, report.height) == (48, 32), "the default size while not connected"


def test_reconnect_forever_ends_when_stopped(tiny_weights, late_stream):
    stream = late_stream(failures=10**6)
    stop = threading.Event()

    def stop_after_three_retries() -> None:
        while stream.opens < 4 and not stop.wait(0.05):
            pass
        stop.set()

    threading.Thread(target=stop_after_three_retries, daemon=True).start()
    report = run_live(settings(tiny_weights, source="rtsp://late", reconnect="forever"), stop)
    assert stream.opens >= 4, f"the run ended before it was stopped: {report.stopped_by}"
    assert report.counters.captured == 0 and report.counters.no_signal >= 1, report.format()


def test_without_reconnect_a_stream_that_cannot_connect_is_an_error(tiny_weights, late_stream):
    late_stream(failures=1)
    with pytest.raises(UserError, match="cannot receive the stream rtsp://late"):
        run_live(settings(tiny_weights, source="rtsp://late"))


def test_reconnect_forever_still_refuses_a_missing_file(tiny_weights, tmp_path):
    with pytest.raises(UserError, match="not found"):
        run_live(settings(tiny_weights, source=str(tmp_path / "gone.mp4"), reconnect="forever"))
