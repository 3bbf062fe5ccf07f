"""Seed 2 — old-photo restoration by latent translation between two VAEs (Wan et al. 2020, arXiv 2009.07047).

Claim tested (the paper's headline): restoring in the latent space of two VAEs — VAE1 shared by
synthetic old photos X and real old photos R with a latent adversary aligning z_R to z_X, VAE2 on
clean photos Y, a mapping T learned on synthetic (X, Y) latents — generalises to *real* old photos
better than a network trained directly on the synthetic pairs.

No real old photos exist offline, so (referee card, § Seed 2) R is a second degradation process,
family B of :mod:`isthmus.data.degrade` (defocus, uneven fading, vignetting, correlated film grain,
curved scratches and spots; fixed in code before any run), disjoint from family A (``OLD_PHOTO``:
Gaussian blur, fading, white noise, straight scratches, dust) that makes X. R-train crops are used
unpaired; R's clean targets are used only to score. Crops: 32² grey, split by photo (train photos
for training and validation, held-out photos for test).

Arms (same crops, epochs, batch 32, Adam lr 1e-3 β1 0.5): ``ours`` VAE1 + latent adversary + VAE2 + T;
``no_adversary`` (the paper's ablation); ``unet`` supervised X → Y (the paper's baseline family and
the strongest natural one); ``dann_unet`` the same U-Net with a DANN critic on its bottleneck fed the
same unpaired R (latent translation vs plain feature alignment); floors ``identity`` and
``tv_median`` (3×3 median then TV denoising).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, TypeAlias

import numpy as np
import torch

from isthmus.data.degrade import OLD_PHOTO, OLD_PHOTO_B, degrade
from isthmus.data.photos import TEST_PHOTOS, TRAIN_PHOTOS, photo_patches
from isthmus.metrics.image import psnr, ssim
from isthmus.metrics.probe import domain_probe_auroc
from isthmus.models.latent_translation import (
    LatentMapping,
    LatentMappingConfig,
    SpatialVAE,
    SpatialVAEConfig,
    translate,
)
from isthmus.nn.unet import UNetConfig, count_parameters
from isthmus.recipes.base import Paper, Recipe, RecipeSettings
from isthmus.recipes.gates import Check, Gate, Measured, Precondition, converged_on_every_seed, plateaued
from isthmus.recipes.registry import register_recipe
from isthmus.tasks.restore import RestorerConfig, fit_restorer
from isthmus.train import Trainer, TrainerConfig
from isthmus.viz import pyplot, save_figure, seed_bars

N_EXAMPLES = 6  # R-test crops kept (seed 0) for the example figure


@dataclass
class Settings(RecipeSettings):
    n_train: int = 2000
    n_val: int = 300
    n_test: int = 1000
    patch: int = 32
    epochs: int = 8
    batch_size: int = 32
    lr: float = 1e-3
    beta1: float = 0.5  # the authors' Adam β1
    unet_channels: list[int] = field(default_factory=lambda: [12, 24, 48])
    vae_widths: list[int] = field(default_factory=lambda: [16, 32])
    latent_channels: int = 8  # 8×8×8 latent for a 32² crop (card)
    kl_weight: float = 1e-4  # chosen on train-photo validation crops (describe())
    noise_std: float = 1.0  # the authors' unit decoder noise
    adversary_weight: float = 0.1  # latent critic (VAE1) and DANN critic (U-Net) alike
    mapping_width: int = 64
    mapping_blocks: int = 2  # paper 6 (card: 2)
    mapping_l1: float = 60.0  # the authors' --l2_feat 60 --use_l1_feat


def _augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random rot90 and flips per crop (the card's augmentation), applied before degrading."""
    out = np.empty_like(x)
    for i in range(len(x)):
        a = np.rot90(x[i], int(rng.integers(4)), axes=(1, 2))
        out[i] = a[:, :, ::-1] if rng.random() < 0.5 else a
    return out


