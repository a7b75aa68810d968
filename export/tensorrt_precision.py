"""Did TensorRT build the precision that was asked for? Read from the engine inspector.

An engine silently built in FP32 when FP16 was asked is a known failure elsewhere
(rf-detr #1453), so every build is inspected and checked. Parsing the inspector's
JSON and the check are pure functions tested on every machine;
:func:`inspect_precisions` only wires them to TensorRT.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from smokeclear.engines.tensorrt_support import Shape


@dataclass(frozen=True)
class PrecisionSummary:
    """What the engine inspector says the built layers compute in."""

    detailed: bool  # False: built without ProfilingVerbosity.DETAILED, nothing to check
    layers: int
    conv_layers: int
    conv_half: int  # convolutions with FP16 inputs or outputs
    conv_float: int  # convolutions whose known types are all FP32
    half_layers: int  # any layer with an FP16 tensor

    def __str__(self) -> str:
        if not self.detailed:
            return f"{self.layers} layers (no per-layer detail)"
        return (
            f"{self.layers} layers, {self.half_layers} with FP16 tensors; convolutions: "
            f"{self.conv_half} FP16, {self.conv_float} FP32, "
            f"{self.conv_layers - self.conv_half - self.conv_float} unresolved"
        )


class PrecisionError(RuntimeError):
    """The built engine does not run in the precision that was asked for."""


#: (text found in an inspector type string, lower case) -> precision, first match wins.
_TYPE_WORDS = (
    ("bfloat16", "bf16"),
    ("bf16", "bf16"),
    ("float16", "fp16"),
    ("half", "fp16"),
    ("fp16", "fp16"),
    ("int8", "int8"),
    ("fp8", "fp8"),
    ("int32", "int32"),
    ("int64", "int64"),
    ("bool", "bool"),
    ("float", "fp32"),
    ("fp32", "fp32"),
)


def tensor_precision(description: str) -> str | None:
    """An inspector type string -> "fp16", "fp32", ... or None when unknown.

    TensorRT 10 writes e.g. ``"Row major linear FP16 format"`` or
    ``"Channel major FP16 format where channel % 8 == 0"`` in ``Format/Datatype``,
    or ``"N/A due to dynamic shapes"`` when inspected without an execution context;
    TensorRT 11 splits it into ``Format`` and ``DataType`` (``"Half"``, ``"Float"``).
    """
    text = description.strip().lower()
    if not text or text.startswith("n/a"):
        return None
    for word, precision in _TYPE_WORDS:
        if word in text:
            return precision
    return None


def _tensor_types(layer: dict[str, Any]) -> list[str | None]:
    types = []
    for tensor in [*layer.get("Inputs", []), *layer.get("Outputs", [])]:
        if not isinstance(tensor, dict):
            continue
        described = tensor.get("DataType") or tensor.get("Format/Datatype") or ""
        types.append(tensor_precision(str(described)))
    return types


def _is_convolution(layer: dict[str, Any]) -> bool:
    kind = str(layer.get("LayerType", "")).lower()
    if kind == "reformat":
        return False
    parameter = str(layer.get("ParameterType", "")).lower()
    # Fused or Myelin layers keep the ONNX node names (".../Conv", "node_Conv_12").
    return "conv" in kind or "conv" in parameter or "conv" in str(layer.get("Name", "")).lower()


def summarise_precisions(engine_information: str) -> PrecisionSummary:
    """Parse ``inspector.get_engine_information(LayerInformationFormat.JSON)``.

    Both layouts are read: TensorRT 10 (``Layers`` + ``Bindings``) and 11
    (``Layers`` + ``I/O Tensors``, type in ``DataType``). Layers given as bare
    names mean the engine was built without detailed profiling verbosity.
    """
    document = json.loads(engine_information)
    layers = document.get("Layers", []) if isinstance(document, dict) else document
    if not isinstance(layers, list):
        raise ValueError("inspector JSON has no Layers list")
    if not all(isinstance(layer, dict) for layer in layers):
        return PrecisionSummary(False, len(layers), 0, 0, 0, 0)
    conv_layers = conv_half = conv_float = half_layers = 0
    for layer in layers:
        types = _tensor_types(layer)
        known = [kind for kind in types if kind is not None]
        half = "fp16" in known
        half_layers += half
        if _is_convolution(layer):
            conv_layers += 1
            if half:
                conv_half += 1
            elif known and all(kind == "fp32" for kind in known):
                conv_float += 1
    return PrecisionSummary(True, len(layers), conv_layers, conv_half, conv_float, half_layers)


def check_precision(precision: str, summary: PrecisionSummary, what: str) -> None:
    """Raise :class:`PrecisionError` unless ``summary`` shows ``precision``.

    FP16 asked: at least one convolution must compute in FP16 (normalisation and
    the guided filter are meant to stay FP32, so not every layer will). FP32
    asked: no layer may carry FP16 tensors.
    """
    if not summary.detailed:
        raise PrecisionError(
            f"{what}: the engine inspector gave no per-layer types, so the {precision} "
            "precision cannot be verified (build with ProfilingVerbosity.DETAILED)"
        )
    if precision == "fp16" and summary.conv_half == 0:
        reason = (
            "no convolution layer was found"
            if summary.conv_layers == 0
            else "no convolution runs in FP16"
        )
        raise PrecisionError(
            f"{what}: FP16 was asked for but {reason} ({summary}); the engine was "
            "built in FP32. On TensorRT 11 build from the FP16 ONNX (NAME.fp16.onnx)."
        )
    if precision == "fp32" and summary.half_layers:
        raise PrecisionError(f"{what}: FP32 was asked for but FP16 layers were built ({summary})")


def inspect_precisions(
    trt: Any, logger: Any, plan: bytes, input_name: str, shape: Shape
) -> PrecisionSummary:
    """Deserialise ``plan`` and summarise its layer types at one input shape.

    An execution context with the input shape set resolves the formats that the
    inspector otherwise reports as "N/A due to dynamic shapes".
    """
    engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
    if engine is None:
        raise RuntimeError("the engine TensorRT just built cannot be deserialised")
    context = engine.create_execution_context()
    context.set_input_shape(input_name, shape)
    inspector = engine.create_engine_inspector()
    inspector.execution_context = context
    return summarise_precisions(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
