"""TensorRT engine builds from the exported ONNX: profile, precision, timing cache, progress.

Written against the TensorRT 10 and 11 Python API. The difference that matters here
is typing: TensorRT 10 can build FP16 from an FP32 ONNX on a weakly typed network
(``BuilderFlag.FP16``); TensorRT 11 only builds strongly typed networks, so FP16
there means an FP16 ONNX (``NAME.fp16.onnx``, made by :mod:`smokeclear.export.fp16`)
whose normalisation layers and guided filter stay FP32 in the graph itself. Either
way the built engine is inspected afterwards and the build fails when it does not
run in the precision that was asked for: an engine silently built in FP32 is a
known failure elsewhere (rf-detr #1453).

Everything that does not need TensorRT (the shape profile, the version and mode
decisions here, reading the inspector's JSON in :mod:`~smokeclear.export.tensorrt_precision`,
progress rate-limiting in :mod:`~smokeclear.export.tensorrt_progress`) is a pure
function tested on every machine; :func:`build_engine` only wires them to the library.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smokeclear.engines.base import padded_size
from smokeclear.engines.tensorrt_support import ShapeProfile, frame_size
from smokeclear.errors import UserError
from smokeclear.export.tensorrt_precision import (
    PrecisionSummary,
    check_precision,
    inspect_precisions,
)
from smokeclear.export.tensorrt_progress import BuildProgress, progress_monitor

log = logging.getLogger(__name__)

PRECISIONS = ("fp16", "fp32")
MIN_TENSORRT_MAJOR = 10
#: TensorRT's builder optimisation levels (3 is its default).
OPTIMIZATION_LEVELS = range(6)


# --------------------------------------------------------------------------- shape profile


def parse_frame_size(text: str) -> tuple[int, int]:
    """``"1280x720"`` -> ``(1280, 720)`` (width, height)."""
    width, sep, height = text.strip().lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise UserError(
            f"bad frame size {text!r}", "Use WIDTHxHEIGHT, e.g. --sizes 1280x720,1920x1080."
        )
    size = int(width), int(height)
    if min(size) < 16 or max(size) > 8192:
        raise UserError(f"frame size {text} is out of range", "Use sizes from 16x16 to 8192x8192.")
    return size


def shape_profile(
    sizes: Sequence[str | tuple[int, int]], multiple: int, work_scale: float = 1.0
) -> ShapeProfile:
    """The (min, opt, max) NCHW input shapes that cover ``sizes``.

    Frames are edge-padded up to the model's input multiple before inference
    (:func:`smokeclear.engines.base.padded_size`), so the profile is built from the
    padded sizes. ``opt`` (the shape TensorRT tunes its kernels for) is the first
    size given; ``min`` and ``max`` are the element-wise extremes over all of them.

    Args:
        sizes: frame sizes as ``"WIDTHxHEIGHT"`` strings or ``(width, height)``.
        multiple: input multiple of the network.
        work_scale: work scale applied inside the model (1, 0.5, 0.25); the padded
            multiple is ``multiple / work_scale``. Pass 1 when ``multiple`` already
            includes it, as the ONNX metadata ``input_multiple`` does.

    Shape:
        each of the three: ``(1, 3, H', W')`` with H', W' multiples of
        ``multiple / work_scale``.
    """
    if multiple < 1 or not 0 < work_scale <= 1:
        raise ValueError(f"need multiple >= 1 and 0 < work_scale <= 1: {multiple}, {work_scale}")
    if not sizes:
        raise UserError("no frame sizes given", "Give at least one, e.g. --sizes 1280x720.")
    step = multiple * round(1 / work_scale)
    padded: list[tuple[int, int]] = []
    for size in sizes:
        width, height = parse_frame_size(size) if isinstance(size, str) else size
        if width < 1 or height < 1:
            raise UserError(f"bad frame size {width}x{height}", "Sizes must be positive.")
        padded.append(padded_size(height, width, step))
    heights = [height for height, _ in padded]
    widths = [width for _, width in padded]
    minimum = (1, 3, min(heights), min(widths))
    optimum = (1, 3, *padded[0])
    maximum = (1, 3, max(heights), max(widths))
    return minimum, optimum, maximum  # type: ignore[return-value]


def format_profile(profile: ShapeProfile) -> str:
    """``min 720x1280, opt 720x1280, max 1088x1920`` (H x W of the engine's input)."""
    names = ("min", "opt", "max")
    sizes = (frame_size(shape) for shape in profile)
    return ", ".join(
        f"{name} {height}x{width}" for name, (height, width) in zip(names, sizes, strict=True)
    )


# --------------------------------------------------------------------------- version and mode


def tensorrt_major(version: str) -> int:
    """Major version of a TensorRT version string (``"10.13.3.9"`` -> 10)."""
    head = version.strip().split(".")[0]
    if not head.isdigit():
        raise ValueError(f"unrecognised TensorRT version {version!r}")
    major = int(head)
    if major < MIN_TENSORRT_MAJOR:
        raise UserError(
            f"TensorRT {version} is too old (smokeclear needs {MIN_TENSORRT_MAJOR} or newer)",
            'Install a newer one: pip install "smokeclear[gpu]", or use --backend torch.',
        )
    return major


@dataclass(frozen=True)
class BuildMode:
    """How the network is created and configured for the asked precision."""

    strongly_typed: bool  # precision comes from the ONNX's own types
    fp16_flag: bool  # TensorRT 10 weak typing: let the builder pick FP16 kernels


def fp16_sibling(onnx_path: Path) -> Path:
    """``x.onnx`` -> ``x.fp16.onnx``, where :mod:`smokeclear.export.fp16` writes it."""
    if onnx_path.name.endswith(".fp16.onnx"):
        return onnx_path
    return onnx_path.with_suffix(".fp16.onnx")


def build_mode(precision: str, major: int, onnx_is_fp16: bool, onnx_path: Path) -> BuildMode:
    """Decide typing and flags, or explain why this combination cannot be built.

    Args:
        precision: "fp16" or "fp32", what the engine must run in.
        major: TensorRT major version (10 or later).
        onnx_is_fp16: the ONNX already carries FP16 tensors (see :func:`onnx_has_fp16`).
    """
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}", "Use fp16 or fp32.")
    if precision == "fp32":
        if onnx_is_fp16:
            raise UserError(
                f"{onnx_path} is an FP16 model, so its engine cannot be FP32",
                "Build fp32 from the FP32 ONNX (without .fp16), or ask for --precision fp16.",
            )
        return BuildMode(strongly_typed=True, fp16_flag=False)
    if onnx_is_fp16:
        return BuildMode(strongly_typed=True, fp16_flag=False)
    if major >= 11:
        raise UserError(
            f"TensorRT {major} builds FP16 engines only from an FP16 ONNX (networks are "
            f"always strongly typed), and {onnx_path} is FP32",
            "Export the FP16 model (smokeclear export RESTORER --precision fp16 --out DIR "
            "writes DIR/NAME.fp16.onnx, guided filter kept FP32) and build from it with "
            "smokeclear engines build --onnx DIR/NAME.fp16.onnx, or use --precision fp32.",
        )
    return BuildMode(strongly_typed=False, fp16_flag=True)


