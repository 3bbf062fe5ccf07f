"""Issue 11, items 1-11: nothing silently wrong, nothing lost, as a careful user meets the CLI.

Each test reproduces one finding of the newcomer audit (shared/audits/newcomer-reliability.md) and
failed before the fix it guards.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from isthmus.cli.main import main
from isthmus.cli.run_folder import LOCK_NAME, claim_run_folder

SRC = Path(__file__).resolve().parents[1] / "src"
FAST = ["trainer.progress=false", "model.hidden=[16]", "model.latent_dim=2", "trainer.batch_size=32"]


def _csv(path: Path, n: int = 160, seed: int = 0, label: bool = True) -> Path:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 2))
    df = pd.DataFrame(np.c_[base, base @ rng.normal(size=(2, 4)) + 0.05 * rng.normal(size=(n, 4))],
                      columns=list("abcdef"))
    if label:
        df["label"] = rng.integers(0, 2, n)
    df.to_csv(path, index=False)
    return path


def _train(tmp_path: Path, out: str = "run", *extra: str, data: Path | None = None) -> tuple[int, Path]:
    data = data or _csv(tmp_path / "d.csv")
    run = tmp_path / out
    overrides, flags = [e for e in extra if "=" in e], [e for e in extra if "=" not in e]
    rc = main(["train", "trainer.epochs=2", f"data.source={data}", "data.label_column=label", *FAST, *overrides,
               "--out", str(run), *flags])
    return rc, run


def _evaluate(run: Path, data: Path, capsys) -> dict:
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data", str(data), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


# ---- 1. feature names and order are checked at every use ------------------------------------------------
def test_columns_in_another_order_are_matched_by_name_and_renamed_ones_refused(tmp_path, capsys):
    rc, run = _train(tmp_path)
    assert rc == 0
    assert json.loads((run / "schema.json").read_text())["feature_names"] == list("abcdef")
    df = pd.read_csv(tmp_path / "d.csv")
    want = _evaluate(run, tmp_path / "d.csv", capsys)["mse"]
    df[["label", "f", "e", "d", "c", "b", "a"]].to_csv(tmp_path / "swapped.csv", index=False)
    assert _evaluate(run, tmp_path / "swapped.csv", capsys)["mse"] == pytest.approx(want, rel=1e-6)
    df.rename(columns={"c": "c2"}).to_csv(tmp_path / "renamed.csv", index=False)
    assert main(["evaluate", str(run), "--data", str(tmp_path / "renamed.csv")]) == 2
    err = capsys.readouterr().err
    assert "lacks ['c']" in err and "['c2']" in err
    assert main(["encode", str(run), "--data", str(tmp_path / "renamed.csv"), "-o", str(tmp_path / "z.npy")]) == 2
    assert not (tmp_path / "z.npy").exists()


def test_encode_unlabelled_new_data_of_a_run_trained_with_labels(tmp_path, capsys):
    rc, run = _train(tmp_path)
    assert rc == 0
    _csv(tmp_path / "new.csv", n=30, seed=5, label=False)
    assert main(["encode", str(run), "--data", str(tmp_path / "new.csv"), "-o", str(tmp_path / "z.csv")]) == 0
    z = pd.read_csv(tmp_path / "z.csv")
    assert list(z.columns) == ["z0", "z1"] and len(z) == 30


# ---- 2. a run folder is complete or refused --------------------------------------------------------------
@pytest.mark.parametrize("missing", ["scaler.json", "run_config.json", "model/model.safetensors"])
def test_incomplete_run_folder_is_refused_naming_the_file(tmp_path, capsys, missing):
    rc, run = _train(tmp_path)
    assert rc == 0
    (run / missing).unlink()
    capsys.readouterr()
    assert main(["encode", str(run), "--data", str(tmp_path / "d.csv"), "-o", str(tmp_path / "z.npy")]) == 2
    err = capsys.readouterr().err
    assert missing in err and ("--resume" in err) == (missing == "model/model.safetensors")
    assert not (tmp_path / "z.npy").exists()


# ---- 3. a pandas index column is not a feature ----------------------------------------------------------
def test_pandas_index_column_is_dropped_with_a_notice(tmp_path):
    from isthmus.data import load_table

    df = pd.DataFrame(np.random.default_rng(0).normal(size=(20, 3)), columns=list("xyz"))
    df.to_csv(tmp_path / "i.csv")  # to_csv's default writes the index as an unnamed first column
    with pytest.warns(UserWarning, match="row index"):
        table = load_table(tmp_path / "i.csv")
    assert table.feature_names == list("xyz")
    kept = load_table(tmp_path / "i.csv", columns=["Unnamed: 0", "x"])  # asked for by name: kept
    assert kept.feature_names == ["Unnamed: 0", "x"]


def test_detect_ignores_the_index_of_new_rows(tmp_path, capsys):
    rng = np.random.default_rng(0)
    cols = list("abcd")
    pd.DataFrame(rng.normal(size=(300, 4)), columns=cols).to_csv(tmp_path / "fit.csv")
    new = pd.DataFrame(rng.normal(size=(100, 4)), columns=cols, index=np.arange(1000, 1100))
    new.to_csv(tmp_path / "new.csv")
    with pytest.warns(UserWarning):
        assert main(["detect", "fit", str(tmp_path / "fit.csv"), "--out", str(tmp_path / "det"),
                     "--n-estimators", "1", "--max-steps", "150", "--no-progress"]) == 0
        assert main(["detect", "score", str(tmp_path / "det"), str(tmp_path / "new.csv"),
                     "--output", str(tmp_path / "s.csv")]) == 0
    scores = pd.read_csv(tmp_path / "s.csv")
    assert "Unnamed: 0" not in set(scores["top1"])
    assert scores["flag"].mean() < 0.2  # with the index as a feature every new row was flagged


# ---- 7. numbers in YAML parse as numbers ------------------------------------------------------------------
def test_yaml_exponent_numbers(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("trainer: {lr: 1e-3, epochs: 2e0, weight_decay: 5E-5}\n")
    assert main(["train", str(cfg), "--print-config"]) == 0
    trainer = json.loads(capsys.readouterr().out)["trainer"]
    assert trainer["lr"] == 0.001 and trainer["epochs"] == 2 and trainer["weight_decay"] == 5e-5


# ---- 8. one run-folder policy: refuse non-empty unless --overwrite / --resume; a lock -------------------
def test_train_refuses_a_non_empty_folder_and_overwrite_clears_it(tmp_path, capsys):
    rc, run = _train(tmp_path)
    assert rc == 0
    log = (run / "train_log.jsonl").read_bytes()
    (run / "stale.png").write_bytes(b"x")
    capsys.readouterr()
    rc, _ = _train(tmp_path, "run", "model.latent_dim=3")
    assert rc == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "--overwrite" in err
    assert (run / "train_log.jsonl").read_bytes() == log  # the old run is untouched
    rc, _ = _train(tmp_path, "run", "model.latent_dim=3", "--overwrite")
    assert rc == 0 and not (run / "stale.png").exists()
    assert json.loads((run / "run_config.json").read_text())["model"]["latent_dim"] == 3


def test_detect_fit_refuses_a_folder_with_an_old_fleet(tmp_path, capsys):
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(120, 3)), columns=list("abc"))
    df["host"] = np.repeat(["h1", "h2"], 60)
    df.to_csv(tmp_path / "t.csv", index=False)
    fit = ["detect", "fit", str(tmp_path / "t.csv"), "--out", str(tmp_path / "det"), "--n-estimators", "1",
           "--max-steps", "60", "--no-progress"]
    assert main([*fit, "--entity", "host"]) == 0
    assert (tmp_path / "det" / "fleet.json").exists()
    capsys.readouterr()
    assert main([*fit, "--columns", "a,b,c"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main([*fit, "--columns", "a,b,c", "--overwrite"]) == 0
    assert not (tmp_path / "det" / "fleet.json").exists()  # score now uses the new single model


def test_a_locked_run_folder_is_refused(tmp_path, capsys):
    with claim_run_folder(tmp_path / "run"):
        rc, _ = _train(tmp_path, "run", "--overwrite")
    assert rc == 2
    assert "in use by isthmus process" in capsys.readouterr().err
    assert (tmp_path / "run" / LOCK_NAME).exists()
    rc, _ = _train(tmp_path, "run")  # lock released: the folder holds only the lock file, so it is "empty"
    assert rc == 0


# ---- 9. the CLI resumes a killed run bit-identically ------------------------------------------------------
def _tensors(path: Path) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(path))


def _log(path: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "time_s"} for line in path.read_text().splitlines()]


# The child process SIGKILLs itself right after training step KILL_AT (after any checkpoint of that step):
# a deterministic kill point, so the test cannot race the run to its end on a loaded machine.
KILLER = """
import os, signal, sys
from isthmus.train.trainer import Trainer
kill_at = int(sys.argv[1])
build = Trainer._build_callbacks

