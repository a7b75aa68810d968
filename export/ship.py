"""Write the ONNX models shipped as package data: ``python -m smokeclear.export.ship``.

A first run should not wait for an export (about 17 s, and torch on the box): the
wheel carries every registered restorer's FP32 model at work scale 0.5, the CPU
default that onnxruntime runs, about 8 MB in all (work scale 1 as well would double
it to 16 MB, for the onnxruntime CPU path at full resolution only: a GPU box runs
TensorRT's frame model or torch). Each file is ``smokeclear/models/STEM.onnx`` and
records its provenance (weights, sources, work scale, output mode, I/O kind;
:func:`smokeclear.onnx_models.provenance`), so the runtime uses it only for exactly
those inputs, and ``tests/smokeclear/test_onnx_models.py`` fails when one is stale.
Anything else is exported once into the cache (with torch) or given with ``--onnx``.

Run it after changing weights, a network or the exporter, then commit the files:

    python -m smokeclear.export.ship            # write the stale or missing models
    python -m smokeclear.export.ship --check    # list them; exit 1 when any is stale
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from smokeclear.onnx_models import SHIPPED_DIR, model_metadata, provenance, stale_fields
from smokeclear.registry import REGISTRY
from smokeclear.runtime import EngineRequest

#: Work scales shipped: 0.5, the CPU profile's default (onnxruntime's).
SHIPPED_WORK_SCALES = (0.5,)
#: Above this the wheel carries more model than the default runs need.
SIZE_BUDGET_BYTES = 12 * 1024 * 1024


def shipped_requests() -> list[EngineRequest]:
    """Every registered restorer alone, shipped weights, at each shipped work scale."""
    return [
        EngineRequest((spec,), work_scale=scale)
        for spec in REGISTRY.values()
        for scale in SHIPPED_WORK_SCALES
    ]


def stale_reason(request: EngineRequest, folder: Path) -> str | None:
    """Why ``folder``'s model of ``request`` cannot be shipped as is; None when fresh."""
    path = folder / f"{request.artefact_stem}.onnx"
    if not path.is_file():
        return "missing"
    stale = stale_fields(model_metadata(path), provenance(request))
    return f"{', '.join(stale)} changed" if stale else None


def write_models(requests: list[EngineRequest], folder: Path) -> list[Path]:
    """Export each stale or missing model of ``requests`` into ``folder``; returns all paths."""
    from smokeclear.runtime import export_checked_onnx

    paths = []
    for request in requests:
        path = folder / f"{request.artefact_stem}.onnx"
        reason = stale_reason(request, folder)
        if reason is not None:
            export_checked_onnx(request, path, why=f"shipped model {reason}")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m smokeclear.export.ship", description=__doc__)
    parser.add_argument("--out", type=Path, default=SHIPPED_DIR, help="default: %(default)s")
    parser.add_argument("--check", action="store_true", help="only report; exit 1 when stale")
    args = parser.parse_args(argv)
    # Our export lines only; the exporters' own INFO chatter stays quiet.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("smokeclear")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        return _ship(args)
    finally:  # called in-process by the tests: leave no handler on a closed stream
        logger.removeHandler(handler)


def _ship(args: argparse.Namespace) -> int:
    requests = shipped_requests()
    if args.check:
        reasons = {r.artefact_stem: stale_reason(r, args.out) for r in requests}
        for stem, reason in reasons.items():
            print(f"{stem}.onnx: {reason or 'fresh'}")
        return 1 if any(reasons.values()) else 0
    paths = write_models(requests, args.out)
    for leftover in sorted(set(args.out.glob("*.onnx")) - set(paths)):
        print(f"removing {leftover.name} (not shipped)")
        leftover.unlink()
    total = sum(path.stat().st_size for path in paths)
    for path in paths:
        print(f"{path.stat().st_size / 2**20:6.2f} MB  {path}")
    print(f"{total / 2**20:6.2f} MB in all")
    if total > SIZE_BUDGET_BYTES:
        print(f"warning: over the {SIZE_BUDGET_BYTES / 2**20:.0f} MB budget", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
