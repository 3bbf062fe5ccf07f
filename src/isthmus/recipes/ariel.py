"""Seed 31 — AriEL: arithmetic volume coding gives a latent space whose random points decode to varied, correct text.

Celotti et al., "AriEL: volume coding for sentence generation" (arXiv 2003.13600). A GRU language model trained on
sentences of a small context-free grammar of indoor scenes partitions ``[0, 1]^16`` into one box per sentence
(``isthmus.bottlenecks.ariel.ArithmeticVolumeCoder``, no training of its own). We decode random points and
measure the share of grammatical sentences, of distinct grammatical sentences, their novelty with respect to the
training set, and the exact round trip of held-out sentences; against a GRU sequence AE (z = 16, samples from a
Gaussian fitted to its training codes) and GRU sequence VAEs (z = 16, samples from N(0, I)): ``vae_bowman`` with
KL annealing + word dropout as in the paper's baseline (it collapses here), and ``vae`` with free bits added
(0.5 nats per dimension), the stronger baseline that gates the verdict; plus plain ancestral sampling from
the same LM as the control the notes ask for: AriEL on uniform
points *is* ancestral sampling, so the two should tie; what AriEL adds is an exact, invertible code.

Data: the grammar below (21 words, 57,840 sentences, all ≤ 9 words). Training sentences come from a *biased*
probabilistic version of it (skewed nouns, fewer adjectives, rule weights 0.6/0.1/0.3); held-out sentences are
uniform over the language. The data are drawn once (seed 0); models are trained per seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence, TypeAlias

import numpy as np
import torch

from isthmus.bottlenecks.ariel import ArithmeticVolumeCoder, BigramLM
from isthmus.models.ariel import (
    SPECIAL,
    GRULanguageModel,
    GRUSeqAutoencoder,
    fit_sequence_model,
    sample_lm,
)
from isthmus.recipes.base import Paper, Recipe, RecipeSettings
from isthmus.recipes.gates import Check, Gate, Measured, Precondition, plateaued
from isthmus.recipes.registry import register_recipe
from isthmus.viz import pyplot, save_figure, seed_bars

DET, ADJ = ("the", "a"), ("red", "blue", "big", "small")
NOUN, PREP = ("chair", "table", "lamp", "bed", "sofa", "cup"), ("on", "under", "near", "behind")
VERB = ("sits", "stands", "lies")
WORDS = DET + ADJ + NOUN + PREP + VERB + ("is", "?")
WID = {w: i + SPECIAL for i, w in enumerate(WORDS)}
VOCAB = SPECIAL + len(WORDS)
MAX_LEN, LATENT = 12, 16


@dataclass
class Settings(RecipeSettings):
    n_train: int = 3000
    n_heldout: int = 300
    n_samples: int = 2000
    emb: int = 32
    hidden: int = 64
    lm_epochs: int = 10
    ae_epochs: int = 20


ARMS = ("ariel", "lm_sampling", "vae", "vae_bowman", "ae")
# baseline -> (variational, word dropout, free bits in nats per latent dimension)
SEQ_AES: dict[str, tuple[bool, float, float]] = {
    "vae": (True, 0.25, 0.5),
    "vae_bowman": (True, 0.25, 0.0),
    "ae": (False, 0.0, 0.0),
}
AE_BATCH, AE_LR = 128, 5e-3


# ---------------------------------------------------------------- grammar
def _np(rng: np.random.Generator, biased: bool) -> list[str]:
    noun_p = np.array([0.4, 0.25, 0.15, 0.1, 0.06, 0.04]) if biased else np.ones(6) / 6
    use_adj = rng.random() < (0.3 if biased else 0.8)  # uniform: 4 of 5 NP forms carry an adjective
    return [DET[rng.integers(2)]] + ([ADJ[rng.integers(4)]] if use_adj else []) + [NOUN[rng.choice(6, p=noun_p)]]


def _pp(rng: np.random.Generator, biased: bool) -> list[str]:
    return [PREP[rng.integers(4)]] + _np(rng, biased)


def sample_sentence(rng: np.random.Generator, biased: bool) -> list[str]:
    """One sentence; ``biased=False`` is uniform over the 57,840 sentences of the language."""
    counts = np.array([60 * 3 * 240, 60 * 4, 60 * 240], dtype=float)  # NP V PP | NP is ADJ | is NP PP ?
    rule = rng.choice(3, p=np.array([0.6, 0.1, 0.3]) if biased else counts / counts.sum())
    if rule == 0:
        return _np(rng, biased) + [VERB[rng.integers(3)]] + _pp(rng, biased)
    if rule == 1:
        return _np(rng, biased) + ["is", ADJ[rng.integers(4)]]
    return ["is"] + _np(rng, biased) + _pp(rng, biased) + ["?"]


def _parse_np(w: Sequence[str], i: int) -> int:
    """End index of an NP starting at i, or -1."""
    if i < len(w) and w[i] in DET:
        i += 1
        if i < len(w) and w[i] in ADJ:
            i += 1
        if i < len(w) and w[i] in NOUN:
            return i + 1
    return -1


def _parse_pp(w: Sequence[str], i: int) -> int:
    return _parse_np(w, i + 1) if i < len(w) and w[i] in PREP else -1


def is_grammatical(w: Sequence[str]) -> bool:
    """Exact recogniser of the grammar (S → NP V PP | NP is ADJ | is NP PP ?)."""
    if w and w[0] == "is":
        j = _parse_np(w, 1)
        j = _parse_pp(w, j) if j > 0 else -1
        return j > 0 and j == len(w) - 1 and w[j] == "?"
    j = _parse_np(w, 0)
    if j < 0 or j >= len(w):
        return False
    if w[j] == "is":
        return len(w) == j + 2 and w[j + 1] in ADJ
    return w[j] in VERB and _parse_pp(w, j + 1) == len(w)


def to_ids(words: Sequence[str]) -> list[int]:
    return [WID[x] for x in words]


def to_words(ids: Sequence[int]) -> list[str]:
    return [WORDS[i - SPECIAL] if i >= SPECIAL else "<unk>" for i in ids]


@lru_cache(maxsize=2)
def make_data(n_train: int, n_heldout: int, seed: int = 0) -> dict[str, list[list[int]]]:
    rng = np.random.default_rng(seed)
    train = [to_ids(sample_sentence(rng, True)) for _ in range(n_train)]
    heldout = [to_ids(sample_sentence(rng, False)) for _ in range(n_heldout)]
    return {"train": train, "heldout": heldout}


# ---------------------------------------------------------------- scoring
def sample_scores(samples: list[list[int]], ended: np.ndarray, train: set[tuple[int, ...]]) -> dict[str, float]:
    n = len(samples)
    valid = [tuple(s) for s, e in zip(samples, ended) if e and is_grammatical(to_words(s))]
    distinct_valid = set(valid)
    return {
        "valid_unique": len(distinct_valid) / n,
        "valid": len(valid) / n,
        "unique": len({tuple(s) for s in samples}) / n,
        "novel": len(distinct_valid - train) / max(1, len(distinct_valid)),
        "ended": float(np.mean(ended)),
    }


def _ended(samples: list[list[int]]) -> np.ndarray:
    return np.array([len(s) < MAX_LEN for s in samples])


def seq_autoencoder_arm(arm: str):
    """Train the sequence AE/VAE of ``arm`` on one seed; sample latents; decode by SAMPLING (temperature 1, as
    AriEL samples by construction) and, reported alongside, greedily."""
    variational, word_dropout, free_bits = SEQ_AES[arm]

    def fn(s: Settings, seed: int, d: dict) -> Measured:
        torch.manual_seed(seed)
        steps = s.ae_epochs * -(-s.n_train // AE_BATCH)
        m = GRUSeqAutoencoder(
            VOCAB,
            LATENT,
            emb=s.emb,
            hidden=s.hidden,
            variational=variational,
            word_dropout=word_dropout,
            kl_anneal_steps=steps // 2,
            free_bits=free_bits,
        )
        loss = fit_sequence_model(m, d["train"], s.ae_epochs, seed, batch_size=AE_BATCH, lr=AE_LR)
        m.eval()
        g = torch.Generator().manual_seed(seed)
        n = s.n_samples
        if variational:
            z = torch.randn(n, LATENT, generator=g)
        else:  # Gaussian fitted to the training codes
            codes = m.encode(d["train"]).double()
            chol = torch.linalg.cholesky(torch.cov(codes.T) + 1e-6 * torch.eye(LATENT, dtype=torch.float64))
            z = (codes.mean(0) + torch.randn(n, LATENT, generator=g, dtype=torch.float64) @ chol.T).float()
        sampled = m.decode(z, MAX_LEN, generator=torch.Generator().manual_seed(seed + 1))
        greedy = m.decode(z, MAX_LEN)
        rec = m.decode(m.encode(d["heldout"]), MAX_LEN)
        metrics = {
            **sample_scores(sampled, _ended(sampled), d["train_set"]),
            **{f"{k}_greedy": v for k, v in sample_scores(greedy, _ended(greedy), d["train_set"]).items()},
            "recon_exact": float(np.mean([a == b for a, b in zip(rec, d["heldout"])])),
            "converged": float(plateaued(loss)),
        }
        return Measured(metrics=metrics, curves={"loss": loss})

    return fn


def ariel_arm(s: Settings, seed: int, d: dict) -> Measured:
    coder = ArithmeticVolumeCoder(d["lm"].as_step_lm(), dim=LATENT, max_len=MAX_LEN)
    out, ended = coder.decode_with_status(np.random.default_rng(seed).random((s.n_samples, LATENT)))
    exact = float(np.mean([a == b for a, b in zip(coder.decode(coder.encode(d["heldout"])), d["heldout"])]))
    return Measured(
        metrics={
            **sample_scores(out, ended, d["train_set"]),
            "recon_exact": exact,
            "converged": float(plateaued(d["lm_loss"])),
        },
        curves={"lm_loss": d["lm_loss"]},
    )


def lm_sampling_arm(s: Settings, seed: int, d: dict) -> Measured:
    out = sample_lm(d["lm"], s.n_samples, MAX_LEN, torch.Generator().manual_seed(seed))
    return Measured(metrics=sample_scores(out, _ended(out), d["train_set"]))


def precision_sweep(lengths: Sequence[int], dims: Sequence[int], n: int = 100, seed: int = 0) -> dict[int, list[float]]:
    """Round-trip failure rate of float64 AriEL under a uniform LM over the 21 words (log2 21 ≈ 4.4 bits/token)."""
    t = np.zeros((VOCAB, VOCAB))
    t[:, SPECIAL:] = 1.0
    t[:, 2] = 1e-3  # EOS rarely, so long sentences stay possible
    lm = BigramLM(t / t.sum(1, keepdims=True), bos=1)
    rng = np.random.default_rng(seed)
    out: dict[int, list[float]] = {}
    for d in dims:
        coder = ArithmeticVolumeCoder(lm, dim=d, max_len=max(lengths))
        out[d] = []
        for L in lengths:
            s = [list(rng.integers(SPECIAL, VOCAB, size=L)) for _ in range(n)]
            out[d].append(float(np.mean([a != b for a, b in zip(coder.decode(coder.encode(s)), s)])))
    return out


@register_recipe
class Ariel(Recipe):
    slug = "ariel"
    paper = Paper("AriEL: volume coding for sentence generation", "2003.13600")
    claim = (
        "Decoding uniformly random points of AriEL's latent cube (a language model's probabilities laid out as "
        "nested boxes) yields a wider variety of correct sentences than sampling the latent space of a sequence "
        "VAE or AE, and every sentence round-trips exactly."
    )
    Settings: TypeAlias = Settings
    modes = {
        "smoke": Settings(
            seeds=1, n_train=300, n_heldout=60, n_samples=200, emb=16, hidden=32, lm_epochs=2, ae_epochs=2
        ),
        "quick": Settings(seeds=4, lm_epochs=6, ae_epochs=12),
        "record": Settings(seeds=8, lm_epochs=30, ae_epochs=60),
        "full": Settings(seeds=10, n_train=5000, n_heldout=1000, hidden=128, lm_epochs=20, ae_epochs=40),
    }
    ours = "ariel"
    gates = (
        Gate(
            "more valid distinct sentences than the VAE",
            "valid_unique",
            "ariel",
            "vae",
            effect=0.02,
            headline=True,
            why="2 % of the samples: the smallest variety gain worth a new latent space",
        ),
        Gate(
            "more valid distinct sentences than the AE",
            "valid_unique",
            "ariel",
            "ae",
            effect=0.02,
            headline=True,
            why="the same margin against the AE (Gaussian fitted to its codes), both decoded by sampling",
        ),
    )
    preconditions = (
        Precondition(
            "the LM learned the grammar",
            "lm_sampling",
            "valid",
            ">=",
            0.5,
            why="AriEL inherits the LM; below half grammatical samples it is not a test of the coding",
        ),
        Precondition(
            "LM training converged",
            "ariel",
            "converged",
            ">=",
            1.0,
            over="every",
            why="plateaued() on the LM's per-epoch loss",
        ),
        Precondition(
            "VAE training converged",
            "vae",
            "converged",
            ">=",
            1.0,
            over="every",
            why="the gated baselines get the same chance",
        ),
        Precondition(
            "AE training converged",
            "ae",
            "converged",
            ">=",
            1.0,
            over="every",
            why="the gated baselines get the same chance",
        ),
    )

    def data(self, s: Settings, seed: int) -> dict:
        d: dict[str, Any] = dict(make_data(s.n_train, s.n_heldout))
        torch.manual_seed(seed)
        lm = GRULanguageModel(VOCAB, emb=s.emb, hidden=s.hidden)
        d["lm_loss"] = fit_sequence_model(lm, d["train"], s.lm_epochs, seed)
        d["lm"] = lm.eval()
        d["train_set"] = {tuple(x) for x in d["train"]}
        return d

    def arms(self, s: Settings):
        return {
            "ariel": ariel_arm,
            "lm_sampling": lm_sampling_arm,
            **{a: seq_autoencoder_arm(a) for a in ("vae", "vae_bowman", "ae")},
        }

    def checks(self, s: Settings, cells) -> list[Check]:
        """The control: AriEL on uniform points IS ancestral sampling of its LM, so the two must tie."""
        gap = {
            k: float(
                np.mean([cells["ariel"][i].metrics[k] - cells["lm_sampling"][i].metrics[k] for i in cells["ariel"]])
            )
            for k in ("valid", "unique")
        }
        return [
            Check(
                "control: AriEL ties ancestral LM sampling",
                all(abs(v) <= 0.03 for v in gap.values()),
                f"mean AriEL − LM sampling: valid {gap['valid']:+.3f}, unique {gap['unique']:+.3f} (|·| ≤ 0.03)",
            )
        ]

    def describe(self, s: Settings) -> dict[str, Any]:
        sweep = precision_sweep([4, 8, 12, 16, 32, 64], dims=(1, 4, 16), n=20)
        return {
            "latent_dim": LATENT,
            "max_len": MAX_LEN,
            "vocab": list(WORDS),
            "grammar": "S -> NP V PP | NP is ADJ | is NP PP ? ; NP -> DET [ADJ] N ; PP -> P NP (57,840 sentences)",
            "data": "train: biased PCFG samples; heldout: uniform over the language; drawn once with seed 0",
            "samplers": {
                "ariel": "U[0,1]^16 decoded with the GRU LM (float64)",
                "lm_sampling": "ancestral sampling from the same LM",
                "vae / vae_bowman": "N(0, I), decoded by sampling (greedy reported as *_greedy)",
                "ae": "Gaussian fitted to training codes, decoded by sampling (greedy as *_greedy)",
            },
            "seq_autoencoders": {
                a: {"variational": v, "word_dropout": w, "free_bits_nats_per_dim": f}
                for a, (v, w, f) in SEQ_AES.items()
            },
            "optimizer": f"adam, grad clip 5; LM lr 3e-3 batch 64; AE/VAE lr {AE_LR} batch {AE_BATCH}",
            "precision_sweep (float64, uniform 21-word LM; failure rate by length 4..64)": {
                str(d): r for d, r in sweep.items()
            },
            "deviations": [
                "toy grammar only: the paper's GuessWhat?! experiment and Transformer baseline are omitted",
                "the encoder stops at EOS (authors' code runs over all padded positions)",
                "cube side 1 (authors: 1 to 1e6 by class)",
            ],
        }

    def figures(self, s: Settings, cells, out_dir: Path) -> list[str]:
        plt = pyplot()
        keys = ("valid_unique", "valid", "unique", "novel")
        arms = list(cells)
        fig, axes = plt.subplots(1, len(keys), figsize=(2.8 * len(keys), 3.0))
        for ax, k in zip(axes, keys):
            seed_bars(ax, {a: [m.metrics[k] for m in cells[a].values()] for a in arms}, highlight="ariel", rotation=45)
            for i, a in enumerate(arms):
                g = [m.metrics.get(f"{k}_greedy") for m in cells[a].values()]
                if g[0] is not None:
                    ax.plot(i, np.mean(g), "bx", label="greedy decoding" if (i, k) == (2, keys[0]) else None)
            ax.set_ylim(0, 1.05)
            ax.set_title(k, fontsize=9)
        axes[0].legend(fontsize=6)
        save_figure(fig, out_dir / "generation.png", dpi=90)
        return ["generation.png"]

    changes = (
        "Before the frame (quick, 3 seeds): 'reproduced' — valid-unique AriEL 0.748 vs VAE 0.545 and vs AE by "
        "+0.023 (per seed +0.026 / +0.029 / +0.014), just over the fixed 0.02 margin. The audit's extra seeds 3-7 "
        "gave +0.044 / +0.033 / +0.026 / -0.002 / +0.017: the AE gate depended on the seed draw. Now ≥ 8 seeds, "
        "paired intervals, and the AE/VAE decode by sampling like AriEL (greedy decoding is reported as *_greedy): "
        "greedy decoding had depressed the baselines' uniqueness.",
        "The round-trip gate (recon_exact = 1) could not fail with ≤ 9-token sentences at D = 16; it is a unit test "
        "now (tests/test_recipe_ariel.py) and still reported.",
        "The LM-sampling control moved from the reason text to a check: if it does not tie AriEL, the verdict is "
        "inconclusive.",
        "LM and AE/VAE epochs raised (quick 6/12 → record 10/20) so the convergence preconditions can hold.",
        "Session 5, after the record result (inconclusive: 'VAE training converged' failed on seeds 0 and 7, "
        "vae.converged [0 1 1 1 1 1 1 0]): the VAE loss rises while the KL weight anneals (first half of training) "
        "and was still falling when training stopped (seed 0: 1.717 at epoch 10 -> 1.643 at 20; last-window change "
        "2.5 % and 2.4 % of the range on seeds 0 / 7 vs the 2 % tolerance). Epochs chosen on the VAE's plateaued() "
        "margin alone, seeds 0 and 7 (the failing ones, training data): 30 epochs 2.1 %, 40: 1.0 % / 1.3 %, "
        "60: 0.2 % / 0.4 %, 80: 0.5 % (seed 0; the probe also printed the VAE's valid_unique, not used). "
        "Record now trains every sequence AE/VAE 60 epochs (KL annealing still over the first half) and, for "
        "equal effort in the gates, the LM 30 (both x3, keeping the 1:2 ratio); nothing else changed.",
    )