class Kill:
    def on_step_end(self, trainer):
        if trainer.global_step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

Trainer._build_callbacks = lambda self, has_val: build(self, has_val) + [Kill()]
from isthmus.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def run_killed(args: list[str], kill_at: int) -> subprocess.CompletedProcess:
    """``isthmus <args>`` in a subprocess that is SIGKILLed after step ``kill_at``."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run([sys.executable, "-c", KILLER, str(kill_at), *args], env=env, capture_output=True,
                          timeout=300)


def resume_args(data: Path, epochs: int) -> list[str]:
    return ["train", f"trainer.epochs={epochs}", f"data.source={data}", "data.label_column=label", *FAST,
            "trainer.checkpoint_every_steps=5"]


def assert_same_run(a: Path, b: Path) -> None:
    ta, tb = _tensors(a / "model" / "model.safetensors"), _tensors(b / "model" / "model.safetensors")
    assert ta.keys() == tb.keys() and all(np.array_equal(ta[k], tb[k]) for k in ta)
    assert _log(a / "train_log.jsonl") == _log(b / "train_log.jsonl")


def test_train_resume_after_sigkill_is_bit_identical(tmp_path, capsys):
    data = _csv(tmp_path / "d.csv")
    args = resume_args(data, epochs=6)  # 128 training rows / 32 = 4 steps per epoch, 24 steps
    killed = tmp_path / "killed"
    proc = run_killed([*args, "--out", str(killed)], kill_at=13)  # mid-epoch, 3 steps after a checkpoint
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert not (killed / "model").exists()
    capsys.readouterr()
    assert main(["evaluate", str(killed)]) == 2
    assert "--resume" in capsys.readouterr().err  # an unfinished run says how to continue it
    assert main(["train", "--out", str(killed), "--resume"]) == 0  # config read back from the folder
    assert main([*args, "--out", str(tmp_path / "straight")]) == 0
    assert_same_run(killed, tmp_path / "straight")


def test_resume_with_a_different_config_is_refused(tmp_path, capsys):
    rc, run = _train(tmp_path)
    assert rc == 0
    capsys.readouterr()
    rc, _ = _train(tmp_path, "run", "model.latent_dim=5", "--resume")
    assert rc == 2
    assert "model.latent_dim: 2 (saved) vs 5" in capsys.readouterr().err


# ---- 10. writability checked before training; a failed final save keeps the checkpoint -------------------
@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_out_fails_before_training(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        rc, _ = _train(tmp_path, "ro/run")
    finally:
        ro.chmod(stat.S_IRWXU)
    assert rc == 2 and "cannot" in capsys.readouterr().err


def test_unwritable_subfolder_is_found_before_training(tmp_path, monkeypatch, capsys):
    import tempfile

    from isthmus.cli import run_folder

    rc, run = _train(tmp_path)
    assert rc == 0
    real = tempfile.mkstemp

    def refuse_model_dir(*args, dir=None, **kw):
        if dir is not None and Path(dir).name == "model":
            raise PermissionError(errno.EACCES, "Permission denied", str(dir))
        return real(*args, dir=dir, **kw)

    monkeypatch.setattr(run_folder.tempfile, "mkstemp", refuse_model_dir)
    capsys.readouterr()
    rc, _ = _train(tmp_path, "run", "--resume")
    assert rc == 2
    assert f"cannot write to {run / 'model'}" in capsys.readouterr().err


def test_failed_final_save_keeps_the_checkpoint_and_resume_writes_the_model(tmp_path, monkeypatch, capsys):
    from isthmus.models import AutoEncoder

    real = AutoEncoder.save_pretrained

    def disk_full(self, *a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device", "model.safetensors")

    monkeypatch.setattr(AutoEncoder, "save_pretrained", disk_full)
    rc, run = _train(tmp_path)
    assert rc == 2
    err = capsys.readouterr().err
    assert "saving the model" in err and "last checkpoint" in err and "--resume" in err
    assert list((run / "checkpoints").glob("ckpt-*"))
    monkeypatch.setattr(AutoEncoder, "save_pretrained", real)
    assert main(["train", "--out", str(run), "--resume"]) == 0
    assert (run / "model" / "model.safetensors").exists() and (run / "metrics.json").exists()


# ---- 11. saved files respect the umask --------------------------------------------------------------------
def test_run_folder_files_are_readable_by_others_under_umask_022(tmp_path):
    old = os.umask(0o022)
    try:
        rc, run = _train(tmp_path)
    finally:
        os.umask(old)
    assert rc == 0
    for name in ("model/model.safetensors", "model/config.json", "scaler.json", "run_config.json", "metrics.json"):
        assert stat.S_IMODE((run / name).stat().st_mode) == 0o644, name


def test_checkpoint_save_leaves_a_live_process_temp_folder_alone(tmp_path):
    """Two processes sharing a checkpoint_dir (Python API, no CLI lock): one save no longer deletes the
    other's half-written temp folder (that crashed it with FileNotFoundError)."""
    import torch

    from isthmus.models import AutoEncoder
    from isthmus.train import Trainer, TrainerConfig

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        theirs = tmp_path / f".tmp-ckpt-000000001-0-{other.pid}"
        theirs.mkdir(parents=True)
        dead = tmp_path / ".tmp-ckpt-000000001-0-999999999"
        dead.mkdir()
        Trainer(AutoEncoder.mlp(4, latent_dim=2, hidden=[4]),
                TrainerConfig(epochs=1, batch_size=4, progress=False, checkpoint_dir=str(tmp_path))).fit(torch.randn(8, 4))
        assert theirs.exists() and not dead.exists()
    finally:
        other.kill()
        other.wait()
