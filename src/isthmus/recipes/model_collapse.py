"""Seed 17 — model collapse is avoided by accumulating real and synthetic data instead of replacing it.

Gerstgrasser et al. 2024, arXiv 2404.01413. Referee card (``cards-I-J.md`` §17) followed: the paper's
VAE experiment scaled from CelebA to binarised 14×14 MNIST t10k (8,000 train / 2,000 test), 8
generations, every generation a fresh MLP-VAE (196-256-16, Bernoulli likelihood) trained for the same
number of Adam steps on the rows the rule gives it (``isthmus.tasks.recursive``), synthetic sets of
8,000 Bernoulli *samples* (not means) from ``z ~ N(0, I)``; test error = real-test NLL by importance
sampling (IWAE, k = 32). The paper's analytic linear loop runs as a protocol precondition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping, TypeAlias, cast

import numpy as np
import torch

from isthmus.metrics.likelihood import importance_sampled_log_likelihood
from isthmus.models import AutoEncoder
from isthmus.recipes.base import Paper, Recipe, RecipeSettings
from isthmus.recipes.gates import Check, Gate, Measured, Precondition, plateaued
from isthmus.recipes.registry import register_recipe
from isthmus.tasks.recursive import Mode, linear_collapse, recursive_generations
from isthmus.train import Trainer, TrainerConfig

ACCUMULATE_WEIGHT = 4.0  # H: Δ(replace) − 4·Δ(accumulate) > 0 (card: a quarter of replace's degradation)


@dataclass
class Settings(RecipeSettings):
    generations: int = 8
    steps: int = 1500
    batch_size: int = 128
    n_train: int = 8000
    n_test: int = 2000
    iwae_k: int = 32
    latent_dim: int = 16
    hidden: int = 256


@lru_cache(maxsize=2)
def load(n_train: int, n_test: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Binarised 14×14 MNIST t10k (2×2 mean pooling, threshold 0.5); digits (8×8) without MNIST."""
    from isthmus.data import DataNotFoundError, load_digits, load_mnist

    try:
        t = load_mnist()
        x = t.X.reshape(len(t.X), 28, 28).reshape(-1, 14, 2, 14, 2).mean((2, 4)).reshape(len(t.X), -1)
        name = "MNIST t10k 14x14"
    except DataNotFoundError:
        t = load_digits()
        x, name = t.X.reshape(len(t.X), -1), "scikit-learn digits 8x8 (MNIST not found)"
        n_train, n_test = min(n_train, 1397), min(n_test, 400)
    x = (x > 0.5).astype(np.float32)
    perm = np.random.default_rng(0).permutation(len(x))  # one fixed split for every seed and arm
    return x[perm[:n_train]], x[perm[n_train : n_train + n_test]], f"{name} binarised: {n_train} train / {n_test} test"


def _vae(s: Settings, in_dim: int) -> AutoEncoder:
    return AutoEncoder.mlp(
        in_dim=in_dim,
        latent_dim=s.latent_dim,
        hidden=(s.hidden,),
        bottleneck="gaussian",
        out_activation="sigmoid",
        objective={"recon_loss": "bce"},
    )


def _fit(s: Settings, seed: int, steps: int | None = None):
    def fit(data: np.ndarray, generation: int) -> AutoEncoder:
        torch.manual_seed(seed * 1000 + generation)  # a fresh initialisation every generation
        model = _vae(s, data.shape[1])
        steps_per_epoch = math.ceil(len(data) / s.batch_size)
        epochs = max(1, round((steps or s.steps) / steps_per_epoch))  # the same number of steps for every rule
        res = Trainer(
            model,
            TrainerConfig(
                epochs=epochs, batch_size=s.batch_size, lr=1e-3, seed=seed * 1000 + generation, progress=False
            ),
        ).fit(torch.as_tensor(data))
        # per-epoch loss, for the PLATEAU check (a plain list attribute: not the Tensor | Module torch types)
        model.train_curve_ = [h["train_loss"] for h in res.history]  # type: ignore[assignment]
        return model.eval()

    return fit


@torch.no_grad()
def _sample(model: AutoEncoder, n: int, seed: int) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, model.latent_dim, generator=g)
    return torch.bernoulli(model.decode(z), generator=g).numpy()  # samples, not means: the theory's fresh noise


