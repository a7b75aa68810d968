"""FP16 ONNX: which nodes stay FP32, consistent typing, parity with FP32, the export CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from smokeclear.cli import main
from smokeclear.errors import UserError
from smokeclear.export.fp16 import (
    FP16_MIN_PSNR_DB,
    check_typed,
    compare_models,
    convert_to_fp16,
    fp32_node_names,
    parity_inputs,
)
from smokeclear.export.onnx_export import export_onnx
from smokeclear.nets.loading import load_restorer
from smokeclear.nets.wrappers import WorkScale
from smokeclear.registry import get_restorer

FLOAT, FLOAT16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
#: Ops of the guided-filter pyramid (box means, variance clamp, a = cov / (var + eps),
#: nearest upsampling); the U-Net body has none of them.
PYRAMID_OPS = {"AveragePool", "Div", "Clip", "Resize"}
#: Tiny desmoke, one random 64x96 and one scene frame: measured 1.5e-4 max abs error and
#: 84 dB with the typed evaluator; these bounds leave room for other BLAS/numpy builds.
TYPED_MAX_ABS_ERROR = 1e-3
TYPED_MIN_PSNR_DB = 60.0


@pytest.fixture(scope="module")
def fp32_model(tiny_weights: Path, tmp_path_factory) -> Path:
    module = WorkScale(load_restorer(get_restorer("desmoke"), tiny_weights), 1.0).eval()
    path = tmp_path_factory.mktemp("fp32") / "desmoke.onnx"
    export_onnx(module, path, {"restorers": "desmoke", "precision": "fp32"})
    return path


@pytest.fixture(scope="module")
def fp16_model(fp32_model: Path) -> Path:
    path = fp32_model.with_name("desmoke.fp16.onnx")
    convert_to_fp16(fp32_model, path, fp32_scopes=get_restorer("desmoke").fp32_modules)
    return path


def value_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.value_info, *graph.output]}
    types.update({v.name: v.type.tensor_type.elem_type for v in graph.input})
    types.update({init.name: init.data_type for init in graph.initializer})
    return types


def test_rule_puts_layers_in_fp16_and_the_pyramid_in_fp32(fp32_model, fp32_by_op):
    model = onnx.load(str(fp32_model))
    kept = set(fp32_node_names(model))
    by_op = fp32_by_op(fp32_model)
    for op in ("Conv", "ConvTranspose", "Relu", "Concat"):
        assert by_op[op] == {False}, f"every {op} should run in FP16"
    pools = [node.name in kept for node in model.graph.node if node.op_type == "MaxPool"]
    # the encoder's pools run in FP16; the density gate's erosion of the FP32 dark channel not
    assert sorted(pools) == [False] * (len(pools) - 1) + [True], pools
    for op in PYRAMID_OPS:
        assert by_op[op] == {True}, f"every {op} (guided-filter pyramid) should stay FP32"
    assert "BatchNormalization" not in by_op, "eval BatchNorm is folded into the convolutions"
    final = next(n for n in model.graph.node if n.output[0] == model.graph.output[0].name)
    assert final.op_type == "Add" and final.name in kept, "the residual X + correction is FP32"


def test_fp16_model_is_typed_with_fp16_convolutions_and_fp32_pyramid(fp32_model, fp16_model):
    model = onnx.load(str(fp16_model))
    onnx.checker.check_model(model)
    check_typed(model)
    types = value_types(model)
    assert model.graph.input[0].type.tensor_type.elem_type == FLOAT, "input stays float32"
    assert model.graph.output[0].type.tensor_type.elem_type == FLOAT, "output stays float32"
    for node in model.graph.node:
        if node.op_type in ("Conv", "ConvTranspose"):
            assert [types[name] for name in node.input] == [FLOAT16] * len(node.input), node.name
        if node.op_type in PYRAMID_OPS:
            floats = [types[name] for name in node.input if types.get(name) in (FLOAT, FLOAT16)]
            assert set(floats) == {FLOAT}, f"{node.name} ({node.op_type}) should read FP32"
            assert types[node.output[0]] == FLOAT, f"{node.name} should write FP32"
    metadata = {p.key: p.value for p in model.metadata_props}
    kept = fp32_node_names(onnx.load(str(fp32_model)))
    assert metadata["precision"] == "fp16" and metadata["fp32_nodes"] == str(len(kept))
    assert metadata["input_multiple"] == "32", "the FP32 model's metadata is carried over"


def test_no_fp32_tensor_is_rounded_through_fp16(fp16_model):
    """FP32 -> FP16 -> FP32 cast pairs would quietly run the guided filter at FP16 precision."""
    graph = onnx.load(str(fp16_model)).graph
    producers = {output: node for node in graph.node for output in node.output}
    casts = [node for node in graph.node if node.op_type == "Cast"]
    for cast in casts:
        source = producers.get(cast.input[0])
        assert source is None or source.op_type != "Cast", f"{cast.name} re-casts a cast"
    # Desmoke needs exactly: input -> first conv, four detail layers -> Concat, and the
    # last conv's output -> the FP32 residual add.
    assert len(casts) == 6, [cast.name for cast in casts]


def test_fp16_matches_fp32_when_evaluated_in_fp16(fp32_model, fp16_model):
    """The numpy reference evaluator stores every FP16 tensor in FP16, as TensorRT does."""
    inputs = parity_inputs(32)
    report = compare_models(fp32_model, fp16_model, [inputs[0], inputs[2]], evaluator="reference")
    assert report.max_abs_error < TYPED_MAX_ABS_ERROR, str(report)
    assert report.psnr_db > max(TYPED_MIN_PSNR_DB, FP16_MIN_PSNR_DB), str(report)


def test_onnxruntime_cpu_runs_the_fp16_model(fp32_model, fp16_model):
    """ORT's CPU provider has no FP16 Conv on x86: it upcasts, so this error is smaller."""
    report = compare_models(fp32_model, fp16_model, parity_inputs(32), evaluator="onnxruntime")
    assert report.max_abs_error < TYPED_MAX_ABS_ERROR and report.psnr_db > 70, str(report)


