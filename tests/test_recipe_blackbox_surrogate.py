"""blackbox-surrogate recipe logic: folds and the tuning subset never overlap, the planted columns are the
first 25, TreeSHAP importance finds a planted feature."""

import numpy as np
import pytest

from isthmus.recipes.blackbox_surrogate import N_RELEVANT, Settings, Split, _fold, _synthetic, shap_importance


def test_folds_partition_the_rows_and_are_standardised_on_train_only():
    rng = np.random.default_rng(0)
    X = np.c_[np.arange(100.0), rng.normal(size=(100, 3))].astype(np.float32)
    y = np.repeat([0, 1], 50)
    tests = [set(_fold(X, y, f, standardise=False).Xte[:, 0].astype(int)) for f in range(5)]
    assert set().union(*tests) == set(range(100)) and sum(map(len, tests)) == 100
    d = _fold(X, y, 2, standardise=False)
    assert not set(d.Xtr[:, 0].astype(int)) & tests[2]
    ds = _fold(X, y, 2, standardise=True)
    assert np.allclose(ds.Xtr.mean(0), 0, atol=1e-5) and not np.allclose(ds.Xte.mean(0), 0, atol=1e-3)
    with pytest.raises(ValueError, match="5 folds"):
        _fold(X, y, 5, standardise=False)


def test_planted_columns_carry_the_signal():
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y = _synthetic(600, 200, seed=0)
    fit = lambda cols: (HistGradientBoostingClassifier(max_iter=50).fit(X[:400, cols], y[:400])  # noqa: E731
                        .score(X[400:, cols], y[400:]))
    assert fit(slice(0, N_RELEVANT)) > fit(slice(N_RELEVANT, 2 * N_RELEVANT)) + 0.2


def test_treeshap_importance_ranks_a_planted_feature_first():
    pytest.importorskip("xgboost")
    from xgboost import XGBClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 20)).astype(np.float32)
    y = (X[:, 7] > 0).astype(int) + 2 * (X[:, 3] > 0.5).astype(int)  # 4 classes from features 7 and 3
    m = XGBClassifier(n_estimators=20, max_depth=3, n_jobs=1).fit(X, y)
    imp = shap_importance(m, Split(X, y, X, y, 4), Settings(shap_rows=200), seed=0)
    assert imp.shape == (20,) and set(np.argsort(-imp)[:2]) == {3, 7}
