"""Seed 5 — a prototype classifier is as accurate as a plain one, and R1/R2 keep its prototypes decodable.

Li, Liu, Chen & Rudin, AAAI 2018, arXiv 1710.04806. Model: autoencoder (MLP 784-256-40, decoder
mirrored, sigmoid pixels) + 15 prototypes in the 40-d latent space, logits from squared distances
(:class:`isthmus.models.PrototypeClassifier`); loss 20·CE + recon + R1 + R2; Adam lr 2e-3, batch 250.

Arms, on the same split and seeds: (ours) λ1 = λ2 = 1; (``no_r1_r2``) the ablation λ1 = λ2 = 0;
(``plain_classifier``) the same encoder + a linear head, cross-entropy only. Interpretability of the
prototypes is measured by (i) a separately trained *judge* MLP classifier's mean max-softmax
confidence on the decoded prototypes, (ii) the agreement between the judge's class and the class the
prototype votes for, (iii) in pixel space, each decoded prototype's squared distance to its nearest
training image, divided by the median nearest-training-image distance of the real test images (a
constant of the data: ≈ 1 means a decoded prototype looks like a digit as much as a test digit does;
≫ 1 means a blob). Pixel space is fixed, so R2 cannot rescale it (it could the latent space).

Deviation: an MLP encoder instead of the paper's 4-layer conv net (3x faster per epoch on CPU, and
the claim concerns the prototype layer, not the encoder), no elastic augmentation, short training.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, TypeAlias

import numpy as np
import torch
from torch import nn

from isthmus.data import load_digit_split
from isthmus.metrics import nearest_sq_distances, softmax_confidence
from isthmus.models import Classifier, PrototypeClassifier
from isthmus.nn import MLP, MLPConfig
from isthmus.recipes.base import Paper, Recipe, RecipeSettings
from isthmus.recipes.gates import Check, Gate, Measured, Precondition, plateaued
from isthmus.recipes.registry import register_recipe
from isthmus.train import Trainer, TrainerConfig
from isthmus.viz import pyplot, save_figure


@dataclass
class Settings(RecipeSettings):
    n_train: int = 8000
    n_test: int = 2000
    epochs: int = 30
    judge_epochs: int = 10


MODEL: dict[str, Any] = dict(latent_dim=40, hidden=[256], n_prototypes=15, n_classes=10, class_weight=20.0)
TRAIN: dict[str, Any] = dict(batch_size=250, lr=2e-3, optimizer="adam")
JUDGE_SEED = 12345  # one judge for every seed and arm: the yardstick must not move between arms
INTERP_KEYS = ("proto_judge_confidence", "proto_judge_agreement", "proto_pixel_nn_ratio")


def _trainer_config(epochs: int, seed: int) -> TrainerConfig:
    return TrainerConfig(epochs=epochs, seed=seed, progress=False, **TRAIN)


def train_prototype(
    x: torch.Tensor, y: torch.Tensor, seed: int, epochs: int, regularised: bool
) -> tuple[PrototypeClassifier, list[float]]:
    """The paper's model; ``regularised=False`` is the λ1 = λ2 = 0 ablation. Returns it and its loss curve."""
    torch.manual_seed(seed)
    w = 1.0 if regularised else 0.0
    model = PrototypeClassifier.mlp(
        x.shape[1],
        latent_dim=MODEL["latent_dim"],
        hidden=tuple(MODEL["hidden"]),
        n_prototypes=MODEL["n_prototypes"],
        n_classes=MODEL["n_classes"],
        r1_weight=w,
        r2_weight=w,
        out_activation="sigmoid",
        class_weight=MODEL["class_weight"],
    )
    with torch.no_grad():  # the paper's last layer starts U[0, 1) on +d (errata); ours acts on -d, hence the sign
        model.bottleneck.classifier.weight.uniform_(-1.0, 0.0)
        model.bottleneck.classifier.bias.zero_()
    res = Trainer(model, _trainer_config(epochs, seed)).fit((x, y))
    return model, [float(h["train_loss"]) for h in res.history]


