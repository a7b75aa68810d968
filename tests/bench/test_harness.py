"""The bench's plan, budget rule, cost sampling and ratios, on the CPU and tiny inputs."""

from __future__ import annotations

import shlex
import sys
import threading
import time

import pytest

from smokeclear.bench import graph_view, stage_cpu, variants
from smokeclear.bench.config import BENCH_BACKENDS, PRECISIONS, make_config
from smokeclear.bench.engine_view import EngineRow, add_speedups, count_flops
from smokeclear.bench.graph_view import budget_verdict, summarise_graphs
from smokeclear.bench.machine import matmul_peak
from smokeclear.bench.stage_cpu import StageCpu
from smokeclear.bench.variants import Variant, engine_request, plan_variants
from smokeclear.cli import bench_config, build_parser
from smokeclear.errors import UserError

TENSORRT_MISSING = 'TensorRT is not installed (pip install "smokeclear[gpu]")'


@pytest.fixture
def no_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    """TensorRT missing, every other backend present, whatever this machine has."""

    def reason(backend: str, device: str = "cuda") -> str | None:
        return TENSORRT_MISSING if backend == "tensorrt" else None

    monkeypatch.setattr(variants, "unavailable_reason", reason)


def test_every_backend_and_precision_is_run_or_skipped_with_a_reason(no_tensorrt):
    config = make_config(device="cpu", backends=("torch", "onnxruntime", "tensorrt"))
    runnable, skipped = plan_variants(config)
    assert runnable[0] == Variant("torch", "fp32", "cpu") and runnable[0].baseline
    seen = [(v.backend, v.precision) for v in runnable]
    seen += [(s.backend, s.precision) for s in skipped]
    expected = [(b, p) for b in BENCH_BACKENDS for p in PRECISIONS]
    assert sorted(seen) == sorted(expected), "each pair exactly once: nothing dropped silently"
    reasons = {(s.backend, s.precision): s.reason for s in skipped}
    assert reasons["tensorrt", "fp16"] == TENSORRT_MISSING
    assert reasons["aoti", "fp32"] == "not in --backends"
    assert "CUDA" in reasons["torch", "fp16"], "FP16 needs a GPU: the reason says so"
    assert all(reason for reason in reasons.values())


def test_quick_says_why_it_leaves_compiled_backends_out(no_tensorrt):
    config = make_config(quick=True, device="cpu")
    runnable, skipped = plan_variants(config)
    assert [v.label for v in runnable] == ["torch-fp32", "onnxruntime-fp32"]
    reasons = {(s.backend, s.precision): s.reason for s in skipped}
    assert "--quick" in reasons["aoti", "fp32"]
    assert reasons["tensorrt", "fp32"] == TENSORRT_MISSING, "missing beats left out"


def test_the_fp32_eager_baseline_runs_even_when_torch_is_not_asked_for(no_tensorrt):
    runnable, skipped = plan_variants(make_config(device="cpu", backends=("onnxruntime",)))
    assert [v.label for v in runnable] == ["torch-fp32", "onnxruntime-fp32"]
    assert ("torch", "fp32") not in {(s.backend, s.precision) for s in skipped}


def test_quick_defaults_fit_a_two_core_cpu():
    config = make_config(quick=True, device="cpu")
    assert config.restorers == ("desmoke",), "one restorer: a first run exports its ONNX only"
    assert config.sizes == ((320, 180),) and config.paper_sizes == ()
    assert config.streams == (1, 2) and config.fps == 15.0
    assert config.graph_seconds <= 5 and config.iterations <= 30 and config.matmul_seconds <= 1


def test_full_defaults_add_the_papers_sizes_for_the_reference_rows():
    config = make_config(device="cpu")
    assert (512, 512) in config.paper_sizes, "desmoke's paper reports 512x512"
    assert make_config(device="cpu", sizes=((64, 48),)).paper_sizes == (), "explicit sizes win"


@pytest.mark.parametrize(
    "options",
    [
        {"backends": ("tensorrt", "warp-drive")},
        {"restorers": ("desmoke,nosuchnet",)},
        {"precisions": ("int8",)},
        {"streams": (0,)},
        {"fps": 0.0},
        {"iterations": 0},
    ],
)
def test_bad_options_are_the_users_error(options):
    with pytest.raises(UserError):
        make_config(device="cpu", **options)


