"""Recursive training on a model's own samples (model-collapse studies; Gerstgrasser et al. 2024, arXiv 2404.01413).

Generation 1 trains on real data; generation ``t > 1`` trains on data built from earlier generations'
samples, by one of three rules:

* ``replace`` — only the previous generation's samples (``T`` rows);
* ``accumulate`` — the real data and every generation's samples so far (``t·T`` rows);
* ``accumulate_subsample`` — ``T`` rows drawn from that accumulated pool (the referee's control that
  separates *keeping real data* from *having more data*).

:func:`recursive_generations` runs any model family through that loop (you pass ``fit``, ``sample``,
``evaluate``); :func:`linear_collapse` is the paper's analytic linear-regression loop, whose test error
is known in closed form (``replace`` grows by ``σ²d/(T−d−1)`` per iteration; ``accumulate`` stays below
``σ²d/(T−d−1)·π²/6``).
"""

from __future__ import annotations

from typing import Any, Callable, Literal

import numpy as np

__all__ = ["MODES", "pool_for_generation", "recursive_generations", "linear_collapse"]

MODES = ("replace", "accumulate", "accumulate_subsample")
Mode = Literal["replace", "accumulate", "accumulate_subsample"]


def pool_for_generation(
    real: np.ndarray, synthetic: list[np.ndarray], mode: Mode, rng: np.random.Generator
) -> np.ndarray:
    """The training rows of the next generation, given the real data and the samples made so far."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not synthetic or mode == "replace":
        return synthetic[-1] if synthetic else real
    pool = np.concatenate([real, *synthetic])
    if mode == "accumulate":
        return pool
    return pool[rng.choice(len(pool), size=len(real), replace=False)]


def recursive_generations(
    real: np.ndarray,
    generations: int,
    mode: Mode,
    fit: Callable[[np.ndarray, int], Any],
    sample: Callable[[Any, int, int], np.ndarray],
    evaluate: Callable[[Any], dict[str, float]],
    seed: int = 0,
) -> list[dict[str, float]]:
    """Train ``generations`` models in turn; ``fit(data, generation) -> model``, ``sample(model, n, seed)``,
    ``evaluate(model) -> metrics`` (on real held-out data). Returns one metrics dict per generation."""
    if generations < 1:
        raise ValueError(f"generations must be >= 1, got {generations}")
    rng = np.random.default_rng(seed)
    synthetic: list[np.ndarray] = []
    out = []
    for g in range(1, generations + 1):
        data = pool_for_generation(real, synthetic, mode, rng)
        model = fit(data, g)
        out.append({"generation": float(g), "train_rows": float(len(data)), **evaluate(model)})
        if g < generations:
            synthetic.append(np.asarray(sample(model, len(real), int(rng.integers(2**31)))))
    return out


def linear_collapse(
    d: int = 10,
    T: int = 100,
    sigma: float = 1.0,
    iterations: int = 20,
    repetitions: int = 500,
    mode: Mode = "replace",
    seed: int = 0,
) -> np.ndarray:
    """Mean test error ``E‖ŵ_t − w‖²`` per iteration of the paper's linear loop (``(iterations,)``).

    ``X`` (T × d Gaussian) is drawn once per repetition and reused; labels of generation ``t`` are the
    previous fit's predictions plus fresh noise ``σ``; ``accumulate`` refits on every labelled copy.
    """
    rng = np.random.default_rng(seed)
    err = np.zeros(iterations)
    for _ in range(repetitions):
        X = rng.standard_normal((T, d))
        w = rng.standard_normal(d)
        xs: list[np.ndarray] = []
        ys: list[np.ndarray] = []
        w_prev: np.ndarray = w
        for t in range(iterations):
            y = X @ w_prev + sigma * rng.standard_normal(T)
            xs, ys = ([X], [y]) if mode == "replace" else (xs + [X], ys + [y])
            if mode == "accumulate_subsample" and len(xs) > 1:
                allx, ally = np.concatenate(xs), np.concatenate(ys)
                pick = rng.choice(len(allx), T, replace=False)
                A, b = allx[pick], ally[pick]
            else:
                A, b = np.concatenate(xs), np.concatenate(ys)
            w_hat = np.linalg.lstsq(A, b, rcond=None)[0]
            err[t] += np.sum((w_hat - w) ** 2)
            w_prev = w_hat
    return err / repetitions
