"""MNIST-M built offline: the blend formula, determinism per seed, disjoint digits."""

import numpy as np
import pytest

from isthmus.data.mnist_m import blend_mnist_m, mnist_m


def test_blend_is_the_absolute_difference():
    d = np.zeros((1, 1, 2, 2), np.float32)
    d[0, 0, 0, 0] = 1.0
    p = np.full((1, 3, 2, 2), 0.25, np.float32)
    out = blend_mnist_m(d, p)
    assert out.shape == (1, 3, 2, 2)
    assert np.allclose(out[0, :, 0, 0], 0.75) and np.allclose(out[0, :, 1, 1], 0.25)
    with pytest.raises(ValueError, match="must match"):
        blend_mnist_m(d, p[:, :, :1])


def test_deterministic_per_seed_and_in_range():
    pytest.importorskip("skimage")
    a = mnist_m(50, 20, seed=3)
    b = mnist_m(50, 20, seed=3)
    c = mnist_m(50, 20, seed=4)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    assert a[0].shape == (50, 3, 28, 28) and a[2].shape == (20, 3, 28, 28)
    assert a[0].min() >= 0 and a[0].max() <= 1 and set(np.unique(a[1])) <= set(range(10))
    with pytest.raises(ValueError, match="n_train"):
        mnist_m(9000, 2000)


def test_pooled_photos_are_deterministic_and_differ_from_the_disjoint_split():
    pytest.importorskip("skimage")
    Xtr, _, Xte, _ = mnist_m(60, 40, seed=0, disjoint_photos=False)
    again = mnist_m(60, 40, seed=0, disjoint_photos=False)
    assert np.array_equal(Xtr, again[0]) and np.array_equal(Xte, again[2])
    assert not np.array_equal(Xte, mnist_m(60, 40, seed=0)[2])
    assert Xtr.shape == (60, 3, 28, 28) and Xte.shape == (40, 3, 28, 28)
