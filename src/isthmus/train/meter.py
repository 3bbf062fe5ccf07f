"""Running, sample-weighted means of the loss and every named term, without a sync per term.

Each step only appends the step's ``losses`` dict; :meth:`LossMeter.flush` turns the pending
tensors into floats in one ``stack`` per term. The trainer flushes at log steps, checkpoints and
epoch ends, i.e. at the same steps in a resumed and an uninterrupted run, so their sums agree.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["LossMeter"]


class LossMeter:
    """Two windows of running sums: the current epoch and the current log interval."""

    def __init__(self) -> None:
        self._pending: list[tuple[dict[str, Any], int]] = []
        self.epoch = _Sums()
        self.interval = _Sums()

    def add(self, loss: float, terms: dict[str, Any], n: int) -> None:
        """Record one step: the loss value, its terms (tensors, kept until flush) and the batch size."""
        self._pending.append((terms, n))
        self.epoch.loss += loss * n
        self.epoch.n += n
        self.interval.loss += loss * n
        self.interval.n += n

    def flush(self) -> None:
        if not self._pending:
            return
        sums = _weighted_term_sums(self._pending)
        self._pending = []
        for window in (self.epoch, self.interval):
            for k, v in sums.items():
                window.terms[k] = window.terms.get(k, 0.0) + v

    def reset_epoch(self) -> None:
        self.flush()
        self.epoch = _Sums()

    def reset_interval(self) -> None:
        self.flush()
        self.interval = _Sums()

    def state_dict(self) -> dict[str, Any]:
        self.flush()
        return {"epoch": self.epoch.to_dict(), "interval": self.interval.to_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pending = []
        self.epoch = _Sums.from_dict(state["epoch"])
        self.interval = _Sums.from_dict(state["interval"])


class _Sums:
    __slots__ = ("loss", "n", "terms")

    def __init__(self, loss: float = 0.0, n: int = 0, terms: dict[str, float] | None = None) -> None:
        self.loss = loss
        self.n = n
        self.terms = dict(terms or {})

    def means(self) -> dict[str, float]:
        """``{"loss": mean, term: mean, ...}``; empty when nothing was recorded."""
        if self.n == 0:
            return {}
        return {"loss": self.loss / self.n, **{k: v / self.n for k, v in self.terms.items()}}

    def to_dict(self) -> dict[str, Any]:
        return {"loss": self.loss, "n": self.n, "terms": dict(self.terms)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "_Sums":
        return cls(float(d["loss"]), int(d["n"]), {k: float(v) for k, v in d["terms"].items()})


def _weighted_term_sums(pending: list[tuple[dict[str, Any], int]]) -> dict[str, float]:
    """``sum_i n_i * term_i`` per term name; one ``stack`` per name when every step has the same names."""
    names = list(pending[0][0])
    if not all(len(t) == len(names) and all(k in t for k in names) for t, _ in pending):
        out: dict[str, float] = {}
        for terms, n in pending:
            for k, v in terms.items():
                out[k] = out.get(k, 0.0) + float(v.detach() if isinstance(v, torch.Tensor) else v) * n
        return out
    weights = torch.tensor([n for _, n in pending], dtype=torch.float64)
    out = {}
    with torch.no_grad():
        for k in names:
            values = torch.stack([torch.as_tensor(t[k]) for t, _ in pending])  # (steps,), terms are scalars
            out[k] = float((values.to("cpu", torch.float64).reshape(-1) * weights).sum())
    return out