def test_the_recorded_command_repeats_the_run(tiny_weights):
    config = make_config(
        quick=True,
        device="cpu",
        sizes=((64, 48), (96, 64)),
        streams=(1, 3),
        fps=12.5,
        threads=1,
        weights={"desmoke": tiny_weights},
    )
    argv = shlex.split(config.command_line())
    assert argv[:2] == ["smokeclear", "bench"]
    assert bench_config(build_parser().parse_args(argv[1:])) == config


def test_budget_holds_at_95_percent_of_the_rate_and_5_percent_bypassed():
    assert budget_verdict([57.0, 60.0], [0.05, 0.0], 60.0) is None
    slow = budget_verdict([56.9, 60.0], [0.0, 0.0], 60.0)
    assert slow is not None and "56.9 fps" in slow
    bypassing = budget_verdict([60.0], [0.051], 60.0)
    assert bypassing is not None and "bypassed" in bypassing


def test_speedups_are_against_fp32_eager_of_the_same_chain_and_size():
    def row(engine: str, size: int, infer_ms: float, baseline: bool = False) -> EngineRow:
        return EngineRow(
            restorers="desmoke",
            backend="torch",
            precision="fp32",
            device="cpu",
            engine=engine,
            baseline=baseline,
            width=size,
            height=size,
            iterations=1,
            warmup=0,
            start_s=0.0,
            fps=1.0,
            infer_fps=1.0,
            mean_ms={"infer": infer_ms},
            latency_ms={},
            flops_per_frame=None,
            achieved_flops_per_s=None,
            achieved_flops_timing="infer",
            fraction_of_peak=None,
            speedup_vs_torch_fp32_eager=None,
            process_cpu_percent=None,
            rss_mb=None,
        )

    rows = [
        row("eager", 64, 10.0, baseline=True),
        row("onnx", 64, 2.5),
        row("eager", 128, 40.0, baseline=True),
        row("onnx", 128, 8.0),
        row("onnx", 256, 1.0),
    ]
    rows = add_speedups(rows)
    assert [r.speedup_vs_torch_fp32_eager for r in rows] == [1.0, 4.0, 1.0, 5.0, None]
    assert "peak_gpu_memory_mb" not in rows[0].to_dict(), "GPU memory only on a GPU"


def test_graph_warm_up_is_half_a_second_but_at_most_a_quarter_of_the_run():
    assert graph_view.graph_warmup_frames(600, 60.0) == 30
    assert graph_view.graph_warmup_frames(20, 60.0) == 5
    assert graph_view.graph_warmup_frames(3, 60.0) == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread CPU from /proc")
def test_stage_cpu_is_attributed_to_the_stage_threads():
    burnt, finished = threading.Event(), threading.Event()

    def busy() -> None:
        deadline = time.thread_time() + 0.15
        while time.thread_time() < deadline:
            pass
        burnt.set()
        finished.wait(5)  # alive when the block ends: its last sample is taken

    worker = threading.Thread(target=busy, name="infer-0")
    with StageCpu(interval_s=0.01) as cpu:
        worker.start()
        assert burnt.wait(10)
    finished.set()
    worker.join()
    stages = cpu.figures["stage_cpu_percent"]
    assert stages["infer"] > 0, f"the busy 'infer-0' thread's CPU time is counted: {stages}"
    assert stages["capture"] == 0
    assert cpu.figures["process_cpu_percent"] >= stages["infer"] * 0.5


def test_stage_names_come_from_the_graphs_thread_names():
    assert [stage_cpu.stage_of(n) for n in ("infer-3", "capture", "presenter-1", "MainThread")] == [
        "infer",
        "capture",
        "presenter",
        None,
    ]


def test_flops_are_counted_on_meta_tensors_like_on_real_ones(tiny_weights):
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    config = make_config(device="cpu", weights={"desmoke": tiny_weights})
    request = engine_request(config, "desmoke")
    counted = count_flops(request, 64, 48)
    from smokeclear.runtime import build_chain

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        build_chain(request)(torch.rand(1, 3, 64, 64))  # 48 rows padded to 64
    assert counted == counter.get_total_flops() > 0


