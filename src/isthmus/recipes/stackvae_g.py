"""Seed 13 — StackVAE-G: a shared per-channel VAE with a learned sparse channel graph detects
multivariate time-series anomalies as well as heavier models, with far fewer parameters, and its
graph shows which channels belong together.

Li et al., AI Open 3 (2022), arXiv 2105.08397. Model: :class:`isthmus.models.stackvae.StackVAEG`
through :class:`isthmus.tasks.stackvae.StackVAEGDetector`, with the authors' graph formula
``W = ReLU(α·tanh(M Mᵀ))`` (:mod:`isthmus.nn.graph`), graph mixing on the latent-size projection,
a sample of the output Gaussian in the training loss and ``StepLR(10, 0.8)`` (the notes' errata).
Data: the planted-group series of :mod:`isthmus.data.channel_groups` (per seed) and SMD machines 1-2 and 2-1 (:mod:`isthmus.data.smd`,
the same data for every seed; record mode uses the first steps of each, stated in the result).

Every method scores test step t from the window ending at t, in the same standardised units
(training mean/std per channel). The neural arms and PCA score the squared error of the window's
LAST step (summed over channels; per channel for the interpretation hit rate); IsolationForest has
no per-step error and scores the whole window. Baselines, same windows and seeds: the same model
with λ = 0 (no graph, no consistency term), a dense VAE over the flattened (w·C) window, PCA (90 %
variance) and IsolationForest on flattened windows; ``corr_graph`` (|correlation| of training
channels, top-k per row) is a reference for graph recovery only. Point-adjusted numbers lift every
labelled segment to its maximum score (OPTIMISTIC; reported, not judged).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np

from isthmus.recipes.base import Paper, Recipe, RecipeSettings
from isthmus.recipes.gates import Check, Gate, Measured, Precondition, converged_on_every_seed, plateaued
from isthmus.recipes.registry import register_recipe
from isthmus.viz import pyplot, save_figure

MACHINES = {"smd12": "machine-1-2", "smd21": "machine-2-1"}
GRAPH_WEIGHT, ALPHA = 0.5, 3.0


@dataclass
class Settings(RecipeSettings):
    n_channels: int = 24
    n_groups: int = 4
    n_train: int = 2000
    n_test: int = 2400
    n_anomalies: int = 10
    window: int = 20
    stride: int = 5
    hidden: int = 48
    latent_dim: int = 4
    k: int = 5
    embed_dim: int = 16
    max_steps: int = 1000
    dense_hidden: int = 128
    smd: bool = True
    smd_train: int = 8000  # first steps of each machine (0 = all)
    smd_test: int = 12000


def _per_step(values: np.ndarray, window: int) -> np.ndarray:
    return np.concatenate([np.repeat(values[:1], window - 1, axis=0), values])


def _scale(train: np.ndarray, x: np.ndarray) -> np.ndarray:
    return ((x - train.mean(0)) / np.maximum(train.std(0), 1e-3)).astype(np.float32)


def _lift(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Point-adjust for threshold-free metrics: each labelled segment takes its maximum score."""
    out = s.copy()
    edges = np.diff(np.r_[0, y, 0])
    for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
        out[a:b] = s[a:b].max()
    return out


