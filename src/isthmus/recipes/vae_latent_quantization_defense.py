"""Seed 35 — a latent-quantized VAE as an input purifier against adversarial examples.

Kyatham et al., "Variational Inference with Latent Space Quantization for Adversarial Resilience"
(arXiv 1903.09940). Filter F = Dec ∘ Q ∘ Enc, trained on clean images only, without the classifier:
a VAE (``quantized_gaussian`` bottleneck, grid step Δ) with the encoder-Jacobian penalty
(``ObjectiveConfig.jacobian_weight``). At test time ``classifier(F(x))``.

Arms, all on the same classifier, data and seeds (``isthmus.tasks.adversarial``):

* ``qvae`` — the method (ours), Δ = 0.5, λ_J = 0.01, z = ``latent`` (24 in record mode);
* ``undefended`` — the classifier alone;
* ``ae_purifier`` — a plain MLP autoencoder (same widths and latent as the VAE) as the filter;
* ``vae_jacobian`` — the same VAE + Jacobian penalty without quantization (ablation).

Attacks, L∞, on a fixed test subset: FGSM and PGD-20 (random start, step 2.5ε/20).
``transfer``: crafted on the bare classifier, then fed through the filter (the paper's gray-box setting).
``adaptive``: crafted end to end through filter + classifier; through the quantizer that is BPDA
(straight-through), so a gradient-masking filter cannot pass as robust.
Δ and λ_J were fixed before any run (Δ = half a prior standard deviation; λ_J so the penalty starts at
the reconstruction's scale); they were not tuned. The filters are sized so that a plain AE purifier keeps
clean accuracy within 0.05 (a precondition): otherwise the clean-accuracy gate measures filter capacity,
not quantization.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import torch

from isthmus.data import load_digit_split
from isthmus.models import AutoEncoder, Classifier
from isthmus.nn import MLP, MLPConfig
from isthmus.recipes.base import Paper, Recipe, RecipeSettings
from isthmus.recipes.gates import Gate, Measured, Precondition, converged_on_every_seed, plateaued
from isthmus.recipes.registry import register_recipe
from isthmus.tasks.adversarial import Purified, accuracy, fgsm, pgd
from isthmus.train import Trainer, TrainerConfig
from isthmus.viz import pyplot, save_figure

HEADLINE_EPS = 0.1
STEP, JACOBIAN_WEIGHT = 0.5, 0.01
FILTERS: dict[str, dict[str, Any]] = {
    "qvae": dict(
        bottleneck="quantized_gaussian", step=STEP, objective={"recon_loss": "bce", "jacobian_weight": JACOBIAN_WEIGHT}
    ),
    "ae_purifier": dict(bottleneck="identity", objective={"recon_loss": "bce"}),
    "vae_jacobian": dict(bottleneck="gaussian", objective={"recon_loss": "bce", "jacobian_weight": JACOBIAN_WEIGHT}),
}
KEY_A, KEY_T = f"pgd_eps{HEADLINE_EPS:g}_adaptive", f"pgd_eps{HEADLINE_EPS:g}_transfer"


@dataclass
class Settings(RecipeSettings):
    n_train: int = 8000
    n_test: int = 2000
    n_attack: int = 300
    clf_epochs: int = 5
    ae_epochs: int = 10
    eps: list[float] = field(default_factory=lambda: [0.1])
    pgd_steps: int = 20
    hidden: list[int] = field(default_factory=lambda: [512, 256])
    latent: int = 24


@lru_cache(maxsize=2)
def _split(n_train: int, n_test: int):
    return load_digit_split(n_train, n_test, seed=0)


def train_classifier(x: torch.Tensor, y: torch.Tensor, seed: int, epochs: int) -> Classifier:
    torch.manual_seed(seed)
    clf = Classifier(MLP(MLPConfig(in_dim=x.shape[1], out_dim=10, hidden=[256], activation="relu")))
    Trainer(clf, TrainerConfig(epochs=epochs, batch_size=64, seed=seed, progress=False)).fit((x, y))
    return clf.eval()


def train_filter(name: str, x: torch.Tensor, seed: int, s: Settings) -> tuple[AutoEncoder, list[float]]:
    torch.manual_seed(seed)
    ae = AutoEncoder.mlp(
        x.shape[1], latent_dim=s.latent, hidden=tuple(s.hidden), out_activation="sigmoid", **FILTERS[name]
    )
    hist = Trainer(ae, TrainerConfig(epochs=s.ae_epochs, batch_size=64, seed=seed, progress=False)).fit(x).history
    return ae.eval(), [h["train_loss"] for h in hist]


def evaluate(defended, clf, x: torch.Tensor, y: torch.Tensor, s: Settings, seed: int) -> dict[str, float]:
    """Clean, transfer and adaptive accuracy of ``defended`` (a logits function) for each attack and ε."""
    out = {"clean_acc": accuracy(defended, x, y)}
    g = torch.Generator().manual_seed(seed)
    for eps in s.eps:
        for attack in ("fgsm", "pgd"):
            craft = (
                (lambda f, eps=eps: fgsm(f, x, y, eps))
                if attack == "fgsm"
                else (lambda f, eps=eps: pgd(f, x, y, eps, steps=s.pgd_steps, generator=g))
            )
            out[f"{attack}_eps{eps:g}_adaptive"] = accuracy(defended, craft(defended), y)
            out[f"{attack}_eps{eps:g}_transfer"] = accuracy(defended, craft(clf), y)
    return out


def _arm(name: str):
    def fn(s: Settings, seed: int, d: dict) -> Measured:
        clf = d["clf"]
        undefended_clean = accuracy(clf, d["x_test"], d["y_test"])
        if name == "undefended":
            m = evaluate(clf, clf, d["xa"], d["ya"], s, seed)
            m["clean_acc"] = undefended_clean
            return Measured(metrics={**m, "clean_drop": 0.0})
        ae, loss = train_filter(name, d["x"], seed, s)
        f = Purified(ae, clf)
        m = evaluate(f, clf, d["xa"], d["ya"], s, seed)
        m["clean_acc"] = accuracy(f, d["x_test"], d["y_test"])  # on the whole test split, not the attacked subset
        m["clean_drop"] = undefended_clean - m["clean_acc"]
        m["converged"] = float(plateaued(loss))
        info = {}
        if seed == 0:
            adv = pgd(f, d["xa"][:6], d["ya"][:6], HEADLINE_EPS, steps=s.pgd_steps)
            with torch.no_grad():
                info = {"adversarial": adv.tolist(), "filtered": f.purify(adv).tolist()}
        return Measured(metrics=m, curves={"loss": loss}, info=info)

    return fn


@register_recipe
class VaeLatentQuantizationDefense(Recipe):
    slug = "vae-latent-quantization-defense"
    paper = Paper("Variational Inference with Latent Space Quantization for Adversarial Resilience", "1903.09940")
    claim = (
        "A VAE with a uniformly quantized latent and an encoder-Jacobian penalty, used as a purifier "
        "decode(quantize(encode(x))) in front of a classifier, keeps clean accuracy and raises accuracy under "
        "FGSM/PGD attacks above the undefended classifier and a plain-autoencoder purifier."
    )
    Settings: TypeAlias = Settings
    modes = {
        "smoke": Settings(
            seeds=1, n_train=800, n_test=200, n_attack=64, clf_epochs=1, ae_epochs=1, pgd_steps=3, hidden=[64], latent=8
        ),
        "quick": Settings(seeds=3, ae_epochs=6, n_attack=200),
        # 30 filter epochs (default 10): the qvae loss had not plateaued at 10 (see ``changes``)
        "record": Settings(seeds=3, ae_epochs=30),
        "full": Settings(seeds=5, n_attack=2000, clf_epochs=20, ae_epochs=40, eps=[0.05, 0.1, 0.2, 0.3], pgd_steps=40),
    }
    ours = "qvae"
    gates = (
        Gate(
            "adaptive PGD robustness above the AE purifier",
            KEY_A,
            "qvae",
            "ae_purifier",
            effect=0.05,
            headline=True,
            why="the claim's robustness must survive an end-to-end (BPDA) attack and beat a plain purifier by 5 "
            "points, else it is the purifier, not the quantized latent",
        ),
        Gate(
            "adaptive PGD robustness above the undefended classifier",
            KEY_A,
            "qvae",
            "undefended",
            effect=0.05,
            headline=True,
            why="5 accuracy points under the adaptive attack",
        ),
        Gate(
            "keeps clean accuracy",
            "clean_acc",
            "qvae",
            "undefended",
            kind="non_inferiority",
            effect=0.05,
            why="the paper's 'keeps clean accuracy': within 5 points",
        ),
        Gate(
            "transfer robustness above the AE purifier",
            KEY_T,
            "qvae",
            "ae_purifier",
            effect=0.05,
            why="gray-box: any purifier helps against attacks crafted on the bare classifier; the quantized latent "
            "must add 5 points over a plain AE",
        ),
        Gate(
            "transfer robustness above the undefended classifier",
            KEY_T,
            "qvae",
            "undefended",
            effect=0.05,
            why="the paper's gray-box setting",
        ),
    )
    preconditions = (
        Precondition(
            "the classifier learned",
            "undefended",
            "clean_acc",
            ">=",
            0.9,
            why="an MLP on MNIST must reach 90 %; else nothing is being defended",
        ),
        Precondition(
            "a plain AE purifier keeps clean accuracy",
            "ae_purifier",
            "clean_drop",
            "<=",
            0.05,
            why="sizes the filter: if even a plain AE loses more than 5 points, the clean gate measures "
            "capacity, not quantization",
        ),
        converged_on_every_seed(
            "qvae", name="qvae training converged", why="plateaued() on the filter's per-epoch loss"
        ),
    )

    def data(self, s: Settings, seed: int) -> dict:
        split = _split(s.n_train, s.n_test)
        x, y = torch.as_tensor(split.x_train), torch.as_tensor(split.y_train)
        xt, yt = torch.as_tensor(split.x_test), torch.as_tensor(split.y_test)
        return {
            "x": x,
            "x_test": xt,
            "y_test": yt,
            "xa": xt[: s.n_attack],
            "ya": yt[: s.n_attack],
            "clf": train_classifier(x, y, seed, s.clf_epochs),
            "shape": split.image_shape,
        }

    def arms(self, s: Settings):
        return {a: _arm(a) for a in ("qvae", "undefended", "ae_purifier", "vae_jacobian")}

    def describe(self, s: Settings) -> dict[str, Any]:
        return {
            "data": _split(s.n_train, s.n_test).description,
            "step": STEP,
            "jacobian_weight": JACOBIAN_WEIGHT,
            "filters": FILTERS,
            "classifier": "MLP 784-256-10 ReLU, Adam 1e-3 (Classifier + Trainer)",
            "attack_subset": f"first {s.n_attack} test images; clean accuracy on all {s.n_test}",
            "pgd": f"{s.pgd_steps} steps, step 2.5*eps/steps, uniform random start",
            "deviations": [
                "BCE reconstruction (paper: MSE)",
                "Jacobian penalty by random projections of the Frobenius norm (paper: spectral norm)",
                "MLP filters and classifier",
            ],
        }

    def figures(self, s: Settings, cells, out_dir: Path) -> list[str]:
        plt = pyplot()
        arms = list(cells)
        keys = ["clean_acc"] + [k for k in cells["qvae"][min(cells["qvae"])].metrics if "_eps" in k]
        fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(keys) * len(arms) / 2), 3.6))
        w = 0.8 / len(arms)
        for i, a in enumerate(arms):
            ax.bar(
                np.arange(len(keys)) + i * w,
                [np.mean([m.metrics[k] for m in cells[a].values()]) for k in keys],
                w,
                label=a,
            )
        ax.set_xticks(np.arange(len(keys)) + 0.4 - w / 2, keys, rotation=30, fontsize=7)
        ax.set_ylim(0, 1), ax.set_ylabel("accuracy"), ax.legend(fontsize=7)
        save_figure(fig, out_dir / "robust_accuracy.png", dpi=90)
        names = ["robust_accuracy.png"]
        ex = {a: cells[a][0].info for a in FILTERS if 0 in cells[a] and cells[a][0].info}
        if ex:
            side = int(round(len(next(iter(ex.values()))["adversarial"][0]) ** 0.5))
            rows = [(f"{a}: {k}", np.asarray(v[k])) for a, v in ex.items() for k in ("adversarial", "filtered")]
            fig, axes = plt.subplots(len(rows), 6, figsize=(7.2, 1.25 * len(rows)), squeeze=False)
            for r, (name, imgs) in enumerate(rows):
                for c in range(min(6, len(imgs))):
                    axes[r, c].imshow(imgs[c].reshape(side, side), cmap="gray", vmin=0, vmax=1)
                    axes[r, c].axis("off")
                axes[r, 0].set_title(name, fontsize=6, loc="left")
            save_figure(fig, out_dir / "examples.png", dpi=80)
            names.append("examples.png")
        return names

    changes = (
        "Before the frame (quick, 3 seeds, z = 8, 256-128 filters): 'not reproduced', driven by the clean-accuracy "
        "gate, which every 8-dim MLP purifier failed — the plain AE too (0.881 vs 0.943). The audit: the gate "
        "measured filter capacity, and the transfer gate compared only with the undefended classifier (AE purifier "
        "alone 0.46 vs 0.086). Now the filters are 512-256 with z = 24 and a precondition requires the plain AE "
        "purifier to keep clean accuracy within 0.05; transfer is gated against the AE purifier too; clean accuracy "
        "is measured on the whole test split.",
        "History from the old notes: an exploratory seed-0 run with 512-256 filters (z = 8, 8 epochs) gave clean acc "
        "qvae 0.887 / AE 0.892 / undefended 0.942, PGD 0.1 adaptive 0.213 / 0.115 / 0.095, transfer 0.565 / 0.488 "
        "/ 0.095; a 6-epoch 256-128 run under-trained the filters (qvae clean 0.786). Step, Jacobian weight and "
        "the gates' effect sizes were never tuned on results.",
        "ε = 0.2 moved from record to full mode for CPU time (the headline ε is 0.1).",
        "Session 5: the record result (3 seeds, 10 filter epochs) was inconclusive only because 'qvae training "
        "converged' failed on every seed (qvae.converged per seed [0 0 0]; ae_purifier and vae_jacobian also 0). "
        "Cause: too short, not a bug or a schedule — no KL warm-up or penalty ramp; the per-epoch training loss "
        "still fell steadily. Evidence (qvae, seed 0, the record's data, a 40-epoch curve, nothing else looked at): "
        "loss 226.8, 183.4, ... 121.9, 120.4 at epoch 10, 113.6 at 16, 110.2 at 22, 106.6 at 31, 104.5 at 40; "
        "plateaued()'s last-window change over its tolerance (2 % of the range) was 2.17 at 10 epochs, 0.90 at 15, "
        "0.51 at 20 and 0.3-0.5 from 20 to 40. Record now trains every filter arm (qvae, ae_purifier, "
        "vae_jacobian) 30 epochs instead of 10 (equal effort; the classifier and attacks are unchanged); gates, "
        "effects, metrics and arms unchanged.",
    )
