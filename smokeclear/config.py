"""YAML configuration loaded into frozen dataclasses.

Unknown keys are an error that names the key and the file: a misspelt option that
is silently ignored costs an afternoon. Components take the typed dataclasses,
never the raw dictionary. A numeric field declares its allowed range once, with
:func:`bounded`; :func:`from_mapping` refuses a value outside it (and NaN) with a
line that names the file, the key and the range, so `width: 0` or `width: 99999`
never reaches a constructor or an allocation.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from smokeclear.errors import UserError

ConfigT = TypeVar("ConfigT")

_BOUNDS_KEY = "bounds"


@dataclasses.dataclass(frozen=True)
class Bounds:
    """The closed range ``[low, high]``, or ``(low, high]`` with ``low_open``."""

    low: float
    high: float
    low_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        return above and value <= self.high  # NaN fails both

    def __str__(self) -> str:
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"


def bounded(default: Any, low: float, high: float, *, low_open: bool = False) -> Any:
    """A dataclass field whose value (or each item of a tuple value) must lie in
    ``[low, high]`` (``(low, high]`` with ``low_open``), checked by :func:`from_mapping`."""
    return dataclasses.field(default=default, metadata={_BOUNDS_KEY: Bounds(low, high, low_open)})


def field_bounds(cls: type) -> dict[str, Bounds]:
    """The declared bounds of the fields of the dataclass ``cls``, by field name."""
    return {
        field.name: field.metadata[_BOUNDS_KEY]
        for field in dataclasses.fields(cls)
        if _BOUNDS_KEY in field.metadata
    }


def _check_bounds(cls: type, values: dict[str, Any], source: str) -> None:
    """Raise a :class:`UserError` for the first of ``values`` outside its field's bounds."""
    for name, bounds in field_bounds(cls).items():
        if values.get(name) is None:  # absent, or an optional field left out
            continue
        value = values[name]
        items = value if isinstance(value, tuple) else (value,)
        if not all(item in bounds for item in items):
            raise UserError(
                f"{source}.{name} must be in {bounds}, got {_shown(value)}",
                "Set it within that range.",
            )


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_shown(item) for item in value) + "]"
    return f"{value:g}" if isinstance(value, float) else repr(value)


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping, with user-facing errors for missing or malformed files."""
    try:
        text = path.read_text()
    except OSError as error:
        raise UserError(
            f"cannot read config {path}: {error.strerror or error}",
            "Check the path, or leave --config out to use the defaults.",
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise UserError(
            f"config {path} is not valid YAML ({error.__class__.__name__})",
            "Fix the YAML syntax (indentation, colons) in that file.",
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(
            f"config {path} must be a mapping of keys to values, not a {type(data).__name__}",
            "Write it as `key: value` lines.",
        )
    return data


def from_mapping(cls: type[ConfigT], data: dict[str, Any], source: str) -> ConfigT:
    """Build the frozen dataclass ``cls`` from ``data``, checking keys and types.

    Args:
        cls: a dataclass whose fields have simple types (bool, int, float, str,
            tuples of those, or nested dataclasses).
        data: the mapping, e.g. one section of a YAML file.
        source: where ``data`` came from, for error messages (``file.yaml:network``).
    """
    if not isinstance(data, dict):
        raise UserError(
            f"{source} must be a mapping, got {type(data).__name__}",
            "Write that section as `key: value` lines.",
        )
    hints = typing.get_type_hints(cls)
    fields = {field.name: field for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise UserError(
            f"unknown key {unknown[0]!r} in {source}",
            f"Valid keys there are: {', '.join(sorted(fields))}.",
        )
    values = {name: _coerce(hints[name], value, f"{source}.{name}") for name, value in data.items()}
    _check_bounds(cls, values, source)
    try:
        return cls(**values)
    except ValueError as error:  # a rule across fields, checked in __post_init__
        raise UserError(f"{source}: {error}", "Correct those values.") from None


def to_mapping(config: Any) -> dict[str, Any]:
    """The inverse of :func:`from_mapping`: plain dicts, lists and scalars."""
    return _plain(dataclasses.asdict(config))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _coerce(annotation: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        return from_mapping(annotation, value, where)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, where)
            except UserError as error:
                errors.append(error)
        raise errors[0]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _type_error(where, "a list", value)
        (item_type, *rest) = typing.get_args(annotation)
        if rest and rest != [Ellipsis]:
            if any(item is not item_type for item in rest):
                raise TypeError(f"{where}: only homogeneous tuple fields are supported")
            if len(value) != len(rest) + 1:
                raise _type_error(where, f"a list of {len(rest) + 1} values", value)
        return tuple(_coerce(item_type, item, f"{where}[{i}]") for i, item in enumerate(value))
    if annotation is bool:
        if not isinstance(value, bool):
            raise _type_error(where, "true or false", value)
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(where, "an integer", value)
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _type_error(where, "a number", value)
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise _type_error(where, "a string", value)
        return value
    raise TypeError(f"{where}: unsupported config field type {annotation!r}")


def _type_error(where: str, expected: str, value: Any) -> UserError:
    return UserError(
        f"{where} must be {expected}, got {value!r}",
        "Correct that value in the config file.",
    )


def load_config(cls: type[ConfigT], path: Path, section: str | None = None) -> ConfigT:
    """Load ``cls`` from the YAML file ``path`` (or one top-level ``section`` of it)."""
    data = read_yaml(path)
    source = str(path)
    if section is not None:
        if section not in data:
            raise UserError(
                f"config {path} has no {section!r} section",
                f"Add a `{section}:` mapping to that file.",
            )
        data, source = data[section], f"{path}:{section}"
    return from_mapping(cls, data, source)
