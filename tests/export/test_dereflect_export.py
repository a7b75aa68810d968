"""dereflect through the export path: dynamic multiples of 8, ONNX Runtime parity, FP16.

The exporter needs about a minute for the unrolled recurrence even at width 2, so
one module-scoped export serves every test; two iterations keep the recurrent
state (T, h, c) passing between steps in the graph.
"""

from pathlib import Path

import pytest
import torch

from smokeclear.export.fp16 import compare_models, parity_inputs
from smokeclear.nets.dereflect import DereflectConfig, DereflectNet

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def exported(export_restorer) -> tuple[torch.nn.Module, Path, Path]:
    torch.manual_seed(0)
    return export_restorer(
        DereflectNet(DereflectConfig(width=2, se_blocks=1, iterations=2)), "dereflect"
    )


def test_fp16_keeps_global_pooling_gates_and_resampling_in_fp32(exported, fp32_by_op):
    _, path, _ = exported
    by_op = fp32_by_op(path)
    # ReduceMin and MaxPool: the whiteness gate (darkest channel, dilation)
    for op in ("ReduceMean", "ReduceMax", "ReduceMin", "MaxPool", "Sigmoid", "Tanh", "Resize"):
        assert by_op[op] == {True}, f"{op} should stay FP32"
    for op in ("ConvTranspose", "Relu", "PRelu"):
        assert by_op[op] == {False}, f"{op} should run in FP16"
    assert False in by_op["Conv"], "the layers' convolutions run in FP16"


def test_fp16_tensors_between_every_op_stay_close_to_fp32(exported):
    _, fp32, fp16 = exported
    typed = compare_models(fp32, fp16, parity_inputs(8)[:1], evaluator="reference")
    assert typed.psnr_db > 50, f"FP16 tensors between every op: {typed}"
