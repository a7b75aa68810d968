"""ONNX export with the dynamo exporter, dynamic H and W, checker and parity.

H and W are declared as multiples of the network's input multiple
(``Dim("h") * 32``), so one file serves every frame size the runtime pads to.
The model's metadata records ``input_multiple``, the restorer chain and the graph
inputs, which is all an onnxruntime or TensorRT runtime needs to feed it.

A module with a detail stage (:class:`~smokeclear.nets.smooth.DetailMagnify`)
exports with a second input, ``detail_gain`` (float32, shape ``[1]``), so one
file serves every gain and a running engine changes it per frame.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from smokeclear.engines.base import DETAIL_GAIN_INPUT

log = logging.getLogger(__name__)

OPSET = 18
INPUT_NAME = "image"
OUTPUT_NAME = "restored"
#: Input and output of a model exported with ``frame_io``: (H, W, 3) uint8 BGR.
FRAME_INPUT_NAME = "frame"
FRAME_OUTPUT_NAME = "restored_frame"
#: Parity gate of a frame model against PyTorch: one level of 255, in [0, 1] units (float
#: differences far below FP32_MAX_ABS_ERROR can still round a pixel the other way).
FRAME_MAX_ABS_ERROR = 1 / 255
#: Largest frame side the exported graph promises to accept, in pixels (4K UHD fits).
#: The dynamic H and W are declared as ``multiple * Dim(max=MAX_SIDE // multiple)``.
MAX_SIDE = 4096


@dataclass(frozen=True)
class ParityReport:
    """ONNX Runtime against PyTorch on the same inputs."""

    max_abs_error: float  # inf when any output is not finite: no limit passes it
    psnr_db: float
    inputs: int
    non_finite: int = 0  # inputs where either output holds NaN or inf

    def __str__(self) -> str:
        if self.non_finite:
            return (
                f"{self.non_finite} of {self.inputs} inputs gave NaN or inf outputs "
                "(a failure, whatever the limit)"
            )
        return (
            f"max |onnx - torch| = {self.max_abs_error:.2e}, "
            f"PSNR {self.psnr_db:.1f} dB over {self.inputs} inputs"
        )


def export_onnx(
    module: nn.Module, path: Path, metadata: dict[str, str], *, frame_io: bool = False
) -> None:
    """Export ``module`` (eval mode, FP32, CPU) to ``path`` and check the result.

    Args:
        module: a restorer (or chain) with an ``input_multiple`` attribute.
        metadata: extra key/value strings stored in the model's metadata_props.
        frame_io: put the pixel work in the graph: the model takes and returns frames,
            ``(H, W, 3)`` uint8 BGR of any H and W (input ``frame``, output
            ``restored_frame``; :class:`~smokeclear.engines.device_pixels.PixelIO`),
            so a runtime copies uint8 frames and converts nothing itself. Default: the
            restorer's own contract, ``(1, 3, H', W')`` RGB float32 in [0, 1], H' and
            W' multiples of ``input_multiple`` (input ``image``, output ``restored``).

    Detail stages' ``detail_gain`` buffers become one graph input of that name;
    metadata ``inputs`` lists the graph inputs (``image`` or ``image,detail_gain``)
    and ``frame_io`` is ``bgr8`` for a frame model.
    """
    import onnx
    from torch.export import Dim

    from smokeclear.engines.device_pixels import PixelIO

    module = module.eval()
    multiple = module.input_multiple
    if frame_io:
        exported: nn.Module = PixelIO(module).eval()
        sample = torch.randint(0, 256, (2 * multiple + 3, 3 * multiple + 5, 3), dtype=torch.uint8)
        names = (FRAME_INPUT_NAME, FRAME_OUTPUT_NAME)
        # Any size: the graph pads to the multiple itself. Named dims with bounds fail
        # here (torch 2.13 derives an inconsistent range for the padded size inside
        # the network); DYNAMIC lets torch.export infer the range.
        dims = {0: Dim.DYNAMIC, 1: Dim.DYNAMIC}
    else:
        exported = module
        sample = torch.rand(1, 3, 2 * multiple, 3 * multiple)
        names = (INPUT_NAME, OUTPUT_NAME)
        height = Dim("h", min=1, max=MAX_SIDE // multiple)
        width = Dim("w", min=1, max=MAX_SIDE // multiple)
        dims = {2: multiple * height, 3: multiple * width}
    with quiet_exporter():
        program = torch.onnx.export(
            exported,
            (sample,),
            dynamo=True,
            input_names=[names[0]],
            output_names=[names[1]],
            dynamic_shapes={names[0]: dims},
            opset_version=OPSET,
            verbose=False,
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".partial.onnx")
    program.save(str(temporary))
    model = onnx.load(str(temporary))
    inputs = [names[0]]
    if module_detail_gain(module) is not None:
        gain_initializers_to_input(model)
        inputs.append(DETAIL_GAIN_INPUT)
    props = {"input_multiple": str(multiple), "inputs": ",".join(inputs), **metadata}
    if frame_io:
        props["frame_io"] = "bgr8"
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(temporary))
    temporary.replace(path)


def gain_initializers_to_input(model) -> None:
    """Replace the ``*detail_gain`` initializers of ``model`` by one graph input, in place.

    The dynamo exporter bakes buffers in as initializers (``restorer.detail_gain``,
    one per detail stage); every reader of one reads the input ``detail_gain``
    (float32, shape [1]) instead.
    """
    import onnx

    graph = model.graph
    stages = [init for init in graph.initializer if init.name.endswith(DETAIL_GAIN_INPUT)]
    if not stages:
        raise RuntimeError(
            f"the module has a detail stage but the exported graph has no {DETAIL_GAIN_INPUT} "
            "initializer (did the exporter fold it away?)"
        )
    names = {init.name for init in stages}
    for init in stages:
        graph.initializer.remove(init)
    for value in [v for v in graph.value_info if v.name in names]:
        graph.value_info.remove(value)
    for node in graph.node:
        for index, name in enumerate(node.input):
            if name in names:
                node.input[index] = DETAIL_GAIN_INPUT
    graph.input.append(
        onnx.helper.make_tensor_value_info(DETAIL_GAIN_INPUT, onnx.TensorProto.FLOAT, [1])
    )


def module_detail_gain(module: nn.Module) -> float | None:
    """The gain of ``module``'s detail stages (the first one's), or None without one."""
    from smokeclear.nets.smooth import DetailMagnify

    for stage in module.modules():
        if isinstance(stage, DetailMagnify):
            return float(stage.detail_gain[0])
    return None


def session_feeds(input_names: list[str], image: np.ndarray, gain: float | None) -> dict:
    """The feed dict of an exported model: its image (or frame), and ``detail_gain``."""
    image_name = next(name for name in input_names if name != DETAIL_GAIN_INPUT)
    feeds = {image_name: image}
    if DETAIL_GAIN_INPUT in input_names:
        if gain is None:
            raise ValueError(f"the model takes {DETAIL_GAIN_INPUT}; pass a gain to feed it")
        feeds[DETAIL_GAIN_INPUT] = np.array([gain], np.float32)
    return feeds


def check_parity(module: nn.Module, path: Path, inputs: list[torch.Tensor]) -> ParityReport:
    """Run ``inputs`` through PyTorch and ONNX Runtime (CPU) and compare outputs.

    A detail model gets the module's current gain as its ``detail_gain`` input. A
    frame model (``frame_io``) takes uint8 frames: pass ``PixelIO(module)`` and
    frames; errors are then measured in [0, 1] units too (one level is 1/255).
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [value.name for value in session.get_inputs()]
    gain = module_detail_gain(module)
    pairs = []
    for tensor in inputs:
        with torch.inference_mode():
            expected = module(tensor).numpy()
        actual = session.run(None, session_feeds(names, tensor.numpy(), gain))[0]
        scale = 1 / 255 if expected.dtype == np.uint8 else 1.0
        pairs.append((actual.astype(np.float64) * scale, expected.astype(np.float64) * scale))
    return compare_outputs(pairs)


def compare_outputs(pairs: list[tuple[np.ndarray, np.ndarray]]) -> ParityReport:
    """The parity report of ``(actual, expected)`` output pairs, in [0, 1] units.

    NaN or inf in either output of a pair is a failure: the report's max error is
    then inf (NaN would compare as smaller than any limit and pass).
    """
    worst, squared, count, non_finite = 0.0, 0.0, 0, 0
    for actual, expected in pairs:
        if not (np.isfinite(actual).all() and np.isfinite(expected).all()):
            non_finite += 1
            continue
        difference = (actual - expected) ** 2
        worst = max(worst, float(np.sqrt(difference.max())))
        squared += float(difference.sum())
        count += difference.size
    if non_finite:
        return ParityReport(math.inf, -math.inf, len(pairs), non_finite)
    mse = squared / max(count, 1)
    return ParityReport(worst, math.inf if mse == 0 else 10 * math.log10(1 / mse), len(pairs))


@contextlib.contextmanager
def quiet_exporter():
    """The exporter logs optional-op registrations and deprecations a user cannot act on."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch._export", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
