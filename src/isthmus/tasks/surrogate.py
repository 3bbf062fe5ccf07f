"""Explaining a black-box classifier on high-dimensional data with a small surrogate (seed 23's pipeline):
probe feature importance by perturbation → keep the top-k features → fit a shallow decision tree to the
*black box's* labels on those features → read it as rules; fidelity = agreement with the black box.

The black box is any ``predict(X) -> labels`` callable (a model behind an API, a torch net, a pipeline);
nothing about its internals is used. Importance is the share of predictions that change when one
feature is replaced by a random draw of itself (column permutation), averaged over ``n_repeats``; on
wide data ``features=`` limits the (costly) probing to candidates, e.g. the top of :func:`gradient_x_input`,
and :func:`rank_average` combines the two rankings as the paper does.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.tree import DecisionTreeClassifier, export_text
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["probe_importance", "gradient_x_input", "rank_average", "precision_at_k", "BlackBoxSurrogate"]


def probe_importance(
    predict: Callable[[np.ndarray], Any],
    X: np.ndarray,
    n_repeats: int = 3,
    random_state: int | None = None,
    features: Sequence[int] | None = None,
) -> np.ndarray:
    """Per feature, the fraction of the black box's predictions that change when that column is permuted.

    ``features`` probes only those columns (the others get 0); the permuted copies of all probed
    columns go through ``predict`` in one call, so a batched model pays its per-call overhead once.
    """
    X = np.asarray(X)
    rng = check_random_state(random_state)
    base = np.asarray(predict(X))
    cols = np.arange(X.shape[1]) if features is None else np.asarray(features, dtype=int)
    out = np.zeros(X.shape[1])
    for _ in range(n_repeats):
        stack = np.repeat(X[None], len(cols), axis=0)  # (n_cols, n, p)
        for i, j in enumerate(cols):
            stack[i, :, j] = X[rng.permutation(len(X)), j]
        pred = np.asarray(predict(stack.reshape(-1, X.shape[1]))).reshape(len(cols), len(X))
        out[cols] += (pred != base[None]).mean(axis=1)
    return out / n_repeats


def gradient_x_input(logits_fn: Callable[[Any], Any], X: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Mean over rows of |x · ∂ logit_ŷ / ∂x| (ŷ the predicted class): a white-box importance per feature.

    ``logits_fn`` maps a float32 torch tensor ``(n, p)`` to logits ``(n, C)`` and must be differentiable.
    """
    import torch

    X = np.asarray(X, dtype=np.float32)
    total = np.zeros(X.shape[1])
    for i in range(0, len(X), batch_size):
        x = torch.tensor(X[i : i + batch_size], requires_grad=True)
        logits = logits_fn(x)
        picked = logits.gather(1, logits.argmax(1, keepdim=True)).sum()
        (grad,) = torch.autograd.grad(picked, x)
        total += (grad * x).abs().sum(0).detach().numpy()
    return total / len(X)


def rank_average(*scores: np.ndarray) -> np.ndarray:
    """Combine importance scores by their mean rank (higher score → higher combined value; ties averaged)."""
    from scipy.stats import rankdata

    if not scores:
        raise ValueError("rank_average needs at least one score vector")
    shapes = {np.shape(s) for s in scores}
    if len(shapes) != 1:
        raise ValueError(f"score vectors must have one shape, got {sorted(shapes)}")
    return np.mean([rankdata(np.asarray(s, dtype=float)) for s in scores], axis=0)


def precision_at_k(scores: np.ndarray, relevant: Sequence[int], k: int) -> float:
    """Share of the ``k`` highest-scoring features that are in ``relevant`` (ties broken by index)."""
    scores = np.asarray(scores, dtype=float)
    if not 1 <= k <= len(scores):
        raise ValueError(f"k must be in [1, {len(scores)}], got {k}")
    top = np.argsort(-scores, kind="stable")[:k]
    return float(np.isin(top, np.asarray(relevant, dtype=int)).mean())


class BlackBoxSurrogate(ClassifierMixin, BaseEstimator):
    """A decision tree on the black box's top-k features, trained to mimic the black box.

    ``fit(X, y=None)``: ``y`` is ignored — the targets are the black box's own predictions on ``X``.
    ``importances`` (one score per feature, higher = more important) replaces the probing when given,
    e.g. an attribution computed once and shared by several surrogates.
    """

    def __init__(
        self,
        black_box: Callable[[np.ndarray], Any] | None = None,
        top_k: int = 10,
        max_depth: int = 4,
        n_repeats: int = 3,
        random_state: int | None = None,
        importances: Any = None,
    ) -> None:
        self.black_box = black_box
        self.importances = importances
        self.top_k = top_k
        self.max_depth = max_depth
        self.n_repeats = n_repeats
        self.random_state = random_state

    def fit(self, X: Any, y: Any = None) -> "BlackBoxSurrogate":
        if self.black_box is None or not callable(self.black_box):
            raise ValueError("black_box must be a callable predict(X) -> labels")
        X = validate_data(self, X, dtype=np.float64)
        if not 1 <= self.top_k <= X.shape[1]:
            raise ValueError(f"top_k must be in [1, {X.shape[1]}], got {self.top_k}")
        target = np.asarray(self.black_box(X))
        if self.importances is None:
            self.importances_ = probe_importance(self.black_box, X, self.n_repeats, self.random_state)
        else:
            self.importances_ = np.asarray(self.importances, dtype=float)
            if self.importances_.shape != (X.shape[1],):
                raise ValueError(
                    f"importances must have one value per feature ({X.shape[1]}), got shape {self.importances_.shape}"
                )
        self.features_ = np.argsort(-self.importances_, kind="stable")[: self.top_k]
        self.tree_ = DecisionTreeClassifier(max_depth=self.max_depth, random_state=self.random_state)
        self.tree_.fit(X[:, self.features_], target)
        self.classes_ = self.tree_.classes_
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "tree_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self.tree_.predict(X[:, self.features_])

    def fidelity(self, X: Any) -> float:
        """Share of rows where the surrogate agrees with the black box."""
        X = np.asarray(X, dtype=np.float64)
        pred = self.predict(X)  # raises before fit
        assert self.black_box is not None  # fit checked it
        return float(np.mean(pred == np.asarray(self.black_box(X))))

    def rules(self, feature_names: list[str] | None = None) -> str:
        """The tree as nested if/else rules over the original feature names."""
        check_is_fitted(self, "tree_")
        names = feature_names or [f"x{j}" for j in range(self.n_features_in_)]
        return export_text(self.tree_, feature_names=[names[j] for j in self.features_])
