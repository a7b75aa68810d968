"""lowlight through the export path: dynamic multiples of 8, ONNX Runtime parity, FP16.

One module-scoped export serves every test. max_length 256 keeps the doubling
scan at 8 steps per direction (a dynamic side is symbolic, so the scan does
``ceil(log2(max_length))`` steps whatever the frame size).
"""

from pathlib import Path

import onnx
import pytest
import torch

from smokeclear.export.fp16 import compare_models, convert_to_fp16, parity_inputs
from smokeclear.export.onnx_export import check_parity, export_onnx
from smokeclear.nets.lowlight import LowlightConfig, LowlightNet
from smokeclear.nets.wrappers import WorkingResolution

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[torch.nn.Module, Path, Path]:
    torch.manual_seed(0)
    net = LowlightNet(LowlightConfig(width=2, edge_width=2, scale_channels=1, max_length=256))
    module = WorkingResolution(net, 1).eval()
    folder = tmp_path_factory.mktemp("lowlight")
    fp32, fp16 = folder / "lowlight.onnx", folder / "lowlight.fp16.onnx"
    export_onnx(module, fp32, {"restorers": "lowlight"})
    convert_to_fp16(fp32, fp16)
    return module, fp32, fp16


def test_export_takes_any_multiple_of_8(exported):
    _, path, _ = exported
    model = onnx.load(str(path))
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert all(isinstance(d, str) and "8" in d for d in dims[2:]), f"H, W dynamic: {dims}"
    assert {p.key: p.value for p in model.metadata_props}["input_multiple"] == "8"


def test_onnxruntime_matches_pytorch_on_two_sizes(exported):
    module, path, _ = exported
    generator = torch.Generator().manual_seed(0)
    inputs = [
        torch.rand(1, 3, 48, 64, generator=generator),
        torch.rand(1, 3, 32, 80, generator=generator),
    ]
    report = check_parity(module, path, inputs)
    assert report.inputs == 2
    assert report.max_abs_error < 1e-4, str(report)


def test_the_scan_exports_without_loops_or_cumulative_sums(exported):
    _, path, _ = exported
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    loops = ops & {"Loop", "Scan", "CumSum", "If"}
    assert not loops, f"found {loops}"
    assert {"Mul", "Add", "Max", "Pad", "Slice"} <= ops, "the doubling scan's ops"


def test_fp16_runs_convolutions_in_fp16_and_keeps_the_scan_and_gates_fp32(exported, fp32_by_op):
    _, path, _ = exported
    by_op = fp32_by_op(path)
    for op in ("Sigmoid", "Tanh", "Mul", "Add", "Max", "Resize"):
        assert by_op[op] == {True}, f"{op} should stay FP32"
    for op in ("ConvTranspose", "Relu"):
        assert by_op[op] == {False}, f"{op} should run in FP16"
    assert by_op["Conv"] == {False}, "every convolution runs in FP16"


def test_the_converted_graph_feeds_convolutions_fp16_and_the_scan_fp32(exported):
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
    for op in ("Conv", "ConvTranspose", "Relu"):
        assert by_op[op] == {half}, f"{op} should take FP16 tensors"
    for op in ("Sigmoid", "Tanh", "Mul", "Add", "Max"):
        assert by_op[op] == {single}, f"{op} should take FP32 tensors"
    assert graph.input[0].type.tensor_type.elem_type == single, "FP32 input kept"
    assert graph.output[0].type.tensor_type.elem_type == single, "FP32 output kept"


def test_fp16_model_stays_close_to_fp32(exported):
    _, fp32, fp16 = exported
    inputs = parity_inputs(8)
    report = compare_models(fp32, fp16, inputs)
    assert report.psnr_db > 50, str(report)
