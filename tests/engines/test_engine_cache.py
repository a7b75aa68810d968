"""The TensorRT engine cache: keys, sidecars, listing, and the load-or-rebuild decision.

``deserialize`` stands in for TensorRT's ``deserialize_cuda_engine`` as a callable
(bytes -> engine or None), so the decision logic runs without TensorRT; the
"plans" here are labelled byte strings, never presented as engines.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from smokeclear.engines import engine_cache
from smokeclear.engines.base import EngineError
from smokeclear.engines.engine_cache import EngineKey

GOOD_PLAN = b"test plan bytes that the stand-in deserialiser accepts"


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SMOKECLEAR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "engines"


def accept_good(plan: bytes) -> str | None:
    return "engine" if plan == GOOD_PLAN else None


class Builder:
    """Writes ``plan`` to the path it is given and counts the calls."""

    def __init__(self, plan: bytes = GOOD_PLAN) -> None:
        self.plan = plan
        self.calls = 0

    def __call__(self, path: Path):
        self.calls += 1
        path.write_bytes(self.plan)
        return type("Report", (), {"seconds": 93.25})()


# --------------------------------------------------------------------------- keys


@pytest.mark.parametrize(
    "change",
    [
        {"onnx_sha256": "cd" * 32},
        {"tensorrt_version": "11.4.0"},
        {"gpu_name": "NVIDIA L4"},
        {"compute_capability": "8.9"},
        {"precision": "fp32"},
        {"profile": ((1, 3, 736, 1280),) * 3},
        {"optimization_level": 5},
    ],
)
def test_every_field_changes_the_digest(change, engine_key):
    assert engine_key(**change).digest() != engine_key().digest()


def test_digest_is_stable_and_the_key_round_trips(engine_key):
    key = engine_key()
    assert key.digest() == engine_key().digest() and len(key.digest()) == 64
    assert EngineKey.from_dict(key.to_dict()) == key


def test_a_key_missing_a_field_is_named(engine_key):
    data = engine_key().to_dict()
    del data["precision"]
    with pytest.raises(ValueError, match="precision"):
        EngineKey.from_dict(data)
    with pytest.raises(ValueError, match="bad engine key"):
        EngineKey.from_dict({**engine_key().to_dict(), "profile": [["x"]]})


def test_sidecar_round_trip(own_cache, engine_key):
    key = engine_key()
    plan = engine_cache.plan_path(key)
    plan.parent.mkdir(parents=True)
    sidecar = engine_cache.write_sidecar(plan, key, {"label": "desmoke", "input_multiple": 32})
    assert sidecar == plan.with_suffix(".json") and plan.parent == own_cache
    document = engine_cache.read_sidecar(sidecar)
    assert engine_cache.sidecar_key(document) == key
    assert document["label"] == "desmoke" and document["input_multiple"] == 32
    assert document["digest"] == key.digest()


def test_unreadable_sidecars_read_as_none(tmp_path):
    assert engine_cache.read_sidecar(tmp_path / "missing.json") is None
    (tmp_path / "bad.json").write_text("{not json")
    assert engine_cache.read_sidecar(tmp_path / "bad.json") is None
    (tmp_path / "list.json").write_text("[1, 2]")
    assert engine_cache.read_sidecar(tmp_path / "list.json") is None
    assert engine_cache.sidecar_key({"key": {"precision": "fp16"}}) is None


def test_timing_cache_path_per_tensorrt_and_gpu(own_cache):
    path = engine_cache.timing_cache_path("10.13.3.9", "NVIDIA H100 80GB HBM3", "9.0")
    assert path == own_cache / "timing" / "trt10.13.3.9-nvidia-h100-80gb-hbm3-sm90.cache"


# --------------------------------------------------------------------------- list and clear


def test_list_and_clear_on_a_temporary_cache(own_cache, engine_key):
    assert engine_cache.list_entries() == []
    assert engine_cache.clear() == 0
    described = engine_key()
    engine_cache.load_or_build(described, Builder(), accept_good, info={"label": "desmoke"})
    orphan = own_cache / "0123.plan"
    orphan.write_bytes(b"a plan without a sidecar")
    timing = engine_cache.timing_cache_path("10.13.3.9", "NVIDIA H100", "9.0")
    timing.parent.mkdir(parents=True)
    timing.write_bytes(b"timing")

    entries = engine_cache.list_entries()
    assert {entry.plan for entry in entries} == {engine_cache.plan_path(described), orphan}
    by_plan = {entry.plan: entry for entry in entries}
    listed = by_plan[engine_cache.plan_path(described)]
    assert listed.key == described and listed.label == "desmoke"
    assert listed.size_bytes == len(GOOD_PLAN) and listed.info["build_seconds"] == 93.2
    assert by_plan[orphan].key is None and by_plan[orphan].label == "?"

    assert engine_cache.clear() == 2
    assert engine_cache.list_entries() == []
    assert not list(own_cache.glob("*.json")), "sidecars go with their plans"
    assert timing.exists(), "timing caches stay unless asked"
    engine_cache.clear(timing_caches=True)
    assert not timing.exists()


# --------------------------------------------------------------------------- load or build


def test_miss_builds_once_then_hits(own_cache, engine_key):
    key, builder = engine_key(), Builder()
    engine, plan = engine_cache.load_or_build(key, builder, accept_good)
    assert (engine, builder.calls) == ("engine", 1)
    assert plan == engine_cache.plan_path(key) and plan.read_bytes() == GOOD_PLAN
    again, same_plan = engine_cache.load_or_build(key, builder, accept_good)
    assert (again, same_plan, builder.calls) == ("engine", plan, 1), "the second call loads"
    assert not list(own_cache.glob(".*partial")), "no partial files left behind"


@pytest.mark.parametrize(
    "damage",
    [
        lambda plan: plan.write_bytes(GOOD_PLAN[:10]),  # truncated
        lambda plan: plan.write_bytes(b"\x00" * 64),  # corrupt / another TensorRT version
    ],
)
def test_a_plan_that_fails_to_deserialise_is_named_and_rebuilt(damage, caplog, engine_key):
    key, builder = engine_key(), Builder()
    _, plan = engine_cache.load_or_build(key, builder, accept_good)
    damage(plan)
    caplog.clear()
    engine, rebuilt = engine_cache.load_or_build(key, builder, accept_good)
    assert (engine, builder.calls) == ("engine", 2)
    assert rebuilt.read_bytes() == GOOD_PLAN
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    assert str(plan) in warnings[0].getMessage() and "cannot be deserialised" in (
        warnings[0].getMessage()
    )


def test_a_plan_without_its_sidecar_is_rebuilt(caplog, engine_key):
    key, builder = engine_key(), Builder()
    _, plan = engine_cache.load_or_build(key, builder, accept_good)
    engine_cache.sidecar_path(plan).unlink()
    engine_cache.load_or_build(key, builder, accept_good)
    assert builder.calls == 2
    assert any(str(plan) in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    document = engine_cache.read_sidecar(engine_cache.sidecar_path(plan))
    assert engine_cache.sidecar_key(document) == key, "the rebuild rewrites the sidecar"


def test_a_build_that_writes_nothing_or_an_unloadable_plan_caches_nothing(engine_key):
    key = engine_key()

    def writes_nothing(path: Path) -> None:
        return None

    with pytest.raises(EngineError, match="wrote no engine"):
        engine_cache.load_or_build(key, writes_nothing, accept_good)
    with pytest.raises(EngineError, match="just built"):
        engine_cache.load_or_build(key, Builder(b"unloadable"), accept_good)
    assert engine_cache.list_entries() == []
    assert not engine_cache.plan_path(key).exists()


def test_a_failing_build_leaves_no_partial_file(own_cache, engine_key):
    def fails(path: Path) -> None:
        path.write_bytes(b"half a plan")
        raise RuntimeError("TensorRT could not build an engine")

    with pytest.raises(RuntimeError, match="could not build"):
        engine_cache.load_or_build(engine_key(), fails, accept_good)
    assert not [p for p in own_cache.iterdir() if p.is_file()]


def test_sha256_of_a_file(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"abc")
    expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert engine_cache.sha256_file(path) == expected
