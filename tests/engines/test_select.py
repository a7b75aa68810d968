import pytest
import torch

from smokeclear.engines.select import choose_backend
from smokeclear.errors import UserError


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only choice")
def test_auto_on_a_cpu_machine_prefers_onnxruntime_and_says_why():
    choice = choose_backend("auto")
    assert (choice.backend, choice.device) == ("onnxruntime", "cpu")
    assert "no CUDA GPU" in choice.reason


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only errors")
def test_cuda_requested_without_a_gpu():
    with pytest.raises(UserError, match="no CUDA GPU"):
        choose_backend("auto", "cuda")


def test_explicit_torch_and_unknown_backend():
    assert choose_backend("torch", "cpu").backend == "torch"
    with pytest.raises(UserError, match="unknown backend"):
        choose_backend("tensorflow")


def test_auto_prefers_the_gpu(monkeypatch):
    monkeypatch.setattr("smokeclear.engines.select.cuda_device_name", lambda: "NVIDIA H100")
    monkeypatch.setattr(
        "smokeclear.engines.select.tensorrt_unavailable_reason", lambda: "TensorRT is not installed"
    )
    monkeypatch.setattr(
        "smokeclear.engines.select.aoti_unavailable_reason", lambda device: "no C++ compiler"
    )
    choice = choose_backend("auto")
    assert (choice.backend, choice.device) == ("torch", "cuda") and "H100" in choice.reason
    assert "TensorRT is not installed" in choice.reason and "no C++ compiler" in choice.reason


def test_auto_order_is_tensorrt_then_aoti_then_torch(monkeypatch):
    monkeypatch.setattr("smokeclear.engines.select.cuda_device_name", lambda: "NVIDIA H100")
    monkeypatch.setattr("smokeclear.engines.select.aoti_unavailable_reason", lambda device: None)
    monkeypatch.setattr("smokeclear.engines.select.tensorrt_unavailable_reason", lambda: None)
    assert choose_backend("auto").backend == "tensorrt"
    monkeypatch.setattr(
        "smokeclear.engines.select.tensorrt_unavailable_reason", lambda: "TensorRT is not installed"
    )
    choice = choose_backend("auto")
    assert (choice.backend, choice.device) == ("aoti", "cuda") and "AOTInductor" in choice.reason
    # Forcing the CPU never picks a GPU backend.
    assert choose_backend("auto", "cpu").backend == "onnxruntime"


def test_aoti_needs_a_compiler(monkeypatch):
    monkeypatch.setattr("smokeclear.engines.select.shutil.which", lambda name: None)
    with pytest.raises(UserError, match="no C\\+\\+ compiler"):
        choose_backend("aoti", "cpu")
