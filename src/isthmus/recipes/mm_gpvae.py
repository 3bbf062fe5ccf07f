"""Seed 8 — MM-GPVAE recovers shared and modality-specific GP latents from images + spikes.

Gondur, Sikandar, Schaffer, Aoi & Keeley, ICLR 2024, arXiv 2310.03111. Data: the paper's simulation
(:func:`isthmus.data.gp_sim.make_mm_gp_sim`): an MNIST "3" rotated by a shared GP latent and zoomed by an
image-only GP latent, 100 Poisson neurons driven by the shared and a neural-only GP latent (length-scale
10 steps, T = 60). Model: :class:`isthmus.models.MultimodalGPVAE` (1 shared, 1 image, 1 neural latent).

Arms, same data, seeds and training budget (Adam, one learning rate for all parts, grad-clip 1):
``mmgpvae`` (both modalities, Fourier GP prior) against ``image_only`` and ``neural_only`` (Fourier GP,
one modality), ``mm_time`` (both modalities, time-domain GP prior with the *same posterior family* as
the Fourier arm — the exact Gaussian posterior given the encoders' per-step pseudo-observations — so
the comparison isolates the parameterisation) and ``plain_vae`` (both modalities, N(0, 1) per step).

Metrics on held-out trials: ``r2_<latent>`` — R² of each true latent from *all* of an arm's posterior-mean
latents after an affine map fitted by least squares (what the arm's latents know; the shared-latent
comparison uses this on both sides); for the two-modality arms also ``r2_<latent>_block`` — from the arm's designated block only (does the shared/private split land
where it should); ``image_mse`` per pixel and ``rate_r2`` (predicted vs true Poisson rates) where an arm
models that modality.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import torch

from isthmus.data.gp_sim import MMGPSim, make_mm_gp_sim
from isthmus.metrics.latent import affine_r2
from isthmus.models import MultimodalGPVAE
from isthmus.recipes.base import Paper, Recipe, RecipeSettings
from isthmus.recipes.gates import Gate, Measured, Precondition, plateaued
from isthmus.recipes.registry import register_recipe
from isthmus.train import Trainer, TrainerConfig
from isthmus.viz import pyplot, save_figure


@dataclass
class Settings(RecipeSettings):
    n_train: int = 120
    n_test: int = 30
    T: int = 60
    image_size: int = 16
    n_neurons: int = 100
    epochs: int = 250


ARMS: dict[str, dict[str, str]] = {
    "mmgpvae": dict(modalities="both", gp_domain="fourier"),
    "image_only": dict(modalities="image", gp_domain="fourier"),
    "neural_only": dict(modalities="neural", gp_domain="fourier"),
    "mm_time": dict(modalities="both", gp_domain="time_exact"),
    "plain_vae": dict(modalities="both", gp_domain="iid"),
}
MODEL: dict[str, Any] = dict(
    n_shared=1,
    n_image=1,
    n_neural=1,
    hidden=[64, 32],
    image_loss="gaussian",
    image_sigma=0.1,
    lengthscale=10.0,
    min_lengthscale=4.0,
)
TRAIN: dict[str, Any] = dict(batch_size=20, lr=3e-3, optimizer="adam", grad_clip=1.0)
# the authors clip each network to norm 1 on its own (train.py, train_model_mmgpvae_closed): the spike encoder, the
# spike readout, and the rest (image encoder/decoder and GP prior); an arm clips the parts it has
CLIP_PARTS = ("spike_encoder.", "spike_readout.")
LATENTS = ("shared", "image", "neural")


def train_arm(arm: str, data: MMGPSim, seed: int, epochs: int) -> tuple[MultimodalGPVAE, list[float]]:
    torch.manual_seed(seed)
    model = MultimodalGPVAE(
        {"image_dim": data.images[0, 0].numel(), "n_neurons": data.spikes.shape[-1], **MODEL, **ARMS[arm]}
    )
    names = [n for n, _ in model.named_parameters()]
    parts = [p for p in CLIP_PARTS if any(n.startswith(p) for n in names)]
    res = Trainer(model, TrainerConfig(epochs=epochs, seed=seed, progress=False, grad_clip_groups=parts, **TRAIN)).fit(
        (data.images, data.spikes)
    )
    return model.eval(), [float(h["train_loss"]) for h in res.history]


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, x.shape[-1]) if x.dim() == 3 else x.reshape(-1)


@torch.no_grad()
def evaluate_arm(model: MultimodalGPVAE, test: MMGPSim) -> dict[str, float]:
    """Latent R² (all latents and, for two-modality arms, per block), image MSE and rate R² on held-out trials."""
    z = model.encode(test.images, test.spikes)
    all_z = _flat(torch.cat(list(z.values()), -1))
    out = {f"r2_{k}": affine_r2(all_z, _flat(test.latents[k])) for k in LATENTS}
    if model.config.modalities == "both":
        out.update({f"r2_{k}_block": affine_r2(_flat(z[k]), _flat(test.latents[k])) for k in LATENTS})
    if model.config.uses_image:
        post = model.posterior(test.images, test.spikes)
        recon = model.decode_images(post.mean)
        out["image_mse"] = float((recon - test.images.reshape(recon.shape)).pow(2).mean())
    if model.config.uses_neural:
        rates = model.predict_rates(test.images, test.spikes)
        out["rate_r2"] = 1.0 - float((rates - test.rates).pow(2).sum() / (test.rates - test.rates.mean()).pow(2).sum())
    return out


def _arm(name: str):
    def arm(s: Settings, seed: int, data: dict) -> Measured:
        model, curve = train_arm(name, data["train"], seed, s.epochs)
        metrics = evaluate_arm(model, data["test"])
        if model.config.modalities == "both":
            metrics["r2_block_mean"] = float(np.mean([metrics[f"r2_{k}_block"] for k in LATENTS]))
        metrics["converged"] = float(plateaued(curve))
        info = {}
        if name in ("mmgpvae", "mm_time"):  # two held-out trials' latents for the figure
            with torch.no_grad():
                z = model.encode(data["test"].images[:2], data["test"].spikes[:2])
            info = {k: v.tolist() for k, v in z.items()}
        return Measured(metrics=metrics, curves={"train_loss": curve}, info=info)

    return arm


@register_recipe
class MMGPVAE(Recipe):
    slug = "mm-gpvae"
    paper = Paper("Multi-modal Gaussian Process Variational Autoencoders for Neural and Behavioral Data", "2310.03111")
    claim = (
        "A multi-modal GP-VAE with Fourier-domain GP priors recovers the latent shared by images and spike "
        "counts better than single-modality models, and its Fourier parameterisation identifies the latents "
        "at least as well as a time-domain GP-VAE."
    )
    Settings: TypeAlias = Settings
    modes = {
        "smoke": Settings(seeds=1, n_train=12, n_test=6, T=30, image_size=12, n_neurons=20, epochs=2),
        "quick": Settings(seeds=3, epochs=60),
        "record": Settings(seeds=5, epochs=250),
        "full": Settings(seeds=5, n_train=240, n_test=60, epochs=700),
    }
    ours = "mmgpvae"
    gates = (
        Gate(
            "shared latent: both modalities beat spikes alone",
            "r2_shared",
            "mmgpvae",
            "neural_only",
            effect=0.02,
            headline=True,
            why="2 points of R2 from all of each arm's latents (the same latent set on both sides); spikes alone "
            "are the stronger single-modality model",
        ),
        Gate(
            "shared latent: both modalities beat images alone",
            "r2_shared",
            "mmgpvae",
            "image_only",
            effect=0.02,
            why="the same 2 points against the image-only model",
        ),
        Gate(
            "Fourier at least as good as time domain",
            "r2_block_mean",
            "mmgpvae",
            "mm_time",
            kind="non_inferiority",
            effect=0.05,
            why="'at least as well': the mean per-block R2 may be at most 0.05 lower with the same posterior family",
        ),
    )
    preconditions = (
        Precondition(
            "positive control: spikes alone recover the rates",
            "neural_only",
            "rate_r2",
            ">=",
            0.8,
            over="every",
            why="a single-modality GP-VAE must fit the Poisson rates, else the data or budget is broken",
        ),
        Precondition(
            "the multimodal model fits its spikes",
            "mmgpvae",
            "rate_r2",
            ">=",
            0.5,
            over="every",
            why="one learning rate for all parts (our deviation) can starve the spike pathway; a model "
            "that has not fitted one modality tests that deviation, not the paper",
        ),
        Precondition(
            "mmgpvae converged",
            "mmgpvae",
            "converged",
            ">=",
            1.0,
            over="every",
            why="the training loss must plateau before latents are compared",
        ),
        Precondition(
            "mm_time converged",
            "mm_time",
            "converged",
            ">=",
            1.0,
            over="every",
            why="the time-domain comparison needs both arms trained to a plateau",
        ),
    )
    changes = (
        "before the frame (quick, 2 seeds, 30 epochs = 180 steps in 27 s): 'partial' with bare > comparisons; (a) "
        "compared mmgpvae's 1-d shared block with all of the unimodal arms' latents; (b) compared the Fourier arm's "
        "exact (GP-smoothed) posterior with a mean-field time-domain posterior.",
        "after the audit (issue 20): the time-domain arm now uses the same posterior family (domain 'time_exact': "
        "exact Gaussian posterior given the per-step pseudo-observations); (a) is scored from all latents on both "
        "sides; >= 3 seeds; record trains 250 epochs (the audit at 150 epochs, seed 0: mmgpvae shared R2 0.51 vs "
        "neural_only 0.996, so the headline's failure is expected and is not why the budget was raised).",
        "errata: 3 latents in total (1 shared, 1 image, 1 neural) — already so; the code's prior term squares "
        "(mu + sigma^2) — we keep the correct expectation.",
        "after the record run (3 seeds, 250 epochs, 403 s; inconclusive): 'the multimodal model fits its spikes' "
        "failed on seed 1 (mmgpvae.rate_r2 per seed 0.69, 0.44, 0.93; every >= 0.5 needed). Seed 1's training "
        "curve (no test data read): its spike term improves only slowly (-68 per step at epoch 50, -87 at 250) while "
        "the image term (Gaussian, sigma 0.1 over 256 pixels) falls from 247 to 77, and rate_r2 stays 0.35-0.45 for 250 epochs (0.55 at 500). One "
        "global gradient-norm clip let the image gradient shrink the spike networks' steps. The authors clip each "
        "network to norm 1 on its own (train.py, train_model_mmgpvae_closed); every arm now does (spike encoder, "
        "spike readout, the rest), with the same lr and epochs as before. Seed 1 with it: rate_r2 0.64 at 250 "
        "epochs (0.58 at 500, so the epoch budget is unchanged). The authors' per-network learning rates (1.6e-4 / "
        "7.7e-4 / 8.8e-3) were tried on seed 1 too: at 250 epochs the image side is far from fitted (pixel MSE "
        "0.033 vs 0.006) and rate_r2 0.26 — they need the paper's ~8,000 steps, 5x this budget",
        "after that fix's record run (3 seeds, 438 cpu-s): every precondition held, and every gate was unresolved "
        "(headline r2_shared mmgpvae - neural_only -0.380 [-1.179, +0.419], smallest detectable 0.996: seed 2's "
        "-0.01 against seeds 0-1's -0.51 and -0.62). Record mode now runs 5 seeds (the 15 cached cells are "
        "reused; same settings otherwise) for power. Disclosed: this was decided after seeing unresolved gates; "
        "the 3-seed result stays in git history (commit 2513af0)",
    )

    def data(self, settings: Settings, seed: int) -> dict:
        d = make_mm_gp_sim(
            settings.n_train + settings.n_test,
            settings.T,
            image_size=settings.image_size,
            n_neurons=settings.n_neurons,
            seed=1000 + seed,
        )
        return {
            "train": d.subset(slice(0, settings.n_train)),
            "test": d.subset(slice(settings.n_train, None)),
            "source": d.meta["template_source"],
        }

    def arms(self, settings: Settings):
        return {a: _arm(a) for a in ARMS}

    def describe(self, settings: Settings) -> dict[str, Any]:
        return {
            "arms": ARMS,
            "model": MODEL,
            "train": {**TRAIN, "grad_clip_per_part": list(CLIP_PARTS) + ["rest"]},
            "data_seed": "1000 + seed",
            "template": self.data(settings, 0)["source"],
            "deviations": [
                "one learning rate for all parts (paper: separate image-net / spike-encoder / spike-decoder rates)",
                "MLP encoders",
                f"{settings.epochs} epochs (paper: 650-700) on {settings.n_train} trials (paper: 300)",
                "the Fourier posterior combines the encoders' per-step pseudo-observations with the "
                "diagonal prior (exact); the authors map encoder outputs to Fourier coefficients with a "
                "learned linear map and a mean-field posterior",
            ],
        }

    def figures(self, settings: Settings, cells, out_dir: Path) -> list[str]:
        plt = pyplot()
        truth = self.data(settings, min(cells["mmgpvae"]))["test"].latents
        fig, axes = plt.subplots(2, 3, figsize=(11, 5), sharex=True)
        for j, k in enumerate(LATENTS):
            y = truth[k][:2]
            for arm, color in (("mmgpvae", "tab:red"), ("mm_time", "tab:blue")):
                z = torch.tensor(cells[arm][min(cells[arm])].info[k])
                A = np.concatenate([_flat(z).numpy(), np.ones((z[..., 0].numel(), 1))], 1)
                coef = np.linalg.lstsq(A, _flat(y).numpy(), rcond=None)[0]  # affine alignment on these trials
                fit = (A @ coef).reshape(y.shape)
                for i in range(2):
                    axes[i, j].plot(fit[i], color=color, lw=1, label=f"{arm} (aligned)")
            for i in range(2):
                axes[i, j].plot(y[i].numpy(), color="k", lw=1.5, label="true")
                axes[i, j].set_title(f"{k} latent, test trial {i}", fontsize=9)
        axes[0, 0].legend(fontsize=7)
        for ax in axes[1]:
            ax.set_xlabel("time step")
        return [save_figure(fig, out_dir / "latents.png", dpi=90).name]
