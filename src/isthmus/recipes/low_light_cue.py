"""Seed 16 — CUE: customised learnable priors for a Retinex deep-unfolding low-light enhancer.

Zheng et al., ICCV 2023 (arXiv 2309.01958, code ``zheng980629/CUE``). Claim tested (the headline):
an unfolding enhancer whose illumination step is conditioned on a masked-AE illumination prior
("structure flow") and trained with a frozen gradient-map prior as a feature loss ("optimisation
flow") beats the same unfolding with generic proximal nets, and end-to-end mapping nets, in PSNR.

Data (referee card, § Seed 16; no LOL offline): RGB crops of the bundled photos, split by photo, made
low-light by :func:`isthmus.data.lowlight.synthesize_low_light` (I = PoissonGauss(k·S ⊙ I_gt^γ)),
which makes the paper's Retinex model exact. Arms (same crops, epochs, batch 16, Adam 1e-3):
``cue`` (both priors pretrained; illumination prior fine-tuned, gradient prior frozen, as the
errata say); ``generic`` (the paper's ablation: generic prox_L widened to equal parameters, no prior
loss); ``random_prior`` (the referee's capacity control: CUE's architecture with both prior nets
randomly initialised — the illumination prior trained end to end, the gradient prior frozen random);
``unet`` (an equal-parameter residual U-Net, the end-to-end family); floors ``gamma_tv`` (adaptive
gamma + TV denoising) and ``hist_eq`` (histogram equalisation, scikit-image).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, TypeAlias

import numpy as np
import torch
from scipy import ndimage

from isthmus.data.lowlight import synthesize_low_light
from isthmus.data.photos import TEST_PHOTOS, TRAIN_PHOTOS, photo_patches
from isthmus.metrics.image import psnr, ssim
from isthmus.models.cue import LOSS_WEIGHTS, CUEEnhancer, GradientPrior, IlluminationPriorAE, window_mask
from isthmus.nn.unet import UNet, UNetConfig, count_parameters
from isthmus.nn.unfolding import RetinexUnfoldingConfig
from isthmus.recipes.base import Paper, Recipe, RecipeSettings
from isthmus.recipes.gates import Gate, Measured, Precondition, converged_on_every_seed, plateaued
from isthmus.recipes.registry import register_recipe
from isthmus.tasks.restore import RestorerConfig, fit_restorer
from isthmus.train import Trainer, TrainerConfig
from isthmus.viz import pyplot, save_figure, seed_bars


@dataclass
class Settings(RecipeSettings):
    n_train: int = 3000
    n_val: int = 200
    n_test: int = 600
    patch: int = 16
    epochs: int = 4
    prior_epochs: int = 4
    batch_size: int = 16
    lr: float = 1e-3
    width: int = 8
    prior_channels: list[int] = field(default_factory=lambda: [6, 12])
    gradient_prior_channels: list[int] = field(default_factory=lambda: [8, 16])
    enhance_channels: list[int] = field(default_factory=lambda: [8, 16])
    mask_window: int = 4
    mask_ratio: float = 0.5


def _unfold_cfg(s: Settings, illumination: Literal["prior", "prox"], prox_l_width: int = 8) -> RetinexUnfoldingConfig:
    return RetinexUnfoldingConfig(
        width=s.width,
        illumination=illumination,
        prior_channels=list(s.prior_channels),
        prox_l_width=prox_l_width,
        enhance_channels=list(s.enhance_channels),
    )


def matched_widths(s: Settings) -> tuple[int, int, int]:
    """(CUE parameters, prox_L width of the generic arm, U-Net base width) matched to CUE's count."""
    target = count_parameters(CUEEnhancer(_unfold_cfg(s, "prior")).net)
    prox = min(range(4, 65), key=lambda w: abs(count_parameters(CUEEnhancer(_unfold_cfg(s, "prox", w)).net) - target))
    base = min(range(4, 65), key=lambda b: abs(count_parameters(UNet(UNetConfig(3, 3, [b, 2 * b]))) - target))
    return target, prox, base


def _augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = np.empty_like(x)
    for i in range(len(x)):
        a = np.rot90(x[i], int(rng.integers(4)), axes=(1, 2))
        out[i] = a[:, :, ::-1] if rng.random() < 0.5 else a
    return out


