"""Train (and cache) the fixed feature classifier that the generative metrics score samples in.

It lives in ``tasks`` rather than ``metrics`` because it loads data (digits, MNIST); the metrics
layer only computes numbers from arrays. See :mod:`isthmus.metrics.generative`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from isthmus.metrics.generative import FeatureClassifier

__all__ = ["train_feature_classifier"]


_CACHE: dict[tuple, tuple[FeatureClassifier, float]] = {}


def _load_images(dataset: str) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(X ``(N, 1, H, W)``, y, name actually used); MNIST falls back to digits when absent."""
    from isthmus.data import load_digits

    if dataset == "mnist":
        from isthmus.data import load_mnist
        from isthmus.data.paths import DataNotFoundError

        try:
            t = load_mnist(split="test")
            return torch.as_tensor(np.asarray(t.X)), torch.as_tensor(np.asarray(t.y)).long(), "mnist"
        except DataNotFoundError:
            dataset = "digits"
    if dataset != "digits":
        raise ValueError(f"dataset must be 'digits' or 'mnist', got {dataset!r}")
    t = load_digits(as_images=True)
    return torch.as_tensor(np.asarray(t.X)), torch.as_tensor(np.asarray(t.y)).long(), "digits"


def train_feature_classifier(dataset: str = "digits", side: int | None = None, seed: int = 0, epochs: int = 30,
                             cache_dir: str | Path | None = None) -> FeatureClassifier:
    """Train (or fetch from cache) the fixed feature classifier on ``dataset`` ("digits" or "mnist", which
    falls back to digits when MNIST is absent) at image side ``side`` (default: the data's own).

    Deterministic given the seed (fixed init and batch order, one thread recommended). 80/20 split; the
    held-out accuracy is stored as ``clf.heldout_accuracy_``. ``cache_dir`` keeps weights as safetensors.
    """
    x, y, used = _load_images(dataset)
    side = int(side or x.shape[-1])
    key = (used, side, seed, epochs)
    if key in _CACHE:
        return _CACHE[key][0]
    clf = FeatureClassifier(side)
    path = Path(cache_dir) / f"feature_clf_{used}_{side}_s{seed}_e{epochs}.safetensors" if cache_dir else None
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(x), generator=g)
    n_tr = int(0.8 * len(x))
    tr, te = perm[:n_tr], perm[n_tr:]
    if path is not None and path.is_file():
        from isthmus.io import load_state_strict, load_tensors

        load_state_strict(clf, load_tensors(path), str(path))
    else:
        _fit(clf, x[tr], y[tr], seed, epochs)
        if path is not None:
            from isthmus.io import save_tensors

            save_tensors(path, clf.state_dict())
    clf.eval()
    clf.heldout_accuracy_ = float((torch.as_tensor(clf.probs(x[te])).argmax(1) == y[te]).float().mean())
    _CACHE[key] = (clf, clf.heldout_accuracy_)
    return clf


def _fit(clf: FeatureClassifier, x: torch.Tensor, y: torch.Tensor, seed: int, epochs: int) -> None:
    torch.manual_seed(seed)
    for m in clf.modules():
        if isinstance(m, nn.Linear):
            m.reset_parameters()
    opt = torch.optim.Adam(clf.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed + 1)
    bs = 128
    clf.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), bs):
            idx = order[i:i + bs]
            loss = F.cross_entropy(clf(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
