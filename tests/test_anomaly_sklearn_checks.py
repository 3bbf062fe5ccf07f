"""Every estimator in isthmus.tasks that takes a plain (n_samples, n_features) table passes
scikit-learn's full estimator check suite (issue 22); autoencoders run with tiny budgets."""

import torch
from sklearn.utils.estimator_checks import parametrize_with_checks

from isthmus.tasks.anomaly import AnomalyDetector
from isthmus.tasks.anomaly_classic import (ECODDetector, IsolationForestDetector, KNNDetector, LOFDetector,
                                           PCADetector)
from isthmus.tasks.anomaly_ensemble import ScoreAverage

torch.set_num_threads(1)

ESTIMATORS = [
    AnomalyDetector(n_estimators=1, max_steps=20, random_state=0),
    IsolationForestDetector(n_estimators=10, random_state=0),
    KNNDetector(),
    LOFDetector(),
    ECODDetector(),
    PCADetector(),
    ScoreAverage(detectors=[IsolationForestDetector(n_estimators=10), KNNDetector(), ECODDetector()], random_state=0),
]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible(estimator, check):
    check(estimator)
