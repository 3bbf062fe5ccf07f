"""A class-incremental stream: tasks of a few classes each, presented one after another.

The model sees only ``(x, y)`` minibatches; no task identity or boundary is passed to it (one optimizer
runs across the whole stream, so not even its state resets between tasks). After each task the accuracy
on every task's test data is recorded, giving the (T, T) matrix that
:func:`isthmus.metrics.continual.continual_report` turns into final accuracy and forgetting.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from isthmus.metrics.continual import continual_report

__all__ = ["split_classes", "train_stream", "task_accuracies", "ncm_stream"]


def split_classes(classes: Sequence[int], per_task: int) -> list[list[int]]:
    """``[0..9]``, 2 → ``[[0, 1], [2, 3], ...]`` (in the given order)."""
    classes = list(classes)
    if per_task < 1 or len(classes) % per_task:
        raise ValueError(f"{len(classes)} classes do not split into tasks of {per_task}")
    return [classes[i : i + per_task] for i in range(0, len(classes), per_task)]


@torch.no_grad()
def task_accuracies(model: nn.Module, x: torch.Tensor, y: torch.Tensor, tasks: list[list[int]]) -> list[float]:
    """Accuracy of ``model(x).argmax`` (over all classes: no task oracle) on each task's samples."""
    was = model.training
    model.eval()
    pred = model(x).argmax(1)
    model.train(was)
    out = []
    for cls in tasks:
        mask = torch.isin(y, torch.as_tensor(cls))
        out.append(float((pred[mask] == y[mask]).float().mean()) if mask.any() else float("nan"))
    return out


def train_stream(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    tasks: list[list[int]],
    steps_per_task: int,
    batch_size: int,
    make_optimizer: Callable[[list[nn.Parameter]], torch.optim.Optimizer],
    seed: int = 0,
    loss_fn: Callable = nn.functional.cross_entropy,
) -> dict:
    """Train ``model`` (logits = ``model(x)``) on the tasks in order; returns the accuracy matrix and its report.

    Each step draws a minibatch (with replacement) from the current task's training samples.
    """
    g = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params)
    acc = np.zeros((len(tasks), len(tasks)))
    model.train()
    for t, cls in enumerate(tasks):
        idx = torch.nonzero(torch.isin(y, torch.as_tensor(cls))).squeeze(1)  # (n_task,)
        for _ in range(steps_per_task):
            b = idx[torch.randint(len(idx), (min(batch_size, len(idx)),), generator=g)]
            loss = loss_fn(model(x[b]), y[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        acc[t] = task_accuracies(model, x_test, y_test, tasks)
    return {"acc_matrix": acc, **continual_report(acc)}


@torch.no_grad()
def ncm_stream(
    features: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    tasks: list[list[int]],
    steps_per_task: int,
    batch_size: int,
    n_classes: int,
    seed: int = 0,
) -> dict:
    """Nearest-class-mean on frozen ``features`` over the same stream as :func:`train_stream` (the same
    minibatches, drawn with the same generator): running class means, prediction = nearest mean (Euclidean).
    It has no weights to overwrite, so it cannot forget — the strongest simple baseline for a frozen encoder."""
    g = torch.Generator().manual_seed(seed)
    features.eval()
    f_test = features(x_test)
    sums = torch.zeros(n_classes, f_test.shape[1], dtype=torch.float64)
    counts = torch.zeros(n_classes, dtype=torch.float64)
    acc = np.zeros((len(tasks), len(tasks)))
    for t, cls in enumerate(tasks):
        idx = torch.nonzero(torch.isin(y, torch.as_tensor(cls))).squeeze(1)
        for _ in range(steps_per_task):
            b = idx[torch.randint(len(idx), (min(batch_size, len(idx)),), generator=g)]
            sums.index_add_(0, y[b], features(x[b]).double())
            counts.index_add_(0, y[b], torch.ones(len(b), dtype=torch.float64))
        seen = counts > 0
        means = sums / counts.clamp_min(1)[:, None]
        d = torch.cdist(f_test.double(), means)
        d[:, ~seen] = float("inf")  # a class never seen cannot be predicted
        pred = d.argmin(1)
        for j, c in enumerate(tasks):
            mask = torch.isin(y_test, torch.as_tensor(c))
            acc[t, j] = float((pred[mask] == y_test[mask]).float().mean()) if mask.any() else float("nan")
    return {"acc_matrix": acc, **continual_report(acc)}
