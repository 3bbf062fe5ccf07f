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

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from isthmus.bottlenecks.ariel import ArithmeticVolumeCoder, BigramLM
from isthmus.models.ariel import SPECIAL, GRULanguageModel, GRUSeqAutoencoder, fit_sequence_model, sample_lm
from isthmus.recipes.base import Paper, Recipe, Result, summarize
from isthmus.recipes.registry import register_recipe
from isthmus.viz import pyplot, save_figure

DET, ADJ = ("the", "a"), ("red", "blue", "big", "small")
NOUN, PREP = ("chair", "table", "lamp", "bed", "sofa", "cup"), ("on", "under", "near", "behind")
VERB = ("sits", "stands", "lies")
WORDS = DET + ADJ + NOUN + PREP + VERB + ("is", "?")
WID = {w: i + SPECIAL for i, w in enumerate(WORDS)}
VOCAB = SPECIAL + len(WORDS)
MAX_LEN, LATENT = 12, 16
MODE_SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": dict(n_train=300, n_heldout=60, n_samples=200, emb=16, hidden=32, lm_epochs=2, ae_epochs=2),
    "quick": dict(n_train=3000, n_heldout=300, n_samples=2000, emb=32, hidden=64, lm_epochs=6, ae_epochs=12),
    "full": dict(n_train=5000, n_heldout=1000, n_samples=2000, emb=32, hidden=128, lm_epochs=20, ae_epochs=40),
}
ARMS = ("ariel", "lm_sampling", "vae", "vae_bowman", "ae")
# baseline -> (variational, word dropout, free bits in nats per latent dimension)
SEQ_AES: dict[str, tuple[bool, float, float]] = {
    "vae": (True, 0.25, 0.5), "vae_bowman": (True, 0.25, 0.0), "ae": (False, 0.0, 0.0)}
AE_BATCH, AE_LR = 128, 5e-3
HEADLINE = ("valid_unique", "valid", "unique", "novel", "recon_exact", "ended")
MARGIN = 0.02


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


def make_data(cfg: dict, seed: int = 0) -> dict[str, list[list[int]]]:
    rng = np.random.default_rng(seed)
    train = [to_ids(sample_sentence(rng, True)) for _ in range(cfg["n_train"])]
    heldout = [to_ids(sample_sentence(rng, False)) for _ in range(cfg["n_heldout"])]
    return {"train": train, "heldout": heldout}


# ---------------------------------------------------------------- scoring
def sample_scores(samples: list[list[int]], ended: np.ndarray, train: set[tuple[int, ...]]) -> dict[str, float]:
    n = len(samples)
    valid = [tuple(s) for s, e in zip(samples, ended) if e and is_grammatical(to_words(s))]
    distinct_valid = set(valid)
    return {"valid_unique": len(distinct_valid) / n, "valid": len(valid) / n,
            "unique": len({tuple(s) for s in samples}) / n,
            "novel": len(distinct_valid - train) / max(1, len(distinct_valid)), "ended": float(np.mean(ended))}


def _ended(samples: list[list[int]]) -> np.ndarray:
    return np.array([len(s) < MAX_LEN for s in samples])


