"""The module-share bench: per-submodule time of one forward pass, and its share."""

import itertools
import json
import types

import pytest

from smokeclear.bench import module_share as module_share_module
from smokeclear.bench.module_share import module_share
from smokeclear.cli import main


def test_repeated_submodule_calls_add_up_to_one_frame(monkeypatch):
    # A clock that advances 1 ms per reading: a frame reads it twice (1 ms), and each
    # hooked call of a submodule reads it twice (1 ms per call).
    ticks = itertools.count()
    fake_time = types.SimpleNamespace(perf_counter=lambda: next(ticks) / 1e3)
    monkeypatch.setattr(module_share_module, "time", fake_time)
    row = module_share("dereflect", 64, 48, iterations=2, warmup=1)
    assert row["size"] == "64x48" and row["device"] == "cpu" and row["dtype"] == "float32"
    assert list(row["modules"]) == ["step"], "the three unrolled iterations share one step"
    assert row["frame_ms"] == pytest.approx(1.0)
    assert row["modules"]["step"] == pytest.approx({"ms": 3.0, "share": 3.0})


def test_cli_prints_and_writes_json(tmp_path, capsys):
    path = tmp_path / "share.json"
    options = ["--size", "64x64", "--iterations", "1", "--json", str(path)]
    assert main(["bench", "module-share", "--restorer", "desmoke", *options]) == 0
    assert "ms per frame" in capsys.readouterr().out
    (row,) = json.loads(path.read_text())
    assert row["restorer"] == "desmoke" and "to_rgb" in row["modules"]
