"""Name → class registries, so parts can be rebuilt from JSON (``{"type": name, "config": {...}}``)."""

from __future__ import annotations

import difflib
from typing import Any, Callable, Generic, TypeVar

from isthmus.config import ConfigError

T = TypeVar("T")


class UnknownNameError(ConfigError, KeyError):
    """A name no part is registered under. A ConfigError (the CLI prints it without a traceback) and,
    as before, a KeyError for callers that catch that."""

    def __str__(self) -> str:  # KeyError would show the repr of the message, quotes and all
        return str(self.args[0]) if self.args else ""


def closest(name: str, names: list[str]) -> str:
    """`` did you mean 'x'?`` for the registered name closest to ``name``, or ``""``."""
    match = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return f" did you mean {match[0]!r}?" if match else ""


class Registry(Generic[T]):
    """A typed registry of named parts. Each entry is a class whose ``__init__`` takes its config."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, tuple[type, type | None]] = {}

    def register(self, name: str, config_cls: type | None = None) -> Callable[[type], type]:
        def deco(cls: type) -> type:
            if name in self._entries and self._entries[name][0] is not cls:
                raise ValueError(f"{self.kind} {name!r} is already registered to {self._entries[name][0]}")
            self._entries[name] = (cls, config_cls)
            cls.registry_name = name  # type: ignore[attr-defined]
            return cls

        return deco

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> tuple[type, Any]:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r};{closest(str(name), self.names())} registered: {self.names()}"
            ) from None

    def build(self, name: str, config: Any = None, **kwargs: Any) -> T:
        """Build ``name`` from a config object, a dict, or keyword arguments."""
        cls, config_cls = self.get(name)
        if config_cls is None:
            return cls(**(config or {}), **kwargs)
        if config is None:
            config = config_cls(**kwargs)
        elif isinstance(config, dict):
            config = config_cls.from_dict({**config, **kwargs})
        elif kwargs:
            config = config.with_overrides(kwargs)
        return cls(config)

    def spec(self, module: Any) -> dict[str, Any]:
        """The JSON spec ``{"type", "config"}`` that rebuilds ``module``."""
        name = getattr(type(module), "registry_name", None)
        if name is None or name not in self._entries or not hasattr(module, "config"):
            raise TypeError(
                f"{type(module).__name__} is not a registered {self.kind} with a config, so it cannot be "
                f"saved as JSON; register it (isthmus.registry) or pass it to from_pretrained(..., {self.kind}=...)"
            )
        return {"type": name, "config": module.config.to_dict()}


BLOCKS: Registry = Registry("block")
