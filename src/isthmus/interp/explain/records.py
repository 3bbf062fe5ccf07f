"""Latent records: what an explainer sees and what a scorer tests, for one latent (or neuron).

Activations ``acts`` are ``(N, T)`` per-token values of one latent over ``N`` sequences of ``T`` tokens.
Sequences are cut into non-overlapping windows of ``ctx_len`` tokens (delphi's ``example_ctx_len``); a window
is *activating* when its max activation exceeds ``threshold`` (0 for SAE codes). A :class:`LatentRecord` holds

* ``top``: the highest-activating windows,
* ``train``: windows for the explainer (the top ones, or samples across activation quantiles),
* ``test``: held-out activating windows sampled evenly across ``n_quantiles`` activation quantiles,
* ``non_activating``: random windows whose max activation is <= ``threshold``; when too few exist (dense
  neurons) the lowest-activating windows fill up and ``non_activating_source`` says ``"lowest"``;
* ``train_non_activating`` (optional, ``n_train_non_activating``): other random non-activating windows, disjoint
  from ``non_activating``, for a *contrastive* explainer (delphi's contrastive explainer also shows some).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

__all__ = ["Example", "LatentRecord", "build_record", "build_records", "token_counts", "render_window"]


@dataclass
class Example:
    tokens: list[int]
    acts: list[float]
    quantile: int = -1  # 0 = lowest activation quantile; -1 = non-activating / top

    @property
    def max_act(self) -> float:
        return max(self.acts) if self.acts else 0.0

    def active(self, threshold: float = 0.0) -> list[bool]:
        return [a > threshold for a in self.acts]


@dataclass
class LatentRecord:
    latent: int
    top: list[Example]
    train: list[Example]
    test: list[Example]
    non_activating: list[Example]
    vocab: list[str] | None = None
    threshold: float = 0.0
    density: float = 0.0  # fraction of tokens with activation > threshold
    non_activating_source: str = "random"
    train_non_activating: list[Example] = field(default_factory=list)
    explanation: Any = None
    scores: dict[str, float] = field(default_factory=dict)

    def decode(self, tokens: Sequence[int]) -> list[str]:
        return [self.vocab[t] if self.vocab else str(t) for t in tokens]

    @property
    def is_explainable(self) -> bool:
        return bool(self.train) and bool(self.test) and bool(self.non_activating)


def render_window(tokens: Sequence[str], highlight: Sequence[bool] | None = None) -> str:
    """``"a <<b>> c"``: the delphi wire format, highlighted tokens wrapped in ``<<`` ``>>``."""
    if highlight is None:
        return " ".join(tokens)
    return " ".join(f"<<{t}>>" if h else t for t, h in zip(tokens, highlight))


def token_counts(tokens: torch.Tensor | np.ndarray) -> Counter:
    """Background unigram counts of a token stream (any shape)."""
    arr = np.asarray(tokens).ravel()
    return Counter(dict(zip(*np.unique(arr, return_counts=True))))


def _windows(x: np.ndarray, ctx_len: int) -> np.ndarray:
    n, t = x.shape
    w = t // ctx_len
    if w < 1:
        raise ValueError(f"ctx_len={ctx_len} is longer than the sequences (T={t})")
    return x[:, : w * ctx_len].reshape(n * w, ctx_len)


def build_record(
    latent: int,
    acts: torch.Tensor | np.ndarray,
    tokens: torch.Tensor | np.ndarray,
    *,
    ctx_len: int = 8,
    n_top: int = 20,
    n_train: int = 20,
    n_test: int = 20,
    n_non_activating: int = 20,
    n_train_non_activating: int = 0,
    n_quantiles: int = 5,
    train_from: str = "top",
    threshold: float = 0.0,
    vocab: list[str] | None = None,
    seed: int = 0,
) -> LatentRecord:
    """One :class:`LatentRecord` from per-token activations ``acts (N, T)`` and ``tokens (N, T)``.

    ``train_from="top"`` gives the explainer the ``n_train`` highest windows; ``"quantiles"`` samples them
    across quantiles like the test set (disjoint from it). The top windows are excluded from ``test``."""
    if train_from not in ("top", "quantiles"):
        raise ValueError(f"train_from must be 'top' or 'quantiles', got {train_from!r}")
    a = _windows(np.asarray(acts, dtype=np.float32), ctx_len)
    tk = _windows(np.asarray(tokens), ctx_len)
    rng = np.random.default_rng(seed + 7919 * latent)
    wmax = a.max(1)
    act_idx = np.flatnonzero(wmax > threshold)
    order = act_idx[np.argsort(-wmax[act_idx], kind="stable")]
    ex = lambda i, q=-1: Example(tk[i].tolist(), [float(v) for v in a[i]], int(q))  # noqa: E731
    top = [ex(i) for i in order[:n_top]]
    # quantile bins over the activating windows (by window max), lowest bin = 0
    qbin = {}
    if len(order):
        ranks = np.empty(len(order), dtype=np.int64)
        ranks[np.argsort(wmax[order], kind="stable")] = np.arange(len(order))
        for i, r in zip(order, ranks):
            qbin[int(i)] = int(r * n_quantiles // len(order))
    used: set[int] = set()
    if train_from == "top":
        train_idx = list(order[:n_train])
    else:
        train_idx = _quantile_sample(order, qbin, n_train, n_quantiles, rng, set())
    used.update(int(i) for i in train_idx)
    used.update(int(i) for i in order[:n_top])
    test_idx = _quantile_sample(order, qbin, n_test, n_quantiles, rng, used)
    non_idx = np.flatnonzero(wmax <= threshold)
    source = "random"
    if len(non_idx) >= n_non_activating:
        non = rng.choice(non_idx, n_non_activating, replace=False)
    else:
        source = "lowest"
        non = np.argsort(wmax, kind="stable")[:n_non_activating]
    # the explainer's negatives never overlap the scorer's (drawn after them, from what is left)
    rest = np.setdiff1d(non_idx, non)
    n_tn = min(n_train_non_activating, len(rest))
    train_non: np.ndarray = rng.choice(rest, n_tn, replace=False) if n_tn else np.zeros(0, dtype=np.int64)
    return LatentRecord(
        latent=latent,
        top=top,
        train=[ex(i, qbin.get(int(i), -1)) for i in train_idx],
        test=[ex(i, qbin[int(i)]) for i in test_idx],
        non_activating=[ex(i) for i in non],
        train_non_activating=[ex(i) for i in train_non],
        vocab=vocab,
        threshold=threshold,
        density=float((a > threshold).mean()),
        non_activating_source=source,
    )


def _quantile_sample(
    order: np.ndarray, qbin: dict[int, int], n: int, n_quantiles: int, rng: np.random.Generator, exclude: set
) -> list[int]:
    pools = [[int(i) for i in order if qbin[int(i)] == q and int(i) not in exclude] for q in range(n_quantiles)]
    per = [n // n_quantiles + (1 if q < n % n_quantiles else 0) for q in range(n_quantiles)]
    out: list[int] = []
    for q in range(n_quantiles):
        pool = pools[q]
        k = min(per[q], len(pool))
        if k:
            out.extend(int(i) for i in rng.choice(pool, k, replace=False))
    return out


def build_records(
    acts: torch.Tensor | np.ndarray, tokens: torch.Tensor | np.ndarray, latents: Sequence[int] | None = None, **kw: Any
) -> list[LatentRecord]:
    """Records for several latents from ``acts (N, T, F)``; ``latents`` defaults to all ``F``."""
    a = np.asarray(acts, dtype=np.float32)
    ids = range(a.shape[-1]) if latents is None else latents
    return [build_record(int(j), a[..., int(j)], tokens, **kw) for j in ids]
