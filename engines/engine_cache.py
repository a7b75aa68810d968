"""The TensorRT engine cache: plans keyed by everything that makes them valid.

A plan only runs on the TensorRT version and GPU it was built for, and only means
something for the model bytes, precision, shape profile and optimisation level it
was built with; all of these form the :class:`EngineKey`. An entry is
``cache_dir()/engines/<digest>.plan`` with a JSON sidecar ``<digest>.json`` that
describes the key (and the model's ``input_multiple``), so ``smokeclear engines
list`` can say what is there without TensorRT.

Builds take minutes, so a cached plan that no longer deserialises (corrupt,
truncated, or made by another TensorRT version) is reported with a warning naming
the file and rebuilt, instead of failing the run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from smokeclear.engines.base import EngineError
from smokeclear.engines.tensorrt_support import ShapeProfile

log = logging.getLogger(__name__)

SIDECAR_FORMAT = 1
T = TypeVar("T")


@dataclass(frozen=True)
class EngineKey:
    """Everything a TensorRT plan depends on.

    ``profile`` is (min, opt, max) NCHW input shapes.
    """

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    profile: ShapeProfile
    optimization_level: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "onnx_sha256": self.onnx_sha256,
            "tensorrt_version": self.tensorrt_version,
            "gpu_name": self.gpu_name,
            "compute_capability": self.compute_capability,
            "precision": self.precision,
            "profile": [list(shape) for shape in self.profile],
            "optimization_level": self.optimization_level,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineKey:
        """The inverse of :meth:`to_dict`; ValueError names a missing or bad field."""
        names = (
            "onnx_sha256",
            "tensorrt_version",
            "gpu_name",
            "compute_capability",
            "precision",
            "profile",
            "optimization_level",
        )
        missing = [name for name in names if name not in data]
        if missing:
            raise ValueError(f"engine key lacks {', '.join(missing)}")
        try:
            profile = tuple(tuple(int(size) for size in shape) for shape in data["profile"])
            return cls(
                onnx_sha256=str(data["onnx_sha256"]),
                tensorrt_version=str(data["tensorrt_version"]),
                gpu_name=str(data["gpu_name"]),
                compute_capability=str(data["compute_capability"]),
                precision=str(data["precision"]),
                profile=profile,
                optimization_level=int(data["optimization_level"]),
            )
        except (TypeError, ValueError) as error:
            raise ValueError(f"bad engine key: {error}") from None

    def digest(self) -> str:
        """sha256 over the canonical JSON of every field."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    """One plan in the cache; ``key`` is None when its sidecar is missing or unreadable."""

    plan: Path
    key: EngineKey | None
    size_bytes: int
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return str(self.info.get("label") or "?")


# --------------------------------------------------------------------------- paths and files


def engines_dir() -> Path:
    from smokeclear.runtime import cache_dir

    return cache_dir() / "engines"


def plan_path(key: EngineKey) -> Path:
    return engines_dir() / f"{key.digest()[:32]}.plan"


def sidecar_path(plan: Path) -> Path:
    return plan.with_suffix(".json")


def timing_cache_path(tensorrt_version: str, gpu_name: str, compute_capability: str) -> Path:
    """One persistent timing cache per TensorRT version and GPU model."""
    slug = re.sub(r"[^a-z0-9]+", "-", gpu_name.lower()).strip("-") or "gpu"
    name = f"trt{tensorrt_version}-{slug}-sm{compute_capability.replace('.', '')}.cache"
    return engines_dir() / "timing" / name


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_sidecar(plan: Path, key: EngineKey, info: dict[str, Any] | None = None) -> Path:
    """Describe ``plan`` in its JSON sidecar (written atomically)."""
    document = {
        **(info or {}),
        "format": SIDECAR_FORMAT,
        "digest": key.digest(),
        "key": key.to_dict(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    path = sidecar_path(plan)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    partial.replace(path)
    return path


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """The sidecar's content, or None when it is missing or not a JSON object."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def sidecar_key(document: dict[str, Any] | None) -> EngineKey | None:
    if not document or not isinstance(document.get("key"), dict):
        return None
    try:
        return EngineKey.from_dict(document["key"])
    except ValueError:
        return None


# --------------------------------------------------------------------------- listing


