"""``restore`` of a video: exact sizes, truncated inputs, full disks, SIGTERM / SIGINT."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from smokeclear.errors import UserError
from smokeclear.restore import restore
from smokeclear.stream.recording import CheckedFile, VideoWriter, partial_path
from smokeclear.stream.sources.opencv import VideoFileSource

#: restore() only reads the request's label: the engine comes from the patched factory.
REQUEST = SimpleNamespace(label="invert", work_scale=1.0)


def read_frames(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def write_clip(path: Path, width: int, height: int, count: int) -> None:
    rng = np.random.default_rng(0)
    writer = VideoWriter(path, width, height, 25)
    for _ in range(count):
        writer.write(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    writer.close()


def cut_avi(path: Path, count: int) -> Path:
    """An MJPG AVI of ``count`` frames cut in half (its index lost with its tail)."""
    whole = path.with_name("whole.avi")
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"MJPG"), 25, (32, 24))
    rng = np.random.default_rng(1)
    for _ in range(count):
        writer.write(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    writer.release()
    data = whole.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture
def invert_engine(monkeypatch, invert_engine_class):
    engine = invert_engine_class()
    monkeypatch.setattr(
        "smokeclear.restore.create_engine",
        lambda request: (engine, SimpleNamespace(reason="test double")),
    )
    return engine


def test_odd_sized_video_restores_at_its_exact_size(tmp_path: Path, invert_engine):
    clip, out = tmp_path / "clip.mkv", tmp_path / "out.mp4"
    write_clip(clip, 257, 129, 4)
    assert restore(clip, out, REQUEST) == 4
    frames = read_frames(out)
    assert [frame.shape for frame in frames] == [(129, 257, 3)] * 4, "no row or column dropped"
    source = read_frames(clip)
    assert abs(float(frames[0].mean()) - (255 - float(source[0].mean()))) < 3, "inverted"
    assert not partial_path(out).exists()


def test_truncated_video_warns_frames_read_against_declared(tmp_path: Path, caplog):
    source = VideoFileSource(cut_avi(tmp_path / "cut.avi", 60))
    source.open()
    while source.read() is not None:
        pass
    source.close()
    assert 0 < source.frames_read < 60
    assert f"ended after {source.frames_read} of the 60 frames it declares" in caplog.text


def test_restore_of_a_truncated_video_warns(tmp_path: Path, invert_engine, caplog):
    count = restore(cut_avi(tmp_path / "cut.avi", 60), tmp_path / "out.mkv", REQUEST)
    assert f"ended after {count} of the 60 frames" in caplog.text
    assert len(read_frames(tmp_path / "out.mkv")) == count


def test_avi_output_is_refused_naming_safe_containers(tmp_path: Path, invert_engine):
    clip = tmp_path / "clip.mkv"
    write_clip(clip, 32, 24, 2)
    with pytest.raises(UserError, match=r"out\.mkv or out\.mp4"):
        restore(clip, tmp_path / "out.avi", REQUEST)


@pytest.mark.expect_errors
def test_full_disk_is_one_line_and_no_file_under_the_final_name(
    tmp_path: Path, invert_engine, monkeypatch
):
    clip, out = tmp_path / "clip.mkv", tmp_path / "out.mp4"
    write_clip(clip, 64, 48, 60)
    real_write = CheckedFile.write
    written = [0]

    def write(self, data: bytes) -> int:
        written[0] += len(data)
        if written[0] > 20_000:
            self.error = OSError(errno.ENOSPC, "No space left on device")
            raise self.error
        return real_write(self, data)

    monkeypatch.setattr(CheckedFile, "write", write)
    with pytest.raises(UserError, match="No space left on device") as caught:
        restore(clip, out, REQUEST)
    assert "out.partial.mp4" in str(caught.value) and "\n" not in str(caught.value)
    assert not out.exists(), "a failed restore leaves nothing under the final name"


CHILD = """
import sys, time
from types import SimpleNamespace
import smokeclear.restore
from smokeclear.cli import main

class SlowInvert:
    name = "slow-invert"
    def start(self, height, width): pass
    def upload(self, frame): return frame
    def infer(self, frame):
        time.sleep(0.02)
        return 255 - frame
    def download(self, frame, height, width): return frame
    def close(self): pass

smokeclear.restore.create_engine = lambda request: (SlowInvert(), SimpleNamespace(reason="x"))
sys.exit(main(["restore", sys.argv[1], sys.argv[2], "--backend", "torch"]))
"""


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_a_video_restore_cleanly(tmp_path: Path, signal_number: int):
    """Like ``run``: the frames so far are finalised, the count is said, exit status 0."""
    clip, out = tmp_path / "clip.mkv", tmp_path / "out.mp4"
    write_clip(clip, 32, 24, 300)
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(clip), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 30
    while process.poll() is None and not partial_path(out).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.4)  # about 20 frames in
    process.send_signal(signal_number)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "Traceback" not in output
    frames = len(read_frames(out))
    assert 0 < frames < 300
    assert f"restore stopped early: {frames} of 300 frame(s) written to {out}" in output, output
