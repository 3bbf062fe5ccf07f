"""A tqdm progress bar over all training steps (``TrainerConfig.progress`` turns it off)."""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm

from isthmus.train.callbacks.base import Callback

__all__ = ["ProgressBar"]


class ProgressBar(Callback):
    """One bar for the whole fit; the postfix shows the epoch and the latest loss every ``every`` steps."""

    def __init__(self, every: int = 50) -> None:
        self.every = every
        self.bar: Any = None

    def on_fit_start(self, trainer) -> None:
        self.bar = tqdm(
            total=trainer.total_steps or None,
            initial=trainer.global_step,
            desc="train",
            unit="step",
            dynamic_ncols=True,
        )

    def on_step_end(self, trainer) -> None:
        self.bar.update(1)
        if trainer.global_step % self.every == 0:
            self.bar.set_postfix(epoch=trainer.epoch, loss=f"{trainer.last_loss:.4g}", refresh=False)

    def on_epoch_end(self, trainer, logs: dict[str, Any]) -> None:
        post = {"epoch": trainer.epoch, "loss": f"{logs['train_loss']:.4g}"}
        if "val_loss" in logs:
            post["val"] = f"{logs['val_loss']:.4g}"
        self.bar.set_postfix(post)

    def on_fit_end(self, trainer) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
