"""``smokeclear serve`` as a process: systemd notifications, SIGTERM and SIGHUP."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import httpx
import pytest
import yaml

from .conftest import PIPELINE, TOKEN, smokeclear_env, wait_for, write_config

SERVING = re.compile(rb"serving on http://127\.0\.0\.1:(\d+)")


class ServeProcess:
    """``python -m smokeclear serve --config PATH``, its port read from its log."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.log = config.with_suffix(".log")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "smokeclear", "serve", "--config", str(config)],
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            env=env or smokeclear_env(),
        )
        found = wait_for(lambda: self._port(), 60, "the daemon to serve")
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{found}", headers={"Authorization": f"Bearer {TOKEN}"}
        )

    def _port(self) -> int | None:
        if self.process.poll() is not None:
            pytest.fail(f"serve exited {self.process.returncode}: {self.log.read_text()}")
        match = SERVING.search(self.log.read_bytes())
        return int(match.group(1)) if match else None

    def ready(self) -> bool:
        return self.client.get("/readyz").status_code == 200

    def pipelines(self) -> dict[str, dict]:
        data = self.client.get("/api/pipelines").json()
        return {pipeline["name"]: pipeline for pipeline in data["pipelines"]}

    def captured(self) -> dict[str, float]:
        from prometheus_client.parser import text_string_to_metric_families

        text = self.client.get("/metrics").text
        return {
            sample.labels["pipeline"]: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "smokeclear_frames_captured_total"
        }

    def stop(self, number: int = signal.SIGTERM, timeout: float = 40) -> int:
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(number)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"serve did not stop within {timeout} s: {self.log.read_text()}")


@pytest.fixture
def notify_socket(tmp_path: Path):
    """A datagram socket standing in for systemd's $NOTIFY_SOCKET: ``(path, messages)``,
    the messages read as they come (as systemd does)."""
    path = tmp_path / "notify"
    messages: list[str] = []
    done = threading.Event()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        listener.settimeout(0.05)

        def read() -> None:
            while not done.is_set():
                with contextlib.suppress(TimeoutError):
                    messages.append(listener.recv(256).decode())

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        yield path, messages
        done.set()
        reader.join()


def test_sigterm_finalises_the_recording_and_exits_0(tmp_path, notify_socket):
    path, messages = notify_socket
    recordings = tmp_path / "rec"
    recordings.mkdir()
    record = {"dir": str(recordings), "segment_seconds": 60}
    config = write_config(tmp_path, [{"name": "or1", **PIPELINE, "record": record}])
    env = smokeclear_env() | {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"}
    daemon = ServeProcess(config, env)
    try:
        wait_for(daemon.ready, 60, "frames")
        wait_for(lambda: list(recordings.glob("or1-*.partial.mkv")), 10, "the recording")
        time.sleep(1.5)
    finally:
        status = daemon.stop(signal.SIGTERM)
    log = daemon.log.read_text()
    assert status == 0, log
    assert messages[0] == "READY=1" and "WATCHDOG=1" in messages, messages
    wait_for(lambda: "STOPPING=1" in messages, 2, "STOPPING=1")
    (file,) = recordings.glob("or1-*.mkv")
    assert ".partial." not in file.name, f"the recording was not finalised: {log}"
    with av.open(str(file)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames >= 10, f"{frames} frames in {file.name}"
    assert "Traceback" not in log, log


def test_sighup_reloads_and_keeps_unchanged_pipelines_running(tmp_path):
    keep = {"name": "keep", **PIPELINE, "fps": 5}
    change = {"name": "change", **PIPELINE, "fps": 5}
    config = write_config(tmp_path, [keep, change])
    daemon = ServeProcess(config)
    try:
        wait_for(daemon.ready, 60, "both pipelines to show frames")
        wait_for(lambda: min(daemon.captured().values()) >= 10, 30, "10 frames each")
        before = daemon.captured()
        data = yaml.safe_load(config.read_text())
        data["pipelines"] = [keep, change | {"restorer": "lowlight"}, keep | {"name": "new"}]
        config.write_text(yaml.safe_dump(data))
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "new" in daemon.pipelines(), 20, "the new pipeline")
        after = daemon.captured()
        assert after["keep"] >= before["keep"], "the unchanged pipeline kept its counters"
        assert after["change"] < before["change"], "the changed pipeline was restarted"
        assert daemon.pipelines()["change"]["restorer"] == "lowlight"
        data["pipelines"] = [keep]
        config.write_text(yaml.safe_dump(data))
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(lambda: set(daemon.pipelines()) == {"keep"}, 20, "removed pipelines to stop")
        assert daemon.captured()["keep"] >= after["keep"]
        config.write_text("pipelines: [")
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload failed" in daemon.log.read_text(), 10, "the bad reload logged")
        assert daemon.ready(), "a config that fails to load changes nothing"
    finally:
        status = daemon.stop()
    assert status == 0, daemon.log.read_text()
