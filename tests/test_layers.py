"""Layers import downward only (docs/architecture.md): a module-level or lazy import that points
up the table fails here, so the layout cannot erode silently."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "isthmus"
UTILITIES = {"config", "registry", "io", "_runtime", "viz", "__init__"}
# package -> isthmus packages it may import (besides the utilities and itself)
ALLOWED = {
    "nn": set(),
    "bottlenecks": {"nn"},
    "models": {"nn", "bottlenecks"},
    "train": {"nn", "bottlenecks", "models"},
    "data": set(),
    "metrics": set(),
    "search": set(),
    "tasks": {"nn", "bottlenecks", "models", "train", "data", "metrics"},
    "interp": {"nn", "bottlenecks", "models", "train", "data", "metrics", "tasks"},
    "recipes": {"nn", "bottlenecks", "models", "train", "data", "metrics", "tasks", "interp", "search"},
    "cli": {"nn", "bottlenecks", "models", "train", "data", "metrics", "tasks", "interp", "recipes", "search"},
}


def _isthmus_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "isthmus" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_downward(package):
    bad = []
    for path in sorted((SRC / package).rglob("*.py")):
        for target in _isthmus_imports(path) - UTILITIES - {package}:
            if target not in ALLOWED[package]:
                bad.append(f"{path.relative_to(SRC)} imports isthmus.{target}")
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_utilities_import_no_layer():
    bad = [f"{m}.py imports isthmus.{t}" for m in UTILITIES - {"__init__"}
           for t in _isthmus_imports(SRC / f"{m}.py") - UTILITIES]
    assert not bad, bad
