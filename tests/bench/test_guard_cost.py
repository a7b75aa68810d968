"""The guard-cost bench: the output guard's cost per frame, per implementation."""

from __future__ import annotations

import json

from smokeclear.cli import main


def test_cli_prints_and_writes_json_per_size(tmp_path, capsys):
    path = tmp_path / "guard.json"
    options = ["--size", "64x48", "--size", "32x16", "--frames", "2", "--json", str(path)]
    assert main(["bench", "guard-cost", *options]) == 0
    printed = capsys.readouterr().out
    assert "output guard at 64x48: torch_cpu" in printed and "at 32x16" in printed, printed
    rows = json.loads(path.read_text())["results"]
    assert [row["size"] for row in rows] == ["64x48", "32x16"]
    for row in rows:
        for key in ("torch_cpu_ms", "numpy_float_ms", "numpy_uint8_ms", "input_and_rule_ms"):
            assert row[key] > 0, row


def test_bad_frame_count_is_one_line(capsys):
    assert main(["bench", "guard-cost", "--frames", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--frames 0" in err[0], err
