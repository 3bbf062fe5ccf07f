"""Seed 7 — the ARD prior finds how many latent dimensions the data need, whatever the latent size.

Saha, Joshi & Whitaker 2025, arXiv 2501.10901. Model: MLP VAE (256-256-2L, decoder mirrored, sigmoid
pixels, summed squared error + β·KL with β = 0.5 as in the paper's MNIST setting) whose prior is
N(0, diag τ²), τ² re-estimated once per epoch from a freshly drawn subset of held-out images, as the
authors' code does (:class:`isthmus.bottlenecks.ard.ARDBottleneck` + :class:`isthmus.train.callbacks.ARDUpdate`);
relevant axes by the paper's 99 % rule on τ_l² · ‖E|∂decoder/∂μ_l|‖².

Data: :func:`isthmus.data.make_shapes`, 16x16 anti-aliased images with K varying factors taken in
the order x, y, scale, rotation, shape (the rest fixed). The fixed shape is the ellipse and rotation
spans [0, π/2), a quarter of the ellipse's period, so rotation is a segment, not a circle (a circle
would need two latent axes). ``shape`` (3 categories) is counted as one factor, as in dSprites.

Baselines on the same data, seeds and epochs: a plain VAE (N(0, I) prior, same β and architecture)
— its active units by KL > 0.01 nats (``vae_kl_au``) and by Var_x E[z|x] > 0.01 (``vae_cov_au``) —
and PCA's component count at 99 % explained variance of the pixels (``pca_99``, context only: it
counts pixels' dimensions, 56-110 here, and cannot compete).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, TypeAlias, cast

import numpy as np
import torch

from isthmus.bottlenecks import ARDBottleneck, GaussianBottleneck
from isthmus.data import make_shapes
from isthmus.metrics import active_units, kl_active_units, pca_dims_for_variance
from isthmus.models import AutoEncoder
from isthmus.recipes.base import Paper, Recipe, RecipeSettings
from isthmus.recipes.gates import Gate, Measured, Precondition
from isthmus.recipes.registry import register_recipe
from isthmus.train import Trainer, TrainerConfig
from isthmus.train.callbacks import ARDUpdate, EpochTrace
from isthmus.viz import pyplot, save_figure

FACTOR_ORDER = ("x", "y", "scale", "rotation", "shape")
DATA: dict[str, Any] = dict(
    image_size=16, shapes=("ellipse", "square", "heart"), rotation_range=(0.0, math.pi / 2), antialias=True
)
MODEL: dict[str, Any] = dict(hidden=[256], beta=0.5, out_activation="sigmoid")
TRAIN: dict[str, Any] = dict(batch_size=100, lr=1e-3, optimizer="adam")
THRESHOLD = 0.01  # active-unit threshold (nats for the KL rule, variance for the covariance rule)
RELEVANCE = 0.99  # the paper's cumulative-relevance share
N_JACOBIAN = 200  # inputs whose posterior means average the decoder Jacobian
TAU_WINDOW = 5  # epochs over which τ² must be stable
TAU_DRIFT = 0.05  # the largest allowed change of one axis's share of Σ τ² over TAU_WINDOW epochs


@dataclass
class Settings(RecipeSettings):
    Ks: tuple[int, ...] = (2, 4)
    Ls: tuple[int, ...] = (8, 16)
    n_train: int = 3000
    n_heldout: int = 1000
    n_test: int = 500
    epochs: int = 50
    tau_subset: float = 0.5  # share of the held-out pool drawn afresh for τ² every epoch


def tau_share_drift(trace: list[list[float]], window: int = TAU_WINDOW) -> float:
    """Largest change, over the last ``window`` epochs, of any axis's share of Σ τ² (0 = settled; 1, the
    largest possible, when the run is too short to tell)."""
    if len(trace) <= window:
        return 1.0
    t = np.asarray(trace, dtype=float)
    share = t / t.sum(1, keepdims=True)
    return float(np.abs(share[-1] - share[-1 - window]).max())


def shapes_data(K: int, seed: int, n: int) -> torch.Tensor:
    """``n`` flattened shape images with the first K factors of :data:`FACTOR_ORDER` varying, ``(n, 256)``."""
    table = make_shapes(n, seed=seed, vary=list(FACTOR_ORDER[:K]), **DATA)
    return torch.from_numpy(table.X.reshape(n, -1))


def train_vae(
    x: torch.Tensor, held_out: torch.Tensor, L: int, seed: int, epochs: int, ard: bool, tau_subset: float = 0.5
) -> tuple[AutoEncoder, list[list[float]]]:
    """One VAE; for ARD, τ² is re-estimated once per epoch from a fresh ``tau_subset`` share of ``held_out``.
    Returns the model and the per-epoch τ² trace (empty for the plain VAE)."""
    torch.manual_seed(seed)
    model = AutoEncoder.mlp(
        x.shape[1],
        latent_dim=L,
        hidden=tuple(MODEL["hidden"]),
        bottleneck="ard" if ard else "gaussian",
        beta=MODEL["beta"],
        out_activation=MODEL["out_activation"],
    )
    # τ² after each epoch's update (ARD only)
    trace = EpochTrace(lambda m: cast(ARDBottleneck, m.bottleneck).prior_var.detach().tolist())
    callbacks = (
        [ARDUpdate(held_out, subset_size=max(1, int(tau_subset * len(held_out))), seed=seed), trace] if ard else []
    )
    Trainer(model, TrainerConfig(epochs=epochs, seed=seed, progress=False, **TRAIN), callbacks=callbacks).fit(x)
    return model.eval(), trace.values


@torch.no_grad()
def count_dims(model: AutoEncoder, x_test: torch.Tensor) -> dict[str, Any]:
    """Estimated dimension counts of one trained VAE on test data (ARD rule, KL and covariance AU)."""
    bn = cast(GaussianBottleneck, model.bottleneck)  # "gaussian" or "ard" (train_vae)
    mu, logvar = bn.posterior(model.encoder(x_test))
    out: dict[str, Any] = {
        "vae_active_units": kl_active_units(bn.kl_per_dim(mu, logvar), THRESHOLD),
        "vae_active_units_cov": active_units(mu, THRESHOLD),
        "recon_fvu": float((model.reconstruct(x_test) - x_test).pow(2).sum() / (x_test - x_test.mean(0)).pow(2).sum()),
    }
    if isinstance(bn, ARDBottleneck):
        out["ard"] = len(bn.relevant_dims(RELEVANCE, decoder=model.decoder, mu=mu[:N_JACOBIAN]))
        out["relevance"] = bn.relevance(model.decoder, mu[:N_JACOBIAN]).numpy()
    return out


def _cell(K: int, L: int) -> str:
    return f"dims/K{K}_L{L}"


def _arm_metrics(counts: dict[tuple[int, int], float], Ks, Ls) -> dict[str, float]:
    """One seed's summary of one arm: mean |est − K|, share exact, spread over L, and every cell."""
    err = [abs(counts[(K, L)] - K) for K in Ks for L in Ls]
    spread = max(max(counts[(K, L)] for L in Ls) - min(counts[(K, L)] for L in Ls) for K in Ks)
    return {
        "dim_abs_error": float(np.mean(err)),
        "exact_rate": float(np.mean([e == 0 for e in err])),
        "latent_size_spread": float(spread),
        **{_cell(K, L): float(counts[(K, L)]) for K in Ks for L in Ls},
    }


