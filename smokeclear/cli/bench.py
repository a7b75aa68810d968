"""``smokeclear bench``: fps, latency and cost over restorers, backends, precisions,
sizes and streams; ``smokeclear bench SUBCOMMAND`` for the single measurements."""

from __future__ import annotations

import argparse
from pathlib import Path

from smokeclear.cli.options import Parser, add_weights_option
from smokeclear.engines.select import BACKENDS
from smokeclear.errors import UserError
from smokeclear.parsing import comma_list, parse_size, parse_weights, parse_work_scale


def _bench_parser(commands) -> None:
    bench = commands.add_parser(
        "bench",
        help="measure fps, latency and cost: restorers x backends x precisions x sizes x streams",
    )
    bench.add_argument(
        "--quick",
        action="store_true",
        help="a smoke test of about a minute on a 2-core CPU: the first registered restorer "
        "(unless --restorer), torch and onnxruntime, one small size, 1 and 2 streams for a "
        "few seconds",
    )
    bench.add_argument(
        "--restorer",
        action="append",
        default=[],
        help="a restorer or a comma-separated chain; repeatable (default: each registered one)",
    )
    bench.add_argument(
        "--backends",
        help="comma-separated: tensorrt, aoti, torch, onnxruntime (default: all; --quick: "
        "torch,onnxruntime); torch FP32 eager always runs, as the baseline of the speed-ups",
    )
    bench.add_argument(
        "--precisions", help="fp32, fp16 or fp32,fp16 (default); each backend runs those it has"
    )
    bench.add_argument(
        "--sizes",
        help="comma-separated WIDTHxHEIGHT (default: 640x360 to 3840x2160 on a GPU, 320x180 "
        "to 1280x720 on the CPU; --quick: one small size)",
    )
    bench.add_argument(
        "--paper-sizes",
        action=argparse.BooleanOptionalAction,
        help="also time the engines at the papers' sizes, for the reference rows (default: "
        "on with the default --sizes, off with --quick)",
    )
    bench.add_argument(
        "--streams",
        help="comma-separated counts of concurrent streams for the graph view, tried in order "
        "until the budget breaks (default 1,2,4,8; --quick 1,2)",
    )
    bench.add_argument(
        "--fps", type=float, help="graph view frame-rate budget (default: 60 on a GPU, 15 on CPU)"
    )
    bench.add_argument(
        "--graph-seconds",
        type=float,
        help="length of each graph run (default 10; --quick 3; 0 skips the graph view)",
    )
    bench.add_argument(
        "--iterations",
        type=int,
        help="timed frames per engine-only row (default: 100 on a GPU, 30 on CPU; --quick 20)",
    )
    bench.add_argument("--warmup", type=int, help="untimed frames first (default 10; --quick 3)")
    bench.add_argument(
        "--matmul-seconds",
        type=float,
        help="time spent measuring the matmul peak (default 3; --quick 1)",
    )
    bench.add_argument(
        "--device", choices=("cpu", "cuda"), help="default: the GPU when there is one"
    )
    bench.add_argument(
        "--work-scale", default="1", help="network at 1, 0.5 or 0.25 of the frame (default 1)"
    )
    bench.add_argument(
        "--threads", type=int, help="CPU threads for torch and onnxruntime (default: theirs)"
    )
    add_weights_option(bench)
    bench.add_argument(
        "--json",
        type=Path,
        help="results file (default: bench/results/<gpu or cpu>/bench.json, bench-quick.json "
        "with --quick); the markdown (.md) and the plots (.png) are written beside it",
    )
    bench.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    bench.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    _bench_subcommands(bench)


