"""``smokeclear export``: a restorer (chain) to ONNX, FP32 and FP16, each checked."""

from __future__ import annotations

import argparse
from pathlib import Path

from smokeclear import __version__
from smokeclear.cli.options import model_file_options
from smokeclear.errors import UserError
from smokeclear.parsing import parse_weights, parse_work_scale


def add_parser(commands, verbose: argparse.ArgumentParser) -> None:
    export = commands.add_parser(
        "export", parents=[model_file_options(), verbose], help="export a restorer (chain) to ONNX"
    )
    export.add_argument("restorer", help="a restorer, a comma-separated chain, or `all`")
    export.add_argument("--out", type=Path, required=True, help="output folder")
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


def command_export(args: argparse.Namespace) -> int:
    """Write OUT/NAME.onnx and/or OUT/NAME.fp16.onnx, each gated by a parity check."""
    import tempfile

    from smokeclear.registry import REGISTRY, parse_chain
    from smokeclear.runtime import EngineRequest

    names = list(REGISTRY) if args.restorer == "all" else [args.restorer]
    scale = parse_work_scale(args.work_scale)
    requests = []
    for name in names:  # every name and --weights checked before the first export
        specs = parse_chain(name)
        weights = parse_weights(args.weights, [s.name for s in specs])
        requests.append(EngineRequest(tuple(specs), work_scale=scale, weights=weights))
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
    if report.non_finite:  # NaN or inf outputs: the numbers below would be inf and -inf
        return str(report)
    return (
        f"max abs error {report.max_abs_error:.2e}, PSNR {report.psnr_db:.1f} dB "
        f"over {report.inputs} inputs"
    )


def _export_fp32(request, path: Path):
    """Export and check the FP32 model; returns its path and the parity inputs used."""
    import torch

    from smokeclear.export.fp16 import FP32_MAX_ABS_ERROR, parity_inputs
    from smokeclear.export.onnx_export import check_parity, export_onnx
    from smokeclear.onnx_models import provenance
    from smokeclear.runtime import build_chain

    module = build_chain(request)
    metadata = {"smokeclear": __version__, "precision": "fp32", **provenance(request)}
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