def run_seed(data: dict, cfg: dict, seed: int) -> dict[str, dict[str, float]]:
    """Train the LM, AE and VAE on one seed; score the four generators on the same number of samples."""
    train_set = {tuple(s) for s in data["train"]}
    n, held = cfg["n_samples"], data["heldout"]
    torch.manual_seed(seed)
    lm = GRULanguageModel(VOCAB, emb=cfg["emb"], hidden=cfg["hidden"])
    fit_sequence_model(lm, data["train"], cfg["lm_epochs"], seed)
    coder = ArithmeticVolumeCoder(lm.as_step_lm(), dim=LATENT, max_len=MAX_LEN)
    rng = np.random.default_rng(seed)
    out, ended = coder.decode_with_status(rng.random((n, LATENT)))
    res = {"ariel": {**sample_scores(out, ended, train_set),
                     "recon_exact": float(np.mean([a == b for a, b in zip(coder.decode(coder.encode(held)), held)]))}}
    lm_out = sample_lm(lm, n, MAX_LEN, torch.Generator().manual_seed(seed))
    res["lm_sampling"] = {**sample_scores(lm_out, _ended(lm_out), train_set), "recon_exact": float("nan")}
    for arm, (variational, word_dropout, free_bits) in SEQ_AES.items():
        torch.manual_seed(seed)
        steps = cfg["ae_epochs"] * -(-cfg["n_train"] // AE_BATCH)
        m = GRUSeqAutoencoder(VOCAB, LATENT, emb=cfg["emb"], hidden=cfg["hidden"], variational=variational,
                              word_dropout=word_dropout, kl_anneal_steps=steps // 2, free_bits=free_bits)
        fit_sequence_model(m, data["train"], cfg["ae_epochs"], seed, batch_size=AE_BATCH, lr=AE_LR)
        g = torch.Generator().manual_seed(seed)
        if variational:
            z = torch.randn(n, LATENT, generator=g)
        else:  # Gaussian fitted to the training codes
            codes = m.encode(data["train"]).double()
            chol = torch.linalg.cholesky(torch.cov(codes.T) + 1e-6 * torch.eye(LATENT, dtype=torch.float64))
            z = (codes.mean(0) + torch.randn(n, LATENT, generator=g, dtype=torch.float64) @ chol.T).float()
        dec = m.decode(z, MAX_LEN)
        rec = m.decode(m.encode(held), MAX_LEN)
        res[arm] = {**sample_scores(dec, _ended(dec), train_set),
                    "recon_exact": float(np.mean([a == b for a, b in zip(rec, held)]))}
    return res


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


def verdict(m: dict[str, dict[str, float]]) -> tuple[str, str]:
    """``m[arm][metric]`` = seed means. See ``Ariel.verdict_rule``."""
    a = m["ariel"]
    wins = {b: a["valid_unique"] - m[b]["valid_unique"] > MARGIN for b in ("vae", "ae")}
    exact = a["recon_exact"] == 1.0
    v = ("reproduced" if all(wins.values()) and exact
         else "partial" if any(wins.values()) else "not reproduced")
    parts = [f"valid-unique ariel {a['valid_unique']:.3f} vs {b} {m[b]['valid_unique']:.3f} ({'win' if w else 'no win'})"
             for b, w in wins.items()]
    parts.append(f"ariel held-out round trip {a['recon_exact']:.3f} ({'exact' if exact else 'NOT exact'})")
    c = m["lm_sampling"]
    tie = all(abs(a[k] - c[k]) <= 0.03 for k in ("valid", "unique"))
    parts.append(f"control LM sampling valid {c['valid']:.3f} / unique {c['unique']:.3f} vs ariel {a['valid']:.3f} / "
                 f"{a['unique']:.3f} ({'ties, as expected' if tie else 'does not tie'})")
    order = m["vae"]["valid_unique"] > m["ae"]["valid_unique"]
    parts.append(f"paper's order VAE > AE on valid-unique: {'yes' if order else 'no'}; Bowman VAE (no free bits) "
                 f"valid-unique {m['vae_bowman']['valid_unique']:.3f}")
    return v, "; ".join(parts)


@register_recipe
class Ariel(Recipe):
    slug = "ariel"
    paper = Paper("AriEL: volume coding for sentence generation", "2003.13600")
    claim = ("Decoding uniformly random points of AriEL's latent cube (a language model's probabilities laid out as "
             "nested boxes) yields a wider variety of correct sentences than sampling the latent space of a sequence "
             "VAE or AE, and every sentence round-trips exactly.")
    verdict_rule = (
        f"Seed means over {{n_samples}} random latent points per arm. valid_unique = distinct grammatical sentences "
        f"/ samples (grammar checked by an exact recogniser; sentences without EOS by {MAX_LEN} tokens count as "
        f"invalid). reproduced = AriEL's valid_unique exceeds both the VAE's and the AE's by more than {MARGIN} "
        "(the VAE with free bits; the Bowman VAE without them is reported, not gated) AND AriEL decodes its "
        "encoding of every held-out sentence exactly (recon_exact = 1.0); partial = AriEL "
        "beats at least one of them by that margin (whatever its round trip); not reproduced otherwise. The "
        "LM-sampling control is reported (it should tie AriEL within 0.03 on valid and unique, since AriEL on "
        "uniform points is ancestral sampling) but does not gate the verdict; nor does the paper's VAE > AE order."
    )

    def run(self, mode: str, seeds: Sequence[int], out_dir: Path) -> Result:
        cfg = MODE_SETTINGS[mode]
        data = make_data(cfg)
        per = {a: [] for a in ARMS}
        for s in seeds:
            for arm, scores in run_seed(data, cfg, s).items():
                per[arm].append(scores)
        summ = {a: {k: summarize([r[k] for r in rs]) for k in HEADLINE} for a, rs in per.items()}
        v, why = verdict({a: {k: x.mean for k, x in d.items()} for a, d in summ.items()})
        lengths = [4, 8, 12, 16, 24, 32, 48, 64] if mode != "smoke" else [4, 16, 32]
        sweep = precision_sweep(lengths, dims=(1, 4, 16), n=100 if mode != "smoke" else 20)
        figures = [self._plot_bars(summ, out_dir), self._plot_precision(lengths, sweep, out_dir)]
        rule_n = self.verdict_rule.replace("{n_samples}", str(cfg["n_samples"]))
        config = {"mode": mode, **cfg, "latent_dim": LATENT, "max_len": MAX_LEN, "vocab": list(WORDS),
                  "grammar": "S -> NP V PP | NP is ADJ | is NP PP ? ; NP -> DET [ADJ] N ; PP -> P NP (57,840 sentences)",
                  "data": "train: biased PCFG samples; heldout: uniform over the language; drawn once with seed 0",
                  "samplers": {"ariel": "U[0,1]^16 decoded with the GRU LM (float64)", "lm_sampling":
                               "ancestral sampling from the same LM", "vae": "N(0, I), greedy decoding",
                               "vae_bowman": "N(0, I), greedy decoding",
                               "ae": "Gaussian fitted to training codes, greedy decoding"},
                  "seq_autoencoders": {a: {"variational": v, "word_dropout": w, "free_bits_nats_per_dim": f}
                                       for a, (v, w, f) in SEQ_AES.items()},
                  "kl_annealing": "linear 0->1 over the first half of the steps; decoder sees z at every step",
                  "optimizer": f"adam, grad clip 5; LM lr 3e-3 batch 64; AE/VAE lr {AE_LR} batch {AE_BATCH}",
                  "verdict_rule": rule_n,
                  "precision_sweep": {"lengths": lengths, "failure_rate_by_dim": {str(d): r for d, r in sweep.items()}}}
        notes = [f"precision (float64, uniform 21-word LM, 4.4 bits/token): round-trip failure rate by sentence length "
                 f"{lengths}: " + "; ".join(f"D={d}: {r}" for d, r in sweep.items()) +
                 " - one dimension holds ~52 bits, so D=1 fails beyond ~12 tokens and D=16 holds ~190",
                 "grammar sentences are <= 9 words, so at D=16 each dimension receives at most one token here: the "
                 "round trip is far from the precision limit",
                 "coverage of the held-out set is not reported: 2,000 samples cover a negligible part of 57,840 sentences",
                 "lm_sampling has no encoder: its recon_exact is NaN by construction",
                 "the AE/VAE decode greedily; a sampled decoder would raise their uniqueness and lower validity"]
        return Result(recipe=self.slug, paper=self.paper, claim=self.claim, mode=mode, seeds=list(seeds),
                      metrics=summ["ariel"], baselines={a: summ[a] for a in ARMS if a != "ariel"}, verdict=v,
                      verdict_reason=why, config=config, figures=figures, notes=notes)

    @staticmethod
    def _plot_bars(summ: dict, out_dir: Path) -> str:
        plt = pyplot()

        keys = ("valid_unique", "valid", "unique", "novel", "recon_exact")
        fig, axes = plt.subplots(1, len(keys), figsize=(2.6 * len(keys), 3.0))
        for ax, k in zip(axes, keys):
            ax.bar(range(len(ARMS)), [summ[a][k].mean for a in ARMS], yerr=[summ[a][k].std for a in ARMS],
                   color=["tab:red" if a == "ariel" else "tab:gray" for a in ARMS])
            ax.set_xticks(range(len(ARMS)), ARMS, rotation=45, fontsize=7)
            ax.set_ylim(0, 1.05)
            ax.set_title(k, fontsize=9)
        save_figure(fig, out_dir / "generation.png", dpi=90)
        return "generation.png"

    @staticmethod
    def _plot_precision(lengths: list[int], sweep: dict, out_dir: Path) -> str:
        plt = pyplot()

        fig, ax = plt.subplots(figsize=(4.2, 3.0))
        for d, r in sweep.items():
            ax.plot(lengths, r, marker="o", label=f"D={d}")
        ax.set_xlabel("sentence length (tokens, 4.4 bits each)")
        ax.set_ylabel("round-trip failure rate")
        ax.set_title("AriEL float64 precision", fontsize=9)
        ax.legend(fontsize=7)
        save_figure(fig, out_dir / "precision.png", dpi=90)
        return "precision.png"
