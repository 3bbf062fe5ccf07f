"""Classical detectors and ScoreAverage: equal to scikit-learn where it has the method, exact
save/load without pickle, per-feature contributions, editable thresholds."""

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors

from isthmus.metrics import auroc
from isthmus.tasks.anomaly_classic import (ECODDetector, IsolationForestDetector, KNNDetector, LOFDetector,
                                           PCADetector)
from isthmus.tasks.anomaly_ensemble import ScoreAverage
from isthmus.tasks.anomaly_io import load_detector


def data(seed=0):
    """Rows near a 2-D plane in 5-D; the 20 test anomalies have feature 'a' moved 4 std off it."""
    rng = np.random.default_rng(seed)
    W = np.random.default_rng(99).normal(size=(2, 5))
    rows = lambda n: rng.normal(size=(n, 2)) @ W + 0.3 * rng.normal(size=(n, 5))  # noqa: E731
    train = rows(300)
    bad = rows(20)
    bad[:, 0] += 4 * train[:, 0].std()
    return train, np.r_[rows(60), bad], np.r_[np.zeros(60), np.ones(20)]


ALL = [IsolationForestDetector(random_state=0), KNNDetector(), LOFDetector(), ECODDetector(), PCADetector(),
       ScoreAverage(random_state=0)]


@pytest.mark.parametrize("max_features", [1.0, 0.6])
def test_isolation_forest_scores_equal_sklearn(max_features):
    X, T, _ = data()
    ours = IsolationForestDetector(random_state=3, max_features=max_features).fit(X)
    ref = IsolationForest(random_state=3, max_features=max_features).fit(X)
    np.testing.assert_allclose(ours.score_samples(T), -ref.score_samples(T), rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.train_scores_, -ref.score_samples(X), rtol=0, atol=1e-12)


def test_lof_equals_sklearn_novelty_and_knn_is_leave_one_out():
    X, T, _ = data()
    lof = LOFDetector(n_neighbors=10, scaler="none").fit(X)
    ref = LocalOutlierFactor(n_neighbors=10, novelty=True).fit(X)
    np.testing.assert_allclose(lof.score_samples(T), -ref.score_samples(T), rtol=1e-12)
    np.testing.assert_allclose(lof.train_scores_, -ref.negative_outlier_factor_, rtol=1e-12)
    knn = KNNDetector(n_neighbors=3, scaler="none").fit(X)
    dist = NearestNeighbors(n_neighbors=4).fit(X).kneighbors(X)[0]
    np.testing.assert_allclose(knn.train_scores_, dist[:, 3])  # column 0 is the row itself
    np.testing.assert_allclose(knn.score_samples(T), NearestNeighbors(n_neighbors=3).fit(X).kneighbors(T)[0][:, 2])
    mean = KNNDetector(n_neighbors=3, method="mean", scaler="none").fit(X)
    np.testing.assert_allclose(mean.train_scores_, dist[:, 1:].mean(1))


def test_ecod_by_hand():
    # one feature, training values 1..9 (right-skewed? no: symmetric, skew 0 -> right tail chosen)
    X = np.arange(1.0, 10.0)[:, None]
    det = ECODDetector().fit(X)
    # x = 0: left = -log((0+1)/10), right = -log((9+1)/10) = 0 -> max(left, right, auto=right)
    # x = 10: left = -log(10/10) = 0, right = -log((0+1)/10)
    np.testing.assert_allclose(det.score_samples(np.array([[0.0], [10.0], [5.0]])),
                               [np.log(10), np.log(10), -np.log(6 / 10)])
    two = ECODDetector().fit(np.c_[X, X])
    c = two.feature_contributions(np.array([[0.0, 5.0]]), normalize=False)
    np.testing.assert_allclose(c.sum(1), two.score_samples(np.array([[0.0, 5.0]])))
    assert c[0, 0] > c[0, 1]


