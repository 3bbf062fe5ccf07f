"""Seed 29 — top-AFA: an SAE that picks each token's k by norm matching, with no k to tune.

Lee, Davies, Canby, Hockenmaier, "Evaluating and designing sparse autoencoders by approximating
quasi-orthogonality" (arXiv 2503.24277). top-AFA (``isthmus.bottlenecks.sparse.TopAFABottleneck``)
ranks latents by (a_i‖d_i‖)² and keeps the prefix whose cumulative norm is closest to ‖x − b_dec‖,
plus the AFA norm loss λ(‖f‖ − ‖x‖)², λ = 1/32 (the authors' default; no cap on k, as in their code).

Data: the synthetic superposition benchmark (``isthmus.interp.superposition``): ground-truth unit
features in superposition with Zipf-like sparse firing, correlated groups and a small hierarchy, so
every SAE is scored on NMSE (= FVU on held-out samples) vs L0 *and* on recovery of the true features
(mean max cosine, recall@0.9). Arms on the same data, seeds and step budget: TopK over a sweep of k,
BatchTopK (k at the sweep point nearest the data's true mean L0), top-AFA. Adaptivity = Spearman
correlation between a sample's number of active latents and its true number of active features.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from isthmus.interp.sae import SAEConfig, SAETrainConfig, SparseAutoEncoder, train_sae
from isthmus.interp.superposition import SuperpositionConfig, SuperpositionData, feature_recovery
from isthmus.metrics.sae import evaluate_sae
from isthmus.recipes.base import Paper, Recipe, Result, summarize
from isthmus.recipes.registry import register_recipe
from isthmus.viz import pyplot, save_figure

MODE_SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": dict(d=16, n_features=48, n_parents=4, expansion=4, steps=40, batch_size=128, n_train=4096,
                  n_eval=1024, ks=(2, 4), lr=1e-3),
    "quick": dict(d=32, n_features=128, n_parents=8, expansion=8, steps=500, batch_size=256, n_train=20_000,
                  n_eval=4096, ks=(2, 4, 8, 16, 32, 64), lr=2e-3),
    "full": dict(d=64, n_features=512, n_parents=16, expansion=8, steps=4000, batch_size=1024, n_train=200_000,
                 n_eval=16_384, ks=(2, 4, 8, 16, 32, 64, 128), lr=1e-3),
}
AFA_COEFF = 1.0 / 32
NMSE_MARGIN = 0.05   # top-AFA may be up to 5 % (relative) above the TopK frontier and still "match" it
RECOVERY_MARGIN = 0.02  # absolute, on mean max cosine to the true features
HEADLINE = ("nmse", "l0", "mean_max_cos", "recall", "adaptivity", "dead_fraction")


def arms(cfg: dict, true_l0: float) -> dict[str, tuple[str, dict]]:
    """arm name -> (bottleneck, bottleneck config). BatchTopK uses the swept k nearest the true L0."""
    m = cfg["d"] * cfg["expansion"]
    out = {"top_afa": ("sae_topafa", {"k_max": m, "afa_coeff": AFA_COEFF})}
    out.update({f"topk_{k}": ("sae_topk", {"k": k}) for k in cfg["ks"]})
    k_b = min(cfg["ks"], key=lambda k: abs(math.log(k / max(true_l0, 1e-9))))
    out[f"batchtopk_{k_b}"] = ("sae_batchtopk", {"k": k_b})
    return out


def make_data(cfg: dict, seed: int) -> tuple[SuperpositionData, torch.Tensor, torch.Tensor, torch.Tensor]:
    sc = SuperpositionConfig(d=cfg["d"], n_features=cfg["n_features"], n_parents=cfg["n_parents"], seed=seed)
    data = SuperpositionData(sc)
    x_train, _ = data.sample(cfg["n_train"])
    x_eval, coef_eval = data.sample(cfg["n_eval"])
    return data, x_train, x_eval, coef_eval


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if np.std(a) == 0 or np.std(b) == 0:
        return 0.0  # a constant k carries no information about the true count
    return float(spearmanr(a, b).statistic)


def train_arm(bottleneck: str, bcfg: dict, data: SuperpositionData, x_train: torch.Tensor, x_eval: torch.Tensor,
              coef_eval: torch.Tensor, seed: int, cfg: dict) -> dict[str, float]:
    torch.manual_seed(seed)
    m = cfg["d"] * cfg["expansion"]
    sae = SparseAutoEncoder(SAEConfig(d_in=cfg["d"], d_sae=m, bottleneck=bottleneck, aux_k=max(8, m // 8),
                                      bottleneck_config={**bcfg, "dead_steps": 50}))
    train_sae(sae, x_train, SAETrainConfig(steps=cfg["steps"], batch_size=cfg["batch_size"], lr=cfg["lr"],
                                           seed=seed, log_every=cfg["steps"]))
    with torch.no_grad():
        ev = evaluate_sae(sae, [x_eval])
        per_sample_l0 = (sae(x_eval).latent != 0).sum(1).numpy()
    rec = feature_recovery(data.features, sae.W_dec.detach())
    true_count = (coef_eval != 0).sum(1).numpy()
    return {"nmse": ev["fvu"], "l0": ev["l0"], "mean_max_cos": rec["mean_max_cos"], "recall": rec["recall"],
            "adaptivity": _spearman(per_sample_l0, true_count), "dead_fraction": ev["dead_fraction"],
            "cosine": ev["cosine"]}


def topk_frontier(l0: float, points: list[tuple[float, float]]) -> float:
    """TopK NMSE at ``l0``, linear in log L0 between sweep points (measured L0, NMSE); NaN outside the sweep.

    Measured, not nominal, L0: TopK's ReLU after the top-k can leave fewer than k latents active."""
    pts = sorted(points)
    ks = [math.log(k) for k, _ in pts]
    if not pts or l0 <= 0 or math.log(l0) < ks[0] - 1e-9 or math.log(l0) > ks[-1] + 1e-9:
        return float("nan")
    return float(np.interp(math.log(l0), ks, [v for _, v in pts]))


