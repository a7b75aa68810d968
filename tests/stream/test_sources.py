from pathlib import Path

import cv2
import numpy as np
import pytest

from smokeclear.errors import FrameFormatError, UserError
from smokeclear.stream.sources import open_source, to_bgr8
from smokeclear.stream.sources.opencv import redact_credentials
from smokeclear.stream.sources.synthetic import SyntheticSource


@pytest.mark.parametrize(
    ("image", "check"),
    [
        (np.full((4, 5), 7, np.uint8), lambda out: (out == 7).all()),
        (np.full((4, 5, 1), 7, np.uint8), lambda out: (out == 7).all()),
        (np.full((4, 5, 4), 9, np.uint8), lambda out: (out == 9).all()),
        (np.full((4, 5, 3), 256 * 200, np.uint16), lambda out: (out == 200).all()),
        (np.full((4, 5, 3), 0.5, np.float32), lambda out: (out == 128).all()),
    ],
)
def test_to_bgr8_normalises_common_formats(image, check):
    out = to_bgr8(image)
    assert out.shape == (4, 5, 3) and out.dtype == np.uint8 and check(out)


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((4, 5, 2), np.uint8),
        np.zeros((4, 5, 3), np.int32),
        np.zeros((2, 4, 5, 3), np.uint8),
        "not an image",
    ],
)
def test_to_bgr8_rejects_what_it_cannot_use(image):
    with pytest.raises(FrameFormatError):
        to_bgr8(image)


def test_missing_camera_is_a_user_error_with_the_fix():
    with pytest.raises(UserError, match="camera /dev/video99 not found") as error:
        open_source("/dev/video99")
    assert "plugged in" in error.value.fix


def test_camera_format_reaches_the_camera(monkeypatch: pytest.MonkeyPatch):
    from smokeclear.stream.sources.opencv import CameraSource

    monkeypatch.setattr(CameraSource, "open", lambda self: None)
    source = open_source("/dev/video7", 640, 480, 30.0, camera_format="MJPG")
    assert isinstance(source, CameraSource)
    assert source.fourcc == "MJPG", "--camera-format must be asked of the camera"


def test_missing_path_and_bad_seed():
    with pytest.raises(UserError, match="not found"):
        open_source("/no/such/video.mp4")
    with pytest.raises(UserError, match="bad synthetic seed"):
        open_source("synthetic:abc")


def test_unreadable_video_file(tmp_path: Path):
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"this is not a video" * 100)
    with pytest.raises(UserError, match="cannot decode video"):
        open_source(str(path))


def test_video_file_source_reads_every_frame_in_order(tmp_path: Path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (32, 24))
    for value in range(12):
        writer.write(np.full((24, 32, 3), value * 20, np.uint8))
    writer.release()
    source = open_source(str(path))
    assert not source.live and (source.width, source.height) == (32, 24)
    frames = []
    while (frame := source.read()) is not None:
        frames.append(int(frame.mean().round()))
    source.close()
    assert len(frames) == 12
    assert frames == sorted(frames), "frames come in file order"


def test_image_folder_source_in_name_order(tmp_path: Path):
    for name, value in [("b.png", 2), ("a.png", 1), ("c.jpg", 3)]:
        cv2.imwrite(str(tmp_path / name), np.full((8, 8, 3), value * 50, np.uint8))
    (tmp_path / "notes.txt").write_text("ignored")
    source = open_source(str(tmp_path))
    values = []
    while (frame := source.read()) is not None:
        values.append(round(float(frame.mean()) / 50))
    assert values == [1, 2, 3]


def test_image_folder_with_an_unreadable_image(tmp_path: Path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "b.png").write_bytes(b"garbage")
    source = open_source(str(tmp_path))
    source.read()
    with pytest.raises(UserError, match=r"cannot read image .*b\.png"):
        source.read()


def test_empty_folder(tmp_path: Path):
    with pytest.raises(UserError, match="no images"):
        open_source(str(tmp_path))


def test_synthetic_source_is_deterministic_and_offline_hands_out_every_frame():
    first = SyntheticSource(48, 32, 30, seed=5, live=False, max_frames=4)
    second = SyntheticSource(48, 32, 30, seed=5, live=False, max_frames=4)
    first.open()
    second.open()
    a = [first.read() for _ in range(5)]
    b = [second.read() for _ in range(5)]
    assert a[4] is None and b[4] is None
    for x, y in zip(a[:4], b[:4], strict=True):
        np.testing.assert_array_equal(x, y)


def test_synthetic_source_replays_its_prerendered_loop():
    rendered = SyntheticSource(48, 32, 30, seed=5, live=False, max_frames=3)
    looped = SyntheticSource(48, 32, 30, seed=5, live=False, max_frames=5, loop_frames=2)
    rendered.open()
    looped.open()
    expected = [rendered.read() for _ in range(2)]
    frames = [looped.read() for _ in range(6)]
    assert frames[5] is None, "max_frames still ends the stream"
    for index, frame in enumerate(frames[:5]):
        np.testing.assert_array_equal(frame, expected[index % 2], f"frame {index} is loop frame")


def test_live_synthetic_source_skips_frames_when_read_late():
    source = SyntheticSource(32, 32, fps=200, live=True)
    source.open()
    source.read()
    threading_wait = 0.1
    import time

    time.sleep(threading_wait)
    source.read()
    assert source.skipped >= 10, "a late reader gets the current frame, like a camera"


def test_live_synthetic_clock_starts_at_the_first_read_not_at_open():
    """An engine build between open() and the graph's first read must not skip the scene's
    start (its smoke plume): the first frames read are frames 0, 1, 2 of the seed."""
    import time

    period_s = 0.2
    offline = SyntheticSource(32, 32, fps=1 / period_s, seed=4, live=False)
    live = SyntheticSource(32, 32, fps=1 / period_s, seed=4, live=True)
    offline.open()
    live.open()
    time.sleep(3 * period_s)  # what an engine build does, scaled down
    frames = [live.read() for _ in range(3)]
    assert live.skipped == 0, f"expected no frame skipped after a late start, {live.skipped} were"
    for index, frame in enumerate(frames):
        np.testing.assert_array_equal(frame, offline.read(), f"live read {index} is frame {index}")


def test_credentials_are_redacted():
    assert redact_credentials("rtsp://admin:secret@10.0.0.5:554/s") == "rtsp://***@10.0.0.5:554/s"