def _ard_arm(s: Settings, seed: int, data: dict) -> Measured:
    counts, drift, fvu, curves = {}, [], [], {}
    for K in s.Ks:
        xtr, xho, xte = data[K]["train"], data[K]["heldout"], data[K]["test"]
        for L in s.Ls:
            model, trace = train_vae(xtr, xho, L, seed, s.epochs, ard=True, tau_subset=s.tau_subset)
            res = count_dims(model, xte)
            counts[(K, L)] = res["ard"]
            drift.append(tau_share_drift(trace))
            fvu.append(res["recon_fvu"])
            curves[f"tau2/K{K}_L{L}"] = [float(v) for v in np.asarray(trace).ravel()]  # epochs x L, flattened
            curves[f"relevance/K{K}_L{L}"] = res["relevance"].tolist()
    return Measured(
        metrics={
            **_arm_metrics(counts, s.Ks, s.Ls),
            "tau_share_drift": float(max(drift)),
            "recon_fvu": float(np.mean(fvu)),
        },
        curves=curves,
    )


def _plain_vae(s: Settings, seed: int, data: dict) -> dict[tuple[int, int], dict[str, float]]:
    """Train the plain VAE once per seed and (K, L); both active-unit arms read the same runs."""
    if "plain" not in data:
        data["plain"] = {
            (K, L): count_dims(
                train_vae(data[K]["train"], data[K]["heldout"], L, seed, s.epochs, ard=False)[0], data[K]["test"]
            )
            for K in s.Ks
            for L in s.Ls
        }
    return data["plain"]


