"""Pipelines unattended: a source that dies and comes back, a disk that fills up."""

from __future__ import annotations

import os
import shutil
import threading
import time

import httpx
import numpy as np
import pytest

from smokeclear.errors import UserError
from smokeclear.stream import graph as graph_module
from smokeclear.stream import sources as sources_module
from smokeclear.stream.serve.config import RecordConfig, load_serve_config
from smokeclear.stream.serve.daemon import Daemon
from smokeclear.stream.serve.pipelines import RecordingSwitch
from smokeclear.stream.sources import SourceLost

from .conftest import PIPELINE, wait_for, write_config


class UnpluggableCamera:
    """A live source the test unplugs and plugs back in (``plugged``)."""

    live = True
    name = "rtsp://camera"
    fps = 10.0
    width, height = 160, 96

    def __init__(self) -> None:
        self.plugged = threading.Event()
        self.connected = False
        self.opens = 0

    def open(self) -> None:
        self.opens += 1
        if not self.plugged.is_set():
            raise UserError("cannot receive the stream rtsp://camera", "Check the cable.")
        self.connected = True

    def read(self) -> np.ndarray:
        if not (self.connected and self.plugged.is_set()):
            raise SourceLost("rtsp://camera stopped sending")
        time.sleep(0.1)
        return np.full((96, 160, 3), 90, np.uint8)

    def close(self) -> None:
        self.connected = False


def test_lost_source_shows_no_signal_and_comes_back(tmp_path, monkeypatch):
    camera = UnpluggableCamera()
    monkeypatch.setattr(sources_module, "create_source", lambda *args, **kwargs: camera)
    monkeypatch.setattr(graph_module, "RECONNECT_BACKOFF_S", (0.2,))
    pipeline = PIPELINE | {"name": "cam", "source": "rtsp://camera"}
    daemon = Daemon(load_serve_config(write_config(tmp_path, [pipeline])))
    daemon.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{daemon.port}") as client:

            def readiness() -> tuple[int, dict]:
                response = client.get("/readyz")
                return response.status_code, response.json()

            no_signal = (503, {"ready": False, "reasons": ["cam: NO SIGNAL from its source"]})
            wait_for(lambda: readiness() == no_signal, 30, "NO SIGNAL before the camera is in")
            camera.plugged.set()
            wait_for(lambda: readiness()[0] == 200, 20, "frames once it is plugged in")
            counters = daemon.pipelines.get("cam").counters
            no_signal_cards = counters().no_signal
            camera.plugged.clear()
            wait_for(lambda: readiness() == no_signal, 10, "NO SIGNAL after unplugging")
            assert counters().no_signal > no_signal_cards, "the view said NO SIGNAL"
            camera.plugged.set()
            wait_for(lambda: readiness()[0] == 200, 20, "frames again after replugging")
            assert counters().reconnects >= 1 and daemon.pipelines.get("cam").restarts == 0
    finally:
        daemon.close()


def test_full_disk_deletes_the_oldest_recording_of_the_pipeline_first(tmp_path, monkeypatch):
    oldest, newer, other = (tmp_path / name for name in ("or1-a.mkv", "or1-b.mkv", "or2-a.mkv"))
    for age, path in enumerate((other, newer, oldest)):
        path.write_bytes(b"old recording")
        os.utime(path, (1e9 - age * 100, 1e9 - age * 100))
    gone = lambda: sum(not path.exists() for path in (oldest, newer, other))  # noqa: E731
    monkeypatch.setattr(
        shutil,
        "disk_usage",
        lambda folder: shutil._ntuple_diskusage(10e9, 0, 0.2e9 + 2e9 * gone()),
    )
    config = RecordConfig(str(tmp_path), segment_seconds=60, min_free_gb=1, delete_oldest=True)
    recording = RecordingSwitch("or1", config)
    recording.start(32, 24, 10)
    for _ in range(5):
        recording.write(np.full((24, 32, 3), 128, np.uint8))
    recording.close()
    assert not oldest.exists() and newer.exists() and other.exists()
    assert recording.deleted == 1 and recording.errors == 0 and recording.alert is None
    (made,) = [p for p in recording.files if p.name.startswith("or1-2")]
    assert made.exists() and ".partial." not in made.name


@pytest.mark.expect_errors
def test_without_delete_oldest_a_full_disk_stops_recording_with_an_alert(tmp_path, monkeypatch):
    monkeypatch.setattr(
        shutil, "disk_usage", lambda folder: shutil._ntuple_diskusage(10e9, 0, 0.2e9)
    )
    config = RecordConfig(str(tmp_path), segment_seconds=60, min_free_gb=1)
    recording = RecordingSwitch("or1", config)
    recording.start(32, 24, 10)
    for _ in range(3):
        recording.write(np.full((24, 32, 3), 128, np.uint8))
    wait_for(lambda: recording.alert, 5, "the recorder to stop")
    assert recording.alert == "REC STOPPED: disk almost full" and not recording.recording
    recording.close()
    assert recording.errors == 1


def test_recording_without_a_record_section_is_refused():
    with pytest.raises(UserError, match="no record section"):
        RecordingSwitch("or1", None).set(True)


@pytest.mark.expect_errors
def test_one_pipeline_failing_never_stops_another(tmp_path):
    broken = PIPELINE | {"name": "broken", "source": str(tmp_path / "gone.mp4")}
    daemon = Daemon(load_serve_config(write_config(tmp_path, [PIPELINE | {"name": "ok"}, broken])))
    daemon.start()
    try:
        ok, failing = daemon.pipelines.get("ok"), daemon.pipelines.get("broken")
        wait_for(lambda: failing.restarts >= 1 and ok.showing, 30, "a restart of broken")
        assert "gone.mp4" in (failing.error or ""), failing.error
        with httpx.Client(base_url=f"http://127.0.0.1:{daemon.port}") as client:
            ready = client.get("/readyz")
        assert ready.status_code == 503
        assert any(reason.startswith("broken: ") for reason in ready.json()["reasons"])
        shown = ok.counters().captured
        wait_for(lambda: ok.counters().captured > shown + 5, 10, "ok to go on")
        assert ok.restarts == 0
    finally:
        daemon.close()
