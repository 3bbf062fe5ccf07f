"""Seed 40 — LaDI-VTON's EMASC: mask-aware skips from the encoder restore detail the ×8 latent loses.

Morelli et al., ACM MM 2023, arXiv 2305.13501 — the autoencoder module only, not virtual try-on
(referee card ``cards-I-J.md`` §40 and errata ``errata-seeds-new-recipes.md`` §40). A small conv VAE
(f8, 4 latent channels) is trained once on 48×48 crops of the training photos and frozen; EMASC adapters
(nonlinear by default: Conv3×3 → SiLU → Conv3×3, default init) carry the encoder's features of the
*masked* image into the decoder, gated by ``1 − mask``. Test: crops of held-out photos whose masked region
(random blobs, 15–35 %) is replaced by a texture from another photo (the "new garment"); the decoder
decodes the edited image's latent (standing in for the diffusion output) with skips from the masked image.

Leakage control (a negative control for the no-harm gate): the same nonlinear adapters, ungated, reading the
*unmasked* source — the old content of the edited region — in training and at test, i.e. EMASC with its two
protections removed. The no-harm gate's metric must see that arm lose >= 0.5 dB inside the mask, or the gate
could not have failed. (The paper's ungated ablation still reads the masked image, whose edited region is
grey: it has no old content to leak, so it cannot serve as this control.)
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeAlias

import numpy as np
import torch
from scipy import ndimage

from isthmus.data.masks import blob_masks, mask_regions, paste_texture
from isthmus.data.photos import photo_patches
from isthmus.metrics.image import gradient_error, psnr, region_psnr, ssim
from isthmus.models.skip_vae import SkipVAE
from isthmus.nn.emasc import MaskAwareSkip
from isthmus.recipes.base import Paper, Recipe, RecipeSettings
from isthmus.recipes.gates import Gate, Measured, Precondition
from isthmus.recipes.registry import register_recipe
from isthmus.tasks.emasc import decode_with_skips, fit_skip_vae, train_skips, weights_hash

CHANNELS = (8, 16, 32, 32)


@dataclass
class Settings(RecipeSettings):
    size: int = 48
    n_train: int = 2000
    n_test: int = 256
    vae_steps: int = 1000
    vae_batch: int = 16
    steps: int = 500  # EMASC and decoder fine-tune, the same for every trained arm
    schedule: str = "cosine"  # lr after the warm-up (the code: constant; see describe())
    batch_size: int = 8
    lr: float = 1e-3
    band: int = 2
    n_val: int = 64  # fixed validation crops (another draw from the training photos) for the plateau test
    eval_every: int = 20


@lru_cache(maxsize=1)
def _vae(size: int, n_train: int, steps: int, batch: int) -> tuple[SkipVAE, np.ndarray, list[float]]:
    """The VAE, trained once (seed 0) on training-photo crops and frozen: it stands for SD's VAE."""
    x = photo_patches("train", n_train, size=size, seed=0)
    torch.manual_seed(0)
    vae = SkipVAE(channels=CHANNELS, groups=4)
    curve = fit_skip_vae(vae, x, steps, batch_size=batch, seed=0)
    for p in vae.parameters():
        p.requires_grad_(False)
    return vae.eval(), x, curve


