"""The bench report: the papers' figures, the speed targets, markdown and plots.

Everything here is a function of the results dictionary that
:func:`smokeclear.bench.harness.run_bench` returns and writes as JSON, so a report
can be made again from a saved file:

    smokeclear bench report bench/results/cpu/bench.json
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from smokeclear.bench.config import SCHEMA
from smokeclear.bench.papers import paper_figures
from smokeclear.bench.plots import write_plots
from smokeclear.errors import UserError
from smokeclear.registry import REGISTRY

# The speed targets, all for an NVIDIA H100 (TARGETS_TEXT says them in words).
TARGET_SIZE = (1920, 1080)
TARGET_GRAPH_FPS = 60.0
FPS_TARGETS = {"desmoke": 240.0}  # engine-only fps at 1080p FP16; others DEFAULT_FPS_TARGET
DEFAULT_FPS_TARGET = 60.0
LATENCY_P99_MS = 16.7
MIN_SPEEDUP = 5.0
MIN_PEAK_FRACTION = 0.25
MIN_STREAMS = 4
STREAMS_RESTORER = "desmoke"  # the restorer the concurrent-streams target is set for
END_TO_END_PROCESSED = "end to end, processed"
CAPTURE_TO_RESTORED = "capture to restored"  # every restored frame, shown or not
TARGETS_TEXT = (
    f"Set for an NVIDIA H100 (other machines show their figures, marked not measured): "
    f"engine-only fps at {TARGET_SIZE[0]}x{TARGET_SIZE[1]} FP16 ("
    + ", ".join(f"{name} >= {fps:g}" for name, fps in FPS_TARGETS.items())
    + f", the others >= {DEFAULT_FPS_TARGET:g}); >= {MIN_SPEEDUP:g}x over torch FP32 eager; "
    f">= {MIN_PEAK_FRACTION:.0%} of the FP16 matmul peak; added latency p99 <= "
    f"{LATENCY_P99_MS:g} ms in the live graph at 1080p{TARGET_GRAPH_FPS:g}; "
    f"{MIN_STREAMS} concurrent 1080p{TARGET_GRAPH_FPS:g} streams of {STREAMS_RESTORER}."
)


# --------------------------------------------------------------------------- papers


def single_restorers(results: dict[str, Any]) -> list[str]:
    """The restorers this run measured alone (chains excluded)."""
    return [chain for chain in results["configuration"]["restorers"] if "," not in chain]


def paper_references(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each paper figure beside this run's engine-only figures at the same size."""
    singles = single_restorers(results)
    rows = []
    for figure in paper_figures():
        size = f"{figure.width}x{figure.height}"
        row: dict[str, Any] = asdict(figure) | {"size": size, "fps": figure.fps, "ours": []}
        if figure.restorer not in singles:
            row |= {"status": "not measured", "why": f"{figure.restorer} not in --restorer"}
        else:
            ours = [
                {
                    "engine": r["engine"],
                    "precision": r["precision"],
                    "infer_fps": r["infer_fps"],
                    "fps": r["fps"],
                    "infer_vs_paper": r["infer_fps"] / figure.fps,
                }
                for r in results["engine"]
                if r["restorers"] == figure.restorer
                and (r["width"], r["height"])
                == (
                    figure.width,
                    figure.height,
                )
            ]
            if ours:
                row |= {"status": "compared", "why": "", "ours": ours}
            else:
                row |= {
                    "status": "not measured",
                    "why": f"{size} not timed in this run (use --paper-sizes or --sizes {size})",
                }
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- targets


def _target(
    target: str, restorer: str, measured: str, ok: bool | None, why: str, not_h100: str | None
) -> dict[str, str]:
    """One row of the target table. ``ok`` None: not measured (``why`` says why)."""
    if ok is None:
        status = "not measured"
    elif not_h100 is not None:
        status, why = "not measured", not_h100
    else:
        status = "met" if ok else "missed"
    return {
        "target": target,
        "restorer": restorer,
        "status": status,
        "measured": measured,
        "why": why,
    }


