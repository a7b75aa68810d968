"""The transfer-cost bench: CPU per frame of each backend's upload + download, and of infer."""

from __future__ import annotations

import json

import pytest

from smokeclear.cli import main


def test_cli_prints_and_writes_json_per_backend(tmp_path, capsys):
    path = tmp_path / "transfer.json"
    options = ["--size", "64x48", "--frames", "2", "--json", str(path)]
    assert main(["bench", "transfer-cost", *options]) == 0
    printed = capsys.readouterr().out
    assert "torch-cpu" in printed and "upload + download at 64x48" in printed
    written = json.loads(path.read_text())
    assert "python" in written["machine"], written["machine"]
    rows = written["results"]
    assert {"torch-cpu", "onnxruntime-cpu", "onnxruntime-frames"} <= {r["backend"] for r in rows}
    for row in rows:
        assert row["size"] == "64x48" and row["frames"] == 2, row
        assert all(row[key] >= 0 for key in ("thread_ms", "process_ms", "infer_ms")), row
        assert row["infer_wall_ms"] > 0, row


@pytest.mark.parametrize("arguments", [["--frames", "0"], ["--size", "64by48"]])
def test_bad_transfer_cost_arguments_are_one_line(arguments, capsys):
    assert main(["bench", "transfer-cost", *arguments]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("smokeclear: error: "), err
