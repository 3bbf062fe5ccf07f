"""The recursive-training harness: dataset sizes per mode, seeded pools, and the linear loop's closed form."""

import numpy as np
import pytest

from isthmus.tasks.recursive import linear_collapse, pool_for_generation, recursive_generations


def test_dataset_sizes_per_mode():
    real = np.zeros((10, 2))
    sizes = {}
    for mode in ("replace", "accumulate", "accumulate_subsample"):
        runs = recursive_generations(real, 4, mode, fit=lambda data, g: data, sample=lambda m, n, s: np.ones((n, 2)),
                                     evaluate=lambda m: {"rows": float(len(m))}, seed=0)
        sizes[mode] = [r["train_rows"] for r in runs]
    assert sizes == {"replace": [10, 10, 10, 10], "accumulate": [10, 20, 30, 40], "accumulate_subsample": [10] * 4}


def test_pools_are_seeded_and_subsample_mixes_real_and_synthetic():
    real, syn = np.zeros((50, 1)), [np.ones((50, 1)), 2 * np.ones((50, 1))]
    a = pool_for_generation(real, syn, "accumulate_subsample", np.random.default_rng(3))
    b = pool_for_generation(real, syn, "accumulate_subsample", np.random.default_rng(3))
    assert np.array_equal(a, b) and len(a) == 50 and set(np.unique(a)) == {0.0, 1.0, 2.0}
    with pytest.raises(ValueError, match="mode"):
        pool_for_generation(real, syn, "mix", np.random.default_rng(0))


def test_linear_loop_matches_theory():
    d, T, sigma = 10, 100, 1.0
    c = sigma**2 * d / (T - d - 1)
    rep = linear_collapse(d, T, sigma, iterations=8, repetitions=300, mode="replace", seed=0)
    assert rep[0] == pytest.approx(c, rel=0.1)  # first-iteration error sigma^2 d / (T - d - 1)
    slope = np.polyfit(np.arange(1, 9), rep, 1)[0]
    assert slope == pytest.approx(c, rel=0.15)  # replace grows linearly
    acc = linear_collapse(d, T, sigma, iterations=8, repetitions=300, mode="accumulate", seed=0)
    assert acc[-1] < c * np.pi**2 / 6 * 1.1 and acc[-1] < rep[-1] / 3  # accumulate stays bounded
