"""A deployment box has ONNX models, onnxruntime or TensorRT, and no torch."""

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

#: Makes ``import torch`` fail as on a box without it (``find_spec`` says absent too).
BLOCK_TORCH = "import sys; sys.modules['torch'] = None\n"


def run_cli_without_torch(args: list[str], **env: str) -> subprocess.CompletedProcess:
    code = BLOCK_TORCH + "from smokeclear.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=240,
    )


@pytest.mark.parametrize(
    ("blocked", "modules"),
    [
        pytest.param(
            # A TensorRT deployment box has no torch: registry, engines, graph, the ONNX
            # lookup and its FP16 conversion must import without it.
            ("torch",),
            "smokeclear.registry, smokeclear.engines.onnxruntime_engine, "
            "smokeclear.engines.tensorrt_engine, smokeclear.runtime, smokeclear.restore, "
            "smokeclear.onnx_models, smokeclear.export.fp16, smokeclear.cli, "
            "smokeclear.export.tensorrt_build, smokeclear.engines.engine_cache, "
            "smokeclear.stream.graph, smokeclear.stream.sources.opencv",
            id="live-path-without-torch",
        ),
        pytest.param(
            # The TensorRT files load their heavy imports only when an engine starts.
            ("tensorrt", "cuda", "cuda.bindings", "torch"),
            "smokeclear.engines.tensorrt_engine, smokeclear.engines.engine_cache, "
            "smokeclear.engines.cuda_runtime, smokeclear.engines.tensorrt_support, "
            "smokeclear.export.tensorrt_build, smokeclear.export.tensorrt_precision",
            id="tensorrt-files-without-tensorrt-cuda-python-or-torch",
        ),
    ],
)
def test_modules_import_without(blocked: tuple[str, ...], modules: str):
    code = f"import sys\nfor name in {blocked!r}:\n    sys.modules[name] = None\n"
    code += f"import {modules}\nprint('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "ok", result.stderr


def test_a_cpu_box_chooses_its_backend_without_importing_torch():
    """Importing torch only to learn there is no GPU delayed the first frame by seconds."""
    from smokeclear.engines.select import cuda_driver_loads

    if cuda_driver_loads():
        pytest.skip("a CUDA driver is installed: torch is rightly asked for the GPU")
    code = (
        "import sys\nfrom smokeclear.engines.select import choose_backend\n"
        "print(choose_backend('auto').backend, 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split() == ["onnxruntime", "False"], result.stdout + result.stderr


@pytest.fixture(scope="module")
def exported(tiny_weights: Path, tmp_path_factory) -> Path:
    """The folder `smokeclear export desmoke --precision fp32` wrote for the tiny weights."""
    from smokeclear.cli import main

    models = tmp_path_factory.mktemp("exported")
    export = ["export", "desmoke", "--weights", str(tiny_weights), "--precision", "fp32"]
    assert main([*export, "--out", str(models)]) == 0
    return models


def test_restore_runs_from_exported_onnx_without_torch(
    exported: Path, tiny_weights: Path, tmp_path: Path
):
    from smokeclear.cli import main

    models = exported
    frame = np.random.default_rng(0).integers(0, 256, (40, 56, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "in.png"), frame)
    engine = ["--backend", "onnxruntime", "--device", "cpu", "--work-scale", "1"]
    given = ["--onnx", str(models), "--weights", str(tiny_weights)]
    args = ["restore", str(tmp_path / "in.png"), str(tmp_path / "out.png"), *engine, *given]
    # An empty cache: the only model there is is the exported one.
    result = run_cli_without_torch(args, SMOKECLEAR_CACHE=str(tmp_path / "empty-cache"))
    assert result.returncode == 0, f"restore without torch failed:\n{result.stderr}"
    restored = cv2.imread(str(tmp_path / "out.png"))
    assert restored is not None and restored.shape == frame.shape
    assert np.abs(restored.astype(int) - frame).max() > 4, "the tiny net should change the frame"
    assert main([*args[:2], str(tmp_path / "with-torch.png"), *args[3:]]) == 0
    expected = cv2.imread(str(tmp_path / "with-torch.png"))
    np.testing.assert_array_equal(restored, expected, "same ONNX, same output, torch or not")


def test_a_missing_onnx_without_torch_is_one_clear_error(tiny_weights: Path, tmp_path: Path):
    frame = np.zeros((32, 32, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "in.png"), frame)
    args = ["restore", str(tmp_path / "in.png"), str(tmp_path / "out.png")]
    args += ["--backend", "onnxruntime", "--weights", str(tiny_weights), "--work-scale", "0.5"]
    result = run_cli_without_torch(args, SMOKECLEAR_CACHE=str(tmp_path / "empty-cache"))
    assert result.returncode == 2, f"expected the user's error, got:\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    assert "exporting one needs torch, which is not installed" in result.stderr, result.stderr
    fix = "smokeclear export desmoke --work-scale 0.5 --out DIR` and pass --onnx DIR"
    assert fix in result.stderr, result.stderr
    assert not (tmp_path / "out.png").exists()


def test_tensorrt_gets_its_fp16_model_from_exported_fp32_without_torch(
    exported: Path, tmp_path: Path
):
    """The TensorRT path converts a given (or shipped) FP32 model to FP16 in the cache."""
    code = BLOCK_TORCH + (
        "from pathlib import Path\n"
        "from smokeclear.registry import get_restorer\n"
        "from smokeclear.runtime import EngineRequest, onnx_fp16_model\n"
        "request = EngineRequest((get_restorer('desmoke'),), onnx=Path(sys.argv[1]))\n"
        "print(onnx_fp16_model(request))"
    )
    cache = tmp_path / "cache"
    result = subprocess.run(
        [sys.executable, "-c", code, str(exported)],
        capture_output=True,
        text=True,
        env={**os.environ, "SMOKECLEAR_CACHE": str(cache)},
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    fp16 = Path(result.stdout.strip())
    assert fp16.parent == cache / "onnx" and fp16.name.endswith(".fp16.onnx"), fp16
    import onnx

    metadata = {p.key: p.value for p in onnx.load(str(fp16)).metadata_props}
    assert metadata["precision"] == "fp16" and metadata["restorers"] == "desmoke"


def test_onnx_with_a_torch_backend_is_a_user_error(exported: Path, tmp_path: Path, capsys):
    from smokeclear.cli import main

    cv2.imwrite(str(tmp_path / "in.png"), np.zeros((16, 16, 3), np.uint8))
    args = ["restore", str(tmp_path / "in.png"), str(tmp_path / "out.png")]
    assert main([*args, "--backend", "torch", "--onnx", str(exported)]) == 2
    assert "--onnx is for the onnxruntime and TensorRT backends" in capsys.readouterr().err