def detection_metrics(y: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    from isthmus.metrics.anomaly import auprc, auroc, best_f1, point_adjusted_f1

    return {
        "auroc": auroc(y, scores),
        "auprc": auprc(y, scores),
        "best_f1": best_f1(y, scores).f1,
        "pa_auroc_optimistic": auroc(y, _lift(y, scores)),
        "pa_best_f1_optimistic": point_adjusted_f1(y, scores),
    }


def adjacency_recovery(weights: np.ndarray, adjacency: np.ndarray, same_group: np.ndarray) -> dict[str, float]:
    """Edge AUROC of dense weights vs planted same-group pairs; precision of the kept top-k edges."""
    from sklearn.metrics import roc_auc_score

    off = ~np.eye(len(same_group), dtype=bool)
    kept = (adjacency > 0) & off
    return {
        "edge_auroc": float(roc_auc_score(same_group[off], weights[off])),
        "topk_precision": float(same_group[kept].mean()) if kept.any() else 0.0,
    }


def _topk_graph(w: np.ndarray, k: int) -> np.ndarray:
    w = w * (1 - np.eye(len(w)))
    keep = np.zeros_like(w)
    np.put_along_axis(keep, np.argsort(-w, axis=1)[:, :k], 1.0, axis=1)
    return keep


def last_step_errors(model, wins: np.ndarray, w: int, c: int) -> np.ndarray:
    """Per-channel squared error of the last step of each flattened window ``(N, w·c)`` → ``(N, c)``."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(wins, dtype=np.float32))
    with torch.no_grad():
        rec = torch.cat([model.reconstruct(b) for b in x.split(1024)]).numpy()
    return ((rec.reshape(-1, w, c)[:, -1] - wins.reshape(-1, w, c)[:, -1]) ** 2).astype(np.float64)


def _dense_vae(s: Settings, tr: np.ndarray, te: np.ndarray, seed: int):
    import torch

    from isthmus.data.windows import sliding_windows
    from isthmus.models import AutoEncoder
    from isthmus.train import Trainer, TrainerConfig
    from isthmus.train.callbacks import StepLR

    w, c = s.window, tr.shape[1]
    xtr = torch.from_numpy(sliding_windows(tr, w, s.stride).reshape(-1, w * c))
    torch.manual_seed(seed)
    model = AutoEncoder.mlp(
        w * c, latent_dim=2 * s.latent_dim, hidden=(s.dense_hidden,), bottleneck="gaussian", activation="relu"
    )
    epochs = max(1, round(s.max_steps / -(-len(xtr) // 64)))
    hist = (
        Trainer(
            model,
            TrainerConfig(
                epochs=epochs, lr=1e-3, weight_decay=1e-3, grad_clip=12.0, seed=seed, progress=False, device="cpu"
            ),
            callbacks=[StepLR(10, 0.8)],  # the same optimiser schedule as StackVAE-G (the authors' StepLR)
        )
        .fit(xtr)
        .history
    )
    model.eval()
    err = last_step_errors(model, sliding_windows(te, w).reshape(-1, w * c), w, c)
    return _per_step(err, w), sum(p.numel() for p in model.parameters()), [h["train_loss"] for h in hist]


def _classic(name: str, s: Settings, tr: np.ndarray, te: np.ndarray, seed: int):
    """PCA / IsolationForest of :mod:`isthmus.tasks.anomaly_classic` on flattened windows (already standardised
    per channel, so no second scaler)."""
    from isthmus.data.windows import sliding_windows
    from isthmus.tasks.anomaly_classic import IsolationForestDetector, PCADetector

    w, c = s.window, tr.shape[1]
    wtr = sliding_windows(tr, w, s.stride).reshape(-1, w * c)
    wte = sliding_windows(te, w).reshape(-1, w * c)
    if name == "iforest":  # no per-step error: the whole window's isolation depth
        return _per_step(IsolationForestDetector(random_state=seed).fit(wtr).score_samples(wte), w), None
    resid = PCADetector(variance=0.9, scaler="none").fit(wtr).feature_contributions(wte, normalize=False)
    last = _per_step(resid.reshape(-1, w, c)[:, -1], w)  # the same last-step error as the neural arms
    return last.sum(1), last


def run_method(method: str, s: Settings, d: dict, seed: int) -> tuple[dict[str, float], dict[str, Any]]:
    """One method on one dataset → (metrics, artefacts: per-channel contributions, loss curve, graph)."""
    from isthmus.metrics.anomaly import interpretation_hit_rate

    tr, te = _scale(d["train"], d["train"]), _scale(d["train"], d["test"])
    art: dict[str, Any] = {}
    out: dict[str, float] = {}
    if method == "corr_graph":
        corr = np.abs(np.corrcoef(tr.T))
        return adjacency_recovery(corr, _topk_graph(corr, s.k), d["same_group"]), art
    if method in ("stackvae_g", "no_graph"):
        from isthmus.tasks.stackvae import StackVAEGDetector

        lam = GRAPH_WEIGHT if method == "stackvae_g" else 0.0
        det = StackVAEGDetector(
            window=s.window,
            stride=s.stride,
            hidden=(s.hidden, s.hidden),
            latent_dim=s.latent_dim,
            k=s.k,
            embed_dim=s.embed_dim,
            graph_weight=lam,
            alpha=ALPHA,
            max_steps=s.max_steps,
            random_state=seed,
        ).fit(d["train"])
        contrib, n_params = det.channel_contributions(d["test"]), det.n_params_
        art["loss"] = [h["train_loss"] for h in det.history_]
        if lam > 0:
            art["adjacency"], art["weights"] = det.adjacency(), det.model_.edge_weights().numpy()
    elif method == "dense_vae":
        contrib, n_params, art["loss"] = _dense_vae(s, tr, te, seed)
    else:
        score, contrib = _classic(method, s, tr, te, seed)
        n_params = None
    score = contrib.sum(1) if contrib is not None and method != "iforest" else score
    out.update(detection_metrics(d["y"], score))
    if d["events"] and contrib is not None:
        per_event = np.array([contrib[a:b].mean(0) for a, b, _ in d["events"]])
        out["hit_rate150"] = interpretation_hit_rate(per_event, [ch for _, _, ch in d["events"]])
    if n_params is not None:
        out["n_params"] = float(n_params)
    if "weights" in art and d.get("same_group") is not None:
        out.update(adjacency_recovery(art["weights"], art["adjacency"], d["same_group"]))
    art["score"] = score
    return out, art


@lru_cache(maxsize=1)
def _smd(n_train: int, n_test: int) -> dict | None:
    from isthmus.data import DataNotFoundError
    from isthmus.data.smd import load_smd

    try:
        ms = load_smd(list(MACHINES.values()), n_train=n_train or None, n_test=n_test or None)
    except DataNotFoundError:
        return None
    return {k: {"train": m.train, "test": m.test, "y": m.labels, "events": m.events} for k, m in zip(MACHINES, ms)}


def _arm(method: str):
    def arm(s: Settings, seed: int, data: dict) -> Measured:
        metrics, curves, info, conv = {}, {}, {}, []
        for ds, d in data.items():
            if method == "corr_graph" and ds != "synth":
                continue
            m, art = run_method(method, s, d, seed)
            metrics.update({f"{ds}_{k}": v for k, v in m.items()})
            if "loss" in art:
                curves[f"{ds}_loss"] = art["loss"]
                conv.append(plateaued(art["loss"]))
            if ds == "synth" and "weights" in art:
                info = {"weights": art["weights"].tolist(), "adjacency": art["adjacency"].tolist()}
            if ds == "synth" and method == "stackvae_g":
                curves["synth_score"] = art["score"].tolist()
        if conv:
            metrics["converged"] = float(all(conv))
        return Measured(metrics=metrics, curves=curves, info=info)

    return arm


def _gates() -> tuple[Gate, ...]:
    g = [
        Gate(
            f"{ds}: detection not below the dense VAE",
            f"{ds}_auroc",
            "stackvae_g",
            "dense_vae",
            kind="non_inferiority",
            effect=0.02,
            headline=True,
            why="'as well as heavier models': within 2 AUROC points of a dense VAE over the whole window",
        )
        for ds in MACHINES
    ]
    for ds in ("synth", *MACHINES):
        for b in ("pca", "iforest"):
            g.append(
                Gate(
                    f"{ds}: detection not below {b}",
                    f"{ds}_auroc",
                    "stackvae_g",
                    b,
                    kind="non_inferiority",
                    effect=0.02,
                    why="the same 2-point margin against classical detectors",
                )
            )
    g.append(
        Gate(
            "synth: detection not below the dense VAE",
            "synth_auroc",
            "stackvae_g",
            "dense_vae",
            kind="non_inferiority",
            effect=0.02,
            why="as on SMD; the planted groups need cross-channel information",
        )
    )
    g.append(
        Gate(
            "graph recovers the planted groups",
            "synth_edge_auroc",
            "stackvae_g",
            0.5,
            effect=0.3,
            why="edge AUROC above 0.8 (0.5 = chance): the old recipe's threshold, kept",
        )
    )
    g.append(
        Gate(
            "the graph helps detection (synth)",
            "synth_auroc",
            "stackvae_g",
            "no_graph",
            effect=0.0,
            why="the paper's ablation: λ = 0.5 beats λ = 0 on data whose anomalies break channel groups",
        )
    )
    return tuple(g)


@register_recipe
class StackVAEGRecipe(Recipe):
    slug = "stackvae-g"
    paper = Paper("StackVAE-G: An efficient and interpretable model for time series anomaly detection", "2105.08397")
    claim = (
        "A VAE whose weights are shared across channels, with latents mixed along a learned sparse channel graph, "
        "detects multivariate time-series anomalies as well as heavier models with far fewer parameters, and its "
        "learned graph captures which channels are related."
    )
    Settings: TypeAlias = Settings
    modes = {
        "smoke": Settings(
            seeds=1,
            n_channels=12,
            n_groups=3,
            n_train=400,
            n_test=500,
            n_anomalies=6,
            window=12,
            stride=4,
            hidden=16,
            latent_dim=3,
            k=3,
            embed_dim=8,
            max_steps=20,
            dense_hidden=32,
            smd_train=800,
            smd_test=7000,
        ),
        "quick": Settings(seeds=3, max_steps=400, smd_train=5000, smd_test=10000),
        # 2000 steps (default 1000) for every neural arm: StackVAE-G had not plateaued at 1000 (see ``changes``)
        # 8 seeds (was 3): the 3-seed record left the headline unresolved (see ``changes``)
        "record": Settings(seeds=8, smd_train=5000, smd_test=10000, max_steps=2000),
        "full": Settings(
            seeds=5,
            n_train=4000,
            n_test=4000,
            n_anomalies=16,
            window=100,
            hidden=200,
            latent_dim=20,
            k=10,
            embed_dim=30,
            max_steps=3000,
            dense_hidden=512,
            smd_train=0,
            smd_test=0,
        ),
    }
    ours = "stackvae_g"
    gates = _gates()
    preconditions = (
        converged_on_every_seed(
            "stackvae_g",
            name="StackVAE-G training converged",
            why="every dataset's loss curve has plateaued; an unconverged model is not a test of the paper",
        ),
        converged_on_every_seed(
            "dense_vae", name="dense VAE training converged", why="the heavier baseline gets the same chance"
        ),
        Precondition(
            "positive control: PCA finds the planted anomalies",
            "pca",
            "synth_auroc",
            ">=",
            0.7,
            why="a linear detector must see them, else the synthetic data are broken",
        ),
    )

    def data(self, s: Settings, seed: int) -> dict:
        from isthmus.data.channel_groups import make_channel_groups

        short: dict[str, Any] = {"anomaly_length": (15, 40)} if s.n_test < 1000 else {}
        d = make_channel_groups(
            n_channels=s.n_channels,
            n_groups=s.n_groups,
            n_train=s.n_train,
            n_test=s.n_test,
            n_anomalies=s.n_anomalies,
            seed=seed,
            **short,
        )
        out = {
            "synth": {
                "train": d.train,
                "test": d.test,
                "y": d.test_labels,
                "groups": d.groups,
                "events": [(a, b, ch) for a, b, ch, _ in d.events],
                "same_group": d.same_group(),
            }
        }
        if s.smd:
            smd = _smd(s.smd_train, s.smd_test)
            if smd is None:
                raise FileNotFoundError("SMD not found (find_data('smd')); run with smd=false to judge synthetic only")
            out.update(smd)
        return out

    def arms(self, s: Settings):
        return {m: _arm(m) for m in ("stackvae_g", "no_graph", "dense_vae", "pca", "iforest", "corr_graph")}

    def checks(self, s: Settings, cells) -> list[Check]:
        ratio = [
            cells["dense_vae"][k].metrics["synth_n_params"] / cells["stackvae_g"][k].metrics["synth_n_params"]
            for k in cells["stackvae_g"]
        ]
        return [
            Check(
                "SMD judged",
                s.smd,
                "SMD machines 1-2 and 2-1 are part of the claim" if s.smd else "smd=false: the headline gates need SMD",
            )
        ] + [
            Check(
                "StackVAE-G is the lighter model",
                min(ratio) > 1.0,
                f"dense VAE / StackVAE-G parameters {min(ratio):.1f}x (structural, reported; not a gate)",
            )
        ]

    def describe(self, s: Settings) -> dict[str, Any]:
        return {
            "model": {
                "graph_weight": GRAPH_WEIGHT,
                "alpha": ALPHA,
                "graph": "ReLU(α·tanh(M Mᵀ)), top-k, + I, row-normalised (authors' code)",
                "consistency_weight": 1.0,
                "beta": 1.0,
                "lr": 1e-3,
                "lr_schedule": "StepLR(10 epochs, 0.8), also for the dense VAE",
                "training reconstruction": "a sample of the output Gaussian (authors' code); scoring uses its mean",
                "weight_decay": 1e-3,
                "grad_clip": 12.0,
                "batch_size": 64,
            },
            "smd": {
                "machines": list(MACHINES.values()),
                "train_steps": s.smd_train or "all",
                "test_steps": s.smd_test or "all",
                "same data for every seed": True,
            }
            if s.smd
            else "not used",
            "scoring": "neural arms and PCA: squared error of the window's last step; IsolationForest: window",
            "deviations": [
                "the diagonal is masked before top-k; scoring decodes the posterior mean instead of averaging "
                "200 latent samples",
                f"window {s.window}, hidden {s.hidden}, latent {s.latent_dim}, {s.max_steps} steps "
                "(paper: 100, 200-200, 20, 256 epochs) to fit the CPU budget",
                "SMD scaled by training mean/std (the authors min-max scale train and test separately)",
            ],
        }

    def figures(self, s: Settings, cells, out_dir: Path) -> list[str]:
        plt = pyplot()
        seed = min(cells["stackvae_g"])
        m = cells["stackvae_g"][seed]
        d = self.data(s.with_overrides({"smd": False}), seed)["synth"]
        order = np.argsort(d["groups"], kind="stable")
        fig, ax = plt.subplots(1, 3, figsize=(12, 4))
        for a, (mat, title) in zip(
            ax,
            [
                (np.asarray(m.info["weights"]), "edge weights ReLU(α·tanh(MMᵀ))"),
                (np.asarray(m.info["adjacency"]), "adjacency A (top-k + I)"),
                (d["same_group"].astype(float), "planted groups"),
            ],
        ):
            a.imshow(mat[np.ix_(order, order)], cmap="viridis")
            a.set_title(f"{title}, seed {seed}", fontsize=9)
            a.set_xlabel("channel (sorted by planted group)")
        save_figure(fig, out_dir / "adjacency.png", dpi=90)
        fig, a = plt.subplots(figsize=(12, 2.8))
        sc = np.asarray(m.curves["synth_score"])
        a.plot(sc, lw=0.6, color="k")
        a.fill_between(
            np.arange(len(sc)),
            0,
            1,
            where=d["y"] > 0,
            color="r",
            alpha=0.25,
            transform=a.get_xaxis_transform(),
            label="labelled anomaly",
        )
        a.set_yscale("log")
        a.set_title(f"synthetic: StackVAE-G score per test step (seed {seed})", fontsize=9)
        a.legend(loc="upper right", fontsize=8)
        save_figure(fig, out_dir / "score_over_time.png", dpi=90)
        return ["adjacency.png", "score_over_time.png"]

    changes = (
        "Before the frame (quick, 2 seeds, 250 steps): 'not reproduced' — synthetic AUROC 0.63 vs PCA 0.91, edge "
        "AUROC 0.525 < 0.8. The audit found (1) the graph formula had α inside the tanh (copied from the paper "
        "notes), saturating it (edge AUROC 0.525 → 0.645 at 250 steps and 0.734 at 1000 with the authors' "
        "ReLU(α·tanh(MMᵀ))); (2) PCA scored the whole window while the neural arms scored the last step (PCA on "
        "machine-2-1: 0.805 window vs 0.646 last step); (3) the parameter-ratio gate could not fail. Now: the "
        "authors' formula in nn/graph.py, last-step scoring for PCA, ≥ 1000 steps, the ratio is a check.",
        "The small-init variant (stackvae_g_init0.1) existed only to work around the saturated formula and is dropped.",
        "SMD is judged (headline: non-inferior to the dense VAE on both machines) instead of only the synthetic set; "
        "record mode uses the first 5,000 train / 10,000 test steps of each machine for CPU time (full: all).",
        "Session 5: the record result (3 seeds, 1000 steps) was inconclusive only because 'StackVAE-G training "
        "converged' failed on seeds 0 and 2 (stackvae_g.converged per seed [0 1 0]; the dense VAE converged on all). "
        "Cause, from seed 0's curves at the record settings (nothing else looked at): the loss was still falling on "
        "SMD (machine-1-2: 813 → 790 over the last 12 of 62 epochs; plateaued()'s change/tolerance ratio 1.83, "
        "machine-2-1 1.06), and on the synthetic set it jumped in steps when the top-k graph choice switched "
        "(ratio 1.04) — a constant learning rate, where the authors' code decays it. Applied the errata "
        "(errata-seeds-01-22.md, seed 13; authors' GraphVAEv4.py), each a code-vs-notes error: (1) StepLR(10 "
        "epochs, γ 0.8) — train.callbacks.StepLR, given to the dense VAE too so both neural baselines share the "
        "optimiser; (2) the training reconstruction term is the squared error of a sample μ_x + σ_x·ε of a learned "
        "output Gaussian (decoder predicts μ_x and log σ_x²; scoring still uses μ_x); (3) graph mixing acts on a "
        "linear latent-size projection of the encoder features (h_z_net), then linear μ / log σ² heads. Checked and "
        "already as in the code: KL summed over latent dims and channels, batch mean; recon and graph terms summed "
        "over (w, C), batch mean; graph term on the raw input. Kept as stated deviations: diagonal masked before "
        "top-k, train-statistics scaling instead of the authors' separate train/test min-max. With (1)-(3) at 1000 "
        "steps seed 0 plateaued (ratios 0.19 / 0.18 / 0.48, machine-2-1 still drifting); at 2000 steps seed 2 "
        "(the other failing seed) gave 0.01 / 0.15 / 0.02. Record now trains every neural arm (stackvae_g, "
        "no_graph, dense_vae) 2000 steps instead of 1000 (equal effort); gates, effects, metrics and arms unchanged.",
        "Session 5, after seeing the 3-seed record result of the fix above (commit 856137f; every precondition "
        "held): the headline 'smd12: detection not below the dense VAE' was unresolved, −0.031 [−0.048, −0.013] "
        "against the −0.02 margin, an interval too wide to fall on either side (smallest detectable 0.022). Record "
        "seeds 3 → 8 for power only (seeds 0-2 reused from the cache; nothing else changed). This is a decision "
        "made after seeing an interval: the 3-seed result is kept in git history for comparison.",
    )
