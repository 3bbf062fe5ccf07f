"""Seed 26 — QLAE: latent quantization + high weight decay gives modular, explicit latents.

Hsu, Dorrell, Whittington, Wu, Finn, "Disentanglement via Latent Quantization" (arXiv 2305.18378).
QLAE = per-dimension learnable scalar codebooks (10 values in [-0.5, 0.5], straight-through, λ_q = λ_c
= 0.01; ``isthmus.bottlenecks.scalar_codebooks``) trained with AdamW weight decay 0.1 on the weight
matrices only (biases and codebook values exempt, as in the authors' code), n_z = 2 × sources, and the
authors' loss scaling: BCE averaged (not summed) over pixels.

Data: procedural dSprites-like shapes (``isthmus.data.shapes``) on the full grid of four factors —
shape (3), scale (4), x (8), y (8): 768 combinations, rendered at 16×16. A fixed quarter of the
COMBINATIONS is held out: the models train on images of the other three quarters and are scored on
every held-out combination once, so no evaluation image was seen in training (the authors score
InfoMEC on training images; we follow the issue's held-out protocol and say so). All arms share the
MLP encoder/decoder, data, seeds and step budget. QLAE and VQ latents are scored as discrete, AE and
β-VAE (posterior mean) latents as continuous — the InfoMEC authors' protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import torch

from isthmus.metrics import disentanglement_report
from isthmus.models import AutoEncoder
from isthmus.recipes.base import Paper, Recipe, RecipeSettings
from isthmus.recipes.gates import Gate, Measured, Precondition, plateaued
from isthmus.recipes.registry import register_recipe
from isthmus.train import Trainer, TrainerConfig
from isthmus.viz import pyplot, save_figure, seed_bars

FACTORS = ("shape", "scale", "x", "y")
GRID = {"scale": 4, "x": 8, "y": 8}
LOW_WD, HIGH_WD = 1e-4, 0.1
NO_DECAY = ["bias", "bottleneck."]  # the authors' unregularised group: biases and the latent codebooks
# arm -> (bottleneck name, bottleneck kwargs, AdamW weight decay, InfoMEC discrete?)
ARMS: dict[str, tuple[str, dict, float, bool]] = {
    "qlae": ("scalar_codebooks", dict(n_values=10), HIGH_WD, True),
    "ae": ("identity", {}, LOW_WD, False),
    "beta_vae": ("gaussian", dict(beta=4.0), LOW_WD, False),
    "vq_vae": ("vq", dict(codebook_size=64, groups=2), LOW_WD, True),
    "qlae_no_wd": ("scalar_codebooks", dict(n_values=10), 0.0, True),
    "qlae_shared": ("scalar_codebooks", dict(n_values=10, shared=True), HIGH_WD, True),
}


@dataclass
class Settings(RecipeSettings):
    image_size: int = 16
    n_train: int = 4096  # training draws (with replacement) from the training combinations
    heldout_fraction: float = 0.25
    steps: int = 6000
    batch_size: int = 128
    hidden: list[int] = field(default_factory=lambda: [256, 128])
    vq_vae: bool = False  # the VQ-VAE arm (reported, never gated) costs a sixth of the run; on in full mode


@lru_cache(maxsize=2)
def load_shapes(image_size: int, n_train: int, heldout_fraction: float) -> dict[str, Any]:
    """Training images from the training combinations; every held-out combination once. Fixed for all seeds."""
    from isthmus.data.shapes import ShapesConfig, render_shapes

    cfg = ShapesConfig(n=1, image_size=image_size, vary=list(FACTORS), n_values=GRID)
    grids = cfg.factor_grids()
    names = ("shape", "scale", "rotation", "x", "y")
    combos = np.stack(np.meshgrid(*[np.arange(len(grids[k])) for k in names], indexing="ij"), -1).reshape(-1, 5)
    rng = np.random.default_rng(0)
    held = np.zeros(len(combos), bool)
    held[rng.permutation(len(combos))[: int(round(heldout_fraction * len(combos)))]] = True
    train_idx = combos[~held][rng.integers((~held).sum(), size=n_train)]
    eval_idx = combos[held]
    scale_max = max(cfg.scale_range[1], float(grids["scale"].max()))

    def render(idx: np.ndarray) -> torch.Tensor:
        f = np.stack([grids[k][idx[:, j]] for j, k in enumerate(names)], 1)
        x = render_shapes(f, image_size, cfg.shapes, cfg.max_radius, cfg.antialias, scale_max=scale_max)
        return torch.as_tensor(x).reshape(len(x), -1)

    keep = [names.index(f) for f in FACTORS]
    return {
        "x_train": render(train_idx),
        "x_eval": render(eval_idx),
        "s_eval": eval_idx[:, keep],
        "s_train": train_idx[:, keep],
        "n_combos": len(combos),
        "n_heldout": int(held.sum()),
    }


def build_model(arm: str, in_dim: int, hidden: list[int]) -> AutoEncoder:
    name, kw, _, _ = ARMS[arm]
    return AutoEncoder.mlp(
        in_dim,
        latent_dim=2 * len(FACTORS),
        hidden=tuple(hidden),
        bottleneck=name,
        out_activation="sigmoid",
        objective={"recon_loss": "bce", "recon_reduction": "mean"},
        **kw,
    )


def train_arm(arm: str, data: dict, seed: int, s: Settings) -> tuple[Measured, AutoEncoder]:
    """Train one arm on one seed; score its latents on the held-out combinations."""
    torch.manual_seed(seed)
    model = build_model(arm, data["x_train"].shape[1], s.hidden)
    epochs = max(1, round(s.steps * s.batch_size / len(data["x_train"])))
    tc = TrainerConfig(
        epochs=epochs,
        batch_size=s.batch_size,
        optimizer="adamw",
        lr=1e-3,
        weight_decay=ARMS[arm][2],
        no_decay=NO_DECAY,
        seed=seed,
        progress=False,
    )
    hist = Trainer(model, tc).fit(data["x_train"]).history
    model.eval()
    with torch.no_grad():
        z = model.encode(data["x_eval"])
        recon = model.reconstruct(data["x_eval"]).clamp(1e-6, 1 - 1e-6)
    xe = data["x_eval"]
    bce = float(-(xe * recon.log() + (1 - xe) * (1 - recon).log()).mean())
    scores = disentanglement_report(data["s_eval"], z.numpy(), discrete_latents=ARMS[arm][3], random_state=seed)
    loss = [h["train_loss"] for h in hist]
    metrics = {
        **{k: float(v) for k, v in scores.items()},
        "recon_bce": bce,
        "recon_mse": float((recon - xe).pow(2).mean()),
        "converged": float(plateaued(loss)),
        "decay_factor": float(np.exp(-1e-3 * ARMS[arm][2] * epochs * -(-len(data["x_train"]) // s.batch_size))),
    }
    return Measured(metrics=metrics, curves={"train_loss": loss}), model


def _arm(arm: str):
    def fn(s: Settings, seed: int, data: dict) -> Measured:
        m, model = train_arm(arm, data, seed, s)
        if seed == 0:
            from isthmus.metrics import nmi_matrix

            with torch.no_grad():
                z = model.encode(data["x_eval"]).numpy()
            m.info["nmi"] = np.asarray(nmi_matrix(data["s_eval"], z, discrete_latents=ARMS[arm][3])).tolist()
        return m

    return fn


def _gates() -> tuple[Gate, ...]:
    g = [
        Gate(
            f"InfoM above {b}",
            "infom",
            "qlae",
            b,
            effect=0.02,
            headline=True,
            why="modularity is the paper's disentanglement claim; 2 points is above rounding, far below its gaps",
        )
        for b in ("ae", "beta_vae")
    ]
    g += [
        Gate(f"InfoE above {b}", "infoe", "qlae", b, effect=0.02, why="explicitness, the claim's second half")
        for b in ("ae", "beta_vae")
    ]
    g.append(
        Gate(
            "reconstruction not worse than the AE",
            "recon_bce",
            "qlae",
            "ae",
            direction="lower",
            kind="non_inferiority",
            effect=0.005,
            why="'without losing reconstruction': within 0.005 nats/pixel (≈ 15 % of a trained AE's BCE)",
        )
    )
    g += [
        Gate(
            f"InfoM above {a} (ablation)",
            "infom",
            "qlae",
            a,
            effect=0.02,
            why="'both the quantization and the weight decay matter'",
        )
        for a in ("qlae_no_wd", "qlae_shared")
    ]
    return tuple(g)


@register_recipe
class Qlae(Recipe):
    slug = "qlae"
    paper = Paper("Disentanglement via Latent Quantization", "2305.18378")
    claim = (
        "Quantizing each latent dimension to its own small learnable scalar codebook and training with high "
        "AdamW weight decay (QLAE) gives more modular and explicit latents (higher InfoM and InfoE) than AE and "
        "beta-VAE without losing reconstruction; both the quantization and the weight decay matter."
    )
    Settings: TypeAlias = Settings
    modes = {
        "smoke": Settings(seeds=1, n_train=512, steps=20, batch_size=64, hidden=[64]),
        "quick": Settings(seeds=3, steps=2000),
        "record": Settings(seeds=3, steps=4000),
        "full": Settings(seeds=5, image_size=32, n_train=12288, steps=50000, hidden=[512, 256], vq_vae=True),
    }
    ours = "qlae"
    gates = _gates()
    preconditions = (
        Precondition(
            "QLAE training converged",
            "qlae",
            "converged",
            ">=",
            1.0,
            over="every",
            why="the loss curve has plateaued (plateaued() on per-epoch means)",
        ),
        Precondition(
            "AE training converged", "ae", "converged", ">=", 1.0, over="every", why="the baseline gets the same chance"
        ),
        Precondition(
            "positive control: the AE reconstructs unseen combinations",
            "ae",
            "recon_bce",
            "<=",
            0.15,
            why="predicting each pixel's mean scores ≈ 0.33 nats; 0.15 means the decoder generalises",
        ),
    )

    def data(self, s: Settings, seed: int) -> dict:
        return load_shapes(s.image_size, s.n_train, s.heldout_fraction)

    def arms(self, s: Settings):
        return {a: _arm(a) for a in ARMS if a != "vq_vae" or s.vq_vae}

    def describe(self, s: Settings) -> dict[str, Any]:
        d = load_shapes(s.image_size, s.n_train, s.heldout_fraction)
        n_batches = -(-s.n_train // s.batch_size)
        return {
            "data": f"shapes grid: factors {list(FACTORS)} (shape 3, {GRID}) = {d['n_combos']} combinations; "
            f"{d['n_heldout']} held out (each scored once), {s.n_train} training draws from the rest; "
            f"{float((torch.cdist(d['x_eval'], d['x_train']).min(1).values == 0).float().mean()):.3f} of "
            "the held-out images are pixel-identical to a training image (distinct factors, same pixels)",
            "latent_dim": 2 * len(FACTORS),
            "optimizer": f"adamw lr 1e-3, batch {s.batch_size}, no decay on {NO_DECAY}",
            "steps": max(1, round(s.steps / n_batches)) * n_batches,
            "lr_wd_steps_qlae": 1e-3 * HIGH_WD * s.steps,
            "arms": {
                a: {"bottleneck": b, **kw, "weight_decay": wd, "infomec_discrete": dd}
                for a, (b, kw, wd, dd) in ARMS.items()
            },
            "deviations": [
                "MLP encoder/decoder, not the paper's conv/style decoder",
                f"lr·wd·steps = {1e-3 * HIGH_WD * s.steps:g} (paper: 2e5 steps, 20)",
                "no element-wise gradient clipping on the decayed group",
                "InfoMEC on held-out combinations (authors: on training images)",
                "AE wd 1e-4 and beta 4 are our choices (authors: AE l2 1e-3, beta-VAE kl 3)",
            ],
        }

    def figures(self, s: Settings, cells, out_dir: Path) -> list[str]:
        plt = pyplot()
        keys = ("infom", "infoe", "infoc", "recon_bce")
        arms = list(cells)
        fig, axes = plt.subplots(1, len(keys), figsize=(3.0 * len(keys), 3.4))
        for ax, k in zip(axes, keys):
            seed_bars(ax, {a: [m.metrics[k] for m in cells[a].values()] for a in arms}, highlight="qlae", rotation=60)
            ax.set_title(k, fontsize=9)
        save_figure(fig, out_dir / "scores.png", dpi=90)
        names = ["scores.png"]
        nmis = {a: np.asarray(cells[a][0].info["nmi"]) for a in arms if 0 in cells[a] and "nmi" in cells[a][0].info}
        if nmis:
            fig, axes = plt.subplots(1, len(nmis), figsize=(2.6 * len(nmis), 2.4))
            for ax, (a, m) in zip(np.atleast_1d(axes), nmis.items()):
                ax.imshow(m, vmin=0, vmax=1, cmap="viridis")
                ax.set_yticks(range(len(FACTORS)), FACTORS, fontsize=7)
                ax.set_xlabel("latent", fontsize=7)
                ax.set_title(a, fontsize=8)
            save_figure(fig, out_dir / "nmi_matrices.png", dpi=90)
            names.append("nmi_matrices.png")
        return names

    changes = (
        "Before the frame (quick, 3 seeds, 512 steps): 'not reproduced' — QLAE won InfoM/InfoE by small margins but "
        "its held-out BCE was 3.7x the AE's. The audit found (1) BCE summed over pixels (authors: mean), making the "
        "0.01 quantisation/commitment terms ~256x weaker (mean BCE: InfoE 0.678 → 0.817, InfoM 0.332 → 0.272); "
        "(2) weight decay on every parameter incl. codebooks and biases (authors: weight matrices only); (3) 512 "
        "steps, so decay shrank weights by only e^-0.05; (4) 93.6 % of 'held-out' images were training images. "
        "Now: mean BCE, no_decay on biases and codebooks (a TrainerConfig option), 4000 steps at batch 128 "
        "(lr·wd·steps 0.4; the audit asked for ~20 — out of reach on the shared 2-core CPU, full mode has 50k "
        "steps), and evaluation on held-out factor combinations. The VQ-VAE arm (never gated) runs in full mode only.",
        "History from the old notes: a 20-epoch quick run at 768 held-out images took 245 s and gave the same old "
        "verdict; quick was then cut to 16 epochs / 512 images.",
    )
