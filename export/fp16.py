"""FP16 ONNX for strongly typed TensorRT: convolutions in FP16, the guided filter in FP32.

TensorRT 11 builds what the ONNX file says, so FP16 means an ONNX file whose
tensors are FP16. ``onnxconverter-common`` rewrites the FP32 export; this module
decides which nodes it must leave in FP32, checks that the result is consistently
typed, and measures how far its output is from the FP32 model's.

Which nodes run in FP16 (the rule; everything else stays FP32):

1. nodes emitted by a built-in ``torch.nn`` layer (the innermost module class in the
   node's ``pkg.torch.onnx.class_hierarchy`` metadata is in ``torch.nn.modules``):
   ``Conv2d`` (with its eval-mode ``BatchNorm2d`` folded in by the exporter: the
   folded ``Conv`` carries the BatchNorm's scope), ``ConvTranspose2d``, ``ReLU``;
2. data-movement ops (``MaxPool``, ``Concat``, ...) that take an FP16 node's output:
   they do no arithmetic, so FP16 changes nothing in them but saves two casts.

Arithmetic written by hand in a smokeclear ``forward`` stays FP32: the guided-filter
Laplacian pyramid (box means, variances, ``a = cov / (var + eps)``), the residual
``image + correction``, work-scale pooling and fast guided upsampling, chain
clamps. So do normalisation ops that survive export (instance-norm variance overflows
FP16; TensorRT #1954, #2691), nodes under a module scope whose name starts with one of
the restorer's ``fp32_modules``, nodes without exporter metadata, and any node named in
``keep_fp32``. Graph inputs and outputs stay FP32 (``keep_io_types``).

The detail stage's ``base + gain * (image - base)`` is hand-written arithmetic, so it
stays FP32 with its ``detail_gain`` input: a detail model's FP16 copy takes the same
float32 ``[1]`` gain as the FP32 one.

Shape:
    the FP16 model keeps the FP32 model's contract: ``(B, 3, H, W)`` RGB float32 in
    [0, 1] (and ``detail_gain``, float32 ``[1]``, if it has one) -> ``(B, 3, H, W)``
    RGB float32.
"""

from __future__ import annotations

import ast
import logging
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from smokeclear.engines.base import DETAIL_GAIN_INPUT, bgr8_to_nchw
from smokeclear.errors import UserError

if TYPE_CHECKING:  # onnx_export imports torch; conversion runs on boxes without it
    from smokeclear.export.onnx_export import ParityReport

log = logging.getLogger(__name__)

#: Export gates: the FP32 model against PyTorch (the runtime's cached export uses the
#: same bound), and the FP16 model's output against the FP32 model's.
FP32_MAX_ABS_ERROR = 1e-3
FP16_MIN_PSNR_DB = 40.0
#: The detail gain parity checks feed to models with a detail stage: above 1, so the
#: FP16 error of the smooth base shows in the output instead of cancelling out.
PARITY_DETAIL_GAIN = 2.0
#: Normalisation ops keep FP32 wherever they are (the exporter folds eval BatchNorm
#: into the convolution before, so desmoke has none left).
FP32_OP_TYPES = frozenset(
    {"BatchNormalization", "InstanceNormalization", "LayerNormalization", "GroupNormalization"}
)
#: Ops that only move or select values: FP16 when they take an FP16 node's output.
DATA_MOVEMENT_OPS = frozenset(
    {
        "Concat",
        "MaxPool",
        "Slice",
        "Split",
        "Reshape",
        "Transpose",
        "Squeeze",
        "Unsqueeze",
        "Flatten",
        "Identity",
        "Pad",
        "DepthToSpace",
        "SpaceToDepth",
    }
)
TORCH_LAYER_PREFIX = "torch.nn.modules."
#: FP16's smallest subnormal: smaller weights are pinned here rather than flushed to 0.
FP16_SMALLEST = 2.0**-24
#: Weights beyond this are clipped (FP16's own limit is 65504; a product of two such
#: values overflows it long before that).
FP16_LARGEST_WEIGHT = 1e4

_FLOAT, _FLOAT16, _UINT8 = 1, 10, 2  # onnx.TensorProto.FLOAT, FLOAT16, UINT8


@dataclass(frozen=True)
class Fp16Conversion:
    """What :func:`convert_to_fp16` wrote."""

    path: Path
    fp16_nodes: int
    fp32_nodes: tuple[str, ...]  # node names of the FP32 model kept in FP32


