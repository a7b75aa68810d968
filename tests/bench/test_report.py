"""The bench report: target marking, the papers' rows, strict JSON and plots."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import pytest

from smokeclear.bench.plots import write_plots
from smokeclear.bench.report import evaluate_targets, finite, paper_references

H100 = "NVIDIA H100 80GB HBM3"


def results(
    gpu: str | None = H100,
    sizes: tuple[str, ...] = ("1920x1080",),
    fps: float = 60.0,
    engine: tuple[dict, ...] = (),
    graph: tuple[dict, ...] = (),
) -> dict[str, Any]:
    return {
        "machine": {"gpu": gpu},
        "configuration": {
            "restorers": ["desmoke"],
            "device": "cuda" if gpu else "cpu",
            "sizes": list(sizes),
            "fps": fps,
            "graph_seconds": 10.0,
        },
        "matmul_peak": {"dtype": "fp16" if gpu else "fp32", "flops_per_s": 1e15},
        "engine": list(engine),
        "graph": list(graph),
    }


def engine_row(fps: float, speedup: float, fraction: float, size=(1920, 1080)) -> dict:
    return {
        "restorers": "desmoke",
        "engine": "aoti-cuda-fp16-graphs",
        "precision": "fp16",
        "width": size[0],
        "height": size[1],
        "fps": fps,
        "infer_fps": fps,
        "speedup_vs_torch_fp32_eager": speedup,
        "fraction_of_peak": fraction,
    }


def graph_row(streams: int, ok: bool, p99: float = 10.0, achieved: float = 60.0) -> dict:
    return {
        "restorers": "desmoke",
        "engine": "aoti-cuda-fp16-graphs",
        "width": 1920,
        "height": 1080,
        "fps_target": 60.0,
        "streams": streams,
        "budget_ok": ok,
        "achieved_fps_min": achieved,
        "latency_ms": {"end to end, processed": {"p99": p99}},
    }


def desmoke_statuses(targets: list[dict]) -> list[str]:
    return [t["status"] for t in targets if t["restorer"] == "desmoke"]


def test_targets_are_met_on_an_h100_that_meets_them():
    run = results(
        engine=(engine_row(300.0, 6.0, 0.3),),
        graph=(graph_row(1, True, p99=12.0), graph_row(2, True), graph_row(4, True)),
    )
    targets = evaluate_targets(run)
    assert desmoke_statuses(targets) == ["met"] * 5, targets
    assert targets[0]["measured"].startswith("300.0 fps")


def test_targets_are_missed_on_an_h100_that_misses_them():
    run = results(
        engine=(engine_row(100.0, 3.0, 0.1),),
        graph=(graph_row(1, True, p99=20.0), graph_row(2, False, achieved=40.0)),
    )
    targets = evaluate_targets(run)
    assert desmoke_statuses(targets) == ["missed"] * 5, targets
    assert "240" in targets[0]["target"], "desmoke's own target is 240 fps, not 60"


def test_a_broken_budget_at_one_stream_misses_the_latency_target():
    run = results(graph=(graph_row(1, False, p99=5.0, achieved=31.0),))
    latency = next(t for t in evaluate_targets(run) if "latency" in t["target"])
    assert latency["status"] == "missed" and "31.0 fps" in latency["measured"]


def test_targets_are_not_judged_off_an_h100_but_show_the_figure():
    run = results(gpu="NVIDIA L4", engine=(engine_row(300.0, 6.0, 0.3),))
    fps = evaluate_targets(run)[0]
    assert fps["status"] == "not measured"
    assert "H100" in fps["why"] and "NVIDIA L4" in fps["why"]
    assert fps["measured"].startswith("300.0 fps")


def test_targets_say_why_they_were_not_measured():
    on_cpu = evaluate_targets(results(gpu=None, sizes=("320x180",), fps=15.0))
    assert set(desmoke_statuses(on_cpu)) == {"not measured"}
    assert "CPU" in on_cpu[0]["why"]
    assert "--fps 60" in next(t for t in on_cpu if "latency" in t["target"])["why"]
    no_1080p = evaluate_targets(results(sizes=("1280x720",)))
    assert no_1080p[0]["why"] == "1920x1080 not in --sizes"
    few_streams = evaluate_targets(results(graph=(graph_row(1, True), graph_row(2, True))))
    streams = next(t for t in few_streams if "concurrent" in t["target"])
    assert streams["status"] == "not measured" and "stopped at 2" in streams["why"]


def test_registered_restorers_left_out_are_listed_not_dropped():
    targets = evaluate_targets(results())
    pending = {t["restorer"]: t for t in targets if t["restorer"] != "desmoke"}
    assert set(pending) == {"dereflect", "smooth", "lowlight", "enhance"}
    assert all(t["status"] == "not measured" and t["why"] for t in pending.values())


def test_paper_figures_sit_beside_ours_at_the_same_size():
    run = results(engine=(engine_row(52.6, 1.0, 0.1, size=(512, 512)),))
    references = paper_references(run)
    desmoke = [r for r in references if r["restorer"] == "desmoke"]
    assert [r["status"] for r in desmoke] == ["compared", "compared"]
    assert desmoke[0]["ours"][0]["infer_vs_paper"] == pytest.approx(52.6 * 0.038)
    others = {r["restorer"]: r["status"] for r in references if r["restorer"] != "desmoke"}
    assert others == {
        "dereflect": "not measured",
        "smooth": "not measured",
        "lowlight": "not measured",
    }
    dereflect = next(r for r in references if r["restorer"] == "dereflect")
    assert "not in --restorer" in dereflect["why"], "registered, but this run left it out"
    not_timed = paper_references(results())[0]
    assert not_timed["status"] == "not measured" and "--sizes 512x512" in not_timed["why"]


def test_json_gets_no_nan():
    value = finite({"p50": math.nan, "rows": [1.0, math.inf, {"x": -math.inf}], "n": 3})
    assert value == {"p50": None, "rows": [1.0, None, {"x": None}], "n": 3}
    json.loads(json.dumps(value), parse_constant=pytest.fail)


def test_plots_are_skipped_with_a_note_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    written, note = write_plots(results(), tmp_path / "bench.json")
    assert written == [] and "smokeclear[bench]" in note


def test_plots_are_written_with_matplotlib(tmp_path):
    pytest.importorskip("matplotlib")
    run = results(
        engine=(
            engine_row(300.0, 6.0, 0.3) | {"width": 640, "height": 360},
            engine_row(120.0, 6.0, 0.3),
        ),
        graph=(
            graph_row(1, True)
            | {"end_to_end_quantiles_ms": [5 + q / 10 for q in range(101)], "budget_ms": 16.7},
        ),
    )
    written, note = write_plots(run, tmp_path / "bench.json")
    assert [p.name for p in written] == ["bench-fps-vs-resolution.png", "bench-latency-cdf.png"]
    assert note is None and all(p.read_bytes()[:4] == b"\x89PNG" for p in written)