def _best_row_target(
    target: str,
    restorer: str,
    rows: list[dict[str, Any]],
    key: str,
    template: str,
    threshold: float,
    why_missing: str,
    not_h100: str | None,
) -> dict[str, str]:
    """The target judged on the row with the highest ``key`` (rows without it ignored)."""
    measured = [row for row in rows if row[key] is not None]
    if not measured:
        return _target(target, restorer, "—", None, why_missing, not_h100)
    best = max(measured, key=lambda row: row[key])
    value = best[key]
    text = f"{template.format(value)} ({best['engine']})"
    return _target(target, restorer, text, value >= threshold, "", not_h100)


def _missing_engine_why(results: dict[str, Any]) -> str:
    config = results["configuration"]
    if config["device"] != "cuda":
        return "FP16 runs on a CUDA GPU; this run is on the CPU"
    if "1920x1080" not in config["sizes"]:
        return "1920x1080 not in --sizes"
    return "no FP16 engine ran at 1920x1080 (see skipped and failed)"


def _missing_graph_why(results: dict[str, Any]) -> str:
    config = results["configuration"]
    if config["graph_seconds"] <= 0:
        return "graph view not run (--graph-seconds 0)"
    if config["fps"] != TARGET_GRAPH_FPS:
        return f"graph view ran at {config['fps']:g} fps; the target is at 60 (--fps 60)"
    if "1920x1080" not in config["sizes"]:
        return "1920x1080 not in --sizes"
    return "no graph run at 1920x1080 (see failed)"


def _h100_why(results: dict[str, Any]) -> str | None:
    gpu = results["machine"].get("gpu")
    if gpu and "H100" in gpu.upper():
        return None
    return f"the targets are set for an H100; this run is on {gpu or 'the CPU'}"


def restorer_targets(
    results: dict[str, Any], name: str, not_h100: str | None
) -> list[dict[str, str]]:
    """fps, speed-up and FLOP/s at 1080p FP16, and added latency at 1080p60, of one restorer."""
    rows = [
        r
        for r in results["engine"]
        if r["restorers"] == name
        and (r["width"], r["height"]) == TARGET_SIZE
        and r["precision"] == "fp16"
    ]
    need_fps = FPS_TARGETS.get(name, DEFAULT_FPS_TARGET)
    fps_text = f">= {need_fps:g} fps at 1080p FP16 (engine only)"
    speedup_text = f">= {MIN_SPEEDUP:g}x over torch FP32 eager at 1080p"
    peak_text = f">= {MIN_PEAK_FRACTION:.0%} of the FP16 matmul peak at 1080p"
    if not rows:
        why = _missing_engine_why(results)
        targets = [
            _target(text, name, "—", None, why, not_h100)
            for text in (fps_text, speedup_text, peak_text)
        ]
    else:
        peak_is_fp16 = (results.get("matmul_peak") or {}).get("dtype") == "fp16"
        targets = [
            _best_row_target(fps_text, name, rows, "fps", "{:.1f} fps", need_fps, "", not_h100),
            _best_row_target(
                speedup_text,
                name,
                rows,
                "speedup_vs_torch_fp32_eager",
                "{:.2f}x",
                MIN_SPEEDUP,
                "torch FP32 eager did not run at 1080p",
                not_h100,
            ),
            _best_row_target(
                peak_text,
                name,
                rows if peak_is_fp16 else [],
                "fraction_of_peak",
                "{:.1%}",
                MIN_PEAK_FRACTION,
                "no FP16 matmul peak or FLOP count in this run",
                not_h100,
            ),
        ]
    targets.append(latency_target(results, name, not_h100))
    return targets


