"""Latent-structure metrics: active units, PCA count, principal angles, nearest distances."""

import numpy as np
import torch

from isthmus.metrics import (
    active_units, kl_active_units, nearest_sq_distances, pca_dims_for_variance, principal_angles, softmax_confidence,
)


def test_active_units_count_varying_axes():
    rng = np.random.default_rng(0)
    mu = np.concatenate([rng.normal(size=(500, 3)), 1e-3 * rng.normal(size=(500, 5))], axis=1)
    assert active_units(mu) == 3
    assert kl_active_units(np.array([0.5, 0.0, 0.02, 0.001])) == 2
    assert kl_active_units(np.tile([0.5, 0.0], (4, 1))) == 1


def test_pca_dims_on_a_known_rank():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)) @ rng.normal(size=(4, 20))
    assert pca_dims_for_variance(x, 0.999999) == 4
    assert pca_dims_for_variance(x, 0.01) == 1


def test_principal_angles():
    e = np.eye(4)
    assert np.allclose(principal_angles(e[:, :2], e[:, [1, 0]]), 0.0, atol=1e-6)
    assert np.allclose(principal_angles(e[:, :1], e[:, 1:2]), [np.pi / 2])
    rot = np.array([[np.cos(0.3), -np.sin(0.3)], [np.sin(0.3), np.cos(0.3)]])
    a = np.zeros((3, 1)); a[0] = 1
    b = np.zeros((3, 1)); b[:2, 0] = rot[:, 0]
    assert np.allclose(principal_angles(a, b), [0.3])


def test_nearest_and_confidence():
    data = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    d = nearest_sq_distances(torch.tensor([[0.0, 1.0], [3.0, 4.0]]), data, chunk=1)
    assert torch.allclose(d, torch.tensor([1.0, 0.0]))
    c = softmax_confidence(torch.tensor([[0.0, 0.0], [100.0, 0.0]]))
    assert torch.allclose(c, torch.tensor([0.5, 1.0]))
