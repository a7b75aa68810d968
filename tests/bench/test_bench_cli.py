"""``smokeclear bench`` end to end on the CPU, tiny: it writes JSON and markdown; no speed
is asserted. Bad arguments are one line and exit status 2."""

from __future__ import annotations

import json

import pytest

from smokeclear.cli import main


def test_a_tiny_bench_writes_the_json_and_the_markdown(tmp_path, capsys, tiny_weights):
    out = tmp_path / "results" / "run.json"
    code = main(
        [
            "bench",
            "--restorer",
            "desmoke",
            "--weights",
            str(tiny_weights),
            "--sizes",
            "64x48",
            "--backends",
            "torch",
            "--precisions",
            "fp32",
            "--iterations",
            "3",
            "--warmup",
            "1",
            "--streams",
            "1",
            "--graph-seconds",
            "0.6",
            "--fps",
            "20",
            "--matmul-seconds",
            "0.05",
            "--device",
            "cpu",
            "--no-plots",
            "--json",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "[engine 1/1] desmoke torch-fp32 64x48" in printed and "[graph] desmoke" in printed
    results = json.loads(out.read_text(), parse_constant=pytest.fail)  # strict: no NaN
    assert {
        "schema",
        "command",
        "machine",
        "configuration",
        "skipped",
        "failed",
        "matmul_peak",
        "engine",
        "graph",
        "references",
        "targets",
        "cost",
    } <= set(results)
    assert {"torch", "onnxruntime", "cpu", "python"} <= set(results["machine"])
    assert results["configuration"]["sizes"] == ["64x48"] and results["failed"] == []
    skipped = {(s["backend"], s["precision"]): s["reason"] for s in results["skipped"]}
    assert skipped["onnxruntime", "fp32"] == "not in --backends"
    assert "tensorrt" in {backend for backend, _ in skipped} and all(skipped.values())

    (engine,) = results["engine"]
    assert engine["baseline"] and engine["speedup_vs_torch_fp32_eager"] == 1.0
    assert engine["latency_ms"]["infer"]["count"] == 3, "warm-up excluded"
    assert set(engine["latency_ms"]) == {"upload", "infer", "download", "total"}
    assert engine["flops_per_frame"] > 0 and engine["fraction_of_peak"] > 0

    assert set(engine) == {
        *("restorers", "backend", "precision", "device", "engine", "baseline", "width"),
        *("height", "iterations", "warmup", "start_s", "fps", "infer_fps", "mean_ms"),
        *("latency_ms", "flops_per_frame", "achieved_flops_per_s", "achieved_flops_timing"),
        *("fraction_of_peak", "speedup_vs_torch_fp32_eager", "process_cpu_percent", "rss_mb"),
    }, "the engine rows' JSON keys stay as they were (no GPU memory on the CPU)"

    (graph,) = results["graph"]
    assert set(graph) == {
        *("achieved_fps", "achieved_fps_min", "achieved_fps_total", "bypass_rate"),
        *("bypass_rate_max", "budget_ok", "budget_broken_because", "budget_ms", "counters"),
        *("deadline_misses", "latency_ms", "end_to_end_quantiles_ms", "reports", "restorers"),
        *("backend", "precision", "device", "engine", "baseline", "width", "height"),
        *("streams", "fps_target", "frames_per_stream", "warmup_frames", "cpu", "rss_mb"),
        *("restored_fps", "restored_fps_min"),
    }, "the graph rows' JSON keys stay as they were, plus the restored rate"
    assert graph["restored_fps_min"] >= graph["achieved_fps_min"]
    assert graph["streams"] == 1 and len(graph["reports"]) == 1
    assert graph["counters"]["captured"] == 12
    assert {"achieved_fps", "bypass_rate", "budget_ok", "latency_ms", "cpu"} <= set(graph)
    assert "end to end, processed" in graph["latency_ms"] or graph["bypass_rate_max"] == 1.0
    assert {t["status"] for t in results["targets"]} <= {"met", "missed", "not measured"}

    markdown = out.with_suffix(".md").read_text()
    for heading in ("## Targets", "## Engine only", "## Graph", "## Skipped"):
        assert heading in markdown
    assert "issue" not in markdown, "users do not know our issue numbers: say what the targets are"
    assert "| desmoke | torch-cpu-fp32 (baseline) | fp32 | 64x48 |" in markdown
    assert "Plots: not asked for (--no-plots)." in markdown


@pytest.mark.parametrize(
    "arguments",
    [
        ["--backends", "torch,warp-drive"],
        ["--streams", "1,two"],
        ["--sizes", "8x8"],
        ["--restorer", "nosuchnet"],
        ["--precisions", "int4"],
    ],
)
def test_bad_bench_arguments_are_one_line(arguments, capsys):
    assert main(["bench", "--device", "cpu", *arguments]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("smokeclear: error: "), err


def test_bench_report_remakes_the_markdown_of_a_saved_json(tmp_path, capsys):
    import shutil
    from pathlib import Path

    saved = Path(__file__).parents[2] / "bench" / "results" / "cpu" / "bench.json"
    copy = tmp_path / "bench.json"
    shutil.copy(saved, copy)
    assert main(["bench", "report", str(copy), "--no-plots"]) == 0
    assert f"wrote {copy.with_suffix('.md')}" in capsys.readouterr().out
    markdown = copy.with_suffix(".md").read_text()
    assert "## Targets" in markdown and "| restored fps | achieved fps |" in markdown


def test_without_matplotlib_the_bench_fails_before_measuring(monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["bench", "--device", "cpu", "--quick"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert 'pip install "smokeclear[bench]"' in line and "--no-plots" in line


def test_engine_speed_is_a_bench_subcommand(tmp_path, capsys):
    out = tmp_path / "engine.json"
    options = ["--backend", "torch", "--device", "cpu", "--size", "64x48", "--iterations", "2"]
    assert (
        main(["bench", "engine-speed", "--restorer", "desmoke", *options, "--json", str(out)]) == 0
    )
    assert "desmoke torch-cpu-fp32 64x48 work scale 1:" in capsys.readouterr().out
    (row,) = json.loads(out.read_text())["results"]
    assert row["latency_ms"]["total"]["count"] == 2


@pytest.mark.parametrize(
    "arguments",
    [
        ["model-stats", "--size", "8x8"],
        ["module-share", "--restorer", "nosuchnet"],
        ["engine-speed", "--work-scale", "0.3"],
        ["backends", "--restorer", "nosuchnet"],
        ["report", "/nonexistent/bench.json", "--no-plots"],
    ],
)
def test_bad_bench_subcommand_arguments_are_one_line(arguments, capsys):
    assert main(["bench", *arguments]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("smokeclear: error: "), err
