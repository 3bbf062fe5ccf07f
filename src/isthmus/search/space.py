"""A small search-space language (DeepArchitect, seed 41): composable modules whose hyperparameters are choices.

A space is a tree of nodes. Resolving it asks a *chooser* ``choose(name, n_options) -> index`` one
decision at a time, in a fixed order, so an architecture is identified by its **path** (the tuple of
indices chosen) and the space is a sequential decision problem: ``next_choice(space, path)`` gives the
decision after a partial path (``get_choices`` in the paper's code), ``resolve(space, path)`` the
architecture a full path specifies (``choose`` until ``is_specified``). Resolved architectures are
plain JSON (dicts, lists, numbers, strings, None), so they round-trip through files and have a
canonical :func:`key`.

Nodes: :class:`Choice` (``Or`` over sub-spaces, or a hyperparameter's values), :func:`Optional`,
:class:`Repeat` (the count is a choice; ``tied`` counts resolve the body once and repeat it, the
paper's ``RepeatTied``), :class:`Concat`, :class:`Module` (a typed dict whose fields may be nodes).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Iterator, Sequence

import numpy as np

__all__ = [
    "Node",
    "Choice",
    "Or",
    "Optional",
    "Repeat",
    "Concat",
    "Module",
    "Incomplete",
    "next_choice",
    "resolve",
    "is_specified",
    "enumerate_paths",
    "count",
    "sample_path",
    "complete_path",
    "key",
    "module_types",
]

Chooser = Callable[[str, int], int]


class Node:
    def resolve(self, choose: Chooser) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


def _resolve(value: Any, choose: Chooser) -> Any:
    return value.resolve(choose) if isinstance(value, Node) else copy.deepcopy(value)


@dataclass(frozen=True, eq=False)
class Choice(Node):
    """One decision among ``options`` (plain values, or nodes that are resolved further)."""

    name: str
    options: Sequence[Any]

    def __post_init__(self) -> None:
        if len(self.options) < 1:
            raise ValueError(f"choice {self.name!r} needs at least one option")

    def resolve(self, choose: Chooser) -> Any:
        if len(self.options) == 1:  # not a decision: nothing to search
            return _resolve(self.options[0], choose)
        return _resolve(self.options[choose(self.name, len(self.options))], choose)


def Or(name: str, *options: Any) -> Choice:
    return Choice(name, list(options))


def Optional(name: str, node: Any) -> Choice:
    """``None`` (absent: the paper's Empty module) or ``node``."""
    return Choice(name, [None, node])


@dataclass(frozen=True, eq=False)
class Repeat(Node):
    """``body`` repeated n times, n chosen from ``counts``; for n in ``tied`` the body is chosen once."""

    name: str
    body: Any
    counts: Sequence[int]
    tied: Sequence[int] = ()

    def __post_init__(self) -> None:
        if not self.counts or min(self.counts) < 0:
            raise ValueError(f"repeat {self.name!r} needs non-negative counts, got {self.counts}")

    def resolve(self, choose: Chooser) -> Any:
        n = Choice(self.name, list(self.counts)).resolve(choose)
        if n in self.tied:
            one = _resolve(self.body, choose)
            return [copy.deepcopy(one) for _ in range(n)]
        return [_resolve(self.body, choose) for _ in range(n)]


@dataclass(frozen=True, eq=False)
class Concat(Node):
    parts: Sequence[Any]

    def resolve(self, choose: Chooser) -> Any:
        return [_resolve(p, choose) for p in self.parts]


@dataclass(frozen=True, eq=False)
class Module(Node):
    """A typed module ``{"type": type, **hyperparameters}``; hyperparameter values may be nodes."""

    type: str
    params: dict[str, Any]

    def resolve(self, choose: Chooser) -> Any:
        return {"type": self.type, **{k: _resolve(v, choose) for k, v in self.params.items()}}


class Incomplete(Exception):
    """Raised inside a resolution when the path runs out: the next decision is ``(name, n_options)``."""

    def __init__(self, name: str, n: int) -> None:
        super().__init__(name, n)
        self.name, self.n = name, n


def _replay(space: Node, path: Sequence[int]) -> Any:
    pos = 0

    def choose(name: str, n: int) -> int:
        nonlocal pos
        if pos == len(path):
            raise Incomplete(name, n)
        i = int(path[pos])
        if not 0 <= i < n:
            raise ValueError(f"path index {i} at position {pos} is out of range for {name!r} ({n} options)")
        pos += 1
        return i

    value = space.resolve(choose)
    if pos != len(path):
        raise ValueError(f"path has {len(path)} decisions but the architecture is specified after {pos}")
    return value


def next_choice(space: Node, path: Sequence[int]) -> tuple[str, int] | None:
    """The decision that follows ``path`` as ``(name, n_options)``, or None when ``path`` is complete."""
    return _next_choice(space, tuple(int(i) for i in path))


@lru_cache(maxsize=200_000)  # searchers ask about the same prefixes over and over; nodes are immutable
def _next_choice(space: Node, path: tuple[int, ...]) -> tuple[str, int] | None:
    try:
        _replay(space, path)
    except Incomplete as inc:
        return inc.name, inc.n
    return None


def is_specified(space: Node, path: Sequence[int]) -> bool:
    return next_choice(space, path) is None


def resolve(space: Node, path: Sequence[int]) -> Any:
    """The architecture (JSON) a complete ``path`` specifies."""
    try:
        return _replay(space, path)
    except Incomplete as inc:
        raise ValueError(f"path {tuple(path)} is incomplete: next decision {inc.name!r} ({inc.n} options)") from None


def enumerate_paths(space: Node, prefix: tuple[int, ...] = ()) -> Iterator[tuple[int, ...]]:
    """Every complete path, depth first in index order."""
    nxt = next_choice(space, prefix)
    if nxt is None:
        yield prefix
        return
    for i in range(nxt[1]):
        yield from enumerate_paths(space, prefix + (i,))


def count(space: Node) -> int:
    return sum(1 for _ in enumerate_paths(space))


def complete_path(space: Node, prefix: Sequence[int], rng: np.random.Generator) -> tuple[int, ...]:
    """``prefix`` completed by uniform random choices (a random rollout)."""
    path = list(prefix)
    while (nxt := next_choice(space, path)) is not None:
        path.append(int(rng.integers(nxt[1])))
    return tuple(path)


def sample_path(space: Node, rng: np.random.Generator) -> tuple[int, ...]:
    """A path drawn by uniform choices at every decision (the paper's random searcher)."""
    return complete_path(space, (), rng)


def key(arch: Any) -> str:
    """Canonical JSON of a resolved architecture (equal architectures, equal keys)."""
    return json.dumps(arch, sort_keys=True, separators=(",", ":"))


def module_types(arch: Any, empty: str = "empty") -> list[str]:
    """The sequence of module types in a resolved architecture, depth first; ``None`` (an absent
    optional module) appears as ``empty``, as the paper's Empty module does."""
    out: list[str] = []

    def walk(x: Any) -> None:
        if x is None:
            out.append(empty)
        elif isinstance(x, dict):
            if "type" in x:
                out.append(str(x["type"]))
            for k, v in x.items():
                if k != "type" and (v is None or isinstance(v, (dict, list))):  # sub-modules, not numbers
                    walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(arch)
    return out
