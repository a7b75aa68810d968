"""From a restorer request to a started-ready engine: backend choice and model artefacts.

This is where the layers meet: it builds torch modules for the torch backend and
exports (and caches) ONNX files for onnxruntime, so the engines themselves stay
free of export and training code.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from smokeclear import __version__
from smokeclear.engines.base import Engine
from smokeclear.engines.select import BackendChoice, choose_backend
from smokeclear.errors import UserError
from smokeclear.registry import PACKAGE_DIR, RestorerSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineRequest:
    restorers: tuple[RestorerSpec, ...]
    backend: str = "auto"
    device: str | None = None  # None: the GPU when there is one
    work_divisor: int = 1  # run the chain at 1/divisor resolution, guided-upsample back
    weights: dict[str, Path] = field(default_factory=dict)  # restorer name -> weights file
    # None: smooth restorers output the smooth image; K >= 0: they magnify detail,
    # ``base + K * (input - base)``. K is only the starting value: engines change it live.
    detail_gain: float | None = None

    @property
    def label(self) -> str:
        return "+".join(spec.name for spec in self.restorers)

    @property
    def artefact_stem(self) -> str:
        """Start of cached model file names: chain, output mode and working resolution."""
        mode = "-detail" if self.detail_gain is not None else ""
        return f"{self.label}{mode}-w{self.work_divisor}"


def cache_dir() -> Path:
    """``$SMOKECLEAR_CACHE``, else ``$XDG_CACHE_HOME/smokeclear``, else ``~/.cache/smokeclear``."""
    if "SMOKECLEAR_CACHE" in os.environ:
        return Path(os.environ["SMOKECLEAR_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "smokeclear"


def weights_path(request: EngineRequest, spec: RestorerSpec) -> Path:
    return request.weights.get(spec.name, spec.weights)


def check_detail_gain(request: EngineRequest) -> None:
    """UserError unless ``request.detail_gain`` is None, or >= 0 with a restorer that
    has a detail stage."""
    gain = request.detail_gain
    if gain is None:
        return
    if not (math.isfinite(gain) and gain >= 0):
        raise UserError(f"--detail-gain {gain} is not allowed", "Use a gain >= 0, e.g. 2.")
    if not any(spec.detail_stage for spec in request.restorers):
        from smokeclear.registry import REGISTRY

        with_detail = [spec.name for spec in REGISTRY.values() if spec.detail_stage]
        raise UserError(
            f"--detail-gain needs the {' or '.join(with_detail)} restorer, "
            f"and --restorer is {request.label}",
            f"Add it to --restorer, e.g. --restorer {with_detail[0]}.",
        )


def build_chain(request: EngineRequest):
    """The torch module for the request: restorers in order, at the working resolution.

    Deployment form of every member (:func:`~smokeclear.nets.loading.deployment_module`):
    eval mode, batch norms folded where its spec says so, and in detail mode wrapped
    in its spec's detail stage at ``request.detail_gain``.
    """
    from smokeclear.nets.loading import deployment_module
    from smokeclear.nets.wrappers import RestorerChain, WorkingResolution

    check_detail_gain(request)
    members = [
        deployment_module(spec, weights_path(request, spec), request.detail_gain)
        for spec in request.restorers
    ]
    chain = members[0] if len(members) == 1 else RestorerChain(members)
    return WorkingResolution(chain, request.work_divisor).eval()


def model_key(request: EngineRequest, *extra: str) -> str:
    """Content key of a model artefact: weights, code, wrapper, output mode, torch, ``extra``.

    The detail gain is not part of it: ONNX models take the gain as an input.
    """
    import torch

    digest = hashlib.sha256()
    for spec in request.restorers:
        digest.update(weights_path(request, spec).read_bytes())
    for source in sorted((PACKAGE_DIR / "nets").glob("*.py")):
        digest.update(source.read_bytes())
    mode = ["detail"] if request.detail_gain is not None else []
    fields = [str(request.work_divisor), *mode, torch.__version__, __version__, *extra]
    digest.update("|".join(fields).encode())
    return digest.hexdigest()


def onnx_key(request: EngineRequest) -> str:
    """Content key of the exported ONNX model (the exporter's opset included)."""
    from smokeclear.export.onnx_export import OPSET

    return model_key(request, f"opset{OPSET}")


def onnx_model(request: EngineRequest) -> Path:
    """The cached ONNX file for ``request``, exported (and parity-checked) on first use."""
    import onnx
    import torch

    from smokeclear.export.onnx_export import check_parity, export_onnx

    # Loading first turns missing or corrupt weights into the user's error before
    # anything is hashed or exported.
    module = build_chain(request)
    name = f"{request.artefact_stem}-{onnx_key(request)[:16]}.onnx"
    path = cache_dir() / "onnx" / name
    if path.is_file():
        try:
            onnx.checker.check_model(str(path))
            return path
        except Exception as error:  # a truncated or corrupt cache entry
            log.warning(
                "cached model %s is unreadable (%s): exporting it again", path, type(error).__name__
            )
    log.info(
        "exporting %s to ONNX (first run with these weights; cached in %s)",
        request.label,
        path.parent,
    )
    export_onnx(module, path, {"restorers": request.label, "smokeclear": __version__})
    multiple = module.input_multiple
    report = check_parity(module, path, [torch.rand(1, 3, 2 * multiple, 3 * multiple)])
    log.info("ONNX parity: %s", report)
    if report.max_abs_error > 1e-3:
        path.unlink()
        raise RuntimeError(f"exported ONNX disagrees with PyTorch: {report}")
    return path


def aoti_package(request: EngineRequest, module, example) -> Path:
    """The cached AOTInductor package of ``module`` for inputs like ``example``.

    Args:
        module: the chain, already on its device and in its precision.
        example: an input of the right device, dtype and layout; H and W stay dynamic.
    """
    import torch

    from smokeclear.export.aoti import compile_package

    device = example.device
    target = "cpu"
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        target = f"{torch.cuda.get_device_name(device)}-sm{major}{minor}"
    layout = "cl" if example.is_contiguous(memory_format=torch.channels_last) else "nchw"
    # The package compiles the detail gain in as a constant: unlike ONNX, it is keyed by it.
    gain = [] if request.detail_gain is None else [f"gain{float(request.detail_gain)!r}"]
    key = model_key(request, "aoti", target, str(example.dtype), layout, *gain)
    name = f"{request.artefact_stem}-{device.type}-{key[:16]}.pt2"
    path = cache_dir() / "aoti" / name
    if path.is_file():
        return path
    log.info(
        "compiling %s with AOTInductor for %s (first run on this machine, takes minutes; "
        "cached in %s)",
        request.label,
        target,
        path.parent,
    )
    compile_package(module, example, path)
    return path


def onnx_fp16_model(request: EngineRequest) -> Path:
    """The cached FP16 ONNX (guided filter in FP32) next to the FP32 one, made on first use."""
    from smokeclear.export.fp16 import convert_to_fp16

    fp32_path = onnx_model(request)
    path = fp32_path.with_suffix(".fp16.onnx")
    if not path.is_file():
        scopes = [scope for spec in request.restorers for scope in spec.fp32_modules]
        convert_to_fp16(fp32_path, path, fp32_scopes=scopes)
    return path


def tensorrt_engine(request: EngineRequest) -> Engine:
    """A TensorRT engine for ``request``: built for the first frame's size, then cached.

    The engine is built from the FP16 ONNX (strongly typed, guided filter in FP32), so
    TensorRT 10 and 11 build the same network. Its shape profile runs from one input
    multiple up to the first frame's padded size, tuned for that size.
    """
    import onnx

    from smokeclear.engines.engine_cache import timing_cache_path
    from smokeclear.engines.tensorrt_engine import CachedPlan, TensorRTEngine, gpu_identity
    from smokeclear.export.tensorrt_build import build_engine

    onnx_path = onnx_fp16_model(request)
    metadata = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    multiple = int(metadata.get("input_multiple", "1"))

    def plan_for(height: int, width: int) -> CachedPlan:
        import tensorrt

        padded = (1, 3, height + (-height % multiple), width + (-width % multiple))
        profile = ((1, 3, multiple, multiple), padded, padded)
        timing = timing_cache_path(tensorrt.__version__, *gpu_identity(0))

        def build(plan: Path):
            return build_engine(
                onnx_path, plan, precision="fp16", profile=profile, timing_cache_path=timing
            )

        return CachedPlan(onnx_path, "fp16", profile, 3, build, multiple, request.label)

    return TensorRTEngine(plan_for, detail_gain=request.detail_gain)


def create_engine(request: EngineRequest) -> tuple[Engine, BackendChoice]:
    """An engine for ``request`` (not yet started) and why that backend was chosen."""
    choice = choose_backend(request.backend, request.device)
    if choice.backend == "onnxruntime":
        from smokeclear.engines.onnxruntime_engine import OnnxRuntimeEngine

        return OnnxRuntimeEngine(onnx_model(request), detail_gain=request.detail_gain), choice
    if choice.backend == "tensorrt":
        return tensorrt_engine(request), choice
    # Load once here so bad weights fail now, with the user's error, not in a thread.
    module = build_chain(request)
    if choice.backend == "aoti":
        from smokeclear.engines.aoti_engine import AotiEngine

        def package_for(prepared, example):
            return aoti_package(request, prepared, example)

        return AotiEngine(lambda: module, package_for, device=choice.device), choice
    from smokeclear.engines.torch_engine import TorchEngine

    return TorchEngine(lambda: module, device=choice.device), choice


def engine_factory(request: EngineRequest) -> Callable[[], Engine]:
    """A function making fresh, unstarted engines of the same kind (recovery after a hang)."""
    return lambda: create_engine(request)[0]