def test_keep_fp32_names_extra_nodes(fp32_model, tmp_path):
    model = onnx.load(str(fp32_model))
    first_conv = next(n.name for n in model.graph.node if n.op_type == "Conv")
    conversion = convert_to_fp16(fp32_model, tmp_path / "m.onnx", keep_fp32=[first_conv])
    assert first_conv in conversion.fp32_nodes
    converted = onnx.load(str(conversion.path))
    types = value_types(converted)
    conv = next(n for n in converted.graph.node if n.name == first_conv)
    assert all(types[name] == FLOAT for name in conv.input), "kept conv reads FP32 weights"
    with pytest.raises(UserError, match="cannot keep node_missing in FP32"):
        convert_to_fp16(fp32_model, tmp_path / "n.onnx", keep_fp32=["node_missing"])


def test_fp16_model_is_not_converted_twice(fp16_model, tmp_path):
    with pytest.raises(ValueError, match="not an FP32 model"):
        convert_to_fp16(fp16_model, tmp_path / "twice.onnx")


class TinyConvNet(nn.Module):
    input_multiple = 2

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return image + self.body(image)


def test_work_scale_guided_upsampling_stays_fp32(tmp_path):
    torch.manual_seed(0)
    module = WorkScale(TinyConvNet(), 0.5).eval()
    fp32_path = tmp_path / "half.onnx"
    export_onnx(module, fp32_path, {})
    conversion = convert_to_fp16(fp32_path, tmp_path / "half.fp16.onnx")
    assert conversion.fp16_nodes == 3, "two convolutions and the ReLU"
    model = onnx.load(str(conversion.path))
    types = value_types(model)
    for node in model.graph.node:
        if node.op_type in ("AveragePool", "Div", "Resize", "Mul", "Add", "Sub"):
            assert types[node.output[0]] == FLOAT, f"{node.name} ({node.op_type}) should be FP32"
    frame = np.random.default_rng(0).random((1, 3, 16, 24), dtype=np.float32)
    report = compare_models(fp32_path, conversion.path, [frame], evaluator="reference")
    assert report.psnr_db > TYPED_MIN_PSNR_DB, str(report)


def test_fp16_detail_model_takes_a_float32_gain(tiny_smooth_weights):
    """The detail stage is hand-written arithmetic: it and its gain input stay FP32."""
    from smokeclear.runtime import EngineRequest, onnx_fp16_model, onnx_model

    request = EngineRequest(
        (get_restorer("smooth"),), weights={"smooth": tiny_smooth_weights}, detail_gain=2.0
    )
    fp16_path, fp32_path = onnx_fp16_model(request), onnx_model(request)
    model = onnx.load(str(fp16_path))
    check_typed(model)
    gain = next(value for value in model.graph.input if value.name == "detail_gain")
    assert gain.type.tensor_type.elem_type == FLOAT, "detail_gain stays a float32 input"
    types = value_types(model)
    readers = [node for node in model.graph.node if "detail_gain" in node.input]
    assert readers and all(types[node.output[0]] == FLOAT for node in readers)
    frame = np.random.default_rng(0).random((1, 3, 16, 24), dtype=np.float32)
    for detail_gain in (0.0, 3.0):
        typed = compare_models(
            fp32_path, fp16_path, [frame], evaluator="reference", detail_gain=detail_gain
        )
        upcast = compare_models(fp32_path, fp16_path, [frame], detail_gain=detail_gain)
        assert typed.psnr_db > TYPED_MIN_PSNR_DB, f"gain {detail_gain}: {typed}"
        assert upcast.psnr_db > TYPED_MIN_PSNR_DB, f"gain {detail_gain}: {upcast}"


