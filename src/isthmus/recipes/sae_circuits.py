"""Seed 1 — circuits from discrete SAE codes of attention-head outputs.

O'Neill & Bui, "Sparse Autoencoders Enable Scalable and Reliable Circuit Identification in Language Models"
(arXiv 2405.12522). Method: ``isthmus.interp.circuits.find_circuit`` (one ReLU+L1 SAE with unit-norm rows
shared by all heads, trained on the position-averaged head outputs of 10 prompts; code = argmax latent; node
score = codes a head shows on positives but never on negatives; edge score from code-pair co-occurrence).

Settings: the **planted** model (hand-set previous-token + induction heads among random distractors: exact
truth) and tiny attention-only transformers trained on the toy tasks induction, IOI-like, greater-than-like
and docstring-like (truth = heads whose mean-ablation changes the task log-prob by at least ``TRUTH_FRAC`` of
the largest change, measured on ``N_TRUTH`` held-out pairs that no method sees).

Arms: ``sae_codes`` — the method as tuned on the planted model (one change from the paper: each head's vectors
are divided by that head's RMS norm before the shared SAE, ``head_norm="scale"``); ``sae_paper`` — the paper's
settings unchanged; baselines mean ablation, activation patching, attribution patching, head-output difference.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from isthmus.interp.circuits import BASELINES, find_circuit, induction_pairs, mean_ablation, planted_induction
from isthmus.interp.circuits.pairs import task_pairs
from isthmus.interp.toy import train_toy
from isthmus.metrics.circuits import circuit_report, roc_auc, roc_curve_points
from isthmus.recipes.base import Paper, Recipe, Result, summarize
from isthmus.recipes.registry import register_recipe
from isthmus.viz import pyplot, save_figure

TRUTH_FRAC = 0.2
N_TRUTH = 200
ARCH = dict(n_layers=2, n_heads=4, d_model=64, attn_only=True)
TASKS: dict[str, dict[str, Any]] = {
    "induction": dict(task_kwargs=dict(vocab=24, half=8), epochs=6),
    "ioi": dict(task_kwargs={}, epochs=15),
    "greater_than": dict(task_kwargs={}, epochs=6),
    "docstring": dict(task_kwargs={}, epochs=6),
}
PAPER = dict(d_sae=200, l1=0.02, n_train_prompts=10, epochs=500, head_norm="none")
TUNED = dict(PAPER, head_norm="scale")
MODE_SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": dict(tasks=("induction",), n_pairs=12, n_train=256, train_epochs=1, sae_epochs=30,
                  sweep_l1=(0.02,), sweep_d=(50,), n_truth=24),
    "quick": dict(tasks=tuple(TASKS), n_pairs=50, n_train=2048, train_epochs=None, sae_epochs=500,
                  sweep_l1=(0.0, 0.01, 0.02, 0.05), sweep_d=(50, 200), n_truth=N_TRUTH),
    "full": dict(tasks=tuple(TASKS), n_pairs=250, n_train=4096, train_epochs=None, sae_epochs=500,
                 sweep_l1=(0.0, 0.005, 0.01, 0.02, 0.05, 0.1), sweep_d=(50, 200, 300, 1000), n_truth=500),
}
ARMS = ("sae_codes", "sae_paper", "mean_ablation", "activation_patching", "attribution_patching",
        "output_difference")
AUC_OK = 0.80       # the paper reports node ROC-AUC 0.86-0.87 on its three tasks
MARGIN = 0.02


def _setting(name: str, cfg: dict, seed: int) -> dict[str, Any]:
    """Model, method prompts (pairs) and truth of one setting."""
    if name == "planted":
        pc = planted_induction(seed=seed)
        pos, neg, mask = induction_pairs(cfg["n_pairs"], seed=100 + seed)
        truth = np.array([(L, h) in pc.circuit for L in range(2) for h in range(pc.model.cfg.n_heads)])
        return dict(model=pc.model, pos=pos, neg=neg, mask=mask, truth=truth, edges=pc.edges, heads=pc.model.cfg)
    spec = TASKS[name]
    run = train_toy(dict(task=name, n_train=cfg["n_train"], epochs=cfg["train_epochs"] or spec["epochs"],
                         batch_size=64, task_kwargs=spec["task_kwargs"], seed=0), dict(ARCH))
    tp, tn, tm = task_pairs(name, cfg["n_truth"], seed=10_000, **spec["task_kwargs"])
    ref = mean_ablation(run.model, tp, tn, tm).scores
    truth = ref >= TRUTH_FRAC * ref.max()
    pos, neg, mask = task_pairs(name, cfg["n_pairs"], seed=100 + seed, **spec["task_kwargs"])
    return dict(model=run.model, pos=pos, neg=neg, mask=mask, truth=truth, edges=None, ref=ref,
                task_acc=run.metrics.get("acc"))


def _task_accuracy(name: str, cfg: dict) -> str:
    """Held-out next-token accuracy of the trained toy model (loaded from the cache); for greater-than the
    probability mass on valid years (> YY), since its answer is random."""
    spec = TASKS[name]
    run = train_toy(dict(task=name, n_train=cfg["n_train"], epochs=cfg["train_epochs"] or spec["epochs"],
                         batch_size=64, task_kwargs=spec["task_kwargs"], seed=0), dict(ARCH))
    if "p_greater" in run.metrics:
        return f"p(year > YY) {run.metrics['p_greater']:.3f}"
    return f"accuracy {run.metrics['acc']:.3f}"


def _edge_auc(res, edges) -> float:
    idx = {h: i for i, h in enumerate(res.heads)}
    valid = np.array([[res.heads[i][0] < res.heads[j][0] for j in range(len(res.heads))]
                      for i in range(len(res.heads))])
    t = np.zeros_like(valid)
    for a, b in edges:
        t[idx[a], idx[b]] = True
    return roc_auc(res.edge_scores[valid], t[valid])


def evaluate_setting(name: str, cfg: dict, seed: int) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray],
                                                                 np.ndarray]:
    """Per arm: node ROC-AUC, precision/recall at the circuit size, seconds (and edge AUC when known)."""
    s = _setting(name, cfg, seed)
    out, scores = {}, {}
    for arm, kw in (("sae_codes", TUNED), ("sae_paper", PAPER)):
        res = find_circuit(s["model"], s["pos"], s["neg"], seed=seed, **{**kw, "epochs": cfg["sae_epochs"]})
        scores[arm] = res.node_scores
        out[arm] = {**circuit_report(res.node_scores, s["truth"]), "seconds": res.timing["total_s"],
                    "n_forward": res.timing["n_forward"]}
        if s["edges"]:
            out[arm]["edge_roc_auc"] = _edge_auc(res, s["edges"])
    for arm, fn in BASELINES.items():
        r = fn(s["model"], s["pos"], s["neg"], s["mask"])
        scores[arm] = r.scores
        out[arm] = {**circuit_report(r.scores, s["truth"]), "seconds": r.seconds, "n_forward": r.n_forward}
    return out, scores, s["truth"]


def sensitivity(cfg: dict, seeds: Sequence[int]) -> dict[str, np.ndarray]:
    """Mean node ROC-AUC on the planted model over (l1, d_sae), for the tuned and the paper's settings."""
    grids = {arm: np.zeros((len(cfg["sweep_l1"]), len(cfg["sweep_d"]))) for arm in ("sae_codes", "sae_paper")}
    for s in seeds:
        st = _setting("planted", cfg, s)
        for arm, base in (("sae_codes", TUNED), ("sae_paper", PAPER)):
            for i, l1 in enumerate(cfg["sweep_l1"]):
                for j, d in enumerate(cfg["sweep_d"]):
                    res = find_circuit(st["model"], st["pos"], st["neg"], seed=s,
                                       **{**base, "l1": l1, "d_sae": d, "epochs": cfg["sae_epochs"]})
                    grids[arm][i, j] += roc_auc(res.node_scores, st["truth"]) / len(seeds)
    return grids


