"""Linear probe: how linearly decodable are labels from a latent code?

Standardise with statistics of the training split only (the test split must not leak into
the scaler), fit a multinomial logistic regression, report test accuracy. The lbfgs solver
is deterministic, and ``random_state`` is fixed, so the same inputs give the same number.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from isthmus.metrics._arrays import to_labels, to_numpy

__all__ = ["linear_probe_accuracies", "linear_probe_accuracy", "domain_probe_auroc"]


def _features(z: Any, name: str) -> np.ndarray:
    arr = to_numpy(z, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples, features), got shape {tuple(arr.shape)}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf; a probe on non-finite latents is meaningless")
    return arr


def linear_probe_accuracy(
    Z_train: Any,
    y_train: Any,
    Z_test: Any,
    y_test: Any,
    C: float = 1.0,
    max_iter: int = 1000,
    random_state: int = 0,
) -> float:
    """Test accuracy of logistic regression trained on standardised ``Z_train``."""
    return linear_probe_accuracies(Z_train, y_train, {"test": (Z_test, y_test)}, C, max_iter, random_state)["test"]


def linear_probe_accuracies(
    Z_train: Any,
    y_train: Any,
    evals: dict[str, tuple[Any, Any]],
    C: float = 1.0,
    max_iter: int = 1000,
    random_state: int = 0,
) -> dict[str, float]:
    """One probe (logistic regression on standardised ``Z_train``) scored on several named eval sets."""
    ztr, ytr = _features(Z_train, "Z_train"), to_labels(y_train, "y_train")
    if ztr.shape[0] != ytr.size:
        raise ValueError(f"rows and labels differ: Z_train {ztr.shape[0]} vs y_train {ytr.size}")
    if np.unique(ytr).size < 2:
        raise ValueError("y_train has a single class; a linear probe needs at least two")
    if C <= 0:
        raise ValueError(f"C must be > 0, got {C}")
    tests = {}
    for name, (z, y) in evals.items():
        zte, yte = _features(z, f"Z_{name}"), to_labels(y, f"y_{name}")
        if zte.shape[0] != yte.size:
            raise ValueError(f"rows and labels differ: Z_{name} {zte.shape[0]} vs y_{name} {yte.size}")
        if ztr.shape[1] != zte.shape[1]:
            raise ValueError(f"Z_train has {ztr.shape[1]} features but Z_{name} has {zte.shape[1]}")
        tests[name] = (zte, yte)
    scaler = StandardScaler().fit(ztr)
    clf = LogisticRegression(C=C, max_iter=max_iter, random_state=random_state)
    clf.fit(scaler.transform(ztr), ytr)
    return {name: float(np.mean(clf.predict(scaler.transform(z)) == y)) for name, (z, y) in tests.items()}


def domain_probe_auroc(a: Any, b: Any, folds: int = 5, C: float = 1.0, random_state: int = 0) -> float:
    """How well a linear probe tells codes ``a`` from codes ``b``: cross-validated ROC AUC (0.5 = aligned,
    1 = separable). The scaler is fitted inside each fold, so no held-out fold leaks into it."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline

    za, zb = _features(a, "a"), _features(b, "b")
    if za.shape[1] != zb.shape[1]:
        raise ValueError(f"a and b must have the same features, got {za.shape[1]} and {zb.shape[1]}")
    if min(len(za), len(zb)) < folds:
        raise ValueError(f"need at least {folds} codes per domain for {folds}-fold cross-validation")
    z = np.concatenate([za, zb])
    y = np.r_[np.ones(len(za)), np.zeros(len(zb))]
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=1000, random_state=random_state))
    cv = StratifiedKFold(folds, shuffle=True, random_state=random_state)
    p = cross_val_predict(probe, z, y, cv=cv, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, p))
