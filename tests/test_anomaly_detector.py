"""AnomalyDetector: scikit-learn rules, thresholds, per-feature contributions, bad input."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.utils import estimator_checks as ec

from isthmus.data import DataError
from isthmus.metrics import auroc
from isthmus.models import AutoEncoder
from isthmus.tasks.anomaly import AnomalyDetector, default_members, pot_threshold

torch.set_num_threads(1)
FAST = dict(n_estimators=2, max_steps=80, random_state=0)
CHECK = dict(n_estimators=1, max_steps=20, random_state=0)  # mechanics only: keep the ~40 fits cheap


def correlated(n: int, seed: int = 0, d: int = 6) -> np.ndarray:
    """Rows on a 2-D linear manifold in d dims plus small noise: every feature is predictable."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    W = np.random.default_rng(123).normal(size=(2, d))  # one manifold for every seed
    return (z @ W + 0.05 * rng.normal(size=(n, d))).astype(np.float32)


@pytest.fixture(scope="module")
def fitted():
    X = correlated(400)
    return AnomalyDetector(n_estimators=2, max_steps=300, random_state=0).fit(X), X


def test_default_constructible_and_clone():
    det = AnomalyDetector()
    assert det.get_params()["model"] is None
    c = clone(AnomalyDetector(n_estimators=3, threshold="pot"))
    assert c.get_params()["n_estimators"] == 3 and not hasattr(c, "threshold_")


CHECKS = ["check_no_attributes_set_in_init", "check_get_params_invariance", "check_set_params",
          "check_dont_overwrite_parameters", "check_fit_idempotent", "check_n_features_in",
          "check_estimators_dtypes", "check_fit2d_predict1d", "check_estimators_empty_data",
          "check_estimators_nan_inf", "check_fit_check_is_fitted", "check_parameters_default_constructible",
          "check_methods_sample_order_invariance", "check_methods_subset_invariance",
          "check_estimators_pickle", "check_estimators_overwrite_params", "check_fit2d_1feature",
          "check_fit1d", "check_estimators_unfitted", "check_fit2d_1sample"]


@pytest.mark.parametrize("name", [c for c in CHECKS if hasattr(ec, c)])
def test_sklearn_check(name):
    getattr(ec, name)(type(AnomalyDetector()).__name__, AnomalyDetector(**CHECK))


def test_scores_separate_correlation_breaks(fitted):
    det, X = fitted
    test = correlated(200, seed=1)  # same manifold, new draws
    bad = test.copy()
    bad[:, 2] += 2.0 * X[:, 2].std()  # one metric off the manifold, inside its usual range
    s_ok, s_bad = det.score_samples(test), det.score_samples(bad)
    y = np.r_[np.zeros(len(test)), np.ones(len(bad))]
    assert auroc(y, np.r_[s_ok, s_bad]) > 0.95
    np.testing.assert_allclose(det.decision_function(bad), s_bad - det.threshold_)
    assert det.predict(bad).mean() > 0.9
    assert det.predict(test).mean() < 0.1


def test_contributions_point_at_the_perturbed_feature(fitted):
    det, X = fitted
    bad = correlated(50, seed=2)
    bad[:, 4] += 3.0 * X[:, 4].std()
    c = det.feature_contributions(bad)
    np.testing.assert_allclose(c.sum(1), 1.0, rtol=1e-6)
    assert (c.argmax(1) == 4).mean() > 0.9
    raw = det.feature_contributions(bad, normalize=False)
    np.testing.assert_allclose(raw.sum(1), det.score_samples(bad), rtol=1e-6)
    assert det.top_features(bad[:1], k=2)[0][0] == "4"


