"""Seed 19 — STARFlow: a transformer autoregressive flow generates better in a pretrained autoencoder's
noise-augmented latent space, with a deep–shallow layout, than in pixels.

Gu et al. (Apple, 2025, arXiv 2506.06276; code ``apple/ml-starflow``). Referee card ``cards-I-J.md`` §19 and
the errata followed at toy scale: MNIST t10k at 16×16 (4,000 train / 500 val / 1,000 test: the card's 8,000 / 2,000 cut to fit the CPU), a conv
autoencoder with a 64-d latent (16 tokens × 4) trained once (seed 0) standing for SD-VAE, ≈ 0.15 M-param
flows (:class:`isthmus.models.flows.AutoregressiveFlow`). Arms (equal width, layers and steps):

* ``starflow`` — deep–shallow blocks (1 + 1 + 4 layers, the deep one next to the prior and the only one
  class-conditioned), trained on standardised latents + N(0, 0.3²) noise, decoded by a decoder fine-tuned
  on such noisy latents (MSE), STARFlow guidance w ∈ {0, .5, 1, 2} chosen on validation FD;
* ``pixel`` — the same flow over 16 tokens of 4×4 pixel patches (pixels in [−1, 1], σ = 0.05 noise and
  TARFlow's one score-based denoising step), w chosen the same way;
* ``uniform`` — latent, 3 blocks × 2 layers (the deep–shallow ablation);
* ``dit`` — the referee's latent flow-matching DiT (adaLN-zero, width 48, depth 4 ≈ the flow's parameters)
  on clean latents with classifier-free guidance chosen the same way, the original decoder.

Scored by FD of 1,000 class-conditional samples (100 per class) against the test images in a fixed
classifier's features; the classifier trains on the train + val rows only (:mod:`isthmus.tasks.sample_quality`).
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, TypeAlias, cast

import numpy as np
import torch

from isthmus.models import AutoEncoder
from isthmus.models.diffusion import FlowMatchingConfig, FlowMatchingPrior
from isthmus.models.flows import AutoregressiveFlow, FlowConfig, _FlowBlock
from isthmus.recipes.base import Paper, Recipe, RecipeSettings
from isthmus.recipes.gates import Check, Gate, Measured, Precondition, plateaued
from isthmus.recipes.registry import register_recipe
from isthmus.tasks.sample_quality import SampleScorer, image_split
from isthmus.train import Trainer, TrainerConfig

SIDE, TOKENS, LATENT = 16, 16, 64
GUIDANCE = (0.0, 0.5, 1.0, 2.0)


@dataclass
class Settings(RecipeSettings):
    n_train: int = 4000
    n_val: int = 500
    n_test: int = 1000
    ae_epochs: int = 12
    finetune_epochs: int = 4
    epochs: int = 8  # every prior: the same epochs (= steps) over the same training rows
    dit_steps: int = 25  # Euler steps of the DiT sampler
    batch_size: int = 64
    lr: float = 5e-4
    width: int = 48
    latent_noise: float = 0.3
    pixel_noise: float = 0.05
    n_samples: int = 1000  # scored against the test images
    n_select: int = 200  # per guidance value, scored against the validation images
    clf_epochs: int = 15


def _key(s: Settings) -> str:
    d = s.to_dict()
    for k in ("seeds", "epochs", "lr", "width", "n_samples", "n_select"):
        d.pop(k, None)
    return json.dumps(d, sort_keys=True)


def setup(s: Settings) -> dict[str, Any]:
    return _setup(_key(s))


@lru_cache(maxsize=1)
def _setup(key: str) -> dict[str, Any]:
    """Seed-independent parts: split, scorer, autoencoder (seed 0), standardised latents, tuned decoder."""
    s = Settings.from_dict(json.loads(key))
    torch.set_flush_denormal(True)
    split = image_split(SIDE, s.n_train, s.n_val, s.n_test)
    scorer = SampleScorer(split, s.clf_epochs)
    torch.manual_seed(0)
    ae = AutoEncoder.conv(image_size=SIDE, latent_dim=LATENT, channels=(32, 64), objective={"recon_loss": "bce"})
    Trainer(ae, TrainerConfig(epochs=s.ae_epochs, batch_size=64, lr=1e-3, seed=0, progress=False, device="cpu")).fit(
        split.x_train
    )
    ae.eval()
    with torch.no_grad():
        z = {k: ae.encode(getattr(split, f"x_{k}")) for k in ("train", "val", "test")}
    mean, std = z["train"].mean(0), z["train"].std(0).clamp_min(1e-6)
    u = {k: (v - mean) / std for k, v in z.items()}
    tuned = finetune_decoder(ae, u["train"], mean, std, split.x_train, s.latent_noise, s.finetune_epochs)
    with torch.no_grad():
        recon = ae.decode(z["test"])
        noisy = u["test"] + s.latent_noise * torch.randn(u["test"].shape, generator=torch.Generator().manual_seed(1))
        recon_noisy_plain = ae.decode(noisy * std + mean)
        recon_noisy_tuned = tuned.decode(noisy * std + mean)
    ref = {
        "recon": scorer.score(recon, split.y_test),
        "noisy_plain": scorer.score(recon_noisy_plain, split.y_test),
        "noisy_tuned": scorer.score(recon_noisy_tuned, split.y_test),
    }
    return {
        "split": split,
        "scorer": scorer,
        "ae": ae,
        "tuned": tuned,
        "mean": mean,
        "std": std,
        "u": u,
        "ref": ref,
        "fd_valid": scorer.fd_valid(),
    }


def finetune_decoder(
    ae: AutoEncoder, u: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, x: torch.Tensor, sigma: float, epochs: int
) -> AutoEncoder:
    """A copy of ``ae`` whose decoder is trained (MSE, the errata's honest reduction of the paper's
    perceptual + GAN loss) to map standardised latents + N(0, σ²) noise back to the images."""
    tuned = copy.deepcopy(ae).train()
    opt = torch.optim.Adam(tuned.decoder.parameters(), lr=5e-4)
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for idx in torch.randperm(len(u), generator=g).split(64):
            noisy = (u[idx] + sigma * torch.randn(len(idx), u.shape[1], generator=g)) * std + mean
            loss = (tuned.decode(noisy) - x[idx].reshape(len(idx), *tuned.decode(noisy[:1]).shape[1:])).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return tuned.eval()


def _trainer(s: Settings, seed: int, n: int) -> TrainerConfig:
    steps_per_epoch = math.ceil(n / s.batch_size)
    return TrainerConfig(
        epochs=s.epochs,
        batch_size=s.batch_size,
        optimizer="adamw",
        lr=s.lr,
        betas=(0.9, 0.95),
        weight_decay=1e-4,
        schedule="cosine",
        warmup_steps=steps_per_epoch,
        seed=seed,
        progress=False,
        device="cpu",
    )


def _labels(n: int) -> torch.Tensor:
    return torch.arange(10).repeat_interleave(n // 10)


def _pixels(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, 16, 16) in [0, 1] → (N, 256) in [−1, 1], ordered as 16 tokens of 4×4 patches."""
    p = x.reshape(len(x), 4, 4, 4, 4).permute(0, 1, 3, 2, 4).reshape(len(x), -1)
    return p * 2 - 1