def _bench_subcommands(bench) -> None:
    """``smokeclear bench SUBCOMMAND``: the single-purpose measurements."""
    first = _first_restorer()
    bench.set_defaults(bench_tool=None)
    tools = bench.add_subparsers(
        dest="bench_command",
        parser_class=Parser,
        metavar="SUBCOMMAND",
        title="single measurements (without one, the whole bench runs)",
    )
    speed = tools.add_parser(
        "engine-speed", help="engine-only fps of one restorer chain on one backend, per size"
    )
    speed.add_argument("--restorer", default=first, help=f"restorer or chain (default {first})")
    speed.add_argument("--backend", choices=BACKENDS, default="auto")
    speed.add_argument("--device", choices=("cpu", "cuda"), help="default: the GPU if any")
    speed.add_argument("--work-scale", default="1", help="network at 1, 0.5 or 0.25 of the frame")
    speed.add_argument("--iterations", type=int, default=50, help="timed frames (default 50)")
    backends = tools.add_parser(
        "backends",
        help="torch FP32 eager against FP16 + CUDA graphs and AOTInductor: speed and PSNR",
    )
    backends.add_argument(
        "--restorer", action="append", default=[], help=f"repeatable (default {first})"
    )
    backends.add_argument("--iterations", type=int, default=100, help="timed (default 100)")
    backends.add_argument("--warmup", type=int, default=10, help="untimed first (default 10)")
    stats = tools.add_parser("model-stats", help="parameters and FLOPs per frame of a network")
    stats.add_argument("--restorer", default=first, help=f"default {first}")
    stats.add_argument("--config", type=Path, help="count this YAML's network instead")
    share = tools.add_parser(
        "module-share", help="each top-level submodule's share of a forward pass"
    )
    share.add_argument("--restorer", default=first, help=f"default {first}")
    share.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    share.add_argument("--half", action="store_true", help="FP16 weights and input")
    share.add_argument("--iterations", type=int, default=10, help="timed (default 10)")
    share.add_argument("--warmup", type=int, default=2, help="untimed first (default 2)")
    transfer = tools.add_parser(
        "transfer-cost", help="CPU cost per frame of each backend's upload + download"
    )
    transfer.add_argument("--frames", type=int, default=50, help="timed frames (default 50)")
    guard = tools.add_parser("guard-cost", help="cost per frame of the output guard")
    guard.add_argument("--frames", type=int, default=50, help="timed frames (default 50)")
    size_defaults = {
        speed: "640x360",
        backends: "1920x1080 on a GPU, 320x180 on the CPU",
        stats: "1920x1080",
        share: "640x360",
        transfer: "1920x1080",
        guard: "1920x1080 and 1280x720",
    }
    for tool, default in size_defaults.items():
        tool.add_argument(
            "--size",
            action="append",
            default=[],
            help=f"WIDTHxHEIGHT, repeatable (default {default})",
        )
        tool.add_argument("--json", type=Path, help="write the rows as JSON here")
    report = tools.add_parser("report", help="remake the markdown and plots of a bench JSON")
    report.add_argument("results", type=Path, help="a JSON that `smokeclear bench` wrote")
    report.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    for tool, handler in (
        (speed, _engine_speed),
        (backends, _backends),
        (stats, _model_stats),
        (share, _module_share),
        (transfer, _transfer_cost),
        (guard, _guard_cost),
        (report, _report),
    ):
        tool.set_defaults(bench_tool=handler)


def bench_config(args: argparse.Namespace):
    """The checked BenchConfig of a ``bench`` command line."""
    from smokeclear.bench.config import default_restorers, make_config
    from smokeclear.registry import parse_chain

    streams = comma_list(args.streams)
    if streams is not None and not all(count.isdigit() for count in streams):
        raise UserError(f"bad --streams {args.streams!r}", "Use counts, e.g. --streams 1,2,4.")
    chains = tuple(args.restorer) or default_restorers(args.quick)
    names = sorted({spec.name for chain in chains for spec in parse_chain(chain)})
    sizes = comma_list(args.sizes)
    return make_config(
        quick=args.quick,
        device=args.device,
        restorers=chains,
        backends=comma_list(args.backends),
        precisions=comma_list(args.precisions),
        sizes=tuple(parse_size(size) for size in sizes) if sizes else None,
        paper_sizes=args.paper_sizes,
        streams=tuple(int(count) for count in streams) if streams else None,
        fps=args.fps,
        graph_seconds=args.graph_seconds,
        iterations=args.iterations,
        warmup=args.warmup,
        matmul_seconds=args.matmul_seconds,
        work_scale=parse_work_scale(args.work_scale),
        threads=args.threads,
        weights=parse_weights(args.weights, names),
    )


