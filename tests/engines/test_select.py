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
    choice = choose_backend("auto")
    assert (choice.backend, choice.device) == ("torch", "cuda") and "H100" in choice.reason
