"""``smokeclear engines list|build|clear``: the cached TensorRT engines."""

from __future__ import annotations

import argparse
from pathlib import Path

from smokeclear.cli.options import Parser, model_file_options
from smokeclear.errors import UserError
from smokeclear.parsing import parse_weights, parse_work_scale


def add_parser(commands, verbose: argparse.ArgumentParser) -> None:
    engines = commands.add_parser("engines", help="list, build or clear cached TensorRT engines")
    actions = engines.add_subparsers(
        dest="action", parser_class=Parser, metavar="{list,build,clear}", required=True
    )
    actions.add_parser(
        "list", parents=[verbose], help="the cached engines and what they were built for"
    )
    build = actions.add_parser(
        "build",
        parents=[model_file_options(), verbose],
        help="build the engine for a restorer (chain) into the cache; takes minutes",
    )
    build.add_argument(
        "--restorer", default="desmoke", help="a restorer or a comma-separated chain"
    )
    build.add_argument(
        "--onnx",
        type=Path,
        help="build from this ONNX file (e.g. NAME.fp16.onnx from `smokeclear export "
        "--precision fp16`) instead of exporting --restorer",
    )
    build.add_argument(
        "--sizes",
        default="1280x720",
        help="comma-separated frame sizes WIDTHxHEIGHT the engine accepts; it is tuned "
        "for the first (default 1280x720)",
    )
    build.add_argument("--precision", choices=("fp16", "fp32"), default="fp16")
    build.add_argument(
        "--opt-level",
        type=int,
        choices=range(6),
        default=3,
        metavar="{0..5}",
        help="TensorRT builder optimisation level (default 3; higher tries more, builds longer)",
    )
    build.add_argument(
        "--workspace-gb", type=float, default=4.0, help="builder scratch memory (default 4 GiB)"
    )
    clear = actions.add_parser("clear", parents=[verbose], help="delete the cached engines")
    clear.add_argument(
        "--timing-caches", action="store_true", help="also delete TensorRT's timing caches"
    )


def command_engines(args: argparse.Namespace) -> int:
    from smokeclear.engines import engine_cache

    if args.action == "list":
        entries = engine_cache.list_entries()
        if not entries:
            print(f"no cached TensorRT engines in {engine_cache.engines_dir()}")
        for entry in entries:
            print(_describe_engine(entry))
        return 0
    if args.action == "clear":
        removed = engine_cache.clear(timing_caches=args.timing_caches)
        print(f"removed {removed} cached TensorRT engine(s) from {engine_cache.engines_dir()}")
        return 0
    return _build_engine(args)


def _describe_engine(entry) -> str:
    from smokeclear.export.tensorrt_build import format_profile

    size = f"{entry.size_bytes / 2**20:.1f} MB"
    if entry.key is None:
        return f"{entry.plan}  {size}  (no description: rebuilt on next use)"
    key = entry.key
    return (
        f"{entry.plan}  {entry.label}  {key.precision}  {format_profile(key.profile)}  "
        f"TensorRT {key.tensorrt_version}  {key.gpu_name} (sm {key.compute_capability})  "
        f"level {key.optimization_level}  {size}"
    )


def _build_engine(args: argparse.Namespace) -> int:
    import onnx

    from smokeclear.engines import engine_cache
    from smokeclear.engines.cuda_runtime import require_cudart
    from smokeclear.engines.tensorrt_support import deserializer, require_tensorrt, tensorrt_logger
    from smokeclear.export.tensorrt_build import (
        build_engine,
        format_profile,
        model_metadata,
        parse_frame_size,
        shape_profile,
    )
    from smokeclear.registry import parse_chain
    from smokeclear.runtime import EngineRequest, onnx_fp16_model, onnx_model

    sizes = [parse_frame_size(text) for text in args.sizes.split(",") if text.strip()]
    if not sizes:
        raise UserError("--sizes is empty", "Give frame sizes, e.g. --sizes 1280x720,1920x1080.")
    if not 0 < args.workspace_gb <= 1024:
        raise UserError(f"--workspace-gb {args.workspace_gb} is out of range", "Use e.g. 4.")
    specs = parse_chain(args.restorer)
    scale = parse_work_scale(args.work_scale)
    weights = parse_weights(args.weights, [s.name for s in specs])
    if args.onnx is not None and not args.onnx.is_file():
        raise UserError(f"ONNX model {args.onnx} does not exist", "Check the --onnx path.")
    # Before any export: without TensorRT this is one line, not minutes of work first.
    trt = require_tensorrt()
    require_cudart()
    if args.onnx is not None:
        onnx_path = args.onnx
    else:
        request = EngineRequest(tuple(specs), work_scale=scale, weights=weights)
        # FP16 from the FP16 ONNX: strongly typed, guided filter FP32, on TensorRT 10 and 11.
        onnx_path = onnx_fp16_model(request) if args.precision == "fp16" else onnx_model(request)
    metadata = model_metadata(onnx.load(str(onnx_path), load_external_data=False))
    label = metadata.get("restorers") or "+".join(s.name for s in specs)
    multiple = int(metadata.get("input_multiple", "1"))
    profile = shape_profile(sizes, multiple)
    key = engine_cache.key_for(onnx_path, args.precision, profile, args.opt_level)
    timing = engine_cache.timing_cache_path(
        key.tensorrt_version, key.gpu_name, key.compute_capability
    )
    scopes = tuple(scope for spec in specs for scope in spec.fp32_modules)

    def build(plan: Path):
        return build_engine(
            onnx_path,
            plan,
            precision=args.precision,
            profile=profile,
            workspace_bytes=int(args.workspace_gb * 2**30),
            optimization_level=args.opt_level,
            timing_cache_path=timing,
            fp32_scopes=scopes,
        )

    runtime = trt.Runtime(tensorrt_logger(trt))
    info = {"label": label, "onnx": str(onnx_path), "input_multiple": multiple}
    _, plan = engine_cache.load_or_build(key, build, deserializer(runtime), info=info)
    print(
        f"{plan}: {label}, {args.precision}, {format_profile(profile)}, "
        f"TensorRT {key.tensorrt_version} on {key.gpu_name}"
    )
    return 0
