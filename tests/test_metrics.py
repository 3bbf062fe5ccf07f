"""isthmus.metrics: hand-computed cases for reconstruction, clustering and probe metrics."""

import math

import numpy as np
import pytest
import torch

from isthmus.metrics import (
    ari,
    bce,
    cluster_report,
    clustering_accuracy,
    linear_probe_accuracy,
    mse,
    nmi,
    per_sample_mse,
    psnr,
)


# ---- reconstruction ------------------------------------------------------------------------
def test_mse_hand_computed_numpy_and_torch():
    x = np.array([[0.0, 1.0], [2.0, 3.0]])
    x_hat = np.array([[1.0, 1.0], [2.0, 1.0]])  # squared errors 1, 0, 0, 4 → mean 1.25
    assert mse(x, x_hat) == pytest.approx(1.25)
    assert mse(torch.tensor(x, requires_grad=True), torch.tensor(x_hat)) == pytest.approx(1.25)
    assert mse(x.tolist(), torch.tensor(x_hat, dtype=torch.float32)) == pytest.approx(1.25)


def test_per_sample_mse_averages_all_but_first_axis():
    x = np.zeros((2, 2, 2))
    x_hat = np.zeros((2, 2, 2))
    x_hat[1] = 2.0  # sample 1: every squared error is 4
    x_hat[0, 0, 0] = 2.0  # sample 0: one of four errors is 4 → 1
    np.testing.assert_allclose(per_sample_mse(x, x_hat), [1.0, 4.0])


def test_shape_mismatch_is_a_clear_error_not_broadcast():
    with pytest.raises(ValueError, match=r"same shape.*\(3, 1\).*\(3,\)"):
        mse(np.zeros((3, 1)), np.zeros(3))
    with pytest.raises(ValueError, match="empty"):
        mse(np.zeros(0), np.zeros(0))


def test_psnr_of_known_mse():
    x = np.zeros(100)
    x_hat = np.full(100, 0.1)  # MSE = 0.01 → PSNR = 10·log10(1/0.01) = 20 dB
    assert psnr(x, x_hat) == pytest.approx(20.0)
    assert psnr(x * 255, x_hat * 255, data_range=255.0) == pytest.approx(20.0)
    assert psnr(x, x) == math.inf
    with pytest.raises(ValueError, match="data_range"):
        psnr(x, x_hat, data_range=0)


def test_bce_hand_computed_and_clipped():
    x = np.array([1.0, 0.0])
    x_hat = np.array([0.5, 0.25])  # -(log .5 + log .75) / 2
    assert bce(x, x_hat) == pytest.approx(-(math.log(0.5) + math.log(0.75)) / 2)
    # A confidently wrong probability is clipped, so the loss stays finite.
    assert math.isfinite(bce(np.array([1.0]), np.array([0.0])))
    assert bce(np.array([1.0]), np.array([0.0]), eps=1e-3) == pytest.approx(-math.log(1e-3))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bce(np.array([2.0]), np.array([0.5]))


# ---- clustering -----------------------------------------------------------------------------
def test_permuted_labels_give_perfect_scores():
    y = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([2, 2, 0, 0, 1, 1])
    assert clustering_accuracy(y, y_pred) == 1.0
    assert nmi(y, y_pred) == pytest.approx(1.0)
    assert ari(y, y_pred) == pytest.approx(1.0)


def test_known_confusion_gives_known_accuracy():
    # Cluster "a" holds 3 of class 0 and 1 of class 1; cluster "b" holds 2 of class 1.
    # Best map a→0, b→1 is right on 3 + 2 = 5 of 6 samples.
    y = [0, 0, 0, 1, 1, 1]
    y_pred = ["a", "a", "a", "a", "b", "b"]
    assert clustering_accuracy(y, y_pred) == pytest.approx(5 / 6)


def test_accuracy_with_more_or_fewer_clusters_than_classes():
    y = np.array([0, 0, 1, 1])
    # 4 clusters for 2 classes: only two clusters can be matched → 2/4.
    assert clustering_accuracy(y, np.array([0, 1, 2, 3])) == pytest.approx(0.5)
    # 1 cluster for 2 classes: it maps to one class → 2/4.
    assert clustering_accuracy(y, np.zeros(4, dtype=int)) == pytest.approx(0.5)


def test_cluster_report_keys_and_length_check():
    rep = cluster_report(torch.tensor([0, 0, 1, 1]), torch.tensor([1, 1, 0, 0]))
    assert rep == {"acc": 1.0, "nmi": pytest.approx(1.0), "ari": pytest.approx(1.0), "n_clusters": 2, "n_classes": 2}
    with pytest.raises(ValueError, match="same length"):
        clustering_accuracy([0, 1, 2], [0, 1])


# ---- probe ----------------------------------------------------------------------------------
def test_linear_probe_separable_and_deterministic():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(200, 5))
    y = (z[:, 0] > 0).astype(int)
    z[:, 1] *= 1000.0  # a huge nuisance feature: standardisation keeps it from dominating
    acc = linear_probe_accuracy(z[:150], y[:150], z[150:], y[150:])
    assert acc >= 0.95
    assert linear_probe_accuracy(z[:150], y[:150], z[150:], y[150:]) == acc


def test_linear_probe_chance_on_noise_and_validation():
    rng = np.random.default_rng(1)
    z, y = rng.normal(size=(400, 3)), rng.integers(0, 2, size=400)
    assert 0.3 < linear_probe_accuracy(z[:200], y[:200], z[200:], y[200:]) < 0.7
    with pytest.raises(ValueError, match="single class"):
        linear_probe_accuracy(z[:10], np.zeros(10), z[10:20], y[10:20])
    with pytest.raises(ValueError, match="2-D"):
        linear_probe_accuracy(z[:10, 0], y[:10], z[10:20], y[10:20])