@pytest.mark.parametrize("det", ALL, ids=lambda d: type(d).__name__)
def test_detects_shift_and_round_trips(det, tmp_path):
    X, T, y = data()
    df = pd.DataFrame(X, columns=list("abcde"))
    det.fit(df)
    tdf = pd.DataFrame(T, columns=list("abcde"))
    s = det.score_samples(tdf)
    assert auroc(y, s) > 0.8  # IsolationForest is the weakest at correlation breaks (0.89 here)
    np.testing.assert_allclose(det.decision_function(tdf), s - det.threshold_)
    folder = det.save(tmp_path / "d")
    assert not [p for p in folder.rglob("*") if p.suffix in (".pkl", ".pickle", ".joblib")]
    back = load_detector(folder)
    assert type(back) is type(det) and back.threshold_ == det.threshold_
    np.testing.assert_allclose(back.score_samples(tdf), s, rtol=1e-13, atol=0)
    assert list(back.feature_names_in_) == list("abcde")
    if hasattr(det, "feature_contributions") and not isinstance(det, ScoreAverage):
        raw = det.feature_contributions(tdf, normalize=False)
        np.testing.assert_allclose(raw.sum(1), s, rtol=1e-9)
        # the shifted feature 'a' is blamed for the shifted rows
        assert (det.feature_contributions(tdf)[60:].argmax(1) == 0).mean() >= 0.85
        assert det.top_features(tdf[60:61], k=1) == [["a"]]


def test_set_threshold_rules_and_save(tmp_path):
    X, T, _ = data()
    det = PCADetector().fit(X)
    assert det.threshold_ == pytest.approx(np.percentile(det.train_scores_, 99))
    det.set_threshold(contamination=0.2)
    assert det.predict(X).mean() == pytest.approx(0.2, abs=0.01)
    det.set_threshold(percentile=50)
    assert det.threshold_ == pytest.approx(np.median(det.train_scores_))
    assert det.set_threshold(0.5) is det and det.threshold_ == 0.5
    np.testing.assert_array_equal(det.predict(T), (det.score_samples(T) > 0.5).astype(int))
    assert load_detector(det.save(tmp_path / "k")).threshold_ == 0.5
    for bad in ({}, {"value": 1.0, "percentile": 5.0}):
        with pytest.raises(ValueError, match="exactly one"):
            det.set_threshold(**bad)
    with pytest.raises(ValueError, match="percentile"):
        det.set_threshold(percentile=100)
    with pytest.raises(ValueError, match="contamination"):
        det.set_threshold(contamination=0.7)
    with pytest.raises(ValueError, match="finite"):
        det.set_threshold(float("nan"))


def test_score_average_is_scale_free_and_refuses_raw_contributions():
    X, T, y = data()
    combo = ScoreAverage([KNNDetector(), PCADetector()]).fit(X)
    knn, pca = KNNDetector().fit(X), PCADetector().fit(X)
    z = lambda d, s: (s - np.median(d.train_scores_)) / combo.scale_[0 if d is knn else 1]  # noqa: E731
    np.testing.assert_allclose(combo.score_samples(T), (z(knn, knn.score_samples(T)) + z(pca, pca.score_samples(T))) / 2)
    np.testing.assert_allclose(combo.feature_contributions(T).sum(1), 1.0)
    with pytest.raises(ValueError, match="normalised"):
        combo.feature_contributions(T, normalize=False)
    with pytest.raises(ValueError, match="empty"):
        ScoreAverage([]).fit(X)


def test_isolation_forest_has_no_contributions_and_params_are_checked():
    assert not hasattr(IsolationForestDetector(), "feature_contributions")
    X = data()[0]
    with pytest.raises(ValueError, match="variance"):
        PCADetector(variance=1.5).fit(X)
    with pytest.raises(ValueError, match="method"):
        KNNDetector(method="median").fit(X)
    with pytest.raises(ValueError, match="n_neighbors"):
        LOFDetector(n_neighbors=0).fit(X)
