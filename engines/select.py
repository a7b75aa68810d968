"""Which backends this machine can run, and which one ``auto`` picks (and why).

Preference under ``auto``: torch on a CUDA GPU (FP16, channels-last), then
onnxruntime on the CPU, then torch on the CPU. On the CPU onnxruntime is the faster
of the two for our convnets: desmoke at 640x352 on 2 cores took 58 ms in
onnxruntime against 110 ms in eager torch (bench/results/cpu).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

BACKENDS = ("auto", "onnxruntime", "torch")


@dataclass(frozen=True)
class BackendChoice:
    backend: str  # "onnxruntime" | "torch"
    device: str  # "cpu" | "cuda"
    reason: str


def cuda_device_name() -> str | None:
    """The first CUDA GPU torch can use, or None (torch absent or no GPU)."""
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def unavailable_reason(backend: str) -> str | None:
    """None when ``backend`` can run here, else why not."""
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
    if device == "cuda" and gpu is None:
        raise UserError(
            "--device cuda was asked for but no CUDA GPU is usable",
            "Check the NVIDIA driver (nvidia-smi), or use --device cpu.",
        )
    if requested == "auto":
        if gpu is not None and unavailable_reason("torch") is None:
            return BackendChoice("torch", "cuda", f"CUDA GPU {gpu}: torch FP16 on the GPU")
        if unavailable_reason("onnxruntime") is None:
            return BackendChoice(
                "onnxruntime", "cpu", "no CUDA GPU: onnxruntime is the fastest CPU backend"
            )
        return BackendChoice("torch", "cpu", "no CUDA GPU and no onnxruntime: torch on the CPU")
    why_not = unavailable_reason(requested)
    if why_not:
        raise UserError(
            f"backend {requested} cannot run here: {why_not}", "Install it, or use --backend auto."
        )
    if requested == "torch":
        where = "cuda" if gpu is not None else "cpu"
        return BackendChoice("torch", where, f"asked for; running on {gpu or 'the CPU'}")
    return BackendChoice("onnxruntime", "cpu", "asked for")