def verdict(means: dict[str, dict[str, float]], ks: Sequence[int]) -> tuple[str, str, dict[str, float]]:
    """Seed means per arm -> (verdict, reason, derived numbers). See ``TopAfaSae.verdict_rule``."""
    afa = means["top_afa"]
    pts = [(means[f"topk_{k}"]["l0"], means[f"topk_{k}"]["nmse"]) for k in ks]
    front = topk_frontier(afa["l0"], pts)
    k_top = max(ks)
    if math.isnan(front):  # L0 beyond the sweep: dominated iff it uses more latents and is no better
        pareto_ok = False
        pareto_txt = (f"top-AFA L0 {afa['l0']:.1f} is outside the TopK sweep {list(ks)}; TopK k={k_top} has NMSE "
                      f"{means[f'topk_{k_top}']['nmse']:.4f} vs top-AFA {afa['nmse']:.4f}: frontier match not shown")
    else:
        pareto_ok = afa["nmse"] <= front * (1 + NMSE_MARGIN)
        pareto_txt = (f"NMSE top-AFA {afa['nmse']:.4f} at L0 {afa['l0']:.1f} vs TopK frontier {front:.4f} "
                      f"({'within' if pareto_ok else 'above'} +{NMSE_MARGIN:.0%})")
    best_k = max(ks, key=lambda k: means[f"topk_{k}"]["mean_max_cos"])
    best_rec = means[f"topk_{best_k}"]["mean_max_cos"]
    rec_ok = afa["mean_max_cos"] >= best_rec - RECOVERY_MARGIN
    rec_txt = (f"feature recovery (mean max cos) top-AFA {afa['mean_max_cos']:.3f} vs best tuned TopK k={best_k} "
               f"{best_rec:.3f} ({'matched' if rec_ok else 'not matched'}, margin {RECOVERY_MARGIN})")
    v = "reproduced" if pareto_ok and rec_ok else "partial" if pareto_ok or rec_ok else "not reproduced"
    derived = {"topk_frontier_nmse_at_afa_l0": front, "best_topk_k_by_recovery": float(best_k)}
    return v, f"{pareto_txt}; {rec_txt}", derived