def verdict(auc: dict[str, dict[str, float]], secs: dict[str, dict[str, float]]) -> tuple[str, str]:
    """``auc[arm][setting]`` / ``secs[arm][setting]`` = seed means. See ``SaeCircuits.verdict_rule``."""
    settings = list(auc["sae_codes"])
    need = len(settings) // 2 + 1
    a = [s for s in settings if auc["sae_codes"][s] >= AUC_OK]
    b = [s for s in settings if auc["sae_codes"][s] >= auc["attribution_patching"][s] - MARGIN
         and auc["sae_codes"][s] >= auc["activation_patching"][s] - MARGIN]
    c = [s for s in settings if secs["sae_codes"][s] < secs["activation_patching"][s]]
    ok = {"A": len(a) >= len(settings) - 1, "B": len(b) >= need, "C": len(c) >= need}
    v = "reproduced" if all(ok.values()) else "partial" if ok["A"] or ok["B"] else "not reproduced"
    why = (f"A (node ROC-AUC >= {AUC_OK}) in {len(a)}/{len(settings)} settings {a}; "
           f"B (>= activation and attribution patching - {MARGIN}) in {len(b)}/{len(settings)} {b}; "
           f"C (faster than activation patching) in {len(c)}/{len(settings)} {c}; "
           + "; ".join(f"{s}: sae_codes {auc['sae_codes'][s]:.2f}, sae_paper {auc['sae_paper'][s]:.2f}, "
                       f"act-patch {auc['activation_patching'][s]:.2f}, attr-patch "
                       f"{auc['attribution_patching'][s]:.2f}, out-diff {auc['output_difference'][s]:.2f}"
                       for s in settings))
    return v, why


