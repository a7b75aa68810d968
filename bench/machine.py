"""The machine a bench ran on: its CPU, GPU, library versions and dense matmul peak."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from smokeclear import __version__
from smokeclear.engines.select import importable


def machine() -> dict[str, str]:
    """Python, platform, torch and onnxruntime versions, and the GPU when there is one."""
    import onnxruntime
    import torch

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "threads": str(torch.get_num_threads()),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = str(torch.version.cuda)
    return info


def machine_details(device: str) -> dict[str, Any]:
    """The machine, its GPU and every library version that bears on the figures."""
    import importlib.metadata

    info: dict[str, Any] = dict(machine())
    info["smokeclear"] = __version__
    info["numpy"] = np.__version__
    info["cpu"] = cpu_model()
    info["cpu_count"] = os.cpu_count()
    for package in ("opencv-python", "onnx", "matplotlib", "cuda-python", "onnxruntime-gpu"):
        try:
            info[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            info[package] = None
    info["tensorrt"] = None
    if importable("tensorrt"):
        import tensorrt

        info["tensorrt"] = tensorrt.__version__
    import onnxruntime

    info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    if device == "cuda":
        import torch

        properties = torch.cuda.get_device_properties(0)
        info["gpu_memory_gb"] = properties.total_memory / 2**30
        info["compute_capability"] = f"{properties.major}.{properties.minor}"
        info["cudnn"] = torch.backends.cudnn.version()
        info["driver"] = nvidia_driver_version()
    return info


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def nvidia_driver_version() -> str | None:
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip().splitlines()[0] if result.stdout.strip() else None


def results_dir(machine_info: dict[str, Any]) -> Path:
    """``bench/results/<gpu>/`` (e.g. ``h100-80gb-hbm3``), ``bench/results/cpu/`` without one."""
    gpu = machine_info.get("gpu")
    if not gpu:
        return Path("bench") / "results" / "cpu"
    slug = re.sub(r"[^a-z0-9]+", "-", gpu.lower()).strip("-")
    return Path("bench") / "results" / (slug.removeprefix("nvidia-") or "gpu")


def matmul_peak(device: str, seconds: float, size: int | None = None) -> dict[str, Any]:
    """Dense matmul FLOP/s here: FP16 on a GPU, FP32 on the CPU; the best timed window.

    Each window is ``torch.matmul`` of two ``size x size`` matrices (2 size^3 FLOPs),
    ten on a GPU between CUDA events, one on the CPU; windows repeat for ``seconds``.
    """
    import torch

    cuda = device == "cuda"
    dtype = torch.float16 if cuda else torch.float32
    size = size or (8192 if cuda else 2048)
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    b = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    out = torch.empty_like(a)
    torch.matmul(a, b, out=out)  # warm-up: library load, kernel choice
    if cuda:
        torch.cuda.synchronize()
    per_window = 10 if cuda else 1
    flops = 2 * size**3 * per_window
    best = 0.0
    windows = 0
    deadline = time.monotonic() + seconds
    while windows == 0 or time.monotonic() < deadline:
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(per_window):
                torch.matmul(a, b, out=out)
            end.record()
            end.synchronize()
            elapsed_s = start.elapsed_time(end) / 1e3
        else:
            t0 = time.perf_counter_ns()
            torch.matmul(a, b, out=out)
            elapsed_s = (time.perf_counter_ns() - t0) / 1e9
        best = max(best, flops / elapsed_s)
        windows += 1
    return {
        "device": device,
        "dtype": "fp16" if cuda else "fp32",
        "size": size,
        "seconds": seconds,
        "matmuls": windows * per_window,
        "flops_per_s": best,
        "method": f"best window of torch.matmul on two {size}x{size} matrices",
    }
