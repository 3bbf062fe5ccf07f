"""scikit-learn's full estimator check suite on the estimators of isthmus.tasks (issue 22);
autoencoders run with tiny budgets.

Every table detector passes all checks. AEKMeans (tasks/clustering.py, outside issue 22) fails
``check_methods_sample_order_invariance``: its float32 encoder gives batch-dependent round-off
(~1e-7) in ``transform``; AnomalyDetector avoids it by scoring in float64. Left to its owner and
listed here so it cannot pass silently. The two series detectors pass all but
``check_fit1d``: a 1-D array is a univariate series for them, by design. FleetDetector is not
checked: its ``fit(X, entities)`` needs an entity id per row, which scikit-learn's checks never pass.
"""

import torch
from sklearn.utils.estimator_checks import parametrize_with_checks

from isthmus.tasks.anomaly import AnomalyDetector
from isthmus.tasks.anomaly_classic import (ECODDetector, IsolationForestDetector, KNNDetector, LOFDetector,
                                           PCADetector)
from isthmus.tasks.anomaly_ensemble import ScoreAverage
from isthmus.tasks.clustering import AEKMeans
from isthmus.tasks.series import SeriesDetector
from isthmus.tasks.stackvae import StackVAEGDetector

torch.set_num_threads(1)

ESTIMATORS = [
    AnomalyDetector(n_estimators=1, max_steps=20, random_state=0),
    IsolationForestDetector(n_estimators=10, random_state=0),
    KNNDetector(),
    LOFDetector(),
    ECODDetector(),
    PCADetector(),
    ScoreAverage(detectors=[IsolationForestDetector(n_estimators=10), KNNDetector(), ECODDetector()], random_state=0),
    AEKMeans(n_clusters=2, epochs=2, random_state=0),
    SeriesDetector(AnomalyDetector(n_estimators=1, max_steps=20, random_state=0), window=1),
    StackVAEGDetector(window=2, max_steps=5, hidden=(8,), latent_dim=2, embed_dim=4, k=1, random_state=0),
]
SERIES_1D = {"check_fit1d": "a 1-D array is a univariate series (T,), accepted by design"}


ROUND_OFF = {"check_methods_sample_order_invariance": "float32 encoder: batch-dependent round-off (~1e-7)"}


def _expected_failed(estimator):
    if isinstance(estimator, AEKMeans):
        return ROUND_OFF
    return SERIES_1D if isinstance(estimator, (SeriesDetector, StackVAEGDetector)) else {}


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed)
def test_sklearn_compatible(estimator, check):
    check(estimator)
