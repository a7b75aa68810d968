"""enhance through the export path: any size, ONNX Runtime parity, instance norm kept FP32.

One module-scoped export of a tiny net with non-trivial instance-norm affines serves
every test.
"""

from pathlib import Path

import onnx
import pytest
import torch
from torch import nn

from smokeclear.export.fp16 import compare_models, convert_to_fp16, parity_inputs
from smokeclear.export.onnx_export import check_parity, export_onnx
from smokeclear.nets.enhance import EnhanceConfig, EnhanceNet
from smokeclear.nets.wrappers import WorkingResolution

pytestmark = pytest.mark.timeout(900)


def _tiny_trained_like_net() -> EnhanceNet:
    """A tiny net whose instance-norm scales and shifts are far from their initial values."""
    torch.manual_seed(0)
    net = EnhanceNet(EnhanceConfig(width=6, blocks=2))
    for module in net.modules():
        if isinstance(module, nn.InstanceNorm2d):
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return net.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[nn.Module, Path, Path]:
    module = WorkingResolution(_tiny_trained_like_net(), 1).eval()
    folder = tmp_path_factory.mktemp("enhance")
    fp32, fp16 = folder / "enhance.onnx", folder / "enhance.fp16.onnx"
    export_onnx(module, fp32, {"restorers": "enhance"})
    convert_to_fp16(fp32, fp16)
    return module, fp32, fp16


def test_export_takes_any_size(exported):
    _, path, _ = exported
    model = onnx.load(str(path))
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert all(isinstance(d, str) for d in dims[2:]), f"H, W dynamic: {dims}"
    assert {p.key: p.value for p in model.metadata_props}["input_multiple"] == "1"


def test_onnxruntime_matches_pytorch_on_odd_sizes(exported):
    module, path, _ = exported
    generator = torch.Generator().manual_seed(0)
    inputs = [
        torch.rand(1, 3, 37, 53, generator=generator),
        torch.rand(1, 3, 24, 90, generator=generator),
    ]
    report = check_parity(module, path, inputs)
    assert report.inputs == 2
    assert report.max_abs_error < 1e-4, str(report)


def test_instance_norm_survives_export_and_stays_fp32(exported, fp32_by_op):
    _, path, _ = exported
    by_op = fp32_by_op(path)
    assert by_op["InstanceNormalization"] == {True}, "its variance overflows FP16"
    for op in ("Conv", "Relu"):
        assert by_op[op] == {False}, f"{op} should run in FP16"
    assert by_op["Tanh"] == {True}, "the hand-written output scaling stays FP32"


def test_the_converted_graph_feeds_instance_norm_fp32(exported):
    _, _, path = exported
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    graph = model.graph
    elem_types = {
        value.name: value.type.tensor_type.elem_type
        for value in [*graph.value_info, *graph.input, *graph.output]
    }
    elem_types.update({init.name: init.data_type for init in graph.initializer})
    by_op: dict[str, set[int]] = {}
    for node in graph.node:
        by_op.setdefault(node.op_type, set()).add(elem_types[node.input[0]])
    half, single = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    assert by_op["Conv"] == {half}
    assert by_op["InstanceNormalization"] == {single}
    assert graph.output[0].type.tensor_type.elem_type == single, "FP32 output kept"


def test_fp16_model_stays_close_to_fp32(exported):
    _, fp32, fp16 = exported
    report = compare_models(fp32, fp16, parity_inputs(1))
    assert report.psnr_db > 50, str(report)