@register_recipe
class TopAfaSae(Recipe):
    slug = "top-afa-sae"
    paper = Paper("Evaluating and Designing Sparse Autoencoders by Approximating Quasi-Orthogonality", "2503.24277")
    claim = ("A top-AFA SAE, which picks each sample's number of active latents by matching the code's norm to the "
             "input's norm, reaches the reconstruction of the best tuned TopK SAE without a sweep over k.")
    verdict_rule = (
        "Seed means on held-out superposition samples, all arms on the same data, seeds and steps. (1) Pareto: "
        f"top-AFA's NMSE is at most (1 + {NMSE_MARGIN}) x the TopK NMSE interpolated (linear in log L0) at top-AFA's "
        "L0 from the k sweep; if top-AFA's L0 falls outside the sweep this check fails (not shown). (2) Recovery: "
        "top-AFA's mean max "
        "cosine to the true features is at least the best TopK k's (the k a sweep would pick on ground truth) minus "
        f"{RECOVERY_MARGIN}. reproduced = both; partial = one; not reproduced = neither. BatchTopK and adaptivity "
        "(Spearman of per-sample L0 vs true active count) are reported, not gated."
    )

    def run(self, mode: str, seeds: Sequence[int], out_dir: Path) -> Result:
        cfg = MODE_SETTINGS[mode]
        per: dict[str, list[dict[str, float]]] = {}
        true_l0s = []
        for s in seeds:
            data, x_train, x_eval, coef_eval = make_data(cfg, s)
            true_l0 = float((coef_eval != 0).sum(1).float().mean())
            true_l0s.append(true_l0)
            for arm, (bn, bcfg) in arms(cfg, true_l0s[0]).items():
                per.setdefault(arm, []).append(train_arm(bn, bcfg, data, x_train, x_eval, coef_eval, s, cfg))
        summ = {a: {k: summarize([r[k] for r in rs]) for k in rs[0]} for a, rs in per.items()}
        means = {a: {k: v.mean for k, v in d.items()} for a, d in summ.items()}
        v, why, derived = verdict(means, cfg["ks"])
        ratios = []
        for i in range(len(seeds)):  # per-seed NMSE relative to the TopK frontier at top-AFA's L0
            pts = [(per[f"topk_{k}"][i]["l0"], per[f"topk_{k}"][i]["nmse"]) for k in cfg["ks"]]
            a = per["top_afa"][i]
            ratios.append(a["nmse"] / topk_frontier(a["l0"], pts))
        metrics = {**summ["top_afa"], "nmse_over_topk_frontier": summarize(ratios)}
        figure = self._plot(summ, cfg, out_dir)
        notes = [
            f"true mean L0 of the data {np.mean(true_l0s):.2f} (seed values {[round(t, 2) for t in true_l0s]})",
            f"TopK frontier NMSE at top-AFA's mean L0: {derived['topk_frontier_nmse_at_afa_l0']:.4f}; best TopK k by "
            f"feature recovery: {int(derived['best_topk_k_by_recovery'])}",
            "top-AFA choosing many more latents than the data's true L0 is not an isthmus bug as far as we can tell: "
            "the selection rule follows the authors' code (SewoongLee/top-afa-sae training/sae.py, TopAFASAE) line by "
            "line, and their own GPT-2 layer-6 runs (visualization/wandb_export_*.csv) log top-AFA L0 of 315-2344 "
            "against TopK k=32-128. The rule is ill-conditioned: argmin_k |sqrt(cumsum a^2) - ||x||| moves by many "
            "latents when the kept features' norm falls short of ||x|| (b_dec offset, non-orthogonal atoms), "
            "because each extra small activation adds only a^2 to the sum.",
            "NMSE falls monotonically with k, so 'the best tuned k' is only defined against a second criterion; on "
            "ground truth that is feature recovery (the k a sweep would pick), which is what check (2) uses",
            f"scale: d={cfg['d']}, {cfg['n_features']} true features, dictionary {cfg['expansion']}x, {cfg['steps']} "
            f"steps of batch {cfg['batch_size']} (paper: GPT-2 small, d=768, 12288 latents, 80M+ tokens)",
        ]
        config = {"mode": mode, **{k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
                  "arms": {a: {"bottleneck": b, **c} for a, (b, c) in arms(cfg, true_l0s[0]).items()},
                  "sae": "tied init, unit-norm decoder, b_dec at the data mean, AuxK (aux_k = m/8, dead after 50 "
                         "steps), Adam, linear LR decay over the last 20%", "afa_coeff": AFA_COEFF}
        return Result(recipe=self.slug, paper=self.paper, claim=self.claim, mode=mode, seeds=list(seeds),
                      metrics=metrics, baselines={a: summ[a] for a in summ if a != "top_afa"}, verdict=v,
                      verdict_reason=why, config=config, figures=[figure], notes=notes)

    @staticmethod
    def _plot(summ: dict, cfg: dict, out_dir: Path) -> str:
        plt = pyplot()
        import matplotlib.ticker

        fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.6))
        for ax, key, label in ((axes[0], "nmse", "NMSE (held-out FVU)"), (axes[1], "mean_max_cos", "feature recovery")):
            ks = list(cfg["ks"])
            tk = [summ[f"topk_{k}"] for k in ks]
            ax.errorbar([t["l0"].mean for t in tk], [t[key].mean for t in tk], yerr=[t[key].std for t in tk],
                        marker="o", label="TopK (k sweep)")
            batch = [(a, dict(marker="s", ms=8, color="tab:green")) for a in summ if a.startswith("batch")]
            for arm, style in (("top_afa", dict(marker="*", ms=14, color="tab:red")), *batch):
                ax.errorbar(summ[arm]["l0"].mean, summ[arm][key].mean, xerr=summ[arm]["l0"].std,
                            yerr=summ[arm][key].std, linestyle="none", label=arm, **style)
            ax.set_xscale("log")
            ax.set_xticks(ks, [str(k) for k in ks])
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xlabel("L0 (mean active latents)")
            ax.set_ylabel(label)
            ax.legend(fontsize=7)
        fig.suptitle("top-AFA vs TopK on the superposition benchmark", fontsize=9)
        save_figure(fig, out_dir / "nmse_vs_l0.png", dpi=90)
        return "nmse_vs_l0.png"
