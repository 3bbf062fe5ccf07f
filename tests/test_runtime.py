"""isthmus behaves as a dependency: importing it changes no process state; its entry points apply
the one-thread / flushed-denormal defaults and hand the caller's settings back (opt-out honoured)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from isthmus._runtime import flush_denormal_enabled, host_memory_pooled, pool_host_memory, runtime_defaults
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
        self.pooled: set[bool] = set()

    def compute_loss(self, batch):
        self.seen.add((torch.get_num_threads(), flush_denormal_enabled()))
        self.pooled.add(host_memory_pooled())
        return self.ae.compute_loss(batch)


def _fit(**cfg) -> _Spy:
    model = _Spy()
    Trainer(model, TrainerConfig(epochs=1, batch_size=16, progress=False, **cfg)).fit(torch.rand(32, 4))
    return model


GLIBC = sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION") is not None


def test_fit_applies_defaults_inside_and_restores_the_callers(caller_settings):
    pooled_before = host_memory_pooled()
    model = _fit()
    assert model.seen == {(1, True)}
    assert model.pooled == {GLIBC}  # host memory kept for reuse inside fit (glibc only)
    assert (torch.get_num_threads(), flush_denormal_enabled(), host_memory_pooled()) == (2, False, pooled_before)


_FAULTS = """
import resource, sys, torch
from isthmus._runtime import pool_host_memory
if sys.argv[1] == "1":
    assert pool_host_memory(True)
faults = []
for _ in range(16):  # two 40 MB buffers per "step", above glibc's 32 MiB mmap ceiling
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = torch.empty(10 << 20); a.fill_(1.0); b = torch.empty(10 << 20); b.fill_(2.0); del a, b
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
print(sum(faults[-4:]))
"""


@pytest.mark.skipif(not GLIBC, reason="mallopt thresholds exist in glibc only")
def test_pooled_host_memory_stops_page_faulting_fresh_buffers_every_step():
    def last_faults(pool: str) -> int:
        full_env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
        done = subprocess.run([sys.executable, "-c", _FAULTS, pool], capture_output=True, text=True, env=full_env,
                              timeout=300)
        assert done.returncode == 0, done.stderr
        return int(done.stdout)

    # 4 steps x 2 x 40 MB = 80k pages when each buffer is a fresh mmap; ~0 once freed blocks are reused
    assert last_faults("0") > 60_000
    assert last_faults("1") < 2_000


def test_pool_host_memory_reports_and_hands_back():
    before = host_memory_pooled()
    try:
        assert pool_host_memory(True) is GLIBC and host_memory_pooled() is GLIBC
        assert pool_host_memory(False) is GLIBC and host_memory_pooled() is False
    finally:
        pool_host_memory(before)


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
