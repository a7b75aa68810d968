"""Crash-safe recording: kills, full disks, segments and exact sizes (issue 18)."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from smokeclear.errors import UserError
from smokeclear.stream.recording import VideoWriter, partial_path
from smokeclear.stream.sinks import VideoRecorder

FPS = 30


def frame_count(path: Path) -> tuple[int, tuple[int, ...] | None]:
    """Frames OpenCV decodes from ``path``, and the shape of the last."""
    capture = cv2.VideoCapture(str(path))
    count, shape = 0, None
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        count, shape = count + 1, frame.shape
    capture.release()
    return count, shape


def textured(index: int, width: int = 64, height: int = 48) -> np.ndarray:
    rng = np.random.default_rng(index)
    return rng.integers(0, 255, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
@pytest.mark.parametrize("live", [True, False])
def test_sigkill_costs_at_most_two_seconds(tmp_path: Path, suffix: str, live: bool):
    """Kill a recording process after WRITTEN frames: the partial file plays up to
    its last fragment, which is less than 2 seconds behind."""
    written = 75
    path = tmp_path / f"case{suffix}"
    child = textwrap.dedent(
        f"""
        import sys, time
        import numpy as np
        from pathlib import Path
        from smokeclear.stream.sinks import VideoRecorder
        recorder = VideoRecorder(Path({str(path)!r}), lossless_queue={not live})
        recorder.start(64, 48, {FPS})
        rng = np.random.default_rng(0)
        for index in range({written}):
            recorder.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
            time.sleep({0.002 if live else 0})
        deadline = time.monotonic() + 20  # the parent never waits forever
        while recorder.frames_written + recorder.dropped < {written}:
            if time.monotonic() > deadline:
                sys.exit("the recorder never caught up")
            time.sleep(0.01)
        print("written", recorder.frames_written, flush=True)
        time.sleep(20)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("written"), f"the child did not record: {line!r}"
        process.send_signal(signal.SIGKILL)
        written = int(line.split()[1])
    finally:
        process.kill()
        process.wait(timeout=10)
    assert not path.exists(), "a killed recording never appears under its final name"
    recovered, shape = frame_count(partial_path(path))
    assert written - 2 * FPS <= recovered <= written, (
        f"{recovered} of {written} frames recovered after SIGKILL; expected at most {2 * FPS} lost"
    )
    assert shape == (48, 64, 3)


@pytest.mark.parametrize(("width", "height"), [(257, 129), (33, 17)])
@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_odd_sizes_are_kept_exactly(tmp_path: Path, width: int, height: int, suffix: str):
    path = tmp_path / f"odd{suffix}"
    writer = VideoWriter(path, width, height, FPS)
    for index in range(5):
        writer.write(textured(index, width, height))
    assert writer.close() == path
    assert frame_count(path) == (5, (height, width, 3)), "no row or column is dropped"


def test_close_syncs_the_file_and_then_its_rename_to_the_disk(tmp_path: Path, monkeypatch):
    """A power cut right after close keeps the recording: the data and the rename are
    fsynced, in that order."""
    synced: list[tuple[str, bool]] = []
    real_fsync = os.fsync

    def fsync(descriptor: int) -> None:
        name = os.readlink(f"/proc/self/fd/{descriptor}")
        synced.append((name, Path(name).is_dir()))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    path = tmp_path / "case.mp4"
    writer = VideoWriter(path, 64, 48, FPS)
    writer.write(textured(0))
    assert not synced, "nothing is synced per frame"
    assert writer.close() == path
    assert synced == [(str(partial_path(path)), False), (str(tmp_path), True)]
    assert frame_count(path) == (1, (48, 64, 3))


def test_segments_are_closed_files_that_sort(tmp_path: Path):
    recorder = VideoRecorder(tmp_path / "case.mp4", lossless_queue=True, segment_seconds=1)
    recorder.start(32, 24, 10)
    for index in range(25):
        recorder.write(textured(index, 32, 24))
    recorder.close()
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == ["case-0001.mp4", "case-0002.mp4", "case-0003.mp4"]
    counts = [frame_count(tmp_path / name)[0] for name in names]
    assert counts == [10, 10, 5] and recorder.files == [tmp_path / name for name in names]


@pytest.mark.parametrize(
    ("option", "value"), [("segment_seconds", 0), ("segment_seconds", float("nan"))]
)
def test_bad_segment_length_is_a_user_error(tmp_path: Path, option: str, value: float):
    with pytest.raises(UserError, match="out of range"):
        VideoRecorder(tmp_path / "case.mp4", **{option: value})


@pytest.mark.expect_errors
def test_full_disk_stops_the_recording_not_the_run(tmp_path: Path, monkeypatch):
    """The first failed write (ENOSPC) finalises what was written and raises the alert."""
    path = tmp_path / "case.mp4"
    recorder = VideoRecorder(path, lossless_queue=True)
    recorder.start(32, 24, 10)
    real_write = VideoWriter.write

    def write(self, frame):
        if self.frames >= 20:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(self, frame)

    monkeypatch.setattr(VideoWriter, "write", write)
    for index in range(40):
        recorder.write(textured(index, 32, 24))  # never raises: the view goes on
    recorder.close()
    assert recorder.alert == "REC STOPPED: disk full" and recorder.errors == 1
    assert recorder.frames_written == 20
    assert frame_count(path)[0] == 20, "what was written is finalised and playable"


