"""Typed, JSON-round-tripping configuration dataclasses.

Every config in isthmus is a ``@dataclass`` subclassing :class:`Config`. A config:

* round-trips through plain JSON (``to_dict`` / ``from_dict`` / ``save`` / ``load``),
* rejects unknown fields and wrong types with a message that names the field and the fix,
* accepts ``key=value`` overrides (dotted keys reach nested configs), which is what the CLI uses.

We use dataclasses rather than pydantic to keep the dependency set small; the validation we need
(type of each field, unknown keys, value checks in ``validate``) fits in this file.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

__all__ = ["Config", "ConfigError", "parse_override_value"]

C = TypeVar("C", bound="Config")


class _Loader(yaml.SafeLoader):
    """``yaml.safe_load`` with YAML 1.2 numbers: PyYAML follows YAML 1.1, where ``1e-3`` (no dot) is a
    string, so ``lr: 1e-3`` in a config file was rejected; every other tool reads it as 0.001."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _safe_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader subclass


class ConfigError(ValueError):
    """A configuration field is missing, unknown, or holds a bad value."""


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a JSON value to the annotated type ``tp``, or raise ConfigError naming ``where``."""
    if tp is Any:
        return value
    if _is_union(tp):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: {value!r} matches none of {tp}")
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{where}: {value!r} is not one of {list(allowed)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        kt, vt = typing.get_args(tp) or (Any, Any)
        return {_coerce(k, kt, where): _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, Config):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return tp.from_dict(value, _where=where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def parse_override_value(text: str) -> Any:
    """Parse the right-hand side of ``key=value`` with YAML rules (``3`` → int, ``[1,2]`` → list)."""
    if not text.strip():
        return ""
    value = _safe_load(text)
    if isinstance(value, str):
        try:  # "inf", "nan" on the command line mean numbers too
            return float(value)
        except ValueError:
            pass
    return value


@dataclasses.dataclass
class Config:
    """Base class of every isthmus config. Subclasses are plain ``@dataclass`` classes."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            setattr(self, f.name, _coerce(value, hints[f.name], f"{type(self).__name__}.{f.name}"))
        self.validate()

    def validate(self) -> None:
        """Check value ranges; subclasses raise :class:`ConfigError` with the field and the fix."""

    # ---- dict / JSON -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Config):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], _where: str | None = None) -> C:
        where = _where or cls.__name__
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {unknown}; valid fields are {sorted(names)}")
        try:
            return cls(**data)
        except TypeError as exc:  # missing required field
            raise ConfigError(f"{where}: {exc}") from None

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def load(cls: type[C], path: str | Path) -> C:
        """Load from ``.json`` or ``.yaml``/``.yml``."""
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist")
        text = path.read_text()
        try:
            data = _safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: not valid {path.suffix.lstrip('.') or 'JSON'}: {exc}") from None
        return cls.from_dict(data or {}, _where=str(path))

    def with_overrides(self: C, overrides: dict[str, Any] | list[str]) -> C:
        """Return a copy with ``{"a.b": v}`` or ``["a.b=v", ...]`` applied (values parsed as YAML)."""
        if isinstance(overrides, list):
            pairs = {}
            for item in overrides:
                if "=" not in item:
                    raise ConfigError(f"override {item!r} must look like key=value")
                key, _, raw = item.partition("=")
                pairs[key.strip()] = parse_override_value(raw)
            overrides = pairs
        data = self.to_dict()
        for key, value in overrides.items():
            node = data
            parts = key.split(".")
            for part in parts[:-1]:
                if not isinstance(node.get(part), dict):
                    raise ConfigError(f"override {key!r}: {part!r} is not a nested config")
                node = node[part]
            if parts[-1] not in node:
                raise ConfigError(f"override {key!r}: unknown field {parts[-1]!r}; valid: {sorted(node)}")
            node[parts[-1]] = value
        return type(self).from_dict(data)
