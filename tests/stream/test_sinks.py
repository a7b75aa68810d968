from pathlib import Path

import cv2
import numpy as np
import pytest

from smokeclear.errors import UserError
from smokeclear.stream.sinks import VideoRecorder, WindowSink


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_recorder_writes_every_frame_and_finalises(tmp_path: Path, suffix: str):
    path = tmp_path / f"out{suffix}"
    recorder = VideoRecorder(path, lossless_queue=True)
    recorder.start(32, 24, 30)
    for value in range(20):
        recorder.write(np.full((24, 32, 3), value * 10, np.uint8))
    recorder.close()
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    assert count == 20 and recorder.frames_written == 20
    assert sorted(tmp_path.iterdir()) == [path], "the partial file is renamed into place"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("out.gif", "unknown video container"),
        ("missing/out.mp4", "does not exist"),
        ("out.avi", "out.mkv or out.mp4"),
    ],
)
def test_recorder_rejects_bad_paths(tmp_path: Path, name, message):
    with pytest.raises(UserError, match=message):
        VideoRecorder(tmp_path / name)


def test_window_without_display_is_a_user_error(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    with pytest.raises(UserError, match="no display"):
        WindowSink().start(32, 24, 30)


def test_window_hands_keys_to_its_callback_and_survives_its_errors(monkeypatch, caplog):
    keys = iter([ord("]"), 0xFF, ord("["), ord("q")])
    monkeypatch.setattr(cv2, "waitKey", lambda delay: next(keys))
    monkeypatch.setattr(cv2, "getWindowProperty", lambda title, prop: 1.0)
    pressed: list[int] = []

    def on_key(key: int) -> None:
        pressed.append(key)
        if key == ord("["):
            raise RuntimeError("control failed")

    window = WindowSink(on_key=on_key)
    assert window.pump() and window.pump(), "keys and no key keep the window running"
    assert window.pump(), "an error in a control never reaches the display loop"
    assert "control failed" in caplog.text
    assert window.pump() is False, "q still stops"
    assert pressed == [ord("]"), ord("[")], "no-key polls are not passed on"