def _unpixels(p: torch.Tensor) -> torch.Tensor:
    x = p.reshape(len(p), 4, 4, 4, 4).permute(0, 1, 3, 2, 4).reshape(len(p), 1, SIDE, SIDE)
    return ((x + 1) / 2).clamp(0, 1)


def _flow_arm(space: str, depths: list[int]):
    def fn(s: Settings, seed: int, _: Any) -> Measured:
        st = setup(s)
        sp = st["split"]
        pixel = space == "pixel"
        sigma = s.pixel_noise if pixel else s.latent_noise
        xt, xv = (_pixels(sp.x_train), _pixels(sp.x_val)) if pixel else (st["u"]["train"], st["u"]["val"])
        dim, token_dim = xt.shape[1], xt.shape[1] // TOKENS
        torch.manual_seed(seed)
        flow = AutoregressiveFlow(
            FlowConfig(
                dim=dim,
                token_dim=token_dim,
                width=s.width,
                heads=4,
                blocks=len(depths),
                depths=depths,
                noise_std=sigma,
                n_classes=10,
                label_drop=0.1,
            )
        )
        g = torch.Generator().manual_seed(10_000 + seed)
        xv_noisy = xv + sigma * torch.randn(xv.shape, generator=g)  # a fixed noisy validation set
        res = Trainer(flow, _trainer(s, seed, len(xt))).fit((xt, sp.y_train), val=(xv_noisy, sp.y_val))
        flow.eval()
        curve = [h["val_loss"] for h in res.history]
        inverse_error = _inverse_error(flow, xv[:64], sp.y_val[:64])

        def decode(samples: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            if pixel:
                return _unpixels(flow.denoise(samples, labels))
            return st["tuned"].decode(samples * st["std"] + st["mean"])

        return _guided_scores(
            s,
            seed,
            st,
            lambda n, lab, w, gen: decode(flow.sample(n, gen, labels=lab, guidance=w), lab),
            {
                "converged": float(plateaued(curve)),
                "val_nll_per_dim": curve[-1],
                "inverse_error": inverse_error,
                "params": float(sum(p.numel() for p in flow.parameters())),
            },
            {"val_nll": curve},
        )

    return fn


@torch.no_grad()
def _inverse_error(flow: AutoregressiveFlow, x: torch.Tensor, y: torch.Tensor) -> float:
    """max |inverse(forward(x)) − x| with the trained weights (the card's 'flow correctness' precondition)."""
    c = flow.config
    z, _ = flow.to_noise(x, y)
    h = z.reshape(len(x), -1, c.token_dim)
    for i in reversed(range(len(flow.flow))):
        if i % 2:
            h = h.flip(1)
        h = cast(_FlowBlock, flow.flow[i]).inverse(h, y)
        if i % 2:
            h = h.flip(1)
    return float((h.reshape(len(x), -1) - x).abs().max())


def _guided_scores(s: Settings, seed: int, st: dict, draw, metrics: dict, curves: dict) -> Measured:
    """Pick the guidance weight on validation FD, then score ``n_samples`` at it (and at w = 0) on test."""
    sc = st["scorer"]
    sel = {}
    for w in GUIDANCE:
        lab = _labels(s.n_select)
        sel[w] = sc.score(draw(len(lab), lab, w, torch.Generator().manual_seed(seed * 100 + 1)), lab, "val")
    w_star = min(GUIDANCE, key=lambda w: sel[w]["frechet"])
    lab = _labels(s.n_samples)
    imgs = draw(len(lab), lab, w_star, torch.Generator().manual_seed(seed * 100 + 2))
    best = sc.score(imgs, lab)
    zero = (
        best if w_star == 0 else sc.score(draw(len(lab), lab, 0.0, torch.Generator().manual_seed(seed * 100 + 2)), lab)
    )
    metrics.update(
        {
            "frechet": best["frechet"],
            "log_frechet": best["log_frechet"],
            "inception_score": best["inception_score"],
            "class_accuracy": best["class_accuracy"],
            "w_star": w_star,
            "frechet_w0": zero["frechet"],
            "class_accuracy_w0": zero["class_accuracy"],
            "guidance_gain": best["class_accuracy"] - zero["class_accuracy"],
        }
    )
    info = (
        {
            "grid": imgs.reshape(10, -1, SIDE, SIDE)[:, :6].tolist(),
            "select_fd": {str(w): v["frechet"] for w, v in sel.items()},
        }
        if seed == 0
        else {"select_fd": {str(w): v["frechet"] for w, v in sel.items()}}
    )
    return Measured(metrics=metrics, curves=curves, info=info)


def dit_arm(s: Settings, seed: int, _: Any) -> Measured:
    st = setup(s)
    sp, u = st["split"], st["u"]
    torch.manual_seed(seed)
    prior = FlowMatchingPrior(
        FlowMatchingConfig(
            dim=LATENT,
            net="dit",
            tokens=TOKENS,
            width=s.width,
            depth=4,
            heads=4,
            n_classes=10,
            label_drop=0.1,
            steps=s.dit_steps,
        )
    )
    res = Trainer(prior, _trainer(s, seed, len(u["train"]))).fit((u["train"], sp.y_train), val=(u["val"], sp.y_val))
    prior.eval()
    curve = [h["val_loss"] for h in res.history]

    def draw(n, lab, w, gen):
        with torch.no_grad():
            return st["ae"].decode(prior.sample(n, gen, labels=lab, guidance=w) * st["std"] + st["mean"])

    return _guided_scores(
        s,
        seed,
        st,
        draw,
        {
            "converged": float(plateaued(curve)),
            "val_loss": curve[-1],
            "params": float(sum(p.numel() for p in prior.parameters())),
        },
        {"val_loss": curve},
    )


@register_recipe
class StarFlow(Recipe):
    slug = "starflow"
    paper = Paper("STARFlow: Scaling Latent Normalizing Flows for High-resolution Image Synthesis", "2506.06276")
    claim = (
        "A transformer autoregressive flow generates better images when it models a pretrained autoencoder's "
        "noise-augmented latents (decoder fine-tuned on noisy latents) with a deep-shallow layout than when it "
        "models pixels; guidance improves class fidelity; it approaches a same-size latent diffusion model."
    )
    Settings: TypeAlias = Settings
    modes = {
        "smoke": Settings(
            seeds=1,
            n_train=300,
            n_val=100,
            n_test=200,
            ae_epochs=1,
            finetune_epochs=1,
            epochs=1,
            width=16,
            n_samples=60,
            n_select=30,
            clf_epochs=1,
        ),
        "quick": Settings(seeds=3, epochs=3, n_samples=500),
        "record": Settings(seeds=3),
    }
    ours = "starflow"
    gates = (
        Gate(
            "latent beats pixel flow by >= 25 % FD",
            "log_frechet",
            "starflow",
            "pixel",
            direction="lower",
            effect=math.log(1.25),
            headline=True,
            why="the abstract's 'latent proves more effective': FD(pixel)/FD(STARFlow) >= 1.25, several times FD "
            "seed noise",
        ),
        Gate(
            "deep-shallow beats a uniform stack by >= 10 % FD",
            "log_frechet",
            "starflow",
            "uniform",
            direction="lower",
            effect=math.log(1.10),
            why="the paper's deep-shallow ablation, same layers and params",
        ),
        Gate(
            "guidance raises class accuracy by >= 5 pts",
            "guidance_gain",
            "starflow",
            0.0,
            effect=0.05,
            why="class accuracy at the validation-chosen w minus at w = 0 (0 when w* = 0)",
        ),
        Gate(
            "approaches a same-size latent DiT (FD ratio <= 1.25)",
            "log_frechet",
            "starflow",
            "dit",
            direction="lower",
            kind="non_inferiority",
            effect=math.log(1.25),
            why="referee: 'approaching diffusion' at this scale; a failure reads 'at 0.15 M params'",
        ),
    )
    preconditions = tuple(
        Precondition(
            f"{arm} trained to its plateau",
            arm,
            "converged",
            ">=",
            1.0,
            over="every",
            why="validation loss (NLL for flows) flat over the last tenth of epochs (plateaued())",
        )
        for arm in ("starflow", "pixel", "uniform", "dit")
    ) + (
        Precondition(
            "flow inverts exactly after training",
            "starflow",
            "inverse_error",
            "<=",
            1e-4,
            over="every",
            why="card: inverse(forward(x)) error < 1e-4 (log-det vs brute force is a unit test)",
        ),
    )

    def arms(self, s: Settings):
        return {
            "starflow": _flow_arm("latent", [1, 1, 4]),
            "pixel": _flow_arm("pixel", [1, 1, 4]),
            "uniform": _flow_arm("latent", [2, 2, 2]),
            "dit": dit_arm,
        }

    def checks(self, s: Settings, cells: Mapping[str, Mapping[int, Measured]]) -> list[Check]:
        st = setup(s)
        v, ref = st["fd_valid"], st["ref"]
        best = min(float(np.mean([m.metrics["frechet"] for m in c.values()])) for c in cells.values())
        return [
            Check(
                "FD-VALID",
                bool(v["ok"]),
                f"FD(train real, test) {v['real']:.3g} <= 0.2 x FD(blurred σ=1) {v['blurred']:.3g}, and blurred < "
                f"noise {v['noise']:.3g}; classifier held-out accuracy {v['clf_heldout_accuracy']:.3f}",
            ),
            Check(
                "the autoencoder is not the bottleneck",
                ref["recon"]["frechet"] <= 0.3 * best,
                f"reconstruction FD {ref['recon']['frechet']:.3g} <= 0.3 x best arm's mean sample FD {best:.3g}",
            ),
        ]

    def describe(self, s: Settings) -> dict[str, Any]:
        st = setup(s)
        return {
            "data": st["split"].source,
            "autoencoder": f"AutoEncoder.conv (32, 64), latent {LATENT} (16 tokens x 4), BCE, {s.ae_epochs} epochs, "
            "trained once (seed 0); latents standardised per dimension on train",
            "decoder_finetune": f"decoder copy trained {s.finetune_epochs} epochs, MSE, on standardised latents + "
            f"N(0, {s.latent_noise}^2)",
            "reconstruction_reference": st["ref"],
            "fd_valid": st["fd_valid"],
            "priors": f"width {s.width}, 4 heads; flows: 3 blocks, alternating token order, class embedding on the "
            "deep block's start token, label drop 0.1; DiT: adaLN-zero, depth 4, CFG, Euler 50 steps; "
            f"all AdamW (0.9, 0.95) wd 1e-4, lr {s.lr}, one-epoch warm-up then cosine, batch "
            f"{s.batch_size}, {s.epochs} epochs",
            "guidance": f"w in {GUIDANCE} chosen per arm and seed on FD of {s.n_select} samples vs validation",
            "deviations": [
                "ImageNet-256 / SD-VAE f8 / 3.8 B params -> 16x16 MNIST / conv AE 64-d latent / ~0.15 M params",
                "the AE latent comes from a linear layer, so its 16 tokens are not spatial patches as SD-VAE's",
                "decoder fine-tune uses MSE only (the code adds LPIPS, GAN, LeCam terms)",
                "no latent-norm regulariser (1e-4, errata item 1); no RoPE (sine-cosine positions); LayerNorm",
                "the 'no noise / no decoder fine-tune' ablation of the card is not run (CPU budget)",
                f"CPU budget (2 cores shared by 9 jobs): {s.n_train} train / {s.n_test} test images and {s.n_samples} "
                f"samples (card 8,000 / 2,000 / 2,000), {s.epochs} epochs ≈ "
                f"{s.epochs * math.ceil(s.n_train / s.batch_size)} steps per prior (card 2,000), DiT Euler "
                f"{s.dit_steps} steps (card 50)",
                "one deep block of 4 layers + two shallow of 1 (card: 1+1+4), uniform 2+2+2",
            ],
        }

    def figures(self, s: Settings, cells, out_dir: Path) -> list[str]:
        from isthmus.viz import pyplot, sample_panels, save_figure

        plt = pyplot()
        grids = {a: np.asarray(c[0].info["grid"]) for a, c in cells.items() if 0 in c and "grid" in c[0].info}
        names = [sample_panels(grids, out_dir / "samples.png").name] if grids else []
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for arm, c in cells.items():
            m = c[min(c)]
            for k, v in m.curves.items():
                ax.plot(range(1, len(v) + 1), v, label=f"{arm} {k}")
        ax.set_xlabel("epoch"), ax.set_ylabel("validation loss"), ax.legend(fontsize=7)
        names.append(save_figure(fig, out_dir / "curves.png", dpi=90).name)
        return names