def _graph_rows_1080p60(results: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [
        r
        for r in results["graph"]
        if r["restorers"] == name
        and (r["width"], r["height"]) == TARGET_SIZE
        and r["fps_target"] == TARGET_GRAPH_FPS
    ]


def latency_target(results: dict[str, Any], name: str, not_h100: str | None) -> dict[str, str]:
    text = f"added latency p99 <= {LATENCY_P99_MS:g} ms at 1080p60 (one stream)"
    rows = [r for r in _graph_rows_1080p60(results, name) if r["streams"] == 1]
    if not rows:
        return _target(text, name, "—", None, _missing_graph_why(results), not_h100)
    held = [r for r in rows if r["budget_ok"] and END_TO_END_PROCESSED in r["latency_ms"]]
    if not held:
        best = max(rows, key=lambda r: r["achieved_fps_min"])
        measured = f"no backend held 60 fps (best {best['achieved_fps_min']:.1f} fps)"
        return _target(text, name, measured, False, "", not_h100)
    best = min(held, key=lambda r: r["latency_ms"][END_TO_END_PROCESSED]["p99"])
    p99 = best["latency_ms"][END_TO_END_PROCESSED]["p99"]
    measured = f"p99 {p99:.2f} ms ({best['engine']})"
    return _target(text, name, measured, p99 <= LATENCY_P99_MS, "", not_h100)


def streams_target(results: dict[str, Any], not_h100: str | None) -> dict[str, str]:
    text = f"{MIN_STREAMS} concurrent 1080p60 streams"
    if STREAMS_RESTORER not in single_restorers(results):
        why = f"{STREAMS_RESTORER} not in --restorer"
        return _target(text, STREAMS_RESTORER, "—", None, why, not_h100)
    rows = _graph_rows_1080p60(results, STREAMS_RESTORER)
    if not rows:
        return _target(text, STREAMS_RESTORER, "—", None, _missing_graph_why(results), not_h100)
    held = max((r["streams"] for r in rows if r["budget_ok"]), default=0)
    broke = any(not r["budget_ok"] for r in rows)
    measured = f"{held} stream(s) held the budget"
    if held >= MIN_STREAMS:
        return _target(text, STREAMS_RESTORER, measured, True, "", not_h100)
    if broke:
        return _target(text, STREAMS_RESTORER, measured, False, "", not_h100)
    why = f"--streams stopped at {max(r['streams'] for r in rows)}"
    return _target(text, STREAMS_RESTORER, measured, None, why, not_h100)


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, str]]:
    """The speed targets, each met, missed or not measured (with why)."""
    not_h100 = _h100_why(results)
    singles = single_restorers(results)
    targets = []
    for name in singles:
        targets += restorer_targets(results, name, not_h100)
    targets.append(streams_target(results, not_h100))
    for name in REGISTRY:
        if name in singles:
            continue
        why = f"{name} not in --restorer"
        need = FPS_TARGETS.get(name, DEFAULT_FPS_TARGET)
        targets.append(
            _target(f">= {need:g} fps at 1080p FP16 (and the rest)", name, "—", None, why, None)
        )
    return targets


# --------------------------------------------------------------------------- markdown


def _num(value: float | None, spec: str = ".1f") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return format(value, spec)


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _latency_text(latency: dict[str, Any] | None, keys: tuple[str, ...]) -> str:
    if not latency:
        return "—"
    return " / ".join(_num(latency[key], ".2f") for key in keys)


