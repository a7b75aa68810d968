from pathlib import Path

import onnx
import pytest
import torch

from smokeclear.engines.device_pixels import PixelIO
from smokeclear.export.fp16 import parity_inputs
from smokeclear.export.onnx_export import FRAME_MAX_ABS_ERROR, OPSET, check_parity, export_onnx
from smokeclear.nets.loading import load_restorer
from smokeclear.nets.smooth import DetailMagnify
from smokeclear.nets.wrappers import WorkScale
from smokeclear.registry import get_restorer
from smokeclear.runtime import EngineRequest, build_chain


@pytest.fixture(scope="module")
def exported(tiny_weights: Path, tmp_path_factory) -> tuple[torch.nn.Module, Path]:
    module = WorkScale(load_restorer(get_restorer("desmoke"), tiny_weights), 1.0).eval()
    path = tmp_path_factory.mktemp("onnx") / "desmoke.onnx"
    export_onnx(module, path, {"restorers": "desmoke"})
    return module, path


@pytest.fixture(scope="module")
def exported_frames(exported, tmp_path_factory) -> Path:
    module, _ = exported
    path = tmp_path_factory.mktemp("onnx") / "desmoke.frames.onnx"
    export_onnx(module, path, {"restorers": "desmoke"}, frame_io=True)
    return path


def test_frame_export_takes_and_returns_uint8_frames_of_any_size(exported_frames):
    model = onnx.load(str(exported_frames))
    onnx.checker.check_model(model)
    (frame,), (restored,) = model.graph.input, model.graph.output
    for value in (frame, restored):
        tensor_type = value.type.tensor_type
        assert tensor_type.elem_type == onnx.TensorProto.UINT8, f"{value.name} is uint8"
        dims = [d.dim_param or d.dim_value for d in tensor_type.shape.dim]
        assert isinstance(dims[0], str) and isinstance(dims[1], str) and dims[2] == 3, dims
    metadata = {p.key: p.value for p in model.metadata_props}
    assert metadata["frame_io"] == "bgr8" and metadata["input_multiple"] == "32"


def test_frame_export_matches_pytorch_with_the_pixel_work_in_the_graph(exported, exported_frames):
    module, _ = exported
    generator = torch.Generator().manual_seed(1)
    frames = [
        torch.randint(0, 256, (37, 53, 3), dtype=torch.uint8, generator=generator),
        torch.randint(0, 256, (64, 33, 3), dtype=torch.uint8, generator=generator),
    ]
    report = check_parity(PixelIO(module), exported_frames, frames)
    assert report.max_abs_error <= FRAME_MAX_ABS_ERROR, f"at most one level: {report}"
    assert report.psnr_db > 60, str(report)


def test_frame_model_converts_to_fp16_with_uint8_io(exported_frames, tmp_path):
    """The TensorRT path builds from the FP16 copy of the frame model."""
    import numpy as np
    import onnxruntime as ort

    from smokeclear.export.fp16 import convert_to_fp16

    fp16_path = tmp_path / "desmoke.frames.fp16.onnx"
    convert_to_fp16(exported_frames, fp16_path, fp32_scopes=get_restorer("desmoke").fp32_modules)
    model = onnx.load(str(fp16_path))
    values = [*model.graph.input, *model.graph.output]
    types = {v.name: v.type.tensor_type.elem_type for v in values}
    assert set(types.values()) == {onnx.TensorProto.UINT8}, f"uint8 frames in and out: {types}"
    frame = np.random.default_rng(2).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    outputs = [
        ort.InferenceSession(str(path)).run(None, {"frame": frame})[0]
        for path in (exported_frames, fp16_path)
    ]
    assert outputs[1].shape == frame.shape
    difference = np.abs(outputs[0].astype(int) - outputs[1]).max()
    assert difference <= 4, f"FP16 within a few levels of FP32, got {difference}"


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


# --------------------------------------------------------------------------- detail mode


@pytest.fixture(scope="module")
def detail_exported(tiny_smooth_weights: Path, tmp_path_factory) -> tuple[torch.nn.Module, Path]:
    request = EngineRequest(
        (get_restorer("smooth"),), weights={"smooth": tiny_smooth_weights}, detail_gain=2.0
    )
    module = build_chain(request)
    path = tmp_path_factory.mktemp("onnx") / "smooth-detail.onnx"
    export_onnx(module, path, {"restorers": "smooth"})
    return module, path


def test_detail_model_takes_the_gain_as_a_float32_input(detail_exported):
    _, path = detail_exported
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    inputs = {value.name: value.type.tensor_type for value in model.graph.input}
    assert list(inputs) == ["image", "detail_gain"]
    gain = inputs["detail_gain"]
    assert gain.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_value for d in gain.shape.dim] == [1]
    baked = [init.name for init in model.graph.initializer if "detail_gain" in init.name]
    assert not baked, f"the gain must not be baked in: {baked}"
    metadata = {p.key: p.value for p in model.metadata_props}
    assert metadata["inputs"] == "image,detail_gain"


@pytest.mark.parametrize("gain", [0.5, 3.0])
def test_detail_model_matches_pytorch_at_any_gain(detail_exported, gain):
    module, path = detail_exported
    generator = torch.Generator().manual_seed(0)
    inputs = [torch.rand(1, 3, 24, 40, generator=generator)]
    stage = next(m for m in module.modules() if isinstance(m, DetailMagnify))
    stage.set_gain(gain)
    try:
        report = check_parity(module, path, inputs)
    finally:
        stage.set_gain(2.0)
    assert report.max_abs_error < 1e-4, f"gain {gain}: {report}"


def test_smooth_mode_models_keep_one_input(tiny_smooth_weights, tmp_path):
    request = EngineRequest((get_restorer("smooth"),), weights={"smooth": tiny_smooth_weights})
    path = tmp_path / "smooth.onnx"
    export_onnx(build_chain(request), path, {})
    model = onnx.load(str(path))
    assert [value.name for value in model.graph.input] == ["image"]
    assert {p.key: p.value for p in model.metadata_props}["inputs"] == "image"


def test_nan_in_either_output_fails_parity_whatever_the_limit(exported):
    import copy
    import math

    from smokeclear.export.onnx_export import compare_outputs

    module, path = exported
    broken = copy.deepcopy(module)
    with torch.no_grad():
        for parameter in broken.parameters():
            parameter.fill_(float("nan"))  # the torch side NaN, the ONNX side finite
    report = check_parity(broken, path, [torch.rand(1, 3, 32, 32)])
    assert report.max_abs_error == math.inf and report.non_finite == 1, str(report)
    assert "NaN or inf" in str(report)
    nan = torch.full((1, 3, 4, 4), float("nan")).numpy()
    both = compare_outputs([(nan, nan)])  # NaN on both sides used to report 0.00e+00
    assert not both.max_abs_error <= 1e-4, f"NaN against NaN must not pass: {both}"