def make_data(s: Settings, seed: int) -> dict[str, np.ndarray]:
    """Clean/X/R crops for train (R unpaired: other crops), validation (train photos) and test (test photos)."""
    rng = np.random.default_rng(seed)
    p = lambda split, n, k: photo_patches(split, n, s.patch, seed=1000 * k + seed, gray=True)  # noqa: E731
    y_tr = _augment(p("train", s.n_train, 1), rng)
    r_src = _augment(p("train", s.n_train, 2), rng)  # different crops: R-train is never paired with Y
    y_va, y_te = p("train", s.n_val, 3), p("test", s.n_test, 4)
    A, B = lambda x, k: degrade(x, OLD_PHOTO, 10 * seed + k), lambda x, k: degrade(x, OLD_PHOTO_B, 10 * seed + k)  # noqa: E731
    return {
        "y_tr": y_tr,
        "x_tr": A(y_tr, 1),
        "r_tr": B(r_src, 2),
        "y_va": y_va,
        "x_va": A(y_va, 3),
        "r_va": B(y_va, 4),
        "y_te": y_te,
        "x_te": A(y_te, 5),
        "r_te": B(y_te, 6),
    }


def _tc(s: Settings, seed: int) -> TrainerConfig:
    return TrainerConfig(
        epochs=s.epochs, batch_size=s.batch_size, lr=s.lr, betas=(s.beta1, 0.999), seed=seed, progress=False
    )


def _vae_cfg(s: Settings, adversary: float) -> SpatialVAEConfig:
    return SpatialVAEConfig(
        channels=1,
        widths=list(s.vae_widths),
        latent_channels=s.latent_channels,
        noise_std=s.noise_std,
        kl_weight=s.kl_weight,
        adversary_weight=adversary,
    )


def _fit(model: torch.nn.Module, s: Settings, seed: int, train: tuple, val: tuple, key: str) -> list[float]:
    torch.manual_seed(seed)
    t = lambda a: torch.as_tensor(np.ascontiguousarray(a))  # noqa: E731
    res = Trainer(model, _tc(s, seed)).fit(tuple(t(a) for a in train), tuple(t(a) for a in val))
    model.eval()
    return [float(h[f"val_{key}"]) for h in res.history]


def _scores(d: Mapping[str, np.ndarray], restore) -> dict[str, Any]:
    out_r, out_x = restore(d["r_te"]), restore(d["x_te"])
    pr = psnr(d["y_te"], out_r)
    return {
        "items": pr,
        "psnr_R": float(pr.mean()),
        "ssim_R": float(ssim(d["y_te"], out_r).mean()),
        "psnr_X": float(psnr(d["y_te"], out_x).mean()),
        "examples": out_r[:N_EXAMPLES],
    }


def _measured(sc: dict[str, Any], seed: int, curves: dict[str, list[float]], **extra: float) -> Measured:
    metrics = {k: sc[k] for k in ("psnr_R", "ssim_R", "psnr_X")}
    if curves:
        metrics["converged"] = float(all(plateaued(c) for c in curves.values()))
    metrics.update(extra)
    info = {"examples": np.round(sc["examples"], 3).tolist()} if seed == 0 else {}
    return Measured(metrics=metrics, items={"psnr_R": [float(v) for v in sc["items"]]}, curves=curves, info=info)


def _latent_arm(adversary: bool):
    def arm(s: Settings, seed: int, data: dict[str, Any]) -> Measured:
        d = data["arrays"]
        vae1 = SpatialVAE(_vae_cfg(s, s.adversary_weight if adversary else 0.0))
        c1 = _fit(vae1, s, seed, (d["x_tr"], d["r_tr"]), (d["x_va"], d["r_va"]), "recon_l1")
        vae2 = data["vae2"]
        mapping = LatentMapping(LatentMappingConfig(s.latent_channels, s.mapping_width, s.mapping_blocks, s.mapping_l1))
        ct = _fit(
            mapping,
            s,
            seed,
            (vae1.encode_array(d["x_tr"]), vae2.encode_array(d["y_tr"])),
            (vae1.encode_array(d["x_va"]), vae2.encode_array(d["y_va"])),
            "latent_l1",
        )
        sc = _scores(d, lambda x: translate(vae1, mapping, vae2, x))
        half = len(d["x_te"]) // 2  # different crops on each side, so the probe cannot pair them
        z = lambda x: vae1.encode_array(x).reshape(len(x), -1)  # noqa: E731
        auroc = domain_probe_auroc(z(d["x_te"][:half]), z(d["r_te"][half:]), random_state=seed)
        return _measured(
            sc,
            seed,
            {"vae1_val_recon_l1": c1, "vae2_val_recon_l1": data["vae2_curve"], "mapping_val_latent_l1": ct},
            probe_auroc=auroc,
            vae2_psnr=data["vae2_psnr"],
        )

    return arm