def test_parity_inputs_hold_random_and_scene_frames():
    frames = parity_inputs(32)
    assert [f.shape for f in frames] == [(1, 3, 64, 96), (1, 3, 128, 64), *[(1, 3, 64, 96)] * 2]
    for frame in frames:
        assert frame.dtype == np.float32 and frame.min() >= 0.0 and frame.max() <= 1.0
    scene = frames[2]
    assert np.unique(scene * 255).size <= 256, "scene frames are 8-bit pixels scaled to [0, 1]"
    assert not np.array_equal(frames[2], frames[3]), "two different scene frames"


# --------------------------------------------------------------------------- CLI


def test_cli_export_both_writes_both_models(tiny_weights, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["export", "desmoke", "--out", str(out), "--weights", str(tiny_weights)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert sorted(p.name for p in out.iterdir()) == ["desmoke.fp16.onnx", "desmoke.onnx"]
    for line in ("FP32 ONNX vs PyTorch", "FP16 vs FP32 ONNX (typed", "FP16 vs FP32 ONNX (onnxr"):
        assert line in printed and "max abs error" in printed and "PSNR" in printed, printed
    precision = {
        name: {p.key: p.value for p in onnx.load(str(out / name)).metadata_props}["precision"]
        for name in ("desmoke.onnx", "desmoke.fp16.onnx")
    }
    assert precision == {"desmoke.onnx": "fp32", "desmoke.fp16.onnx": "fp16"}


@pytest.fixture
def reuse_fp32_export(fp32_model, monkeypatch):
    """Make the CLI's export copy the module's tiny export instead of exporting again."""
    import smokeclear.export.onnx_export as onnx_export

    def copy_export(module, path, metadata):
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(fp32_model, path)

    monkeypatch.setattr(onnx_export, "export_onnx", copy_export)


def test_cli_fp16_only_writes_only_the_fp16_model(reuse_fp32_export, tiny_weights, tmp_path):
    out = tmp_path / "out"
    argv = ["export", "desmoke", "--out", str(out), "--weights", str(tiny_weights)]
    assert main([*argv, "--precision", "fp16"]) == 0
    assert [p.name for p in out.iterdir()] == ["desmoke.fp16.onnx"]


def test_cli_fails_on_fp16_parity_below_the_gate(
    reuse_fp32_export, tiny_weights, tmp_path, capsys, monkeypatch
):
    import smokeclear.export.fp16 as fp16

    monkeypatch.setattr(fp16, "FP16_MIN_PSNR_DB", 1000.0)
    out = tmp_path / "out"
    code = main(["export", "desmoke", "--out", str(out), "--weights", str(tiny_weights)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "dB from the FP32 model's (limit 1000 dB)" in err[0], err
    assert [p.name for p in out.iterdir()] == ["desmoke.onnx"], "no failed FP16 model left"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["desmoke", "--weights", "missing.safetensors"], "does not exist"),
        (["desmok"], "unknown restorer 'desmok'"),
        (["desmoke", "--precision", "int8"], "invalid choice: 'int8'"),
    ],
)
def test_cli_bad_export_input_is_one_line_and_exit_2(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["export", *argv, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("smokeclear: error: "), err
    assert message in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "out").exists(), "nothing written"


@pytest.mark.parametrize("multiple", [1, 2, 8, 32])
def test_parity_inputs_fit_the_multiple_and_the_scene_at_any_multiple(multiple):
    """Small multiples (smooth's is 2) still give scene frames of at least 16 px."""
    frames = parity_inputs(multiple)
    assert len(frames) == 4
    for frame in frames:
        height, width = frame.shape[2:]
        assert height % multiple == 0 and width % multiple == 0
        assert min(height, width) >= 16
        assert frame.dtype == np.float32 and frame.min() >= 0 and frame.max() <= 1
