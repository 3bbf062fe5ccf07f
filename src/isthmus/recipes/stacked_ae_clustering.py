"""Seed 3 — stacked autoencoder codes + k-means for geological / land-cover mapping.

Nagar, Farahbakhsh, Awange, Chandra 2024, arXiv 2404.02180. Pipeline per pixel: bands → min-max
→ standard scaling → 5-d codes → k-means (:class:`isthmus.tasks.clustering.AEKMeans`). The
stacked (nonlinear) AE is compared with a deep linear AE, PCA(5) and raw bands, all through the
same pipeline, seeds and k-means settings, on

1. Statlog Landsat (real, labelled 3×3×4-band patches; k = 6 classes),
2. procedural scenes (:func:`isthmus.data.scenes.make_scene`) at several ``nonlinearity``
   levels; level 0 is the linear-mixing control where the AE must *not* win,
3. a map of a real Landsat 7 crop (unlabelled; a picture only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from isthmus.data.paths import DataNotFoundError
from isthmus.data.remote_sensing import load_geotiff_rgb, load_statlog_landsat, pixel_patches
from isthmus.data.scenes import make_scene
from isthmus.metrics.clustering import cluster_report
from isthmus.recipes.base import Paper, Recipe, Result, summarize_arms
from isthmus.recipes.registry import register_recipe
from isthmus.tasks.clustering import AEKMeans, majority_filter
from isthmus.viz import pyplot

METHODS = {"stacked_ae": "stacked", "linear_ae": "linear", "pca": "pca", "raw": "none"}
BASELINES = ("pca", "linear_ae", "raw")
# Settings are fixed per mode before any run; see `config` in the result for the exact values.
MODE_SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": dict(scene_size=32, levels=[0.0, 1.0], statlog_rows=600, epochs=2, max_train=1024, n_init=2,
                  map_stride=8, map_train=2000),
    "quick": dict(scene_size=128, levels=[0.0, 1.0], statlog_rows=None, epochs=40, max_train=4096,
                  n_init=10, map_stride=1, map_train=8192),
    "full": dict(scene_size=256, levels=[0.0, 0.25, 0.5, 0.75, 1.0, 1.5], statlog_rows=None, epochs=100,
                 max_train=None, n_init=10, map_stride=1, map_train=50000),
}
# lr 3e-3 was picked from {1e-3, 3e-3, 1e-2} by reconstruction FVU only (Statlog, seed 0, 40 epochs,
# labels unused): lowest for both AEs (stacked 0.070 / 0.048 / 0.051, linear 0.104 / 0.080 / 0.148).
AE_SETTINGS = dict(latent_dim=5, n_hidden=5, activation="selu", batch_size=64, lr=3e-3, optimizer="adam")
SCENE_SETTINGS = dict(n_units=5, n_bands=10)


def _margin(a: Sequence[float], b: Sequence[float]) -> float:
    return max(0.01, float(np.std(a)) + float(np.std(b)))


def _beats(a: Sequence[float], b: Sequence[float]) -> bool:
    """Mean of ``a`` exceeds mean of ``b`` by more than the seed noise (see verdict_rule)."""
    return float(np.mean(a)) - float(np.mean(b)) > _margin(a, b)


@register_recipe
class StackedAEClustering(Recipe):
    slug = "stacked-ae-clustering"
    paper = Paper("Remote sensing framework for geological mapping via stacked autoencoders and clustering", "2404.02180")
    claim = ("k-means on the 5-d codes of a stacked nonlinear MLP autoencoder maps geological/land-cover units more "
             "accurately than k-means on PCA(5), deep-linear-AE or raw-band features.")
    verdict_rule = (
        "A beats B on a data set if mean Hungarian accuracy over seeds exceeds B's by more than "
        "max(0.01, std_A + std_B). Real support: on Statlog Landsat the stacked AE beats PCA, linear AE and raw "
        "bands. Synthetic support: on the most nonlinear scene level the stacked AE beats all three, AND on the "
        "linear-mixing control (nonlinearity 0) it does not beat PCA (else its edge is not due to nonlinearity). "
        "reproduced = both supports; partial = exactly one; not reproduced = neither. Accuracy without the "
        "majority filter is used; filtered numbers are reported alongside."
    )

    def run(self, mode: str, seeds: Sequence[int], out_dir: Path) -> Result:
        cfg = MODE_SETTINGS[mode]
        notes: list[str] = []
        per: dict[str, dict[str, list[float]]] = {m: {} for m in METHODS}  # method -> metric -> values
        scene_maps: dict[float, dict[str, Any]] = {}
        statlog = self._load_statlog(cfg, notes)
        for seed in seeds:
            if statlog is not None:
                for m, rep in self._cluster_all(statlog[0], statlog[1], 6, seed, cfg, shape=None)[0].items():
                    _add(per[m], "statlog", rep)
            for level in cfg["levels"]:
                scene = make_scene(cfg["scene_size"], nonlinearity=level, seed=seed, **SCENE_SETTINGS)
                X, y = scene.pixels()
                reps, maps = self._cluster_all(X, y, SCENE_SETTINGS["n_units"], seed, cfg, shape=scene.shape)
                for m, rep in reps.items():
                    _add(per[m], f"scene_nl{level:g}", rep)
                if seed == seeds[0]:
                    scene_maps[level] = {"scene": scene, "maps": maps}
        figures = [self._plot_scenes(scene_maps, out_dir), self._plot_levels(per, cfg["levels"], out_dir)]
        map_fig = self._landsat7_map(cfg, seeds[0], out_dir, notes)
        if map_fig:
            figures.append(map_fig)
        metrics, baselines = summarize_arms(per, "stacked_ae")
        verdict, reason = self._verdict(per, cfg["levels"], statlog is not None)
        notes.append("reconstruction FVU (stacked AE / linear AE / PCA), a convergence check: " + "; ".join(
            f"{k[:-4]} {np.mean(per['stacked_ae'][k]):.3f} / {np.mean(per['linear_ae'][k]):.3f} / "
            f"{np.mean(per['pca'][k]):.3f}" for k in per["stacked_ae"] if k.endswith("_fvu")))
        if mode == "quick":
            notes.append("history of this quick setting (all runs reported): paper-like 15 epochs at Adam lr 1e-3 left "
                         "the AEs undertrained (linear AE reconstruction FVU 2.4x PCA's, its optimum) -> 'not "
                         "reproduced' (Statlog acc AE 0.646 vs PCA 0.674); 40 epochs at lr 1e-3: still undertrained "
                         "(stacked FVU 0.083 vs PCA 0.061) -> 'not reproduced' (Statlog 0.677 vs 0.674, scene nl1 "
                         "0.777 vs 0.790); then lr was re-chosen by reconstruction FVU alone (see config.ae_lr_choice).")
        config = {"mode": mode, **cfg, "ae": AE_SETTINGS, "scene": SCENE_SETTINGS, "statlog_k": 6,
                  "pipeline": "min-max -> standard scaling -> reducer -> k-means (k = number of classes)",
                  "majority_filter": "3x3 mode filter on scene maps (keys ending _mf)",
                  "deviations": ["Adam lr 3e-3 instead of SGD lr 0.01 (our step budget is ~10x smaller than the paper's)",
                                 "one activation (SELU) in all hidden layers of the stacked AE, decoder included",
                                 "linear AE = same widths as the stacked AE, no activations",
                                 "k = true number of classes, not chosen by elbow/silhouette"],
                  "ae_lr_choice": "lr picked from {1e-3, 3e-3, 1e-2} by reconstruction FVU on Statlog seed 0 at 40 "
                                  "epochs, labels unused (stacked 0.070/0.048/0.051, linear 0.104/0.080/0.148)"}
        return Result(recipe=self.slug, paper=self.paper, claim=self.claim, mode=mode, seeds=list(seeds),
                      metrics=metrics, baselines=baselines, verdict=verdict, verdict_reason=reason,
                      config=config, figures=figures, notes=notes)

    # ---- data and clustering ---------------------------------------------------------------
    @staticmethod
    def _load_statlog(cfg: dict, notes: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
        try:
            table = load_statlog_landsat(split="both")
        except DataNotFoundError as exc:
            notes.append(f"Statlog Landsat not found, real-data check skipped: {str(exc).splitlines()[0]}")
            return None
        X, y = table.X, table.y
        if cfg["statlog_rows"] is not None:
            idx = np.random.default_rng(0).choice(len(X), cfg["statlog_rows"], replace=False)
            X, y = X[idx], y[idx]
        notes.append(f"Statlog Landsat: {len(X)} patches (train+test), 36 features, 6 classes")
        return X, y

    @staticmethod
    def _cluster_all(X, y, k: int, seed: int, cfg: dict, shape) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
        reports, maps = {}, {}
        for name, reducer in METHODS.items():
            est = AEKMeans(n_clusters=k, reducer=reducer, epochs=cfg["epochs"], n_init=cfg["n_init"],
                           max_train_samples=cfg["max_train"], random_state=seed, **AE_SETTINGS)
            pred = est.fit_predict(X)
            rep = cluster_report(y, pred)
            if name != "raw":
                rep["fvu"] = est.reconstruction_fvu(X)  # convergence diagnostic, see AEKMeans
            if shape is not None:
                filtered = majority_filter(pred.reshape(shape), 3)
                rep.update({f"{key}_mf": v for key, v in cluster_report(y, filtered.ravel()).items()
                            if key in ("acc", "nmi", "ari")})
                maps[name] = pred.reshape(shape)
            reports[name] = rep
        return reports, maps

    # ---- verdict -----------------------------------------------------------------------------
    @staticmethod
    def _verdict(per: dict, levels: Sequence[float], have_statlog: bool) -> tuple[str, str]:
        def acc(m: str, ds: str) -> list[float]:
            return per[m][f"{ds}_acc"]

        def wins(ds: str) -> dict[str, bool]:
            return {b: _beats(acc("stacked_ae", ds), acc(b, ds)) for b in BASELINES}

        parts, support = [], 0
        if have_statlog:
            w = wins("statlog")
            real = all(w.values())
            support += real
            parts.append(f"Statlog: AE acc {np.mean(acc('stacked_ae', 'statlog')):.3f} vs "
                         + ", ".join(f"{b} {np.mean(acc(b, 'statlog')):.3f}{'' if w[b] else ' (not beaten)'}"
                                     for b in BASELINES))
        else:
            parts.append("Statlog absent: real-data support not tested")
        hi, lo = f"scene_nl{max(levels):g}", f"scene_nl{min(levels):g}"
        w_hi = wins(hi)
        control_ok = not _beats(acc("stacked_ae", lo), acc("pca", lo))
        synth = all(w_hi.values()) and control_ok and min(levels) == 0
        support += synth
        parts.append(f"scene nonlinearity {max(levels):g}: AE {np.mean(acc('stacked_ae', hi)):.3f} vs "
                     + ", ".join(f"{b} {np.mean(acc(b, hi)):.3f}{'' if w_hi[b] else ' (not beaten)'}" for b in BASELINES))
        parts.append(f"linear control: AE {np.mean(acc('stacked_ae', lo)):.3f} vs PCA {np.mean(acc('pca', lo)):.3f}"
                     + (" (AE does not beat PCA, as it should)" if control_ok else " (AE beats PCA: control FAILED)"))
        verdict = {2: "reproduced", 1: "partial", 0: "not reproduced"}[support]
        return verdict, "; ".join(parts)

    # ---- figures -----------------------------------------------------------------------------
    @staticmethod
    def _plot_scenes(scene_maps: dict, out_dir: Path) -> str:
        plt = pyplot()

        levels = sorted(scene_maps)
        cols = ["false colour", "units (truth)", "stacked AE", "stacked AE + 3x3 filter", "PCA", "raw"]
        fig, axes = plt.subplots(len(levels), len(cols), figsize=(2.2 * len(cols), 2.3 * len(levels)), squeeze=False)
        for r, level in enumerate(levels):
            sc, maps = scene_maps[level]["scene"], scene_maps[level]["maps"]
            b = sc.bands
            rgb = b[..., [b.shape[-1] - 1, b.shape[-1] // 2, 0]]
            rgb = (rgb - rgb.min()) / max(float(np.ptp(rgb)), 1e-9)
            panels = [rgb, sc.labels, maps["stacked_ae"], majority_filter(maps["stacked_ae"], 3), maps["pca"], maps["raw"]]
            for c, img in enumerate(panels):
                ax = axes[r, c]
                ax.imshow(img, cmap=None if c == 0 else "tab10", interpolation="nearest")
                ax.set_xticks([]), ax.set_yticks([])
                if r == 0:
                    ax.set_title(cols[c], fontsize=8)
            axes[r, 0].set_ylabel(f"nonlinearity {level:g}", fontsize=8)
        fig.suptitle("Procedural scenes (seed 0): cluster maps (colours are arbitrary cluster ids)", fontsize=9)
        fig.tight_layout()
        name = "scene_maps.png"
        fig.savefig(out_dir / name, dpi=90)
        plt.close(fig)
        return name

    @staticmethod
    def _plot_levels(per: dict, levels: Sequence[float], out_dir: Path) -> str:
        plt = pyplot()

        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        for m in METHODS:
            means = [np.mean(per[m][f"scene_nl{lv:g}_acc"]) for lv in levels]
            stds = [np.std(per[m][f"scene_nl{lv:g}_acc"]) for lv in levels]
            ax.errorbar(levels, means, yerr=stds, marker="o", capsize=3, label=m)
            if "statlog_acc" in per[m]:
                ax.axhline(np.mean(per[m]["statlog_acc"]), ls=":", lw=1, color=ax.lines[-1].get_color())
        ax.set_xlabel("scene nonlinearity (0 = linear mixing control)")
        ax.set_ylabel("Hungarian accuracy (mean ± std over seeds)")
        ax.set_title("k-means on codes; dotted: Statlog Landsat", fontsize=9)
        ax.legend(fontsize=8)
        fig.tight_layout()
        name = "accuracy_vs_nonlinearity.png"
        fig.savefig(out_dir / name, dpi=100)
        plt.close(fig)
        return name

    @staticmethod
    def _landsat7_map(cfg: dict, seed: int, out_dir: Path, notes: list[str]) -> str | None:
        try:
            img, valid = load_geotiff_rgb()
        except DataNotFoundError as exc:
            notes.append(f"Landsat 7 crop not found, map skipped: {str(exc).splitlines()[0]}")
            return None
        plt = pyplot()

        s = cfg["map_stride"]
        img, valid = img[::s, ::s], valid[::s, ::s]
        feats = pixel_patches(img.astype(np.float32), 3)[valid.ravel()]  # (n_valid, 27)
        est = AEKMeans(n_clusters=5, reducer="stacked", epochs=cfg["epochs"], n_init=cfg["n_init"],
                       max_train_samples=min(cfg["map_train"], len(feats)), random_state=seed, **AE_SETTINGS)
        labels = np.full(valid.shape, -1)
        labels[valid] = est.fit_predict(feats)
        filtered = majority_filter(np.where(valid, labels, 0), 3, mask=valid)
        filtered[~valid] = -1
        fig, axes = plt.subplots(1, 3, figsize=(12, 4.2))
        for ax, im, title in zip(axes, [img, labels, filtered],
                                 ["Landsat 7 RGB crop", "stacked AE + k-means (k=5)", "after 3x3 majority filter"]):
            shown = im if im.ndim == 3 else np.ma.masked_less(im, 0)
            ax.imshow(shown, cmap=None if im.ndim == 3 else "tab10", interpolation="nearest")
            ax.set_title(title, fontsize=9), ax.set_xticks([]), ax.set_yticks([])
        fig.tight_layout()
        name = "landsat7_map.png"
        fig.savefig(out_dir / name, dpi=90)
        plt.close(fig)
        notes.append(f"Landsat 7 crop: {int(valid.sum())} valid pixels, 3x3x3 patch features, AE trained on "
                     f"{est.max_train_samples} of them; unlabelled, so the map is a picture, not a score")
        return name


def _add(store: dict[str, list[float]], prefix: str, report: dict) -> None:
    for key, value in report.items():
        if key in ("acc", "nmi", "ari", "acc_mf", "nmi_mf", "ari_mf", "fvu"):
            store.setdefault(f"{prefix}_{key}", []).append(float(value))
