"""Which backends this machine can run, and which one ``auto`` picks (and why).

Preference under ``auto``, fastest first, by what is present: a TensorRT engine
(TensorRT, cuda-python and a GPU), an AOTInductor package (torch on a CUDA GPU
with Triton and a C++ compiler), torch FP16 with CUDA graphs, then onnxruntime on
the CPU, then torch on the CPU. On the CPU onnxruntime is the faster of the two
for our convnets: desmoke at 640x352 on 2 cores took 58 ms in onnxruntime against
110 ms in eager torch (bench/results/cpu). TensorRT and AOTInductor compile on
first use (minutes) and cache the result.
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass

BACKENDS = ("auto", "tensorrt", "aoti", "torch", "onnxruntime")


@dataclass(frozen=True)
class BackendChoice:
    backend: str  # "tensorrt" | "aoti" | "torch" | "onnxruntime"
    device: str  # "cpu" | "cuda"
    reason: str


def cuda_device_name() -> str | None:
    """The first CUDA GPU torch can use, or None (torch absent, no CUDA driver or no GPU)."""
    if importlib.util.find_spec("torch") is None or not cuda_driver_loads():
        return None
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def cuda_driver_loads() -> bool:
    """Whether the CUDA driver library loads. Without it torch sees no GPU, and importing
    torch only to learn that delays a CPU box's first frame by seconds."""
    import ctypes

    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


def importable(module: str) -> bool:
    """Whether ``module`` (dotted names included) can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # the parent package of a dotted name is missing
        return False


def tensorrt_unavailable_reason() -> str | None:
    """TensorRT needs its Python package, cuda-python and a CUDA GPU (not torch)."""
    if not importable("tensorrt"):
        return 'TensorRT is not installed (pip install "smokeclear[gpu]")'
    if not (importable("cuda.bindings") or importable("cuda.cudart")):
        return 'cuda-python is not installed (pip install "smokeclear[gpu]")'
    from smokeclear.engines.cuda_runtime import cuda_gpu_count

    if cuda_gpu_count() == 0:
        return "no CUDA GPU is visible to cuda-python"
    return None


def aoti_unavailable_reason(device: str) -> str | None:
    """AOTInductor needs torch and a C++ compiler; on a GPU also Triton."""
    if not importable("torch"):
        return "torch is not installed"
    if device == "cuda" and not importable("triton"):
        return "Triton is not installed (it comes with the CUDA builds of torch)"
    if not any(shutil.which(name) for name in ("g++", "c++", "clang++")):
        return "no C++ compiler (g++) to build AOTInductor packages with"
    return None


def unavailable_reason(backend: str, device: str = "cuda") -> str | None:
    """None when ``backend`` can run here (on ``device``), else why not."""
    if backend == "tensorrt":
        return tensorrt_unavailable_reason()
    if backend == "aoti":
        return aoti_unavailable_reason(device)
    module = {"onnxruntime": "onnxruntime", "torch": "torch"}[backend]
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed"
    return None


def choose_backend(requested: str, device: str | None = None) -> BackendChoice:
    """Resolve ``auto`` and check an explicit request.

    Args:
        requested: one of :data:`BACKENDS`.
        device: "cpu" or "cuda" to force; None picks the GPU when there is one.
    """
    from smokeclear.errors import UserError

    if requested not in BACKENDS:
        raise UserError(f"unknown backend {requested!r}", f"Choose one of: {', '.join(BACKENDS)}.")
    gpu = cuda_device_name() if device in (None, "cuda") else None
    tensorrt_reason = unavailable_reason("tensorrt") if device != "cpu" else "--device cpu"
    if device == "cuda" and gpu is None and tensorrt_reason is not None:
        raise UserError(
            "--device cuda was asked for but no CUDA GPU is usable",
            "Check the NVIDIA driver (nvidia-smi), or use --device cpu.",
        )
    if requested == "auto":
        if tensorrt_reason is None:
            return BackendChoice(
                "tensorrt", "cuda", "TensorRT and a CUDA GPU: an FP16 TensorRT engine (cached)"
            )
        if gpu is not None:
            aoti_reason = unavailable_reason("aoti", "cuda")
            if aoti_reason is None:
                return BackendChoice(
                    "aoti",
                    "cuda",
                    f"CUDA GPU {gpu}, no TensorRT ({tensorrt_reason}): "
                    "an FP16 AOTInductor package (compiled once, cached)",
                )
            return BackendChoice(
                "torch",
                "cuda",
                f"CUDA GPU {gpu}, no TensorRT ({tensorrt_reason}), no AOTInductor "
                f"({aoti_reason}): torch FP16 with CUDA graphs",
            )
        if unavailable_reason("onnxruntime") is None:
            return BackendChoice(
                "onnxruntime", "cpu", "no CUDA GPU: onnxruntime is the fastest CPU backend"
            )
        return BackendChoice("torch", "cpu", "no CUDA GPU and no onnxruntime: torch on the CPU")
    if requested == "tensorrt" and device == "cpu":
        raise UserError("--backend tensorrt runs on the GPU only", "Drop --device cpu.")
    where = "cuda" if gpu is not None and requested in ("aoti", "torch") else "cpu"
    if requested == "tensorrt":
        where = "cuda"
    why_not = unavailable_reason(requested, where)
    if why_not:
        raise UserError(
            f"backend {requested} cannot run here: {why_not}", "Install it, or use --backend auto."
        )
    if requested == "tensorrt":
        return BackendChoice("tensorrt", "cuda", "asked for; a TensorRT engine on the GPU")
    if requested in ("aoti", "torch"):
        return BackendChoice(requested, where, f"asked for; running on {gpu or 'the CPU'}")
    return BackendChoice("onnxruntime", "cpu", "asked for")
