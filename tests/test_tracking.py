"""TensorBoard and MLflow trackers forward exactly what the JSONL log holds (offline, file-based)."""

from __future__ import annotations

import json
import os

import pytest
import torch

from isthmus.cli.main import main
from isthmus.config import ConfigError
from isthmus.models import AutoEncoder
from isthmus.train import Trainer, TrainerConfig
from isthmus.train.callbacks import MLflowLogger, TensorBoardLogger

X = torch.rand(64, 5, generator=torch.Generator().manual_seed(0))


def _fit(tmp_path, tracker, **cfg):
    torch.manual_seed(0)
    kw = dict(epochs=2, batch_size=16, progress=False, log_path=str(tmp_path / "log.jsonl"), log_every_steps=2) | cfg
    Trainer(AutoEncoder.mlp(5, 2, hidden=[8]), TrainerConfig(**kw), callbacks=[tracker]).fit(X, val=X[:16])
    return [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]


def _jsonl_series(records, event, key):
    return [(r["step"], r[key]) for r in records if r["event"] == event]


def _match(got, want):
    """Same steps, same values (TensorBoard stores float32)."""
    assert [s for s, _ in got] == [s for s, _ in want]
    assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6)
    return True


def _tb_scalars(log_dir, tag):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_tensorboard_receives_the_jsonl_numbers(tmp_path):
    pytest.importorskip("tensorboard")
    records = _fit(tmp_path, TensorBoardLogger(tmp_path / "tb"))
    for event, key in (("step", "loss"), ("step", "lr"), ("epoch", "val_loss")):
        want = _jsonl_series(records, event, key)
        assert want and _match(_tb_scalars(tmp_path / "tb", f"{event}/{key}"), want)


def test_mlflow_run_holds_the_jsonl_numbers_and_resume_continues_it(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    logger = MLflowLogger(tmp_path / "mlruns", run_name="r1")
    records = _fit(tmp_path, logger, checkpoint_dir=str(tmp_path / "ck"))
    assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ  # the logger put the variable back as it found it
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=logger.tracking_uri)
    run = client.get_run(logger.run_id)
    history = [(m.step, m.value) for m in client.get_metric_history(logger.run_id, "step/loss")]
    assert run.info.status == "FINISHED" and run.data.params["batch_size"] == "16"
    assert _match(sorted(history), _jsonl_series(records, "step", "loss"))
    # a new process resuming the run (more epochs) logs into the same MLflow run
    again = MLflowLogger(tmp_path / "mlruns")
    torch.manual_seed(0)
    Trainer(AutoEncoder.mlp(5, 2, hidden=[8]),
            TrainerConfig(epochs=3, batch_size=16, progress=False, log_path=str(tmp_path / "log.jsonl"),
                          log_every_steps=2, checkpoint_dir=str(tmp_path / "ck")),
            callbacks=[again]).fit(X, val=X[:16], resume=True)
    assert again.run_id == logger.run_id


def test_a_tracker_needs_the_jsonl_log(tmp_path):
    with pytest.raises(ConfigError, match="log_path"):
        _fit(tmp_path, TensorBoardLogger(tmp_path / "tb"), log_path=None)


def test_cli_log_to_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    code = main(["train", "trainer.epochs=1", "trainer.progress=false", "data.limit=200", "--out", str(out),
                 "--log-to", "tensorboard"])
    assert code == 0
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert _tb_scalars(out / "tensorboard", "epoch/val_loss")