def test_matmul_peak_reports_a_positive_rate():
    peak = matmul_peak("cpu", seconds=0.01, size=64)
    assert peak["dtype"] == "fp32" and peak["matmuls"] >= 1 and peak["flops_per_s"] > 0


def test_achieved_fps_counts_restored_frames_per_second_of_source_time_past_warm_up():
    from types import SimpleNamespace

    import numpy as np

    from smokeclear.stream.frame import Frame, Mode
    from smokeclear.stream.stats import Counters, LatencyLog, RunReport

    latency = LatencyLog(warmup_frames=2)
    for seq in range(12):  # past the warm-up: 8 shown restored, 2 raw
        frame = Frame(seq, np.zeros((1, 1, 3), np.uint8), 0)
        latency.record_presented(frame, Mode.BYPASS if seq in (5, 9) else Mode.PROCESSED, 10**7)
    report = RunReport(
        "synthetic:0", "double", "", 4, 4, 100.0, True, 1.3, Counters(captured=12), {}
    )
    graph = SimpleNamespace(latency=latency)
    steady = summarise_graphs([graph], [report], [0], fps=10.0, warmup=2)
    assert steady.achieved_fps == [8.0] and steady.bypass_rate == [0.2]
    assert steady.budget_broken_because is not None, "20 % bypassed breaks the budget"
    starved = summarise_graphs([graph], [report], [2], fps=10.0, warmup=2)
    assert starved.achieved_fps == [pytest.approx(8 / 1.2)], "frames lost at capture count"
    assert starved.counters["source_skipped"] == 2
    assert len(steady.end_to_end_quantiles_ms) == 101


def test_a_row_counts_restored_frames_the_deadline_threw_away():
    """An engine too slow for the deadline restores frames the presenter never shows:
    the row says how many it made, not just that none was shown (issue 17's 0.0 fps)."""
    from types import SimpleNamespace

    import numpy as np

    from smokeclear.stream.frame import Frame, Mode
    from smokeclear.stream.stats import Counters, RunReport

    latency = graph_view.RestoredLatencyLog(warmup_frames=2)
    for seq in range(12):  # every frame restored, 80 ms late; all shown raw at capture
        frame = Frame(seq, np.zeros((1, 1, 3), np.uint8), 0)
        frame.stamps |= {"postprocess_start": 70 * 10**6, "postprocess_end": 80 * 10**6}
        latency.record_stages(frame)
        latency.record_presented(frame, Mode.BYPASS, 10**6)
    report = RunReport(
        "synthetic:0", "slow", "", 4, 4, 66.7, True, 1.2, Counters(captured=12, processed=12), {}
    )
    row = summarise_graphs([SimpleNamespace(latency=latency)], [report], [0], fps=10.0, warmup=2)
    assert row.achieved_fps == [0.0] and row.bypass_rate == [1.0]
    assert row.restored_fps == [10.0], "10 frames restored past the warm-up in 1 s of source"
    assert row.deadline_misses == 10, "restored but never shown: each missed its deadline"
    restored = row.latency_ms[graph_view.RESTORED]
    assert restored["count"] == 10 and restored["p50"] == 80.0, "by how much they missed"
    assert not row.budget_ok


def test_an_engine_maker_finds_a_chains_onnx_once_per_run(monkeypatch, tiny_weights):
    import smokeclear.runtime

    found = []

    def onnx_model(request):
        found.append(request.label)
        return tiny_weights  # any existing path: the engines are never started

    monkeypatch.setattr(smokeclear.runtime, "onnx_model", onnx_model)
    config = make_config(device="cpu", weights={"desmoke": tiny_weights})
    request = engine_request(config, "desmoke")
    engines = variants.EngineMaker(threads=1)
    made = [engines.make(request, Variant("onnxruntime", "fp32", "cpu")) for _ in range(3)]
    assert found == ["desmoke"], "one lookup (or export) for the engine view and every stream"
    assert {engine.model_path for engine in made} == {tiny_weights}
