"""Seed 32 — MoNA: task-specific data selection by SAE feature activations.

Ma et al., "Task-Specific Data Selection for Instruction Tuning via Monosemantic Neuronal Activations"
(arXiv 2503.15573). Pool examples are embedded as mean-pooled SAE codes of a selection model's token
activations and ranked by generalized Jaccard similarity to the target task's prototype
(:mod:`isthmus.interp.selection`); the top share is kept.

Analogue here (LLM instruction tuning is out of reach): a **planted multi-task token pool**. Every task
is a sparse random Markov chain over its topic's keyword tokens plus a shared vocabulary. The target task
and its **distractor** task use the *same* keyword set and share part of their transitions (the topic's
chain); the other tasks use other keyword sets. Nothing is equalised to blind a baseline. The selection model is a one-layer
:class:`~isthmus.interp.toy.ToyTransformer` trained briefly by next-token prediction on the pool; a TopK
SAE is trained on its residual-stream token activations. Metric: the on-task share (precision) of the
selected set, for MoNA, SAE codes + cosine (metric ablation), raw activations + cosine (NAS), TF-IDF and
BM25 (unigram and unigram+bigram) and random.
"""

from __future__ import annotations

import math
from pathlib import Path
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import torch

from isthmus.interp import selection as sel
from isthmus.interp.hooks import run_with_cache
from isthmus.interp.sae import SAEConfig, SAETrainConfig, SparseAutoEncoder, train_sae
from isthmus.interp.toy import ToyConfig, ToyTransformer
from isthmus.recipes.base import Paper, Recipe, RecipeSettings
from isthmus.recipes.gates import Check, Gate, Measured, Precondition, plateaued
from isthmus.recipes.registry import register_recipe
from isthmus.viz import pyplot, save_figure, seed_bars

POINT = "blocks.0.hook_resid_post"
MARGIN = 0.05  # absolute precision margin MoNA must clear over a baseline to count as beating it
METHODS = ("mona", "sae_cosine", "raw_cosine", "tfidf", "tfidf_bigram", "bm25", "bm25_bigram", "random")


def make_pool(cfg: Any, seed: int) -> dict[str, Any]:
    """Token sequences of 2·n_topics tasks (task 2i and 2i+1 share topic i's keywords); task 0 is the target,
    task 1 its distractor. Returns pool tokens/labels, held-out target examples and the vocabulary.

    Each task is a Markov chain over its topic's tokens (shared + keywords): a mixture, with weight
    ``cfg.shared_transitions``, of the topic's chain and the task's own sparse random chain. Nothing is
    equalised: target and distractor differ a little in unigram and more in bigram statistics, as two
    related real tasks would, so no selector (lexical or model-based) is blind by construction."""
    g = np.random.default_rng(seed)
    nt, nk, ns, length = cfg.n_topics, cfg.n_keywords, cfg.n_shared, cfg.length
    vocab = [f"s{i}" for i in range(ns)] + [f"k{t}_{j}" for t in range(nt) for j in range(nk)]
    n_tasks = 2 * nt
    v = len(vocab)

    def chain(tokens: np.ndarray) -> np.ndarray:
        trans = np.zeros((v, v))
        trans[np.ix_(tokens, tokens)] = g.dirichlet(np.full(len(tokens), cfg.concentration), size=len(tokens))
        return trans

    chains = []
    for topic in range(nt):
        tokens = np.r_[np.arange(ns), ns + topic * nk + np.arange(nk)]
        base = chain(tokens)
        for _ in range(2):
            w = cfg.shared_transitions
            chains.append((tokens, w * base + (1 - w) * chain(tokens)))

    def sample(task: int, n: int) -> np.ndarray:
        tokens, trans = chains[task]
        out = np.empty((n, length), dtype=np.int64)
        out[:, 0] = g.choice(tokens, n)
        for t in range(1, length):
            cum = trans[out[:, t - 1]].cumsum(1)
            out[:, t] = (g.random((n, 1)) * cum[:, -1:] < cum).argmax(1)
        return out

    pool = np.concatenate([sample(task, cfg.per_task) for task in range(n_tasks)])
    labels = np.repeat(np.arange(n_tasks), cfg.per_task)
    return {
        "pool": torch.from_numpy(pool),
        "labels": labels,
        "target": torch.from_numpy(sample(0, cfg.n_target)),
        "vocab": vocab,
        "n_tasks": n_tasks,
    }


