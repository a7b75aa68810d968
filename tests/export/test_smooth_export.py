"""smooth through the export path: batch norm folded, even sizes, ONNX Runtime parity, FP16.

One module-scoped export of a tiny net with non-trivial batch-norm statistics
serves every test.
"""

from pathlib import Path

import onnx
import pytest
import torch
from torch import nn

from smokeclear.export.fp16 import compare_models, convert_to_fp16, parity_inputs
from smokeclear.export.onnx_export import check_parity, export_onnx
from smokeclear.nets.smooth import SmoothConfig, SmoothNet
from smokeclear.nets.wrappers import WorkingResolution

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
def exported(tmp_path_factory) -> tuple[nn.Module, nn.Module, Path, Path]:
    unfolded = _tiny_trained_like_net()
    folded = WorkingResolution(_tiny_trained_like_net().fold_batchnorm(), 1).eval()
    folder = tmp_path_factory.mktemp("smooth")
    fp32, fp16 = folder / "smooth.onnx", folder / "smooth.fp16.onnx"
    export_onnx(folded, fp32, {"restorers": "smooth"})
    convert_to_fp16(fp32, fp16)
    return unfolded, folded, fp32, fp16


def test_folding_keeps_the_function_and_the_graph_has_no_batch_norm(exported):
    unfolded, folded, path, _ = exported
    image = torch.rand(1, 3, 24, 40, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        difference = (unfolded(image) - folded(image)).abs().max().item()
    assert difference < 1e-5, f"folded net differs from the BN net by {difference}"
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert "BatchNormalization" not in ops, "batch norm should be folded into the convs"
    assert ops.count("Conv") + ops.count("ConvTranspose") == 3 + 2 * 3 + 1 + 1 + 1


def test_export_takes_any_even_size(exported):
    _, _, path, _ = exported
    model = onnx.load(str(path))
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert all(isinstance(d, str) and "2" in d for d in dims[2:]), f"H, W dynamic: {dims}"
    assert {p.key: p.value for p in model.metadata_props}["input_multiple"] == "2"


def test_onnxruntime_matches_pytorch_on_two_sizes(exported):
    _, folded, path, _ = exported
    generator = torch.Generator().manual_seed(0)
    inputs = [
        torch.rand(1, 3, 48, 64, generator=generator),
        torch.rand(1, 3, 30, 22, generator=generator),
    ]
    report = check_parity(folded, path, inputs)
    assert report.max_abs_error < 1e-4, str(report)


def test_fp16_model_stays_close_to_fp32(exported):
    _, _, fp32, fp16 = exported
    report = compare_models(fp32, fp16, parity_inputs(16))
    assert report.psnr_db > 50, str(report)
