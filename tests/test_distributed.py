"""torchrun data parallelism on gloo with 2 CPU processes: the same global batch gives the
1-process loss curve, and a killed 2-process run resumes to the uninterrupted result bit for bit."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from isthmus.io import load_tensors

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")

# 192 samples, global batch 32 = 6 steps per epoch, 3 epochs. ``stochastic`` adds a Gaussian
# (VAE) bottleneck and dropout, so every rank's RNG matters for resume.
SCRIPT = textwrap.dedent('''
    import json, os, signal, sys
    import torch
    from isthmus.io import save_tensors
    from isthmus.models import AutoEncoder
    from isthmus.train import Callback, Trainer, TrainerConfig

    class KillAt(Callback):
        def __init__(self, step):
            self.step = step
        def on_step_end(self, trainer):
            if trainer.global_step == self.step and trainer.dist.rank == 1:
                os.kill(os.getpid(), signal.SIGKILL)

    class Rows(torch.utils.data.Dataset):
        def __init__(self, x):
            self.x = x
        def __len__(self):
            return len(self.x)
        def __getitem__(self, i):
            return self.x[i]

    def main(workdir, kill_at=0, resume=False, stochastic=False, dataset=False):
        torch.manual_seed(7)
        x = torch.rand(192, 10)
        if stochastic:
            model = AutoEncoder.mlp(10, 3, hidden=(16,), bottleneck="gaussian", dropout=0.2)
        else:
            model = AutoEncoder.mlp(10, 3, hidden=(16,))
        cfg = TrainerConfig(epochs=3, batch_size=32, lr=3e-3, schedule="cosine", warmup_steps=2, grad_clip=5.0,
                            checkpoint_dir=os.path.join(workdir, "ckpt"), checkpoint_every_steps=4,
                            log_path=os.path.join(workdir, "log.jsonl"), log_every_steps=1, progress=False,
                            device="cpu")
        callbacks = [KillAt(kill_at)] if kill_at else []
        trainer = Trainer(model, cfg, callbacks=callbacks)
        trainer.fit(Rows(x) if dataset else x, val=x[:64], resume=resume)
        if trainer.dist.rank == 0:
            save_tensors(os.path.join(workdir, "final.safetensors"), model.state_dict())

    if __name__ == "__main__":
        main(sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4] == "1", sys.argv[5] == "1")
''')


@pytest.fixture
def script(tmp_path) -> Path:
    path = tmp_path / "ddp_script.py"
    path.write_text(SCRIPT)
    return path


def torchrun(script: Path, workdir: Path, nproc=2, kill_at=0, resume=False, stochastic=False, dataset=False):
    flags = ["1" if f else "0" for f in (resume, stochastic, dataset)]
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            str(script), str(workdir), str(kill_at), *flags]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)


def step_losses(workdir: Path) -> list[float]:
    lines = [json.loads(s) for s in (workdir / "log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in lines if r["event"] == "step"]


def test_two_processes_match_the_one_process_loss_curve(script, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    runpy.run_path(str(script))["main"](str(one))
    done = torchrun(script, two, dataset=True)  # and through the map-style Dataset path: same batches
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = step_losses(one), step_losses(two)
    assert len(a) == len(b) == 18
    # Same global batches; only float summation order differs (gradient all-reduce, loss mean).
    assert b == pytest.approx(a, rel=1e-4, abs=1e-6)
    wa, wb = load_tensors(one / "final.safetensors"), load_tensors(two / "final.safetensors")
    assert all(torch.allclose(wa[k], wb[k], rtol=1e-4, atol=1e-5) for k in wa)
    # one writer (rank 0) for the log; its checkpoint holds both ranks' RNG states
    state = json.loads(next((two / "ckpt").glob("ckpt-*/trainer_state.json")).read_text())
    assert state["world_size"] == 2 and len(state["rng_ranks"]) == 2


@pytest.mark.slow
def test_killed_two_process_run_resumes_bit_exactly(script, tmp_path):
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert torchrun(script, ref, stochastic=True).returncode == 0
    killed = torchrun(script, run, kill_at=10, stochastic=True)
    assert killed.returncode != 0 and not (run / "final.safetensors").exists()
    resumed = torchrun(script, run, resume=True, stochastic=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = load_tensors(ref / "final.safetensors"), load_tensors(run / "final.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert step_losses(run) == step_losses(ref)  # the log was cut back to the checkpoint, never doubled


def test_global_batch_must_split_evenly_across_ranks(monkeypatch):
    from isthmus.config import ConfigError
    from isthmus.models import AutoEncoder
    from isthmus.train import Trainer, TrainerConfig
    from isthmus.train import trainer as trainer_module
    from isthmus.train.distributed import DistInfo

    monkeypatch.setattr(trainer_module, "setup", lambda device: DistInfo(rank=0, world=3))
    with pytest.raises(ConfigError, match="multiple of the 3 processes"):
        Trainer(AutoEncoder.mlp(4, 2), TrainerConfig(batch_size=32, progress=False)).fit(torch.rand(64, 4))


@pytest.mark.slow
def test_torchrun_runs_the_cli_and_rank_0_alone_writes_the_run_folder(tmp_path):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "isthmus",
            "train", "trainer.epochs=2", "trainer.progress=false", "trainer.batch_size=32", "data.limit=256",
            "--out", str(out)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert (done.stdout + done.stderr).count("saved run to") == 1 and done.stdout.count('"val_mse"') == 1
    assert (out / "model" / "model.safetensors").exists() and (out / "metrics.json").exists()
    epochs = [json.loads(s) for s in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in epochs if r["event"] == "epoch"] == [0, 1]  # one writer, no doubled lines
