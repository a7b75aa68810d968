"""From a restorer request to a started-ready engine: backend choice and model artefacts.

This is where the layers meet: it builds torch modules for the torch backend and
exports (and caches) ONNX files for onnxruntime and TensorRT, so the engines
themselves stay free of export and training code. Those two backends need no torch
when an ONNX model fits (given, shipped or cached: :mod:`smokeclear.onnx_models`).
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
    work_scale: float = 1.0  # run the chain at 1, 0.5 or 0.25 of the frame, guided-upsample back
    weights: dict[str, Path] = field(default_factory=dict)  # restorer name -> weights file
    # None: smooth restorers output the smooth image; K >= 0: they magnify detail,
    # ``base + K * (input - base)``. K is only the starting value: engines change it live.
    detail_gain: float | None = None
    # --onnx: an ONNX file or a `smokeclear export --out` folder for onnxruntime and
    # TensorRT. None: the shipped model when it fits these weights, else the cache.
    onnx: Path | None = None

    @property
    def label(self) -> str:
        return "+".join(spec.name for spec in self.restorers)

    @property
    def artefact_stem(self) -> str:
        """Start of cached model file names: chain, output mode and work scale."""
        mode = "-detail" if self.detail_gain is not None else ""
        return f"{self.label}{mode}-w{self.work_scale:g}"


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
    """The torch module for the request: restorers in order, at the work scale.

    Deployment form of every member (:func:`~smokeclear.nets.loading.deployment_module`):
    eval mode, batch norms folded where its spec says so, and in detail mode wrapped
    in its spec's detail stage at ``request.detail_gain``.
    """
    from smokeclear.nets.loading import deployment_module
    from smokeclear.nets.wrappers import RestorerChain, WorkScale

    check_detail_gain(request)
    members = [
        deployment_module(spec, weights_path(request, spec), request.detail_gain)
        for spec in request.restorers
    ]
    chain = members[0] if len(members) == 1 else RestorerChain(members)
    return WorkScale(chain, request.work_scale).eval()


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
    fields = [f"{request.work_scale:g}", *mode, torch.__version__, __version__, *extra]
    digest.update("|".join(fields).encode())
    return digest.hexdigest()


def onnx_key(request: EngineRequest) -> str:
    """Content key of the exported ONNX model, computed without torch.

    Weights, network and exporter sources (the opset included), work scale
    and output mode: :func:`smokeclear.onnx_models.provenance`.
    """
    from smokeclear.onnx_models import provenance_key

    return provenance_key(request)


def onnx_model(request: EngineRequest, frame_io: bool = False) -> Path:
    """The ONNX file for ``request``: given, shipped or cached; else exported to the cache.

    ``frame_io``: the model with the pixel work in the graph (uint8 BGR frames in and
    out, see :func:`~smokeclear.export.onnx_export.export_onnx`); a given model is used
    as it is. Only the export needs torch; without it, that is a UserError naming the fixes.
    """
    from smokeclear.onnx_models import cached_path, export_needs_torch, find_onnx

    check_detail_gain(request)
    found = find_onnx(request, frame_io)
    if found is not None:
        return found
    export_needs_torch(request)
    path = cached_path(request, frame_io)
    export_checked_onnx(request, path, why="first run with these weights", frame_io=frame_io)
    return path


def export_checked_onnx(
    request: EngineRequest, path: Path, why: str, frame_io: bool = False
) -> None:
    """Export ``request`` to ``path`` with its provenance metadata, gated by a parity check.

    ``why`` the export runs, for the log line that announces it.
    """
    import torch

    from smokeclear.engines.device_pixels import PixelIO
    from smokeclear.export.fp16 import FP32_MAX_ABS_ERROR
    from smokeclear.export.onnx_export import FRAME_MAX_ABS_ERROR, check_parity, export_onnx
    from smokeclear.onnx_models import provenance

    # Loading first turns missing or corrupt weights into the user's one-line error,
    # before anything announces an export.
    module = build_chain(request)
    log.info("exporting %s to ONNX (%s) into %s", request.label, why, path.parent)
    metadata = {"smokeclear": __version__, "precision": "fp32", **provenance(request, frame_io)}
    export_onnx(module, path, metadata, frame_io=frame_io)
    multiple = module.input_multiple
    if frame_io:
        frame = torch.randint(0, 256, (2 * multiple + 1, 3 * multiple + 1, 3), dtype=torch.uint8)
        report, limit = check_parity(PixelIO(module), path, [frame]), FRAME_MAX_ABS_ERROR
    else:
        sample = torch.rand(1, 3, 2 * multiple, 3 * multiple)
        report, limit = check_parity(module, path, [sample]), FP32_MAX_ABS_ERROR
    log.info("ONNX parity: %s", report)
    if report.max_abs_error > limit:
        path.unlink()
        raise RuntimeError(f"exported ONNX disagrees with PyTorch: {report}")


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


def onnx_fp16_model(request: EngineRequest, frame_io: bool = False) -> Path:
    """The FP16 ONNX (guided filter in FP32): given, or converted into the cache on first use.

    A cached FP32 model gets its FP16 copy beside it; a shipped or given one gets it
    in the cache, keyed by the FP32 file's content.
    """
    from smokeclear.export.fp16 import convert_to_fp16
    from smokeclear.onnx_models import file_digest, given_onnx, model_metadata

    if request.onnx is not None:
        given = given_onnx(request, precision="fp16")
        if model_metadata(given).get("precision") == "fp16":
            return given
    fp32_path = onnx_model(request, frame_io)
    path = fp32_path.with_suffix(".fp16.onnx")
    if fp32_path.parent != cache_dir() / "onnx":
        name = f"{request.artefact_stem}-{file_digest(fp32_path)[:16]}.fp16.onnx"
        path = cache_dir() / "onnx" / name
    if not path.is_file():
        scopes = [scope for spec in request.restorers for scope in spec.fp32_modules]
        convert_to_fp16(fp32_path, path, fp32_scopes=scopes)
    return path


def tensorrt_engine(request: EngineRequest) -> Engine:
    """A TensorRT engine for ``request``: built for the first frame's size, then cached.

    The engine is built from the FP16 ONNX (strongly typed, guided filter in FP32), so
    TensorRT 10 and 11 build the same network. It is a frame model (uint8 BGR frames
    in and out, the pixel work in the engine); its shape profile runs from one input
    multiple up to the first frame's size, tuned for that size.
    """
    import onnx

    from smokeclear.engines.cuda_runtime import gpu_identity
    from smokeclear.engines.engine_cache import timing_cache_path
    from smokeclear.engines.tensorrt_engine import CachedPlan, TensorRTEngine
    from smokeclear.export.tensorrt_build import build_engine

    onnx_path = onnx_fp16_model(request, frame_io=True)
    metadata = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    multiple = int(metadata.get("input_multiple", "1"))

    def plan_for(height: int, width: int) -> CachedPlan:
        import tensorrt

        frame = (height, width, 3)
        smallest = (min(multiple, height), min(multiple, width), 3)
        profile = (smallest, frame, frame)
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
        from smokeclear.engines.onnxruntime_engine import OnnxRuntimeEngine, prefers_frame_models

        path = onnx_model(request, frame_io=prefers_frame_models())
        return OnnxRuntimeEngine(path, detail_gain=request.detail_gain), choice
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
