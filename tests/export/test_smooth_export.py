"""smooth through the export path: batch norm folded, even sizes, ONNX Runtime parity, FP16.

One module-scoped export of a tiny net with non-trivial batch-norm statistics
serves every test.
"""

from pathlib import Path

import onnx
import pytest
import torch
from torch import nn

from smokeclear.nets.smooth import SmoothConfig, SmoothNet

pytestmark = pytest.mark.timeout(900)


def _tiny_trained_like_net() -> SmoothNet:
    """A tiny net whose batch norms and output conv are far from their initial values."""
    torch.manual_seed(0)
    net = SmoothNet(SmoothConfig(width=4, dilations=(2, 4, 1)))
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    nn.init.normal_(net.to_rgb.weight, std=0.05)
    return net.eval()


@pytest.fixture(scope="module")
def exported(export_restorer) -> tuple[nn.Module, nn.Module, Path, Path]:
    folded, fp32, fp16 = export_restorer(_tiny_trained_like_net().fold_batchnorm(), "smooth")
    return _tiny_trained_like_net(), folded, fp32, fp16


def test_folding_keeps_the_function_and_the_graph_has_no_batch_norm(exported):
    unfolded, folded, path, _ = exported
    image = torch.rand(1, 3, 24, 40, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        difference = (unfolded(image) - folded(image)).abs().max().item()
    assert difference < 1e-5, f"folded net differs from the BN net by {difference}"
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert "BatchNormalization" not in ops, "batch norm should be folded into the convs"
    assert ops.count("Conv") + ops.count("ConvTranspose") == 3 + 2 * 3 + 1 + 1 + 1
