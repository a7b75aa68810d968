"""A daemon on 127.0.0.1 (a free port) with the synthetic scene at 160x96, shared by
the tests of this folder, and the helpers to talk to it.

The torch backend on the CPU runs the shipped weights without an ONNX export; 10 fps
leaves the 2-core CI machine room for the tests themselves.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

pytest.importorskip("fastapi", reason='needs the serve extra: pip install "smokeclear[serve]"')
httpx = pytest.importorskip("httpx", reason="needs httpx (the test extra)")

TOKEN = "test-token-0123456789abcdef"
PIPELINE = {
    "source": "synthetic",
    "fps": 10,
    "size": "160x96",
    "backend": "torch",
    "device": "cpu",
}


def write_config(folder: Path, pipelines: list[dict], **server) -> Path:
    """A serve.yaml in ``folder`` with a 600 token file; returns its path."""
    token_file = folder / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    path = folder / "serve.yaml"
    settings = {"host": "127.0.0.1", "port": 0, "token_file": str(token_file)} | server
    path.write_text(yaml.safe_dump({"server": settings, "pipelines": pipelines}))
    return path


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> object:
    """Poll ``condition`` until it is truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}")


@pytest.fixture(scope="session")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("recordings")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, recordings: Path) -> Iterator[object]:
    """One running daemon per test module, pipeline ``or1``; tests put back what they
    change. It stops with its module, every thread it started with it: a graph left
    running would draw frames and log into the tests that follow."""
    from smokeclear.stream.serve.config import load_serve_config
    from smokeclear.stream.serve.daemon import Daemon

    folder = tmp_path_factory.mktemp("serve")
    record = {"dir": str(recordings), "segment_seconds": 60, "autostart": False}
    pipeline = {"name": "or1", **PIPELINE, "record": record}
    config = load_serve_config(write_config(folder, [pipeline]))
    before = set(threading.enumerate())
    running = Daemon(config)
    running.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{running.port}", timeout=30) as client:
            wait_for(lambda: client.get("/readyz").status_code == 200, 60, "or1 to show frames")
        yield running
    finally:
        running.close()
    # An event loop's idle executor threads ("asyncio_N", Playwright's or uvicorn's) run
    # nothing and end with the process; a pipeline's graph threads must end now.
    deadline = time.monotonic() + 30
    while left := [
        t.name
        for t in threading.enumerate()
        if t not in before and t.is_alive() and not t.name.startswith("asyncio_")
    ]:
        if time.monotonic() > deadline:
            pytest.fail(f"threads the daemon started still run 30 s after it closed: {left}")
        time.sleep(0.05)


@pytest.fixture
def client(daemon) -> Iterator[httpx.Client]:
    """An httpx client of the daemon carrying the token."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    base = f"http://127.0.0.1:{daemon.port}"
    with httpx.Client(base_url=base, headers=headers, timeout=60) as authorised:
        yield authorised


@pytest.fixture
def anonymous(daemon) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{daemon.port}", timeout=30) as plain:
        yield plain


def smokeclear_env() -> dict[str, str]:
    """The environment of a ``python -m smokeclear`` child: this checkout first."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env