def format_markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    config = results["configuration"]
    where = machine.get("gpu") or f"CPU: {machine.get('cpu')}"
    lines = [
        f"# smokeclear bench: {where}",
        "",
        f"`{results['command']}`",
        "",
        f"{results['created']}, {_num(results.get('wall_s'), '.0f')} s. {_machine_text(machine)}",
        "",
        "## Targets",
        "",
        TARGETS_TEXT,
        "",
    ]
    lines += _table(
        ["target", "restorer", "status", "measured", "why"],
        [
            [t["target"], t["restorer"], t["status"], t["measured"], t["why"]]
            for t in results["targets"]
        ],
    )
    peak = results.get("matmul_peak")
    peak_text = (
        f"{peak['flops_per_s'] / 1e9:.1f} GFLOP/s ({peak['dtype']}, {peak['method']})"
        if peak
        else "not measured (no torch)"
    )
    lines += [
        "",
        f"## Engine only (batch 1, {config['warmup']} warm-up frames excluded, "
        f"{config['iterations']} timed)",
        "",
        f"fps: upload + infer + download in series; infer fps: the network alone. Speed-up: "
        f"mean infer time of torch FP32 eager over this row's, same chain and size. FLOPs: "
        f"torch.utils.flop_counter (convolutions, matmuls). CPU %: the process over the "
        f"loop, 100 = one core. Matmul peak: {peak_text}.",
        "",
    ]
    engine_rows = []
    for r in results["engine"]:
        latency = r["latency_ms"]
        engine_rows.append(
            [
                r["restorers"],
                r["engine"] + (" (baseline)" if r["baseline"] else ""),
                r["precision"],
                f"{r['width']}x{r['height']}",
                _num(r["fps"]),
                _num(r["infer_fps"]),
                _latency_text(latency["infer"], ("p50", "p99")),
                _latency_text(latency.get("gpu_infer"), ("p50",)),
                _num(r["speedup_vs_torch_fp32_eager"], ".2f") + "x",
                _num(r["flops_per_frame"] / 1e9 if r["flops_per_frame"] else None, ".2f"),
                _num(r["achieved_flops_per_s"] / 1e9 if r["achieved_flops_per_s"] else None),
                _num(100 * r["fraction_of_peak"] if r["fraction_of_peak"] else None) + " %",
                _num(r.get("process_cpu_percent"), ".0f"),
                _num(r.get("peak_gpu_memory_mb"), ".0f"),
                _num(r["rss_mb"], ".0f"),
            ]
        )
    lines += _table(
        [
            "restorers",
            "engine",
            "precision",
            "size",
            "fps",
            "infer fps",
            "infer p50 / p99 ms",
            "GPU infer p50 ms",
            "vs FP32 eager",
            "GFLOP/frame",
            "GFLOP/s",
            "of peak",
            "CPU %",
            "peak GPU MB",
            "RSS MB",
        ],
        engine_rows,
    )
    lines += [
        "",
        f"## Graph (synthetic source at {config['fps']:g} fps -> engine -> NullSink, "
        f"{config['graph_seconds']:g} s per run, streams run together)",
        "",
        "restored fps: frames the engine restored per second of source time, past the "
        "warm-up, worst stream; achieved fps: those of them shown within the deadline "
        "(capture to display, one frame period); deadline misses: restored, but too late "
        "to show; capture to restored: every restored frame, shown or not. The budget breaks below "
        "95 % of the target rate or above 5 % bypassed. Latency pooled over the streams, "
        "warm-up excluded. CPU: % of one core over the run, by stage thread (all streams); "
        "other = native pools (onnxruntime, OpenMP, CUDA) and the main thread.",
        "",
    ]
    graph_rows = []
    for r in results["graph"]:
        counters = r["counters"]
        cpu = r["cpu"].get("stage_cpu_percent") or {}
        graph_rows.append(
            [
                r["restorers"],
                r["engine"],
                f"{r['width']}x{r['height']}",
                str(r["streams"]),
                _num(r.get("restored_fps_min")),
                _num(r["achieved_fps_min"]),
                _num(100 * r["bypass_rate_max"]) + " %",
                f"{counters['source_skipped']} / {counters['dropped']} / {r['deadline_misses']}",
                _latency_text(
                    r["latency_ms"].get(END_TO_END_PROCESSED), ("p50", "p95", "p99", "max")
                ),
                _latency_text(r["latency_ms"].get(CAPTURE_TO_RESTORED), ("p50", "p99")),
                _latency_text(r["latency_ms"].get("infer"), ("p50", "p99")),
                " / ".join(
                    _num(cpu.get(stage), ".0f")
                    for stage in (
                        "capture",
                        "preprocess",
                        "infer",
                        "postprocess",
                        "presenter",
                        "other",
                    )
                ),
                _num(r["cpu"].get("process_cpu_percent"), ".0f"),
                _num(r.get("peak_gpu_memory_mb"), ".0f"),
                _num(r["rss_mb"], ".0f"),
                "holds" if r["budget_ok"] else f"broken: {r['budget_broken_because']}",
            ]
        )
    lines += _table(
        [
            "restorers",
            "engine",
            "size",
            "streams",
            "restored fps",
            "achieved fps",
            "bypassed",
            "skipped at source / dropped / deadline misses",
            "end to end p50 / p95 / p99 / max ms",
            "capture to restored p50 / p99 ms",
            "infer p50 / p99 ms",
            "CPU % capture / pre / infer / post / presenter / other",
            "process CPU %",
            "peak GPU MB",
            "RSS MB",
            "budget",
        ],
        graph_rows,
    )
    lines += ["", "## The papers' figures (their hardware, not ours)", ""]
    paper_rows = []
    for ref in results["references"]:
        ours = (
            "; ".join(
                f"{o['engine']} {o['precision']}: {o['infer_fps']:.1f} fps "
                f"({o['infer_vs_paper']:.2f}x)"
                for o in ref["ours"]
            )
            or "—"
        )
        paper_rows.append(
            [
                ref["restorer"],
                ref["size"],
                f"{ref['seconds'] * 1e3:g} ms ({ref['fps']:.1f} fps)",
                ref["hardware"],
                ref["where"],
                ours,
                ref["status"] + (f": {ref['why']}" if ref["why"] else ""),
            ]
        )
    lines += _table(
        [
            "restorer",
            "size",
            "paper",
            "paper's hardware",
            "source",
            "ours (infer fps, x paper)",
            "status",
        ],
        paper_rows,
    )
    lines += ["", "## Skipped", ""]
    lines += _table(
        ["backend", "precision", "reason"],
        [[s["backend"], s["precision"], s["reason"]] for s in results["skipped"]],
    )
    if results["failed"]:
        lines += ["", "## Failed", ""]
        lines += _table(
            ["view", "restorers", "backend", "precision", "size", "error"],
            [
                [f["view"], f["restorers"], f["backend"], f["precision"], f["size"], f["error"]]
                for f in results["failed"]
            ],
        )
    cost = results["cost"]
    lines += [
        "",
        f"Host memory: peak RSS {_num(cost['peak_rss_mb'], '.0f')} MB over the run.",
    ]
    if results.get("plots"):
        lines += ["", "## Plots", ""] + [f"![{name}]({name})" for name in results["plots"]]
    elif results.get("plots_note"):
        lines += ["", f"Plots: {results['plots_note']}."]
    return "\n".join(lines) + "\n"


