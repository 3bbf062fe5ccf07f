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

__all__ = ["linear_probe_accuracy"]


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
    ztr, zte = _features(Z_train, "Z_train"), _features(Z_test, "Z_test")
    ytr, yte = to_labels(y_train, "y_train"), to_labels(y_test, "y_test")
    if ztr.shape[0] != ytr.size or zte.shape[0] != yte.size:
        raise ValueError(
            f"rows and labels differ: Z_train {ztr.shape[0]} vs y_train {ytr.size}, "
            f"Z_test {zte.shape[0]} vs y_test {yte.size}"
        )
    if ztr.shape[1] != zte.shape[1]:
        raise ValueError(f"Z_train has {ztr.shape[1]} features but Z_test has {zte.shape[1]}")
    if np.unique(ytr).size < 2:
        raise ValueError("y_train has a single class; a linear probe needs at least two")
    if C <= 0:
        raise ValueError(f"C must be > 0, got {C}")
    scaler = StandardScaler().fit(ztr)
    clf = LogisticRegression(C=C, max_iter=max_iter, random_state=random_state)
    clf.fit(scaler.transform(ztr), ytr)
    return float(np.mean(clf.predict(scaler.transform(zte)) == yte))
