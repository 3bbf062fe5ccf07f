"""JSON-lines metrics log: one line per log event, every loss term by name.

Step events (every ``every`` steps) hold the interval's mean loss and terms, the learning rate,
the gradient norm (before clipping and noise) and the elapsed time; epoch events hold the
epoch's ``train_*``/``val_*`` means. A resumed run truncates the file to what it held at the
checkpoint, so the log never shows steps twice.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import IO, Any

from isthmus.train.callbacks.base import Callback

__all__ = ["MetricsLogger"]


class MetricsLogger(Callback):
    def __init__(self, path: str | Path, every: int = 50) -> None:
        self.path = Path(path)
        self.every = every
        self._fh: IO[bytes] | None = None
        self._resume_bytes: int | None = None
        self._t0 = 0.0

    def state_dict(self) -> dict[str, Any]:
        if self._fh is not None:
            self._fh.flush()
        return {"bytes": self._fh.tell() if self._fh is not None else 0}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._resume_bytes = int(state.get("bytes", 0))

    def on_fit_start(self, trainer) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._resume_bytes is not None and self.path.exists():
            with open(self.path, "r+b") as fh:
                fh.truncate(self._resume_bytes)
            self._fh = open(self.path, "ab")
        else:
            self._fh = open(self.path, "wb")
        self._resume_bytes = None
        self._t0 = time.perf_counter()

    def on_step_end(self, trainer) -> None:
        if trainer.global_step % self.every:
            return
        meter = trainer.meter
        meter.flush()
        means = meter.interval.means()
        meter.reset_interval()
        gn = trainer.last_grad_norm
        self._write(
            {
                "event": "step",
                "step": trainer.global_step,
                "epoch": trainer.epoch,
                **means,
                "lr": trainer.optimizer.param_groups[0]["lr"],
                "grad_norm": float(gn) if gn is not None else None,
                "time_s": round(time.perf_counter() - self._t0, 4),
            }
        )

    def on_epoch_end(self, trainer, logs: dict[str, Any]) -> None:
        self._write({"event": "epoch", **logs, "time_s": round(time.perf_counter() - self._t0, 4)})

    def on_fit_end(self, trainer) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _write(self, record: dict[str, Any]) -> None:
        assert self._fh is not None, "MetricsLogger used outside fit"
        self._fh.write((json.dumps(record) + "\n").encode())
        self._fh.flush()