def fp32_node_names(
    model, fp32_scopes: Iterable[str] = (), keep_fp32: Iterable[str] = ()
) -> list[str]:
    """Names of the nodes of the FP32 ``model`` that must stay FP32 (see the module rule).

    Args:
        model: an ``onnx.ModelProto`` from :func:`~smokeclear.export.onnx_export.export_onnx`.
        fp32_scopes: module-name prefixes (``RestorerSpec.fp32_modules``): a node under a
            module scope with a name segment starting with one of them stays FP32.
        keep_fp32: further node names to keep FP32; an unknown name is a UserError.
    """
    nodes = list(model.graph.node)
    names = {node.name for node in nodes}
    if len(names) != len(nodes) or "" in names:
        raise ValueError("every node needs a unique name to be kept in FP32 by name")
    extra = set(keep_fp32)
    unknown = sorted(extra - names)
    if unknown:
        raise UserError(
            f"cannot keep {', '.join(unknown)} in FP32: the exported FP32 graph has no such node",
            "Use node names of the FP32 .onnx file (e.g. node_Conv_569; Netron shows them).",
        )
    prefixes = tuple(fp32_scopes)
    fp16_outputs: set[str] = set()
    fp32: list[str] = []
    for node in nodes:  # topological order, so a node's producers are decided first
        if _runs_in_fp16(node, prefixes, fp16_outputs) and node.name not in extra:
            fp16_outputs.update(node.output)
        else:
            fp32.append(node.name)
    return fp32