def network_flags(trt: Any, strongly_typed: bool) -> int:
    """Creation flags for ``builder.create_network``.

    TensorRT 10 needs ``STRONGLY_TYPED`` to be asked for; TensorRT 11 types every
    network strongly and accepts (and ignores) the flag, which may go away later,
    so it is only set when it exists. ``EXPLICIT_BATCH`` is implicit since 10.
    """
    if not strongly_typed:
        return 0
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def model_metadata(model: Any) -> dict[str, str]:
    """The ``metadata_props`` of an ``onnx.ModelProto`` (``input_multiple``, ``restorers``)."""
    return {entry.key: entry.value for entry in model.metadata_props}


def onnx_has_fp16(model: Any) -> bool:
    """True when an ``onnx.ModelProto`` computes in FP16 anywhere.

    Looks at initializers, graph inputs/outputs/value_info and ``Cast`` /
    ``Constant`` nodes (an AutoCast-style FP16 model with FP32 I/O shows up in the
    first and last of these).
    """
    import onnx

    float16 = onnx.TensorProto.FLOAT16
    graph = model.graph
    if any(tensor.data_type == float16 for tensor in graph.initializer):
        return True
    for value in (*graph.input, *graph.output, *graph.value_info):
        if value.type.HasField("tensor_type") and value.type.tensor_type.elem_type == float16:
            return True
    for node in graph.node:
        for attribute in node.attribute:
            if node.op_type == "Cast" and attribute.name == "to" and attribute.i == float16:
                return True
            constant = node.op_type == "Constant" and attribute.name == "value"
            if constant and attribute.t.data_type == float16:
                return True
    return False


