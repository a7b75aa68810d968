from dataclasses import dataclass
from pathlib import Path

import pytest

from smokeclear.config import bounded, field_bounds, from_mapping, load_config, to_mapping
from smokeclear.errors import UserError
from smokeclear.registry import REGISTRY


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


@dataclass(frozen=True)
class Bounded:
    width: int = bounded(8, 1, 1024)
    rate: float = bounded(1e-3, 0, 1, low_open=True)
    scales: tuple[float, ...] = bounded((1.0, 0.5), 0, 1)

    def __post_init__(self) -> None:
        if self.width > 512 and self.rate > 0.5:
            raise ValueError("a wide net needs rate <= 0.5")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"width": 0}, r"^c\.yaml:network\.width must be in \[1, 1024\], got 0\. "),
        ({"width": 99999}, r"width must be in \[1, 1024\], got 99999"),
        ({"rate": -1}, r"rate must be in \(0, 1\], got -1"),
        ({"rate": 0}, r"rate must be in \(0, 1\], got 0"),
        ({"rate": float("nan")}, r"rate must be in \(0, 1\], got nan"),
        ({"rate": float("inf")}, r"rate must be in \(0, 1\], got inf"),
        ({"scales": [1.0, 1.5]}, r"scales must be in \[0, 1\], got \[1, 1.5\]"),
        ({"width": 600, "rate": 0.9}, r"^c\.yaml:network: a wide net needs rate <= 0\.5\. "),
    ],
)
def test_values_outside_their_bounds_name_file_key_and_range(data, message):
    with pytest.raises(UserError, match=message):
        from_mapping(Bounded, data, "c.yaml:network")


def test_the_bounds_themselves_are_inclusive_unless_open():
    config = from_mapping(Bounded, {"width": 1, "rate": 1, "scales": [0, 1]}, "t")
    assert (config.width, config.rate, config.scales) == (1, 1.0, (0.0, 1.0))
    assert from_mapping(Bounded, {"width": 1024, "rate": 0.5}, "t").width == 1024


@pytest.mark.parametrize("spec", list(REGISTRY.values()), ids=lambda spec: spec.name)
def test_defaults_and_shipped_configs_are_within_their_bounds(spec):
    """A bound tighter than a shipped value would break the shipped restorer."""
    from smokeclear.registry import resolve
    from smokeclear.train.driver import recipe_of

    for cls in (resolve(spec.network_config), recipe_of(spec).train_config):
        defaults = cls()
        bounds = field_bounds(cls)
        assert bounds, f"{cls.__name__} declares no bounds"
        for name, allowed in bounds.items():
            value = getattr(defaults, name)
            items = value if isinstance(value, tuple) else (value,)
            assert all(item in allowed for item in items), f"{cls.__name__}.{name}={value}"
    for path in sorted(spec.default_config.parent.glob(f"{spec.name}*.yaml")):
        load_config(resolve(spec.network_config), path, section="network")
        load_config(recipe_of(spec).train_config, path, section="train")