def train_lm(tokens: torch.Tensor, vocab_size: int, cfg: Any, seed: int) -> tuple[ToyTransformer, list[float]]:
    """The selection model: a 1-layer ToyTransformer trained by next-token prediction on the pool."""
    torch.manual_seed(seed)
    model = ToyTransformer(
        ToyConfig(vocab_size=vocab_size, n_ctx=cfg.length, n_layers=1, d_model=cfg.d_model, n_heads=4, seed=seed)
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    model.train()
    losses = []
    for _ in range(cfg.lm_steps):
        batch = tokens[torch.randint(0, len(tokens), (64,), generator=g)]
        loss = model.compute_loss(batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return model.eval(), losses


@torch.no_grad()
def token_acts(model: ToyTransformer, tokens: torch.Tensor) -> torch.Tensor:
    """(N, T, d) residual activations at :data:`POINT`."""
    return torch.cat([run_with_cache(model, tokens[i : i + 256], [POINT])[POINT] for i in range(0, len(tokens), 256)])


@dataclass
class Settings(RecipeSettings):
    n_topics: int = 4
    n_keywords: int = 8
    n_shared: int = 24
    per_task: int = 150
    n_target: int = 20
    length: int = 24
    shared_transitions: float = 0.5
    concentration: float = 0.3
    d_model: int = 48
    lm_steps: int = 300
    sae_steps: int = 400
    expansion: int = 8
    k: int = 8
    keep_share: float = 0.1


def shared(s: Settings, seed: int) -> dict[str, Any]:
    """Per seed: the pool, the trained selection model, its activations and the TopK SAE."""
    data = make_pool(s, seed)
    pool, target = data["pool"], data["target"]
    model, lm_losses = train_lm(pool, len(data["vocab"]), s, seed)
    a_pool, a_tgt = token_acts(model, pool), token_acts(model, target)
    n, t, d = a_pool.shape
    sae = SparseAutoEncoder(
        SAEConfig(
            d_in=d,
            d_sae=d * s.expansion,
            bottleneck="sae_topk",
            bottleneck_config={"k": s.k, "dead_steps": 50},
            aux_k=d,
        )
    )
    hist = train_sae(
        sae,
        torch.cat([a_pool, a_tgt]).reshape(-1, d),
        SAETrainConfig(steps=s.sae_steps, batch_size=512, lr=2e-3, seed=seed, log_every=max(1, s.sae_steps // 40)),
    )
    with torch.no_grad():
        unigram = torch.bincount(pool.reshape(-1), minlength=len(data["vocab"])).float()
        p = unigram / unigram.sum()
        unigram_ce = float(-(p[p > 0] * p[p > 0].log()).sum())
        lm_ce = float(model.compute_loss(pool[:512]).loss)
    return {
        **data,
        "a_pool": a_pool,
        "a_tgt": a_tgt,
        "sae": sae,
        "sae_curve": [r["loss"] for r in hist],
        "lm_gain": unigram_ce - lm_ce,
        "lm_curve": lm_losses,
    }


def _docs(data: dict[str, Any], toks: torch.Tensor) -> list[str]:
    return [" ".join(data["vocab"][i] for i in row) for row in toks.tolist()]


def method_scores(name: str, data: dict[str, Any], seed: int) -> np.ndarray:
    """Selection score of every pool example under method ``name`` (higher = keep)."""
    if name in ("mona", "sae_cosine"):
        a_pool, a_tgt, sae = data["a_pool"], data["a_tgt"], data["sae"]
        n, t, d = a_pool.shape
        z_pool = sel.encode_pooled(sae, a_pool.reshape(-1, d), torch.arange(n).repeat_interleave(t), n)
        z_tgt = sel.encode_pooled(sae, a_tgt.reshape(-1, d), torch.arange(len(a_tgt)).repeat_interleave(t), len(a_tgt))
        return sel.similarity_scores(z_pool, z_tgt, "jaccard" if name == "mona" else "cosine").numpy()
    if name == "raw_cosine":
        return sel.similarity_scores(data["a_pool"].mean(1), data["a_tgt"].mean(1), "cosine").numpy()
    if name == "random":
        return sel.random_scores(len(data["pool"]), seed)
    pool_docs, tgt_docs = _docs(data, data["pool"]), _docs(data, data["target"])
    ngrams = (1, 2) if name.endswith("bigram") else (1, 1)
    if name.startswith("tfidf"):
        return sel.tfidf_scores(pool_docs, tgt_docs, ngram_range=ngrams)
    if name.startswith("bm25"):
        return sel.bm25_scores(pool_docs, tgt_docs, ngram_range=ngrams)
    raise KeyError(f"unknown selection method {name!r}; methods are {METHODS}")


def _arm(name: str):
    def arm(s: Settings, seed: int, data: dict[str, Any]) -> Measured:
        chosen = sel.select_top(method_scores(name, data, seed), s.keep_share)
        m = {
            "precision": sel.on_task_share(chosen, data["labels"], 0),
            "distractor_share": sel.on_task_share(chosen, data["labels"], 1),
        }
        curves = {}
        if name == "mona":
            d = data["a_pool"].shape[-1]
            with torch.no_grad():
                m["sae_l0"] = float(
                    (data["sae"].encode(data["a_pool"].reshape(-1, d)[:4096]) > 0).sum(1).float().mean()
                )
            m["sae_converged"] = float(plateaued(data["sae_curve"]))
            m["lm_gain"] = data["lm_gain"]
            curves = {"sae_loss": data["sae_curve"], "lm_loss": data["lm_curve"]}
        return Measured(metrics=m, curves=curves)

    return arm


@register_recipe
class FeatureDataSelection(Recipe):
    slug = "feature-data-selection"
    paper = Paper(
        "Task-Specific Data Selection for Instruction Tuning via Monosemantic Neuronal Activations", "2503.15573"
    )
    claim = (
        "Ranking pool examples by the generalized Jaccard similarity of their mean-pooled SAE feature "
        "activations to a target task's examples selects more on-task data than raw-activation cosine "
        "(NAS) and lexical (TF-IDF/BM25) selection."
    )
    Settings: TypeAlias = Settings
    modes = {
        "smoke": Settings(
            seeds=1,
            n_topics=3,
            n_keywords=6,
            n_shared=12,
            per_task=40,
            n_target=10,
            length=16,
            d_model=32,
            lm_steps=30,
            sae_steps=60,
            expansion=4,
            k=4,
        ),
        "quick": Settings(seeds=5),
        "record": Settings(seeds=8, lm_steps=800, sae_steps=1200),
        "full": Settings(
            seeds=10,
            n_topics=8,
            n_keywords=12,
            n_shared=48,
            per_task=600,
            n_target=50,
            length=48,
            d_model=64,
            lm_steps=2000,
            sae_steps=3000,
            expansion=16,
            k=16,
            keep_share=0.05,
        ),
    }
    ours = "mona"
    gates = (
        Gate(
            "beats raw-activation cosine (NAS)",
            "precision",
            "mona",
            "raw_cosine",
            effect=MARGIN,
            headline=True,
            why="the paper's central claim is that monosemantic SAE features select better than raw neuron "
            "activations; 0.05 = 6 of 120 selected examples",
        ),
        Gate(
            "beats BM25 (unigram+bigram)",
            "precision",
            "mona",
            "bm25_bigram",
            effect=MARGIN,
            why="the strongest lexical baseline a referee would ask for, same margin",
        ),
        Gate(
            "beats TF-IDF (unigram+bigram)",
            "precision",
            "mona",
            "tfidf_bigram",
            effect=MARGIN,
            why="two-word TF-IDF scored 1.00 on the old pool; same margin",
        ),
        Gate(
            "beats BM25 (unigram)",
            "precision",
            "mona",
            "bm25",
            effect=MARGIN,
            why="the paper's lexical baseline, same margin",
        ),
    )
    preconditions = (
        Precondition(
            "selection model learned the pool",
            "mona",
            "lm_gain",
            ">=",
            0.1,
            over="every",
            why="next-token CE at least 0.1 nats below the unigram entropy: the model uses context",
        ),
        Precondition(
            "SAE training converged",
            "mona",
            "sae_converged",
            ">=",
            1.0,
            over="every",
            why="plateau test on the logged SAE loss",
        ),
    )

    def checks(self, settings: Settings, cells) -> list[Check]:
        means = {a: float(np.mean([m.metrics["precision"] for m in cells[a].values()])) for a in METHODS}
        best = max((a for a in METHODS if a != "random"), key=means.__getitem__)
        return [
            Check(
                "the task is solvable (positive control)",
                means[best] >= 0.3,
                f"best selector {best} precision {means[best]:.3f} (>= 0.3 needed; random keeps "
                f"{means['random']:.3f}): if none leaves chance the pool has no signal to select on",
            )
        ]

    def data(self, settings: Settings, seed: int) -> dict[str, Any]:
        return shared(settings, seed)

    def arms(self, settings: Settings):
        return {m: _arm(m) for m in METHODS}

    def describe(self, settings: Settings) -> dict[str, Any]:
        n_pool = 2 * settings.n_topics * settings.per_task
        return {
            "data": f"planted pool of {n_pool} examples, {2 * settings.n_topics} tasks (target = task 0, "
            f"distractor = task 1 with the same keywords, {settings.shared_transitions:g} of its "
            f"transitions shared); keep share {settings.keep_share} "
            f"({math.ceil(settings.keep_share * n_pool)} examples); {settings.n_target} held-out target "
            "examples",
            "point": POINT,
            "margin": MARGIN,
            "deviations": [
                "synthetic token pool and a 1-layer toy selection model instead of an LLM",
                "SAE trained on pool + target activations (the paper uses a pretrained SAE)",
                "no instruction tuning / downstream accuracy: selection precision only",
            ],
        }

    changes = (
        "Pre-frame: a first pool with random transitions let every selector, unigram TF-IDF included, score 1.0; the "
        "pool was redesigned (doubly stochastic chains: target and distractor with equal unigram statistics) and gave "
        "'reproduced' against unigram TF-IDF and raw cosine, while bigram TF-IDF (ungated) scored 1.00: the audit "
        "called the lexical gate a designed-in pass.",
        "After the audit (issue 18): a pool with nothing equalised (target and distractor share half of their "
        "transitions and their keywords; sparse random chains), and gates against unigram+bigram TF-IDF and BM25 "
        "(BM25 added to isthmus.interp.selection); SAE convergence and a learned selection model are preconditions.",
    )

    def figures(self, settings: Settings, cells, out_dir: Path) -> list[str]:
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(7.4, 3.4))
        for off, key, label, color in (
            (-0.2, "precision", "on-task share", "C0"),
            (0.2, "distractor_share", "distractor share", "C1"),
        ):
            values = {a: [m.metrics[key] for m in cells[a].values()] for a in METHODS}
            seed_bars(ax, values, offset=off, width=0.4, color=color, label=label)
        ax.set_ylim(0, 1)
        ax.set_ylabel("share of selected set")
        ax.set_title("feature-based data selection (seed 32); dots = seeds", fontsize=9)
        ax.legend(fontsize=7)
        save_figure(fig, out_dir / "selection_precision.png", dpi=90)
        return ["selection_precision.png"]
