"""Pretrain a masked-modelling encoder (MAE, CAE, CRATE-MAE, Point-MAE ...) and read its frozen features.

One loop for every masked pretext the recipes compare, so "same effort" is literal: AdamW, cosine schedule
with linear warmup, gradient clipping, the same batches for the same seed. After every epoch the pretext
loss is measured on held-out inputs **with fixed masks** (a seeded generator passed to the model's
``forward(x, generator=...)``), so the curve moves only when the model does; chosen epochs also run a
``probe(model)`` (e.g. a linear probe), for the "converged" preconditions the referee cards ask for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from isthmus.metrics.probe import linear_probe_accuracy

from isthmus.train import Trainer, TrainerConfig
from isthmus.train.callbacks import EpochTrace

__all__ = ["PretrainTrace", "pretrain_masked", "frozen_features", "n_params", "whitened_linear_probe"]


@dataclass
class PretrainTrace:
    val_loss: list[float]  # held-out pretext loss per epoch, fixed masks
    probes: dict[int, float] = field(default_factory=dict)  # epoch (1-based) -> probe value
    cpu_s: float = 0.0  # process CPU seconds spent training (both threads of a worker count)


def _val_loss(model: nn.Module, x_val: torch.Tensor, mask_seed: int, batch: int) -> float:
    gen = torch.Generator().manual_seed(mask_seed)
    total, n = 0.0, 0
    for i in range(0, len(x_val), batch):
        xb = x_val[i : i + batch]
        total += float(model(xb, generator=gen).loss) * len(xb)
        n += len(xb)
    return total / n


def pretrain_masked(
    model: nn.Module,
    x_train: torch.Tensor,
    x_val: torch.Tensor,
    *,
    epochs: int,
    seed: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    weight_decay: float = 0.05,
    warmup_frac: float = 0.03,
    grad_clip: float | None = 3.0,
    probe: Callable[[nn.Module], float] | None = None,
    probe_epochs: Sequence[int] = (),
    mask_seed: int = 12345,
) -> PretrainTrace:
    """Train ``model`` (whose ``compute_loss`` is its masked pretext) and trace it; returns the trace."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if len(x_val) == 0:
        raise ValueError("x_val is empty: the pretext curve needs held-out inputs")
    steps = epochs * -(-len(x_train) // batch_size)
    probes: dict[int, float] = {}
    wanted = set(probe_epochs)

    def trace(m: nn.Module) -> float:
        epoch = len(val_cb.values) + 1
        if probe is not None and epoch in wanted:
            probes[epoch] = float(probe(m))
        return _val_loss(m, x_val, mask_seed, 512)

    val_cb = EpochTrace(trace)
    cfg = TrainerConfig(
        epochs=epochs,
        batch_size=batch_size,
        optimizer="adamw",
        lr=lr,
        weight_decay=weight_decay,
        schedule="cosine",
        warmup_steps=max(1, int(warmup_frac * steps)),
        grad_clip=grad_clip,
        seed=seed,
        progress=False,
    )
    t0 = time.process_time()
    Trainer(model, cfg, callbacks=[val_cb]).fit(x_train)
    model.eval()
    return PretrainTrace(val_loss=[float(v) for v in val_cb.values], probes=probes, cpu_s=time.process_time() - t0)


@torch.no_grad()
def frozen_features(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """``fn`` (e.g. ``model.encode`` or ``model.encode_tokens``) over ``x`` in batches, no gradient."""
    return torch.cat([fn(x[i : i + batch]) for i in range(0, len(x), batch)])


def n_params(model: nn.Module, prefixes: Sequence[str] | None = None) -> int:
    """Parameters of ``model`` (only those whose names start with one of ``prefixes``, when given)."""
    return sum(p.numel() for n, p in model.named_parameters() if prefixes is None or n.startswith(tuple(prefixes)))


def whitened_linear_probe(
    z_train: torch.Tensor | np.ndarray,
    y_train: torch.Tensor | np.ndarray,
    z_test: torch.Tensor | np.ndarray,
    y_test: torch.Tensor | np.ndarray,
    n_components: int | None = None,
) -> float:
    """Logistic probe on PCA-whitened features (PCA fit on the training split only).

    Whitening is an invertible linear map (with all components), so the probe's function class is the
    linear one; it only conditions lbfgs, which otherwise needs ~15x longer on the strongly correlated
    features of a small transformer. ``n_components`` < dim also reduces (e.g. a PCA floor on pixels).
    """
    from sklearn.decomposition import PCA

    ztr = np.asarray(z_train, dtype=np.float64)
    pca = PCA(n_components=n_components, whiten=True, random_state=0).fit(ztr)
    return linear_probe_accuracy(
        pca.transform(ztr), y_train, pca.transform(np.asarray(z_test, dtype=np.float64)), y_test
    )
