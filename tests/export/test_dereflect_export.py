"""dereflect through the export path: dynamic multiples of 8, ONNX Runtime parity, FP16.

The exporter needs about a minute for the unrolled recurrence even at width 2, so
one module-scoped export serves every test; two iterations keep the recurrent
state (T, h, c) passing between steps in the graph.
"""

from pathlib import Path

import onnx
import pytest
import torch

from smokeclear.export.fp16 import compare_models, convert_to_fp16, parity_inputs
from smokeclear.export.onnx_export import check_parity, export_onnx
from smokeclear.nets.dereflect import DereflectConfig, DereflectNet
from smokeclear.nets.wrappers import WorkingResolution

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[torch.nn.Module, Path, Path]:
    torch.manual_seed(0)
    net = DereflectNet(DereflectConfig(width=2, se_blocks=1, iterations=2))
    module = WorkingResolution(net, 1).eval()
    folder = tmp_path_factory.mktemp("dereflect")
    fp32, fp16 = folder / "dereflect.onnx", folder / "dereflect.fp16.onnx"
    export_onnx(module, fp32, {"restorers": "dereflect"})
    convert_to_fp16(fp32, fp16)
    return module, fp32, fp16


def test_export_takes_any_multiple_of_8(exported):
    _, path, _ = exported
    model = onnx.load(str(path))
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert all(isinstance(d, str) and "8" in d for d in dims[2:]), f"H, W dynamic: {dims}"
    assert {p.key: p.value for p in model.metadata_props}["input_multiple"] == "8"


def test_onnxruntime_matches_pytorch(exported):
    module, path, _ = exported
    generator = torch.Generator().manual_seed(0)
    inputs = [
        torch.rand(1, 3, 48, 64, generator=generator),
        torch.rand(1, 3, 32, 80, generator=generator),
    ]
    report = check_parity(module, path, inputs)
    assert report.max_abs_error < 1e-4, str(report)


def test_fp16_keeps_global_pooling_gates_and_resampling_in_fp32(exported, fp32_by_op):
    _, path, _ = exported
    by_op = fp32_by_op(path)
    for op in ("ReduceMean", "ReduceMax", "Sigmoid", "Tanh", "Resize"):
        assert by_op[op] == {True}, f"{op} should stay FP32"
    for op in ("ConvTranspose", "Relu", "PRelu"):
        assert by_op[op] == {False}, f"{op} should run in FP16"
    assert False in by_op["Conv"], "the layers' convolutions run in FP16"


def test_fp16_model_stays_close_to_fp32(exported):
    _, fp32, fp16 = exported
    inputs = parity_inputs(8)
    report = compare_models(fp32, fp16, inputs)
    assert report.psnr_db > 50, str(report)
    typed = compare_models(fp32, fp16, inputs[:1], evaluator="reference")
    assert typed.psnr_db > 50, f"FP16 tensors between every op: {typed}"
