"""Seed 28 — trainable low-rank layers with ordered dropout learn ordered components (PCA) and truncate gracefully.

Horváth, Laskaridis, Rajput & Wang, ICML 2024, arXiv 2308.14929 (Maestro / low-rank ordered
decomposition). Layers: :class:`isthmus.nn.LowRankLinear` (W = U Vᵀ, ordered dropout over the rank,
hierarchical group lasso).

1. **Linear AE → PCA.** Gaussian data, d = 32, covariance spectrum 0.85^i in a random orthonormal
   basis; one LowRankLinear (rank 16, no bias) as a linear autoencoder x ↦ U Vᵀ x, trained until its
   loss curve plateaus. Check, for every prefix b = 1..16: the reconstruction MSE at rank b against
   PCA's (robust to near-tied eigenvalues: swapping two near-equal components costs little error) and
   the principal angles between span(U[:, :b]) and the top-b PCA subspace (reported as the mean over
   prefixes; the worst angle is dominated by the one prefix that splits a near-tie). Baseline: the
   same layer without ordered dropout (a plain linear AE), which is also the positive control (at the
   full rank it must reach PCA's error: the optimiser can get there).
2. **MLP classifier.** MNIST t10k 8000/2000 (digits if absent), 784-256-256-10 with the two hidden
   layers low-rank (the 10-way output layer stays dense in every arm: rank ≤ 10 would cap the classes).
   Test accuracy when every low-rank layer keeps the first ⌈p·r⌉ components, p ∈ {0.02 … 1}.
   Baselines at the same ranks (hence the same parameter counts): post-hoc SVD truncation of a
   dense MLP trained normally, and Maestro's layers trained without ordered dropout (prefix truncation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, TypeAlias

import numpy as np
import torch
from torch import nn

from isthmus.bottlenecks import build_bottleneck
from isthmus.data import load_digit_split
from isthmus.metrics import principal_angles
from isthmus.models import AutoEncoder, Classifier
from isthmus.nn import LowRankLinear, LowRankLinearConfig, set_rank_fraction, svd_truncated_copy
from isthmus.recipes.base import Paper, Recipe, RecipeSettings
from isthmus.recipes.gates import Check, Gate, Measured, Precondition, plateaued
from isthmus.recipes.registry import register_recipe
from isthmus.train import Trainer, TrainerConfig
from isthmus.train.callbacks import Callback
from isthmus.viz import pyplot, save_figure

LINEAR: dict[str, Any] = dict(dim=32, rank=16, decay=0.85, batch_size=128, lr=1e-2)
FRACTIONS = (0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
# group-lasso λ chosen on a validation split of the training data (test untouched; seed 0, 8 epochs) from
# {5e-3, 5e-4, 5e-5, 0} by mean validation accuracy over FRACTIONS (history in Maestro.changes).
MLP: dict[str, Any] = dict(hidden=256, group_lasso=5e-5, batch_size=64, lr=1e-3, optimizer="adam")
MAX_GAP = 0.05  # reconstruction MSE at most 5 % above PCA's at every prefix = "matches PCA"
MEAN_ANGLE_DEG = 10.0  # mean principal angle over prefixes that still counts as "the same subspaces"


@dataclass
class Settings(RecipeSettings):
    lin_n: int = 4000
    lin_epochs: int = 300
    n_train: int = 8000
    n_test: int = 2000
    epochs: int = 20


# ---- part 1: linear autoencoder -------------------------------------------------------------------
def spectrum_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` (n, d) Gaussian with covariance Q diag(decay^i) Qᵀ (random orthonormal Q), centred."""
    d, g = LINEAR["dim"], torch.Generator().manual_seed(1000 + seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
    scale = LINEAR["decay"] ** (torch.arange(d, dtype=torch.float32) / 2)  # std = sqrt(variance)
    x = (torch.randn(n, d, generator=g) * scale) @ q.T
    return x - x.mean(0), q


class _PrefixLoss(Callback):
    """After each epoch, the linear AE's objective without sampling noise: the training MSE (summed over
    dimensions, mean over samples) averaged over every prefix b = 1..r with ordered dropout, at full rank
    without. The logged training loss averages ~32 batches that each draw their own rank, so its
    epoch-to-epoch noise (std ~0.25 on a level of ~2.1) hides whether the objective still moves."""

    def __init__(self, layer: LowRankLinear, x: torch.Tensor, ordered: bool) -> None:
        self.layer, self.x = layer, x
        self.curve: list[float] = []
        self.ranks = range(1, layer.rank + 1) if ordered else (layer.rank,)

    @torch.no_grad()
    def on_epoch_end(self, trainer: Any, logs: dict[str, Any]) -> None:  # explicit ranks: draws no random numbers
        mse = [float((self.x - self.layer(self.x, rank=b)).pow(2).sum(1).mean()) for b in self.ranks]
        self.curve.append(float(np.mean(mse)))


def train_linear_ae(
    x: torch.Tensor, seed: int, epochs: int, ordered: bool
) -> tuple[LowRankLinear, list[float], list[float]]:
    """x ↦ U Vᵀ x (the whole product is the encoder; identity bottleneck and decoder). Returns the layer,
    its per-epoch training loss and its per-epoch noise-free objective (:class:`_PrefixLoss`)."""
    torch.manual_seed(seed)
    d = x.shape[1]
    layer = LowRankLinear(
        LowRankLinearConfig(
            in_dim=d, out_dim=d, rank=LINEAR["rank"], bias=False, ordered_dropout=ordered, group_lasso=0.0
        )
    )
    model = AutoEncoder(layer, build_bottleneck("identity", latent_dim=d), nn.Identity())
    objective = _PrefixLoss(layer, x, ordered)
    res = Trainer(
        model,
        TrainerConfig(epochs=epochs, seed=seed, batch_size=LINEAR["batch_size"], lr=LINEAR["lr"], progress=False),
        callbacks=[objective],
    ).fit(x)
    return layer.eval(), [float(h["train_loss"]) for h in res.history], objective.curve


@torch.no_grad()
def pca_match(layer: LowRankLinear, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Per prefix b = 1..r: worst principal angle (degrees) to the top-b PCA subspace; MSE / PCA's MSE − 1."""
    pcs = torch.linalg.svd(x, full_matrices=False).Vh.T  # (d, d) sample principal directions
    angles, gaps = [], []
    for b in range(1, layer.rank + 1):
        angles.append(math.degrees(principal_angles(layer.U[:, :b].numpy(), pcs[:, :b].numpy()).max()))
        p = pcs[:, :b]
        pca_mse = (x - x @ p @ p.T).pow(2).mean()
        gaps.append(float((x - layer(x, rank=b)).pow(2).mean() / pca_mse - 1.0))
    return {"angles": np.asarray(angles), "gaps": np.asarray(gaps)}


# ---- part 2: MLP classifier -----------------------------------------------------------------------
def mlp_net(in_dim: int, low_rank: bool, ordered: bool = True) -> nn.Sequential:
    h = MLP["hidden"]
    if not low_rank:
        return nn.Sequential(nn.Linear(in_dim, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 10))
    lr = lambda i, o: LowRankLinear(in_dim=i, out_dim=o, ordered_dropout=ordered, group_lasso=MLP["group_lasso"])  # noqa: E731
    return nn.Sequential(lr(in_dim, h), nn.ReLU(), lr(h, h), nn.ReLU(), nn.Linear(h, 10))


def train_mlp(x: torch.Tensor, y: torch.Tensor, seed: int, epochs: int, arm: str) -> tuple[Classifier, list[float]]:
    torch.manual_seed(seed)
    model = Classifier(mlp_net(x.shape[1], low_rank=arm != "dense", ordered=arm == "maestro"))
    cfg = TrainerConfig(
        epochs=epochs, seed=seed, progress=False, batch_size=MLP["batch_size"], lr=MLP["lr"], optimizer=MLP["optimizer"]
    )
    res = Trainer(model, cfg).fit((x, y))
    return model.eval(), [float(h["train_loss"]) for h in res.history]


def accuracy_vs_rank(model: Classifier, arm: str, x: torch.Tensor, y: torch.Tensor) -> dict[float, float]:
    """Test accuracy at each rank fraction: prefix truncation for low-rank arms, truncated SVD for dense."""
    out = {}
    for p in FRACTIONS:
        if arm == "dense":
            m = Classifier(svd_truncated_copy(model.net, p, exclude=("4",))).eval()  # output layer stays dense
        else:
            set_rank_fraction(model, p)
            m = model
        out[p] = float((m.predict(x) == y).float().mean())
    if arm != "dense":
        set_rank_fraction(model, None)
    return out


def params_at(in_dim: int, p: float) -> int:
    """Parameters of the truncated 784-256-256-10 net (factor entries + biases), equal in every arm."""
    h = MLP["hidden"]
    r1, r2 = max(1, math.ceil(p * min(in_dim, h))), max(1, math.ceil(p * h))
    return r1 * (in_dim + h) + h + r2 * (h + h) + h + h * 10 + 10


@lru_cache(maxsize=2)
def _digits(n_train: int, n_test: int):
    d = load_digit_split(n_train, n_test)
    return d, tuple(torch.from_numpy(a) for a in (d.x_train, d.y_train, d.x_test, d.y_test))


def _linear_arm(ordered: bool):
    def arm(s: Settings, seed: int, data) -> Measured:
        x = data["x_lin"]
        layer, train_curve, objective = train_linear_ae(x, seed, s.lin_epochs, ordered)
        res = pca_match(layer, x)
        return Measured(
            metrics={
                "linear_max_gap": float(res["gaps"].max()),
                "linear_mean_gap": float(res["gaps"].mean()),
                "linear_full_rank_gap": float(res["gaps"][-1]),
                "linear_mean_angle_deg": float(res["angles"].mean()),
                "linear_max_angle_deg": float(res["angles"].max()),
                "linear_converged": float(plateaued(objective)),
            },
            curves={
                "linear_objective": objective,
                "linear_loss": train_curve,
                "angles": res["angles"].tolist(),
                "gaps": res["gaps"].tolist(),
            },
        )

    return arm


def _mlp_arm(kind: str, with_linear: bool = False):
    def arm(s: Settings, seed: int, data) -> Measured:
        xtr, ytr, xte, yte = data["digits"]
        model, curve = train_mlp(xtr, ytr, seed, s.epochs, kind)
        acc = accuracy_vs_rank(model, kind, xte, yte)
        m = Measured(
            metrics={
                "mean_trunc_acc": float(np.mean([acc[p] for p in FRACTIONS if p < 1])),
                **{f"acc@{p:g}": acc[p] for p in FRACTIONS},
            },
            curves={"mlp_loss": curve, "acc_vs_fraction": [acc[p] for p in FRACTIONS]},
        )
        if with_linear:  # the ordered-dropout arm is both the linear AE (part 1) and the MLP (part 2)
            lin = _linear_arm(True)(s, seed, data)
            m.metrics.update(lin.metrics)
            m.curves.update(lin.curves)
        return m

    return arm


@register_recipe
class Maestro(Recipe):
    slug = "maestro"
    paper = Paper("Maestro: Uncovering Low-Rank Structures via Trainable Decomposition", "2308.14929")
    claim = (
        "Low-rank layers trained with ordered dropout over the rank recover ordered components - PCA at every "
        "rank for a linear autoencoder - and a network trained once can be truncated to any rank with better "
        "accuracy than post-hoc SVD truncation at the same parameter count."
    )
    Settings: TypeAlias = Settings
    modes = {
        "smoke": Settings(seeds=1, lin_n=500, lin_epochs=2, n_train=512, n_test=256, epochs=1),
        "quick": Settings(seeds=3, lin_n=4000, lin_epochs=100, epochs=8),
        "record": Settings(seeds=5, lin_n=4000, lin_epochs=600, epochs=20),
        "full": Settings(seeds=8, lin_n=20000, lin_epochs=600, epochs=40),
    }
    ours = "maestro"
    gates = (
        Gate(
            "truncation beats post-hoc SVD",
            "mean_trunc_acc",
            "maestro",
            "svd_truncation",
            effect=0.01,
            headline=True,
            why="1 accuracy point averaged over the truncated ranks: below that the choice of method does not matter",
        ),
        Gate(
            "truncation beats no ordered dropout",
            "mean_trunc_acc",
            "maestro",
            "no_ordered_dropout",
            effect=0.01,
            why="the same 1 point: ordered dropout must be what buys the graceful truncation",
        ),
        Gate(
            "linear AE matches PCA at every rank",
            "linear_max_gap",
            "maestro",
            MAX_GAP,
            direction="lower",
            why="reconstruction within 5 % of PCA's at every prefix; robust to near-tied eigenvalues (0.85^i)",
        ),
        Gate(
            "linear AE prefixes align with PCA",
            "linear_mean_angle_deg",
            "maestro",
            MEAN_ANGLE_DEG,
            direction="lower",
            why="mean principal angle over prefixes below 10 degrees: the ordered components are PCA's",
        ),
    )
    preconditions = (
        Precondition(
            "linear AE converged",
            "maestro",
            "linear_converged",
            ">=",
            1.0,
            over="every",
            why="the loss curve must plateau before its prefixes are compared with PCA",
        ),
        Precondition(
            "positive control: plain linear AE reaches PCA at full rank",
            "plain_linear_ae",
            "linear_full_rank_gap",
            "<=",
            MAX_GAP,
            over="every",
            why="if the optimiser cannot reach PCA's error at rank 16, the budget is too short",
        ),
        Precondition(
            "the MLP learns the task",
            "svd_truncation",
            "acc@1",
            ">=",
            0.9,
            over="every",
            why="a dense MLP on MNIST must pass 90 % test accuracy, else truncation is judged on noise",
        ),
        Precondition(
            "Maestro's full-rank MLP learns the task",
            "maestro",
            "acc@1",
            ">=",
            0.9,
            over="every",
            why="truncation robustness of an untrained model means nothing",
        ),
    )
    changes = (
        "group-lasso lambda: chosen on a validation split (seed 0, 8 epochs) from {5e-3, 5e-4, 5e-5, 0} by mean "
        "validation accuracy over the rank fractions: 0.675 / 0.851 / 0.860 / 0.852; the Maestro code's default 5e-3 "
        "shrank every layer to rank ~1 (0.675 at every fraction).",
        "before the frame (quick, 40 linear epochs, 8 MLP epochs, 3 seeds): 'not reproduced'; the worst-angle <= 10 deg "
        "criterion failed at 69 deg. An exploratory cosine LR schedule did not help (75.9 vs 69.0 deg; mean MSE gap "
        "1.1 % vs 1.6 %).",
        "after the audit (issue 20): the audit measured 8.8 deg worst angle at 400 linear epochs vs 69 at 40 (an "
        "undertrained linear AE), and showed the worst angle is dominated by near-tied eigenvalues (0.85^i). The "
        "criterion is now the reconstruction gap <= 5 % at every prefix plus the mean angle <= 10 deg, the linear AE "
        "trains to a plateau (600 epochs in record; exploratory seed 0 before declaring: max gap 17 % at 100 epochs, 5.3 % at 300, worst angle 21 / 13 deg, checked by a convergence precondition) and the MLP trains 20 "
        "epochs in record (8 before: Maestro's full-rank model was itself undertrained, 0.921 vs 0.946 dense).",
        "session 5, after the record result (inconclusive: 'linear AE converged' failed on seed 4 only, "
        "maestro.linear_converged [1 1 1 1 0]): the curve judged was the logged training loss, whose every epoch "
        "averages ~32 batches that each draw their own ordered-dropout rank; on seed 4 its last 60 epochs have a "
        "std of 0.25 around 2.1, and the 60-epoch means moved 0.089 against a tolerance of 0.065 (2 % of the "
        "range 3.23), i.e. rank-sampling noise (seeds 0-3 passed by the same luck). The same run, re-traced with "
        "the noise-free objective (mean training MSE over the 16 prefixes after each epoch, drawing no random "
        "numbers, so training is bit-identical), is flat from about epoch 60 (2.175 -> 2.160; last-window change "
        "0.1 % of the range). So the linear AE was not under-trained and a longer budget was not needed: "
        "linear_converged is now plateaued() of that objective (full-rank MSE for the plain AE); the training "
        "loss is still reported as the curve linear_loss. Declaration, settings and every other metric unchanged "
        "(seed 4 re-run: all metrics identical to the committed cell bar linear_converged); all cells re-run.",
    )

    def data(self, settings: Settings, seed: int) -> dict[str, Any]:
        x, _ = spectrum_data(settings.lin_n, seed)
        return {"x_lin": x, "digits": _digits(settings.n_train, settings.n_test)[1]}

    def arms(self, settings: Settings):
        return {
            "maestro": _mlp_arm("maestro", with_linear=True),
            "svd_truncation": _mlp_arm("dense"),
            "no_ordered_dropout": _mlp_arm("no_od"),
            "plain_linear_ae": _linear_arm(False),
        }

    def describe(self, settings: Settings) -> dict[str, Any]:
        d = _digits(settings.n_train, settings.n_test)[0]
        return {
            "data": d.description,
            "linear_ae": LINEAR,
            "mlp": {**MLP, "arch": f"{d.x_train.shape[1]}-256-256-10, hidden layers low-rank, output dense"},
            "fractions": list(FRACTIONS),
            "params_at_fraction": {f"{p:g}": params_at(d.x_train.shape[1], p) for p in FRACTIONS},
            "deviations": [
                "layer-wise ordered dropout samples an independent prefix per layer per step "
                "(the paper's across_layers sampler); no progressive shrinking",
                "no self-distillation term (errata: the paper's loss adds CE(sub-model, softmax(full)))",
                "Adam lr 1e-3 instead of SGD momentum 0.9 lr 0.1 wd 1e-4",
                "linear check on Gaussian data with a 0.85^i spectrum (the paper's notebook: 3 points "
                "in R^10 with a non-hierarchical group lasso)",
            ],
        }

    def checks(self, settings: Settings, cells: Mapping[str, Mapping[int, Measured]]) -> list[Check]:
        d = _digits(settings.n_train, settings.n_test)[0]
        return [] if d.source == "mnist" else [Check("MNIST present", False, "scikit-learn digits stand in for MNIST")]

    def figures(self, settings: Settings, cells, out_dir: Path) -> list[str]:
        plt = pyplot()
        fig, (ax, ax2, ax3) = plt.subplots(1, 3, figsize=(14, 3.8))
        colors = {"maestro": "tab:red", "svd_truncation": "tab:blue", "no_ordered_dropout": "tab:green"}
        for arm, color in colors.items():
            accs = np.array([m.curves["acc_vs_fraction"] for m in cells[arm].values()])
            ax.errorbar(
                FRACTIONS,
                accs.mean(0),
                yerr=accs.std(0, ddof=1) if len(accs) > 1 else None,
                color=color,
                marker="o",
                capsize=2,
                label=arm,
            )
        (
            ax.set_xscale("log"),
            ax.set_xlabel("rank fraction p kept in every hidden layer"),
            ax.set_ylabel("test accuracy"),
        )
        ax.legend(fontsize=7), ax.set_title("MLP: accuracy vs rank", fontsize=9)
        for arm, color, label in (("maestro", "tab:red", "ordered dropout"), ("plain_linear_ae", "gray", "plain")):
            gaps = np.array([m.curves["gaps"] for m in cells[arm].values()])
            ang = np.array([m.curves["angles"] for m in cells[arm].values()])
            b = np.arange(1, gaps.shape[1] + 1)
            for i in range(len(gaps)):
                ax2.plot(b, 100 * gaps[i], color=color, alpha=0.7, label=label if i == 0 else None)
                ax3.plot(b, ang[i], color=color, alpha=0.7, label=label if i == 0 else None)
        ax2.axhline(100 * MAX_GAP, color="k", lw=0.5), ax2.set_yscale("symlog", linthresh=1)
        ax2.set_xlabel("prefix b"), ax2.set_ylabel("MSE above PCA's at rank b (%)"), ax2.legend(fontsize=7)
        ax2.set_title("linear AE: reconstruction gap (one line per seed)", fontsize=9)
        ax3.set_xlabel("prefix b"), ax3.set_ylabel("worst principal angle to top-b PCA (deg)"), ax3.legend(fontsize=7)
        ax3.set_title("linear AE: subspace angle", fontsize=9)
        return [save_figure(fig, out_dir / "maestro.png", dpi=90).name]
