"""AOTInductor backend on the CPU: compiled once, same pictures, any size, self-healing cache.

Compiling takes a minute or two on two cores, so one test does it once and checks
everything that needs the compiled package.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from smokeclear.engines.aoti_engine import AotiEngine
from smokeclear.export.aoti import compile_package
from smokeclear.nets.loading import load_restorer
from smokeclear.nets.wrappers import WorkScale
from smokeclear.registry import get_restorer
from smokeclear.synthetic.scene import LaparoscopicScene

DESMOKE = get_restorer("desmoke")


@pytest.mark.slow
@pytest.mark.timeout(900)  # the C++ compile alone takes 2-4 minutes on two cores
def test_aoti_engine_recovers_from_a_corrupt_package_and_matches_torch(
    tiny_weights, tmp_path, caplog, torch_reference
):
    packages: list[Path] = []

    def package_for(module, example):
        path = tmp_path / f"package-{len(packages)}.pt2"
        if not packages:
            path.write_bytes(b"not a package")  # what a crashed earlier compile leaves
        else:
            compile_package(module, example, path)
        packages.append(path)
        return path

    module = WorkScale(load_restorer(DESMOKE, tiny_weights), 1.0).eval()
    engine = AotiEngine(lambda: module, package_for, device="cpu")
    with caplog.at_level(logging.WARNING):
        engine.start(64, 64)
    assert len(packages) == 2 and not packages[0].exists()
    assert "cannot be loaded" in caplog.text and engine.name == "aoti-cpu-fp32"
    # Dynamic H and W; unpadded sizes (64x64, 64x96) reach the engine as permuted views.
    for height, width in [(64, 64), (37, 53), (64, 96), (96, 32)]:
        frame = LaparoscopicScene(width, height, seed=2).render(40).smoky
        out = engine.download(engine.infer(engine.upload(frame)), height, width)
        assert np.abs(out.astype(int) - torch_reference(tiny_weights, frame)).max() <= 1
    engine.close()


def test_cuda_graphs_need_a_cuda_device(tiny_weights):
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        AotiEngine(lambda: None, lambda module, example: Path(), device="cpu", cuda_graphs=True)


def test_detail_gain_cannot_change_in_a_compiled_package(tiny_smooth_weights, monkeypatch, caplog):
    """The package compiles the gain in: the engine says so once and reports False."""
    from smokeclear.runtime import EngineRequest, build_chain

    request = EngineRequest(
        (get_restorer("smooth"),), weights={"smooth": tiny_smooth_weights}, detail_gain=2.0
    )
    module = build_chain(request)
    # Run the module itself instead of a compiled package (minutes to build): only the
    # engine's answer is under test here.
    monkeypatch.setattr(AotiEngine, "_load", lambda self, module, example: module)
    engine = AotiEngine(lambda: module, lambda module, example: Path(), device="cpu")
    engine.start(32, 32)
    with caplog.at_level(logging.WARNING):
        assert engine.set_detail_gain(3.0) is False
        assert engine.set_detail_gain(4.0) is False
    warnings = [r.getMessage() for r in caplog.records if "detail gain" in r.getMessage()]
    assert len(warnings) == 1 and "stays x2" in warnings[0], warnings
    engine.close()
