"""Finding a restorer chain's ONNX model without torch: given, shipped or cached.

The onnxruntime and TensorRT backends run from an ONNX file alone, so a deployment
box needs neither torch nor the networks' code. :func:`find_onnx` looks, in order:

1. **given**: ``--onnx PATH``, a file or a folder that ``smokeclear export --out``
   wrote (``LABEL.onnx``, ``LABEL.fp16.onnx``). The user chose it: it is checked for
   the chain and output mode it serves, and against ``--weights`` when those are given.
2. **shipped**: ``smokeclear/models/STEM.onnx`` (package data, written by
   ``python -m smokeclear.export.ship``), used only when its provenance metadata
   equals the request's: the sha256 of every weights file, of the exporter's and
   networks' sources (which hold the opset), the work scale and the output mode.
   Other ``--weights`` than the shipped ones therefore never use a shipped model.
3. **cached**: ``$SMOKECLEAR_CACHE/onnx/STEM-KEY.onnx``, keyed by that same provenance.

When none fits, the caller exports (:func:`smokeclear.runtime.onnx_model`), which
needs torch; :func:`export_needs_torch` is the user's error when torch is missing.
Everything here imports and runs without torch.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from smokeclear.errors import UserError
from smokeclear.registry import PACKAGE_DIR

if TYPE_CHECKING:
    from smokeclear.runtime import EngineRequest

log = logging.getLogger(__name__)

#: Where ``python -m smokeclear.export.ship`` writes the ONNX shipped as package data.
SHIPPED_DIR = PACKAGE_DIR / "models"
#: Modules and packages whose source makes up an exported graph: a change to any
#: makes every exported model stale. A module that builds or wraps the exported
#: network (pixel formats in the graph, wrappers) belongs here.
EXPORT_SOURCES = (
    "smokeclear.nets",
    "smokeclear.engines.device_pixels",
    "smokeclear.export.onnx_export",
    "smokeclear.runtime",
)
#: Metadata keys that say what a model was exported from (see :func:`provenance`).
PROVENANCE_KEYS = (
    "restorers",
    "work_scale",
    "detail",
    "frame_io",
    "weights_sha256",
    "code_sha256",
)


def source_files(name: str) -> list[Path]:
    """The ``.py`` files of module or package ``name``, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"cannot find the source of {name}")
    if spec.submodule_search_locations:
        return sorted(
            path for folder in spec.submodule_search_locations for path in Path(folder).glob("*.py")
        )
    return [Path(spec.origin)]


