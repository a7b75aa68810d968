"""``smokeclear bench``: fps, latency and cost over restorers, backends, precisions,
sizes and streams."""

from __future__ import annotations

import argparse
from pathlib import Path

from smokeclear.cli.parsing import _comma_list, parse_size, parse_weights, parse_work_scale
from smokeclear.errors import UserError


def _bench_parser(commands) -> None:
    bench = commands.add_parser(
        "bench",
        help="measure fps, latency and cost: restorers x backends x precisions x sizes x streams",
    )
    bench.add_argument(
        "--quick",
        action="store_true",
        help="a smoke test of about a minute on a 2-core CPU: torch and onnxruntime, one "
        "small size, 1 and 2 streams for a few seconds",
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
    bench.add_argument("--weights", action="append", default=[], metavar="[NAME=]PATH")
    bench.add_argument(
        "--json",
        type=Path,
        help="results file (default: bench/results/<gpu or cpu>/bench.json, bench-quick.json "
        "with --quick); the markdown (.md) and the plots (.png) are written beside it",
    )
    bench.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    bench.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def bench_config(args: argparse.Namespace):
    """The checked BenchConfig of a ``bench`` command line."""
    from smokeclear.bench import harness
    from smokeclear.registry import REGISTRY, parse_chain

    streams = _comma_list(args.streams)
    if streams is not None and not all(count.isdigit() for count in streams):
        raise UserError(f"bad --streams {args.streams!r}", "Use counts, e.g. --streams 1,2,4.")
    chains = tuple(args.restorer) or tuple(REGISTRY)
    names = sorted({spec.name for chain in chains for spec in parse_chain(chain)})
    sizes = _comma_list(args.sizes)
    return harness.make_config(
        quick=args.quick,
        device=args.device,
        restorers=chains,
        backends=_comma_list(args.backends),
        precisions=_comma_list(args.precisions),
        sizes=tuple(parse_size(size) for size in sizes) if sizes else None,
        paper_sizes=args.paper_sizes,
        streams=tuple(int(count) for count in streams) if streams else None,
        fps=args.fps,
        graph_seconds=args.graph_seconds,
        iterations=args.iterations,
        warmup=args.warmup,
        matmul_seconds=args.matmul_seconds,
        work_divisor=parse_work_scale(args.work_scale),
        threads=args.threads,
        weights=parse_weights(args.weights, names),
    )


def command_bench(args: argparse.Namespace) -> int:
    from smokeclear.bench import harness, report

    config = bench_config(args)
    results = harness.run_bench(config, progress=lambda line: print(line, flush=True))
    json_path = args.json or harness.results_dir(results["machine"]) / (
        "bench-quick.json" if args.quick else "bench.json"
    )
    for path in report.write_report(results, json_path, plots=not args.no_plots):
        print(f"wrote {path}")
    if results["plots_note"]:
        print(f"plots: {results['plots_note']}")
    print(f"bench took {results['wall_s']:.0f} s")
    return 0
