"""From a restorer request to a started-ready engine: backend choice and model artefacts.

This is where the layers meet: it builds torch modules for the torch backend and
exports (and caches) ONNX files for onnxruntime, so the engines themselves stay
free of export and training code.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from smokeclear import __version__
from smokeclear.engines.base import Engine
from smokeclear.engines.select import BackendChoice, choose_backend
from smokeclear.registry import PACKAGE_DIR, RestorerSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineRequest:
    restorers: tuple[RestorerSpec, ...]
    backend: str = "auto"
    device: str | None = None  # None: the GPU when there is one
    work_divisor: int = 1  # run the chain at 1/divisor resolution, guided-upsample back
    weights: dict[str, Path] = field(default_factory=dict)  # restorer name -> weights file

    @property
    def label(self) -> str:
        return "+".join(spec.name for spec in self.restorers)


def cache_dir() -> Path:
    """``$SMOKECLEAR_CACHE``, else ``$XDG_CACHE_HOME/smokeclear``, else ``~/.cache/smokeclear``."""
    if "SMOKECLEAR_CACHE" in os.environ:
        return Path(os.environ["SMOKECLEAR_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "smokeclear"


def weights_path(request: EngineRequest, spec: RestorerSpec) -> Path:
    return request.weights.get(spec.name, spec.weights)


def build_chain(request: EngineRequest):
    """The torch module for the request: restorers in order, at the working resolution."""
    from smokeclear.nets.loading import load_restorer
    from smokeclear.nets.wrappers import RestorerChain, WorkingResolution

    members = [load_restorer(spec, weights_path(request, spec)) for spec in request.restorers]
    chain = members[0] if len(members) == 1 else RestorerChain(members)
    return WorkingResolution(chain, request.work_divisor).eval()


def onnx_key(request: EngineRequest) -> str:
    """Content key of the exported model: weights, network code, wrapper, exporter."""
    import torch

    from smokeclear.export.onnx_export import OPSET

    digest = hashlib.sha256()
    for spec in request.restorers:
        digest.update(weights_path(request, spec).read_bytes())
    for source in sorted((PACKAGE_DIR / "nets").glob("*.py")):
        digest.update(source.read_bytes())
    digest.update(f"{request.work_divisor}|{OPSET}|{torch.__version__}|{__version__}".encode())
    return digest.hexdigest()


def onnx_model(request: EngineRequest) -> Path:
    """The cached ONNX file for ``request``, exported (and parity-checked) on first use."""
    import onnx
    import torch

    from smokeclear.export.onnx_export import check_parity, export_onnx

    # Loading first turns missing or corrupt weights into the user's error before
    # anything is hashed or exported.
    module = build_chain(request)
    name = f"{request.label}-w{request.work_divisor}-{onnx_key(request)[:16]}.onnx"
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


def create_engine(request: EngineRequest) -> tuple[Engine, BackendChoice]:
    """An engine for ``request`` (not yet started) and why that backend was chosen."""
    choice = choose_backend(request.backend, request.device)
    if choice.backend == "onnxruntime":
        from smokeclear.engines.onnxruntime_engine import OnnxRuntimeEngine

        return OnnxRuntimeEngine(onnx_model(request)), choice
    from smokeclear.engines.torch_engine import TorchEngine

    # Load once here so bad weights fail now, with the user's error, not in a thread.
    module = build_chain(request)
    return TorchEngine(lambda: module, device=choice.device), choice


def engine_factory(request: EngineRequest) -> Callable[[], Engine]:
    """A function making fresh, unstarted engines of the same kind (recovery after a hang)."""
    return lambda: create_engine(request)[0]
