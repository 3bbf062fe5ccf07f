"""Fréchet distance and IS analogue (isthmus.metrics.generative) against closed forms; the fixed classifier."""

import numpy as np
import pytest
import torch

from isthmus.tasks.feature_classifier import train_feature_classifier

from isthmus.metrics.generative import (
    frechet_distance, frechet_distance_from_stats, generative_report, inception_score,
)


def test_identical_sets_have_zero_distance():
    f = np.random.default_rng(0).normal(size=(500, 8))
    assert frechet_distance(f, f) == pytest.approx(0.0, abs=1e-6)


def test_shifted_gaussians_match_the_closed_form():
    rng = np.random.default_rng(1)
    d, shift = 4, np.array([1.0, -2.0, 0.5, 0.0])
    # Exact stats: FD = |shift|^2 + sum (s1 + s2 - 2 sqrt(s1 s2)) for diagonal covariances.
    s1, s2 = np.diag([1.0, 2.0, 0.5, 1.0]), np.diag([4.0, 2.0, 0.5, 0.25])
    analytic = shift @ shift + sum(a + b - 2 * np.sqrt(a * b) for a, b in zip(np.diag(s1), np.diag(s2)))
    assert frechet_distance_from_stats(np.zeros(d), s1, shift, s2) == pytest.approx(analytic, rel=1e-9)
    # Samples: same covariance, shifted mean -> FD ~ |shift|^2.
    a = rng.normal(size=(20000, d))
    b = rng.normal(size=(20000, d)) + shift
    assert frechet_distance(a, b) == pytest.approx(shift @ shift, abs=0.05)


def test_singular_covariances_are_regularised():
    f = np.random.default_rng(2).normal(size=(5, 16))  # fewer samples than features: rank-deficient
    with np.errstate(all="ignore"):
        fd = frechet_distance(f, f + 0.1)
    assert np.isfinite(fd) and fd >= 0


def test_inception_score_limits():
    c = 10
    onehot = np.eye(c)[np.arange(1000) % c]
    assert inception_score(onehot)[0] == pytest.approx(c, rel=1e-6)
    const = np.tile(np.random.default_rng(0).dirichlet(np.ones(c)), (100, 1))
    assert inception_score(const)[0] == pytest.approx(1.0, abs=1e-9)
    assert inception_score(onehot[:1]) [0] == pytest.approx(1.0)
    mean, std = inception_score(onehot, n_splits=4)
    assert mean == pytest.approx(c, rel=1e-2) and std >= 0
    with pytest.raises(ValueError):
        inception_score(np.ones((3, 4)))


def test_feature_classifier_is_deterministic_cached_and_useful(tmp_path):
    clf = train_feature_classifier("digits", seed=0, epochs=8, cache_dir=tmp_path)
    assert clf.heldout_accuracy_ > 0.85
    assert train_feature_classifier("digits", seed=0, epochs=8) is clf  # in-memory cache
    from isthmus.tasks import feature_classifier as generative

    generative._CACHE.clear()
    again = train_feature_classifier("digits", seed=0, epochs=8, cache_dir=tmp_path)  # from disk
    x = torch.rand(7, 1, 8, 8)
    assert np.allclose(again.features(x), clf.features(x))
    generative._CACHE.clear()
    fresh = train_feature_classifier("digits", seed=0, epochs=8)  # retrained: same weights
    assert np.allclose(fresh.probs(x), clf.probs(x), atol=1e-6)
    assert clf.features(torch.rand(3, 1, 16, 16)).shape == (3, 64)  # other sides are resized


def test_generative_report_ranks_real_above_noise():
    from isthmus.data import load_digits

    t = load_digits(as_images=True)
    x, y = torch.as_tensor(t.X), torch.as_tensor(t.y)
    clf = train_feature_classifier("digits", seed=0, epochs=8)
    real = generative_report(clf, x[:800], x[800:], labels=y[:800])
    noise = generative_report(clf, torch.rand(800, 1, 8, 8), x[800:])
    assert real["frechet"] < noise["frechet"] and real["inception_score"] > noise["inception_score"]
    assert real["class_accuracy"] > 0.85


def test_feature_classifier_trains_on_the_given_indices_only():
    from isthmus.tasks.feature_classifier import frechet_sanity

    idx = np.arange(0, 1797, 2)  # even rows train; odd rows are the references below
    clf = train_feature_classifier("digits", seed=0, epochs=8, train_indices=idx)
    assert np.array_equal(clf.train_indices_, idx) and clf.heldout_accuracy_ > 0.85
    other = train_feature_classifier("digits", seed=0, epochs=8, train_indices=idx[:400])
    assert other is not clf  # different indices, different model (the cache key includes them)
    with pytest.raises(ValueError, match="rows in"):
        train_feature_classifier("digits", train_indices=[0, 5000])
    with pytest.raises(ValueError, match="repeated"):
        train_feature_classifier("digits", train_indices=[1, 1])
    from isthmus.data import load_digits

    odd = torch.as_tensor(load_digits(as_images=True).X)[1::2]
    fd = frechet_sanity(clf, odd[:450], odd[450:])
    assert fd["real"] < 0.5 * min(fd["blurred"], fd["noise"])
