"""AnomalyDetector: the score's composition, eval-mode scoring, sign conventions and parameter checks.

test_anomaly_detector.py shows the detector *works* (AUROC, contributions, scikit-learn rules); these
pin down *how* the score is built, so that a dropped ``.eval()``, a sum instead of a mean, a missing
normalisation or a silently disabled distance term fails (audit A01-A27). Only public behaviour and
learned attributes documented in the class docstring are used.
"""

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch

from isthmus.data import DataError
from isthmus.tasks.anomaly import AnomalyDetector, default_members, pot_threshold

torch.set_num_threads(1)
SMALL = dict(n_estimators=2, epochs=6, random_state=0)


def rows(n: int = 120, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    W = np.random.default_rng(7).normal(size=(2, 5))
    return (z @ W + 0.1 * rng.normal(size=(n, 5)) + 3.0).astype(np.float32)


def recon_error(model, Z: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        x = torch.from_numpy(Z.astype(np.float64))
        return ((model.reconstruct(x) - x) ** 2).sum(1).numpy()


@pytest.fixture  # per test, not per module: mutation testing maps a fit to every test that needs it
def pair():
    """The same ensemble (same seeds) fitted without and with the distance term, minmax-scaled so the
    training mean is not 0 in the scaled space."""
    X = rows()
    # latent_weight=0: these tests pin the reconstruction and distance terms (the latent-density term that
    # issue 22 added to the default has its own tests in test_anomaly_scores.py)
    plain = AnomalyDetector(distance_weight=0.0, latent_weight=0.0, scaler="minmax", **SMALL).fit(X)
    full = AnomalyDetector(latent_weight=0.0, scaler="minmax", **SMALL).fit(X)  # default distance_weight = 1
    return X, plain, full


def test_score_reconstruction_term_is_the_mean_of_median_normalised_member_errors(pair):
    X, plain, _ = pair
    Z = plain.scaler_.transform(X)
    parts = [recon_error(m, Z) for m in plain.models_]
    expected = np.mean([p / np.median(p) for p in parts], axis=0)  # each member: median training row = 1
    test = rows(30, seed=1)
    Zt = plain.scaler_.transform(test)
    expected_test = np.mean([recon_error(m, Zt) / np.median(p) for m, p in zip(plain.models_, parts)], axis=0)
    np.testing.assert_allclose(plain.score_samples(X), expected, rtol=1e-9)
    np.testing.assert_allclose(plain.score_samples(test), expected_test, rtol=1e-9)
    np.testing.assert_allclose(plain.train_scores_, expected, rtol=1e-9)


def test_score_distance_term_is_the_squared_distance_from_the_training_mean_over_its_median(pair):
    X, plain, full = pair
    Z = np.asarray(full.scaler_.transform(X), dtype=np.float64)
    np.testing.assert_allclose(Z.min(0), 0.0, atol=1e-6)  # the requested minmax scaler, fitted on X
    np.testing.assert_allclose(Z.max(0), 1.0, atol=1e-6)
    center = Z.mean(0)
    assert np.abs(center).max() > 0.1  # minmax: the distance must be measured from the mean, not from 0
    d_train = ((Z - center) ** 2).sum(1)
    test = rows(30, seed=2)
    test[0] += 10.0  # far out along every feature
    d_test = ((np.asarray(full.scaler_.transform(test), dtype=np.float64) - center) ** 2).sum(1) / np.median(d_train)
    np.testing.assert_allclose(full.score_samples(test) - plain.score_samples(test), d_test, rtol=1e-6)
    # a typical training row scores about 1 (reconstruction) + 1 (distance), the documented scale
    assert np.median(full.train_scores_ - plain.train_scores_) == pytest.approx(1.0)


def test_score_distance_weight_scales_only_the_distance_term(pair):
    X, plain, full = pair
    heavy = AnomalyDetector(distance_weight=2.5, latent_weight=0.0, scaler="minmax", **SMALL).fit(X)
    test = rows(20, seed=3)
    np.testing.assert_allclose(heavy.score_samples(test) - plain.score_samples(test),
                               2.5 * (full.score_samples(test) - plain.score_samples(test)), rtol=1e-6)


def test_score_signs_decision_function_and_ties(pair):
    X, _, full = pair
    test = rows(40, seed=4)
    test[:3] += 25.0
    s = full.score_samples(test)
    assert s[:3].min() > s[3:].max()  # higher = more anomalous
    np.testing.assert_allclose(full.decision_function(test), s - full.threshold_)
    assert full.predict(test)[:3].tolist() == [1, 1, 1]
    np.testing.assert_array_equal(full.predict(test), (s > full.threshold_).astype(np.int64))
    tie = AnomalyDetector(scaler="minmax", **SMALL).fit(X)
    tie.threshold_ = float(tie.score_samples(test[:1])[0])
    assert tie.predict(test[:1]).tolist() == [0]  # a score equal to the threshold is not an alarm


@pytest.mark.parametrize("spec", [
    {"hidden": [16], "latent_dim": 2, "bottleneck": "gaussian"},  # a VAE samples its latent in train mode
    {"hidden": [16], "latent_dim": 2, "dropout": 0.5},
])
def test_scoring_is_deterministic_in_eval_mode(spec):
    X = rows(80)
    det = AnomalyDetector(model=spec, n_estimators=1, max_steps=20, random_state=0).fit(X)
    assert not any(m.training for m in det.models_)
    a, b = det.score_samples(X[:10]), det.score_samples(X[:10])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(det.score_samples(X), det.train_scores_, rtol=1e-9)


def test_score_threshold_rules_on_the_training_scores(pair):
    X, _, full = pair
    assert full.threshold_ == pytest.approx(np.percentile(full.train_scores_, 99.0))
    c = AnomalyDetector(threshold="contamination", contamination=0.1, scaler="minmax", **SMALL).fit(X)
    assert c.threshold_ == pytest.approx(np.quantile(c.train_scores_, 0.9))
    assert (c.predict(X) == 1).sum() == pytest.approx(0.1 * len(X), abs=1)
    p = AnomalyDetector(threshold="pot", pot_risk=0.005, pot_level=0.9, scaler="minmax", **SMALL).fit(X)
    assert p.threshold_ == pytest.approx(pot_threshold(p.train_scores_, risk=0.005, level=0.9))
    assert p.threshold_ != pytest.approx(pot_threshold(p.train_scores_), rel=1e-6)


# ---- parameters and input checks ----------------------------------------------------------------------
@pytest.mark.parametrize("params, name", [
    ({"percentile": 0}, "percentile"), ({"percentile": 100}, "percentile"), ({"percentile": -1}, "percentile"),
    ({"contamination": 0.0}, "contamination"), ({"contamination": 0.5}, "contamination"),
    ({"distance_weight": -0.1}, "distance_weight"), ({"n_estimators": 0}, "n_estimators"),
    ({"threshold": "magic"}, r"threshold must be one of \('percentile', 'contamination', 'pot'\), got 'magic'"),
    ({"model": 42}, r"^model must be None, a dict of AutoEncoder\.mlp arguments or a callable f\(n_features\)$"),
])
def test_invalid_parameters_are_rejected_at_fit(params, name):
    with pytest.raises(ValueError, match=name):
        AnomalyDetector(**params).fit(rows(20))


@pytest.mark.parametrize("params", [{"percentile": 0.5}, {"percentile": 99.9}, {"contamination": 0.49},
                                    {"distance_weight": 0.0}])
def test_boundary_parameters_are_accepted(params):
    AnomalyDetector(n_estimators=1, epochs=1, random_state=0, **params).fit(rows(20))


def test_one_row_is_not_enough_to_fit_two_are():
    with pytest.raises(DataError, match="at least 2 rows"):
        AnomalyDetector(n_estimators=1, epochs=1).fit(rows(1))
    assert AnomalyDetector(n_estimators=1, epochs=1, random_state=0).fit(rows(2)).score_samples(rows(2)).shape == (2,)


def test_reordered_dataframe_columns_are_refused():
    cols = list("abcde")
    det = AnomalyDetector(n_estimators=1, epochs=1, random_state=0).fit(pd.DataFrame(rows(30), columns=cols))
    df = pd.DataFrame(rows(5, seed=1), columns=cols)
    with pytest.raises(DataError, match=r"\(same names, different order\)"):
        det.score_samples(df[["b", "a", "c", "d", "e"]])
    assert det.score_samples(df).shape == (5,)


# ---- defaults ------------------------------------------------------------------------------------------
def test_default_members_widths_and_latent_sizes():
    assert [m["hidden"] for m in default_members(20, 2)] == [[40], [40]]  # 2d, inside [16, 128]
    assert default_members(3, 1)[0]["hidden"] == [16] and default_members(100, 1)[0]["hidden"] == [128]
    assert [m["latent_dim"] for m in default_members(8, 6)] == [2, 4, 3, 1, 5, 2]  # fractions cycle
    assert [m["latent_dim"] for m in default_members(2, 5)] == [1, 1, 1, 1, 1]  # below d, at least 1
    assert [m["latent_dim"] for m in default_members(3, 5)] == [1, 2, 1, 1, 2]  # round(1.5), round(1.875) = 2
    assert [m["latent_dim"] for m in default_members(1, 2)] == [1, 1]


@pytest.mark.parametrize("n, max_steps, epochs", [(100, 1, 5), (40, 100, 100), (8, 1500, 200)])
def test_auto_epochs_follow_the_step_budget_within_5_and_200(n, max_steps, epochs):
    det = AnomalyDetector(n_estimators=1, max_steps=max_steps, batch_size=64, random_state=0)
    det.fit(rows(n))
    assert len(det.history_[0]) == epochs


def test_explicit_epochs_win():
    det = AnomalyDetector(n_estimators=1, epochs=3, random_state=0).fit(rows(40))
    assert len(det.history_[0]) == 3


def test_score_squared_error_is_independent_of_the_chunk_size(pair):
    from isthmus.tasks.anomaly import _squared_error

    X, plain, _ = pair
    Z = plain.scaler_.transform(X[:7]).astype(np.float32)
    whole = _squared_error(plain.models_[0], Z)
    np.testing.assert_allclose(_squared_error(plain.models_[0], Z, chunk=3), whole, rtol=1e-12)
    assert whole.shape == (7, 5)


# ---- POT threshold branches ----------------------------------------------------------------------------
def test_pot_falls_back_to_the_empirical_quantile_with_few_peaks():
    s = np.arange(200, dtype=np.float64)  # 2 % of 200 = 4 peaks above the 0.98 quantile: too few to fit
    assert pot_threshold(s, risk=1e-3, level=0.98) == pytest.approx(np.quantile(s, 1 - 1e-3))
    s = np.arange(500, dtype=np.float64)  # exactly 10 peaks: the tail is fitted, beyond the quantile rule
    assert pot_threshold(s, risk=1e-3, level=0.98) != pytest.approx(np.quantile(s, 1 - 1e-3), rel=1e-6)


def test_pot_exponential_tail_branch(monkeypatch):
    s = np.arange(1000, dtype=np.float64)
    monkeypatch.setattr(scipy.stats.genpareto, "fit", lambda *a, **k: (0.0, 0.0, 5.0))  # shape 0: exponential
    t = np.quantile(s, 0.98)
    peaks = (s > t).sum()
    expected = t - 5.0 * np.log(1e-3 * len(s) / peaks)
    assert pot_threshold(s, risk=1e-3, level=0.98) == pytest.approx(expected)
    assert expected > t


def test_pot_defaults_and_float32_scores():
    s = np.random.default_rng(0).exponential(size=5000)
    assert pot_threshold(s) == pot_threshold(s, risk=1e-3, level=0.98)
    assert pot_threshold(s.astype(np.float32)) == pytest.approx(pot_threshold(s.astype(np.float32).astype(np.float64)),
                                                                rel=1e-12)  # computed in float64 whatever comes in


# ---- contributions and conveniences ---------------------------------------------------------------------
def test_score_normalised_contributions_sum_to_one_even_for_low_scores(pair):
    X, _, full = pair
    c = full.feature_contributions(X)
    assert (full.score_samples(X) < 1).any()  # rows scoring below 1 are normalised too
    np.testing.assert_allclose(c.sum(1), 1.0, rtol=1e-9)
    np.testing.assert_allclose(full.feature_contributions(X, normalize=False).sum(1), full.score_samples(X))


def test_top_features_default_k_and_ties_in_column_order():
    det = AnomalyDetector()
    det.n_features_in_ = 40
    c = np.zeros((1, 40))
    c[0, [5, 30]] = 0.5
    det.feature_contributions = lambda X: c  # many exact ties: the earlier column comes first
    assert det.top_features(None) == [["5", "30", "0"]]
    assert det.top_features(None, k=6) == [["5", "30", "0", "1", "2", "3"]]


def test_fit_predict_is_fit_then_predict():
    X = rows(60)
    X[:2] += 20.0
    det = AnomalyDetector(threshold="contamination", contamination=0.05, n_estimators=1, epochs=2, random_state=0)
    flags = det.fit_predict(X)
    np.testing.assert_array_equal(flags, det.predict(X))
    assert flags[:2].tolist() == [1, 1] and flags.sum() == pytest.approx(0.05 * 60, abs=1)


@pytest.mark.parametrize("shape, message", [
    ((20,), r"X must be 2-D \(n_samples, n_features\), got shape \(20,\)\. Reshape your data with "
            r"X\.reshape\(-1, 1\) for one feature or X\.reshape\(1, -1\) for one sample"),
    ((20, 3, 2), r"got shape \(20, 3, 2\); window a time series first \(isthmus\.data\.sliding_windows\) "
                 "and flatten it"),
])
def test_wrong_dimensionality_says_how_to_reshape(shape, message):
    with pytest.raises(DataError, match=message):
        AnomalyDetector(n_estimators=1, epochs=1).fit(np.ones(shape, dtype=np.float32))


def test_wrong_columns_at_score_time_say_what_differs():
    det = AnomalyDetector(n_estimators=1, epochs=1, random_state=0).fit(pd.DataFrame(rows(30), columns=list("abcde")))
    with pytest.raises(DataError, match=r"X has 4 features, but AnomalyDetector is expecting 5 features as input"):
        det.score_samples(rows(5)[:, :4])
    renamed = pd.DataFrame(rows(5), columns=list("abcdz"))
    with pytest.raises(DataError, match=r"missing \['e'\], unexpected \['z'\]\); pass the columns "
                                        r"\['a', 'b', 'c', 'd', 'e'\] in that order"):
        det.score_samples(renamed)
    with pytest.raises(DataError, match=r"missing \['e'\], unexpected \[\]\)"):
        det.score_samples(pd.DataFrame(rows(5)[:, :4], columns=list("abcd")))
    assert det.feature_names_in_.tolist() == list("abcde")
    plain = det.fit(rows(30))  # refitting on an array forgets the names
    assert not hasattr(plain, "feature_names_in_") and plain.score_samples(rows(3)).shape == (3,)


@pytest.mark.parametrize("risk, level", [(0.0, 0.98), (0.5, 0.5), (0.6, 0.5)])
def test_pot_risk_outside_its_open_interval_is_rejected(risk, level):
    with pytest.raises(ValueError, match=rf"pot risk must be in \(0, 1 - level={1 - level:g}\), got {risk}"):
        pot_threshold(np.arange(100.0), risk=risk, level=level)


def test_pot_fits_location_zero_to_the_peaks_strictly_above_the_level_quantile():
    s = np.r_[np.zeros(985), np.random.default_rng(1).exponential(2.0, size=15)]  # the 0.98 quantile is 0
    assert np.quantile(s, 0.98) == 0.0
    peaks = s[s > 0.0]  # the 985 rows sitting exactly on the quantile are not peaks
    shape, loc, scale = scipy.stats.genpareto.fit(peaks, floc=0.0)
    assert loc == 0.0
    ratio = 1e-3 * len(s) / len(peaks)
    assert pot_threshold(s, risk=1e-3, level=0.98) == pytest.approx(scale / shape * (ratio ** (-shape) - 1.0))


def test_pot_general_tail_branch(monkeypatch):
    s = np.arange(1000, dtype=np.float64)
    monkeypatch.setattr(scipy.stats.genpareto, "fit", lambda *a, **k: (0.5, 0.0, 5.0))  # a heavy tail
    t = np.quantile(s, 0.98)
    ratio = 1e-3 * len(s) / (s > t).sum()
    assert pot_threshold(s, risk=1e-3, level=0.98) == pytest.approx(t + 5.0 / 0.5 * (ratio ** -0.5 - 1.0))


def test_score_predict_returns_integer_labels(pair):
    X, _, full = pair
    assert full.predict(X[:3]).dtype == np.int64


def test_a_failed_fit_leaves_the_detector_unfitted():
    from sklearn.exceptions import NotFittedError

    det = AnomalyDetector(n_estimators=1, epochs=1)
    with pytest.raises(DataError, match="at least 2 rows"):
        det.fit(pd.DataFrame(rows(1), columns=list("abcde")))  # column names were read before the refusal
    with pytest.raises(NotFittedError):
        det.score_samples(rows(3))


# ---- member training --------------------------------------------------------------------------------------
def test_members_train_with_the_estimator_settings(capfd):
    det = AnomalyDetector(model={"hidden": [8], "latent_dim": 3}, n_estimators=1, epochs=2, batch_size=10,
                          lr=0.0123, random_state=0).fit(rows(40))
    assert capfd.readouterr().err == ""  # no progress bars from the members' training
    member = det.models_[0]
    assert member.latent_dim == 3  # the dict spec reaches AutoEncoder.mlp
    assert member.objective.recon_loss == "mse" and member.objective.recon_reduction == "mean"
    hist = det.history_[0]
    assert [h["step"] for h in hist] == [4, 8]  # batch_size 10 on 40 rows
    assert hist[0]["lr"] == pytest.approx(0.0123)


def test_default_members_are_built_as_specified():
    det = AnomalyDetector(n_estimators=3, epochs=1, random_state=0).fit(rows(40))
    assert [m.latent_dim for m in det.models_] == [m["latent_dim"] for m in default_members(5, 3)]


def test_weight_decay_reaches_the_members():
    X = rows(40)
    plain = AnomalyDetector(n_estimators=1, epochs=3, random_state=0).fit(X)
    decayed = AnomalyDetector(n_estimators=1, epochs=3, weight_decay=0.5, random_state=0).fit(X)
    assert not np.allclose(plain.score_samples(X), decayed.score_samples(X))


def test_members_with_the_same_init_differ_by_their_batch_order():
    from isthmus.models import AutoEncoder

    def same_init(d):
        with torch.random.fork_rng():
            torch.manual_seed(123)
            return AutoEncoder.mlp(d, latent_dim=2, hidden=[8])

    det = AnomalyDetector(model=same_init, n_estimators=2, epochs=2, batch_size=8, random_state=0).fit(rows(40))
    a, b = (m.state_dict() for m in det.models_)
    assert any(not torch.equal(a[k], b[k]) for k in a)  # each member's trainer is seeded on its own


@pytest.mark.parametrize("at_fit", [True, False])
def test_non_finite_values_are_reported_against_X_with_their_position(at_fit):
    bad = rows(10)
    bad[3, 2] = np.nan
    det = AnomalyDetector(n_estimators=1, epochs=1, random_state=0)
    if not at_fit:
        det.fit(rows(10))
    with pytest.raises(DataError, match=r"^X: contains 1 non-finite value\(s\); impute or drop rows; first NaN at row 3, "
                                        r"column 2"):
        det.fit(bad) if at_fit else det.score_samples(bad)


def test_fitted_column_names_label_errors_and_follow_scikit_learn():
    det = AnomalyDetector(n_estimators=1, epochs=1, random_state=0).fit(pd.DataFrame(rows(10), columns=list("abcde")))
    assert det.feature_names_in_.dtype == object  # scikit-learn's convention
    bad = rows(4)
    bad[1, 2] = np.inf
    with pytest.raises(DataError, match="row 1, column 2 \\('c'\\)|'c'"):  # an array scored by name-fitted detector
        det.score_samples(bad)
    with pytest.raises(DataError, match="must be 2-D"):  # a Series has .iloc but no columns
        AnomalyDetector(n_estimators=1, epochs=1).fit(pd.Series(rows(10)[:, 0]))
