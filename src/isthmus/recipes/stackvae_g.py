"""Seed 13 — StackVAE-G: a shared per-channel VAE with a learned sparse channel graph detects
multivariate time-series anomalies as well as heavier models, with far fewer parameters, and its
graph shows which channels belong together.

Li et al., AI Open 3 (2022), arXiv 2105.08397. Model: :class:`isthmus.models.stackvae.StackVAEG`
through :class:`isthmus.tasks.stackvae.StackVAEGDetector`. Data: the planted-group series of
:mod:`isthmus.data.channel_groups` (always) and SMD machines 1-2 and 2-1 (when
``find_data("smd")`` finds them; quick mode uses a subsample, stated in the result's notes).

Every method scores test step t from the window ending at t, in the same standardised units
(training mean/std per channel). Baselines, same windows and seeds: the same model with λ = 0 (no
graph, no consistency term), a dense VAE over the flattened (w·C) window, PCA (90 % variance) and
IsolationForest on flattened windows. Neural methods and PCA score the last step's squared error
(summed over channels; per channel for the interpretation hit rate); IsolationForest scores the
window. Point-adjusted numbers lift every labelled segment to its maximum score (OPTIMISTIC).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from isthmus.recipes.base import Paper, Recipe, Result, summarize
from isthmus.recipes.registry import register_recipe
from isthmus.viz import pyplot, save_figure

MODE_SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": dict(synth=dict(n_channels=12, n_groups=3, n_train=400, n_test=500, n_anomalies=6, anomaly_length=(15, 40)),
                  model=dict(window=12, stride=4, hidden=(16, 16), latent_dim=3, k=3, embed_dim=8, max_steps=20),
                  dense_hidden=(32,), smd=False, smd_train=None, smd_test=None),
    "quick": dict(synth=dict(n_channels=24, n_groups=4, n_train=2000, n_test=2400, n_anomalies=10),
                  model=dict(window=20, stride=5, hidden=(48, 48), latent_dim=4, k=5, embed_dim=16, max_steps=250),
                  dense_hidden=(128,), smd=True, smd_train=5000, smd_test=10000),
    "full": dict(synth=dict(n_channels=24, n_groups=4, n_train=4000, n_test=4000, n_anomalies=16),
                 model=dict(window=100, stride=5, hidden=(200, 200), latent_dim=20, k=10, embed_dim=30, max_steps=3000),
                 dense_hidden=(512, 256), smd=True, smd_train=None, smd_test=None),
}
# name → (λ, std of the initial graph embeddings); the first is the paper's model (N(0, 1) init), the second our
# variant with a small init (the paper's saturates tanh(α·), see the notes), the third the λ = 0 ablation.
VARIANTS = {"stackvae_g": (0.5, 1.0), "stackvae_g_init0.1": (0.5, 0.1), "no_graph": (0.0, 1.0)}
NEURAL = ("stackvae_g", "no_graph", "dense_vae")
BASELINES = ("no_graph", "dense_vae", "pca", "iforest")
DETECT_KEYS = ("auroc", "auprc", "best_f1", "pa_auroc (optimistic)", "pa_best_f1 (optimistic)")
AUROC_MARGIN, RECOVERY_MIN, PARAM_RATIO = 0.02, 0.8, 5.0


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

    return {"auroc": auroc(y, scores), "auprc": auprc(y, scores), "best_f1": best_f1(y, scores).f1,
            "pa_auroc (optimistic)": auroc(y, _lift(y, scores)),
            "pa_best_f1 (optimistic)": point_adjusted_f1(y, scores)}


def adjacency_recovery(weights: np.ndarray, adjacency: np.ndarray, same_group: np.ndarray) -> dict[str, float]:
    """Edge AUROC of dense weights vs planted same-group pairs; precision of the kept top-k edges."""
    from sklearn.metrics import roc_auc_score

    off = ~np.eye(len(same_group), dtype=bool)
    kept = (adjacency > 0) & off
    return {"edge_auroc": float(roc_auc_score(same_group[off], weights[off])),
            "topk_precision": float(same_group[kept].mean()) if kept.any() else float("nan")}


def _fit_dense_vae(tr: np.ndarray, te: np.ndarray, cfg: dict, hidden: Sequence[int], seed: int):
    """Dense VAE on flattened windows of the scaled series → (per-step channel errors, n_params)."""
    import torch

    from isthmus.data.windows import sliding_windows
    from isthmus.models import AutoEncoder
    from isthmus.train import Trainer, TrainerConfig

    w, c = cfg["window"], tr.shape[1]
    xtr = torch.from_numpy(sliding_windows(tr, w, cfg["stride"]).reshape(-1, w * c))
    torch.manual_seed(seed)
    model = AutoEncoder.mlp(w * c, latent_dim=2 * cfg["latent_dim"], hidden=hidden, bottleneck="gaussian",
                            activation="relu")
    epochs = max(1, round(cfg["max_steps"] / -(-len(xtr) // 64)))
    Trainer(model, TrainerConfig(epochs=epochs, lr=1e-3, weight_decay=1e-3, grad_clip=12.0, seed=seed,
                                 progress=False, device="cpu")).fit(xtr)
    xte = torch.from_numpy(sliding_windows(te, w).reshape(-1, w * c))
    rec = torch.cat([model.reconstruct(b) for b in xte.split(1024)]).numpy()
    err = (rec.reshape(-1, w, c)[:, -1] - xte.numpy().reshape(-1, w, c)[:, -1]) ** 2
    return _per_step(err.astype(np.float64), w), sum(p.numel() for p in model.parameters())


def _classic(name: str, tr: np.ndarray, te: np.ndarray, cfg: dict, seed: int):
    from sklearn.decomposition import PCA
    from sklearn.ensemble import IsolationForest

    from isthmus.data.windows import sliding_windows

    w, c = cfg["window"], tr.shape[1]
    wtr = sliding_windows(tr, w, cfg["stride"]).reshape(-1, w * c)
    wte = sliding_windows(te, w).reshape(-1, w * c)
    if name == "iforest":
        return _per_step(-IsolationForest(random_state=seed).fit(wtr).score_samples(wte), w), None
    pca = PCA(n_components=0.9, svd_solver="full", random_state=seed).fit(wtr)
    resid = (wte - pca.inverse_transform(pca.transform(wte))) ** 2
    return _per_step(resid.sum(1), w), _per_step(resid.reshape(-1, w, c)[:, -1], w)


def evaluate(data: dict, cfg: dict, dense_hidden: Sequence[int], seed: int) -> dict[str, dict[str, float]]:
    """All methods on one dataset and seed → {method: metrics}; also keeps seed-0 artefacts for plots."""
    from isthmus.metrics.anomaly import interpretation_hit_rate
    from isthmus.tasks.stackvae import StackVAEGDetector

    tr, te = _scale(data["train"], data["train"]), _scale(data["train"], data["test"])
    contrib, out, extra, params = {}, {}, {}, {}
    for name, (lam, init) in VARIANTS.items():
        det = StackVAEGDetector(graph_weight=lam, graph_init_scale=init, random_state=seed, **cfg).fit(data["train"])
        contrib[name] = det.channel_contributions(data["test"])
        params[name] = float(det.n_params_)
        if lam > 0:
            extra[name] = {"adjacency": det.adjacency(), "weights": det.model_.edge_weights().numpy()}
    contrib["dense_vae"], params["dense_vae"] = _fit_dense_vae(tr, te, cfg, dense_hidden, seed)
    scores = {k: v.sum(1) for k, v in contrib.items()}
    scores["pca"], contrib["pca"] = _classic("pca", tr, te, cfg, seed)
    scores["iforest"], _ = _classic("iforest", tr, te, cfg, seed)
    for name, s in scores.items():
        out.setdefault(name, {}).update(detection_metrics(data["y"], s))
        if data["events"] and name in contrib:
            per_event = np.array([contrib[name][a:b].mean(0) for a, b, _ in data["events"]])
            out[name]["hit_rate@150%"] = interpretation_hit_rate(per_event, [ch for _, _, ch in data["events"]])
    for name, n in params.items():  # after the detection metrics: the first metric is the table's key metric
        out[name]["n_params"] = float(n)
    if data.get("same_group") is not None:
        for name, art in extra.items():
            out[name].update(adjacency_recovery(art["weights"], art["adjacency"], data["same_group"]))
        corr = np.abs(np.corrcoef(tr.T))
        out["corr_graph"] = adjacency_recovery(corr, _topk_graph(corr, cfg["k"]), data["same_group"])
    out["_artefacts"] = {**extra["stackvae_g"], "init0.1": extra["stackvae_g_init0.1"],  # type: ignore[assignment]
                         "score": scores["stackvae_g"]}
    return out


def _topk_graph(w: np.ndarray, k: int) -> np.ndarray:
    w = w * (1 - np.eye(len(w)))
    keep = np.zeros_like(w)
    np.put_along_axis(keep, np.argsort(-w, axis=1)[:, :k], 1.0, axis=1)
    return keep


def synthetic_data(cfg: dict, seed: int) -> dict:
    from isthmus.data.channel_groups import make_channel_groups

    d = make_channel_groups(seed=seed, **cfg)
    return {"train": d.train, "test": d.test, "y": d.test_labels, "events": [(a, b, ch) for a, b, ch, _ in d.events],
            "same_group": d.same_group(), "groups": d.groups}


def smd_data(n_train: int | None, n_test: int | None) -> dict[str, dict] | None:
    """SMD machines (first ``n_train`` train and ``n_test`` test steps); None when absent."""
    from isthmus.data import DataNotFoundError, find_data

    try:
        root = find_data("smd")
    except DataNotFoundError:
        return None
    out = {}
    for name in ("machine-1-2", "machine-2-1"):
        path = root / f"{name}.npz"
        if not path.is_file():
            continue
        d = np.load(path, allow_pickle=False)
        test = d["test"][:n_test].astype(np.float32)
        events = []
        interp = root / f"{name}_interpretation_label.txt"
        for line in interp.read_text().split() if interp.is_file() else []:
            span, dims = line.split(":")
            a, b = (int(v) for v in span.split("-"))
            if b < len(test):  # inclusive end, 1-based channels
                events.append((a, b + 1, [int(v) - 1 for v in dims.split(",")]))
        out[name] = {"train": d["train"][:n_train].astype(np.float32), "test": test,
                     "y": d["test_label"][:len(test)].astype(np.int64), "events": events}
    return out or None


@register_recipe
class StackVAEGRecipe(Recipe):
    slug = "stackvae-g"
    paper = Paper("StackVAE-G: An efficient and interpretable model for time series anomaly detection", "2105.08397")
    claim = ("A VAE whose weights are shared across channels, with latents mixed along a learned sparse channel graph, "
             "detects multivariate time-series anomalies as well as heavier models with far fewer parameters, and its "
             "learned graph captures which channels are related.")
    verdict_rule = (
        f"(a) detection: on every dataset run (synthetic; SMD machines when present), StackVAE-G's mean unadjusted AUROC "
        f">= the best baseline's (no-graph λ=0, dense VAE, PCA, IsolationForest) minus {AUROC_MARGIN}; (b) efficiency: "
        f"dense VAE parameters >= {PARAM_RATIO:g}x StackVAE-G's; (c) graph: mean edge AUROC of the learned weights "
        f"against the planted groups >= {RECOVERY_MIN}. reproduced = a and b and c; not reproduced = neither a nor c; "
        "otherwise partial. Point-adjusted numbers, hit rates and the graph-vs-no-graph gap are reported, not judged."
    )
    default_seeds = {"smoke": 1, "quick": 2, "full": 5}

    def run(self, mode: str, seeds: Sequence[int], out_dir: Path) -> Result:
        cfg = MODE_SETTINGS[mode]
        datasets = {"synth": [synthetic_data(cfg["synth"], s) for s in seeds]}
        smd = smd_data(cfg["smd_train"], cfg["smd_test"]) if cfg["smd"] else None
        for name, d in (smd or {}).items():
            datasets[name] = [d] * len(seeds)
        runs = {ds: [evaluate(d, cfg["model"], cfg["dense_hidden"], s) for d, s in zip(ds_list, seeds)]
                for ds, ds_list in datasets.items()}
        metrics = self._collect(runs, "stackvae_g")
        baselines = {b: self._collect(runs, b) for b in (*BASELINES, "stackvae_g_init0.1", "corr_graph")}
        verdict, why = self._verdict(metrics, baselines, list(datasets))
        figures = self._plot(datasets, runs, out_dir)
        return Result(recipe=self.slug, paper=self.paper, claim=self.claim, mode=mode, seeds=list(seeds),
                      metrics=metrics, baselines=baselines, verdict=verdict, verdict_reason=why,
                      config=self._config(mode, cfg, smd), figures=figures, notes=self._notes(mode, cfg, smd))

    @staticmethod
    def _collect(runs: dict[str, list[dict]], method: str) -> dict:
        out = {}
        for ds, rs in runs.items():
            if method in rs[0]:
                out.update({f"{ds}_{k}": summarize([r[method][k] for r in rs]) for k in rs[0][method]})
        return out

    @staticmethod
    def _verdict(metrics: dict, baselines: dict, datasets: list[str]) -> tuple[str, str]:
        parts, a = [], True
        for ds in datasets:
            ours = metrics[f"{ds}_auroc"].mean
            best_name = max(BASELINES, key=lambda b: baselines[b][f"{ds}_auroc"].mean)
            best = baselines[best_name][f"{ds}_auroc"].mean
            a &= ours >= best - AUROC_MARGIN
            parts.append(f"{ds} AUROC {ours:.3f} vs best baseline {best_name} {best:.3f}")
        ref = "machine-1-2" if "machine-1-2" in datasets else "synth"
        ratio = baselines["dense_vae"][f"{ref}_n_params"].mean / metrics[f"{ref}_n_params"].mean
        b = ratio >= PARAM_RATIO
        rec = metrics["synth_edge_auroc"].mean
        c = rec >= RECOVERY_MIN
        verdict = "reproduced" if a and b and c else "not reproduced" if not (a or c) else "partial"
        why = ("; ".join(parts) + f" ({'a passed' if a else 'a failed'}); dense/StackVAE-G params on {ref} "
               f"{ratio:.1f}x ({'b passed' if b else 'b failed'}); synthetic edge AUROC {rec:.3f} "
               f"({'c passed' if c else 'c failed'}; |corr| graph {baselines['corr_graph']['synth_edge_auroc'].mean:.3f})")
        return verdict, why

    @staticmethod
    def _config(mode: str, cfg: dict, smd: dict | None) -> dict:
        return {"mode": mode, "synthetic": cfg["synth"], "model": {**cfg["model"], "graph_weight": 0.5, "alpha": 3.0,
                "consistency_weight": 1.0, "beta": 1.0, "variants (λ, init std)": VARIANTS, "lr": 1e-3,
                "weight_decay": 1e-3, "grad_clip": 12.0, "batch_size": 64},
                "dense_vae_hidden": list(cfg["dense_hidden"]), "smd": sorted(smd) if smd else [],
                "smd_train_steps": cfg["smd_train"], "smd_test_steps": cfg["smd_test"]}

    @staticmethod
    def _notes(mode: str, cfg: dict, smd: dict | None) -> list[str]:
        notes = [
            "point-adjusted numbers (pa_*) are OPTIMISTIC: a whole labelled segment counts once any step in it scores high",
            "stackvae_g uses the paper's N(0, 1) graph-embedding init; with α = 3 it saturates tanh, so the edge "
            "weights get almost no gradient and stay near their random start. stackvae_g_init0.1 (reported, not "
            "judged) starts at N(0, 0.1²): its weights do move (the consistency term ranks same-group edges higher) "
            "but shrink towards 0, so A ≈ I and the mixing nearly vanishes. Development runs (synthetic seed 0, "
            "window 32): edge AUROC 0.50 (init 1), 0.53 (0.3), 0.74 (0.1)",
            "the top-k choice excludes the diagonal (the identity is added after), decoder is unit-variance Gaussian "
            "(the paper also predicts a variance), and scoring decodes the posterior mean instead of 200 samples",
            "corr_graph is a reference for adjacency recovery only: |correlation| of training channels, top-k per row",
        ]
        if cfg["smd"] and smd is None:
            notes.append("SMD not found (find_data('smd') / ../shared/data/smd): synthetic set only")
        if smd and cfg["smd_train"]:
            notes.append(f"SMD subsampled for time: first {cfg['smd_train']} train steps and first {cfg['smd_test']} "
                         "test steps of each machine (interpretation events inside that slice only); SMD data is the "
                         "same for every seed, seeds vary the models only")
        if cfg["model"]["window"] != 100:
            notes.append(f"window {cfg['model']['window']} and hidden {cfg['model']['hidden']} (paper: 100 and 200-200) "
                         f"with {cfg['model']['max_steps']} optimiser steps (paper: 256 epochs) to fit the CPU budget")
        return notes

    @staticmethod
    def _plot(datasets: dict, runs: dict, out_dir: Path) -> list[str]:
        plt = pyplot()

        d, art = datasets["synth"][0], runs["synth"][0]["_artefacts"]
        order = np.argsort(d["groups"], kind="stable")
        fig, ax = plt.subplots(1, 4, figsize=(16, 4))
        for a, (m, title) in zip(ax, [(art["weights"], "edge weights, paper init N(0,1)"),
                                      (art["adjacency"], "adjacency A (top-k + I), paper init"),
                                      (art["init0.1"]["weights"], "edge weights, init N(0,0.1²)"),
                                      (d["same_group"].astype(float), "planted groups")]):
            a.imshow(m[np.ix_(order, order)], cmap="viridis")
            a.set_title(title, fontsize=9)
            a.set_xlabel("channel (sorted by planted group)")
        save_figure(fig, out_dir / "adjacency.png", dpi=90)
        panels = [(k, datasets[k][0], runs[k][0]["_artefacts"]["score"]) for k in datasets]
        fig, ax = plt.subplots(len(panels), 1, figsize=(12, 2.6 * len(panels)), squeeze=False)
        for a, (name, dd, s) in zip(ax[:, 0], panels):
            a.plot(s, lw=0.6, color="k")
            a.fill_between(np.arange(len(s)), 0, 1, where=dd["y"] > 0, color="r", alpha=0.25,
                           transform=a.get_xaxis_transform(), label="labelled anomaly")
            a.set_yscale("log")
            a.set_title(f"{name}: StackVAE-G score per test step (seed 0)", fontsize=9)
        ax[0, 0].legend(loc="upper right", fontsize=8)
        save_figure(fig, out_dir / "score_over_time.png", dpi=90)
        return ["adjacency.png", "score_over_time.png"]
