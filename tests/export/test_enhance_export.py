"""enhance through the export path: any size, ONNX Runtime parity, instance norm kept FP32.

One module-scoped export of a tiny net with non-trivial instance-norm affines serves
every test.
"""

from pathlib import Path

import onnx
import pytest
import torch
from torch import nn

from smokeclear.nets.enhance import EnhanceConfig, EnhanceNet

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
def exported(export_restorer) -> tuple[nn.Module, Path, Path]:
    return export_restorer(_tiny_trained_like_net(), "enhance")


def test_instance_norm_survives_export_and_stays_fp32(exported, fp32_by_op):
    _, path, _ = exported
    by_op = fp32_by_op(path)
    assert by_op["InstanceNormalization"] == {True}, "its variance overflows FP16"
    for op in ("Conv", "Relu"):
        assert by_op[op] == {False}, f"{op} should run in FP16"
    assert by_op["Tanh"] == {True}, "the hand-written output scaling stays FP32"


def test_the_converted_graph_feeds_instance_norm_fp32(exported, input_types_by_op):
    _, _, path = exported
    graph = onnx.load(str(path)).graph
    by_op = input_types_by_op(path)
    half, single = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    assert by_op["Conv"] == {half}
    assert by_op["InstanceNormalization"] == {single}
    assert graph.output[0].type.tensor_type.elem_type == single, "FP32 output kept"
