"""Seed 8 — MM-GPVAE recovers shared and modality-specific GP latents from images + spikes.

Gondur, Sikandar, Schaffer, Aoi & Keeley, ICLR 2024, arXiv 2310.03111. Data: the paper's simulation
(:func:`isthmus.data.gp_sim.make_mm_gp_sim`): an MNIST "3" rotated by a shared GP latent and zoomed by an
image-only GP latent, 100 Poisson neurons driven by the shared and a neural-only GP latent (length-scale
10 steps, T = 60). Model: :class:`isthmus.models.MultimodalGPVAE` (1 shared, 1 image, 1 neural latent).

Arms, same data, seeds and training budget (Adam, one learning rate for all parts, grad-clip 1):
``mmgpvae`` (both modalities, Fourier GP prior) against ``image_only`` and ``neural_only`` (Fourier GP,
one modality), ``mm_time`` (both modalities, time-domain GP prior with a mean-field posterior: the
standard GP-VAE) and ``plain_vae`` (both modalities, N(0, 1) per step).

Metrics on held-out trials: ``r2_<latent>`` — R² of each true latent from *all* of an arm's posterior-mean
latents after an affine map fitted by least squares (what the arm's latents know); for the two-modality
arms also ``r2_<latent>_block`` — from the arm's designated block only (does the shared/private split land
where it should); ``image_mse`` per pixel and ``rate_r2`` (predicted vs true Poisson rates) where an arm
models that modality.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from isthmus.data.gp_sim import MMGPSim, make_mm_gp_sim
from isthmus.metrics.latent import affine_r2
from isthmus.models import MultimodalGPVAE
from isthmus.recipes.base import Paper, Recipe, Result, summarize_arms
from isthmus.recipes.registry import register_recipe
from isthmus.train import Trainer, TrainerConfig
from isthmus.viz import pyplot

# Fixed per mode before any run. Quick fits ~2 minutes on 2 cores (5 arms x 2 seeds).
MODE_SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": dict(n_train=12, n_test=6, T=30, image_size=12, n_neurons=20, epochs=2),
    "quick": dict(n_train=120, n_test=30, T=60, image_size=16, n_neurons=100, epochs=30),
    "full": dict(n_train=240, n_test=60, T=60, image_size=16, n_neurons=100, epochs=300),
}
ARMS: dict[str, dict[str, str]] = {
    "mmgpvae": dict(modalities="both", gp_domain="fourier"),
    "image_only": dict(modalities="image", gp_domain="fourier"),
    "neural_only": dict(modalities="neural", gp_domain="fourier"),
    "mm_time": dict(modalities="both", gp_domain="time"),
    "plain_vae": dict(modalities="both", gp_domain="iid"),
}
MODEL = dict(n_shared=1, n_image=1, n_neural=1, hidden=[64, 32], image_loss="gaussian", image_sigma=0.1,
             lengthscale=10.0, min_lengthscale=4.0)
TRAIN = dict(batch_size=20, lr=3e-3, optimizer="adam", grad_clip=1.0)
LATENTS = ("shared", "image", "neural")


def train_arm(arm: str, data: MMGPSim, seed: int, epochs: int) -> MultimodalGPVAE:
    torch.manual_seed(seed)
    model = MultimodalGPVAE({"image_dim": data.images[0, 0].numel(), "n_neurons": data.spikes.shape[-1],
                             **MODEL, **ARMS[arm]})
    Trainer(model, TrainerConfig(epochs=epochs, seed=seed, progress=False, **TRAIN)).fit((data.images, data.spikes))
    return model.eval()


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


def _block_mean(per: dict[str, dict[str, list[float]]], arm: str) -> float:
    return float(np.mean([np.mean(per[arm][f"r2_{k}_block"]) for k in LATENTS]))


@register_recipe
class MMGPVAE(Recipe):
    slug = "mm-gpvae"
    paper = Paper("Multi-modal Gaussian Process Variational Autoencoders for Neural and Behavioral Data", "2310.03111")
    claim = ("A multi-modal GP-VAE with Fourier-domain GP priors recovers the latent shared by images and spike "
             "counts better than single-modality models, and its Fourier parameterisation identifies the latents "
             "at least as well as a standard time-domain GP-VAE.")
    verdict_rule = (
        "Means over seeds on held-out trials. (a) mmgpvae's R² of the true shared latent from its shared block alone "
        "exceeds the R² of image_only and of neural_only from all of their latents; (b) mmgpvae's per-block R² "
        "averaged over the shared, image and neural latents is >= mm_time's. reproduced = (a) and (b); partial = "
        "exactly one; not reproduced = neither. plain_vae is reported, not judged."
    )
    default_seeds = {"smoke": 1, "quick": 2, "full": 3}

    def run(self, mode: str, seeds: Sequence[int], out_dir: Path) -> Result:
        cfg = MODE_SETTINGS[mode]
        per: dict[str, dict[str, list[float]]] = {arm: {} for arm in ARMS}
        example: dict[str, Any] = {}
        source = ""
        for seed in seeds:
            data = make_mm_gp_sim(cfg["n_train"] + cfg["n_test"], cfg["T"], image_size=cfg["image_size"],
                                  n_neurons=cfg["n_neurons"], seed=1000 + seed)
            source = data.meta["template_source"]
            train, test = data.subset(slice(0, cfg["n_train"])), data.subset(slice(cfg["n_train"], None))
            for arm in ARMS:
                model = train_arm(arm, train, seed, cfg["epochs"])
                for k, v in evaluate_arm(model, test).items():
                    per[arm].setdefault(k, []).append(v)
                if seed == seeds[0] and arm in ("mmgpvae", "mm_time"):
                    example[arm] = model.encode(test.images[:2], test.spikes[:2])
            if seed == seeds[0]:
                example["truth"] = {k: v[:2] for k, v in test.latents.items()}
        verdict, reason = self._verdict(per)
        figure = self._plot(example, out_dir)
        metrics, baselines = summarize_arms(per, "mmgpvae")
        config = {"mode": mode, **cfg, "arms": ARMS, "model": MODEL, "train": TRAIN, "data_seed": "1000 + seed",
                  "template": source}
        notes = [f"per-seed values are in each metric's `values` (seeds {list(seeds)})",
                 f"digit template: {source}",
                 "r2_<latent> regresses the true latent on all of an arm's latents (affine, least squares on the "
                 "held-out trials); r2_<latent>_block on the arm's designated block only",
                 "deviations from the paper: one learning rate for all parts (paper: separate image-net / spike-encoder "
                 "/ spike-decoder rates), MLP encoders, far fewer epochs (paper: 700); the Fourier posterior combines "
                 "the encoders' per-step pseudo-observations with the diagonal prior (precision sum)"]
        return Result(recipe=self.slug, paper=self.paper, claim=self.claim, mode=mode, seeds=list(seeds),
                      metrics=metrics, baselines=baselines, verdict=verdict, verdict_reason=reason,
                      config=config, figures=[figure], notes=notes)

    @staticmethod
    def _verdict(per: dict[str, dict[str, list[float]]]) -> tuple[str, str]:
        m = lambda arm, k: float(np.mean(per[arm][k]))  # noqa: E731
        shared = m("mmgpvae", "r2_shared_block")
        a = shared > m("image_only", "r2_shared") and shared > m("neural_only", "r2_shared")
        fourier, time_domain = _block_mean(per, "mmgpvae"), _block_mean(per, "mm_time")
        b = fourier >= time_domain
        n = int(a) + int(b)
        verdict = "reproduced" if n == 2 else "partial" if n == 1 else "not reproduced"
        reason = (f"(a) shared-latent R²: mmgpvae block {shared:.3f} vs image_only {m('image_only', 'r2_shared'):.3f}, "
                  f"neural_only {m('neural_only', 'r2_shared'):.3f} ({'passed' if a else 'failed'}); (b) mean block R²: "
                  f"Fourier {fourier:.3f} vs time-domain {time_domain:.3f} ({'passed' if b else 'failed'}); "
                  f"plain_vae shared {m('plain_vae', 'r2_shared'):.3f}")
        return verdict, reason

    @staticmethod
    def _plot(example: dict[str, Any], out_dir: Path) -> str:
        plt = pyplot()

        truth = example["truth"]
        fig, axes = plt.subplots(2, 3, figsize=(11, 5), sharex=True)
        for j, k in enumerate(LATENTS):
            for i in range(2):
                ax = axes[i, j]
                ax.plot(truth[k][i].numpy(), color="k", lw=1.5, label="true")
                for arm, color in (("mmgpvae", "tab:red"), ("mm_time", "tab:blue")):
                    z, y = example[arm][k], truth[k]
                    A = np.concatenate([_flat(z).numpy(), np.ones((z[..., 0].numel(), 1))], 1)
                    coef = np.linalg.lstsq(A, _flat(y).numpy(), rcond=None)[0]  # affine alignment on these trials
                    ax.plot((A @ coef).reshape(y.shape)[i], color=color, lw=1, label=f"{arm} (aligned)")
                ax.set_title(f"{k} latent, test trial {i}", fontsize=9)
        axes[0, 0].legend(fontsize=7)
        for ax in axes[1]:
            ax.set_xlabel("time step")
        fig.tight_layout()
        name = "latents.png"
        fig.savefig(out_dir / name, dpi=90)
        plt.close(fig)
        return name
