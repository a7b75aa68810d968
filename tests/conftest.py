"""Shared fixtures: tiny trained-looking weights, test-double engines, log policing.

Tests run on the CPU by default. Markers: ``gpu`` (needs CUDA), ``trt`` (needs
TensorRT), ``slow``. Any test that logs an ERROR fails unless it is marked
``expect_errors``: an error in the log is a bug until a test says otherwise.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "expect_errors: the test provokes ERROR log records")


@pytest.fixture(autouse=True)
def _fail_on_error_logs(request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger="smokeclear")
    yield
    if request.node.get_closest_marker("expect_errors"):
        return
    errors = [r for r in caplog.get_records("call") if r.levelno >= logging.ERROR]
    if errors:
        pytest.fail("unexpected ERROR log: " + "; ".join(r.getMessage() for r in errors))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """One ONNX cache per test session, never the user's."""
    monkeypatch.setenv("SMOKECLEAR_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A width-4 desmoke network with non-trivial random weights and BN statistics."""
    import torch

    from smokeclear.nets.desmoke import DesmokeConfig, DesmokeNet
    from smokeclear.nets.loading import save_weights
    from smokeclear.registry import get_restorer

    torch.manual_seed(0)
    net = DesmokeNet(DesmokeConfig(width=4, max_channels=16))
    net.train()
    with torch.no_grad():  # give BatchNorm real running statistics
        for _ in range(3):
            net(torch.rand(2, 3, 64, 64))
    path = tmp_path_factory.mktemp("weights") / "tiny-desmoke.safetensors"
    save_weights(net.eval(), path, get_restorer("desmoke"), {"purpose": "tests"})
    return path


# --------------------------------------------------------------------------- test doubles


class InvertEngine:
    """A numpy engine double: output = 255 - input, with optional delay, hang or failure.

    Args:
        delay_s: time each ``infer`` takes.
        hang: an event; ``infer`` blocks until it is set (a hung GPU).
        fail_every: ``infer`` raises on every n-th call (1: always).
    """

    def __init__(
        self, delay_s: float = 0.0, hang: threading.Event | None = None, fail_every: int = 0
    ) -> None:
        self.name = "invert-double"
        self.delay_s = delay_s
        self.hang = hang
        self.fail_every = fail_every
        self.calls = 0
        self.started = 0
        self.closed = False

    def start(self, height: int, width: int) -> None:
        self.started += 1

    def upload(self, frame: np.ndarray) -> np.ndarray:
        return frame.copy()

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.hang is not None:
            self.hang.wait()
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail_every and self.calls % self.fail_every == 0:
            raise RuntimeError("simulated inference failure")
        return 255 - tensor

    def download(self, tensor: np.ndarray, height: int, width: int) -> np.ndarray:
        return tensor[:height, :width]

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def invert_engine_class() -> type[InvertEngine]:
    return InvertEngine