def gamma_tv(low: np.ndarray) -> np.ndarray:
    """Floor: a per-image gamma mapping the mean to 0.45, then TV denoising (scikit-image)."""
    from skimage.restoration import denoise_tv_chambolle

    out = np.empty_like(low)
    for i, im in enumerate(low):
        m = float(np.clip(im.mean(), 1e-3, 0.9))
        g = np.log(0.45) / np.log(m)
        out[i] = denoise_tv_chambolle(np.clip(im, 0, 1) ** g, weight=0.05, channel_axis=0)
    return np.clip(out, 0, 1)


def hist_eq(low: np.ndarray) -> np.ndarray:
    from skimage import exposure

    return np.stack([exposure.equalize_hist(im) for im in low]).astype(np.float32)


def illumination_prior_data(gt: np.ndarray, s: Settings, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """(masked input, target, keep mask): max-channel of a brightened crop (γ ∈ [0.2, 1]), half its windows
    zeroed; the target is the smoothed, unmasked map (Gaussian σ 1 standing in for the bilateral filter)."""
    g = rng.uniform(0.2, 1.0, size=(len(gt), 1, 1, 1)).astype(np.float32)
    illum = (gt**g).max(axis=1, keepdims=True)
    target = ndimage.gaussian_filter(illum, sigma=(0, 0, 1, 1)).astype(np.float32)
    keep = window_mask(len(gt), gt.shape[2], gt.shape[3], s.mask_window, s.mask_ratio, rng)
    return illum * keep, target, keep


def _tc(s: Settings, seed: int, epochs: int) -> TrainerConfig:
    return TrainerConfig(epochs=epochs, batch_size=s.batch_size, lr=s.lr, seed=seed, progress=False)


def _t(*arrays: np.ndarray) -> tuple[torch.Tensor, ...]:
    return tuple(torch.as_tensor(np.ascontiguousarray(a)) for a in arrays)


def _predict(model: torch.nn.Module, x: np.ndarray, batch: int = 256) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return np.clip(
            np.concatenate([model(torch.as_tensor(x[i : i + batch])).numpy() for i in range(0, len(x), batch)]), 0, 1
        )


def pretrain_priors(d: dict[str, np.ndarray], s: Settings, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed + 77)
    torch.manual_seed(seed)
    illum = IlluminationPriorAE(s.prior_channels)
    Trainer(illum, _tc(s, seed, s.prior_epochs)).fit(_t(*illumination_prior_data(d["gt_tr"], s, rng)))
    xv, tv, kv = illumination_prior_data(d["gt_va"], s, rng)
    hidden = 1 - kv
    fill = (xv * kv).sum(axis=(1, 2, 3), keepdims=True) / kv.sum(axis=(1, 2, 3), keepdims=True)
    model_l1 = float((np.abs(_predict(illum, xv) - tv) * hidden).sum() / hidden.sum())
    fill_l1 = float((np.abs(fill - tv) * hidden).sum() / hidden.sum())
    grad = GradientPrior(3, s.gradient_prior_channels)
    Trainer(grad, _tc(s, seed, s.prior_epochs)).fit(_t(d["gt_tr"]))
    grad.eval()
    with torch.no_grad():
        gv = torch.as_tensor(d["gt_va"])
        from isthmus.models.cue import gradient_magnitude

        target = gradient_magnitude(gv)
        grad_l1, zero_l1 = float((grad(gv) - target).abs().mean()), float(target.abs().mean())
    torch.manual_seed(seed + 1)
    random_grad = GradientPrior(3, s.gradient_prior_channels)  # the control's frozen, untrained prior
    return {
        "illumination": illum,
        "gradient": grad,
        "random_gradient": random_grad,
        "illum_prior_ratio": model_l1 / fill_l1,
        "grad_prior_ratio": grad_l1 / zero_l1,
    }


def _score(d: Mapping[str, Any], out: np.ndarray, curve: list[float] | None, **extra: float) -> Measured:
    p = psnr(d["gt_te"], out)
    metrics = {
        "psnr": float(p.mean()),
        "ssim": float(ssim(d["gt_te"], out).mean()),
        "gain_over_floor": float(p.mean()) - d["floor_psnr"],
    }
    curves = {}
    if curve is not None:
        metrics["converged"] = float(plateaued(curve))
        curves["val_output_l1"] = curve
    metrics.update(extra)
    return Measured(metrics=metrics, items={"psnr": [float(v) for v in p]}, curves=curves)


def _unfolding_arm(kind: str):
    def arm(s: Settings, seed: int, data: dict[str, Any]) -> Measured:
        d, pri = data["arrays"], data["priors"]
        _, prox_w, _ = data["matched"]
        torch.manual_seed(seed)
        if kind == "generic":
            model = CUEEnhancer(_unfold_cfg(s, "prox", prox_w))
        else:
            model = CUEEnhancer(_unfold_cfg(s, "prior"), pri["gradient" if kind == "cue" else "random_gradient"])
            if kind == "cue":  # initialised from the pretrained masked AE, then fine-tuned with the rest
                assert model.net.prior is not None  # illumination="prior" builds it
                model.net.prior.load_state_dict(pri["illumination"].net.state_dict())
        res = Trainer(model, _tc(s, seed, s.epochs)).fit(_t(d["low_tr"], d["gt_tr"]), _t(d["low_va"], d["gt_va"]))
        curve = [float(h["val_output"]) for h in res.history]
        model.eval()
        with torch.no_grad():
            illum = np.concatenate(
                [
                    model.net.decompose(torch.as_tensor(d["low_te"][i : i + 256]))[1].numpy()
                    for i in range(0, len(d["low_te"]), 256)
                ]
            )
        extra = {
            "illumination_l1": float(np.abs(illum - d["illum_te"]).mean()),
            "parameters": float(count_parameters(model.net)),
        }
        if kind == "cue":
            extra.update(illum_prior_ratio=pri["illum_prior_ratio"], grad_prior_ratio=pri["grad_prior_ratio"])
        return _score(d, _predict(model, d["low_te"]), curve, **extra)

    return arm


def _unet_arm(s: Settings, seed: int, data: dict[str, Any]) -> Measured:
    d = data["arrays"]
    base = data["matched"][2]
    cfg = RestorerConfig(unet=UNetConfig(3, 3, [base, 2 * base]))
    fit = fit_restorer(d["low_tr"], d["gt_tr"], cfg, _tc(s, seed, s.epochs), val=(d["low_va"], d["gt_va"]))
    return _score(d, fit.model.restore(d["low_te"]), fit.val_loss, parameters=float(count_parameters(fit.model)))


def _floor(fn):
    def arm(s: Settings, seed: int, data: dict[str, Any]) -> Measured:
        return _score(data["arrays"], fn(data["arrays"]["low_te"]), None)

    return arm


@register_recipe
class LowLightCUE(Recipe):
    slug = "low-light-cue"
    paper = Paper("Empowering Low-Light Image Enhancer through Customized Learnable Priors", "2309.01958")
    claim = (
        "Customised learnable priors (a masked-AE illumination prior conditioning the illumination step, a "
        "frozen gradient-map prior as a feature loss) make a Retinex deep-unfolding enhancer beat unfolding "
        "with generic proximal nets, and end-to-end mapping nets, in PSNR."
    )
    Settings: TypeAlias = Settings
    ours = "cue"
    modes = {
        "smoke": Settings(seeds=1, n_train=48, n_val=16, n_test=16, epochs=1, prior_epochs=1),
        "quick": Settings(seeds=3, n_train=800, n_val=100, n_test=300, epochs=2, prior_epochs=2),
        "record": Settings(seeds=3, n_train=2000, epochs=3, prior_epochs=3),
    }
    changes = (
        "Record settings reduced from 3,000 crops x 4 epochs (priors 4 epochs) to 2,000 x 3 (priors 3) after the quick "
        "run (104 cpu-s; every arm below the floor, priors not pretrained, nothing converged) measured that the "
        "declared record would need ~650 cpu-s and would not finish before the session's hard stop; the reduced "
        "record (~375 steps per arm) is a sizing decision, and it remains far from convergence.",
    )
    gates = (
        Gate(
            "learned priors beat generic proximal nets (paper ablation)",
            "psnr",
            "cue",
            "generic",
            effect=0.3,
            headline=True,
            why="0.3 dB: smaller gains are ablation noise and below what restoration papers claim "
            "for one component (card, notes)",
        ),
        Gate(
            "prior pretraining, not prior capacity",
            "psnr",
            "cue",
            "random_prior",
            effect=0.3,
            why="the same architecture with randomly initialised priors separates pretraining from parameters",
        ),
        Gate(
            "beats an equal-parameter U-Net",
            "psnr",
            "cue",
            "unet",
            effect=0.3,
            why="the end-to-end mapping family the paper compares with, at equal parameters",
        ),
    )
    preconditions = (
        *(
            Precondition(
                f"{a} beats the gamma+TV floor by >= 1 dB",
                a,
                "gain_over_floor",
                ">=",
                1.0,
                why="a learned arm that cannot beat a classical floor says the budget is broken",
            )
            for a in ("cue", "generic", "random_prior", "unet")
        ),
        Precondition(
            "illumination prior pretrained",
            "cue",
            "illum_prior_ratio",
            "<=",
            0.5,
            why="its masked L1 must be <= 50 % of filling masked windows with the visible mean",
        ),
        Precondition(
            "gradient prior pretrained",
            "cue",
            "grad_prior_ratio",
            "<=",
            0.5,
            why="its L1 must be <= 50 % of predicting zeros",
        ),
        *(
            converged_on_every_seed(a, "the validation output-L1 curve plateaued (isthmus.recipes.gates.plateaued)")
            for a in ("cue", "generic", "random_prior", "unet")
        ),
    )

    def data(self, settings: Settings, seed: int) -> dict[str, Any]:
        s = settings
        rng = np.random.default_rng(seed)
        p = lambda split, n, k: photo_patches(split, n, s.patch, seed=1000 * k + seed)  # noqa: E731
        gt_tr, gt_va, gt_te = _augment(p("train", s.n_train, 1), rng), p("train", s.n_val, 2), p("test", s.n_test, 3)
        tr, va, te = (synthesize_low_light(g, seed=10 * seed + k) for k, g in enumerate((gt_tr, gt_va, gt_te)))
        d: dict[str, Any] = {
            "gt_tr": gt_tr,
            "low_tr": tr.low,
            "gt_va": gt_va,
            "low_va": va.low,
            "gt_te": gt_te,
            "low_te": te.low,
            "illum_te": te.illumination,
        }
        d["floor_psnr"] = float(psnr(gt_te, gamma_tv(te.low)).mean())
        return {"arrays": d, "priors": pretrain_priors(d, s, seed), "matched": matched_widths(s)}

    def arms(self, settings: Settings):
        return {
            "cue": _unfolding_arm("cue"),
            "generic": _unfolding_arm("generic"),
            "random_prior": _unfolding_arm("random"),
            "unet": _unet_arm,
            "gamma_tv": _floor(gamma_tv),
            "hist_eq": _floor(hist_eq),
        }

    def describe(self, settings: Settings) -> dict[str, Any]:
        target, prox, base = matched_widths(settings)
        return {
            "data": (
                f"{settings.patch}² RGB crops with rot90/flip, split by photo (train {list(TRAIN_PHOTOS)}, test "
                f"{list(TEST_PHOTOS)}); I_low = PoissonGauss(k S I_gt^gamma), k 0.05-0.2, S smooth in "
                f"[0.6, 1], gamma 1-1.4, read noise 0.005-0.02, gain 200-1000; {settings.n_train} train, "
                f"{settings.n_val} val, {settings.n_test} test pairs"
            ),
            "parameters": {
                "cue (inference net)": target,
                "generic prox_L width": prox,
                "unet channels": [base, 2 * base],
            },
            "loss_weights": LOSS_WEIGHTS,
            "deviations": [
                f"{settings.patch}² crops (card 32²) and a few hundred steps (card 2,000; paper 300k): the 10 cpu-min "
                "record budget on a shared 2-core machine",
                "Adam lr 1e-3 for every arm (paper 1e-4 over 300k iterations); no EMA, no lr steps",
                "the two illumination mutual-consistency terms are left out; the other LearnablePrior.yml terms and "
                "weights are kept",
                "illumination-prior target: Gaussian smoothing (sigma 1) instead of cv2.bilateralFilter; windows "
                f"{settings.mask_window}x{settings.mask_window} (paper 20x20 at 120² crops)",
                "the noise/gradient prior is a small conv U-Net mapping an image to its Sobel magnitude (paper: a "
                "MAE-ViT to HOG); its feature loss reads the U-Net's full-resolution features",
                "random_prior control: the gradient prior stays frozen at its random init (a trainable loss net "
                "would collapse the loss to zero)",
                "convergence by plateaued() on the per-epoch validation output L1 (card: val PSNR change < 0.1 dB)",
            ],
        }

    def figures(self, settings: Settings, cells, out_dir: Path) -> list[str]:
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6, 3.4))
        arms = ["hist_eq", "gamma_tv", "unet", "generic", "random_prior", "cue"]
        seed_bars(ax, {a: [m.metrics["psnr"] for m in cells[a].values()] for a in arms}, highlight="cue", rotation=0)
        ax.set_ylabel("PSNR on held-out photos (dB)")
        ax.set_title("low-light enhancement, one dot per seed", fontsize=8)
        return [save_figure(fig, out_dir / "psnr_by_arm.png").name]
