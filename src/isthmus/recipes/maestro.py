"""Seed 28 — trainable low-rank layers with ordered dropout learn ordered components (PCA) and truncate gracefully.

Horváth, Laskaridis, Rajput & Wang, ICML 2024, arXiv 2308.14929 (Maestro / low-rank ordered
decomposition). Layers: :class:`isthmus.nn.LowRankLinear` (W = U Vᵀ, ordered dropout over the rank,
hierarchical group lasso).

1. **Linear AE → PCA.** Gaussian data, d = 32, covariance spectrum 0.85^i in a random orthonormal
   basis; one LowRankLinear (rank 16, no bias) as a linear autoencoder x ↦ U Vᵀ x. Check: for every
   prefix b = 1..16, the principal angles between span(U[:, :b]) and the top-b PCA subspace of the
   training data, and the reconstruction MSE at rank b against PCA's. Baseline: the same layer
   without ordered dropout (a plain linear AE), whose prefixes need not be ordered.
2. **MLP classifier.** MNIST t10k 8000/2000 (digits if absent), 784-256-256-10 with the two hidden
   layers low-rank (the 10-way output layer stays dense in every arm: rank ≤ 10 would cap the classes).
   Test accuracy when every low-rank layer keeps the first ⌈p·r⌉ components, p ∈ {0.02 … 1}.
   Baselines at the same ranks (hence the same parameter counts): post-hoc SVD truncation of a
   dense MLP trained normally, and Maestro's layers trained without ordered dropout (prefix truncation).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from isthmus.bottlenecks import build_bottleneck
from isthmus.data import load_digit_split
from isthmus.metrics import principal_angles
from isthmus.models import AutoEncoder, Classifier
from isthmus.nn import LowRankLinear, LowRankLinearConfig, set_rank_fraction, svd_truncated_copy
from isthmus.recipes.base import Paper, Recipe, Result, summarize
from isthmus.recipes.registry import register_recipe
from isthmus.train import Trainer, TrainerConfig
from isthmus.viz import pyplot

# Fixed per mode before any run.
MODE_SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": dict(lin_n=500, lin_epochs=2, n_train=512, n_test=256, epochs=1),
    "quick": dict(lin_n=4000, lin_epochs=40, n_train=8000, n_test=2000, epochs=8),
    "full": dict(lin_n=20000, lin_epochs=60, n_train=8000, n_test=2000, epochs=40),
}
LINEAR = dict(dim=32, rank=16, decay=0.85, batch_size=128, lr=1e-2)
FRACTIONS = (0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
# group-lasso λ chosen on a validation split of the training data (test untouched; seed 0, 8 epochs) from
# {5e-3, 5e-4, 5e-5, 0} by mean validation accuracy over FRACTIONS: 0.675 / 0.851 / 0.860 / 0.852.
# The Maestro code's default 5e-3 shrank every layer to rank ~1 (0.675 at every fraction).
MLP = dict(hidden=256, group_lasso=5e-5, batch_size=64, lr=1e-3, optimizer="adam")
MAX_ANGLE_DEG = 10.0  # "matches PCA" threshold on the worst principal angle over all prefixes


# ---- part 1: linear autoencoder -------------------------------------------------------------------
def spectrum_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` (n, d) Gaussian with covariance Q diag(decay^i) Qᵀ (random orthonormal Q), centred."""
    d, g = LINEAR["dim"], torch.Generator().manual_seed(1000 + seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
    scale = LINEAR["decay"] ** (torch.arange(d, dtype=torch.float32) / 2)  # std = sqrt(variance)
    x = (torch.randn(n, d, generator=g) * scale) @ q.T
    return x - x.mean(0), q


def train_linear_ae(x: torch.Tensor, seed: int, epochs: int, ordered: bool) -> LowRankLinear:
    """x ↦ U Vᵀ x: the whole product is the encoder, the identity bottleneck and decoder pass it on."""
    torch.manual_seed(seed)
    d = x.shape[1]
    layer = LowRankLinear(LowRankLinearConfig(in_dim=d, out_dim=d, rank=LINEAR["rank"], bias=False,
                                              ordered_dropout=ordered, group_lasso=0.0))
    model = AutoEncoder(layer, build_bottleneck("identity", latent_dim=d), nn.Identity())
    Trainer(model, TrainerConfig(epochs=epochs, seed=seed, batch_size=LINEAR["batch_size"], lr=LINEAR["lr"],
                                 progress=False)).fit(x)
    return layer.eval()


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


def train_mlp(x: torch.Tensor, y: torch.Tensor, seed: int, epochs: int, arm: str) -> Classifier:
    torch.manual_seed(seed)
    net = mlp_net(x.shape[1], low_rank=arm != "dense", ordered=arm == "maestro")
    model = Classifier(net)
    cfg = TrainerConfig(epochs=epochs, seed=seed, progress=False, batch_size=MLP["batch_size"], lr=MLP["lr"],
                        optimizer=MLP["optimizer"])
    Trainer(model, cfg).fit((x, y))
    return model.eval()


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


def _se(a: Sequence[float], b: Sequence[float]) -> float:
    return float(np.sqrt(np.var(a) / len(a) + np.var(b) / len(b)))


@register_recipe
class Maestro(Recipe):
    slug = "maestro"
    paper = Paper("Maestro: Uncovering Low-Rank Structures via Trainable Decomposition", "2308.14929")
    claim = ("Low-rank layers trained with ordered dropout over the rank recover ordered components - PCA at every "
             "rank for a linear autoencoder - and a network trained once can be truncated to any rank with better "
             "accuracy than post-hoc SVD truncation at the same parameter count.")
    verdict_rule = (
        f"(a) PCA: the worst principal angle between span(U[:, :b]) and the top-b PCA subspace over all b = 1..r, "
        f"averaged over seeds, is <= {MAX_ANGLE_DEG:g} degrees for the ordered-dropout linear AE. (b) truncation: "
        "the MLP's mean test accuracy over the truncated rank fractions (p < 1) beats both post-hoc SVD truncation of "
        "a dense MLP and the low-rank MLP trained without ordered dropout by more than max(0.01, 2*se) each "
        "(se = sqrt(var_a/n + var_b/n) over seeds). reproduced = (a) and (b); partial = exactly one; "
        "not reproduced = neither."
    )

    def run(self, mode: str, seeds: Sequence[int], out_dir: Path) -> Result:
        cfg = MODE_SETTINGS[mode]
        data = load_digit_split(cfg["n_train"], cfg["n_test"])
        xtr, ytr = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
        xte, yte = torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)
        arms = {"maestro": {}, "svd_truncation": {}, "no_ordered_dropout": {}, "plain_linear_ae": {}}
        curves: dict[str, list] = {k: [] for k in arms}
        for seed in seeds:
            x, _ = spectrum_data(cfg["lin_n"], seed)
            for arm, ordered in (("maestro", True), ("plain_linear_ae", False)):
                res = pca_match(train_linear_ae(x, seed, cfg["lin_epochs"], ordered), x)
                _add(arms[arm], {"linear_max_angle_deg": float(res["angles"].max()),
                                 "linear_mean_angle_deg": float(res["angles"].mean()),
                                 "linear_mse_gap": float(res["gaps"].mean())})
                curves[arm].append(res["angles"])
            for arm, kind in (("maestro", "maestro"), ("svd_truncation", "dense"), ("no_ordered_dropout", "no_od")):
                acc = accuracy_vs_rank(train_mlp(xtr, ytr, seed, cfg["epochs"], kind), kind, xte, yte)
                _add(arms[arm], {"mean_trunc_acc": float(np.mean([acc[p] for p in FRACTIONS if p < 1])),
                                 **{f"acc@{p:g}": acc[p] for p in FRACTIONS}})
                curves[arm].append(acc)
        verdict, reason = self._verdict(arms)
        figure = self._plot(curves, out_dir)
        order = ["mean_trunc_acc", *[f"acc@{p:g}" for p in FRACTIONS], "linear_max_angle_deg",
                 "linear_mean_angle_deg", "linear_mse_gap"]
        metrics = {k: summarize(arms["maestro"][k]) for k in order}
        baselines = {a: {k: summarize(v) for k, v in arms[a].items()} for a in arms if a != "maestro"}
        config = {"mode": mode, "data": data.description, "linear_ae": {**LINEAR, "n": cfg["lin_n"],
                  "epochs": cfg["lin_epochs"]}, "mlp": {**MLP, "epochs": cfg["epochs"],
                  "arch": f"{xtr.shape[1]}-256-256-10, hidden layers low-rank, output dense"},
                  "fractions": list(FRACTIONS),
                  "params_at_fraction": {f"{p:g}": params_at(xtr.shape[1], p) for p in FRACTIONS},
                  "max_angle_deg": MAX_ANGLE_DEG}
        notes = [f"per-seed values are in each metric's `values` (seeds {list(seeds)})",
                 "group-lasso lambda 5e-5 chosen on a validation split (see MLP in the module); the paper code's "
                 "5e-3 collapsed the layers to rank ~1 here",
                 "layer-wise ordered dropout samples an independent prefix per layer per step; no progressive pruning"]
        if mode == "quick":
            notes.append("exploratory, after the first quick run, not part of this verdict (seed 0): a cosine LR "
                         "schedule instead of a constant one did not bring the linear AE's prefixes closer to PCA "
                         "(worst angle 75.9 vs 69.0 deg; mean MSE gap 1.1 % vs 1.6 %): neighbouring eigenvalues "
                         "differ by 15 %, so swapping them costs little reconstruction error")
        if data.source != "mnist":
            notes.append("MNIST was not found; scikit-learn digits were used instead")
        return Result(recipe=self.slug, paper=self.paper, claim=self.claim, mode=mode, seeds=list(seeds),
                      metrics=metrics, baselines=baselines, verdict=verdict, verdict_reason=reason,
                      config=config, figures=[figure], notes=notes)

    @staticmethod
    def _verdict(arms: dict[str, dict[str, list[float]]]) -> tuple[str, str]:
        m = lambda arm, k: float(np.mean(arms[arm][k]))  # noqa: E731
        angle = m("maestro", "linear_max_angle_deg")
        a = angle <= MAX_ANGLE_DEG
        ours, checks = arms["maestro"]["mean_trunc_acc"], []
        for base in ("svd_truncation", "no_ordered_dropout"):
            margin = max(0.01, 2 * _se(ours, arms[base]["mean_trunc_acc"]))
            checks.append((base, m(base, "mean_trunc_acc"), margin,
                           float(np.mean(ours)) - m(base, "mean_trunc_acc") > margin))
        b = all(c[3] for c in checks)
        verdict = "reproduced" if a and b else "partial" if a or b else "not reproduced"
        reason = (f"(a) worst principal angle {angle:.2f} deg (plain linear AE {m('plain_linear_ae', 'linear_max_angle_deg'):.1f}"
                  f"), <= {MAX_ANGLE_DEG:g}: {'passed' if a else 'failed'}; (b) mean truncated accuracy "
                  f"{float(np.mean(ours)):.4f} vs " + ", ".join(
                      f"{n} {v:.4f} (margin {mg:.4f}: {'passed' if ok else 'failed'})" for n, v, mg, ok in checks))
        return verdict, reason

    @staticmethod
    def _plot(curves: dict[str, list], out_dir: Path) -> str:
        plt = pyplot()

        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
        colors = {"maestro": "tab:red", "svd_truncation": "tab:blue", "no_ordered_dropout": "tab:green"}
        for arm, color in colors.items():
            accs = np.array([[c[p] for p in FRACTIONS] for c in curves[arm] if isinstance(c, dict)])
            ax.errorbar(FRACTIONS, accs.mean(0), yerr=accs.std(0), color=color, marker="o", capsize=2, label=arm)
        ax.set_xscale("log"), ax.set_xlabel("rank fraction p kept in every hidden layer"), ax.set_ylabel("test accuracy")
        ax.legend(fontsize=7), ax.set_title("MLP: accuracy vs rank", fontsize=9)
        for arm, color in (("maestro", "tab:red"), ("plain_linear_ae", "gray")):
            ang = np.array([c for c in curves[arm] if isinstance(c, np.ndarray)])
            b = np.arange(1, ang.shape[1] + 1)
            ax2.errorbar(b, ang.mean(0), yerr=ang.std(0), color=color, marker=".", capsize=2,
                         label="ordered dropout" if arm == "maestro" else "plain linear AE")
        ax2.axhline(MAX_ANGLE_DEG, color="k", lw=0.5)
        ax2.set_xlabel("prefix b"), ax2.set_ylabel("worst principal angle to top-b PCA (deg)")
        ax2.legend(fontsize=7), ax2.set_title("linear AE vs PCA", fontsize=9)
        fig.tight_layout()
        name = "maestro.png"
        fig.savefig(out_dir / name, dpi=90)
        plt.close(fig)
        return name


def _add(store: dict[str, list[float]], row: dict[str, float]) -> None:
    for k, v in row.items():
        store.setdefault(k, []).append(v)
