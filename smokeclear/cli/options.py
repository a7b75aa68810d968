"""The command-line pieces every subcommand shares: the one-line-error parser, the
parent parsers for repeated options, and the EngineRequest they describe."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING

from smokeclear.engines.select import BACKENDS
from smokeclear.errors import UserError
from smokeclear.parsing import parse_weights, parse_work_scale

if TYPE_CHECKING:
    from smokeclear.runtime import EngineRequest
    from smokeclear.stream.live import DeviceDefaults


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one line, not usage plus error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message}", f"See `{self.prog} --help`.")


def verbose_options() -> argparse.ArgumentParser:
    """Parent parser: ``-v/--verbose``."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parent


def engine_options() -> argparse.ArgumentParser:
    """Parent parser: what builds an engine (--restorer, --backend, --device,
    --work-scale, --weights), for the commands that run one."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--restorer",
        default="desmoke",
        help="a restorer or a comma-separated chain, applied left to right",
    )
    parent.add_argument("--backend", choices=BACKENDS, default="auto")
    parent.add_argument(
        "--device", choices=("cpu", "cuda"), help="default: the GPU when there is one"
    )
    parent.add_argument(
        "--work-scale",
        help="run the network at 1, 0.5 or 0.25 of the frame "
        "size and guided-upsample back (default: 1 on a GPU, 0.5 on the CPU; restore: 1)",
    )
    add_weights_option(parent)
    parent.add_argument(
        "--onnx",
        type=Path,
        metavar="PATH",
        help="onnxruntime and TensorRT: run this ONNX model, or the chain's model in a folder "
        "`smokeclear export --out` wrote; needs no torch (default: the shipped model when it "
        "fits the weights, else one exported to the cache on first use, which needs torch)",
    )
    return parent


def add_weights_option(parser: argparse.ArgumentParser) -> None:
    """``--weights [NAME=]PATH``, repeatable: a weights file instead of the shipped one."""
    parser.add_argument(
        "--weights",
        action="append",
        default=[],
        metavar="[NAME=]PATH",
        help="weights file instead of the shipped one",
    )


def model_file_options() -> argparse.ArgumentParser:
    """Parent parser: --work-scale (default 1) and --weights, for the commands that
    write a model file for later runs (export, engines build)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--work-scale", default="1", help="1, 0.5 or 0.25 (default 1)")
    add_weights_option(parent)
    return parent


def detail_gain_option(more: str) -> argparse.ArgumentParser:
    """Parent parser: ``--detail-gain K``; ``more`` ends its help (live or fixed gain)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--detail-gain",
        type=float,
        metavar="K",
        help="switch the smooth restorer from smoothing to detail magnification: "
        f"smooth + K * (frame - smooth), K >= 0{more}",
    )
    return parent


def parse_detail_gain(gain: float | None) -> float | None:
    """``--detail-gain``: None (smoothing) or a finite gain >= 0."""
    if gain is not None and not (math.isfinite(gain) and gain >= 0):
        raise UserError(
            f"--detail-gain {gain:g} is {'negative' if gain < 0 else 'not a number'}",
            "Use a gain >= 0: 0 gives the smooth image, 1 the frame itself, "
            "above 1 magnifies detail (e.g. --detail-gain 2).",
        )
    return gain


def device_defaults(args: argparse.Namespace) -> DeviceDefaults:
    """The size, rate and work scale that fit the device the engine will run on."""
    from smokeclear.engines.select import choose_backend
    from smokeclear.stream.live import DEVICE_DEFAULTS

    choice = choose_backend(args.backend, args.device)
    return DEVICE_DEFAULTS[choice.device]


def engine_request(args: argparse.Namespace, defaults: DeviceDefaults) -> EngineRequest:
    """The checked EngineRequest of the engine_options() and --detail-gain arguments."""
    from smokeclear.registry import parse_chain
    from smokeclear.runtime import EngineRequest, check_detail_gain

    specs = parse_chain(args.restorer)
    scale = parse_work_scale(args.work_scale) if args.work_scale else defaults.work_scale
    request = EngineRequest(
        restorers=tuple(specs),
        backend=args.backend,
        device=args.device,
        work_scale=scale,
        weights=parse_weights(args.weights, [s.name for s in specs]),
        detail_gain=parse_detail_gain(args.detail_gain),
        onnx=args.onnx,
    )
    if args.onnx is not None and args.backend in ("torch", "aoti"):
        raise UserError(
            f"--onnx is for the onnxruntime and TensorRT backends, not {args.backend}",
            "Use --backend onnxruntime (or tensorrt), or leave --onnx out.",
        )
    check_detail_gain(request)  # before a source opens or a model is exported
    return request
