"""``smokeclear engines list|build|clear``: listing and clearing work without TensorRT;
building without it, or with bad arguments, is one clear line and exit status 2."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from smokeclear.cli import main
from smokeclear.engines import engine_cache
from smokeclear.engines.engine_cache import EngineKey


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SMOKECLEAR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "engines"


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("smokeclear: error: "), err
    assert "Traceback" not in err[0]
    return err[0]


def add_entry(key: EngineKey) -> Path:
    """A cache entry as `engines build` leaves it: a plan file and its JSON sidecar.

    The plan bytes are a placeholder; listing and clearing read only the files."""
    plan = engine_cache.plan_path(key)
    plan.parent.mkdir(parents=True, exist_ok=True)
    plan.write_bytes(b"placeholder, not a TensorRT plan" * 1024)
    engine_cache.write_sidecar(plan, key, {"label": "desmoke", "input_multiple": 32})
    return plan


def test_list_on_an_empty_cache(capsys, own_cache):
    assert main(["engines", "list"]) == 0
    assert capsys.readouterr().out.strip() == f"no cached TensorRT engines in {own_cache}"


def test_list_describes_each_entry_and_clear_removes_them(capsys, own_cache, engine_key):
    plan = add_entry(engine_key())
    orphan = own_cache / "orphan.plan"
    orphan.write_bytes(b"x")
    assert main(["engines", "list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    described = next(line for line in lines if str(plan) in line)
    for text in ("desmoke", "fp16", "min 736x1280, opt 736x1280, max 1088x1920"):
        assert text in described
    assert "TensorRT 10.13.3.9" in described and "NVIDIA H100 80GB HBM3 (sm 9.0)" in described
    assert "no description" in next(line for line in lines if str(orphan) in line)

    assert main(["engines", "clear"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == f"removed 2 cached TensorRT engine(s) from {own_cache}"
    assert engine_cache.list_entries() == []


def test_build_without_tensorrt_is_one_line(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    code = main(["engines", "build", "--sizes", "1280x720,1920x1080", "--precision", "fp16"])
    line = one_error_line(capsys)
    assert code == 2
    assert "needs TensorRT" in line and 'pip install "smokeclear[gpu]"' in line


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["engines"], "required"),
        (["engines", "defrag"], "invalid choice"),
        (["engines", "build", "--sizes", "1280by720"], "bad frame size '1280by720'"),
        (["engines", "build", "--sizes", ","], "--sizes is empty"),
        (["engines", "build", "--opt-level", "9"], "invalid choice: 9"),
        (["engines", "build", "--precision", "int8"], "invalid choice: 'int8'"),
        (["engines", "build", "--workspace-gb", "0"], "--workspace-gb 0.0 is out of range"),
        (["engines", "build", "--restorer", "desmok"], "unknown restorer 'desmok'"),
        (["engines", "build", "--work-scale", "0.3"], "bad --work-scale"),
        (["engines", "build", "--onnx", "missing.onnx"], "missing.onnx does not exist"),
    ],
)
def test_bad_engines_arguments_are_one_line(argv, message, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    code = main(argv)
    line = one_error_line(capsys)
    assert code == 2
    assert message in line, line
