"""train → evaluate → encode → reconstruct through the CLI, plus the demo, on tiny settings."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from isthmus.cli.main import main


def test_train_evaluate_encode_reconstruct(tmp_path, capsys):
    run = tmp_path / "run"
    rc = main(["train", "trainer.epochs=2", "trainer.progress=false", "model.latent_dim=3",
               "model.hidden=[32]", "data.limit=300", "--out", str(run)])
    assert rc == 0
    for name in ("model/config.json", "model/model.safetensors", "scaler.json", "run_config.json",
                 "metrics.json", "train_log.jsonl"):
        assert (run / name).exists(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["val_mse"] > 0
    capsys.readouterr()

    assert main(["evaluate", str(run), "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["n"] == 60 and ev["mse"] == pytest.approx(metrics["val_mse"], rel=1e-5)

    assert main(["encode", str(run), "-o", str(tmp_path / "z.npy")]) == 0
    assert np.load(tmp_path / "z.npy").shape == (60, 3)
    assert main(["encode", str(run), "--data", "digits", "-o", str(tmp_path / "z.parquet")]) == 0
    df = pd.read_parquet(tmp_path / "z.parquet")
    assert list(df.columns) == ["z0", "z1", "z2", "label"] and len(df) == 300

    assert main(["reconstruct", str(run), "-n", "5", "-o", str(tmp_path / "r.png")]) == 0
    assert (tmp_path / "r.png").stat().st_size > 1000


def test_train_on_csv_with_yaml_config(tmp_path, capsys):
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(120, 5)), columns=list("abcde"))
    df["label"] = rng.integers(0, 2, 120)
    df.to_csv(tmp_path / "d.csv", index=False)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data: {{source: {tmp_path / 'd.csv'}, label_column: label}}\n"
                   "model: {latent_dim: 2, hidden: [8], bottleneck: gaussian}\n"
                   "trainer: {epochs: 1, progress: false}\n")
    assert main(["train", str(cfg), "--out", str(tmp_path / "r")]) == 0
    scaler = json.loads((tmp_path / "r" / "scaler.json").read_text())
    assert scaler["kind"] == "standard" and len(scaler["center"]) == 5  # label column excluded


def test_train_errors_are_clear(tmp_path, capsys):
    assert main(["train", "trainer.epochs=0"]) == 2
    assert "epochs must be >= 1" in capsys.readouterr().err
    assert main(["train", "model.latnt_dim=3"]) == 2
    assert "unknown field 'latnt_dim'" in capsys.readouterr().err
    assert main(["train", "data.source=" + str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nope")]) == 2


def test_print_config_round_trips(tmp_path, capsys):
    assert main(["train", "--print-config", "model.bottleneck=gaussian"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["model"]["bottleneck"] == "gaussian" and cfg["trainer"]["epochs"] == 30


def test_demo_runs_and_writes_report(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--epochs", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "report:" in out
    report = (tmp_path / "report.md").read_text()
    for needle in ("PCA(8)", "AutoEncoder", "reconstructions.png", "latent_map.png", '"latent_dim": 8'):
        assert needle in report
    for png in ("reconstructions.png", "latent_map.png", "curve_autoencoder.png"):
        assert (tmp_path / png).stat().st_size > 1000
    rows = json.loads((tmp_path / "metrics.json").read_text())
    assert {r["method"] for r in rows} == {"PCA(8)", "AutoEncoder", "VAE (beta=1)"}