def train_plain(x: torch.Tensor, y: torch.Tensor, seed: int, epochs: int) -> tuple[Classifier, list[float]]:
    """Same encoder shape (MLP in → 256 → 40, GELU as in ``AutoEncoder.mlp``) + a linear head; CE only."""
    torch.manual_seed(seed)
    enc = MLP(
        MLPConfig(in_dim=x.shape[1], out_dim=MODEL["latent_dim"], hidden=list(MODEL["hidden"]), activation="gelu")
    )
    model = Classifier(nn.Sequential(enc, nn.Linear(MODEL["latent_dim"], MODEL["n_classes"])))
    res = Trainer(model, _trainer_config(epochs, seed)).fit((x, y))
    return model, [float(h["train_loss"]) for h in res.history]


def train_judge(x: torch.Tensor, y: torch.Tensor, epochs: int) -> Classifier:
    torch.manual_seed(JUDGE_SEED)
    net = MLP(MLPConfig(in_dim=x.shape[1], out_dim=MODEL["n_classes"], hidden=[256], activation="relu"))
    model = Classifier(net)
    Trainer(model, _trainer_config(epochs, JUDGE_SEED)).fit((x, y))
    return model


@torch.no_grad()
def prototype_report(
    model: PrototypeClassifier, judge: Classifier, x_train: torch.Tensor, pixel_scale: float
) -> dict[str, Any]:
    """Interpretability numbers of one trained prototype model (see the module docstring)."""
    model.eval()
    judge.eval()
    decoded = model.decode_prototypes().reshape(MODEL["n_prototypes"], -1)  # (m, F)
    judge_logits = judge(decoded)
    pixel_nn = nearest_sq_distances(decoded, x_train)  # (m,) in pixel space, which no regulariser rescales
    votes = model.bottleneck.classifier.weight.argmax(0)  # (m,) class each prototype raises most
    return {
        "proto_judge_confidence": float(softmax_confidence(judge_logits).mean()),
        "proto_judge_agreement": float((judge_logits.argmax(1) == votes).float().mean()),
        "proto_pixel_nn_ratio": float(pixel_nn.mean()) / max(pixel_scale, 1e-12),
        "decoded": decoded.numpy(),
        "judge_class": judge_logits.argmax(1).numpy(),
    }


