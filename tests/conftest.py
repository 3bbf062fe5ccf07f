"""Shared test setup: one intra-op thread (fast and deterministic on the 2-core machines)."""

import os
import sys
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).parent))

pytest_plugins = ["ci_skips", "pytester"]  # CI: a skip for missing ../shared data fails (tests/ci_skips.py)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """Path to ../shared/data; tests that need it skip when it is absent (users' machines)."""
    root = Path(os.environ.get("ISTHMUS_DATA", SHARED_DATA))
    if not root.exists():
        pytest.skip("../shared/data is not present")
    return root