def _check_plots(no_plots: bool) -> None:
    """Fail before measuring when the plots cannot be drawn and were not declined."""
    from smokeclear.bench.plots import matplotlib_missing

    if not no_plots and matplotlib_missing():
        raise UserError(
            "matplotlib is not installed: the bench draws its plots with it",
            'Install the bench extra (pip install "smokeclear[bench]"), or pass --no-plots.',
        )


def command_bench(args: argparse.Namespace) -> int:
    if args.bench_tool is not None:
        return args.bench_tool(args)
    from smokeclear.bench import harness, report
    from smokeclear.bench.machine import results_dir

    config = bench_config(args)
    _check_plots(args.no_plots)
    results = harness.run_bench(config, progress=lambda line: print(line, flush=True))
    json_path = args.json or results_dir(results["machine"]) / (
        "bench-quick.json" if args.quick else "bench.json"
    )
    for path in report.write_report(results, json_path, plots=not args.no_plots):
        print(f"wrote {path}")
    if results["plots_note"]:
        print(f"plots: {results['plots_note']}")
    print(f"bench took {results['wall_s']:.0f} s")
    return 0


def _engine_speed(args: argparse.Namespace) -> int:
    from smokeclear.bench.engine_speed import print_engine_speed
    from smokeclear.registry import parse_chain
    from smokeclear.runtime import EngineRequest

    request = EngineRequest(
        tuple(parse_chain(args.restorer)),
        backend=args.backend,
        device=args.device,
        work_scale=parse_work_scale(args.work_scale),
    )
    sizes = [parse_size(size) for size in args.size] or [(640, 360)]
    return print_engine_speed(request, sizes, args.iterations, args.json)


def _backends(args: argparse.Namespace) -> int:
    from smokeclear.registry import get_restorer

    for name in args.restorer:
        get_restorer(name)  # an unknown name is one line, before torch loads
    from smokeclear.bench.backends import compare_backends

    sizes = [parse_size(size) for size in args.size] or None
    restorers = args.restorer or [_first_restorer()]
    return compare_backends(restorers, sizes, args.iterations, args.warmup, args.json)


def _model_stats(args: argparse.Namespace) -> int:
    from smokeclear.registry import get_restorer

    get_restorer(args.restorer)
    from smokeclear.bench.model_stats import print_model_stats

    sizes = [parse_size(size) for size in args.size] or [(1920, 1080)]
    return print_model_stats(args.restorer, sizes, args.config, args.json)


def _module_share(args: argparse.Namespace) -> int:
    from smokeclear.registry import get_restorer

    get_restorer(args.restorer)
    from smokeclear.bench.module_share import print_module_share

    sizes = [parse_size(size) for size in args.size] or [(640, 360)]
    return print_module_share(
        args.restorer, sizes, args.device, args.half, args.iterations, args.warmup, args.json
    )


def _transfer_cost(args: argparse.Namespace) -> int:
    if args.frames < 1:
        raise UserError(f"--frames {args.frames} is not a count of frames", "Use e.g. --frames 50.")
    from smokeclear.bench.transfer_cost import print_transfer_cost

    sizes = [parse_size(size) for size in args.size] or [(1920, 1080)]
    return print_transfer_cost(sizes, args.frames, args.json)


def _guard_cost(args: argparse.Namespace) -> int:
    if args.frames < 1:
        raise UserError(f"--frames {args.frames} is not a count of frames", "Use e.g. --frames 50.")
    from smokeclear.bench.guard_cost import print_guard_cost

    sizes = [parse_size(size) for size in args.size] or [(1920, 1080), (1280, 720)]
    return print_guard_cost(sizes, args.frames, args.json)


def _report(args: argparse.Namespace) -> int:
    _check_plots(args.no_plots)
    from smokeclear.bench.report import remake_report

    return remake_report(args.results, plots=not args.no_plots)


def _first_restorer() -> str:
    from smokeclear.registry import REGISTRY

    return next(iter(REGISTRY))