def _accuracy(model, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((model.predict(x) == y).float().mean())


@lru_cache(maxsize=2)
def shared_data(n_train: int, n_test: int, judge_epochs: int) -> dict[str, Any]:
    """The split, the judge (one for every seed and arm) and the pixel-space scale of "near the data"."""
    d = load_digit_split(n_train, n_test)
    xtr, ytr = torch.from_numpy(d.x_train), torch.from_numpy(d.y_train)
    xte, yte = torch.from_numpy(d.x_test), torch.from_numpy(d.y_test)
    judge = train_judge(xtr, ytr, judge_epochs).eval()
    with torch.no_grad():
        scale = float(nearest_sq_distances(xte, xtr).median())
        conf_real = float(softmax_confidence(judge(xte)).mean())
    return {
        "split": d,
        "tensors": (xtr, ytr, xte, yte),
        "judge": judge,
        "pixel_scale": scale,
        "judge_acc": _accuracy(judge, xte, yte),
        "judge_conf_real": conf_real,
    }


def _prototype_arm(regularised: bool):
    def arm(s: Settings, seed: int, data: dict[str, Any]) -> Measured:
        xtr, ytr, xte, yte = data["tensors"]
        model, curve = train_prototype(xtr, ytr, seed, s.epochs, regularised)
        rep = prototype_report(model, data["judge"], xtr, data["pixel_scale"])
        with torch.no_grad():
            recon = float((model.reconstruct(xte) - xte).pow(2).mean())
        return Measured(
            metrics={
                "accuracy": _accuracy(model, xte, yte),
                **{k: rep[k] for k in INTERP_KEYS},
                "recon_mse": recon,
                "converged": float(plateaued(curve)),
            },
            curves={"train_loss": curve},
            info={"decoded": np.round(rep["decoded"], 3).tolist(), "judge_class": rep["judge_class"].tolist()},
        )

    return arm


def _plain_arm(s: Settings, seed: int, data: dict[str, Any]) -> Measured:
    xtr, ytr, xte, yte = data["tensors"]
    model, curve = train_plain(xtr, ytr, seed, s.epochs)
    return Measured(
        metrics={"accuracy": _accuracy(model, xte, yte), "converged": float(plateaued(curve))},
        curves={"train_loss": curve},
    )


@register_recipe
class PrototypeNet(Recipe):
    slug = "prototype-net"
    paper = Paper(
        "Deep Learning for Case-Based Reasoning through Prototypes: A Neural Network that Explains Its Predictions",
        "1710.04806",
    )
    claim = (
        "A classifier that predicts from distances to 15 learned latent prototypes matches the accuracy of the "
        "same encoder with a plain head, and its prototypes decode to realistic digits only thanks to the R1/R2 "
        "regularisers (without them the prototypes are not interpretable)."
    )
    Settings: TypeAlias = Settings
    modes = {
        "smoke": Settings(seeds=1, n_train=512, n_test=256, epochs=1, judge_epochs=1),
        "quick": Settings(seeds=3, epochs=8, judge_epochs=5),
        "record": Settings(seeds=5, epochs=30, judge_epochs=10),
        "full": Settings(seeds=8, epochs=100, judge_epochs=20),
    }
    ours = "ours"
    gates = (
        Gate(
            "accuracy parity with a plain head",
            "accuracy",
            "ours",
            "plain_classifier",
            kind="non_inferiority",
            effect=0.01,
            headline=True,
            why="the paper's headline: interpretability costs at most 1 accuracy point",
        ),
        Gate(
            "R1/R2 make prototypes judge-readable",
            "proto_judge_confidence",
            "ours",
            "no_r1_r2",
            effect=0.05,
            why="5 points of the judge's mean confidence: well beyond its spread across seeds of one arm",
        ),
        Gate(
            "R1/R2 make prototypes look like digits",
            "proto_pixel_nn_ratio",
            "ours",
            "no_r1_r2",
            direction="lower",
            effect=0.25,
            why="a quarter of the typical test-to-train pixel distance: a decoded prototype must sit visibly nearer "
            "to a real training digit; pixel space cannot be rescaled by R2",
        ),
    )
    preconditions = (
        Precondition(
            "the prototype model learns the task",
            "ours",
            "accuracy",
            ">=",
            0.9,
            over="every",
            why="parity between two models that have not learned MNIST says nothing",
        ),
        Precondition(
            "the plain classifier learns the task",
            "plain_classifier",
            "accuracy",
            ">=",
            0.9,
            over="every",
            why="the baseline must be trained as well, else parity is against a crippled head",
        ),
        Precondition(
            "the prototype model converged",
            "ours",
            "converged",
            ">=",
            1.0,
            over="every",
            why="the training loss must plateau before prototypes are judged",
        ),
        Precondition(
            "the ablation converged",
            "no_r1_r2",
            "converged",
            ">=",
            1.0,
            over="every",
            why="an ablation stopped early could have blob prototypes for lack of training alone",
        ),
    )
    changes = (
        "before the frame (quick, 8 epochs, 3 seeds): 'partial' — parity passed (0.9327 vs 0.9358), judge confidence "
        "passed (0.757 vs 0.311), the latent nearest-encoding distance ratio failed (1.23 vs 1.00).",
        "after the audit (issue 20): the latent distance ratio is invalid — R2 compresses the latent space, so the "
        "denominator shrinks with the numerator (absolute distance 9.4x smaller with R1/R2, ratio unchanged). "
        "Replaced by the decoded prototype's nearest training image in pixel space, over a data constant "
        "(proto_pixel_nn_ratio). The metric was changed because the audit showed it cannot measure the claim; the "
        "decoded images (prototypes.png) had been seen.",
        "errata (authors' code): the last layer starts U[0, 1) on +distance (here -U[0,1) on -distance, bias 0); "
        "reconstruction summed over pixels (already so). Record trains 30 epochs (8 before) to approach the paper's "
        "accuracy regime; the judge trains 10 epochs (5 before).",
    )

    def data(self, settings: Settings, seed: int) -> dict[str, Any]:
        return shared_data(settings.n_train, settings.n_test, settings.judge_epochs)

    def arms(self, settings: Settings):
        return {"ours": _prototype_arm(True), "no_r1_r2": _prototype_arm(False), "plain_classifier": _plain_arm}

    def checks(self, settings: Settings, cells: Mapping[str, Mapping[int, Measured]]) -> list[Check]:
        d = shared_data(settings.n_train, settings.n_test, settings.judge_epochs)
        out = [
            Check(
                "the judge is a competent reader",
                d["judge_acc"] >= 0.9,
                f"judge test accuracy {d['judge_acc']:.3f} (>= 0.9 needed): its confidence is the yardstick",
            )
        ]
        if d["split"].source != "mnist":
            out.append(Check("MNIST present", False, "scikit-learn digits stand in for MNIST"))
        return out

    def describe(self, settings: Settings) -> dict[str, Any]:
        d = shared_data(settings.n_train, settings.n_test, settings.judge_epochs)
        return {
            "data": d["split"].description,
            "model": MODEL,
            "train": TRAIN,
            "judge": {
                "arch": f"MLP {d['split'].x_train.shape[1]}-256-10 relu",
                "seed": JUDGE_SEED,
                "test_accuracy": d["judge_acc"],
                "mean_confidence_on_real_test_images": d["judge_conf_real"],
            },
            "pixel_scale": {
                "value": d["pixel_scale"],
                "what": "median over test images of the squared pixel "
                "distance to the nearest training image (the denominator of proto_pixel_nn_ratio)",
            },
            "arms": {
                "ours": "lambda1 = lambda2 = 1",
                "no_r1_r2": "lambda1 = lambda2 = 0",
                "plain_classifier": "same encoder + linear head, CE only",
            },
            "deviations": [
                "MLP encoder (784-256-40) instead of the paper's conv net",
                "no elastic augmentation",
                f"{settings.epochs} epochs instead of 1500",
                "logits Linear(-d) with a bias",
            ],
        }

    def figures(self, settings: Settings, cells, out_dir: Path) -> list[str]:
        plt = pyplot()
        shape = shared_data(settings.n_train, settings.n_test, settings.judge_epochs)["split"].image_shape
        labels = {"ours": "with R1/R2", "no_r1_r2": "without R1/R2"}
        m = MODEL["n_prototypes"]
        fig, axes = plt.subplots(2, m, figsize=(m * 0.9, 2.6), squeeze=False)
        for r, arm in enumerate(("ours", "no_r1_r2")):
            first = cells[arm][min(cells[arm])]
            for j in range(m):
                ax = axes[r, j]
                ax.imshow(
                    np.clip(np.asarray(first.info["decoded"][j]).reshape(shape), 0, 1), cmap="gray", vmin=0, vmax=1
                )
                ax.set_xticks([]), ax.set_yticks([])
                ax.set_title(f"judge {first.info['judge_class'][j]}", fontsize=6)
            axes[r, 0].set_ylabel(labels[arm], fontsize=7)
        fig.suptitle("decoded prototypes (first seed)", fontsize=9)
        return [save_figure(fig, out_dir / "prototypes.png").name]