def _plateau(curve: list[float]) -> float:
    """Relative loss improvement of the last 20 % of points over the 20 % before (the card's PLATEAU: < 1 %);
    applied to the validation curve (one point per ``eval_every`` steps)."""
    k = max(1, len(curve) // 5)
    a, b = float(np.mean(curve[-2 * k : -k])), float(np.mean(curve[-k:]))
    return (a - b) / max(abs(b), 1e-12)


def _scores(out: np.ndarray, d: dict[str, Any], outside: bool = True) -> dict[str, float]:
    truth, inside_r, outside_r, band_r = d["edited"], d["inside"], d["outside"], d["band"]
    m = {
        "psnr_in": float(np.nanmean(region_psnr(truth, out, inside_r))),
        "log_band_grad": math.log(float(gradient_error(truth, out, band_r).mean())),
        "psnr_whole": float(psnr(truth, out).mean()),
        "ssim_whole": float(ssim(truth, out).mean()),
    }
    if outside:
        m["psnr_out"] = float(np.nanmean(region_psnr(truth, out, outside_r)))
    return m


def _plain(s: Settings, seed: int, d: dict[str, Any]) -> Measured:
    return Measured(metrics=_scores(decode_with_skips(d["vae"], None, d["edited"], d["source"], d["masks"]), d))


def _paste(feather: bool):
    def arm(s: Settings, seed: int, d: dict[str, Any]) -> Measured:
        plain = decode_with_skips(d["vae"], None, d["edited"], d["source"], d["masks"])
        w = d["masks"]
        if feather:  # ramp into the known region only: inside the mask stays the decode
            w = np.maximum(w, np.clip(ndimage.gaussian_filter(w, (0, 0, 1.5, 1.5)) * 2, 0, 1))
        out = plain * w + d["source"] * (1 - w)
        return Measured(metrics=_scores(out, d, outside=feather))

    return arm


def _trained(kind: str | None, gated: bool = True, finetune: bool = False, mask_input: bool = True):
    """A trained arm; ``mask_input=False`` reads the unmasked source in training and at test (leakage control)."""

    def arm(s: Settings, seed: int, d: dict[str, Any]) -> Measured:
        vae: SkipVAE = copy.deepcopy(d["vae"]) if finetune else d["vae"]
        before = weights_hash(d["vae"])
        torch.manual_seed(seed)
        skip = MaskAwareSkip(vae.tap_channels(), vae.skip_channels(), kind, gated=gated) if kind else None
        fit = train_skips(
            vae,
            skip,
            d["train"],
            d["train_masks"],
            s.steps,
            batch_size=s.batch_size,
            lr=s.lr,
            finetune_decoder=finetune,
            seed=seed,
            mask_input=mask_input,
            schedule=s.schedule,
            val=(d["val"], d["val_masks"]),
            eval_every=s.eval_every,
        )
        out = decode_with_skips(vae, skip, d["edited"], d["source"], d["masks"], mask_input=mask_input)
        m = _scores(out, d)
        m["plateau_rel"] = _plateau(fit.val_curve)
        m["vae_frozen"] = float(weights_hash(d["vae"]) == before)
        if not gated:
            plain = decode_with_skips(d["vae"], None, d["edited"], d["source"], d["masks"])
            m["inside_loss_vs_plain"] = float(np.nanmean(region_psnr(d["edited"], plain, d["inside"]))) - m["psnr_in"]
        return Measured(metrics=m, curves={"loss": fit.loss_curve, "val_loss": fit.val_curve})

    return arm


@register_recipe
class LadiVtonEmasc(Recipe):
    slug = "ladi-vton-emasc"
    paper = Paper("LaDI-VTON: Latent Diffusion Textual-Inversion Enhanced Virtual Try-On", "2305.13501")
    claim = (
        "EMASC only (not try-on): mask-aware learnable skips from the frozen VAE encoder, run on the masked "
        "image, restore the detail lost by the x8 latent compression outside the edited region without "
        "harming the edited region."
    )
    Settings: TypeAlias = Settings
    modes = {
        "smoke": Settings(
            seeds=1,
            size=16,
            n_train=64,
            n_test=16,
            vae_steps=5,
            vae_batch=8,
            steps=4,
            batch_size=4,
            n_val=8,
            eval_every=2,
        ),
        "quick": Settings(seeds=3, vae_steps=300, steps=150, n_test=128),
        "record": Settings(seeds=5),
    }
    ours = "emasc"
    min_seeds = 5
    gates = (
        Gate(
            "outside PSNR over the plain decode",
            "psnr_out",
            "emasc",
            "plain",
            effect=1.0,
            headline=True,
            why="+1 dB is the visible step; the module's purpose (expected to pass: G3, G4 carry the information)",
        ),
        Gate(
            "no harm inside the edit",
            "psnr_in",
            "emasc",
            "plain",
            kind="non_inferiority",
            effect=0.1,
            why="non-inferiority within 0.1 dB: no leakage of the masked source into the edit",
        ),
        Gate(
            "skips, not more decoder training",
            "psnr_out",
            "emasc",
            "decoder_finetune",
            effect=0.5,
            why="the decoder fine-tuned for the same steps and loss without skips must trail by >= 0.5 dB",
        ),
        Gate(
            "cleaner seams than paste-back",
            "log_band_grad",
            "emasc",
            "paste_hard",
            direction="lower",
            effect=0.1054,
            why="band gradient error <= 0.9 x hard paste-back (log ratio ln(1/0.9))",
        ),
    )
    preconditions = (
        Precondition(
            "detail to restore",
            "plain",
            "psnr_out",
            "<=",
            30.0,
            why="the plain decode must lose detail outside the mask (<= 30 dB)",
        ),
        Precondition("VAE frozen", "emasc", "vae_frozen", ">=", 1.0, over="every", why="weight hash unchanged"),
        Precondition(
            "leakage is detectable",
            "leak_control",
            "inside_loss_vs_plain",
            ">=",
            0.5,
            why="negative control: skips that read the unmasked source, ungated, must lose >= 0.5 dB inside the "
            "mask against the plain decode, so G2 could fail",
        ),
        Precondition(
            "EMASC converged",
            "emasc",
            "plateau_rel",
            "<=",
            0.01,
            over="every",
            why="< 1 % relative loss improvement over the last 20 % of steps (card PLATEAU)",
        ),
        Precondition("linear EMASC converged", "emasc_linear", "plateau_rel", "<=", 0.01, over="every", why="same"),
        Precondition(
            "decoder fine-tune converged", "decoder_finetune", "plateau_rel", "<=", 0.01, over="every", why="same"
        ),
    )
    changes = (
        "After the quick result (a referee's review): the leakage control was the paper's ungated ablation, but its "
        "skips read the masked image, whose edited region is grey, so there was no old content to leak and the "
        "control could not show that G2 can fail. It is replaced by a negative control, leak_control: the same "
        "nonlinear adapters, ungated, reading the unmasked source in training and at test; the precondition "
        "(>= 0.5 dB inside loss vs plain, the card's number) now names that arm.",
        "After the quick result: PLATEAU was judged on the per-batch training loss (batch 8), whose noise alone "
        "moves a 20 %-window mean by a few per cent; it is now judged on a validation curve as the card says "
        "(the same loss on a fixed set of 64 crops from the training photos, latent means, every 20 steps). "
        "Threshold unchanged (1 %).",
        "Sized on the validation curve of one design run (seed 0, 800 steps at the constant lr 1e-3; no test "
        "metric looked at): the loss still fell 3-4 % per 20 % window and jumped by about 2 % between "
        "evaluations, so at a constant lr the 1 % plateau could not be judged within the CPU budget. The lr now "
        "decays by a cosine after the warm-up, 500 steps in record (was 300, constant); the ungated ablation "
        "(reported only) is dropped to pay for the leakage control.",
    )

    def data(self, s: Settings, seed: int) -> dict[str, Any]:
        vae, train, _ = _vae(s.size, s.n_train, s.vae_steps, s.vae_batch)
        source = photo_patches("test", s.n_test, size=s.size, seed=1000 + seed)
        textures = np.roll(source, 1, axis=0)  # photo_patches cycles photos: a neighbour is another photo
        masks = blob_masks(s.n_test, s.size, smooth=s.size / 12, seed=2000 + seed)
        inside, outside, band = mask_regions(masks, s.band)
        val = photo_patches("train", s.n_val, size=s.size, seed=99)
        return {
            "vae": vae,
            "train": train,
            "val": val,
            "val_masks": blob_masks(s.n_val, s.size, smooth=s.size / 12, seed=98),
            "train_masks": blob_masks(s.n_train, s.size, smooth=s.size / 12, seed=seed),
            "source": source,
            "masks": masks,
            "edited": paste_texture(source, masks, textures),
            "inside": inside,
            "outside": outside,
            "band": band,
        }

    def arms(self, s: Settings):
        return {
            "emasc": _trained("nonlinear"),
            "plain": _plain,
            "emasc_linear": _trained("linear"),
            "leak_control": _trained("nonlinear", gated=False, mask_input=False),
            "decoder_finetune": _trained(None, finetune=True),
            "paste_hard": _paste(False),
            "paste_feather": _paste(True),
        }

    def describe(self, s: Settings) -> dict[str, Any]:
        return {
            "data": f"{s.size}x{s.size} crops: {s.n_train} from the training photos (VAE and skip training), "
            f"{s.n_test} per seed from the held-out photos (chelsea, flower, landsat7-crop); blob masks "
            "15-35 %; the edit pastes a crop of another photo into the mask",
            "vae": f"conv VAE f8, 4 latent channels, widths {CHANNELS}, {s.vae_steps} steps (L1 + 1e-4 KL), "
            "trained once (seed 0) and frozen",
            "training": f"{s.steps} steps, batch {s.batch_size}, AdamW(lr {s.lr}, wd 1e-2 on all params), "
            f"50-step warm-up then {s.schedule} lr, clip 1.0; L1 + 0.5 x perceptual (frozen VAE-encoder features)",
            "metrics": f"PSNR inside / outside the mask (outside and inside exclude a +-{s.band} px band), band "
            "gradient error (log), whole-image PSNR and SSIM, all against the edited truth",
            "deviations": [
                "SD-2 inpainting VAE at 512x384 -> conv VAE f8 x 4 ch at 48x48 (card)",
                "VGG perceptual loss -> the frozen VAE encoder's features (no offline VGG weights)",
                f"lr 1e-3 instead of 1e-5 for {s.steps} steps instead of 40,001 (CPU budget), decayed by a cosine "
                "after the warm-up instead of held constant; batch 8 instead of 16",
                "test decodes the edited image's latent (the inference setting); training decodes the target's "
                "own latent sample (train_emasc.py)",
                "the paper's ungated ablation (card: seed 0, reported) is not run: it carries no gate or "
                "precondition now, and its CPU went to the leakage control",
                "leak_control (not in the paper or the card): skips from the unmasked source, ungated, a negative "
                "control that shows G2's metric detects leakage",
                "PLATEAU on a validation loss (64 fixed crops from the training photos, latent means) every "
                f"{s.eval_every} steps",
            ],
        }

    def figures(self, s: Settings, cells, out_dir) -> list[str]:
        from isthmus.viz import pyplot, save_figure

        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for arm, color in {
            "emasc": "tab:red",
            "emasc_linear": "tab:orange",
            "leak_control": "tab:purple",
            "decoder_finetune": "tab:blue",
        }.items():
            for i, m in enumerate(cells[arm].values()):
                c = m.curves["val_loss"]
                ax.plot(np.arange(len(c)) * s.eval_every, c, color=color, alpha=0.7, label=arm if i == 0 else None)
        ax.set_xlabel("step"), ax.set_ylabel("validation loss (L1 + 0.5 perceptual)"), ax.legend(fontsize=7)
        return [save_figure(fig, out_dir / "loss_curves.png").name]
