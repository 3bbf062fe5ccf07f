"""Train (and cache) the fixed feature classifier that the generative metrics score samples in.

It lives in ``tasks`` rather than ``metrics`` because it loads data (digits, MNIST); the metrics
layer only computes numbers from arrays. See :mod:`isthmus.metrics.generative`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from isthmus.metrics.generative import FeatureClassifier

__all__ = ["train_feature_classifier", "frechet_sanity"]


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


def train_feature_classifier(
    dataset: str = "digits",
    side: int | None = None,
    seed: int = 0,
    epochs: int = 30,
    cache_dir: str | Path | None = None,
    train_indices: Sequence[int] | np.ndarray | None = None,
) -> FeatureClassifier:
    """Train (or fetch from cache) the fixed feature classifier on ``dataset`` ("digits" or "mnist", which
    falls back to digits when MNIST is absent) at image side ``side`` (default: the data's own).

    ``train_indices`` (rows of the loaded data set, e.g. MNIST t10k order) are the images it trains on;
    pass them so that they stay DISJOINT from every image a Fréchet distance is later computed against
    (a classifier that has seen the reference images makes their features look better than unseen
    ones). Default: a seeded 80 % of the rows. The held-out accuracy on the other rows is stored as
    ``clf.heldout_accuracy_``. Deterministic given the seed (a :class:`~isthmus.models.Classifier`
    trained by :class:`~isthmus.train.Trainer`). ``cache_dir`` keeps weights as safetensors.
    """
    x, y, used = _load_images(dataset)
    side = int(side or x.shape[-1])
    if train_indices is None:
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
        tr = perm[: int(0.8 * len(x))]
    else:
        tr = torch.as_tensor(np.asarray(train_indices), dtype=torch.long)
        if tr.ndim != 1 or not len(tr) or int(tr.min()) < 0 or int(tr.max()) >= len(x):
            raise ValueError(f"train_indices must be a non-empty 1-D array of rows in [0, {len(x)}) of {used}")
        if len(torch.unique(tr)) != len(tr):
            raise ValueError("train_indices has repeated rows")
    held = torch.ones(len(x), dtype=torch.bool)
    held[tr] = False
    te = torch.nonzero(held)[:, 0]
    digest = hashlib.sha256(np.sort(tr.numpy()).tobytes()).hexdigest()[:12]
    key = (used, side, seed, epochs, digest)
    if key in _CACHE:
        return _CACHE[key][0]
    clf = FeatureClassifier(side)
    path = Path(cache_dir) / f"feature_clf_{used}_{side}_s{seed}_e{epochs}_{digest}.safetensors" if cache_dir else None
    if path is not None and path.is_file():
        from isthmus.io import load_state_strict, load_tensors

        load_state_strict(clf, load_tensors(path), str(path))
    else:
        _fit(clf, x[tr], y[tr], seed, epochs)
        if path is not None:
            from isthmus.io import save_tensors

            save_tensors(path, clf.state_dict())
    clf.eval()
    clf.train_indices_ = np.sort(tr.numpy())
    clf.heldout_accuracy_ = (
        float((torch.as_tensor(clf.probs(x[te])).argmax(1) == y[te]).float().mean()) if len(te) else float("nan")
    )
    _CACHE[key] = (clf, clf.heldout_accuracy_)
    return clf


def _fit(clf: FeatureClassifier, x: torch.Tensor, y: torch.Tensor, seed: int, epochs: int) -> None:
    from isthmus.models import Classifier
    from isthmus.train import Trainer, TrainerConfig

    torch.manual_seed(seed)
    for m in clf.modules():
        if isinstance(m, nn.Linear):
            m.reset_parameters()
    Trainer(
        Classifier(clf),
        TrainerConfig(epochs=epochs, batch_size=128, lr=1e-3, seed=seed + 1, progress=False, device="cpu"),
    ).fit((x, y))


def frechet_sanity(
    clf: FeatureClassifier, real: torch.Tensor, reference: torch.Tensor, seed: int = 0
) -> dict[str, float]:
    """Fréchet distances to ``reference`` of other real images, of a blurred copy of them (3×3 box blur,
    twice) and of uniform noise. A usable feature space puts real images well below both; callers check
    that before trusting an FD comparison. ``real`` and ``reference`` are ``(N, 1, H, W)`` in [0, 1] and
    should both be disjoint from ``clf.train_indices_``."""
    import torch.nn.functional as F

    from isthmus.metrics.generative import frechet_distance

    blurred = real
    for _ in range(2):
        blurred = F.avg_pool2d(F.pad(blurred, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    noise = torch.rand(real.shape, generator=torch.Generator().manual_seed(seed))
    ref = clf.features(reference)
    return {
        k: frechet_distance(clf.features(v), ref) for k, v in (("real", real), ("blurred", blurred), ("noise", noise))
    }
