"""Checkpoints and exact resume: SIGKILL mid-run, resume in a new process, compare bit for bit."""

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

from isthmus.io import CheckpointError, load_tensors
from isthmus.models import AutoEncoder
from isthmus.train import Trainer, TrainerConfig, find_latest

torch.set_num_threads(1)

# A VAE with dropout (so the global RNG matters), gradient noise, clipping, warm-up + cosine, and
# checkpoints every 4 steps. 150 samples / batch 32 = 5 steps per epoch (the last one of 22).
SCRIPT = textwrap.dedent('''
    import os, signal, sys
    import torch
    torch.set_num_threads(1)
    from isthmus.io import save_tensors
    from isthmus.models import AutoEncoder
    from isthmus.train import Callback, Trainer, TrainerConfig

    class KillAt(Callback):
        def __init__(self, step):
            self.step = step
        def on_step_end(self, trainer):
            if trainer.global_step == self.step:
                os.kill(os.getpid(), signal.SIGKILL)

    def main(workdir, out, kill_at=0, resume=False, epochs=3, extra="{}"):
        import json
        torch.manual_seed(123)
        x = torch.rand(150, 12)
        model = AutoEncoder.mlp(12, 3, hidden=(16,), bottleneck="gaussian", dropout=0.2)
        cfg = dict(epochs=epochs, batch_size=32, grad_noise_eta=0.05, grad_clip=5.0, schedule="cosine",
                   warmup_steps=3, checkpoint_dir=os.path.join(workdir, "ckpt"), checkpoint_every_steps=4,
                   log_path=os.path.join(workdir, "log.jsonl"), log_every_steps=2, progress=False,
                   device="cpu", threads=1)
        cfg.update(json.loads(extra))
        callbacks = [KillAt(kill_at)] if kill_at else []
        result = Trainer(model, TrainerConfig(**cfg), callbacks=callbacks).fit(x, val=x[:40], resume=resume)
        save_tensors(out, model.state_dict())
        with open(out + ".json", "w") as fh:
            json.dump(result.history, fh)

    if __name__ == "__main__":
        main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1", int(sys.argv[5]), sys.argv[6])
''')


@pytest.fixture
def script(tmp_path) -> Path:
    path = tmp_path / "train_script.py"
    path.write_text(SCRIPT)
    return path


def run_script(script: Path, workdir: Path, out: Path, kill_at=0, resume=False, epochs=3, extra="{}"):
    args = [sys.executable, str(script), str(workdir), str(out), str(kill_at), "1" if resume else "0",
            str(epochs), extra]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)


def run_inprocess(script: Path, workdir: Path, out: Path, epochs=3, extra="{}") -> None:
    runpy.run_path(str(script))["main"](str(workdir), str(out), 0, False, epochs, extra)


def assert_same_state(a: Path, b: Path) -> None:
    sa, sb = load_tensors(a), load_tensors(b)
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"{k} differs after resume"


def log_without_times(path: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "time_s"} for line in path.read_text().splitlines()]


def test_resume_after_sigkill_is_bit_identical(script, tmp_path):
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    run_inprocess(script, ref_dir, tmp_path / "ref.safetensors")
    killed = run_script(script, run_dir, tmp_path / "run.safetensors", kill_at=9)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    latest = find_latest(run_dir / "ckpt")
    assert latest is not None and latest.name == "ckpt-000000008-0"  # mid-epoch 1, 3 of 5 steps done
    resumed = run_script(script, run_dir, tmp_path / "run.safetensors", resume=True)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_state(tmp_path / "ref.safetensors", tmp_path / "run.safetensors")
    ref_hist = json.loads((tmp_path / "ref.safetensors.json").read_text())
    assert json.loads((tmp_path / "run.safetensors.json").read_text()) == ref_hist
    assert log_without_times(run_dir / "log.jsonl") == log_without_times(ref_dir / "log.jsonl")


@pytest.mark.slow  # ~16 s: three kills and four processes; the single-kill test above stays in the default run
def test_repeated_sigkills_with_early_stopping_are_bit_identical(script, tmp_path):
    extra = json.dumps({"early_stopping_patience": 3, "restore_best": True, "keep_checkpoints": 1})
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    run_inprocess(script, ref_dir, tmp_path / "ref.safetensors", epochs=6, extra=extra)
    out = tmp_path / "run.safetensors"
    # killed before any checkpoint (next run starts afresh), then resumed from mid-epoch step 12 and
    # from the epoch-end checkpoint of step 20
    for kill_at in (3, 13, 22):
        proc = run_script(script, run_dir, out, kill_at=kill_at, resume=True, epochs=6, extra=extra)
        assert proc.returncode == -signal.SIGKILL, proc.stderr
    proc = run_script(script, run_dir, out, resume=True, epochs=6, extra=extra)
    assert proc.returncode == 0, proc.stderr
    assert_same_state(tmp_path / "ref.safetensors", out)
    assert json.loads(Path(f"{out}.json").read_text()) == json.loads((tmp_path / "ref.safetensors.json").read_text())
    assert log_without_times(run_dir / "log.jsonl") == log_without_times(ref_dir / "log.jsonl")


