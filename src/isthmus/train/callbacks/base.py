"""The callback contract: small objects with optional hooks, called by the Trainer.

Hooks receive the trainer itself; read what you need from it (``trainer.global_step``,
``trainer.epoch``, ``trainer.last_loss``, ``trainer.last_output``, ``trainer.last_grad_norm``,
``trainer.meter``, ``trainer.optimizer``). Set ``trainer.should_stop = True`` to end training after
the current epoch. The trainer only calls hooks a callback overrides, so an unused hook costs nothing.

Callbacks with state that must survive a resume implement ``state_dict``/``load_state_dict`` with
JSON-safe values; the state is saved in ``trainer_state.json`` under the callback's ``state_key``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from isthmus.train.trainer import Trainer

__all__ = ["Callback", "HOOKS", "overridden_hooks"]

HOOKS = ("on_fit_start", "on_epoch_start", "on_step_end", "on_epoch_end", "on_fit_end")


class Callback:
    """Base class; override any of the hooks below."""

    @property
    def state_key(self) -> str:
        return type(self).__name__

    def on_fit_start(self, trainer: "Trainer") -> None:
        """Once per ``fit``, after a resume has been applied."""

    def on_epoch_start(self, trainer: "Trainer") -> None:
        """Before the first step of an epoch (not called when resuming mid-epoch)."""

    def on_step_end(self, trainer: "Trainer") -> None:
        """After every optimizer step (``trainer.global_step`` already counts it)."""

    def on_epoch_end(self, trainer: "Trainer", logs: dict[str, Any]) -> None:
        """After validation; ``logs`` is the epoch's history entry (train_*/val_* means, lr)."""

    def on_fit_end(self, trainer: "Trainer") -> None:
        """Always called when ``fit`` leaves, also on error (``trainer.error`` holds it)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


def overridden_hooks(callbacks: list[Any], hook: str) -> list[Any]:
    """Bound ``hook`` methods of the callbacks that implement it themselves."""
    base = getattr(Callback, hook)
    out = []
    for cb in callbacks:
        fn = getattr(type(cb), hook, None)
        if fn is not None and fn is not base:
            out.append(getattr(cb, hook))
    return out
