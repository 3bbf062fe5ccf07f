"""train_sae checkpoints and exact resume: SIGKILL mid-run, resume in a new process, compare bit for bit.

The run streams from an activation store across epoch boundaries (data position = epoch + batches
taken) or samples rows of a tensor (data position = the sampler generator), resamples dead latents
(global RNG) and warms up / decays the LR, so a resume that lost any of these would differ."""

from __future__ import annotations

import json
import os
import runpy
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from isthmus.interp.sae import SAEConfig, SparseAutoEncoder
from isthmus.interp.sae_train import SAETrainConfig, train_sae
from isthmus.interp.store import StoreWriter
from isthmus.io import CheckpointError, load_tensors
from isthmus.train import find_latest

SCRIPT = textwrap.dedent('''
    import json, os, signal, sys
    import torch
    torch.set_num_threads(1)
    from isthmus.interp.sae import SAEConfig, SparseAutoEncoder
    from isthmus.interp.sae_train import SAETrainConfig, train_sae
    from isthmus.interp.store import ActivationStore
    from isthmus.io import save_tensors

    def main(workdir, out, source, kill_at=0, resume=False):
        torch.manual_seed(7)
        sae = SparseAutoEncoder(SAEConfig(d_in=8, d_sae=48, bottleneck_config={"k": 3}, aux_k=8))
        data = ActivationStore(os.path.join(workdir, "..", "store")) if source == "store" else \\
            ActivationStore(os.path.join(workdir, "..", "store")).read()
        cfg = SAETrainConfig(steps=20, batch_size=32, lr=3e-3, warmup_steps=3, resample_every=5, log_every=1,
                             checkpoint_dir=os.path.join(workdir, "ckpt"), checkpoint_every=4,
                             log_path=os.path.join(workdir, "log.jsonl"), seed=3)
        def log(row):
            if row["step"] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        hist = train_sae(sae, data, cfg, log=log, resume=resume)
        save_tensors(out, sae.state_dict())
        with open(out + ".json", "w") as fh:
            json.dump(hist, fh)

    if __name__ == "__main__":
        main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "1")
''')

TIMED = {"time_s", "tokens_per_s"}


@pytest.fixture
def setup(tmp_path):
    script = tmp_path / "train_sae_script.py"
    script.write_text(SCRIPT)
    g = torch.Generator().manual_seed(0)
    with StoreWriter(tmp_path / "store", shard_rows=64) as w:  # 200 rows: 7 batches of 32 per epoch
        w.add(torch.randn(200, 8, generator=g) @ torch.randn(8, 8, generator=g))
    return script


def _run(script: Path, workdir: Path, out: Path, source: str, kill_at=0, resume=False):
    args = [sys.executable, str(script), str(workdir), str(out), source, str(kill_at), "1" if resume else "0"]
    return subprocess.run(args, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


def _untimed(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMED} for r in rows]


@pytest.mark.parametrize("source", ["store", "tensor"])
def test_sae_resume_after_sigkill_is_bit_identical(setup, tmp_path, source):
    ref, run = tmp_path / "ref", tmp_path / "run"
    ref.mkdir()
    run.mkdir()
    runpy.run_path(str(setup))["main"](str(ref), str(tmp_path / "ref.safetensors"), source)
    killed = _run(setup, run, tmp_path / "run.safetensors", source, kill_at=10)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert find_latest(run / "ckpt").name == "ckpt-000000008-0"
    resumed = _run(setup, run, tmp_path / "run.safetensors", source, resume=True)
    assert resumed.returncode == 0, resumed.stderr
    a, b = load_tensors(tmp_path / "ref.safetensors"), load_tensors(tmp_path / "run.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"
    hist = json.loads((tmp_path / "run.safetensors.json").read_text())
    assert _untimed(hist) == _untimed(json.loads((tmp_path / "ref.safetensors.json").read_text()))
    assert [r["step"] for r in hist] == list(range(1, 21))
    logs = [[json.loads(line) for line in (d / "log.jsonl").read_text().splitlines()] for d in (ref, run)]
    assert _untimed(logs[0]) == _untimed(logs[1])  # the resumed log holds each step once
    assert {"l0", "fvu", "dead_fraction", "tokens_per_s", "lr"} <= set(logs[1][0])


def test_resume_refuses_other_settings_and_trainer_checkpoints(tmp_path):
    x = torch.randn(128, 8)
    sae = SparseAutoEncoder(SAEConfig(d_in=8, d_sae=16, bottleneck_config={"k": 2}))
    cfg = SAETrainConfig(steps=4, batch_size=16, checkpoint_dir=str(tmp_path / "c"), checkpoint_every=2)
    train_sae(sae, x, cfg)
    with pytest.raises(CheckpointError, match="lr"):
        train_sae(sae, x, cfg.with_overrides({"lr": 1e-2}), resume=True)
    other = SparseAutoEncoder(SAEConfig(d_in=8, d_sae=32, bottleneck_config={"k": 2}))
    with pytest.raises(CheckpointError, match="config"):
        train_sae(other, x, cfg, resume=True)
    # a finished run resumes to itself: no step is repeated
    assert train_sae(sae, x, cfg, resume=True)[-1]["step"] == 4


def test_resume_true_without_a_checkpoint_starts_fresh(tmp_path):
    sae = SparseAutoEncoder(SAEConfig(d_in=8, d_sae=16, bottleneck_config={"k": 2}))
    cfg = SAETrainConfig(steps=3, batch_size=16, log_every=1, checkpoint_dir=str(tmp_path / "none"))
    assert [r["step"] for r in train_sae(sae, torch.randn(64, 8), cfg, resume=True)] == [1, 2, 3]
