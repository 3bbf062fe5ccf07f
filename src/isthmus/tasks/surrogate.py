"""Explaining a black-box classifier on high-dimensional data with a small surrogate (seed 23's pipeline):
probe feature importance by perturbation → keep the top-k features → fit a shallow decision tree to the
*black box's* labels on those features → read it as rules; fidelity = agreement with the black box.

The black box is any ``predict(X) -> labels`` callable (a model behind an API, a torch net, a pipeline);
nothing about its internals is used. Importance is the share of predictions that change when one
feature is replaced by a random draw of itself (column permutation), averaged over ``n_repeats``.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.tree import DecisionTreeClassifier, export_text
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["probe_importance", "BlackBoxSurrogate"]


def probe_importance(predict: Callable[[np.ndarray], Any], X: np.ndarray, n_repeats: int = 3,
                     random_state: int | None = None) -> np.ndarray:
    """Per feature, the fraction of the black box's predictions that change when that column is permuted."""
    X = np.asarray(X)
    rng = check_random_state(random_state)
    base = np.asarray(predict(X))
    out = np.zeros(X.shape[1])
    for j in range(X.shape[1]):
        for _ in range(n_repeats):
            Xp = X.copy()
            Xp[:, j] = X[rng.permutation(len(X)), j]
            out[j] += np.mean(np.asarray(predict(Xp)) != base)
    return out / n_repeats


class BlackBoxSurrogate(ClassifierMixin, BaseEstimator):
    """A decision tree on the black box's top-k features, trained to mimic the black box.

    ``fit(X, y=None)``: ``y`` is ignored — the targets are the black box's own predictions on ``X``.
    """

    def __init__(self, black_box: Callable[[np.ndarray], Any] | None = None, top_k: int = 10, max_depth: int = 4,
                 n_repeats: int = 3, random_state: int | None = None) -> None:
        self.black_box = black_box
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
        self.importances_ = probe_importance(self.black_box, X, self.n_repeats, self.random_state)
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
