"""Experiment tracking over the JSONL log: TensorBoard and MLflow, both offline and file-based.

The JSONL log (:class:`~isthmus.train.callbacks.MetricsLogger`, ``TrainerConfig.log_path``) stays
the source of truth. A tracker tails it: after every step and epoch it reads the lines written
since its last look and forwards their numbers, so trackers log exactly what the JSONL holds
(step events as ``step/<name>``, epoch events as ``epoch/<name>``, both against the global step).
Their packages are optional (``pip install 'isthmus[tracking]'``) and imported only when a fit starts.
Under ``torchrun`` only rank 0 writes the log, so only rank 0 forwards it. After a resume the
tracker continues from the checkpoint's log offset; steps trained after that checkpoint and
before the crash show up twice in the tracker (the JSONL itself is cut back and never does).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from isthmus.config import ConfigError
from isthmus.train.callbacks.base import Callback

__all__ = ["JSONLForwarder", "TensorBoardLogger", "MLflowLogger", "make_tracker", "TRACKERS"]

_SKIP = {"event", "step", "epoch", "time_s"}


def _import(module: str, package: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{package} is not installed; install it with pip install 'isthmus[tracking]' (or pip install {package})"
        ) from exc


class JSONLForwarder(Callback):
    """Base: tails ``TrainerConfig.log_path`` and hands each new record to :meth:`emit`."""

    def __init__(self) -> None:
        self._path: Path | None = None
        self._offset = 0
        self._resumed = False
        self.active = False

    def state_dict(self) -> dict[str, Any]:
        return {"offset": self._offset}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._offset, self._resumed = int(state.get("offset", 0)), True

    def on_fit_start(self, trainer) -> None:
        self.active = trainer.dist.is_main  # only rank 0 writes the log it forwards
        if not self.active:
            return
        if not trainer.config.log_path:
            raise ConfigError(f"{type(self).__name__} forwards the JSONL log; set TrainerConfig.log_path")
        self._path = Path(trainer.config.log_path)
        if not self._resumed:
            self._offset = 0
        self.open(trainer)

    def on_step_end(self, trainer) -> None:
        if self.active and trainer.global_step % trainer.config.log_every_steps == 0:
            self._forward()

    def on_epoch_end(self, trainer, logs: dict[str, Any]) -> None:
        if self.active:
            self._forward()

    def on_fit_end(self, trainer) -> None:
        if self.active:
            self._forward()
            self.close(trainer)
            self.active = False
        self._resumed = False

    def _forward(self) -> None:
        if self._path is None or not self._path.exists():
            return
        with open(self._path, "rb") as fh:
            fh.seek(self._offset)
            chunk = fh.read()
        end = chunk.rfind(b"\n") + 1  # only complete lines
        for line in chunk[:end].splitlines():
            record = json.loads(line)
            step = int(record.get("step", 0))
            prefix = record.get("event", "step")
            values = {
                f"{prefix}/{k}": float(v)
                for k, v in record.items()
                if k not in _SKIP and isinstance(v, (int, float)) and not isinstance(v, bool)
            }
            if values:
                self.emit(values, step)
        self._offset += end

    # ---- what a tracker implements ----------------------------------------------------------------
    def open(self, trainer) -> None:
        """Start writing (called on rank 0 at fit start)."""

    def emit(self, values: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def close(self, trainer) -> None:
        """Flush and close (called on rank 0 at fit end, also after an error)."""


class TensorBoardLogger(JSONLForwarder):
    """Event files in ``log_dir`` for ``tensorboard --logdir`` (needs the ``tensorboard`` package)."""

    def __init__(self, log_dir: str | Path) -> None:
        super().__init__()
        self.log_dir = Path(log_dir)
        self.writer: Any = None

    def open(self, trainer) -> None:
        _import("tensorboard", "tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def emit(self, values: dict[str, float], step: int) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, global_step=step)

    def close(self, trainer) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class MLflowLogger(JSONLForwarder):
    """An MLflow run in a local file store (``tracking_uri``, default ``file:<dir>/mlruns``).

    MLflow 3 keeps the file store in maintenance mode behind ``MLFLOW_ALLOW_FILE_STORE``; this
    logger allows it for its own store while it opens it, and leaves the variable as it was.
    The run's id is checkpointed, so a resumed fit logs into the same run.
    """

    def __init__(
        self,
        tracking_uri: str | Path,
        experiment: str = "isthmus",
        run_name: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        uri = str(tracking_uri)
        self.tracking_uri = uri if ":" in uri.split("/", 1)[0] else Path(uri).resolve().as_uri()
        self.experiment, self.run_name, self.params = experiment, run_name, dict(params or {})
        self.run_id: str | None = None
        self.client: Any = None

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "run_id": self.run_id}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.run_id = state.get("run_id")

    def open(self, trainer) -> None:
        tracking = _import("mlflow.tracking", "mlflow-skinny")
        previous = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
        if not self._resumed:
            self.run_id = None  # a fresh fit is a fresh run
        try:
            self.client = tracking.MlflowClient(tracking_uri=self.tracking_uri)
            exp = self.client.get_experiment_by_name(self.experiment)
            exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(self.experiment)
            if self.run_id is None:
                self.run_id = self.client.create_run(exp_id, run_name=self.run_name).info.run_id
                for k, v in {**trainer.config.to_dict(), **self.params}.items():
                    self.client.log_param(self.run_id, k, json.dumps(v) if not isinstance(v, str) else v)
        finally:
            if previous is None:
                os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)
            else:
                os.environ["MLFLOW_ALLOW_FILE_STORE"] = previous

    def emit(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in values.items()])

    def close(self, trainer) -> None:
        if self.client is not None and self.run_id is not None:
            status = (
                "FAILED"
                if trainer.error is not None and not isinstance(trainer.error, KeyboardInterrupt)
                else "KILLED"
                if trainer.error is not None
                else "FINISHED"
            )
            self.client.set_terminated(self.run_id, status=status)
        self.client = None


TRACKERS = ("tensorboard", "mlflow")


def make_tracker(name: str, out_dir: str | Path) -> JSONLForwarder:
    """The tracker ``name`` writing under ``out_dir`` (``tensorboard/`` or ``mlruns/``)."""
    if name == "tensorboard":
        return TensorBoardLogger(Path(out_dir) / "tensorboard")
    if name == "mlflow":
        return MLflowLogger(Path(out_dir) / "mlruns", run_name=Path(out_dir).name)
    raise ValueError(f"unknown tracker {name!r}; choose from {list(TRACKERS)}")