def list_entries() -> list[CacheEntry]:
    """Cached plans, oldest first (works without TensorRT)."""
    directory = engines_dir()
    if not directory.is_dir():
        return []
    entries = []
    plans = sorted(directory.glob("*.plan"), key=lambda path: (path.stat().st_mtime, path.name))
    for plan in plans:
        document = read_sidecar(sidecar_path(plan)) or {}
        entries.append(CacheEntry(plan, sidecar_key(document), plan.stat().st_size, document))
    return entries


def clear(timing_caches: bool = False) -> int:
    """Delete every cached plan (and its sidecar); returns how many plans went.

    Timing caches only speed up builds and stay unless ``timing_caches``.
    """
    directory = engines_dir()
    if not directory.is_dir():
        return 0
    removed = 0
    for path in directory.iterdir():
        if not path.is_file():
            continue
        if path.suffix == ".plan":
            removed += 1
        elif path.suffix != ".json" and not path.name.endswith(".partial"):
            continue
        path.unlink(missing_ok=True)
    timing = directory / "timing"
    if timing_caches and timing.is_dir():
        for path in timing.iterdir():
            path.unlink(missing_ok=True)
    return removed


# --------------------------------------------------------------------------- load or build


def key_for(
    onnx_path: Path,
    precision: str,
    profile: ShapeProfile,
    optimization_level: int,
    device: int = 0,
) -> EngineKey:
    """The key for building ``onnx_path`` here (asks TensorRT and the GPU)."""
    from smokeclear.engines.cuda_runtime import gpu_identity
    from smokeclear.engines.tensorrt_support import require_tensorrt

    trt = require_tensorrt()
    gpu_name, compute_capability = gpu_identity(device)
    return EngineKey(
        onnx_sha256=sha256_file(onnx_path),
        tensorrt_version=trt.__version__,
        gpu_name=gpu_name,
        compute_capability=compute_capability,
        precision=precision,
        profile=tuple(tuple(int(size) for size in shape) for shape in profile),
        optimization_level=optimization_level,
    )


def load_or_build(
    key: EngineKey,
    build: Callable[[Path], Any],
    deserialize: Callable[[bytes], T | None],
    *,
    info: dict[str, Any] | None = None,
) -> tuple[T, Path]:
    """The deserialised engine for ``key``: from the cache, else built and cached.

    Args:
        build: writes a plan to the path it is given (minutes). What it returns is
            kept in the sidecar when it has a ``seconds`` attribute.
        deserialize: plan bytes -> engine, or None when they cannot be used (a
            corrupt, truncated or foreign plan); TensorRT's ``deserialize_cuda_engine``.
        info: extra fields for the sidecar (label, ONNX path, input multiple).

    Returns:
        the engine and the plan's path.
    """
    plan = plan_path(key)
    if plan.is_file():
        engine = _load_cached(plan, key, deserialize)
        if engine is not None:
            log.info("TensorRT engine from the cache: %s", plan)
            return engine, plan
        plan.unlink(missing_ok=True)
        sidecar_path(plan).unlink(missing_ok=True)
    plan.parent.mkdir(parents=True, exist_ok=True)
    partial = plan.with_name(f".{plan.stem}.{os.getpid()}.partial")
    try:
        report = build(partial)
        if not partial.is_file() or partial.stat().st_size == 0:
            raise EngineError(f"the TensorRT build wrote no engine to {partial}")
        engine = deserialize(partial.read_bytes())
        if engine is None:
            raise EngineError(f"the TensorRT engine just built for {plan} cannot be deserialised")
        details = dict(info or {})
        if hasattr(report, "seconds"):
            details["build_seconds"] = round(float(report.seconds), 1)
        write_sidecar(plan, key, details)
        partial.replace(plan)
    finally:
        partial.unlink(missing_ok=True)
    log.info("TensorRT engine cached: %s", plan)
    return engine, plan


def _load_cached(plan: Path, key: EngineKey, deserialize: Callable[[bytes], T | None]) -> T | None:
    """The cached engine, or None (with a warning naming the file) when it must be rebuilt."""
    stored = sidecar_key(read_sidecar(sidecar_path(plan)))
    if stored != key:
        log.warning(
            "cached TensorRT engine %s has no matching description (%s): rebuilding it",
            plan,
            sidecar_path(plan).name,
        )
        return None
    engine = deserialize(plan.read_bytes())
    if engine is None:
        log.warning(
            "cached TensorRT engine %s cannot be deserialised (corrupt, truncated, or built by "
            "another TensorRT version): rebuilding it",
            plan,
        )
    return engine
