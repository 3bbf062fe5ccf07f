"""Quality guard (slow): the default AnomalyDetector stays ahead of IsolationForest on ODDS letter
and near it on cardio (benchmarks/anomaly_odds.py has the full 14-set table)."""

import numpy as np
import pytest
import torch
from sklearn.ensemble import IsolationForest
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from isthmus.data import DataNotFoundError, find_data
from isthmus.metrics import auroc
from isthmus.tasks.anomaly import AnomalyDetector

torch.set_num_threads(1)


def _odds(name):
    from scipy.io import loadmat

    try:
        mat = loadmat(find_data("odds") / f"{name}.mat")
    except (DataNotFoundError, FileNotFoundError):
        pytest.skip("ODDS data not available")
    return mat["X"].astype(np.float64), mat["y"].ravel().astype(int)


@pytest.mark.slow
@pytest.mark.parametrize("name,margin", [("letter", 0.10), ("cardio", -0.10)])
def test_default_detector_vs_iforest(name, margin):
    X, y = _odds(name)
    Xtr, Xte, _, yte = train_test_split(X, y, test_size=0.4, stratify=y, random_state=0)
    sc = StandardScaler().fit(Xtr)
    Xtr, Xte = sc.transform(Xtr), sc.transform(Xte)
    ours = auroc(yte, AnomalyDetector(random_state=0).fit(Xtr).score_samples(Xte))
    forest = auroc(yte, -IsolationForest(random_state=0).fit(Xtr).score_samples(Xte))
    # measured (3 seeds, issue-22 default, benchmarks/anomaly_odds.py): letter 0.832 vs 0.635, cardio 0.925 vs 0.935
    assert ours > forest + margin
