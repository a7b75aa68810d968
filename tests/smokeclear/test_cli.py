"""The command line end to end, on the synthetic scene and on files, and its bad inputs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from smokeclear.cli import main


def frame_count(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def test_live_run_on_the_synthetic_scene_records_and_summarises(tmp_path, capsys, tiny_weights):
    out = tmp_path / "demo.mp4"
    code = main(
        [
            "--display",
            "none",
            "--record",
            str(out),
            "--size",
            "64x48",
            "--fps",
            "30",
            "--max-frames",
            "45",
            "--backend",
            "torch",
            "--weights",
            str(tiny_weights),
            "--view",
            "side-by-side",
            "--json",
            str(tmp_path / "report.json"),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "captured 45" in printed and "p99" in printed and "end to end" in printed
    shown = frame_count(out)
    assert 35 <= shown <= 45, f"the recording holds the shown frames ({shown})"
    assert cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FRAME_WIDTH) == 128, "side-by-side"
    assert '"captured": 45' in (tmp_path / "report.json").read_text()


@pytest.mark.parametrize(
    "chain",
    [
        "dereflect",
        "desmoke,dereflect",
        "lowlight",
        "desmoke,lowlight",
        "smooth",
        "desmoke,smooth",
        "enhance",
        "desmoke,enhance",
    ],
)
def test_restorers_run_live_alone_and_after_desmoke(
    chain, capsys, short_live_argv, tiny_weights_of, tiny_smooth_weights
):
    weights = {"smooth": tiny_smooth_weights}
    for name in chain.split(","):
        weights.setdefault(name, tiny_weights_of(name))
    code = main(
        short_live_argv(
            20,
            "--restorer",
            chain,
            *(f"--weights={name}={weights[name]}" for name in chain.split(",")),
        )
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "captured 20" in printed
    assert re.search(r"processed [1-9]", printed), f"the engine ran: {printed}"


def test_default_backend_on_cpu_uses_onnxruntime(tmp_path, capsys, tiny_weights):
    code = main(
        [
            "--display",
            "none",
            "--size",
            "64x64",
            "--max-frames",
            "10",
            "--fps",
            "20",
            "--weights",
            str(tiny_weights),
            "--work-scale",
            "1",
        ]
    )
    assert code == 0
    assert "onnxruntime-cpu" in capsys.readouterr().out


def test_a_video_file_is_processed_completely(tmp_path, capsys, tiny_weights):
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for value in range(17):
        writer.write(np.full((48, 64, 3), 10 * value, np.uint8))
    writer.release()
    out = tmp_path / "out.mkv"
    assert (
        main(
            [
                "--source",
                str(clip),
                "--display",
                "none",
                "--record",
                str(out),
                "--backend",
                "torch",
                "--weights",
                str(tiny_weights),
            ]
        )
        == 0
    )
    assert "processed 17" in capsys.readouterr().out
    assert frame_count(out) == 17


def test_restore_image_folder_and_video(tmp_path, tiny_weights):
    from smokeclear.synthetic.scene import LaparoscopicScene

    scene = LaparoscopicScene(70, 50, seed=4)
    image = tmp_path / "smoky.png"
    cv2.imwrite(str(image), scene.render(30).smoky)
    common = ["--backend", "torch", "--weights", str(tiny_weights)]
    assert main(["restore", str(image), str(tmp_path / "restored.png"), *common]) == 0
    restored = cv2.imread(str(tmp_path / "restored.png"))
    assert restored.shape == (50, 70, 3)

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"f{i}.jpg"), scene.render(i).smoky)
    assert main(["restore", str(folder), str(tmp_path / "restored"), *common]) == 0
    assert sorted(p.name for p in (tmp_path / "restored").iterdir()) == [
        "f0.png",
        "f1.png",
        "f2.png",
    ]

    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 25, (70, 50))
    for i in range(9):
        writer.write(scene.render(i).smoky)
    writer.release()
    assert main(["restore", str(clip), str(tmp_path / "restored.mp4"), *common]) == 0
    assert frame_count(tmp_path / "restored.mp4") == 9


def test_restore_matches_the_engine_exactly(tmp_path, tiny_weights):
    """Stills are lossless: the PNG holds exactly what the engine produced."""
    from smokeclear.registry import get_restorer
    from smokeclear.runtime import EngineRequest, create_engine
    from smokeclear.synthetic.scene import LaparoscopicScene

    frame = LaparoscopicScene(64, 48, seed=1).render(12).smoky
    cv2.imwrite(str(tmp_path / "in.png"), frame)
    main(
        [
            "restore",
            str(tmp_path / "in.png"),
            str(tmp_path / "out.png"),
            "--backend",
            "torch",
            "--weights",
            str(tiny_weights),
            "--work-scale",
            "1",
        ]
    )
    engine, _ = create_engine(
        EngineRequest(
            (get_restorer("desmoke"),), backend="torch", weights={"desmoke": tiny_weights}
        )
    )
    engine.start(48, 64)
    expected = engine.download(engine.infer(engine.upload(frame)), 48, 64)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "out.png")), expected)


def test_live_detail_magnification_on_onnxruntime(capsys, tiny_smooth_weights):
    argv = ["--display", "none", "--size", "64x48", "--fps", "30", "--max-frames", "15"]
    smooth = ["--restorer", "smooth", "--weights", str(tiny_smooth_weights)]
    code = main([*argv, *smooth, "--backend", "onnxruntime", "--detail-gain", "2.5"])
    printed = capsys.readouterr().out
    assert code == 0 and "captured 15" in printed
    assert re.search(r"processed [1-9]", printed), f"the engine ran: {printed}"


def test_restore_with_a_fixed_detail_gain(tmp_path, tiny_smooth_weights):
    """Gain 1 gives the frame back; gain 3 does not."""
    from smokeclear.synthetic.scene import LaparoscopicScene

    frame = LaparoscopicScene(64, 48, seed=1).render(12).smoky
    cv2.imwrite(str(tmp_path / "in.png"), frame)
    common = ["--restorer", "smooth", "--weights", str(tiny_smooth_weights), "--work-scale", "1"]
    outputs = {}
    for gain in ("1", "3"):
        out = tmp_path / f"gain{gain}.png"
        argv = ["restore", str(tmp_path / "in.png"), str(out), "--backend", "torch"]
        assert main([*argv, *common, "--detail-gain", gain]) == 0
        outputs[gain] = cv2.imread(str(out)).astype(int)
    assert np.abs(outputs["1"] - frame).max() <= 1, "gain 1 returns the frame"
    assert np.abs(outputs["3"] - frame).max() > 4, "gain 3 magnifies the detail"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--source", "/dev/video99"], "camera /dev/video99 not found"),
        (["--source", "missing.mp4"], "source 'missing.mp4' not found"),
        (["--source", "missing.mp4", "--reconnect", "forever"], "source 'missing.mp4' not found"),
        (["--reconnect", "sometimes"], "invalid choice: 'sometimes'"),
        (["--size", "1280by720"], "bad --size '1280by720'"),
        (["--size", "8x8"], "out of range"),
        (["--restorer", "desmok"], "unknown restorer 'desmok'"),
        (["--weights", "CORRUPT"], "corrupt or not a safetensors file"),
        (["--weights", "nope.safetensors"], "does not exist"),
        (["restore", "image.png", "o.png", "--weights", "NAN"], "NAN holds non-finite values"),
        (["--work-scale", "0.3"], "bad --work-scale"),
        (["--no-such-flag"], "unrecognized arguments"),
        (["--record", "out.gif"], "unknown video container"),
        (["restore", "nothing.png", "out.png"], "does not exist"),
        (["restore", "image.png", "out.jpg"], "not a lossless still format"),
        (["train", "desmoke", "--out", "x", "--config", "BADCONFIG"], "unknown key 'widht'"),
        (
            ["train", "desmoke", "--out", "x", "--config", "ZEROWIDTH"],
            "ZEROWIDTH:network.width must be in [1, 1024], got 0",
        ),
        (
            ["train", "desmoke", "--out", "x", "--config", "NEGATIVERATE"],
            "NEGATIVERATE:train.learning_rate must be in (0, 1], got -1",
        ),
        (["--weights", "HUGE.safetensors"], "network_config.width must be in [1, 1024], got 99999"),
        (["--budget-ms", "0"], "--budget-ms 0 is out of range"),
        (["--budget-ms", "-5"], "--budget-ms -5 is out of range"),
        (["--budget-ms", "nan"], "--budget-ms nan is out of range"),
        (["--budget-ms", "inf"], "--budget-ms inf is out of range"),
        (["--json", "missing/run.json"], "folder missing does not exist"),
        (["eval", "desmoke", "--json", "missing/t.json"], "folder missing does not exist"),
        (["restore", "image.png", "image.png"], "it would be destroyed"),
        (["restore", "image.png", "./link.png"], "it would be destroyed"),
        (["restore", ".", "."], "it would be destroyed"),
        (["--source", "image.png", "--record", "image.png"], "it would be destroyed"),
        (["restore", "clash", "out"], "clash.jpg and clash.png would be written to the same"),
        (["restore", "image.png", "/proc/self/o.png"], "cannot write into /proc/self"),
        (["restore", "image.png", "image.png/o.png"], "cannot write into image.png: Not a dir"),
        (["restore", ".", "/proc/no-such/out"], "cannot create output folder /proc/no-such/out"),
        (["--detail-gain", "2"], "--detail-gain needs the smooth restorer"),
        (["--detail-gain", "-1", "--restorer", "smooth"], "--detail-gain -1 is negative"),
        (["--detail-gain", "nan", "--restorer", "smooth"], "--detail-gain nan is not a number"),
        (["restore", "image.png", "o.png", "--detail-gain", "2"], "needs the smooth restorer"),
        (
            ["restore", "image.png", "o.png", "--restorer", "smooth", "--detail-gain", "-0.5"],
            "--detail-gain -0.5 is negative",
        ),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(argv, message, tmp_path, capsys, monkeypatch):
    import torch
    from safetensors.torch import save_file

    monkeypatch.chdir(tmp_path)
    (tmp_path / "CORRUPT").write_bytes(b"\x00" * 64)
    write_nan_weights(tmp_path / "NAN")
    cv2.imwrite(str(tmp_path / "image.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "BADCONFIG").write_text("network:\n  widht: 8\ntrain: {}\n")
    (tmp_path / "ZEROWIDTH").write_text("network:\n  width: 0\ntrain: {}\n")
    (tmp_path / "NEGATIVERATE").write_text("network: {}\ntrain:\n  learning_rate: -1\n")
    huge = {"restorer": "desmoke", "network_config": json.dumps({"width": 99999})}
    save_file({"x": torch.zeros(1)}, str(tmp_path / "HUGE.safetensors"), metadata=huge)
    (tmp_path / "link.png").symlink_to(tmp_path / "image.png")
    (tmp_path / "clash").mkdir()
    for suffix in (".jpg", ".png"):
        cv2.imwrite(str(tmp_path / "clash" / f"clash{suffix}"), np.zeros((8, 8, 3), np.uint8))
    code = main([*argv, "--display", "none"] if argv[0].startswith("--") else argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("smokeclear: error: "), err
    assert message in err[0] and "Traceback" not in err[0]


def write_nan_weights(path: Path) -> None:
    """Tiny desmoke weights with every float NaN (issue 18, case 1)."""
    import torch

    from smokeclear.nets.desmoke import DesmokeConfig, DesmokeNet
    from smokeclear.nets.loading import save_weights
    from smokeclear.registry import get_restorer

    net = DesmokeNet(DesmokeConfig(width=4, max_channels=8))
    with torch.no_grad():
        for tensor in net.state_dict().values():
            if tensor.is_floating_point():
                tensor.fill_(float("nan"))
    save_weights(net.eval(), path, get_restorer("desmoke"), {})


def test_eval_without_scikit_image_says_so_before_any_work(capsys, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *rest: None if name == "skimage" else find_spec(name, *rest),
    )
    code = main(["eval", "desmoke"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "needs scikit-image" in err[0] and "smokeclear[train]" in err[0], err


def test_unreadable_file_in_the_installed_command(tmp_path):
    """The real console entry point: one line on stderr, no traceback, status 2."""
    locked = tmp_path / "clip.mp4"
    locked.write_bytes(b"not a video")
    result = subprocess.run(
        [sys.executable, "-m", "smokeclear", "--source", str(locked), "--display", "none"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"smokeclear: error: cannot decode video {locked}. Check it is a video file FFmpeg "
        "can read (try ffprobe on it)."
    ]


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_cleanly_and_finalise_the_recording(tmp_path, tiny_weights, signal_number):
    out = tmp_path / "live.mp4"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "smokeclear",
            "--display",
            "none",
            "--size",
            "64x48",
            "--backend",
            "torch",
            "--weights",
            str(tiny_weights),
            "--record",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 90
    partial = tmp_path / "live.partial.mp4"  # the recording's name until it is finalised
    while not (partial.exists() and partial.stat().st_size > 0) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    process.send_signal(signal_number)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "stopped by stop request" in stdout
    assert frame_count(out) > 5, "the recording was finalised and is playable"
