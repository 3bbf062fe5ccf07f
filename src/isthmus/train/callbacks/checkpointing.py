"""Write a checkpoint every N steps and at every epoch end (see :mod:`isthmus.train.checkpoint`)."""

from __future__ import annotations

from typing import Any

from isthmus.train.callbacks.base import Callback

__all__ = ["Checkpointer"]


class Checkpointer(Callback):
    """Calls ``trainer.save_checkpoint``; the Trainer runs it after every other callback so the
    saved state includes what they did at that step/epoch (log offset, early-stop counter)."""

    def __init__(self, every_steps: int | None = None, at_epoch_end: bool = True) -> None:
        self.every_steps = every_steps
        self.at_epoch_end = at_epoch_end

    def on_step_end(self, trainer) -> None:
        if self.every_steps and trainer.global_step % self.every_steps == 0:
            trainer.save_checkpoint(epoch_end=False)

    def on_epoch_end(self, trainer, logs: dict[str, Any]) -> None:
        if self.at_epoch_end:
            trainer.save_checkpoint(epoch_end=True)
