"""Ahead-of-time compilation with ``torch.export`` + AOTInductor.

The package serves every frame size: H and W are exported as dynamic multiples of
the network's input multiple, as in the ONNX export.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from torch import nn

from smokeclear.export.onnx_export import INPUT_NAME, MAX_SIDE, quiet_exporter

log = logging.getLogger(__name__)


def compile_package(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    """Export ``module`` for inputs like ``example`` and compile it into ``path`` (.pt2).

    Args:
        module: a restorer (chain) in eval mode with an ``input_multiple``, on the
            device and in the precision it will run in.
        example: an input of the right device, dtype and memory layout (its size
            does not matter).
    """
    from torch.export import Dim

    multiple = module.input_multiple
    height = Dim("h", min=1, max=MAX_SIDE // multiple)
    width = Dim("w", min=1, max=MAX_SIDE // multiple)
    # Traced at a fixed size, like the ONNX export, so the package does not depend on
    # the first frame's size (H != W keeps the two dims from sharing a symbol).
    sample = torch.rand(
        1, 3, 2 * multiple, 3 * multiple, dtype=example.dtype, device=example.device
    )
    if example.is_contiguous(memory_format=torch.channels_last):
        sample = sample.contiguous(memory_format=torch.channels_last)
    started = time.monotonic()
    with quiet_exporter(), torch.inference_mode():
        program = torch.export.export(
            module,
            (sample,),
            dynamic_shapes={INPUT_NAME: {2: multiple * height, 3: multiple * width}},
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.pt2")
    with quiet_exporter():
        torch._inductor.aoti_compile_and_package(program, package_path=str(partial))
    partial.replace(path)
    log.info("AOTInductor package %s built in %.0f s", path.name, time.monotonic() - started)
