"""train_sae under torchrun (gloo, 2 CPU processes): the same global batch gives the 1-process loss
curve, rank 0 alone logs and checkpoints, and a killed 2-process run resumes bit for bit.

The run streams a store of 200 rows in global batches of 32 (6 full batches and a short one of 8
per epoch, 4 epochs), resamples dead latents every 5 steps with ``dead_steps=3`` (so the merged
dead-latent counters and the broadcast resampling decide the parameters) and warms up / decays the
LR. AuxK is off: it normalises by each slice's variance, which is approximate by design."""

from __future__ import annotations

import json
import os
import runpy
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from isthmus.interp.store import StoreWriter
from isthmus.io import load_tensors

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")

SCRIPT = textwrap.dedent('''
    import os, signal, sys
    import torch
    from isthmus.interp.sae import SAEConfig, SparseAutoEncoder
    from isthmus.interp.sae_train import SAETrainConfig, train_sae
    from isthmus.interp.store import ActivationStore
    from isthmus.io import save_tensors

    def main(workdir, kill_at=0, resume=False):
        torch.manual_seed(7)
        sae = SparseAutoEncoder(SAEConfig(d_in=8, d_sae=48, bottleneck_config={"k": 3, "dead_steps": 3},
                                          aux_coeff=0.0))
        store = ActivationStore(os.path.join(os.path.dirname(os.path.abspath(workdir)), "store"))
        cfg = SAETrainConfig(steps=28, batch_size=32, lr=3e-3, warmup_steps=3, resample_every=5, log_every=1,
                             checkpoint_dir=os.path.join(workdir, "ckpt"), checkpoint_every=4,
                             log_path=os.path.join(workdir, "log.jsonl"), seed=3)
        def log(row):
            if row["step"] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        train_sae(sae, store, cfg, log=log, resume=resume)
        if int(os.environ.get("RANK", "0")) == 0:
            save_tensors(os.path.join(workdir, "final.safetensors"), sae.state_dict())

    if __name__ == "__main__":
        main(sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1")
''')


@pytest.fixture
def script(tmp_path) -> Path:
    path = tmp_path / "sae_ddp_script.py"
    path.write_text(SCRIPT)
    g = torch.Generator().manual_seed(0)
    with StoreWriter(tmp_path / "store", shard_rows=64) as w:
        w.add(torch.randn(200, 8, generator=g) @ torch.randn(8, 8, generator=g))
    return path


def torchrun(script: Path, workdir: Path, nproc=2, kill_at=0, resume=False):
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            str(script), str(workdir), str(kill_at), "1" if resume else "0"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)


def rows(workdir: Path) -> list[dict]:
    return [json.loads(s) for s in (workdir / "log.jsonl").read_text().splitlines()]


def test_two_processes_match_the_one_process_sae_loss_curve(script, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    runpy.run_path(str(script))["main"](str(one))
    done = torchrun(script, two)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = rows(one), rows(two)
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 29))  # one writer: no doubled rows
    # Same global batches; only float summation order differs (gradient all-reduce, loss mean).
    assert [r["loss"] for r in b] == pytest.approx([r["loss"] for r in a], rel=1e-5, abs=1e-6)
    assert [r["dead_fraction"] for r in b] == [r["dead_fraction"] for r in a]  # merged counters: same dead set
    assert max(r["dead_fraction"] for r in a) > 0  # ... and latents did die, so resampling was exercised
    wa, wb = load_tensors(one / "final.safetensors"), load_tensors(two / "final.safetensors")
    assert all(torch.allclose(wa[k], wb[k], rtol=1e-4, atol=1e-5) for k in wa), "weights drifted apart"
    ckpts = sorted((two / "ckpt").glob("ckpt-*"))
    assert ckpts and json.loads((ckpts[-1] / "trainer_state.json").read_text())["world_size"] == 2


def test_global_batch_must_split_evenly_across_ranks(monkeypatch):
    from isthmus.config import ConfigError
    from isthmus.interp import sae_train
    from isthmus.interp.sae import SAEConfig, SparseAutoEncoder
    from isthmus.train.distributed import DistInfo

    monkeypatch.setattr(sae_train, "setup", lambda device: DistInfo(rank=0, world=3))
    sae = SparseAutoEncoder(SAEConfig(d_in=4, d_sae=8, bottleneck_config={"k": 2}))
    with pytest.raises(ConfigError, match="multiple of the 3 processes"):
        sae_train.train_sae(sae, torch.rand(64, 4), sae_train.SAETrainConfig(steps=2, batch_size=32))


def test_each_rank_takes_its_slice_of_the_same_global_batch():
    from isthmus.interp.sae_train import BatchSource
    from isthmus.train.distributed import DistInfo

    x = torch.arange(40.0).unsqueeze(1)
    whole = next(BatchSource(x, 8, seed=1))
    parts = [next(BatchSource(x, 8, seed=1, dist=DistInfo(rank=r, world=2))) for r in (0, 1)]
    assert torch.equal(torch.cat(parts), whole)
    odd = [torch.ones(8, 2), torch.ones(5, 2), torch.full((8, 2), 2.0)]  # a short odd batch cannot be split
    src = BatchSource(odd, 8, seed=0, dist=DistInfo(rank=1, world=2))
    assert [float(next(src)[0, 0]) for _ in range(3)] == [1.0, 2.0, 1.0]  # skipped, then the next epoch


@pytest.mark.slow
def test_killed_two_process_sae_run_resumes_bit_exactly_on_two_or_one_process(script, tmp_path):
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert torchrun(script, ref).returncode == 0
    killed = torchrun(script, run, kill_at=14)  # rank 0 dies after the step-12 checkpoint
    assert killed.returncode != 0 and not (run / "final.safetensors").exists()
    solo = tmp_path / "solo"
    shutil.copytree(run, solo)
    resumed = torchrun(script, run, resume=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = load_tensors(ref / "final.safetensors"), load_tensors(run / "final.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    untimed = [[{k: v for k, v in r.items() if k not in ("time_s", "tokens_per_s")} for r in rows(d)]
               for d in (ref, run)]
    assert untimed[0] == untimed[1]  # the log was cut back to the checkpoint, never doubled
    # every rank's RNG follows rank 0's stream, so the same checkpoint also resumes on one process
    runpy.run_path(str(tmp_path / "sae_ddp_script.py"))["main"](str(solo), 0, True)
    c = load_tensors(solo / "final.safetensors")
    assert all(torch.allclose(a[k], c[k], rtol=1e-4, atol=1e-5) for k in a)


@pytest.mark.slow
def test_torchrun_runs_sae_train_and_rank_0_alone_writes_the_run_folder(script, tmp_path):
    out = tmp_path / "sae"
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "isthmus",
            "sae", "train", "--store", str(tmp_path / "store"), "--d-sae", "32", "k=4", "steps=12", "batch_size=32",
            "log_every=1", "--eval-tokens", "64", "--device", "cpu", "--no-progress", "--out", str(out)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert (done.stdout + done.stderr).count("trained sae_topk") == 1  # rank 0 reports, once
    assert (out / "model.safetensors").exists() and json.loads((out / "metrics.json").read_text())["l0"] > 0
    assert [r["step"] for r in rows_of_log(out / "train_log.jsonl")] == list(range(1, 13))


def rows_of_log(path: Path) -> list[dict]:
    return [json.loads(s) for s in path.read_text().splitlines()]