def _vae_arm(rule: str):
    def arm(s: Settings, seed: int, data: dict) -> Measured:
        runs = _plain_vae(s, seed, data)
        counts = {kl: r[rule] for kl, r in runs.items()}
        return Measured(
            metrics={
                **_arm_metrics(counts, s.Ks, s.Ls),
                "recon_fvu": float(np.mean([r["recon_fvu"] for r in runs.values()])),
            }
        )

    return arm


def _pca_arm(s: Settings, seed: int, data: dict) -> Measured:
    return Measured(metrics=_arm_metrics({(K, L): data[K]["pca"] for K in s.Ks for L in s.Ls}, s.Ks, s.Ls))


@register_recipe
class ARDVAE(Recipe):
    slug = "ard-vae"
    paper = Paper(
        "ARD-VAE: A Statistical Formulation to Find the Relevant Latent Dimensions of Variational Autoencoders",
        "2501.10901",
    )
    claim = (
        "A VAE with a hierarchical ARD prior, whose per-axis variances are re-estimated from held-out data, "
        "identifies the number of relevant latent dimensions (the data's K known factors) regardless of the "
        "initial latent size."
    )
    Settings: TypeAlias = Settings
    modes = {
        "smoke": Settings(seeds=1, Ks=(2,), Ls=(8,), n_train=300, n_heldout=100, n_test=100, epochs=2),
        "quick": Settings(seeds=3, n_train=2000, n_heldout=500, n_test=500, epochs=20),
        "record": Settings(seeds=3, n_train=3000, n_heldout=1000, n_test=500, epochs=50),
        "full": Settings(
            seeds=5, Ks=(2, 3, 4, 5), Ls=(8, 16, 32), n_train=8000, n_heldout=2000, n_test=1000, epochs=100
        ),
    }
    ours = "ard"
    gates = (
        Gate(
            "ARD counts the factors",
            "dim_abs_error",
            "ard",
            0.5,
            direction="lower",
            headline=True,
            why="mean |estimated - K| below half a dimension: the count is right in most cells",
        ),
        Gate(
            "the count does not depend on the latent size",
            "latent_size_spread",
            "ard",
            1.5,
            direction="lower",
            why="the spread over L is an integer: below 1.5 means at most one dimension apart",
        ),
        Gate(
            "ARD counts better than the plain VAE's active units",
            "dim_abs_error",
            "ard",
            "vae_kl_au",
            direction="lower",
            effect=0.5,
            why="half a dimension of mean error: the paper's comparison with the active-unit heuristic",
        ),
    )
    preconditions = (
        Precondition(
            "tau^2 settled",
            "ard",
            "tau_share_drift",
            "<=",
            TAU_DRIFT,
            over="every",
            why=f"no axis's share of sum tau^2 moved by more than {TAU_DRIFT:g} over the last {TAU_WINDOW} "
            "epochs, in every cell: else the count is a snapshot of a moving prior",
        ),
        Precondition(
            "ARD reconstructs the images",
            "ard",
            "recon_fvu",
            "<=",
            0.5,
            over="every",
            why="a VAE that explains less than half the pixel variance has not learned what to keep",
        ),
        Precondition(
            "the plain VAE reconstructs the images",
            "vae_kl_au",
            "recon_fvu",
            "<=",
            0.5,
            over="every",
            why="the active-unit baseline must be trained as far as ARD",
        ),
    )
    changes = (
        "exploratory, before the first recipe run (seed 0, 3000 train, 30 epochs): ARD counted 3 / 3 (K=2, L=8/16) "
        "and 3 / 5 (K=4, L=8/16); the plain VAE's KL active units 5 / 11 and 8 / 16.",
        "before the frame (quick, 2 seeds, 20 epochs on 2000 images): 'partial', reached only through (c) 'ARD's "
        "error is below the plain VAE's and PCA-99's' — both of the paper's claims failed ((a) 3.0, (b) 4.5).",
        "after the audit (issue 20): (c) can no longer give 'partial' (the headline is the count itself); the "
        "comparison with PCA-99 (56-110 dimensions of pixels, a strawman) is no longer a gate; tau^2 is re-estimated "
        "once per epoch on a freshly drawn half of the held-out pool (the errata: the authors redraw the subset "
        "each epoch); a stability precondition on tau^2 was added; record trains 50 epochs (the paper's MNIST "
        "count) on 3000 images.",
    )

    def data(self, settings: Settings, seed: int) -> dict:
        n_all = settings.n_train + settings.n_heldout + settings.n_test
        a, b = settings.n_train, settings.n_train + settings.n_heldout
        out: dict = {}
        for K in settings.Ks:
            x = shapes_data(K, seed, n_all)
            out[K] = {
                "train": x[:a],
                "heldout": x[a:b],
                "test": x[b:],
                "pca": pca_dims_for_variance(x[:a].numpy(), RELEVANCE),
            }
        return out

    def arms(self, settings: Settings):
        return {
            "ard": _ard_arm,
            "vae_kl_au": _vae_arm("vae_active_units"),
            "vae_cov_au": _vae_arm("vae_active_units_cov"),
            "pca_99": _pca_arm,
        }

    def describe(self, settings: Settings) -> dict[str, Any]:
        return {
            "factor_order": list(FACTOR_ORDER),
            "data": {**DATA, "rotation_range": list(DATA["rotation_range"]), "data_seed": "= training seed"},
            "model": MODEL,
            "train": TRAIN,
            "relevance_share": RELEVANCE,
            "active_unit_threshold": THRESHOLD,
            "jacobian_inputs": N_JACOBIAN,
            "deviations": [
                "MLP VAE instead of the paper's conv VAE",
                "tau^2 subset drawn from a held-out pool, not re-split from the training set each epoch "
                "(the SGD set stays fixed)",
                "Adam lr 1e-3 with no plateau schedule",
            ],
        }

    def figures(self, settings: Settings, cells: Mapping[str, Mapping[int, Measured]], out_dir: Path) -> list[str]:
        plt = pyplot()
        Ks, Ls = list(settings.Ks), list(settings.Ls)
        fig, (ax, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 3.8))
        styles = {
            "ard": ("tab:red", "o"),
            "vae_kl_au": ("tab:blue", "s"),
            "vae_cov_au": ("tab:cyan", "^"),
            "pca_99": ("gray", "x"),
        }
        for arm, (color, marker) in styles.items():
            for i, L in enumerate(Ls):
                ys = [np.mean([m.metrics[_cell(K, L)] for m in cells[arm].values()]) for K in Ks]
                ax.plot(Ks, ys, color=color, marker=marker, ls=["-", "--", ":"][i % 3], alpha=0.8, label=f"{arm} L={L}")
        ax.plot(Ks, Ks, color="k", lw=0.8, label="truth (K)")
        ax.set_yscale("log", base=2), ax.set_xticks(Ks), ax.legend(fontsize=6, ncol=2)
        ax.set_xlabel("K (known varying factors)"), ax.set_ylabel("estimated dimensions (mean over seeds)")
        first = cells["ard"][min(cells["ard"])]
        K, L = Ks[-1], Ls[-1]
        rel = np.sort(np.asarray(first.curves[f"relevance/K{K}_L{L}"]))[::-1]
        ax2.bar(range(1, len(rel) + 1), rel, color="tab:red")
        ax2.set_title(f"ARD relevance, K={K}, L={L}, first seed", fontsize=9)
        ax2.set_xlabel("axis (sorted)"), ax2.set_ylabel("share of relevance")
        tau = np.asarray(first.curves[f"tau2/K{K}_L{L}"]).reshape(-1, L)
        ax3.semilogy(range(1, len(tau) + 1), tau, lw=1)
        (
            ax3.set_xlabel("epoch"),
            ax3.set_ylabel("tau^2 per axis"),
            ax3.set_title("prior variances, same run", fontsize=9),
        )
        return [save_figure(fig, out_dir / "dims_vs_k.png", dpi=90).name]
