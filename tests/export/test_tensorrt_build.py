"""TensorRT engine builds: the pure decisions everywhere, the real build where TensorRT is.

The inspector JSON below is hand-written in the layouts TensorRT documents (10.x:
``Format/Datatype``; 11.x: ``DataType`` and ``I/O Tensors``). It tests our parser
of that output, not a TensorRT result.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from smokeclear.errors import UserError
from smokeclear.export.tensorrt_build import (
    build_engine,
    build_mode,
    format_profile,
    fp16_sibling,
    image_input_name,
    model_metadata,
    network_flags,
    onnx_has_fp16,
    parse_frame_size,
    shape_profile,
    tensorrt_major,
)
from smokeclear.export.tensorrt_precision import (
    PrecisionError,
    check_precision,
    summarise_precisions,
    tensor_precision,
)
from smokeclear.export.tensorrt_progress import BuildProgress

# --------------------------------------------------------------------------- shape profile


def test_profile_covers_the_sizes_padded_to_the_multiple_and_tunes_for_the_first():
    minimum, optimum, maximum = shape_profile(["1280x720", "1920x1080"], 32)
    assert optimum == (1, 3, 736, 1280), "720 pads up to 736; the first size is opt"
    assert minimum == (1, 3, 736, 1280)
    assert maximum == (1, 3, 1088, 1920), "1080 pads up to 1088"


def test_profile_min_and_max_are_elementwise():
    profile = shape_profile([(1920, 200), (640, 1000)], 8)
    assert profile == ((1, 3, 200, 640), (1, 3, 200, 1920), (1, 3, 1000, 1920))


def test_profile_work_scale_multiplies_the_multiple():
    assert shape_profile(["100x100"], 8, work_scale=0.5) == ((1, 3, 112, 112),) * 3
    assert shape_profile(["100x100"], 16) == shape_profile(["100x100"], 8, work_scale=0.5)


def test_one_size_is_a_fixed_shape_profile():
    profile = shape_profile(["64x48"], 16)
    assert profile[0] == profile[1] == profile[2] == (1, 3, 48, 64)
    assert format_profile(profile) == "min 48x64, opt 48x64, max 48x64"


def test_profile_of_a_frame_model_reads_height_and_width_from_hwc_shapes():
    profile = ((32, 32, 3), (720, 1280, 3), (1080, 1920, 3))
    assert format_profile(profile) == "min 32x32, opt 720x1280, max 1080x1920"


@pytest.mark.parametrize("text", ["1280by720", "x720", "1280x", "-5x10", "8x8", "99999x720"])
def test_bad_frame_sizes_are_user_errors(text):
    with pytest.raises(UserError, match="frame size"):
        parse_frame_size(text)


def test_frame_size_parsing_and_empty_sizes():
    assert parse_frame_size(" 1920X1080 ") == (1920, 1080)
    with pytest.raises(UserError, match="no frame sizes"):
        shape_profile([], 32)
    with pytest.raises(ValueError, match="multiple"):
        shape_profile(["64x64"], 0)


# --------------------------------------------------------------------------- versions and modes


@pytest.mark.parametrize(("version", "major"), [("10.13.3.9", 10), ("11.4.0", 11), ("12.0", 12)])
def test_tensorrt_major(version, major):
    assert tensorrt_major(version) == major


def test_tensorrt_older_than_10_is_refused_and_garbage_is_a_bug():
    with pytest.raises(UserError, match="too old"):
        tensorrt_major("8.6.1")
    with pytest.raises(ValueError, match="unrecognised"):
        tensorrt_major("dev")


def test_build_modes_for_tensorrt_10_and_11():
    fp32_model, fp16_model = Path("m.onnx"), Path("m.fp16.onnx")
    weak_fp16 = build_mode("fp16", 10, False, fp32_model)
    assert (weak_fp16.strongly_typed, weak_fp16.fp16_flag) == (False, True)
    for major in (10, 11):
        typed = build_mode("fp16", major, True, fp16_model)
        assert (typed.strongly_typed, typed.fp16_flag) == (True, False)
        plain = build_mode("fp32", major, False, fp32_model)
        assert (plain.strongly_typed, plain.fp16_flag) == (True, False)


def test_tensorrt_11_fp16_from_an_fp32_onnx_names_the_fix():
    with pytest.raises(UserError) as error:
        build_mode("fp16", 11, False, Path("cache/desmoke.onnx"))
    assert "strongly typed" in error.value.problem
    assert "--precision fp16" in error.value.fix and "NAME.fp16.onnx" in error.value.fix


def test_fp32_from_an_fp16_onnx_and_unknown_precision_are_refused():
    with pytest.raises(UserError, match="FP16 model"):
        build_mode("fp32", 10, True, Path("m.fp16.onnx"))
    with pytest.raises(UserError, match="unknown precision"):
        build_mode("int8", 10, False, Path("m.onnx"))


def test_network_flags_use_strongly_typed_only_where_it_exists():
    with_flag = SimpleNamespace(NetworkDefinitionCreationFlag=SimpleNamespace(STRONGLY_TYPED=1))
    without_flag = SimpleNamespace(NetworkDefinitionCreationFlag=SimpleNamespace())
    assert network_flags(with_flag, strongly_typed=True) == 1 << 1
    assert network_flags(with_flag, strongly_typed=False) == 0
    assert network_flags(without_flag, strongly_typed=True) == 0, "11.x: always typed"


def test_fp16_sibling_naming():
    assert fp16_sibling(Path("a/desmoke.onnx")) == Path("a/desmoke.fp16.onnx")
    assert fp16_sibling(Path("a/desmoke.fp16.onnx")) == Path("a/desmoke.fp16.onnx")


def test_fp16_onnx_detection(tmp_path, tiny_conv_onnx):
    fp32 = onnx.load(str(tiny_conv_onnx(tmp_path / "m.onnx")))
    fp16 = onnx.load(str(tiny_conv_onnx(tmp_path / "m.fp16.onnx", fp16=True)))
    assert not onnx_has_fp16(fp32)
    assert onnx_has_fp16(fp16)
    assert model_metadata(fp32) == {"input_multiple": "8"}
    constant = helper.make_node(
        "Constant",
        [],
        ["c"],
        value=numpy_helper.from_array(np.ones(1, np.float16), "c"),
    )
    fp32.graph.node.append(constant)
    assert onnx_has_fp16(fp32), "an FP16 Constant counts"


# --------------------------------------------------------------------------- inspector JSON


def tensor(name: str, description: str, key: str = "Format/Datatype") -> dict:
    return {"Name": name, "Location": "Device", "Dimensions": [1, 16, 64, 64], key: description}


def trt10_engine_json(conv_type: str, layers: list[dict] | None = None) -> str:
    conv = {
        "Name": "node_Conv_12 + node_relu",
        "LayerType": "CaskConvolution",
        "Inputs": [tensor("image", conv_type)],
        "Outputs": [tensor("relu", conv_type)],
        "ParameterType": "Convolution",
        "Kernel": [3, 3],
        "TacticName": "sm90_xmma_fprop_implicit_gemm",
    }
    reformat = {
        "Name": "Reformatting CopyNode for Input Tensor 0 to node_Conv_12",
        "LayerType": "Reformat",
        "Inputs": [tensor("image", "Row major linear FP32 format")],
        "Outputs": [tensor("image'", conv_type)],
    }
    return json.dumps({"Layers": [reformat, conv, *(layers or [])], "Bindings": ["image", "r"]})


def test_tensorrt_10_fp16_engine_passes_the_fp16_check():
    document = trt10_engine_json("Channel major FP16 format where channel % 8 == 0")
    summary = summarise_precisions(document)
    assert (summary.detailed, summary.layers, summary.conv_layers) == (True, 2, 1)
    assert summary.conv_half == 1 and summary.half_layers == 2
    check_precision("fp16", summary, "engine")


def test_an_engine_built_in_fp32_fails_the_fp16_check_loudly():
    summary = summarise_precisions(trt10_engine_json("Row major linear FP32 format"))
    assert (summary.conv_half, summary.conv_float) == (0, 1)
    with pytest.raises(PrecisionError, match="no convolution runs in FP16"):
        check_precision("fp16", summary, "engine for desmoke.onnx")


def test_fp32_check_rejects_any_fp16_layer():
    check_precision("fp32", summarise_precisions(trt10_engine_json("Float")), "engine")
    with pytest.raises(PrecisionError, match="FP32 was asked for"):
        check_precision("fp32", summarise_precisions(trt10_engine_json("Half")), "engine")


def test_tensorrt_11_layout_with_split_datatype():
    conv = {
        "Name": "node_Conv_0",
        "LayerType": "CaskConvolution",
        "Inputs": [tensor("image16", "Half", key="DataType") | {"Format": "kHWC8"}],
        "Outputs": [tensor("conv", "Half", key="DataType") | {"Format": "kHWC8"}],
    }
    guided = {
        "Name": "node_avg_pool2d",
        "LayerType": "CaskPooling",
        "Inputs": [tensor("image", "Float", key="DataType")],
        "Outputs": [tensor("mean", "Float", key="DataType")],
    }
    io = [{"Name": "image", "IOMode": "Input", "DataType": "Float", "Dimensions": [1, 3, -1, -1]}]
    summary = summarise_precisions(json.dumps({"Layers": [guided, conv], "I/O Tensors": io}))
    assert (summary.conv_layers, summary.conv_half, summary.half_layers) == (1, 1, 1)
    check_precision("fp16", summary, "engine")


def test_unresolved_types_and_missing_detail_fail_the_check():
    unresolved = summarise_precisions(trt10_engine_json("N/A due to dynamic shapes"))
    assert (unresolved.conv_layers, unresolved.conv_half, unresolved.conv_float) == (1, 0, 0)
    assert "1 unresolved" in str(unresolved)
    with pytest.raises(PrecisionError):
        check_precision("fp16", unresolved, "engine")
    names_only = summarise_precisions(json.dumps({"Layers": ["node_Conv_0", "node_relu"]}))
    assert not names_only.detailed and names_only.layers == 2
    with pytest.raises(PrecisionError, match="DETAILED"):
        check_precision("fp16", names_only, "engine")


def test_no_convolution_at_all_is_reported_as_such():
    pool_only = json.dumps(
        {
            "Layers": [
                {
                    "Name": "pool",
                    "LayerType": "CaskPooling",
                    "Inputs": [tensor("x", "Half")],
                    "Outputs": [tensor("y", "Half")],
                }
            ]
        }
    )
    with pytest.raises(PrecisionError, match="no convolution layer was found"):
        check_precision("fp16", summarise_precisions(pool_only), "engine")


@pytest.mark.parametrize(
    ("description", "precision"),
    [
        ("Row major linear FP16 format", "fp16"),
        ("Half", "fp16"),
        ("Row major linear FP32 format (kLINEAR)", "fp32"),
        ("Float", "fp32"),
        ("BFloat16", "bf16"),
        ("Thirty-two wide channel vectorized row major Int8 format.", "int8"),
        ("Int32", "int32"),
        ("N/A due to dynamic shapes", None),
        ("", None),
    ],
)
def test_tensor_type_strings(description, precision):
    assert tensor_precision(description) == precision


# --------------------------------------------------------------------------- progress


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_reports_top_phases_always_and_steps_rate_limited():
    clock, lines = FakeClock(), []
    progress = BuildProgress(interval_s=5.0, clock=clock, emit=lambda f, *a: lines.append(f % a))
    progress.phase_start("Building engine", None, 3)
    progress.phase_start("Tactic selection", "Building engine", 40)
    for step in range(40):
        clock.now += 0.5
        assert progress.step_complete("Tactic selection", step) is True
    progress.phase_finish("Tactic selection")
    clock.now += 1.0
    progress.phase_finish("Building engine")
    assert lines[0] == "TensorRT build: Building engine (3 steps)"
    step_lines = [line for line in lines if "step" in line and "steps)" not in line]
    assert 3 <= len(step_lines) <= 5, f"20 s of steps at one line per 5 s: {lines}"
    assert "Tactic selection, step 10/40" in step_lines[0]
    assert lines[-1] == "TensorRT build: Building engine done in 21.0 s"


def test_progress_cancel_asks_tensorrt_to_stop():
    progress = BuildProgress(emit=lambda *a: None)
    progress.phase_start("Building engine", None, 1)
    progress.cancel.set()
    assert progress.step_complete("Building engine", 0) is False


# --------------------------------------------------------------------------- network inputs


def _network(*inputs):
    """A stand-in for a parsed ``trt.INetworkDefinition``: only its inputs."""
    tensors = [SimpleNamespace(name=name, shape=shape) for name, shape in inputs]
    return SimpleNamespace(num_inputs=len(tensors), get_input=tensors.__getitem__)


def test_image_input_alone_or_with_a_fixed_detail_gain():
    image = ("image", (1, 3, -1, -1))
    assert image_input_name(_network(image), Path("m.onnx")) == "image"
    assert image_input_name(_network(("detail_gain", (1,)), image), Path("m.onnx")) == "image"


@pytest.mark.parametrize(
    "inputs",
    [
        (),
        (("a", (1, 3, -1, -1)), ("b", (1, 3, -1, -1))),
        (("image", (1, 3, -1, -1)), ("detail_gain", (-1,))),
        (("detail_gain", (1,)),),
    ],
)
def test_other_input_sets_are_refused_with_the_export_fix(inputs):
    with pytest.raises(UserError) as error:
        image_input_name(_network(*inputs), Path("m.onnx"))
    assert "smokeclear export" in error.value.fix


# --------------------------------------------------------------------------- without TensorRT


def test_build_without_tensorrt_is_the_install_hint(tmp_path, monkeypatch, tiny_conv_onnx):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    onnx_path = tiny_conv_onnx(tmp_path / "m.onnx")
    with pytest.raises(UserError) as error:
        build_engine(onnx_path, tmp_path / "m.plan", profile=shape_profile(["64x64"], 8))
    assert 'pip install "smokeclear[gpu]"' in error.value.fix
    assert not (tmp_path / "m.plan").exists()


# --------------------------------------------------------------------------- with TensorRT


def _require_tensorrt_and_gpu():
    trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed (smokeclear[gpu])")
    from smokeclear.engines.tensorrt_engine import cuda_gpu_count

    if cuda_gpu_count() == 0:
        pytest.skip("TensorRT needs a CUDA GPU visible to cuda-python")
    return trt


@pytest.mark.trt
@pytest.mark.gpu
def test_real_builds_have_the_precision_asked_for(tmp_path, tiny_conv_onnx):
    trt = _require_tensorrt_and_gpu()
    profile = shape_profile(["64x48", "128x96"], 8)
    fp32_report = build_engine(
        tiny_conv_onnx(tmp_path / "m.onnx"),
        tmp_path / "m.fp32.plan",
        precision="fp32",
        profile=profile,
        workspace_bytes=1 << 28,
        timing_cache_path=tmp_path / "timing.cache",
    )
    assert fp32_report.precisions.conv_layers >= 1 and fp32_report.precisions.half_layers == 0
    assert (tmp_path / "m.fp32.plan").stat().st_size > 0
    assert (tmp_path / "timing.cache").stat().st_size > 0, "the timing cache is written"
    fp16_report = build_engine(
        tiny_conv_onnx(tmp_path / "m.fp16.onnx", fp16=True),
        tmp_path / "m.fp16.plan",
        precision="fp16",
        profile=profile,
        workspace_bytes=1 << 28,
        timing_cache_path=tmp_path / "timing.cache",
    )
    assert fp16_report.precisions.conv_half >= 1, str(fp16_report.precisions)
    if tensorrt_major(trt.__version__) >= 11:
        with pytest.raises(UserError, match="strongly typed"):
            build_engine(tmp_path / "m.onnx", tmp_path / "x.plan", profile=profile)
