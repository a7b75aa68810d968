from pathlib import Path

import onnx
import pytest
import torch

from smokeclear.export.fp16 import parity_inputs
from smokeclear.export.onnx_export import OPSET, check_parity, export_onnx
from smokeclear.nets.loading import load_restorer
from smokeclear.nets.wrappers import WorkingResolution
from smokeclear.registry import get_restorer


@pytest.fixture(scope="module")
def exported(tiny_weights: Path, tmp_path_factory) -> tuple[torch.nn.Module, Path]:
    module = WorkingResolution(load_restorer(get_restorer("desmoke"), tiny_weights), 1).eval()
    path = tmp_path_factory.mktemp("onnx") / "desmoke.onnx"
    export_onnx(module, path, {"restorers": "desmoke"})
    return module, path


def test_export_declares_dynamic_multiples_and_metadata(exported):
    _, path = exported
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[:2] == [1, 3]
    assert all(isinstance(d, str) and "32" in d for d in dims[2:]), f"H, W dynamic: {dims}"
    assert model.opset_import[0].version >= 17 and OPSET >= 17
    metadata = {p.key: p.value for p in model.metadata_props}
    assert metadata["input_multiple"] == "32" and metadata["restorers"] == "desmoke"


def test_onnxruntime_matches_pytorch(exported):
    module, path = exported
    generator = torch.Generator().manual_seed(0)
    inputs = [
        torch.rand(1, 3, 64, 96, generator=generator),
        torch.rand(1, 3, 128, 32, generator=generator),
    ]
    report = check_parity(module, path, inputs)
    assert report.max_abs_error < 1e-4, str(report)
    assert report.psnr_db > 80, str(report)


def test_onnxruntime_matches_pytorch_on_scene_frames(exported):
    """Real frames (smoky synthetic laparoscope, 8-bit RGB) as well as noise."""
    module, path = exported
    frames = [torch.from_numpy(frame) for frame in parity_inputs(module.input_multiple)[2:]]
    report = check_parity(module, path, frames)
    assert report.inputs == 2
    assert report.max_abs_error < 1e-4, str(report)
    assert report.psnr_db > 80, str(report)


def test_no_maxpool_index_outputs_reach_the_graph(exported):
    _, path = exported
    for node in onnx.load(str(path)).graph.node:
        if node.op_type == "MaxPool":
            assert len(node.output) == 1, "TensorRT rejects MaxPool index outputs"