def code_digest() -> str:
    """sha256 over the sources in :data:`EXPORT_SOURCES`, by file name and content."""
    digest = hashlib.sha256()
    for name in EXPORT_SOURCES:
        for path in source_files(name):
            digest.update(f"{name}/{path.name}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def weights_digests(request: EngineRequest) -> list[str]:
    """sha256 of each member's weights file, in chain order."""
    from smokeclear.runtime import weights_path

    digests = []
    for spec in request.restorers:
        path = weights_path(request, spec)
        if not path.is_file():
            raise UserError(
                f"weights file {path} does not exist",
                "Pass --weights with the path to a .safetensors file from `smokeclear train`.",
            )
        digests.append(file_digest(path))
    return digests


def provenance(request: EngineRequest, frame_io: bool = False) -> dict[str, str]:
    """What the ONNX model of ``request`` is exported from, as metadata strings.

    ``frame_io``: the frame model (pixel work in the graph, uint8 BGR frames in and out).
    The detail gain is not part of it: detail models take the gain as an input.
    """
    return {
        "restorers": request.label,
        "work_scale": f"{request.work_scale:g}",
        "detail": "1" if request.detail_gain is not None else "0",
        "frame_io": "bgr8" if frame_io else "none",
        "weights_sha256": ",".join(weights_digests(request)),
        "code_sha256": code_digest(),
    }


def provenance_key(request: EngineRequest, frame_io: bool = False) -> str:
    """Content key of the request's ONNX model: a digest of its :func:`provenance`."""
    fields = provenance(request, frame_io)
    text = "|".join(f"{key}={fields[key]}" for key in PROVENANCE_KEYS)
    return hashlib.sha256(text.encode()).hexdigest()


def model_metadata(path: Path) -> dict[str, str]:
    """The metadata_props of the ONNX file at ``path`` (weights not loaded)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {entry.key: entry.value for entry in model.metadata_props}


def model_stem(request: EngineRequest, frame_io: bool = False) -> str:
    """File name stem of the request's model: chain, output mode, work scale, I/O kind."""
    return request.artefact_stem + (".frames" if frame_io else "")


def shipped_path(request: EngineRequest, frame_io: bool = False) -> Path:
    return SHIPPED_DIR / f"{model_stem(request, frame_io)}.onnx"


def stale_fields(metadata: dict[str, str], expected: dict[str, str]) -> list[str]:
    """The provenance keys on which ``metadata`` differs from ``expected``."""
    return [key for key in PROVENANCE_KEYS if metadata.get(key) != expected[key]]


def shipped_onnx(request: EngineRequest, frame_io: bool = False) -> Path | None:
    """The shipped FP32 model of ``request`` when it was exported from exactly these inputs."""
    path = shipped_path(request, frame_io)
    if not path.is_file():
        return None
    stale = stale_fields(model_metadata(path), provenance(request, frame_io))
    if stale:
        log.debug("shipped %s does not fit this request (%s differ)", path.name, ", ".join(stale))
        return None
    return path


def cached_path(request: EngineRequest, frame_io: bool = False) -> Path:
    from smokeclear.runtime import cache_dir

    key = provenance_key(request, frame_io)[:16]
    return cache_dir() / "onnx" / f"{model_stem(request, frame_io)}-{key}.onnx"


def cached_onnx(request: EngineRequest, frame_io: bool = False) -> Path | None:
    """The cached FP32 model of ``request``, or None when missing or unreadable."""
    import onnx

    path = cached_path(request, frame_io)
    if not path.is_file():
        return None
    try:
        onnx.checker.check_model(str(path))
    except Exception as error:  # a truncated or corrupt cache entry
        log.warning(
            "cached model %s is unreadable (%s): exporting it again", path, type(error).__name__
        )
        return None
    return path


def given_onnx(request: EngineRequest, precision: str = "fp32") -> Path:
    """``request.onnx`` checked against the request; a folder gives ``LABEL[.fp16].onnx``.

    ``precision="fp32"`` (onnxruntime) prefers the folder's FP32 model, ``"fp16"``
    (TensorRT) its FP16 one (the caller converts an FP32 one); each falls back to the other.
    """
    given = request.onnx
    assert given is not None
    fix = "Pass --onnx a file or a folder written by `smokeclear export --out`."
    if given.is_dir():
        names = [f"{request.label}.onnx", f"{request.label}.fp16.onnx"]
        if precision == "fp16":
            names.reverse()
        found = [given / name for name in names if (given / name).is_file()]
        if not found:
            raise UserError(
                f"--onnx {given} holds no {' or '.join(names)}",
                f"Export it: smokeclear export {request.label} --out {given}",
            )
        path = found[0]
    elif given.is_file():
        path = given
    else:
        raise UserError(f"ONNX model {given} does not exist", fix)
    try:
        metadata = model_metadata(path)
    except Exception as error:
        unreadable = f"{path} is not a readable ONNX model ({type(error).__name__})"
        raise UserError(unreadable, fix) from None
    check_given(request, path, metadata)
    return path


def check_given(request: EngineRequest, path: Path, metadata: dict[str, str]) -> None:
    """UserError when the given model serves another chain, mode or ``--weights``."""
    chain = metadata.get("restorers")
    if chain is not None and chain != request.label:
        raise UserError(
            f"{path} is the {chain} model, but --restorer is {request.label}",
            f"Use --restorer {chain}, or export {request.label} with `smokeclear export`.",
        )
    takes_gain = "detail_gain" in metadata.get("inputs", "").split(",")
    if takes_gain != (request.detail_gain is not None):
        mode = "detail magnification" if takes_gain else "smoothing"
        raise UserError(
            f"{path} is exported for {mode}",
            "Pass --detail-gain K with a detail model; leave it out otherwise."
            if takes_gain
            else "Export the detail model: it is made with --detail-gain at export time.",
        )
    recorded = metadata.get("weights_sha256")
    if request.weights and recorded is not None and recorded != ",".join(weights_digests(request)):
        raise UserError(
            f"{path} was exported from other weights than --weights",
            f"Export these weights: smokeclear export {request.label} --weights ... --out DIR, "
            "or leave --weights out to run the model as it is.",
        )
    scale = metadata.get("work_scale")
    if scale is not None and scale != f"{request.work_scale:g}":
        log.info("%s runs the network at work scale %s (fixed at export)", path.name, scale)


def find_onnx(request: EngineRequest, frame_io: bool = False) -> Path | None:
    """The FP32 (or given) ONNX model of ``request``: given, shipped or cached; None to export.

    ``frame_io`` asks for the frame model; a given model is taken as it is (engines read
    its input type).
    """
    if request.onnx is not None:
        return given_onnx(request)
    found = shipped_onnx(request, frame_io) or cached_onnx(request, frame_io)
    if found is not None:
        log.debug("ONNX model of %s: %s", request.label, found)
    return found


def export_needs_torch(request: EngineRequest) -> None:
    """UserError naming the fixes when the model must be exported and torch is missing."""
    try:
        import torch  # noqa: F401
    except ImportError:
        scale = f"{request.work_scale:g}"
        raise UserError(
            f"no ONNX model of {request.label} at work scale {scale} fits these weights, and "
            "exporting one needs torch, which is not installed",
            f"On a machine with torch run `smokeclear export {request.label} --work-scale "
            f"{scale} --out DIR` and pass --onnx DIR here, or pip install torch.",
        ) from None