def _evaluate(s: Settings, test: np.ndarray):
    def evaluate(model: AutoEncoder) -> dict[str, float]:
        torch.manual_seed(0)
        ll = importance_sampled_log_likelihood(model, torch.as_tensor(test), k=s.iwae_k)
        return {"nll": float(-ll.mean()), "converged": float(plateaued(cast("list[float]", model.train_curve_)))}

    return evaluate


def _arm(mode: Mode, weight: float = 1.0):
    def arm(s: Settings, seed: int, data) -> Measured:
        train, test = data
        runs = recursive_generations(train, s.generations, mode, _fit(s, seed), _sample, _evaluate(s, test), seed=seed)
        e = [r["nll"] for r in runs]
        delta = e[-1] - e[0]
        g = len(e)
        mid = max(1, g // 2)
        early = (e[mid - 1] - e[0]) / max(1, mid - 1)  # slope over generations 1..mid
        late = (e[-1] - e[mid - 1]) / max(1, g - mid)  # slope over generations mid..G
        return Measured(
            metrics={
                "nll_first": e[0],
                "nll_last": e[-1],
                "delta_nll": delta,
                "weighted_degradation": weight * delta,
                "bounded_contrast": 0.5 * early - late,
                "gen1_converged": runs[0]["converged"],
            },
            curves={"nll": e},
        )

    return arm


def real_only(s: Settings, seed: int, data) -> Measured:
    """Two refits on real data only: the noise floor of E_t without any synthetic data; and one 3x longer
    fit (the card's check that generation 1 is trained to within 1 nat of convergence)."""
    train, test = data
    ev = _evaluate(s, test)
    first = ev(_fit(s, seed)(train, 1))
    again = ev(_fit(s, seed)(train, s.generations))["nll"]
    longer = ev(_fit(s, seed, steps=3 * s.steps)(train, 1))["nll"]
    return Measured(
        metrics={
            "nll_first": first["nll"],
            "nll_last": again,
            "delta_nll": again - first["nll"],
            "abs_drift": abs(again - first["nll"]),
            "gen1_converged": first["converged"],
            "gap_to_3x_longer": first["nll"] - longer,
        }
    )


@register_recipe
class ModelCollapse(Recipe):
    slug = "model-collapse"
    paper = Paper(
        "Is Model Collapse Inevitable? Breaking the Curse of Recursion by Accumulating Real and Synthetic Data",
        "2404.01413",
    )
    claim = (
        "When each generation of a generative model trains on the previous generations' samples, replacing the "
        "data makes real-test error grow every generation while accumulating real and synthetic data keeps it "
        "bounded (VAE level; the linear level is checked as the protocol)."
    )
    Settings: TypeAlias = Settings
    modes = {
        "smoke": Settings(seeds=1, generations=2, steps=20, n_train=400, n_test=200, iwae_k=4),
        "quick": Settings(seeds=3, generations=4, steps=600),
        "record": Settings(seeds=5, steps=6000),
    }
    ours = "accumulate"
    min_seeds = 5
    gates = (
        Gate(
            "accumulate degrades < 1/4 as much",
            "weighted_degradation",
            "replace",
            "accumulate",
            effect=0.0,
            headline=True,
            why="replace's Δ_8 minus 4 × accumulate's Δ_8 (accumulate reports 4·Δ): the linear theory "
            "gives a ratio of 0.075; a quarter leaves 3x slack for a nonlinear model",
        ),
        Gate(
            "accumulate is bounded, not linear",
            "bounded_contrast",
            "accumulate",
            0.0,
            effect=0.0,
            why="0.5 × early slope − late slope > 0: the increments shrink (replace gives < 0)",
        ),
    )
    preconditions = (
        Precondition(
            "collapse is present",
            "replace",
            "delta_nll",
            ">=",
            2.0,
            why="replace must degrade by >= 2 nats, else there is nothing to prevent",
        ),
        Precondition(
            "real-only drift is small",
            "real_only",
            "abs_drift",
            "<=",
            0.5,
            why="two refits on real data agree within 0.5 nats: the floor of run-to-run noise",
        ),
        Precondition(
            "generation 1 trained to its plateau (replace)",
            "replace",
            "gen1_converged",
            ">=",
            1.0,
            over="every",
            why="card: generation-1 PLATEAU (per-epoch training loss flat, plateaued())",
        ),
        Precondition(
            "generation 1 trained to its plateau (accumulate)",
            "accumulate",
            "gen1_converged",
            ">=",
            1.0,
            over="every",
            why="card: generation-1 PLATEAU (per-epoch training loss flat, plateaued())",
        ),
        Precondition(
            "generation 1 within 1 nat of a 3x longer run",
            "real_only",
            "gap_to_3x_longer",
            "<=",
            1.0,
            why="card: real-test NLL of the 1,500-step fit minus that of a 4,500-step fit <= 1 nat",
        ),
    )
    changes = (
        "G3 of the card (FD ratio >= 1.5 at generation 8) is not gated: it needs the disjoint-split feature "
        "classifier, not on this branch when the recipe was written; declared before any run.",
        "After the record result (not reproduced, 5 seeds): the card's generation-1 PLATEAU precondition and "
        "its '1 nat of a 3x longer run' check were missing from the declaration; added as preconditions "
        "(gen1_converged for replace and accumulate; real_only gap_to_3x_longer <= 1 nat). The committed "
        "record result predates them and was not rerun (about 58 min wall, over the 10 cpu-min budget of "
        "the session that added them); gates and settings are unchanged.",
        "Session 5: the rerun with those preconditions (5 seeds, 1500 steps a generation) was inconclusive: "
        "generation 1 was 2.14 nats (mean) above a 3x longer run, although its plateau test held on every seed. "
        "Record now trains every generation of every arm 6000 steps (x4; the steps are the same for every "
        "rule). Chosen from a seed-0 probe of real-data generation-1 fits only (test NLL: 1500 steps 33.06, "
        "4500 30.88, 6000 30.49, 13500 29.91, 18000 29.79): 4500 -> 13500 is 0.97 nats, too close to the 1-nat "
        "bound; 6000 -> 18000 is 0.71. Gates and preconditions unchanged; decided before any collapse arm ran "
        "at the new budget.",
    )

    def data(self, s: Settings, seed: int):
        train, test, _ = load(s.n_train, s.n_test)
        return train, test

    def arms(self, s: Settings):
        return {
            "accumulate": _arm("accumulate", ACCUMULATE_WEIGHT),
            "replace": _arm("replace"),
            "accumulate_subsample": _arm("accumulate_subsample"),
            "real_only": real_only,
        }

    def checks(self, s: Settings, cells: Mapping[str, Mapping[int, Measured]]) -> list[Check]:
        d, T = 10, 100
        c = d / (T - d - 1)
        its = 20 if s.generations >= 8 else 8
        reps = 500 if s.seeds >= 5 else 100
        rep = linear_collapse(d, T, 1.0, its, reps, "replace", seed=0)
        acc = linear_collapse(d, T, 1.0, its, reps, "accumulate", seed=0)
        x = np.arange(1, its + 1)
        slope, icpt = np.polyfit(x, rep, 1)
        r2 = 1 - np.sum((rep - (slope * x + icpt)) ** 2) / np.sum((rep - rep.mean()) ** 2)
        ok = r2 >= 0.98 and abs(slope - c) <= 0.1 * c and acc.max() <= 1.645 * c * 1.1
        return [
            Check(
                "linear level matches theory",
                bool(ok),
                f"replace slope {slope:.4f} vs c {c:.4f} (±10 %), R² {r2:.4f} (>= 0.98); accumulate max "
                f"{acc.max():.4f} vs 1.645c {1.645 * c:.4f} (+10 %)",
            )
        ]

    def describe(self, s: Settings) -> dict[str, Any]:
        return {
            "data": load(s.n_train, s.n_test)[2],
            "vae": f"MLP {s.hidden}, latent {s.latent_dim}, Bernoulli",
            "steps_per_generation": s.steps,
            "test_error": f"IWAE NLL, k={s.iwae_k}, nats",
            "deviations": [
                "CelebA -> binarised MNIST 14x14; FD gate (G3) not run (see changes)",
                "steps per generation matched to within one epoch (epochs = round(steps / steps_per_epoch))",
            ],
        }

    def figures(self, s: Settings, cells, out_dir) -> list[str]:
        from isthmus.viz import pyplot, save_figure

        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6, 3.6))
        colors = {"replace": "tab:red", "accumulate": "tab:blue", "accumulate_subsample": "tab:green"}
        for arm, color in colors.items():
            for i, m in enumerate(cells[arm].values()):
                c = m.curves["nll"]
                ax.plot(range(1, len(c) + 1), c, color=color, alpha=0.7, label=arm if i == 0 else None)
        ax.set_xlabel("generation"), ax.set_ylabel("real-test NLL (nats)"), ax.legend(fontsize=7)
        return [save_figure(fig, out_dir / "nll_per_generation.png").name]