@register_recipe
class SaeCircuits(Recipe):
    slug = "sae-circuits"
    paper = Paper("Sparse Autoencoders Enable Scalable and Reliable Circuit Identification in Language Models",
                  "2405.12522")
    claim = ("Discrete codes (argmax latents) of one small SAE trained on the position-averaged attention-head "
             "outputs of 5-10 prompts identify the heads of a circuit (node ROC-AUC ~0.86) at least as well as "
             "ablation/patching-based discovery, in a fraction of the time, and robustly to the L1 weight and "
             "dictionary size.")
    verdict_rule = (
        f"Per setting (planted model + each trained toy task), seed means of node ROC-AUC against the truth. "
        f"A: the SAE method (sae_codes) reaches ROC-AUC >= {AUC_OK} in all settings but at most one. "
        f"B: in a majority of settings its ROC-AUC is within {MARGIN} of, or above, both activation patching and "
        "attribution patching. C: in a majority of settings its wall-clock (head-output collection + SAE + "
        "scoring) is below activation patching's, measured in the same process. reproduced = A and B and C; "
        "partial = A or B; not reproduced otherwise. The sensitivity sweep and sae_paper (the paper's exact "
        "settings) are reported, not gated.")
    default_seeds = {"smoke": 1, "quick": 2, "full": 5}

    def run(self, mode: str, seeds: Sequence[int], out_dir: Path) -> Result:
        torch.set_flush_denormal(True)
        cfg = MODE_SETTINGS[mode]
        settings = ["planted", *cfg["tasks"]]
        per: dict[str, dict[str, list[dict[str, float]]]] = {a: {s: [] for s in settings} for a in ARMS}
        curves: dict[str, tuple[dict, np.ndarray]] = {}
        for name in settings:
            for seed in seeds:
                out, scores, truth = evaluate_setting(name, cfg, seed)
                for arm in ARMS:
                    per[arm][name].append(out[arm])
                if seed == seeds[0]:
                    curves[name] = (scores, truth)
        t0 = time.perf_counter()
        grids = sensitivity(cfg, seeds)
        sweep_s = time.perf_counter() - t0
        summ = {arm: {f"{s}/{k}": summarize([r[k] for r in per[arm][s]])
                      for s in settings for k in per[arm][s][0]} for arm in ARMS}
        auc = {arm: {s: summ[arm][f"{s}/roc_auc"].mean for s in settings} for arm in ARMS}
        secs = {arm: {s: summ[arm][f"{s}/seconds"].mean for s in settings} for arm in ARMS}
        v, why = verdict(auc, secs)
        for arm, grid in grids.items():
            for (i, l1) in enumerate(cfg["sweep_l1"]):
                for (j, d) in enumerate(cfg["sweep_d"]):
                    summ[arm][f"sweep/planted/l1={l1}/d_sae={d}/roc_auc"] = summarize([grid[i, j]])
        figures = [_plot_roc(curves, out_dir), _plot_sweep(grids, cfg, out_dir)]
        config = {"mode": mode, **{k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
                  "arch": ARCH, "tasks": TASKS, "sae_codes": TUNED, "sae_paper": PAPER, "truth_frac": TRUTH_FRAC,
                  "truth": "planted: by construction; trained: |mean-ablation change| >= truth_frac x max on "
                           "n_truth held-out pairs", "metric": "mean log-prob of the scored tokens on positives"}
        notes = [f"sensitivity sweep (planted, seed mean, {sweep_s:.1f} s): rows l1 {list(cfg['sweep_l1'])}, "
                 f"columns d_sae {list(cfg['sweep_d'])}: "
                 + "; ".join(f"{a} {np.round(g, 3).tolist()}" for a, g in grids.items()),
                 "trained toy models: one training seed (0) for all seeds; seeds vary prompts, SAE init and planted "
                 "distractor weights",
                 "held-out task accuracy of the trained toy models: "
                 + ", ".join(f"{t} {_task_accuracy(t, cfg)}" for t in cfg["tasks"])
                 + " (ioi near 0.5 is a coin flip between the two names in context: that model has not learned "
                 "IOI, so its 'circuit' is whatever its ablation truth says)",
                 "a first run trains and caches the toy models (about 2.5 CPU-minutes in quick mode)",
                 "precision and recall at the true circuit size are equal by definition (k = |truth|)",
                 "mean_ablation is the reference that defines the trained-model truth (on separate held-out "
                 "pairs), so its scores there are near-perfect by construction",
                 "head_norm='scale' (sae_codes) was chosen on the planted model of seed 0 (prompt seed 3, SAE seeds 0-1, "
                 "300 SAE epochs) among head_norm {none, scale, center} x position {mean, scored positions} x "
                 "score {set, tv}; the trained tasks were not looked at when choosing"]
        return Result(recipe=self.slug, paper=self.paper, claim=self.claim, mode=mode, seeds=list(seeds),
                      metrics=summ["sae_codes"], baselines={a: summ[a] for a in ARMS if a != "sae_codes"},
                      verdict=v, verdict_reason=why, config=config, figures=figures, notes=notes)


def _plot_roc(curves: dict, out_dir: Path) -> str:
    plt = pyplot()

    fig, axes = plt.subplots(1, len(curves), figsize=(3.2 * len(curves), 3.2), squeeze=False)
    for ax, (name, (scores, truth)) in zip(axes[0], curves.items()):
        for arm in ARMS:
            fpr, tpr = roc_curve_points(scores[arm], truth)
            ax.plot(fpr, tpr, label=arm, lw=2.2 if arm.startswith("sae") else 1.0)
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set_title(f"{name} (|truth|={int(truth.sum())}/{len(truth)})", fontsize=8)
        ax.set_xlabel("FPR", fontsize=7)
    axes[0][0].set_ylabel("TPR", fontsize=7)
    axes[0][-1].legend(fontsize=6, loc="lower right")
    save_figure(fig, out_dir / "roc_curves.png", dpi=90)
    return "roc_curves.png"


def _plot_sweep(grids: dict[str, np.ndarray], cfg: dict, out_dir: Path) -> str:
    plt = pyplot()

    shape = next(iter(grids.values())).shape
    fig, axes = plt.subplots(1, len(grids), figsize=(2.2 + 2.0 * shape[1], 1.2 + 0.6 * shape[0]), squeeze=False)
    for ax, (arm, grid) in zip(axes[0], grids.items()):
        im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis")
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7, color="w")
        ax.set_yticks(range(grid.shape[0]), [str(v) for v in cfg["sweep_l1"]], fontsize=7)
        ax.set_xticks(range(grid.shape[1]), [str(v) for v in cfg["sweep_d"]], fontsize=7)
        ax.set_ylabel("L1 weight", fontsize=7)
        ax.set_xlabel("d_sae", fontsize=7)
        ax.set_title(f"planted, {arm}: node ROC-AUC", fontsize=8)
    fig.colorbar(im, ax=list(axes[0]))
    fig.savefig(out_dir / "sensitivity.png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "sensitivity.png"
