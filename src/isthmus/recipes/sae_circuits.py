"""Seed 1 — circuits from discrete SAE codes of attention-head outputs.

O'Neill & Bui, "Sparse Autoencoders Enable Scalable and Reliable Circuit Identification in Language Models"
(arXiv 2405.12522). Method: ``isthmus.interp.circuits.find_circuit`` with the paper's settings (one ReLU+L1
SAE of 200 latents with unit-norm rows shared by all heads, λ 0.02 — 0.05 on docstring —, trained on the
position-averaged head outputs of 10 prompts; code = argmax latent, computed on every prompt; node score =
codes a head shows on positives but never on negatives).

Settings (16 heads each: 2 layers × 8): the **planted** model (hand-set previous-token + induction heads among
random distractors: exact truth) and tiny attention-only transformers trained on the toy tasks induction,
greater-than-like and docstring-like (truth = heads whose mean-ablation changes the task log-prob by at least
``TRUTH_FRAC`` of the largest change, on ``n_truth`` held-out pairs that no method sees). Per seed, each arm's
node ROC-AUC is averaged over the settings (per-setting values are reported).

Arms: ``sae_paper`` (ours, the paper's settings), ``sae_tuned`` (our earlier variant: each head's vectors
divided by its RMS norm, reported only), mean ablation, activation patching, attribution patching,
head-output difference. Cost is counted in forward passes (the paper's claim), not wall-clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np

from isthmus.interp.circuits import BASELINES, find_circuit, induction_pairs, mean_ablation, planted_induction
from isthmus.interp.circuits.pairs import task_pairs
from isthmus.interp.toy import train_toy
from isthmus.metrics.circuits import circuit_report, roc_curve_points
from isthmus.recipes.base import Paper, Recipe, RecipeSettings
from isthmus.recipes.gates import Gate, Measured, Precondition
from isthmus.recipes.registry import register_recipe
from isthmus.viz import pyplot, save_figure

TRUTH_FRAC = 0.2
N_TRUTH = 200
ARCH = dict(n_layers=2, n_heads=8, d_model=64, attn_only=True)  # 16 heads
TASKS: dict[str, dict[str, Any]] = {
    "induction": dict(task_kwargs=dict(vocab=24, half=8), epochs=6),
    "greater_than": dict(task_kwargs={}, epochs=6),
    "docstring": dict(task_kwargs={}, epochs=6),
}
PAPER = dict(d_sae=200, l1=0.02, n_train_prompts=10, epochs=500, head_norm="none")
PAPER_L1 = {"docstring": 0.05}  # the authors' main_results.py (errata)
TUNED = dict(PAPER, head_norm="scale")
ARMS = ("sae_paper", "sae_tuned", "mean_ablation", "activation_patching", "attribution_patching", "output_difference")
LEARNED = 0.8  # held-out accuracy (greater-than: probability on valid years) a toy must reach to be judged


@dataclass
class Settings(RecipeSettings):
    tasks: tuple[str, ...] = tuple(TASKS)
    n_pairs: int = 50
    n_train: int = 2048
    train_epochs: int = 0  # 0: each task's own epoch count (TASKS)
    sae_epochs: int = 500
    n_truth: int = N_TRUTH
    planted_heads: int = 8  # per layer


def _toy(name: str, s: Settings):
    spec = TASKS[name]
    return train_toy(
        dict(
            task=name,
            n_train=s.n_train,
            epochs=s.train_epochs or spec["epochs"],
            batch_size=64,
            task_kwargs=spec["task_kwargs"],
            seed=0,
        ),
        dict(ARCH),
    )


def task_score(metrics: dict[str, float]) -> float:
    """How well a toy learned its task: probability on valid years for greater-than, else accuracy."""
    return float(metrics["p_greater"] if "p_greater" in metrics else metrics["acc"])


def setting(name: str, s: Settings, seed: int) -> dict[str, Any]:
    """Model, method prompts (pairs), truth and task score of one setting."""
    if name == "planted":
        pc = planted_induction(seed=seed, n_heads=s.planted_heads)
        pos, neg, mask = induction_pairs(s.n_pairs, seed=100 + seed)
        truth = np.array([(L, h) in pc.circuit for L in range(2) for h in range(pc.model.cfg.n_heads)])
        return dict(model=pc.model, pos=pos, neg=neg, mask=mask, truth=truth, task_score=1.0)
    spec = TASKS[name]
    run = _toy(name, s)
    tp, tn, tm = task_pairs(name, s.n_truth, seed=10_000, **spec["task_kwargs"])
    ref = mean_ablation(run.model, tp, tn, tm).scores
    pos, neg, mask = task_pairs(name, s.n_pairs, seed=100 + seed, **spec["task_kwargs"])
    return dict(
        model=run.model,
        pos=pos,
        neg=neg,
        mask=mask,
        truth=ref >= TRUTH_FRAC * ref.max(),
        task_score=task_score(run.metrics),
    )


def _arm(name: str):
    def arm(s: Settings, seed: int, data: dict[str, dict[str, Any]]) -> Measured:
        m: dict[str, float] = {}
        scores = {}
        for sname, st in data.items():
            if name.startswith("sae_"):
                kw: dict[str, Any] = dict(TUNED if name == "sae_tuned" else PAPER, epochs=s.sae_epochs)
                kw["l1"] = PAPER_L1.get(sname, kw["l1"])
                res = find_circuit(st["model"], st["pos"], st["neg"], seed=seed, **kw)
                sc, n_fwd = res.node_scores, res.timing["n_forward"]
            else:
                r = BASELINES[name](st["model"], st["pos"], st["neg"], st["mask"])
                sc, n_fwd = r.scores, r.n_forward
            rep = circuit_report(sc, st["truth"])
            m[f"{sname}/roc_auc"] = rep["roc_auc"]
            m[f"{sname}/n_forward"] = float(n_fwd)
            scores[sname] = (np.asarray(sc).tolist(), np.asarray(st["truth"]).tolist())
        names = list(data)
        m["roc_auc"] = float(np.mean([m[f"{n}/roc_auc"] for n in names]))
        m["log10_forward"] = float(np.mean([math.log10(max(m[f"{n}/n_forward"], 1)) for n in names]))
        m["tasks_learned"] = float(np.mean([data[n]["task_score"] >= LEARNED for n in names]))
        m["min_task_score"] = float(min(data[n]["task_score"] for n in names))
        return Measured(metrics=m, info={"scores": scores})

    return arm


@register_recipe
class SaeCircuits(Recipe):
    slug = "sae-circuits"
    paper = Paper(
        "Sparse Autoencoders Enable Scalable and Reliable Circuit Identification in Language Models", "2405.12522"
    )
    claim = (
        "Discrete codes (argmax latents) of one small SAE, with the paper's settings, trained on the "
        "position-averaged attention-head outputs of 10 prompts identify the heads of a circuit (node ROC-AUC "
        "~0.86) about as well as patching-based discovery, with far fewer forward passes."
    )
    Settings: TypeAlias = Settings
    modes = {
        "smoke": Settings(
            seeds=1, tasks=("induction",), n_pairs=12, n_train=256, train_epochs=1, sae_epochs=30, n_truth=24
        ),
        "quick": Settings(seeds=5),
        "record": Settings(seeds=8, n_pairs=100),
        "full": Settings(seeds=10, n_pairs=250, n_train=4096, n_truth=500),
    }
    ours = "sae_paper"
    gates = (
        Gate(
            "node ROC-AUC vs activation patching",
            "roc_auc",
            "sae_paper",
            "activation_patching",
            kind="non_inferiority",
            effect=0.05,
            headline=True,
            why="'as well as patching': within 0.05 AUC, less than one swapped truth/non-truth pair per setting",
        ),
        Gate(
            "node ROC-AUC vs attribution patching",
            "roc_auc",
            "sae_paper",
            "attribution_patching",
            kind="non_inferiority",
            effect=0.05,
            why="the cheap gradient baseline, same margin",
        ),
        Gate(
            "node ROC-AUC reaches 0.8",
            "roc_auc",
            "sae_paper",
            0.8,
            effect=0.0,
            why="the paper reports 0.86-0.87 on its three tasks; 0.8 leaves room for toy noise",
        ),
    )
    preconditions = (
        Precondition(
            "every toy learned its task",
            "sae_paper",
            "tasks_learned",
            ">=",
            1.0,
            over="every",
            why=f"a toy below {LEARNED} held-out accuracy has no circuit to find (the old IOI toy: 0.525)",
        ),
    )

    def data(self, settings: Settings, seed: int) -> dict[str, dict[str, Any]]:
        return {name: setting(name, settings, seed) for name in ("planted", *settings.tasks)}

    def arms(self, settings: Settings):
        return {a: _arm(a) for a in ARMS}

    def describe(self, settings: Settings) -> dict[str, Any]:
        return {
            "arch": ARCH,
            "tasks": {t: TASKS[t] for t in settings.tasks},
            "sae_paper": PAPER,
            "sae_paper_l1": PAPER_L1,
            "sae_tuned": TUNED,
            "truth_frac": TRUTH_FRAC,
            "learned_threshold": LEARNED,
            "truth": "planted: by construction; trained: |mean-ablation change| >= truth_frac x max on n_truth "
            "held-out pairs (so mean_ablation is near-perfect there by construction)",
            "cost": "forward passes of one prompt (a backward counts as one): the SAE needs one per prompt "
            "(2 x n_pairs); node-level activation patching needs about one per head per pair",
            "deviations": [
                "toy models (16 heads) instead of GPT-2 small",
                "decoder atoms unit-norm (standard) rather than the authors' per-output-dimension rows",
                "no edge-level (ACDC) baseline; node-level patching instead",
                "no robustness sweep over L1 / d_sae (CPU budget)",
            ],
        }

    changes = (
        "Pre-frame: the gated arm used head_norm='scale', tuned on the planted model of seed 0 (an evaluation "
        "setting); a wall-clock check that could not pass at 8 heads; an IOI toy that never learned IOI (0.525); "
        "2 seeds -> 'not reproduced'. The untuned paper arm scored higher on every trained task.",
        "After the audit (issue 18): the paper's settings are gated (d_sae 200, λ 0.02, 0.05 on docstring, codes on "
        "every prompt, per the errata); 16 heads per model; IOI dropped; a task-learned precondition; cost counted "
        "in forward passes and reported (it follows from the counts, so it is not a gate); the L1/d_sae sweep "
        "dropped for CPU time; gates on paired per-seed differences.",
    )

    def figures(self, settings: Settings, cells, out_dir: Path) -> list[str]:
        plt = pyplot()
        first = {a: next(iter(cells[a].values())).info["scores"] for a in ARMS}
        names = list(first["sae_paper"])
        fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.2), squeeze=False)
        for ax, name in zip(axes[0], names):
            truth = np.asarray(first["sae_paper"][name][1], dtype=bool)
            for arm in ARMS:
                fpr, tpr = roc_curve_points(np.asarray(first[arm][name][0]), truth)
                ax.plot(fpr, tpr, label=arm, lw=2.2 if arm.startswith("sae") else 1.0)
            ax.plot([0, 1], [0, 1], "k:", lw=0.8)
            ax.set_title(f"{name} (|truth|={int(truth.sum())}/{len(truth)})", fontsize=8)
            ax.set_xlabel("FPR", fontsize=7)
        axes[0][0].set_ylabel("TPR", fontsize=7)
        axes[0][-1].legend(fontsize=6, loc="lower right")
        save_figure(fig, out_dir / "roc_curves.png", dpi=90)
        return ["roc_curves.png"]
