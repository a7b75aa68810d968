"""Stills in and out: depth, alpha, grey and orientation kept; no half files; every
bad file in a folder named at the end while the good ones are written."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from smokeclear.cli import main
from smokeclear.errors import UserError
from smokeclear.stills import StillError, read_still, restore_still, write_still


def identity(bgr8: np.ndarray) -> np.ndarray:
    return bgr8.copy()


def brighten(bgr8: np.ndarray) -> np.ndarray:
    return np.clip(bgr8.astype(int) + 2, 0, 255).astype(np.uint8)


def ramp16(height: int = 8, width: int = 64) -> np.ndarray:
    """A (H, W, 3) uint16 BGR ramp with width * height distinct levels."""
    levels = np.arange(height * width, dtype=np.uint16).reshape(height, width) * 97
    return np.dstack([levels, levels // 2, 65535 - levels])


def test_a_16_bit_ramp_keeps_its_depth_and_every_untouched_level():
    ramp = ramp16()
    out = restore_still(ramp, identity)
    assert out.dtype == np.uint16 and np.array_equal(out, ramp), "identity is lossless at 16 bit"
    assert len(np.unique(out[:, :, 0])) > 256, "more levels than 8 bits hold"
    shifted = restore_still(ramp, brighten).astype(int)
    top8 = (ramp >> 8).astype(int)
    expected = np.clip(ramp + 257 * (np.minimum(top8 + 2, 255) - top8), 0, 65535)
    assert np.array_equal(shifted, expected), "an 8-bit change of +2 is +514 at 16 bit"


def test_8_bit_bgr_is_exactly_the_engine_output():
    image = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    assert np.array_equal(restore_still(image, brighten), brighten(image))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_alpha_is_passed_through_unchanged(dtype):
    rng = np.random.default_rng(1)
    image = rng.integers(0, np.iinfo(dtype).max, (6, 5, 4), dtype=dtype)
    out = restore_still(image, brighten)
    assert out.shape == (6, 5, 4) and out.dtype == dtype
    assert np.array_equal(out[:, :, 3], image[:, :, 3]), "alpha unchanged"
    assert not np.array_equal(out[:, :, :3], image[:, :, :3]), "colour restored"


def test_grey_comes_back_grey():
    grey = np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000  # top 8 bits below 254
    out = restore_still(grey, brighten)
    assert out.shape == (8, 8) and out.dtype == np.uint16
    assert np.array_equal(out.astype(int), np.clip(grey.astype(int) + 514, 0, 65535))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_on_read(tmp_path, orientation):
    """Upright as OpenCV's own oriented read (IMREAD_COLOR) and any viewer show it."""
    from PIL import Image

    pattern = np.zeros((16, 24, 3), np.uint8)
    pattern[:4, :8] = 255  # a bright block in one corner tells every turn apart
    pattern[:, :, 1] = np.arange(24, dtype=np.uint8) * 8
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "turned.jpg"
    Image.fromarray(pattern[:, :, ::-1]).save(path, exif=exif, quality=100)
    upright = read_still(path)
    assert np.array_equal(upright, cv2.imread(str(path), cv2.IMREAD_COLOR))
    assert upright.shape[:2] == ((24, 16) if orientation >= 5 else (16, 24))


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_rgba_written_and_read_back_exactly(tmp_path, suffix):
    image = np.dstack([ramp16(), np.full((8, 64), 40000, np.uint16)])
    path = tmp_path / f"out{suffix}"
    write_still(path, image)
    assert np.array_equal(read_still(path), image)
    assert [p.name for p in tmp_path.iterdir()] == [path.name], "no temporary left behind"


def test_a_failed_write_leaves_no_half_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "out.png"

    def interrupted(source, destination):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(UserError, match="No space left on device"):
        write_still(target, np.zeros((4, 4, 3), np.uint8))
    assert list(tmp_path.iterdir()) == [], "neither the final name nor a temporary"


def test_bad_files_say_why(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.png").write_text("these are my notes\n")
    (tmp_path / "noise.png").write_bytes(bytes(range(256)) * 4)
    reasons = {}
    for name in ("empty.png", "notes.png", "noise.png"):
        with pytest.raises(StillError) as caught:
            read_still(tmp_path / name)
        reasons[name] = caught.value.reason
    assert reasons == {
        "empty.png": "empty file",
        "notes.png": "text, not a PNG image",
        "noise.png": "not a readable image",
    }


def common_args(weights: Path) -> list[str]:
    return ["--backend", "torch", "--weights", str(weights)]


def test_folder_restore_writes_every_good_file_and_lists_every_bad_one(
    tmp_path, tiny_weights, capsys
):
    frames = tmp_path / "frames"
    frames.mkdir()
    good = np.random.default_rng(2).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    for name in ("a.png", "c.png", "e.png"):
        cv2.imwrite(str(frames / name), good)
    (frames / "b.png").write_bytes(b"")
    (frames / "d.png").write_text("not a picture")
    code = main(["restore", str(frames), str(tmp_path / "out"), *common_args(tiny_weights)])
    err = capsys.readouterr().err
    assert code == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "c.png", "e.png"]
    assert "not restored: b.png: empty file" in err
    assert "not restored: d.png: text, not a PNG image" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("smokeclear: error: 2 of 5 images not restored: b.png, d.png"), last
    assert "Traceback" not in err


def test_restore_keeps_16_bit_and_alpha_at_full_resolution_by_default(
    tmp_path, tiny_weights, capsys
):
    image = np.dstack([ramp16(16, 32), np.arange(512, dtype=np.uint16).reshape(16, 32)])
    source = tmp_path / "deep.png"
    cv2.imwrite(str(source), image)
    out = tmp_path / "restored.tif"
    assert main(["restore", str(source), str(out), *common_args(tiny_weights)]) == 0
    restored = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert restored.dtype == np.uint16 and restored.shape == (16, 32, 4)
    assert np.array_equal(restored[:, :, 3], image[:, :, 3]), "alpha unchanged"
    assert len(np.unique(restored[:, :, 0])) > 256, "still more levels than 8 bits hold"
    assert "at work scale 1" in capsys.readouterr().err, "restore is full resolution offline"


def test_an_output_folder_without_write_permission_is_one_line(tmp_path, capsys):
    source = tmp_path / "in.png"
    cv2.imwrite(str(source), np.zeros((8, 8, 3), np.uint8))
    # /proc/self exists and no file can be made in it, even by root (where chmod does not bite)
    cases = [(["restore", str(source), "/proc/self/out.png"], "cannot write into /proc/self")]
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        cases.append(
            (["restore", str(tmp_path), str(locked)], f"cannot write into {locked}: Permission")
        )
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


def test_float_stills_stay_float_in_tiff_and_become_16_bit_in_png(tmp_path):
    image = np.linspace(0, 1, 8 * 8 * 3, dtype=np.float32).reshape(8, 8, 3)
    out = restore_still(image, identity)
    assert out.dtype == np.float32 and np.array_equal(out, image), "identity is lossless"
    write_still(tmp_path / "f.tif", out)
    write_still(tmp_path / "f.png", out)
    assert np.array_equal(read_still(tmp_path / "f.tif"), image)
    png = read_still(tmp_path / "f.png")
    assert png.dtype == np.uint16 and np.abs(png / 65535 - image).max() < 1e-5


def test_folder_listing_skips_hidden_files_and_folders(tmp_path):
    from smokeclear.stream.sources.folder import image_files

    for name in ("b.png", "a.jpg", ".a.x1y2.partial.png", "._b.png"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "dir.png").mkdir()
    assert [p.name for p in image_files(tmp_path)] == ["a.jpg", "b.png"]