# ---- in-process resume ------------------------------------------------------------------------------------
def _fit(epochs: int, ckpt: Path | None, resume=False, **kw) -> tuple[AutoEncoder, Trainer]:
    torch.manual_seed(7)
    x = torch.rand(96, 10)
    model = AutoEncoder.mlp(10, 3, hidden=(12,), dropout=0.3)
    cfg = TrainerConfig(epochs=epochs, batch_size=16, grad_noise_eta=0.02, progress=False, device="cpu",
                        checkpoint_dir=str(ckpt) if ckpt else None, **kw)
    trainer = Trainer(model, cfg)
    trainer.result = trainer.fit(x, val=x[:32], resume=resume)
    return model, trainer


def test_resume_after_clean_stop_equals_longer_run(tmp_path):
    long_model, long_trainer = _fit(4, None)
    _fit(2, tmp_path / "ck")
    model, trainer = _fit(4, tmp_path / "ck", resume=True)
    assert trainer.resumed_from is not None and trainer.resumed_from.name == "ckpt-000000012-1"
    for (k, a), b in zip(long_model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), k
    assert trainer.result.history == long_trainer.result.history and trainer.result.steps == 24


def test_resume_without_checkpoint_starts_fresh_with_warning(tmp_path):
    with pytest.warns(UserWarning, match="no checkpoint"):
        model, trainer = _fit(1, tmp_path / "empty", resume=True)
    assert trainer.resumed_from is None and trainer.result.steps == 6


def test_resume_needs_checkpoint_dir():
    with pytest.raises(Exception, match="checkpoint_dir"):
        _fit(1, None, resume=True)


# ---- checkpoint files ---------------------------------------------------------------------------------------
def test_checkpoint_folder_holds_only_json_and_safetensors(tmp_path):
    _fit(2, tmp_path / "ck", checkpoint_every_steps=4, restore_best=True, keep_checkpoints=3)
    files = [p for p in (tmp_path / "ck").rglob("*") if p.is_file()]
    assert files and {p.suffix for p in files} == {".json", ".safetensors"}
    folders = sorted(p.name for p in (tmp_path / "ck").iterdir() if p.is_dir())
    assert folders == ["ckpt-000000008-0", "ckpt-000000012-0", "ckpt-000000012-1"]  # pruned to 3
    names = {p.name for p in (tmp_path / "ck" / folders[-1]).iterdir()}
    assert names == {"model.safetensors", "optimizer.safetensors", "optimizer.json", "rng.safetensors",
                     "trainer_state.json", "best_model.safetensors"}


def test_resume_never_unpickles(tmp_path, monkeypatch):
    import pickle

    _fit(1, tmp_path / "ck")

    def forbidden(*a, **k):
        raise AssertionError("unpickling during resume")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    _fit(2, tmp_path / "ck", resume=True)


@pytest.mark.parametrize("victim", ["model.safetensors", "optimizer.safetensors", "rng.safetensors",
                                    "trainer_state.json", "optimizer.json"])
def test_truncated_checkpoint_raises_checkpoint_error(tmp_path, victim):
    _fit(1, tmp_path / "ck")
    path = find_latest(tmp_path / "ck") / victim
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=victim.split(".")[0]):
        _fit(2, tmp_path / "ck", resume=True)


def test_mismatched_model_raises_checkpoint_error(tmp_path):
    _fit(1, tmp_path / "ck")
    model = AutoEncoder.mlp(10, 4, hidden=(12,))
    cfg = TrainerConfig(epochs=2, batch_size=16, progress=False, checkpoint_dir=str(tmp_path / "ck"))
    with pytest.raises(CheckpointError, match="does not match the model"):
        Trainer(model, cfg).fit(torch.rand(96, 10), resume=True)


def test_resume_from_missing_path_raises(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        _fit(1, None, resume=str(tmp_path / "nowhere"))


def test_crash_mid_write_keeps_last_good_checkpoint(tmp_path):
    ck = tmp_path / "ck"
    _fit(1, ck)
    good = find_latest(ck)
    partial = ck / ".tmp-ckpt-000000099-0-12345"  # what a crash during a save leaves behind
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"\x00" * 10)
    assert find_latest(ck) == good
    (ck / "latest.json").write_text('{"checkpoint": "ckpt-000000099-0"}')  # pointer to a missing folder
    assert find_latest(ck) == good
    _, trainer = _fit(2, ck, resume=True)
    assert trainer.resumed_from == good and not partial.exists()
