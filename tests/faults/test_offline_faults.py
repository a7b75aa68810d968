"""Faults around the live graph: weights, caches, configs, files, disks and signals.

Each case goes through the command line (``smokeclear.cli.main`` in-process, or a
subprocess where a signal must hit a real process) and checks the user-facing
invariant: one clear line and exit 2 for bad input, nothing shown or written as
PROCESSED that the output guard must stop, no input destroyed, and a recording that
plays back.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from smokeclear.cli import main


def one_error_line(capsys) -> str:
    """The one ``smokeclear: error:`` line on stderr, the last line printed (progress
    lines such as ``restoring image ...`` may come before it), and no traceback."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    errors = [line for line in lines if line.startswith("smokeclear: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], lines
    assert "Traceback" not in err, err
    return errors[0]


def textured_png(path, width=64, height=48):
    rng = np.random.default_rng(5)
    cv2.imwrite(str(path), rng.integers(0, 255, (height, width, 3), np.uint8))
    return path


# --------------------------------------------------------------------------- weights


@pytest.mark.expect_errors
def test_nan_weights_are_refused_or_never_shown_as_processed(
    kit, tmp_path, capsys, short_live_argv, tiny_weights
):
    nan = kit.nan_weights_of(tiny_weights, tmp_path / "nan.safetensors")
    report_path = tmp_path / "run.json"
    code = main(short_live_argv(15, "--weights", str(nan), "--json", str(report_path)))
    if code == 2:  # refused at load
        line = one_error_line(capsys).lower()
        assert "nan" in line or "finite" in line, line
        return
    assert code == 0
    counters = json.loads(report_path.read_text())["counters"]
    assert counters["shown_processed"] == 0, f"NaN output was shown as PROCESSED: {counters}"


@pytest.mark.expect_errors
def test_nan_weights_never_write_a_restored_still(kit, tmp_path, capsys, tiny_weights):
    nan = kit.nan_weights_of(tiny_weights, tmp_path / "nan.safetensors")
    image, out = textured_png(tmp_path / "in.png"), tmp_path / "out.png"
    argv = ["restore", str(image), str(out), "--weights", str(nan), "--backend", "torch"]
    assert main(argv) == 2, "a NaN network must not restore anything"
    one_error_line(capsys)
    assert not out.exists(), "nothing is written under the final name"


@pytest.mark.parametrize("command", ["run", "restore"])
def test_truncated_weights_are_one_clear_line(command, tmp_path, capsys, tiny_weights):
    data = tiny_weights.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    image = textured_png(tmp_path / "in.png")
    argv = (
        ["--display", "none", "--max-frames", "5", "--size", "64x48"]
        if command == "run"
        else ["restore", str(image), str(tmp_path / "out.png")]
    )
    assert main([*argv, "--weights", str(cut), "--backend", "torch"]) == 2
    assert "cut.safetensors" in one_error_line(capsys)


# --------------------------------------------------------------------------- caches, configs


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_corrupt_onnx_cache_entry_is_never_loaded(
    damage, tmp_path, caplog, monkeypatch, tiny_weights
):
    """A cache entry cut short by a crash is re-exported (the cheap half of the run:
    the export itself takes a minute on a busy CPU and is tested in tests/export)."""
    from smokeclear.onnx_models import cached_onnx, cached_path, find_onnx
    from smokeclear.registry import get_restorer
    from smokeclear.runtime import EngineRequest

    monkeypatch.setenv("SMOKECLEAR_CACHE", str(tmp_path / "cache"))
    request = EngineRequest(
        (get_restorer("desmoke"),), "onnxruntime", weights={"desmoke": tiny_weights}
    )
    path = cached_path(request)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"" if damage == "empty" else b"\x08\x09\x12\x07pytorch\x1a")
    assert cached_onnx(request) is None
    assert find_onnx(request) is None, "the damaged entry is exported again, not loaded"
    assert any("unreadable" in record.getMessage() for record in caplog.records)


def test_config_out_of_range_is_one_clear_line(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("network:\n  width: 0\ntrain:\n  learning_rate: 0.001\n")
    argv = ["train", "desmoke", "--out", str(tmp_path / "run"), "--config", str(config)]
    assert main([*argv, "--max-epochs", "1", "--steps-per-epoch", "1"]) == 2
    assert "width" in one_error_line(capsys)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


# --------------------------------------------------------------------------- inputs, disks


@pytest.mark.parametrize("how", ["same path", "symlink", "record onto source"])
def test_output_equal_to_input_is_refused_and_the_input_kept(how, tmp_path, capsys):
    image = textured_png(tmp_path / "in.png")
    before = image.read_bytes()
    if how == "record onto source":
        argv = ["--display", "none", "--source", str(image), "--record", str(image)]
    else:
        out = image
        if how == "symlink":
            out = tmp_path / "link.png"
            out.symlink_to(image)
        argv = ["restore", str(image), str(out)]
    assert main(argv) == 2
    assert "destroyed" in one_error_line(capsys)
    assert image.read_bytes() == before, "the input is untouched"


#: What the "disk" holds per file when nothing was seen on disk before: 60 frames of
#: the 64x48 scene take about 20 kB in any codec the recorder uses.
DISK_BYTES = 12_000


def test_disk_full_while_recording_alerts_and_keeps_what_was_written(
    kit, tmp_path, short_live_argv, tiny_weights
):
    """A real failed write, in a child process: no file of the child may grow past
    :data:`DISK_BYTES`; once the recording (under its final or a temporary name) is seen
    to grow past its first write, past that size plus 256 bytes (``prlimit`` on the
    child). Writes then fail with EFBIG, as on a full disk. Python ignores SIGXFSZ, so
    the write fails instead of the process. The limit never touches the test process,
    whose own output may be a file."""
    out = tmp_path / "case.mp4"
    argv = short_live_argv(60, "--weights", str(tiny_weights), "--record", str(out))
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)

    def limit_child() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (DISK_BYTES, hard))

    env = {**os.environ, "SMOKECLEAR_CACHE": str(tmp_path / "cache")}
    child = subprocess.Popen(
        [sys.executable, "-m", "smokeclear", *argv],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limit_child,
    )
    grown = False
    first_size = 0
    while child.poll() is None and not grown:
        size = max((p.stat().st_size for p in tmp_path.glob("case*")), default=0)
        if first_size and size > first_size:
            resource.prlimit(child.pid, resource.RLIMIT_FSIZE, (min(size + 256, DISK_BYTES), hard))
            grown = True
        first_size = first_size or size
        time.sleep(0.005)
    _, err = child.communicate(timeout=120)
    assert "Traceback" not in err, err
    alerts = [line for line in err.splitlines() if "warning" in line or "error" in line]
    assert any(out.stem in line for line in alerts), f"no alert names {out}: {err}"
    assert child.returncode in (0, 1, 2), "the run ends normally: the view outlives the recording"
    if grown:  # a fragment reached the disk before it filled
        left = max(tmp_path.glob("case*"), key=lambda p: p.stat().st_size)
        assert kit.video_frames(left) > 0, f"what was on disk before it filled plays back: {left}"