def convert_to_fp16(
    fp32_model_path: Path,
    out_path: Path,
    *,
    keep_fp32: Iterable[str] = (),
    fp32_scopes: Iterable[str] = (),
) -> Fp16Conversion:
    """Write a strongly typed FP16 copy of the FP32 ONNX model at ``fp32_model_path``.

    Convolutions and activations become FP16; the nodes :func:`fp32_node_names` picks,
    and the graph's input and output, stay FP32. The result passes ``onnx.checker``
    and strict, type-checking shape inference, and its metadata gains
    ``precision=fp16`` and ``fp32_nodes`` (how many nodes were kept in FP32).

    Args:
        keep_fp32: node names (of the FP32 model) to keep in FP32 besides the rule's,
            e.g. ones a parity check flags.
        fp32_scopes: module-name prefixes to keep in FP32 (``RestorerSpec.fp32_modules``).
    """
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(str(fp32_model_path))
    if _metadata(model).get("precision", "fp32") != "fp32":
        raise ValueError(f"{fp32_model_path} is not an FP32 model")
    kept = fp32_node_names(model, fp32_scopes, keep_fp32)
    fp16_nodes = len(model.graph.node) - len(kept)
    if fp16_nodes == 0:
        raise ValueError(f"{fp32_model_path}: no node qualifies for FP16 (no torch.nn layers)")
    _unshare_initializers(model, set(kept))
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    # An initializer with a value_info entry gets that entry turned FP16 and a cast in
    # front of its FP32 readers, after which the converter no longer sees it read by
    # an FP32 node and rounds it to FP16 (eps = 1e-4 would become 1.0002e-4).
    initializers = {init.name for init in model.graph.initializer}
    for value in [v for v in model.graph.value_info if v.name in initializers]:
        model.graph.value_info.remove(value)
    _warn_about_clipped_weights(model, set(kept), fp32_model_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        converted = float16.convert_float_to_float16(
            model,
            min_positive_val=FP16_SMALLEST,
            max_finite_val=FP16_LARGEST_WEIGHT,
            keep_io_types=True,
            disable_shape_infer=True,
            op_block_list=sorted(FP32_OP_TYPES),
            node_block_list=kept,
        )
    for warning in caught:  # one per clipped tensor; summarised above
        log.debug("FP16 conversion of %s: %s", fp32_model_path.name, warning.message)
    _remove_round_trip_casts(converted.graph)
    _restore_fp32_outputs(converted.graph)
    _set_metadata(converted, {"precision": "fp16", "fp32_nodes": str(len(kept))})
    onnx.checker.check_model(converted)
    check_typed(converted)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    temporary = out_path.with_suffix(".partial.onnx")
    onnx.save(converted, str(temporary))
    temporary.replace(out_path)
    return Fp16Conversion(out_path, fp16_nodes, tuple(kept))


def check_typed(model) -> None:
    """Raise unless ``model`` is consistently typed, with FP32 input and output.

    Strict shape inference with type checking fails on any op whose inputs disagree
    in type, which is what a strongly typed TensorRT network would reject. A frame
    model (metadata ``frame_io``) takes and returns uint8 frames instead; its
    ``detail_gain`` input stays float32.
    """
    import onnx

    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    frame_io = _metadata(model).get("frame_io") == "bgr8"
    for value in [*model.graph.input, *model.graph.output]:
        expected = _UINT8 if frame_io and value.name != DETAIL_GAIN_INPUT else _FLOAT
        if value.type.tensor_type.elem_type != expected:
            kind = "uint8" if expected == _UINT8 else "float32"
            raise ValueError(f"graph input/output {value.name} is not {kind}")


def parity_inputs(multiple: int, seed: int = 0) -> list[np.ndarray]:
    """Random frames and frames of the smoky synthetic scene, for parity checks.

    Returns:
        four ``(1, 3, H, W)`` float32 RGB arrays in [0, 1]: uniform noise at
        ``(2m, 3m)`` and ``(4m, 2m)``, then frames 0 and 45 of the synthetic
        laparoscope scene with smoke at ``(2m, 3m)``; ``m`` is the smallest
        multiple of ``multiple`` that is at least 8 (the scene needs 16 px).
    """
    from smokeclear.synthetic.scene import LaparoscopicScene

    multiple = multiple * math.ceil(8 / multiple)
    generator = np.random.default_rng(seed)
    frames = [
        generator.random((1, 3, 2 * multiple, 3 * multiple), dtype=np.float32),
        generator.random((1, 3, 4 * multiple, 2 * multiple), dtype=np.float32),
    ]
    scene = LaparoscopicScene(3 * multiple, 2 * multiple, fps=30.0, seed=seed, smoke=True)
    for index in (0, 45):
        frames.append(bgr8_to_nchw(scene.render(index).smoky, 1))
    return frames


def compare_models(
    reference_path: Path,
    candidate_path: Path,
    inputs: list[np.ndarray],
    *,
    evaluator: str = "onnxruntime",
    detail_gain: float = PARITY_DETAIL_GAIN,
) -> ParityReport:
    """Outputs of ``candidate_path`` against ``reference_path`` on the same inputs.

    Models with a ``detail_gain`` input get ``detail_gain``.

    The reference model always runs in ONNX Runtime on the CPU. ``evaluator`` picks
    what runs the candidate:

    - ``"onnxruntime"``: the CPU execution provider. It has no FP16 kernels for Conv,
      Relu and most other ops on x86 and silently inserts casts to FP32 around them,
      so for an FP16 model this measures FP16 weights and FP16 tensors at a few
      boundaries, not FP16 arithmetic.
    - ``"reference"``: ``onnx.reference.ReferenceEvaluator`` (numpy), which keeps
      every tensor in the type the model declares: an FP16 tensor is stored in FP16
      between every pair of ops, as a strongly typed engine stores it. Slow: use
      small inputs.
    """
    import onnxruntime as ort

    from smokeclear.export.onnx_export import compare_outputs, session_feeds

    reference = ort.InferenceSession(str(reference_path), providers=["CPUExecutionProvider"])
    reference_names = [value.name for value in reference.get_inputs()]
    if evaluator == "onnxruntime":
        session = ort.InferenceSession(str(candidate_path), providers=["CPUExecutionProvider"])
        names = [value.name for value in session.get_inputs()]
    elif evaluator == "reference":
        from onnx.reference import ReferenceEvaluator

        session = ReferenceEvaluator(str(candidate_path))
        names = list(session.input_names)
    else:
        raise ValueError(f"evaluator must be 'onnxruntime' or 'reference', got {evaluator!r}")
    pairs = []
    for tensor in inputs:
        expected = reference.run(None, session_feeds(reference_names, tensor, detail_gain))[0]
        expected = expected.astype(np.float64)
        actual = session.run(None, session_feeds(names, tensor, detail_gain))[0]
        pairs.append((np.asarray(actual, dtype=np.float64), expected))
    return compare_outputs(pairs)  # NaN or inf in either output fails


# --------------------------------------------------------------------------- helpers


def _runs_in_fp16(node, fp32_scopes: tuple[str, ...], fp16_outputs: set[str]) -> bool:
    if node.op_type in FP32_OP_TYPES:
        return False
    metadata = {prop.key: prop.value for prop in node.metadata_props}
    classes = _literal_list(metadata.get("pkg.torch.onnx.class_hierarchy"))
    scopes = _literal_list(metadata.get("pkg.torch.onnx.name_scopes"))
    # The last entry of both lists is the aten op itself; the others are modules.
    segments = {segment for scope in scopes[:-1] for segment in scope.split(".")}
    if fp32_scopes and any(segment.startswith(fp32_scopes) for segment in segments):
        return False
    if len(classes) >= 2 and classes[-2].startswith(TORCH_LAYER_PREFIX):
        return True
    return node.op_type in DATA_MOVEMENT_OPS and any(name in fp16_outputs for name in node.input)


def _literal_list(text: str | None) -> list[str]:
    if not text:
        return []
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return []
    return [str(item) for item in value] if isinstance(value, list) else []


def _warn_about_clipped_weights(model, fp32_nodes: set[str], path: Path) -> None:
    from onnx import numpy_helper

    fp16_inputs = {
        name for node in model.graph.node if node.name not in fp32_nodes for name in node.input
    }
    clipped: dict[str, int] = {}
    for init in model.graph.initializer:
        if init.name in fp16_inputs and init.data_type == _FLOAT:
            count = int(np.count_nonzero(np.abs(numpy_helper.to_array(init)) > FP16_LARGEST_WEIGHT))
            if count:
                clipped[init.name] = count
    if clipped:
        log.warning(
            "FP16 conversion of %s clips %d weights beyond +-%g in %s",
            path.name,
            sum(clipped.values()),
            FP16_LARGEST_WEIGHT,
            ", ".join(sorted(clipped)),
        )


def _unshare_initializers(model, fp32_nodes: set[str]) -> None:
    """Give FP16 nodes their own copy of float initializers that FP32 nodes also read.

    The converter leaves an initializer FP32 when any blocked node reads it, which
    would hand an FP32 tensor to the FP16 nodes that share it.
    """
    floats = {init.name: init for init in model.graph.initializer if init.data_type == _FLOAT}
    readers: dict[str, set[bool]] = {}
    for node in model.graph.node:
        for name in node.input:
            if name in floats:
                readers.setdefault(name, set()).add(node.name in fp32_nodes)
    shared = {name for name, kinds in readers.items() if kinds == {True, False}}
    for name in sorted(shared):
        copy = model.graph.initializer.add()
        copy.CopyFrom(floats[name])
        copy.name = f"{name}__fp16"
    for node in model.graph.node:
        if node.name not in fp32_nodes:
            for index, name in enumerate(node.input):
                if name in shared:
                    node.input[index] = f"{name}__fp16"


def _remove_round_trip_casts(graph) -> None:
    """Drop FP32 -> FP16 -> FP32 cast pairs the converter leaves between FP32 nodes.

    ``onnxconverter-common`` casts every blocked node's output to FP16 and back to
    FP32 in front of each blocked consumer; it removes the pair only when the FP16
    cast has a single consumer. A kept pair would round the guided filter's FP32
    tensors to FP16, so every FP32 reader of such a cast pair reads the FP32 tensor.
    """
    producers = {output: node for node in graph.node for output in node.output}
    graph_outputs = {value.name for value in graph.output}
    for node in graph.node:
        for index, name in enumerate(node.input):
            cast32 = producers.get(name)
            if not _is_cast(cast32, _FLOAT):
                continue
            cast16 = producers.get(cast32.input[0])
            if _is_cast(cast16, _FLOAT16) and _elem_type(graph, cast16.input[0]) == _FLOAT:
                node.input[index] = cast16.input[0]
    # Drop casts that nothing reads any more.
    while True:
        read = {name for node in graph.node for name in node.input} | graph_outputs
        dead = [n for n in graph.node if n.op_type == "Cast" and n.output[0] not in read]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    live = {name for node in graph.node for name in (*node.input, *node.output)}
    for value in [v for v in graph.value_info if v.name not in live]:
        graph.value_info.remove(value)


def _restore_fp32_outputs(graph) -> None:
    """Undo the FP16 cast the converter puts on a graph output made by an FP32 node.

    With ``keep_io_types`` it still declares such an output FP16 (it casts the blocked
    node's output to FP16 before it looks at the graph outputs); the FP32 producer
    writes the output directly instead.
    """
    producers = {output: node for node in graph.node for output in node.output}
    for value in graph.output:
        cast16 = producers.get(value.name)
        if not _is_cast(cast16, _FLOAT16) or _elem_type(graph, cast16.input[0]) != _FLOAT:
            continue
        source = producers.get(cast16.input[0])
        if source is None:  # a graph input passed straight through: check_typed reports it
            continue
        source.output[list(source.output).index(cast16.input[0])] = value.name
        graph.node.remove(cast16)
        value.type.tensor_type.elem_type = _FLOAT
    live = {name for node in graph.node for name in (*node.input, *node.output)}
    for info in [v for v in graph.value_info if v.name not in live]:
        graph.value_info.remove(info)


def _is_cast(node, to: int) -> bool:
    return (
        node is not None
        and node.op_type == "Cast"
        and any(attr.name == "to" and attr.i == to for attr in node.attribute)
    )


def _elem_type(graph, name: str) -> int | None:
    for value in [*graph.value_info, *graph.input, *graph.output]:
        if value.name == name:
            return value.type.tensor_type.elem_type
    for init in graph.initializer:
        if init.name == name:
            return init.data_type
    return None


def _metadata(model) -> dict[str, str]:
    return {prop.key: prop.value for prop in model.metadata_props}


def _set_metadata(model, values: dict[str, str]) -> None:
    existing = {prop.key: prop for prop in model.metadata_props}
    for key, value in values.items():
        entry = existing.get(key) or model.metadata_props.add()
        entry.key, entry.value = key, value
