"""lowlight through the export path: dynamic multiples of 8, ONNX Runtime parity, FP16.

One module-scoped export serves every test. max_length 256 keeps the doubling
scan at 8 steps per direction (a dynamic side is symbolic, so the scan does
``ceil(log2(max_length))`` steps whatever the frame size).
"""

from pathlib import Path

import onnx
import pytest
import torch

from smokeclear.nets.lowlight import LowlightConfig, LowlightNet

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def exported(export_restorer) -> tuple[torch.nn.Module, Path, Path]:
    torch.manual_seed(0)
    net = LowlightNet(LowlightConfig(width=2, edge_width=2, scale_channels=1, max_length=256))
    return export_restorer(net, "lowlight")


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


def test_the_converted_graph_feeds_convolutions_fp16_and_the_scan_fp32(exported, input_types_by_op):
    _, _, path = exported
    graph = onnx.load(str(path)).graph
    by_op = input_types_by_op(path)
    half, single = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    for op in ("Conv", "ConvTranspose", "Relu"):
        assert by_op[op] == {half}, f"{op} should take FP16 tensors"
    for op in ("Sigmoid", "Tanh", "Mul", "Add", "Max"):
        assert by_op[op] == {single}, f"{op} should take FP32 tensors"
    assert graph.input[0].type.tensor_type.elem_type == single, "FP32 input kept"
    assert graph.output[0].type.tensor_type.elem_type == single, "FP32 output kept"