@pytest.mark.expect_errors
def test_min_free_gb_stops_recording_before_the_disk_fills(tmp_path: Path, monkeypatch):
    recorder = VideoRecorder(tmp_path / "case.mkv", lossless_queue=True, min_free_gb=1)
    free = [5e9]
    monkeypatch.setattr(
        shutil, "disk_usage", lambda folder: shutil._ntuple_diskusage(10e9, 10e9 - free[0], free[0])
    )
    recorder.start(32, 24, 10)
    for index in range(5):
        recorder.write(textured(index, 32, 24))
    while recorder.frames_written < 5:
        pass
    free[0] = 0.5e9
    recorder._next_disk_check = 0.0  # the next frame checks, as a second later
    for index in range(5):
        recorder.write(textured(index, 32, 24))
    recorder.close()
    assert recorder.alert == "REC STOPPED: disk almost full" and recorder.errors == 1
    assert frame_count(tmp_path / "case.mkv")[0] == 5


def test_make_room_lets_the_recording_go_on(tmp_path: Path, monkeypatch):
    free = [5e9]
    monkeypatch.setattr(
        shutil, "disk_usage", lambda folder: shutil._ntuple_diskusage(10e9, 10e9 - free[0], free[0])
    )
    calls = []

    def make_room():  # as deleting the oldest recording would
        calls.append(free[0])
        free[0] = 3e9

    recorder = VideoRecorder(
        tmp_path / "case.mkv", lossless_queue=True, min_free_gb=1, make_room=make_room
    )
    recorder.start(32, 24, 10)
    free[0] = 0.5e9
    for index in range(5):
        recorder.write(textured(index, 32, 24))
    recorder.close()
    assert calls == [0.5e9], "make_room is called once the disk is below min_free_gb"
    assert recorder.alert is None and recorder.errors == 0
    assert frame_count(tmp_path / "case.mkv")[0] == 5


@pytest.fixture
def tiny_tmpfs(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("mounting a 2 MB tmpfs needs root")
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)])
    if done.returncode != 0:
        pytest.skip("mount -t tmpfs is not allowed here (a container without CAP_SYS_ADMIN)")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.expect_errors
def test_recording_into_a_full_tmpfs(tiny_tmpfs: Path):
    (tiny_tmpfs / "filler").write_bytes(bytes(1900 * 1024))  # leaves about 150 KB
    path = tiny_tmpfs / "case.mkv"
    recorder = VideoRecorder(path, lossless_queue=True)
    recorder.start(128, 96, 30)
    for index in range(90):  # noise: about 700 KB
        recorder.write(textured(index, 128, 96))
    recorder.close()
    assert recorder.alert == "REC STOPPED: disk full" and recorder.errors == 1
    kept = path if path.exists() else partial_path(path)
    recovered = frame_count(kept)[0]
    assert 0 < recovered <= recorder.frames_written, "what fitted plays"


class ViewsSeen:
    """A sink that keeps every view it is given (what the screen showed)."""

    name = "views"

    def __init__(self) -> None:
        self.views: list[np.ndarray] = []

    def start(self, width: int, height: int, fps: float) -> None:
        pass

    def write(self, view: np.ndarray) -> None:
        self.views.append(view.copy())

    def pump(self) -> bool:
        return True

    def close(self) -> None:
        pass


@pytest.mark.expect_errors
def test_live_view_goes_on_with_an_alert_when_the_disk_fills(
    tmp_path: Path, monkeypatch, invert_engine_class
):
    from smokeclear.stream.graph import Graph, GraphSettings
    from smokeclear.stream.sources.synthetic import SyntheticSource

    real_write = VideoWriter.write

    def write(self, frame):
        if self.frames >= 10:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(self, frame)

    monkeypatch.setattr(VideoWriter, "write", write)
    source = SyntheticSource(64, 48, 60.0, seed=3, live=True, max_frames=40)
    source.open()
    recorder, screen = VideoRecorder(tmp_path / "live.mkv"), ViewsSeen()
    engine = invert_engine_class()
    graph = Graph(
        source,
        engine,
        lambda: engine,
        [screen, recorder],
        GraphSettings(64, 48, 60.0, warmup_frames=0),
    )
    report = graph.run()
    assert report.counters.recording_errors == 1 and "recording errors 1" in report.format()
    assert len(screen.views) >= 30, "the view kept running after the recording stopped"
    red = [bool(((view[..., 2] > 200) & (view[..., 1] < 60)).sum()) for view in screen.views]
    assert red[-1] and not red[0], "the alert appears once the recording stopped"
    assert frame_count(tmp_path / "live.mkv")[0] == 10, "what was recorded is playable"


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--record-segment-seconds", "0", "--record-segment-seconds 0 is out of range"),
        ("--min-free-gb", "nan", "--min-free-gb nan is out of range"),
    ],
)
def test_recording_options_out_of_range_are_one_line(tmp_path, capsys, option, value, message):
    from smokeclear.cli import main

    argv = ["--display", "none", "--max-frames", "2", "--record", str(tmp_path / "x.mp4")]
    assert main([*argv, option, value]) == 2
    assert message in capsys.readouterr().err
