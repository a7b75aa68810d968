"""The ``smokeclear`` command line.

``smokeclear [run]`` shows a live, restored view of a source (the default
command); ``restore`` processes files offline; ``train``, ``eval`` and ``export``
serve the ML engineer. Errors the user can fix print one line with the fix and
exit with status 2; nothing prints a traceback for them.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from smokeclear import __version__
from smokeclear.engines.select import BACKENDS
from smokeclear.errors import UserError
from smokeclear.registry import pair_layouts_help

log = logging.getLogger("smokeclear")

COMMANDS = ("run", "restore", "train", "eval", "export", "engines", "bench")
WORK_SCALES = {"1": 1, "1.0": 1, "0.5": 2, "0.25": 4}


@dataclass(frozen=True)
class Profile:
    """Defaults by where the engine runs: what holds its frame budget there."""

    width: int
    height: int
    fps: float
    work_divisor: int


#: GPU: 720p60 at full working resolution. CPU (2 cores measured): 640x360 with the
#: network at half resolution and fast guided upsampling, at 15 fps.
PROFILES = {"cuda": Profile(1280, 720, 60.0, 1), "cpu": Profile(640, 360, 15.0, 2)}


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one line, not usage plus error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message}", f"See `{self.prog} --help`.")


# --------------------------------------------------------------------------- parsing


def parse_size(text: str) -> tuple[int, int]:
    """``"1280x720"`` -> ``(1280, 720)``."""
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise UserError(f"bad --size {text!r}", "Use WIDTHxHEIGHT, e.g. --size 1280x720.")
    size = int(width), int(height)
    if min(size) < 16 or max(size) > 8192:
        raise UserError(f"--size {text} is out of range", "Use a size between 16x16 and 8192x8192.")
    return size


def parse_work_scale(text: str) -> int:
    if text not in WORK_SCALES:
        raise UserError(f"bad --work-scale {text!r}", "Use 1, 0.5 or 0.25.")
    return WORK_SCALES[text]


def parse_weights(entries: list[str], restorers: list[str]) -> dict[str, Path]:
    """``--weights PATH`` (one restorer) or ``--weights NAME=PATH`` (chains)."""
    weights: dict[str, Path] = {}
    for entry in entries:
        name, sep, path = entry.partition("=")
        if not sep:
            if len(restorers) != 1:
                raise UserError(
                    f"--weights {entry} is ambiguous for a chain",
                    "Use --weights NAME=PATH for each restorer.",
                )
            name, path = restorers[0], entry
        if name not in restorers:
            raise UserError(
                f"--weights given for {name}, which is not in --restorer",
                f"Use one of: {', '.join(restorers)}.",
            )
        weights[name] = Path(path)
    return weights


def build_parser() -> Parser:
    parser = Parser(
        prog="smokeclear",
        description="Real-time surgical video desmoking. `smokeclear` alone runs the live "
        "view on the built-in synthetic scene; `smokeclear run --help` lists its options.",
    )
    parser.add_argument("--version", action="version", version=f"smokeclear {__version__}")
    commands = parser.add_subparsers(dest="command", parser_class=Parser)

    run = commands.add_parser(
        "run", help="live restored view of a camera, stream or file (the default command)"
    )
    run.add_argument(
        "--source",
        default="synthetic",
        help="synthetic[:SEED] (default), /dev/videoN, a camera index, a video "
        "file, an image folder, or an rtsp:// / http(s):// URL",
    )
    _engine_arguments(run)
    run.add_argument(
        "--detail-gain",
        type=float,
        metavar="K",
        help="switch the smooth restorer from smoothing to detail magnification: "
        "smooth + K * (frame - smooth), K >= 0 (1 shows the frame, above 1 sharpens); "
        "in the window, [ and ] change K live by 0.5",
    )
    run.add_argument(
        "--fps",
        type=float,
        help="frame-rate budget (default: 60 on a GPU, 15 on the CPU, or the camera's rate)",
    )
    run.add_argument(
        "--budget-ms", type=float, help="capture-to-display deadline (default: one frame period)"
    )
    run.add_argument(
        "--size",
        help="output WIDTHxHEIGHT (default: 1280x720 on a GPU, 640x360 "
        "on the CPU for the synthetic scene; the source's own size otherwise)",
    )
    run.add_argument(
        "--display",
        choices=("auto", "window", "none"),
        default="auto",
        help="auto: a window when a desktop is available",
    )
    run.add_argument("--view", choices=("processed", "side-by-side", "split"), default="processed")
    run.add_argument("--record", type=Path, help="record the shown view to this video file")
    run.add_argument("--max-frames", type=int, help="stop after this many captured frames")
    run.add_argument(
        "--camera-format",
        choices=("MJPG", "YUYV", "NV12"),
        help="capture format to ask a camera for",
    )
    run.add_argument("--json", type=Path, help="also write the run report as JSON here")

    restore = commands.add_parser(
        "restore", help="restore an image, a folder of images or a video file, offline, every frame"
    )
    restore.add_argument("input", type=Path)
    restore.add_argument(
        "output",
        type=Path,
        help=".png/.tif for an image, a folder for a folder, a video file "
        "(.mp4, .avi, .mkv, .mov) for a video",
    )
    _engine_arguments(restore)
    restore.add_argument(
        "--detail-gain",
        type=float,
        metavar="K",
        help="switch the smooth restorer from smoothing to detail magnification: "
        "smooth + K * (frame - smooth), K >= 0, fixed for every frame (live, in the "
        "window of `smokeclear run`, [ and ] change it)",
    )

    train = commands.add_parser("train", help="train a restorer on synthetic data")
    train.add_argument("restorer")
    train.add_argument("--out", type=Path, required=True, help="run folder for checkpoints")
    train.add_argument(
        "--clean-dir",
        type=Path,
        action="append",
        default=[],
        help="folder of clean frames to degrade (repeatable; split by file name)",
    )
    train.add_argument(
        "--pairs-dir",
        type=Path,
        action="append",
        default=[],
        help=f"folder of real pairs with matching names: {pair_layouts_help()}; repeatable",
    )
    train.add_argument(
        "--vgg-weights",
        type=Path,
        help="torchvision VGG state dict for the perceptual loss (off without it): "
        "VGG-19 for dereflect and enhance, VGG-16 for lowlight",
    )
    train.add_argument("--config", type=Path, help="YAML with network: and train: sections")
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    train.add_argument(
        "--init",
        type=Path,
        metavar="WEIGHTS",
        help="start from these weights, e.g. the shipped ones to fine-tune",
    )
    train.add_argument("--max-epochs", type=int)
    train.add_argument("--steps-per-epoch", type=int)

    evaluate = commands.add_parser("eval", help="evaluate a restorer on the held-out test set")
    evaluate.add_argument("restorer")
    evaluate.add_argument("--weights", type=Path, help="default: the shipped weights")
    evaluate.add_argument(
        "--clean-dir",
        type=Path,
        action="append",
        default=[],
        help="also test on the held-out images of this folder",
    )
    evaluate.add_argument(
        "--pairs-dir",
        type=Path,
        action="append",
        default=[],
        help=f"also score real pairs: {pair_layouts_help()}; repeatable",
    )
    evaluate.add_argument("--frames-per-scene", type=int, default=10)
    evaluate.add_argument("--json", type=Path, help="also write the table as JSON here")
    evaluate.add_argument(
        "--examples", type=Path, help="also write a PNG: one case per row, methods side by side"
    )

    export = commands.add_parser("export", help="export a restorer (chain) to ONNX")
    export.add_argument("restorer", help="a restorer, a comma-separated chain, or `all`")
    export.add_argument("--out", type=Path, required=True, help="output folder")
    export.add_argument("--work-scale", default="1", help="1, 0.5 or 0.25 (default 1)")
    export.add_argument("--weights", action="append", default=[], metavar="[NAME=]PATH")
    export.add_argument(
        "--precision",
        choices=("fp32", "fp16", "both"),
        default="both",
        help="fp32: NAME.onnx; fp16: NAME.fp16.onnx (convolutions in FP16, guided filter "
        "and I/O in FP32, for strongly typed TensorRT); both (default)",
    )
    export.add_argument(
        "--keep-fp32",
        action="append",
        default=[],
        metavar="NODE",
        help="also keep this node of the FP32 graph in FP32 in the FP16 model (repeatable)",
    )

    for sub in (run, restore, train, evaluate, export):
        sub.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    _engines_parser(commands)
    _bench_parser(commands)
    return parser


def _engine_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--restorer",
        default="desmoke",
        help="a restorer or a comma-separated chain, applied left to right",
    )
    parser.add_argument("--backend", choices=BACKENDS, default="auto")
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), help="default: the GPU when there is one"
    )
    parser.add_argument(
        "--work-scale",
        help="run the network at 1, 0.5 or 0.25 of the frame "
        "size and guided-upsample back (default: 1 on a GPU, 0.5 on the CPU)",
    )
    parser.add_argument(
        "--weights",
        action="append",
        default=[],
        metavar="[NAME=]PATH",
        help="weights file instead of the shipped one",
    )


# --------------------------------------------------------------------------- commands


def parse_detail_gain(gain: float | None) -> float | None:
    """``--detail-gain``: None (smoothing) or a finite gain >= 0."""
    if gain is not None and not (math.isfinite(gain) and gain >= 0):
        raise UserError(
            f"--detail-gain {gain:g} is {'negative' if gain < 0 else 'not a number'}",
            "Use a gain >= 0: 0 gives the smooth image, 1 the frame itself, "
            "above 1 magnifies detail (e.g. --detail-gain 2).",
        )
    return gain


def engine_request(args: argparse.Namespace, profile: Profile):
    from smokeclear.registry import parse_chain
    from smokeclear.runtime import EngineRequest, check_detail_gain

    specs = parse_chain(args.restorer)
    divisor = parse_work_scale(args.work_scale) if args.work_scale else profile.work_divisor
    request = EngineRequest(
        restorers=tuple(specs),
        backend=args.backend,
        device=args.device,
        work_divisor=divisor,
        weights=parse_weights(args.weights, [s.name for s in specs]),
        detail_gain=parse_detail_gain(args.detail_gain),
    )
    check_detail_gain(request)  # before a source opens or a model is exported
    return request


def choose_profile(args: argparse.Namespace) -> Profile:
    from smokeclear.engines.select import choose_backend

    choice = choose_backend(args.backend, args.device)
    return PROFILES[choice.device]


def command_run(args: argparse.Namespace) -> int:
    from smokeclear.runtime import create_engine
    from smokeclear.stream.graph import Graph, GraphSettings
    from smokeclear.stream.sinks import NullSink, VideoRecorder, WindowSink, display_available
    from smokeclear.stream.sources import open_source

    profile = choose_profile(args)
    if args.fps is not None and not 1 <= args.fps <= 1000:
        raise UserError(f"--fps {args.fps} is out of range", "Use a rate between 1 and 1000.")
    if args.max_frames is not None and args.max_frames < 1:
        raise UserError("--max-frames must be at least 1", "Leave it out to run until stopped.")
    size = parse_size(args.size) if args.size else None
    synthetic = args.source.startswith("synthetic")
    if size is None and synthetic:
        size = (profile.width, profile.height)
    request = engine_request(args, profile)
    fps_request = args.fps or (profile.fps if synthetic else None)
    source = open_source(args.source, *(size or (None, None)), fps=fps_request)
    # Check the recording path before the engine is built (an export takes seconds).
    recorder = VideoRecorder(args.record, lossless_queue=not source.live) if args.record else None
    try:
        width, height = size or (source.width, source.height)
        fps = args.fps or (profile.fps if synthetic or not source.fps else source.fps)
        if not source.live and args.fps is None and source.fps:
            fps = source.fps
        engine, choice = create_engine(request)
        log.info(
            "%s on %s %dx%d @ %g fps: %s backend (%s), network at %s resolution",
            request.label,
            source.name,
            width,
            height,
            fps,
            engine.name,
            choice.reason,
            {1: "full", 2: "half", 4: "quarter"}[request.work_divisor],
        )
        engine.start(height, width)
        from smokeclear.runtime import engine_factory

        factory = engine_factory(request)
        sinks = []
        window = None
        if args.display == "window" or (args.display == "auto" and display_available()):
            window = WindowSink()
            sinks.append(window)
        elif args.display == "auto":
            log.info("no display found: running headless (--display none)")
        if recorder is not None:
            sinks.append(recorder)
        if not sinks:
            sinks.append(NullSink())
        settings = GraphSettings(
            width=width,
            height=height,
            fps=fps,
            budget_ms=args.budget_ms,
            view=args.view,
            detail_gain=request.detail_gain,
            max_frames=args.max_frames,
            warmup_frames=max(10, round(fps)),
        )
        stop = threading.Event()
        graph = Graph(source, engine, factory, sinks, settings, stop, choice.reason)
        if window is not None:
            window.on_key = graph.controls.handle_key
            if request.detail_gain is not None:
                log.info("detail x%g: press ] or [ in the window to change it", request.detail_gain)
        with stop_on_signals(stop):
            report = graph.run()
    finally:
        source.close()
    print(report.format())
    if (
        report.realtime
        and report.counters.captured > 20
        and report.counters.bypassed > report.counters.shown_processed
    ):
        infer = report.latency.get("infer")
        spent = f" (inference p50 {infer.p50:.0f} ms)" if infer else ""
        print(
            f"hint: most frames were bypassed{spent} against a {report.budget_ms:.0f} ms "
            "budget; try a smaller --size, --work-scale 0.5, a lower --fps or a GPU"
        )
    if args.json:
        args.json.write_text(json.dumps(report.to_dict(), indent=2))
    return 0


def command_restore(args: argparse.Namespace) -> int:
    from smokeclear.restore import restore

    profile = choose_profile(args)
    restore(args.input, args.output, engine_request(args, profile))
    return 0


def command_train(args: argparse.Namespace) -> int:
    from smokeclear.registry import get_restorer
    from smokeclear.train import driver
    from smokeclear.train.options import TrainOptions

    spec = get_restorer(args.restorer)
    options = TrainOptions(
        out_dir=args.out,
        clean_dirs=tuple(args.clean_dir),
        config_path=args.config,
        resume=args.resume,
        init_weights=args.init,
        max_epochs=args.max_epochs,
        steps_per_epoch=args.steps_per_epoch,
        progress=sys.stderr.isatty(),
        pairs_dirs=tuple(args.pairs_dir),
        vgg_weights=args.vgg_weights,
    )
    result = driver.train(spec, options)
    print(
        f"{spec.name}: {result.describe()} after {result.epochs} "
        f"epochs{' (early stop)' if result.stopped_early else ''}; weights in {args.out}"
    )
    return 0


def command_eval(args: argparse.Namespace) -> int:
    from smokeclear.registry import get_restorer
    from smokeclear.train import driver
    from smokeclear.train.options import EvalOptions

    spec = get_restorer(args.restorer)
    options = EvalOptions(
        weights=args.weights,
        clean_dirs=tuple(args.clean_dir),
        frames_per_scene=args.frames_per_scene,
        json_path=args.json,
        examples_path=args.examples,
        pairs_dirs=tuple(args.pairs_dir),
    )
    print(driver.format_table(spec, driver.evaluate(spec, options)))
    return 0


def command_export(args: argparse.Namespace) -> int:
    """Write OUT/NAME.onnx and/or OUT/NAME.fp16.onnx, each gated by a parity check."""
    import tempfile

    from smokeclear.registry import REGISTRY, parse_chain
    from smokeclear.runtime import EngineRequest

    names = list(REGISTRY) if args.restorer == "all" else [args.restorer]
    divisor = parse_work_scale(args.work_scale)
    requests = []
    for name in names:  # every name and --weights checked before the first export
        specs = parse_chain(name)
        weights = parse_weights(args.weights, [s.name for s in specs])
        requests.append(EngineRequest(tuple(specs), work_divisor=divisor, weights=weights))
    for request in requests:
        with tempfile.TemporaryDirectory(prefix="smokeclear-export-") as scratch:
            # --precision fp16 still needs the FP32 model to convert; it stays in scratch.
            folder = Path(scratch) if args.precision == "fp16" else args.out
            fp32_path, inputs = _export_fp32(request, folder / f"{request.label}.onnx")
            if args.precision != "fp16":
                print(f"wrote {fp32_path}")
            if args.precision != "fp32":
                fp16_path = args.out / f"{request.label}.fp16.onnx"
                _export_fp16(request, fp32_path, fp16_path, inputs, args.keep_fp32)
    return 0


def _parity_text(report) -> str:
    return (
        f"max abs error {report.max_abs_error:.2e}, PSNR {report.psnr_db:.1f} dB "
        f"over {report.inputs} inputs"
    )


def _export_fp32(request, path: Path):
    """Export and check the FP32 model; returns its path and the parity inputs used."""
    import torch

    from smokeclear.export.fp16 import FP32_MAX_ABS_ERROR, parity_inputs
    from smokeclear.export.onnx_export import check_parity, export_onnx
    from smokeclear.runtime import build_chain

    module = build_chain(request)
    metadata = {"restorers": request.label, "smokeclear": __version__, "precision": "fp32"}
    export_onnx(module, path, metadata)
    inputs = parity_inputs(module.input_multiple)
    report = check_parity(module, path, [torch.from_numpy(frame) for frame in inputs])
    print(f"{request.label}: FP32 ONNX vs PyTorch (random, scene frames): {_parity_text(report)}")
    if report.max_abs_error > FP32_MAX_ABS_ERROR:
        path.unlink()
        raise UserError(
            f"{request.label}: the FP32 ONNX model differs from PyTorch by "
            f"{report.max_abs_error:.2e} (limit {FP32_MAX_ABS_ERROR:g}); {path.name} not written",
            "The exporter mistranslated the network: report it with your torch and "
            "onnxscript versions (pip list), and use --backend torch meanwhile.",
        )
    return path, inputs


def _export_fp16(request, fp32_path: Path, path: Path, inputs, keep_fp32: list[str]) -> None:
    """Convert to FP16 and check it against the FP32 model.

    Gated on the typed FP16 evaluation (every FP16 tensor stored in FP16, as TensorRT
    does); onnxruntime's CPU figure is printed too but upcasts FP16 ops to FP32.
    """
    from smokeclear.export.fp16 import FP16_MIN_PSNR_DB, compare_models, convert_to_fp16

    scopes = tuple(scope for spec in request.restorers for scope in spec.fp32_modules)
    conversion = convert_to_fp16(fp32_path, path, keep_fp32=keep_fp32, fp32_scopes=scopes)
    label = request.label
    print(f"{label}: {conversion.fp16_nodes} nodes FP16, {len(conversion.fp32_nodes)} kept FP32")
    # The numpy evaluator takes seconds per frame: one random and one scene frame.
    typed = compare_models(fp32_path, path, [inputs[0], inputs[2]], evaluator="reference")
    upcast = compare_models(fp32_path, path, inputs, evaluator="onnxruntime")
    print(f"{label}: FP16 vs FP32 ONNX (typed FP16, onnx reference): {_parity_text(typed)}")
    print(f"{label}: FP16 vs FP32 ONNX (onnxruntime CPU, upcasts FP16 ops): {_parity_text(upcast)}")
    if typed.psnr_db < FP16_MIN_PSNR_DB:
        path.unlink()
        raise UserError(
            f"{request.label}: the FP16 model's output is {typed.psnr_db:.1f} dB from the FP32 "
            f"model's (limit {FP16_MIN_PSNR_DB:g} dB); {path.name} not written",
            "Keep the offending nodes in FP32 with --keep-fp32 NODE, or use --precision fp32.",
        )
    print(f"wrote {path}")


# --------------------------------------------------------------------------- engines (TensorRT)


def _engines_parser(commands) -> None:
    engines = commands.add_parser("engines", help="list, build or clear cached TensorRT engines")
    actions = engines.add_subparsers(
        dest="action", parser_class=Parser, metavar="{list,build,clear}", required=True
    )
    listing = actions.add_parser("list", help="the cached engines and what they were built for")
    build = actions.add_parser(
        "build", help="build the engine for a restorer (chain) into the cache; takes minutes"
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
    build.add_argument("--work-scale", default="1", help="1, 0.5 or 0.25 (default 1)")
    build.add_argument("--weights", action="append", default=[], metavar="[NAME=]PATH")
    clear = actions.add_parser("clear", help="delete the cached engines")
    clear.add_argument(
        "--timing-caches", action="store_true", help="also delete TensorRT's timing caches"
    )
    for sub in (listing, build, clear):
        sub.add_argument("-v", "--verbose", action="store_true", help="debug logging")


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
    from smokeclear.engines.tensorrt_engine import (
        deserializer,
        require_cudart,
        require_tensorrt,
        tensorrt_logger,
    )
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
    divisor = parse_work_scale(args.work_scale)
    weights = parse_weights(args.weights, [s.name for s in specs])
    if args.onnx is not None and not args.onnx.is_file():
        raise UserError(f"ONNX model {args.onnx} does not exist", "Check the --onnx path.")
    # Before any export: without TensorRT this is one line, not minutes of work first.
    trt = require_tensorrt()
    require_cudart()
    if args.onnx is not None:
        onnx_path = args.onnx
    else:
        request = EngineRequest(tuple(specs), work_divisor=divisor, weights=weights)
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


# --------------------------------------------------------------------------- bench


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


def _comma_list(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    items = tuple(item.strip() for item in text.split(",") if item.strip())
    if not items:
        raise UserError(f"empty list {text!r}", "Give comma-separated values.")
    return items


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


HANDLERS = {
    "run": command_run,
    "restore": command_restore,
    "train": command_train,
    "eval": command_eval,
    "export": command_export,
    "engines": command_engines,
    "bench": command_bench,
}


class stop_on_signals:
    """SIGINT / SIGTERM set ``stop`` (a clean shutdown); a second Ctrl-C exits at once."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self._previous: dict[int, object] = {}

    def _handle(self, number: int, _: FrameType | None) -> None:
        log.info("%s: stopping (finishing recordings)", signal.Signals(number).name)
        self.stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __enter__(self) -> stop_on_signals:
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prefix = {
            logging.WARNING: "warning: ",
            logging.ERROR: "error: ",
            logging.CRITICAL: "error: ",
        }.get(record.levelno, "")
        return f"smokeclear: {prefix}{record.getMessage()}"


def configure_logging(verbose: bool) -> logging.Handler:
    """Log to stderr as ``smokeclear: ...``; returns the handler so main() can remove it."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    logger = logging.getLogger("smokeclear")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    return handler


def quiet_native_logs(verbose: bool) -> None:
    """OpenCV and FFmpeg print their own lines on stderr ("moov atom not found"); the
    user gets ours instead. Read when cv2 loads, so this runs before any cv2 import."""
    os.environ.setdefault("OPENCV_LOG_LEVEL", "INFO" if verbose else "ERROR")
    # FFmpeg's av_log levels: -8 quiet, 24 warning.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "24" if verbose else "-8")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    quiet_native_logs("-v" in argv or "--verbose" in argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version")):
        argv.insert(0, "run")
    handler = None
    try:
        args = build_parser().parse_args(argv)
        handler = configure_logging(getattr(args, "verbose", False))
        return HANDLERS[args.command](args)
    except UserError as error:
        print(f"smokeclear: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("smokeclear: interrupted", file=sys.stderr)
        return 130
    finally:
        if handler is not None:
            logging.getLogger("smokeclear").removeHandler(handler)
