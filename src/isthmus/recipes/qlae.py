"""Seed 26 — QLAE: latent quantization + high weight decay gives modular, explicit latents.

Hsu, Dorrell, Whittington, Wu, Finn, "Disentanglement via Latent Quantization" (arXiv 2305.18378).
QLAE = per-dimension learnable scalar codebooks (10 values in [-0.5, 0.5], straight-through, λ_q = λ_c
= 0.01; ``isthmus.bottlenecks.scalar_codebooks``) trained with AdamW weight decay 0.1, n_z = 2 × sources.

Data: procedural dSprites-like shapes (``isthmus.data.make_shapes``) with four varying factors —
shape (3), scale (4), x (8), y (8) — rendered at 16×16 (quick) or 32×32 (full). Rotation is left out: it
is only identifiable up to each shape's symmetry and barely visible at 16×16. All arms share the
encoder/decoder (an MLP, BCE reconstruction summed over pixels), data, seeds and step budget, and are
scored with the same metrics (``isthmus.metrics.disentanglement_report``) on the same held-out images.
QLAE and VQ latents take finitely many values per dimension, so InfoMEC treats them as discrete;
AE and β-VAE (posterior mean) latents as continuous — the InfoMEC authors' protocol.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from isthmus.data import make_shapes
from isthmus.metrics import disentanglement_report
from isthmus.models import AutoEncoder
from isthmus.recipes.base import Paper, Recipe, Result, summarize
from isthmus.recipes.registry import register_recipe
from isthmus.train import Trainer, TrainerConfig
from isthmus.viz import pyplot, save_figure

FACTORS = ("shape", "scale", "x", "y")
GRID = {"scale": 4, "x": 8, "y": 8}
MODE_SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": dict(image_size=16, n_train=512, n_eval=256, epochs=2, hidden=(64,), batch_size=64),
    "quick": dict(image_size=16, n_train=2048, n_eval=512, epochs=16, hidden=(256, 128), batch_size=64),
    "full": dict(image_size=32, n_train=12288, n_eval=3072, epochs=60, hidden=(512, 256), batch_size=64),
}
LOW_WD, HIGH_WD = 1e-4, 0.1
# arm -> (bottleneck name, bottleneck kwargs, AdamW weight decay, InfoMEC discrete?)
ARMS: dict[str, tuple[str, dict, float, bool]] = {
    "qlae": ("scalar_codebooks", dict(n_values=10), HIGH_WD, True),
    "ae": ("identity", {}, LOW_WD, False),
    "beta_vae": ("gaussian", dict(beta=4.0), LOW_WD, False),
    "vq_vae": ("vq", dict(codebook_size=64, groups=2), LOW_WD, True),
    "qlae_no_wd": ("scalar_codebooks", dict(n_values=10), 0.0, True),
    "qlae_shared": ("scalar_codebooks", dict(n_values=10, shared=True), HIGH_WD, True),
}
ABLATIONS = ("qlae_no_wd", "qlae_shared")
HEADLINE = ("infom", "infoe", "infoc", "mig", "dci_d", "recon_bce")
MARGIN = 0.02  # a "win" on an Info score must exceed this absolute gap in the seed means


def load_shapes(cfg: dict, seed: int = 0) -> dict[str, torch.Tensor | np.ndarray]:
    """Train and held-out images (flattened, in [0, 1]) with factor indices as ``sources``; fixed for all seeds."""
    n = cfg["n_train"] + cfg["n_eval"]
    table = make_shapes(n=n, image_size=cfg["image_size"], seed=seed, vary=list(FACTORS), n_values=GRID)
    names = list(table.meta["factor_names"])
    sources = np.asarray(table.meta["factor_indices"])[:, [names.index(f) for f in FACTORS]]
    x = torch.as_tensor(np.asarray(table.X), dtype=torch.float32).reshape(n, -1)
    tr = slice(0, cfg["n_train"])
    ev = slice(cfg["n_train"], n)
    return {"x_train": x[tr], "x_eval": x[ev], "s_eval": sources[ev]}


def build_model(arm: str, in_dim: int, cfg: dict) -> AutoEncoder:
    name, kw, _, _ = ARMS[arm]
    return AutoEncoder.mlp(in_dim, latent_dim=2 * len(FACTORS), hidden=cfg["hidden"], bottleneck=name,
                           out_activation="sigmoid", objective={"recon_loss": "bce"}, **kw)


def train_arm(arm: str, data: dict, seed: int, cfg: dict) -> tuple[dict[str, float], AutoEncoder]:
    """Train one arm on one seed; score its held-out latents. Returns (metrics, model)."""
    torch.manual_seed(seed)
    model = build_model(arm, data["x_train"].shape[1], cfg)
    tc = TrainerConfig(epochs=cfg["epochs"], batch_size=cfg["batch_size"], optimizer="adamw", lr=1e-3,
                       weight_decay=ARMS[arm][2], seed=seed, progress=False)
    Trainer(model, tc).fit(data["x_train"])
    model.eval()
    with torch.no_grad():
        z = model.encode(data["x_eval"])
        recon = model.reconstruct(data["x_eval"]).clamp(1e-6, 1 - 1e-6)
    xe = data["x_eval"]
    bce = float(-(xe * recon.log() + (1 - xe) * (1 - recon).log()).mean())
    scores = disentanglement_report(data["s_eval"], z.numpy(), discrete_latents=ARMS[arm][3], random_state=seed)
    return {**scores, "recon_bce": bce, "recon_mse": float((recon - xe).pow(2).mean())}, model


def verdict(m: dict[str, dict[str, float]]) -> tuple[str, str]:
    """``m[arm][metric]`` = seed mean. See ``Qlae.verdict_rule``."""
    q = m["qlae"]
    wins = {f"{k} vs {b}": q[k] - m[b][k] > MARGIN for b in ("ae", "beta_vae") for k in ("infom", "infoe")}
    recon_ok = q["recon_bce"] <= 1.10 * m["ae"]["recon_bce"]
    main = all(wins.values()) and recon_ok
    abl = {a: q["infom"] - m[a]["infom"] > MARGIN for a in ABLATIONS}
    v = "reproduced" if main and all(abl.values()) else "partial" if main or (any(wins.values()) and recon_ok) \
        else "not reproduced"
    parts = [f"{k}: {'win' if w else 'no win'}" for k, w in wins.items()]
    parts.append(f"recon BCE qlae {q['recon_bce']:.4f} vs ae {m['ae']['recon_bce']:.4f} "
                 f"({'within' if recon_ok else 'outside'} 10%)")
    parts += [f"InfoM qlae {q['infom']:.3f} vs {a} {m[a]['infom']:.3f} ({'lower' if w else 'not lower'})"
              for a, w in abl.items()]
    return v, "; ".join(parts)


@register_recipe
class Qlae(Recipe):
    slug = "qlae"
    paper = Paper("Disentanglement via Latent Quantization", "2305.18378")
    claim = ("Quantizing each latent dimension to its own small learnable scalar codebook and training with high "
             "AdamW weight decay (QLAE) gives more modular and explicit latents (higher InfoM and InfoE) than AE, "
             "beta-VAE and VQ-VAE without losing reconstruction; both the quantization and the weight decay matter.")
    verdict_rule = (
        f"Seed means on held-out images. Main check: QLAE InfoM and InfoE each exceed those of the AE and of the "
        f"beta-VAE by more than {MARGIN} (4 comparisons), and QLAE's reconstruction BCE is at most 1.10x the AE's. "
        f"Ablation check: QLAE's InfoM exceeds by more than {MARGIN} both QLAE without weight decay and QLAE with one "
        "shared codebook. reproduced = main and ablation checks; partial = main check only, or at least one of the "
        "4 comparisons won with reconstruction within 10%; not reproduced otherwise. VQ-VAE is reported, not gated."
    )

    def run(self, mode: str, seeds: Sequence[int], out_dir: Path) -> Result:
        cfg = MODE_SETTINGS[mode]
        data = load_shapes(cfg)
        per: dict[str, list[dict[str, float]]] = {a: [] for a in ARMS}
        nmis: dict[str, np.ndarray] = {}
        for s in seeds:
            for arm in ARMS:
                scores, model = train_arm(arm, data, s, cfg)
                per[arm].append(scores)
                if s == seeds[0]:
                    nmis[arm] = self._nmi(model, data, ARMS[arm][3])
        keys = list(HEADLINE) + [k for k in per["qlae"][0] if k not in HEADLINE]
        summ = {a: {k: summarize([r[k] for r in rs]) for k in keys} for a, rs in per.items()}
        means = {a: {k: v.mean for k, v in d.items()} for a, d in summ.items()}
        v, why = verdict(means)
        figures = [self._plot_bars(summ, out_dir), self._plot_nmi(nmis, out_dir)]
        config = {"mode": mode, **{k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
                  "data": f"make_shapes, factors {list(FACTORS)} with grids shape 3, {GRID}; seed 0 for all runs",
                  "latent_dim": 2 * len(FACTORS), "optimizer": "adamw lr 1e-3",
                  "arms": {a: {"bottleneck": b, **kw, "weight_decay": wd, "infomec_discrete": d}
                           for a, (b, kw, wd, d) in ARMS.items()},
                  "recon": "BCE summed over pixels in training; per-pixel mean BCE on held-out images reported"}
        notes = [f"model: MLP {list(cfg['hidden'])} encoder/decoder, not the paper's conv/style decoder",
                 f"~{cfg['epochs'] * cfg['n_train'] // cfg['batch_size']} steps per model vs 2e5 in the paper: weight "
                 "decay acts for far fewer steps here",
                 "figure nmi_matrices.png: NMI(source, latent) of seed 0 for each arm"]
        if mode == "quick":
            notes.append("quick history: one exploratory seed-0 run at 12 epochs; then a 3-seed run at 20 epochs / 768 "
                         "held-out images took 245 s wall (135 s CPU) on the shared machine - over budget - so quick "
                         "was cut to 16 epochs / 512 held-out images. That 20-epoch run gave the same verdict (not "
                         "reproduced): QLAE won InfoM and InfoE against AE and beta-VAE (InfoM 0.353 vs 0.317/0.267, "
                         "InfoE 0.709 vs 0.668/0.593) and beat both ablations on InfoM (0.312, 0.308), but its "
                         "held-out BCE was 0.096 vs AE 0.029 (3.3x)")
        return Result(recipe=self.slug, paper=self.paper, claim=self.claim, mode=mode, seeds=list(seeds),
                      metrics=summ["qlae"], baselines={a: summ[a] for a in ARMS if a != "qlae"}, verdict=v,
                      verdict_reason=why, config=config, figures=figures, notes=notes)

    @staticmethod
    def _nmi(model: AutoEncoder, data: dict, discrete: bool) -> np.ndarray:
        from isthmus.metrics import nmi_matrix

        with torch.no_grad():
            z = model.encode(data["x_eval"]).numpy()
        return nmi_matrix(data["s_eval"], z, discrete_latents=discrete)

    @staticmethod
    def _plot_bars(summ: dict, out_dir: Path) -> str:
        plt = pyplot()

        keys = ("infom", "infoe", "infoc", "mig", "dci_d", "recon_bce")
        arms = list(summ)
        fig, axes = plt.subplots(1, len(keys), figsize=(3.0 * len(keys), 3.4))
        for ax, k in zip(axes, keys):
            ax.bar(range(len(arms)), [summ[a][k].mean for a in arms], yerr=[summ[a][k].std for a in arms],
                   color=["tab:red" if a == "qlae" else "tab:gray" for a in arms])
            ax.set_xticks(range(len(arms)), arms, rotation=60, fontsize=7)
            ax.set_title(k, fontsize=9)
        save_figure(fig, out_dir / "scores.png", dpi=90)
        return "scores.png"

    @staticmethod
    def _plot_nmi(nmis: dict, out_dir: Path) -> str:
        plt = pyplot()

        fig, axes = plt.subplots(1, len(nmis), figsize=(2.6 * len(nmis), 2.4))
        for ax, (arm, m) in zip(np.atleast_1d(axes), nmis.items()):
            ax.imshow(m, vmin=0, vmax=1, cmap="viridis")
            ax.set_yticks(range(len(FACTORS)), FACTORS, fontsize=7)
            ax.set_xlabel("latent", fontsize=7)
            ax.set_title(arm, fontsize=8)
        save_figure(fig, out_dir / "nmi_matrices.png", dpi=90)
        return "nmi_matrices.png"