# --------------------------------------------------------------------------- the build


@dataclass(frozen=True)
class BuildReport:
    plan_path: Path
    tensorrt_version: str
    precision: str
    profile: ShapeProfile
    seconds: float
    precisions: PrecisionSummary

    def __str__(self) -> str:
        return (
            f"{self.plan_path.name}: TensorRT {self.tensorrt_version}, {self.precision}, "
            f"{format_profile(self.profile)}, built in {self.seconds:.0f} s ({self.precisions})"
        )


def build_engine(
    onnx_path: Path,
    plan_path: Path,
    *,
    precision: str = "fp16",
    profile: ShapeProfile,
    workspace_bytes: int = 4 << 30,
    optimization_level: int = 3,
    timing_cache_path: Path | None = None,
    fp32_scopes: Sequence[str] = (),
) -> BuildReport:
    """Build a serialised TensorRT engine (plan) for ``onnx_path`` and write it.

    Args:
        onnx_path: the exported model (one input, NCHW, dynamic H and W).
        plan_path: where the plan goes; written only after the precision check.
        precision: "fp16" or "fp32". FP16 needs an FP16 ONNX on TensorRT 11.
        profile: (min, opt, max) input shapes, see :func:`shape_profile`.
        workspace_bytes: limit of the builder's scratch memory pool.
        optimization_level: 0-5, higher tries more tactics (slower build).
        timing_cache_path: persistent timing cache, read before and written after.
        fp32_scopes: module-name prefixes (``RestorerSpec.fp32_modules``) kept in
            FP32 when TensorRT 10 picks FP16 kernels itself (weak typing); an FP16
            ONNX carries this in its own types.

    Raises:
        UserError: no TensorRT / cuda-python, a model TensorRT cannot parse, a
            precision this TensorRT cannot build from this ONNX.
        PrecisionError: the engine is not in the precision asked for.
        RuntimeError: TensorRT failed to build.
    """
    import onnx

    from smokeclear.engines.tensorrt_support import require_tensorrt, tensorrt_logger

    trt = require_tensorrt()
    major = tensorrt_major(trt.__version__)
    if optimization_level not in OPTIMIZATION_LEVELS:
        raise UserError(f"optimisation level {optimization_level} is out of range", "Use 0-5.")
    if workspace_bytes <= 0:
        raise UserError("the workspace must be larger than 0 bytes", "Use e.g. --workspace-gb 4.")
    if not onnx_path.is_file():
        raise UserError(
            f"ONNX model {onnx_path} does not exist", "Export it with smokeclear export."
        )
    model = onnx.load(str(onnx_path), load_external_data=False)
    mode = build_mode(precision, major, onnx_has_fp16(model), onnx_path)

    logger = tensorrt_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt, mode.strongly_typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [_describe_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
        raise UserError(
            f"TensorRT {trt.__version__} cannot parse {onnx_path}: "
            + ("; ".join(errors) or "no details"),
            "Re-export the model with smokeclear export, or check that this TensorRT "
            "supports its operators.",
        )
    input_name = image_input_name(network, onnx_path)

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    config.builder_optimization_level = optimization_level
    # Per-layer types in the inspector's JSON: the precision check reads them.
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if mode.fp16_flag:
        config.set_flag(trt.BuilderFlag.FP16)
        _pin_fp32_layers(trt, network, config, _fp32_nodes(model, fp32_scopes))
    optimization_profile = builder.create_optimization_profile()
    optimization_profile.set_shape(input_name, *profile)
    config.add_optimization_profile(optimization_profile)
    timing_cache = _load_timing_cache(config, timing_cache_path)
    progress = BuildProgress()
    monitor = progress_monitor(trt, progress)  # must outlive the build
    config.progress_monitor = monitor

    log.info(
        "building a TensorRT %s %s engine for %s (%s, optimisation level %d); this takes minutes",
        trt.__version__,
        precision,
        onnx_path.name,
        format_profile(profile),
        optimization_level,
    )
    started = time.monotonic()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.monotonic() - started
    if serialized is None:
        details = "; ".join(logger.errors[-3:]) or "see the TensorRT messages above"
        raise RuntimeError(f"TensorRT could not build an engine for {onnx_path}: {details}")
    log.info("TensorRT build finished in %.1f s", seconds)
    if timing_cache is not None and timing_cache_path is not None:
        _write_atomically(timing_cache_path, bytes(config.get_timing_cache().serialize()))
    plan = bytes(serialized)
    summary = inspect_precisions(trt, logger, plan, input_name, profile[1])
    check_precision(precision, summary, f"engine for {onnx_path.name}")
    _write_atomically(plan_path, plan)
    report = BuildReport(plan_path, trt.__version__, precision, profile, seconds, summary)
    log.info("built %s", report)
    return report


def image_input_name(network: Any, onnx_path: Path) -> str:
    """The name of the network's image input; a fixed-shape ``detail_gain`` may come with it.

    The detail gain (smooth restorer, detail mode) is a one-element input set
    between frames; its shape is static, so the optimisation profile needs only
    the image.
    """
    from smokeclear.engines.base import DETAIL_GAIN_INPUT

    inputs = [network.get_input(index) for index in range(network.num_inputs)]
    images = [tensor.name for tensor in inputs if tensor.name != DETAIL_GAIN_INPUT]
    gains = [tensor for tensor in inputs if tensor.name == DETAIL_GAIN_INPUT]
    if len(images) != 1 or any(-1 in tuple(gain.shape) for gain in gains):
        names = ", ".join(tensor.name for tensor in inputs) or "none"
        raise UserError(
            f"{onnx_path} has inputs {names}; a restorer has one image input "
            f"(and may have a fixed-shape {DETAIL_GAIN_INPUT})",
            "Export the model with smokeclear export.",
        )
    return images[0]


def _describe_parser_error(error: Any) -> str:
    description = error.desc() if hasattr(error, "desc") else str(error)
    node = ""
    if hasattr(error, "node_name") and error.node_name():
        operator = error.node_operator() if hasattr(error, "node_operator") else ""
        node = f" (node {error.node_name()}{' ' + operator if operator else ''})"
    return f"{description}{node}"


def _fp32_nodes(model: Any, fp32_scopes: Sequence[str]) -> set[str]:
    """The FP32 model's nodes that must stay FP32: the same rule as the FP16 export."""
    try:
        from smokeclear.export.fp16 import fp32_node_names
    except ImportError as error:  # the FP16 rule lives with the exporter, which needs torch
        log.warning(
            "FP16 from an FP32 model without the export rule (%s): only "
            "normalisation layers are kept FP32",
            error,
        )
        return set()
    try:
        return set(fp32_node_names(model, fp32_scopes=fp32_scopes))
    except ValueError as error:
        log.warning(
            "cannot tell which layers must stay FP32 (%s): only normalisation layers are kept FP32",
            error,
        )
        return set()


def _pin_fp32_layers(trt: Any, network: Any, config: Any, node_names: set[str]) -> None:
    """Weak typing (TensorRT 10 + FP16 flag): keep the FP32 islands in FP32.

    Layers made from the ONNX nodes the FP16 export keeps FP32 (guided filter,
    pyramid, hand-written arithmetic) and every normalisation layer (instance-norm
    variance overflows FP16: TensorRT #1954, #2691) are pinned. The constraint is a
    preference, so TensorRT still builds where no FP32 kernel exists.
    """
    normalization = getattr(trt.LayerType, "NORMALIZATION", None)
    pinned = 0
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        by_type = normalization is not None and layer.type == normalization
        if not (by_type or layer.name in node_names):
            continue
        layer.precision = trt.float32
        for output in range(layer.num_outputs):
            layer.set_output_type(output, trt.float32)
        pinned += 1
    if pinned:
        config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
    log.info("%d of %d layers pinned to FP32 in an FP16 build", pinned, network.num_layers)


def _load_timing_cache(config: Any, path: Path | None) -> Any:
    """Read the persistent timing cache into ``config`` (a fresh one when unusable)."""
    if path is None:
        return None
    data = path.read_bytes() if path.is_file() else b""
    if data:
        try:
            cache = config.create_timing_cache(data)
            accepted = cache is not None and config.set_timing_cache(cache, ignore_mismatch=False)
        except Exception:  # a truncated or corrupt file
            accepted = False
        if accepted:
            log.info("timing cache %s (%d kB)", path, len(data) // 1024)
            return cache
        # Another TensorRT version or GPU, or damage: wrong timings would mislead tactics.
        log.warning("timing cache %s is unusable with this TensorRT and GPU: starting anew", path)
    cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_bytes(data)
    partial.replace(path)
