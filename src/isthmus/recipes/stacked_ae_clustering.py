"""Seed 3 — stacked autoencoder codes + k-means for geological / land-cover mapping.

Nagar, Farahbakhsh, Awange, Chandra 2024, arXiv 2404.02180. The method is the authors' 2024 code
(errata, seeds 1-22): per-pixel bands → min-max scaling → a **cascade of three small SELU AEs** with
L1 activity regularisation (:class:`isthmus.tasks.cascade_ae.CascadeAE`, 2-d code) → k-means, all
through :class:`isthmus.tasks.clustering.AEKMeans`. Arms, sharing scaling, subsample, k-means and seeds:

* ``cascade_ae`` (ours) — the cascade; ``canonical_ae`` — its first stage alone (the paper's "AE");
* ``pca`` — PCA to 90 % explained variance (the authors' rule); ``raw`` — the scaled bands;
* ``linear_ae`` — a linear AE with PCA's code size: the positive control (it must reach PCA's
  reconstruction error within 10 %, else the AE training budget is too small to judge AEs).

Data: Statlog Landsat (real, labelled 3×3×4-band patches; k = 6 classes) and procedural scenes
(:func:`isthmus.data.scenes.make_scene`, 10 bands, 5 units) at nonlinearity 1 and at 0 (linear
mixing). The nonlinear-vs-linear contrast asks whether the AE's gain over PCA comes from nonlinearity.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, TypeAlias

import numpy as np
from sklearn.decomposition import PCA
from sklearn.preprocessing import MinMaxScaler

from isthmus.data.remote_sensing import load_statlog_landsat
from isthmus.data.scenes import make_scene
from isthmus.metrics.clustering import cluster_report
from isthmus.recipes.base import Paper, Recipe, RecipeSettings
from isthmus.recipes.gates import Check, Gate, Measured, Precondition, plateaued
from isthmus.recipes.registry import register_recipe
from isthmus.tasks.clustering import AEKMeans, majority_filter
from isthmus.viz import pyplot, save_figure

SCENE = dict(n_units=5, n_bands=10)
STATLOG_K = 6
PCA_VARIANCE = 0.9  # the authors' PCA rule
LINEAR_TOL = 1.10  # the linear AE's FVU may be at most 10 % above PCA's (positive control)
DATASETS = ("statlog", "scene_nl1", "scene_nl0")


@dataclass
class Settings(RecipeSettings):
    scene_size: int = 128
    statlog_rows: int = 0  # 0 = all 6435 patches
    max_train: int = 2048  # rows each reducer (and k-means) is fitted on; every row is labelled
    n_init: int = 10
    cascade_epochs: tuple[int, int, int] = (20, 10, 10)
    linear_epochs: int = 100
    linear_batch: int = 256
    linear_lr: float = 3e-2


@lru_cache(maxsize=2)
def _statlog(rows: int) -> tuple[np.ndarray, np.ndarray]:
    table = load_statlog_landsat(split="both")
    X, y = table.X, table.y
    if y is None:
        raise ValueError("the Statlog Landsat table has no label column")
    if rows:
        idx = np.random.default_rng(0).choice(len(X), min(rows, len(X)), replace=False)
        X, y = X[idx], y[idx]
    return X, y


def pca_components(X: np.ndarray) -> int:
    """How many components PCA keeps at :data:`PCA_VARIANCE` on min-max scaled ``X`` (the linear AE's size)."""
    return int(PCA(PCA_VARIANCE, svd_solver="full").fit(MinMaxScaler().fit_transform(X)).n_components_)


def _estimator(arm: str, s: Settings, k: int, seed: int, n_pca: int) -> AEKMeans:
    common: dict[str, Any] = dict(
        n_clusters=k, standardise=False, max_train_samples=s.max_train, n_init=s.n_init, random_state=seed
    )
    if arm == "cascade_ae":
        return AEKMeans(reducer="cascade", cascade_epochs=tuple(s.cascade_epochs), **common)
    if arm == "canonical_ae":
        return AEKMeans(reducer="canonical", cascade_epochs=tuple(s.cascade_epochs[:1]), **common)
    if arm == "pca":
        return AEKMeans(reducer="pca", pca_variance=PCA_VARIANCE, **common)
    if arm == "linear_ae":
        return AEKMeans(
            reducer="linear",
            latent_dim=n_pca,
            n_hidden=0,
            epochs=s.linear_epochs,
            batch_size=s.linear_batch,
            lr=s.linear_lr,
            **common,
        )
    return AEKMeans(reducer="none", **common)


def _arm(name: str):
    def arm(s: Settings, seed: int, data: dict) -> Measured:
        metrics: dict[str, float] = {}
        curves: dict[str, list[float]] = {}
        converged = []
        for ds in DATASETS:
            X, y, k, shape = data[ds]["X"], data[ds]["y"], data[ds]["k"], data[ds]["shape"]
            est = _estimator(name, s, k, seed, data[ds]["n_pca"])
            pred = est.fit_predict(X)
            metrics[f"{ds}_acc"] = cluster_report(y, pred)["acc"]
            if shape is not None:  # the authors' 7x7 mode filter on the map (reported, not gated)
                metrics[f"{ds}_acc_mf"] = cluster_report(y, majority_filter(pred.reshape(shape), 7).ravel())["acc"]
            if name != "raw":
                metrics[f"fvu/{ds}"] = est.reconstruction_fvu(X)
            hist: list[Any] = est.history_
            if hist and isinstance(hist[0], list):  # cascade: one curve per stage
                for i, c in enumerate(hist):
                    curves[f"loss/{ds}/stage{i + 1}"] = c
                    converged.append(plateaued(c))
            elif hist:
                c = [float(h["train_loss"]) for h in hist]
                curves[f"loss/{ds}"] = c
                converged.append(plateaued(c))
        metrics["nonlinear_gain"] = metrics["scene_nl1_acc"] - metrics["scene_nl0_acc"]
        metrics["converged"] = float(all(converged))
        return Measured(metrics=metrics, curves=curves)

    return arm


@register_recipe
class StackedAEClustering(Recipe):
    slug = "stacked-ae-clustering"
    paper = Paper(
        "Remote sensing framework for geological mapping via stacked autoencoders and clustering", "2404.02180"
    )
    claim = (
        "k-means on the codes of a stacked (cascaded) nonlinear autoencoder maps geological/land-cover units more "
        "accurately than k-means on PCA features or on a single (canonical) autoencoder's codes."
    )
    Settings: TypeAlias = Settings
    modes = {
        "smoke": Settings(
            seeds=1, scene_size=24, statlog_rows=400, max_train=256, n_init=2, cascade_epochs=(1, 1, 1), linear_epochs=1
        ),
        "quick": Settings(seeds=3, scene_size=64, statlog_rows=2000, max_train=1024),
        "record": Settings(seeds=8, cascade_epochs=(60, 30, 30)),
        "full": Settings(seeds=10, scene_size=256, max_train=8192, cascade_epochs=(40, 20, 20), linear_epochs=200),
    }
    ours = "cascade_ae"
    gates = (
        Gate(
            "real land cover: cascade beats PCA",
            "statlog_acc",
            "cascade_ae",
            "pca",
            effect=0.02,
            headline=True,
            why="2 points of Hungarian accuracy on real Landsat patches; PCA is the paper's main baseline",
        ),
        Gate(
            "real land cover: cascade beats the canonical AE",
            "statlog_acc",
            "cascade_ae",
            "canonical_ae",
            effect=0.02,
            why="the same 2 points: stacking must add to a single AE",
        ),
        Gate(
            "nonlinear scene: cascade beats PCA",
            "scene_nl1_acc",
            "cascade_ae",
            "pca",
            effect=0.02,
            why="2 points where the bands mix nonlinearly, the case an AE is for",
        ),
        Gate(
            "the gain over PCA comes from nonlinearity",
            "nonlinear_gain",
            "cascade_ae",
            "pca",
            effect=0.02,
            why="(AE - PCA) on the nonlinear scene minus (AE - PCA) on the linear one, paired per seed: 2 points",
        ),
    )
    preconditions = (
        Precondition(
            "the cascade converged",
            "cascade_ae",
            "converged",
            ">=",
            1.0,
            over="every",
            why="every stage's loss curve must plateau on every data set",
        ),
        Precondition(
            "the canonical AE converged",
            "canonical_ae",
            "converged",
            ">=",
            1.0,
            over="every",
            why="the AE baseline must be trained as far as the cascade",
        ),
    )
    changes = (
        "before the frame (quick, 3 seeds): 'not reproduced' on the notes' method (a 10-9-8-7-6-5 SELU AE end to "
        "end, Adam lr 3e-3, 40 epochs, min-max + standard scaling, PCA(5), k = classes). History of that quick "
        "setting: 15 epochs at lr 1e-3 left the AEs undertrained (linear AE FVU 2.4x PCA's) -> 'not reproduced' "
        "(Statlog 0.646 vs 0.674); 40 epochs at lr 1e-3 still undertrained -> 'not reproduced' (0.677 vs 0.674, "
        "scene nl1 0.777 vs 0.790); lr re-chosen by reconstruction FVU alone (3e-3).",
        "errata (issue 20): the paper's code is a cascade of three small SELU AEs with L1 activity 1e-4, sigmoid "
        "outputs, min-max scaling only, PCA to 90 % variance; the recipe now runs that method (cascade_ae) and its "
        "first stage (canonical_ae) instead of the notes' deep AE and deep linear AE. Stage epochs 20/10/10 (the "
        "authors: 10/5/5 over a whole scene, ~100x more rows than our 2048-row subsample).",
        "after the audit (issue 20): paired per-seed tests over 8 seeds replace the unpaired std_A + std_B margin; "
        "the one-sided linear control (could not fail) is replaced by the interaction contrast (nonlinear_gain); "
        "the linear AE (PCA's code size) is a positive control that must reach PCA's FVU within 10 % (it was "
        "0.119 vs 0.061). Linear AE budget chosen by FVU ratio to PCA alone on scene nl1 seed 0, labels unused, from "
        "(100 ep, batch 256, lr 1e-2) 1.118, (60, 64, 3e-3) 1.233, (100, 256, 3e-2) 1.026 -> the last. The unlabelled "
        "Landsat 7 map figure was dropped (CPU).",
        "after the first record run (8 seeds, stage epochs 20/10/10): the convergence preconditions failed (cascade "
        "plateaued on 2/8 seeds, canonical AE on 3/8) and the verdict was inconclusive; record mode now trains the "
        "stages 60/30/30 epochs. Gates, preconditions and every other setting are unchanged.",
    )

    def data(self, settings: Settings, seed: int) -> dict:
        X, y = _statlog(settings.statlog_rows)
        out: dict[str, dict[str, Any]] = {"statlog": {"X": X, "y": y, "k": STATLOG_K, "shape": None}}
        for level, name in ((1.0, "scene_nl1"), (0.0, "scene_nl0")):
            sc = make_scene(settings.scene_size, nonlinearity=level, seed=seed, **SCENE)
            Xs, ys = sc.pixels()
            out[name] = {"X": Xs, "y": ys, "k": SCENE["n_units"], "shape": sc.shape}
        for d in out.values():
            d["n_pca"] = pca_components(d["X"])
        return out

    def arms(self, settings: Settings):
        return {a: _arm(a) for a in ("cascade_ae", "canonical_ae", "pca", "linear_ae", "raw")}

    def checks(self, settings: Settings, cells: Mapping[str, Mapping[int, Measured]]) -> list[Check]:
        worst, where = 0.0, ""
        for s, lin in cells["linear_ae"].items():
            for ds in DATASETS:
                r = lin.metrics[f"fvu/{ds}"] / max(cells["pca"][s].metrics[f"fvu/{ds}"], 1e-12)
                if r > worst:
                    worst, where = r, f"{ds}, seed {s}"
        return [
            Check(
                "positive control: linear AE within 10 % of PCA's FVU",
                worst <= LINEAR_TOL,
                f"worst linear-AE / PCA FVU ratio {worst:.3f} ({where}); <= {LINEAR_TOL:g} needed, else the AE "
                "training budget cannot reach even the linear optimum",
            )
        ]

    def describe(self, settings: Settings) -> dict[str, Any]:
        X, _ = _statlog(settings.statlog_rows)
        return {
            "statlog": f"Statlog Landsat: {len(X)} patches (train+test), 36 features, {STATLOG_K} classes",
            "scene": {**SCENE, "size": settings.scene_size, "levels": [1.0, 0.0], "seed": "= run seed"},
            "pipeline": "min-max scaling -> reducer -> k-means (k = number of classes), one AEKMeans for all arms",
            "pca_variance": PCA_VARIANCE,
            "majority_filter": "7x7 mode filter, *_acc_mf (reported, not gated)",
            "deviations": [
                "k = true number of classes, not chosen by elbow (the authors: elbow over 2..20)",
                "Statlog land cover and procedural scenes instead of the Mutawintji geology rasters",
                f"cascade stage epochs {tuple(settings.cascade_epochs)} on a {settings.max_train}-row "
                "subsample (the authors: 10/5/5 on whole scenes)",
                "AE2's layer widths read as encoder 10-5-2 (decoder mirrored) on its 2n-wide input",
            ],
        }

    def figures(self, settings: Settings, cells, out_dir: Path) -> list[str]:
        plt = pyplot()
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
        arms = list(cells)
        x = np.arange(len(DATASETS))
        for i, arm in enumerate(arms):
            vals = np.array([[m.metrics[f"{ds}_acc"] for ds in DATASETS] for m in cells[arm].values()])
            ax.bar(
                x + (i - len(arms) / 2) * 0.15,
                vals.mean(0),
                0.15,
                yerr=vals.std(0, ddof=1) if len(vals) > 1 else None,
                capsize=2,
                label=arm,
            )
        ax.set_xticks(x, DATASETS), ax.set_ylabel("Hungarian accuracy (mean ± sd over seeds)"), ax.legend(fontsize=7)
        ax.set_title("k-means on each arm's features", fontsize=9)
        for j, ds in enumerate(DATASETS):
            d = [
                cells["cascade_ae"][s].metrics[f"{ds}_acc"] - cells["pca"][s].metrics[f"{ds}_acc"]
                for s in sorted(cells["cascade_ae"])
            ]
            ax2.scatter(np.full(len(d), j) + np.linspace(-0.1, 0.1, len(d)), d, s=14)
        ax2.axhline(0, color="k", lw=0.5), ax2.set_xticks(range(len(DATASETS)), DATASETS)
        ax2.set_ylabel("cascade - PCA accuracy, per seed"), ax2.set_title("paired differences", fontsize=9)
        return [save_figure(fig, out_dir / "accuracy.png").name]
