from dataclasses import dataclass
from pathlib import Path

import pytest

from smokeclear.config import from_mapping, load_config, to_mapping
from smokeclear.errors import UserError


@dataclass(frozen=True)
class Inner:
    rate: float = 1.0


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    count: int = 1
    enabled: bool = False
    sizes: tuple[int, ...] = ()
    inner: Inner = Inner()
    limit: float | None = None


def test_round_trip_and_coercion():
    config = from_mapping(
        Outer, {"count": 3, "sizes": [1, 2], "inner": {"rate": 2}, "limit": None}, "t"
    )
    assert config == Outer(count=3, sizes=(1, 2), inner=Inner(2.0))
    assert isinstance(config.inner.rate, float)
    assert from_mapping(Outer, to_mapping(config), "t") == config


def test_unknown_key_names_the_key_and_the_file(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("main:\n  cout: 3\n")
    with pytest.raises(UserError, match=r"unknown key 'cout' in .*c\.yaml:main") as error:
        load_config(Outer, path, section="main")
    assert "count" in error.value.fix, "the fix lists the valid keys"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"count": "three"}, "count must be an integer"),
        ({"count": True}, "count must be an integer"),
        ({"enabled": 1}, "enabled must be true or false"),
        ({"sizes": 4}, "sizes must be a list"),
        ({"inner": {"rate": "fast"}}, "inner.rate must be a number"),
    ],
)
def test_wrong_types_are_user_errors(data, message):
    with pytest.raises(UserError, match=message):
        from_mapping(Outer, data, "t")


def test_malformed_or_missing_files(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(Outer, bad)
    with pytest.raises(UserError, match="cannot read config"):
        load_config(Outer, tmp_path / "missing.yaml")
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="must be a mapping"):
        load_config(Outer, listing)
    other = tmp_path / "other.yaml"
    other.write_text("other: {}\n")
    with pytest.raises(UserError, match="no 'main' section"):
        load_config(Outer, other, section="main")


@dataclass(frozen=True)
class WithPair:
    betas: tuple[float, float] = (0.9, 0.999)


def test_fixed_length_tuples_check_their_length():
    assert from_mapping(WithPair, {"betas": [0.5, 0.99]}, "x").betas == (0.5, 0.99)
    with pytest.raises(UserError, match="a list of 2 values"):
        from_mapping(WithPair, {"betas": [0.5]}, "x.yaml:train")