def test_thresholds():
    X = correlated(400)
    base = AnomalyDetector(**FAST).fit(X)
    s = base.train_scores_
    assert base.threshold_ == pytest.approx(np.percentile(s, 99))
    assert base.predict(X).mean() == pytest.approx(0.01, abs=0.006)
    cont = clone(base).set_params(threshold="contamination", contamination=0.1).fit(X)
    assert cont.predict(X).mean() == pytest.approx(0.1, abs=0.01)
    pot = clone(base).set_params(threshold="pot", pot_risk=1e-3).fit(X)
    assert pot.threshold_ > np.quantile(pot.train_scores_, 0.98)
    with pytest.raises(ValueError, match="threshold must be"):
        clone(base).set_params(threshold="magic").fit(X)


def test_pot_threshold_matches_exponential_tail():
    # Exponential(1) scores: P(S > z) = exp(-z), so the 1e-4 risk threshold is ~ln(1e4) = 9.21,
    # beyond the largest of 20k samples' typical max (~9.9 ± 1); a tail fit should land near it.
    s = np.random.default_rng(0).exponential(size=20000)
    assert pot_threshold(s, risk=1e-4, level=0.98) == pytest.approx(np.log(1e4), rel=0.1)
    with pytest.raises(ValueError, match="risk"):
        pot_threshold(s, risk=0.5)


def test_any_autoencoder_via_model_argument():
    X = correlated(300)
    vae = AnomalyDetector(model={"hidden": [16], "latent_dim": 2, "bottleneck": "gaussian"}, **FAST).fit(X)
    np.testing.assert_array_equal(vae.score_samples(X), vae.score_samples(X))  # eval mode: no sampling
    np.testing.assert_allclose(vae.score_samples(X), vae.train_scores_, rtol=1e-9)
    custom = AnomalyDetector(model=lambda d: AutoEncoder.mlp(d, latent_dim=2, hidden=[8]), **FAST).fit(X)
    assert custom.models_[0].latent_dim == 2
    assert [m["latent_dim"] for m in default_members(20, 3)] == [5, 10, 8]


def test_dataframe_columns_nan_and_constants():
    X = correlated(300)
    df = pd.DataFrame(X, columns=[f"m{i}" for i in range(X.shape[1])])
    det = AnomalyDetector(**FAST).fit(df)
    assert list(det.feature_names_in_) == list(df.columns)
    assert det.top_features(df.iloc[:1], k=1)[0][0].startswith("m")
    with pytest.raises(DataError, match=r"missing \['m5'\], unexpected \['other'\]"):
        det.score_samples(df.rename(columns={"m5": "other"}))
    with pytest.raises(DataError, match="expecting 6 features"):
        det.score_samples(X[:, :5])
    bad = df.copy()
    bad.loc[7, "m3"] = np.nan
    with pytest.raises(DataError, match="row 7, column 'm3'"):
        det.score_samples(bad)
    with pytest.raises(DataError, match="column 'm3'"):
        AnomalyDetector(**FAST).fit(bad)
    const = np.c_[X, np.full(len(X), 5.0)]
    det_c = AnomalyDetector(**FAST).fit(const)
    assert list(det_c.constant_features_) == [6]
    assert np.isfinite(det_c.score_samples(const)).all()
    moved = const[:20].copy()
    moved[:, 6] = 8.0  # a constant metric that changes is anomalous and blamed
    assert (det_c.feature_contributions(moved).argmax(1) == 6).all()


def test_save_load_round_trip_without_pickle(tmp_path):
    X = correlated(200)
    df = pd.DataFrame(X, columns=[f"m{i}" for i in range(X.shape[1])])
    det = AnomalyDetector(threshold="pot", **FAST).fit(df)
    folder = det.save(tmp_path / "det")
    assert not list(folder.rglob("*.pkl")) and (folder / "detector.json").is_file()
    back = AnomalyDetector.load(folder)
    np.testing.assert_array_equal(back.score_samples(df), det.score_samples(df))
    assert back.threshold_ == det.threshold_ and back.get_params() == det.get_params()
    assert list(back.feature_names_in_) == list(df.columns)
    with pytest.raises(DataError, match="missing"):
        back.score_samples(df.rename(columns={"m0": "x"}))
    with pytest.raises(Exception, match="detector.json"):
        AnomalyDetector.load(tmp_path)