def _unet_arm(dann: bool):
    def arm(s: Settings, seed: int, data: dict[str, Any]) -> Measured:
        d = data["arrays"]
        cfg = RestorerConfig(
            unet=UNetConfig(1, 1, list(s.unet_channels)), domain_adversary=s.adversary_weight if dann else 0.0
        )
        fit = fit_restorer(
            d["x_tr"], d["y_tr"], cfg, _tc(s, seed), val=(d["x_va"], d["y_va"]), unpaired=d["r_tr"] if dann else None
        )
        sc = _scores(d, fit.model.restore)
        ident_x = float(psnr(d["y_te"], d["x_te"]).mean())
        return _measured(
            sc,
            seed,
            {"val_l1": fit.val_loss},
            x_minus_r=sc["psnr_X"] - sc["psnr_R"],
            gain_over_identity_X=sc["psnr_X"] - ident_x,
        )

    return arm


def _tv_median(x: np.ndarray) -> np.ndarray:
    from scipy import ndimage
    from skimage.restoration import denoise_tv_chambolle

    return np.stack([denoise_tv_chambolle(ndimage.median_filter(im[0], 3), weight=0.1)[None] for im in x])


def _floor(kind: str):
    def arm(s: Settings, seed: int, data: dict[str, Any]) -> Measured:
        return _measured(_scores(data["arrays"], (lambda x: x) if kind == "identity" else _tv_median), seed, {})

    return arm


