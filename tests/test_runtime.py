"""isthmus behaves as a dependency: importing it changes no process state; its entry points apply
the one-thread / flushed-denormal defaults and hand the caller's settings back (opt-out honoured)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from isthmus._runtime import flush_denormal_enabled, runtime_defaults
from isthmus.models import AutoEncoder
from isthmus.train import Trainer, TrainerConfig

SRC = str(Path(__file__).resolve().parents[1] / "src")

_PROBE = """
import torch
torch.set_num_threads(3)
torch.set_flush_denormal(False)
import isthmus, isthmus.train, isthmus.models, isthmus.tasks, isthmus.interp, isthmus.cli.main
from isthmus._runtime import flush_denormal_enabled
print(torch.get_num_threads(), int(flush_denormal_enabled()))
"""


def _run(code: str, **env: str) -> str:
    full_env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), **env}
    full_env.pop("ISTHMUS_THREADS", None)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_import_changes_no_thread_count_or_denormal_mode():
    assert _run(_PROBE) == "3 0"


@pytest.fixture
def caller_settings():
    """A caller with 2 threads and denormals kept; restored to the suite's 1 thread afterwards."""
    before = torch.get_num_threads(), flush_denormal_enabled()
    torch.set_num_threads(2)
    torch.set_flush_denormal(False)
    yield
    torch.set_num_threads(before[0])
    torch.set_flush_denormal(before[1])


class _Spy(torch.nn.Module):
    """An autoencoder that records the thread count and denormal mode its training step saw."""

    def __init__(self):
        super().__init__()
        self.ae = AutoEncoder.mlp(4, 2, hidden=[8])
        self.seen: set[tuple[int, bool]] = set()

    def compute_loss(self, batch):
        self.seen.add((torch.get_num_threads(), flush_denormal_enabled()))
        return self.ae.compute_loss(batch)


def _fit(**cfg) -> _Spy:
    model = _Spy()
    Trainer(model, TrainerConfig(epochs=1, batch_size=16, progress=False, **cfg)).fit(torch.rand(32, 4))
    return model


def test_fit_applies_defaults_inside_and_restores_the_callers(caller_settings):
    assert _fit().seen == {(1, True)}
    assert (torch.get_num_threads(), flush_denormal_enabled()) == (2, False)


def test_fit_opt_out_by_argument_and_by_env(caller_settings, monkeypatch):
    assert _fit(runtime_defaults=False).seen == {(2, False)}
    assert _fit(runtime_defaults=False, threads=1).seen == {(1, False)}  # an explicit count always wins
    monkeypatch.setenv("ISTHMUS_RUNTIME_DEFAULTS", "0")
    assert _fit().seen == {(2, False)}


def test_runtime_defaults_restore_after_an_error(caller_settings):
    with pytest.raises(RuntimeError), runtime_defaults(threads=1):
        assert torch.get_num_threads() == 1
        raise RuntimeError("boom")
    assert (torch.get_num_threads(), flush_denormal_enabled()) == (2, False)


def test_cli_sets_defaults_for_its_process_and_honours_the_opt_out():
    probe = ("import sys, torch; torch.set_num_threads(3); import isthmus.cli.main as m; "
             "from isthmus._runtime import flush_denormal_enabled as f; "
             "m.COMMAND_MODULES = (); p = m.build_parser(); "
             "sub = p._subparsers._group_actions[0].add_parser('probe'); "
             "sub.set_defaults(func=lambda a: print(torch.get_num_threads(), int(f())) or 0); "
             "m.build_parser = lambda: p; sys.exit(m.main(['probe']))")
    assert _run(probe) == "1 1"
    assert _run(probe, ISTHMUS_RUNTIME_DEFAULTS="0") == "3 0"


def test_python_dash_m_isthmus_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "isthmus", "--version"], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": SRC}, timeout=300)
    assert out.returncode == 0 and out.stdout.startswith("isthmus "), out.stderr