def _machine_text(machine: dict[str, Any]) -> str:
    gpu = "GPU none"
    if machine.get("gpu"):
        gpu = (
            f"GPU {machine['gpu']} (driver {machine.get('driver') or '?'}, CUDA "
            f"{machine.get('cuda')}, cuDNN {machine.get('cudnn')})"
        )
    return (
        f"CPU {machine.get('cpu')} ({machine.get('cpu_count')} cores); {gpu}; "
        f"torch {machine.get('torch')}, onnxruntime {machine.get('onnxruntime')}, "
        f"TensorRT {machine.get('tensorrt') or 'not installed'}; load average before / after "
        f"{_load(machine.get('load_average_before'))} / {_load(machine.get('load_average_after'))}."
    )


def _load(values: list[float] | None) -> str:
    return ", ".join(f"{v:.2f}" for v in values) if values else "?"


# --------------------------------------------------------------------------- files


def finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None: strict JSON has neither."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def write_report(results: dict[str, Any], json_path: Path, plots: bool = True) -> list[Path]:
    """Write the JSON, the markdown beside it (``.md``) and the plots; returns the paths.

    Records the plot file names (or why there are none) in ``results``.
    """
    json_path.parent.mkdir(parents=True, exist_ok=True)
    if plots:
        plot_paths, note = write_plots(results, json_path)
    else:
        plot_paths, note = [], "not asked for (--no-plots)"
    results["plots"] = [path.name for path in plot_paths]
    results["plots_note"] = note
    json_path.write_text(json.dumps(finite(results), indent=2) + "\n")
    markdown = json_path.with_suffix(".md")
    markdown.write_text(format_markdown(results))
    return [json_path, markdown, *plot_paths]


def remake_report(results_path: Path, plots: bool = True) -> int:
    """``smokeclear bench report``: the markdown and plots of a saved JSON, made again.

    Raises:
        UserError: the file is missing or is not a bench JSON.
    """
    try:
        results = json.loads(results_path.read_text())
    except (OSError, ValueError) as error:
        raise UserError(
            f"cannot read bench results {results_path} ({type(error).__name__})",
            "Give the JSON that `smokeclear bench` wrote (--json, or bench/results/).",
        ) from None
    if not isinstance(results, dict) or results.get("schema") != SCHEMA:
        raise UserError(
            f"{results_path} is not a bench results file (no schema {SCHEMA!r})",
            "Give the JSON that `smokeclear bench` wrote (--json, or bench/results/).",
        )
    for path in write_report(results, results_path, plots=plots):
        print(f"wrote {path}")
    return 0