@register_recipe
class OldPhotoRestoration(Recipe):
    slug = "old-photo-restoration"
    paper = Paper("Old Photo Restoration via Deep Latent Space Translation", "2009.07047")
    claim = (
        "Restoring in the latent space of two VAEs (VAE1 shared by synthetic-old and real-old photos with a "
        "latent adversary, VAE2 on clean photos, a mapping T learned on synthetic pairs) generalises to real "
        "old photos better than a network trained directly on the synthetic pairs."
    )
    Settings: TypeAlias = Settings
    modes = {
        "smoke": Settings(seeds=1, n_train=32, n_val=16, n_test=20, epochs=1),
        "quick": Settings(seeds=3, n_train=1000, n_val=200, n_test=500, epochs=3),
        "record": Settings(seeds=3, n_train=1200, n_val=200, n_test=600, epochs=10),
    }
    changes = (
        "Record settings changed from 2,000 crops x 8 epochs / 1,000 test crops to 1,200 crops x 10 epochs / 600 "
        "test crops (the same ~375 steps per stage) after the first quick seed (no verdict seen: the quick run was "
        "stopped after seed 0 to save CPU) measured ~35 cpu-s of per-seed overhead and 3-point validation curves: "
        "10 points give the plateau rule something to judge within the 10 cpu-min budget.",
    )
    gates = (
        Gate(
            "latent translation beats the direct U-Net on real-old (family B) photos",
            "psnr_R",
            "ours",
            "unet",
            effect=0.5,
            headline=True,
            why="0.5 dB is a visible restoration gain (card); the paper's headline is ours > direct restoration",
        ),
        Gate(
            "the latent adversary helps (paper ablation)",
            "psnr_R",
            "ours",
            "no_adversary",
            effect=0.3,
            why="0.3 dB: the usual smallest ablation gain worth reporting, above the expected per-seed SD",
        ),
        Gate(
            "latent translation beats plain DANN feature alignment",
            "psnr_R",
            "ours",
            "dann_unet",
            effect=0.3,
            why="same unpaired R: is the gain from translating in latent space, not from seeing R at all?",
        ),
    )
    preconditions = (
        Precondition(
            "a domain gap exists",
            "unet",
            "x_minus_r",
            ">=",
            1.0,
            why="the U-Net's PSNR on R-test must be >= 1 dB below its X-test PSNR, else there is no gap "
            "for latent translation to close",
        ),
        Precondition(
            "the U-Net restores synthetic photos",
            "unet",
            "gain_over_identity_X",
            ">=",
            2.0,
            why="the direct baseline must beat identity on X-test by >= 2 dB (positive control)",
        ),
        Precondition(
            "alignment engaged with the adversary",
            "ours",
            "probe_auroc",
            "<=",
            0.75,
            why="a linear R-vs-X probe on VAE1 latents must be near chance with the adversary",
        ),
        Precondition(
            "domains separable without the adversary",
            "no_adversary",
            "probe_auroc",
            ">=",
            0.9,
            why="without it the probe must tell R from X, else the adversary had nothing to do",
        ),
        *(
            converged_on_every_seed(a, "every stage's validation curve plateaued (isthmus.recipes.gates.plateaued)")
            for a in ("ours", "no_adversary", "unet", "dann_unet")
        ),
    )

    def data(self, settings: Settings, seed: int) -> dict[str, Any]:
        d = make_data(settings, seed)
        vae2 = SpatialVAE(_vae_cfg(settings, 0.0))  # VAE2 on clean photos, shared by ours and no_adversary
        curve = _fit(vae2, settings, seed, (d["y_tr"],), (d["y_va"],), "recon_l1")
        with torch.no_grad():
            rec = np.clip(vae2(torch.as_tensor(d["y_te"])).numpy(), 0, 1)
        return {"arrays": d, "vae2": vae2, "vae2_curve": curve, "vae2_psnr": float(psnr(d["y_te"], rec).mean())}

    def arms(self, settings: Settings):
        return {
            "ours": _latent_arm(True),
            "no_adversary": _latent_arm(False),
            "unet": _unet_arm(False),
            "dann_unet": _unet_arm(True),
            "identity": _floor("identity"),
            "tv_median": _floor("tv_median"),
        }

    def checks(self, settings: Settings, cells: Mapping[str, Mapping[int, Measured]]) -> list[Check]:
        vae2 = np.mean([m.metrics["vae2_psnr"] for m in cells["ours"].values()])
        unet_x = np.mean([m.metrics["psnr_X"] for m in cells["unet"].values()])
        return [
            Check(
                "VAE2 does not cap the latent route",
                bool(vae2 >= unet_x),
                f"VAE2 clean-reconstruction PSNR {vae2:.2f} dB vs the U-Net's X-test PSNR {unet_x:.2f} dB "
                "(VAE blur, not the domain gap, would otherwise cap the latent route)",
            )
        ]

    def notes(self, settings: Settings, cells: Mapping[str, Mapping[int, Measured]]) -> list[str]:
        """Comparisons with the classical floor that a reader needs beside the gates (not judged)."""
        mean = lambda a, k: float(np.mean([m.metrics[k] for m in cells[a].values()]))  # noqa: E731
        out = [
            f"ours - tv_median (classical floor) on R-test: {mean('ours', 'psnr_R') - mean('tv_median', 'psnr_R'):+.2f}"
            f" dB PSNR, {mean('ours', 'ssim_R') - mean('tv_median', 'ssim_R'):+.3f} SSIM; a latent route that "
            "does not beat the floor has not shown restoration, only a smaller loss than the U-Net"
        ]
        for a in ("unet", "dann_unet"):
            gap = mean(a, "psnr_X") - mean("tv_median", "psnr_X")
            if gap < 1.0:
                out.append(
                    f"{a} is within {gap:+.2f} dB of the TV+median floor on X-test (the family it was trained "
                    "on): the direct baseline is weak at this budget, so a win over it is weak evidence"
                )
        return out

    def describe(self, settings: Settings) -> dict[str, Any]:
        from isthmus.tasks.restore import Restorer

        unet = count_parameters(Restorer(RestorerConfig(unet=UNetConfig(1, 1, list(settings.unet_channels)))))
        vae = count_parameters(SpatialVAE(_vae_cfg(settings, 0.0)))
        t = count_parameters(
            LatentMapping(
                LatentMappingConfig(settings.latent_channels, settings.mapping_width, settings.mapping_blocks)
            )
        )
        return {
            "data": (
                f"32² grey crops with rot90/flip, split by photo: train {list(TRAIN_PHOTOS)}, test "
                f"{list(TEST_PHOTOS)}; X = family A {list(OLD_PHOTO)}, R = family B {list(OLD_PHOTO_B)}; "
                f"{settings.n_train} train pairs + {settings.n_train} unpaired R crops, {settings.n_val} val, "
                f"{settings.n_test} test crops"
            ),
            "parameters": {"unet": unet, "vae (each)": vae, "mapping": t, "ours total (2 VAEs + T)": 2 * vae + t},
            "kl_weight_choice": (
                "design probe on train-photo crops only (3,000 crops, 375 steps): VAE2 "
                "reconstruction PSNR 17.6 / 21.2 / 23.1 / 25.7 dB at kl_weight 1e-2 / 1e-3 / 1e-4 / "
                "0, against 21.4 dB for the U-Net on X; 1e-4 is the largest weight that keeps "
                "VAE2 above the U-Net (precondition c) while still regularising"
            ),
            "deviations": [
                "R is a synthetic degradation family (no real old photos offline), per the card",
                "reduced VAE as in the authors' code (errata): mean-only encoder, decoder input z + N(0, I), "
                "'KL' = kl_weight * mean(z^2); L1 pixel reconstruction replaces LSGAN + feature matching + VGG "
                "(no VGG weights offline); kl_weight 1e-4 instead of 1 because our L1 term is ~100x smaller than "
                "the authors' FM/VGG terms",
                "latent adversary by gradient reversal (one optimiser, BCE critic) instead of alternating LSGAN "
                "updates; weight 0.1 (the authors' latent GAN is ~1/20 of their recon terms)",
                "no pixel GAN/VGG on T; T with 2 residual blocks (paper 6); no non-local block, no face stage",
                "Adam lr 1e-3 (paper 2e-4) for every arm: the CPU budget allows a few hundred steps per stage",
                "family A has no JPEG and adds dust (the OLD_PHOTO family built before this recipe)",
                "convergence judged by isthmus.recipes.gates.plateaued on per-epoch validation curves (the "
                "card's '< 1 % over the last 20 %' is stricter)",
            ],
        }

    def figures(self, settings: Settings, cells, out_dir: Path) -> list[str]:
        plt = pyplot()
        names = []
        seed0 = {a: cells[a].get(0) for a in ("identity", "unet", "dann_unet", "no_adversary", "ours")}
        if all(m is not None and "examples" in m.info for m in seed0.values()):
            d = make_data(settings, 0)
            rows = {
                "R input": np.asarray(seed0["identity"].info["examples"]),
                **{a: np.asarray(m.info["examples"]) for a, m in seed0.items() if a != "identity"},
                "clean": d["y_te"][:N_EXAMPLES],
            }
            fig, axes = plt.subplots(len(rows), N_EXAMPLES, figsize=(1.3 * N_EXAMPLES, 1.35 * len(rows)))
            for r, (label, imgs) in enumerate(rows.items()):
                for c in range(N_EXAMPLES):
                    axes[r, c].imshow(imgs[c, 0], cmap="gray", vmin=0, vmax=1)
                    axes[r, c].set_xticks([]), axes[r, c].set_yticks([])
                axes[r, 0].set_ylabel(label, fontsize=7)
            fig.suptitle("R-test (family B) crops from held-out photos, seed 0", fontsize=8)
            names.append(save_figure(fig, out_dir / "examples.png").name)
        fig, ax = plt.subplots(figsize=(6, 3.6))
        arms = ["identity", "tv_median", "unet", "dann_unet", "no_adversary", "ours"]
        for key, off, color in (("psnr_X", -0.2, "tab:gray"), ("psnr_R", 0.2, "tab:red")):
            values = {a: [m.metrics[key] for m in cells[a].values()] for a in arms}
            seed_bars(ax, values, offset=off, width=0.4, color=color, label=key)
        ax.set_ylabel("PSNR on held-out photos (dB)"), ax.legend(fontsize=7)
        ax.set_title("X-test (family A, seen) vs R-test (family B, unseen); one dot per seed", fontsize=8)
        names.append(save_figure(fig, out_dir / "psnr_by_arm.png").name)
        return names
