"""Seed 24 — Discrete Key-Value Bottleneck: local value updates resist class-incremental forgetting.

Träuble et al., "Discrete Key-Value Bottleneck", ICML 2023 (arXiv 2207.11240). The classifier is
``FrozenEncoderHead(encoder, key_value bottleneck)``: fixed random projections into C heads, keys from
k-means on *unlabelled* data and then frozen, learnable values (width = number of classes) averaged over
heads into logits (non-parametric decoder). Baselines on the same frozen features, stream, optimizer,
steps and seeds: a linear probe, a one-hidden-layer MLP and a nearest-class-mean head (NCM: running
class means, cannot forget). Upper bounds: each trained model trained i.i.d. on all classes for the
same total number of steps.

Settings (``isthmus.tasks.continual``; no task identity or boundary reaches the model):

* **toy** (our variant, not the paper's C = 1 / 400-key toy): 8 Gaussian classes on a circle, presented
  two at a time, 100 training samples per class pair; encoder = identity; keys by k-means on 2,000
  unlabelled points uniform over [-1.5, 1.5]²; C = 32 heads, K = 64 keys, d_v = 8.
* **mnist**: the stream is MNIST t10k (5 tasks × 2 classes); the frozen MLP autoencoder encoder
  (784-256-32) and the keys are fitted on data DISJOINT from the stream — scikit-learn's digits (another
  source: 8×8 scans by other writers, resized to MNIST's 20×20 box in a 28×28 frame; labels unused), as
  the paper initialises CIFAR-10 keys on CIFAR-100. C = 64 heads of 8 dims, K = 128 keys, d_v = 10.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeAlias, cast

import numpy as np
import torch
from torch import nn

from isthmus.bottlenecks import build_bottleneck
from isthmus.bottlenecks.key_value import KeyValueBottleneck as KVBottleneck  # the recipe class below shares the name
from isthmus.data import load_digit_split, make_gaussian_classes
from isthmus.models import AutoEncoder, FrozenEncoderHead
from isthmus.nn import MLP, MLPConfig
from isthmus.recipes.base import Paper, Recipe, RecipeSettings
from isthmus.recipes.gates import Gate, Measured, Precondition
from isthmus.recipes.registry import register_recipe
from isthmus.tasks.continual import ncm_stream, split_classes, train_stream
from isthmus.train import Trainer, TrainerConfig
from isthmus.viz import pyplot, save_figure

HEADS: dict[str, dict[str, Any]] = {
    "toy": dict(kv=dict(heads=32, key_dim=2, num_keys=64), mlp_hidden=64, per_task=2, batch_size=32),
    "mnist": dict(kv=dict(heads=64, key_dim=8, num_keys=128), mlp_hidden=128, per_task=2, batch_size=32),
}
TRAINED = ("dkvb", "linear_probe", "mlp")
LR = 1e-3  # Adam, every model, both settings


@dataclass
class Settings(RecipeSettings):
    toy_steps: int = 1000
    mnist_steps: int = 300
    n_train: int = 5000  # stream images
    n_test: int = 1000
    ae_epochs: int = 20
    key_source: str = "digits"  # "digits" (disjoint source, default) or "mnist" (held-apart MNIST images)


class _Standardize(nn.Module):
    """Fixed affine map (x - mean) / std, statistics from the unlabelled set."""

    mean: torch.Tensor  # buffers
    std: torch.Tensor

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std.clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def toy_data(seed: int) -> dict[str, Any]:
    """Stream (50 per class = 100 per class pair), test (200 per class) and unlabelled key data."""
    x, y = make_gaussian_classes(50, seed=1000 + seed)
    xt, yt = make_gaussian_classes(200, seed=2000 + seed)
    u = np.random.default_rng(3000 + seed).uniform(-1.5, 1.5, size=(2000, 2)).astype(np.float32)
    t = torch.as_tensor
    return {
        "x": t(x),
        "y": t(y),
        "x_test": t(xt),
        "y_test": t(yt),
        "unlabelled": t(u),
        "encoder": nn.Identity(),
        "n_classes": 8,
    }


def digits_as_mnist() -> torch.Tensor:
    """scikit-learn digits (1,797 8×8 scans) in MNIST's layout: resized to 20×20, centred in 28×28, in [0, 1]."""
    import torch.nn.functional as F

    from isthmus.data import load_digits

    x = torch.as_tensor(np.asarray(load_digits(as_images=True).X), dtype=torch.float32)
    x = x / x.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    x = F.pad(F.interpolate(x, size=(20, 20), mode="bilinear", align_corners=False), (4, 4, 4, 4))
    return x.clamp(0, 1).reshape(len(x), -1)


@lru_cache(maxsize=2)
def _mnist_split(n_train: int, n_test: int, key_source: str):
    split = load_digit_split(n_train * (2 if key_source == "mnist" else 1), n_test, seed=0)
    x, y = torch.as_tensor(split.x_train), torch.as_tensor(split.y_train)
    if key_source == "mnist":  # first half keys/encoder, second half stream: disjoint images, same classes
        return x[n_train:], y[n_train:], x[:n_train], split, "held-apart MNIST images (same classes)"
    if key_source != "digits":
        raise ValueError(f"key_source must be 'digits' or 'mnist', got {key_source!r}")
    return x, y, digits_as_mnist(), split, "scikit-learn digits resized to MNIST's layout (another source)"


def mnist_data(s: Settings, seed: int) -> dict[str, Any]:
    """Unlabelled key data → frozen AE encoder (+ standardisation) and keys; the MNIST stream is disjoint."""
    x, y, unl, split, what = _mnist_split(s.n_train, s.n_test, s.key_source)
    torch.manual_seed(seed)
    ae = AutoEncoder.mlp(x.shape[1], latent_dim=32, hidden=(256,))
    Trainer(ae, TrainerConfig(epochs=s.ae_epochs, batch_size=64, seed=seed, progress=False)).fit(unl)
    with torch.no_grad():
        h = ae.encoder.eval()(unl)
    enc = nn.Sequential(ae.encoder, _Standardize(h.mean(0), h.std(0))).eval()
    with torch.no_grad():
        feats = enc(unl)
    return {
        "x": x,
        "y": y,
        "x_test": torch.as_tensor(split.x_test),
        "y_test": torch.as_tensor(split.y_test),
        "unlabelled": feats,
        "encoder": enc,
        "n_classes": 10,
        "desc": f"{split.description}; encoder: MLP AE 256-32 ({s.ae_epochs} epochs, seed-dependent) and keys "
        f"on {len(unl)} {what}, labels unused, frozen; stream: {len(x)} MNIST images",
    }


def build(model: str, data: dict, setting: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    h, d_in, k = HEADS[setting], data["unlabelled"].shape[1], data["n_classes"]
    head: nn.Module
    if model == "dkvb":
        head = build_bottleneck(
            "key_value", latent_dim=k, input_dim=d_in, decoding="mean", init_on_first_batch=False, **h["kv"]
        )
        cast(KVBottleneck, head).init_keys(data["unlabelled"])  # unlabelled data only; frozen from here on
    elif model == "linear_probe":
        head = nn.Linear(d_in, k)
    else:
        head = MLP(MLPConfig(in_dim=d_in, out_dim=k, hidden=[h["mlp_hidden"]], activation="relu"))
    return FrozenEncoderHead(data["encoder"], head)


def run_model(model: str, setting: str, data: dict, seed: int, steps: int, iid: bool = False) -> dict:
    h = HEADS[setting]
    tasks = split_classes(range(data["n_classes"]), h["per_task"])
    if iid:
        tasks, steps = [list(range(data["n_classes"]))], steps * len(tasks)
    if model == "ncm":
        return ncm_stream(
            data["encoder"],
            data["x"],
            data["y"],
            data["x_test"],
            data["y_test"],
            tasks,
            steps,
            h["batch_size"],
            data["n_classes"],
            seed=seed,
        )
    return train_stream(
        build(model, data, setting, seed),
        data["x"],
        data["y"],
        data["x_test"],
        data["y_test"],
        tasks,
        steps,
        h["batch_size"],
        lambda p: torch.optim.Adam(p, lr=LR),
        seed=seed,
    )


def _arm(model: str, iid: bool = False):
    def arm(s: Settings, seed: int, data: dict) -> Measured:
        metrics, info = {}, {}
        for setting in ("mnist", "toy"):
            if iid and setting == "toy":
                continue
            steps = s.mnist_steps if setting == "mnist" else s.toy_steps
            r = run_model(model, setting, data[setting], seed, steps, iid=iid)
            keys = ("final_acc",) if iid else ("final_acc", "forgetting", "last_task_acc")
            metrics.update({f"{setting}_{k}": float(r[k]) for k in keys})
            info[f"{setting}_acc_matrix"] = np.asarray(r["acc_matrix"]).tolist()
        return Measured(metrics=metrics, info=info)

    return arm


def _gates() -> tuple[Gate, ...]:
    g = []
    for b in ("linear_probe", "mlp"):
        g.append(
            Gate(
                f"mnist: final accuracy above {b}",
                "mnist_final_acc",
                "dkvb",
                b,
                effect=0.05,
                headline=True,
                why="the paper's claim on real images: at least 5 accuracy points over all classes",
            )
        )
    for b in ("linear_probe", "mlp"):
        g.append(
            Gate(
                f"mnist: forgets less than {b}",
                "mnist_forgetting",
                "dkvb",
                b,
                direction="lower",
                effect=0.05,
                why="'forgets far less': at least 5 points less average forgetting",
            )
        )
        g.append(
            Gate(
                f"toy: final accuracy above {b}",
                "toy_final_acc",
                "dkvb",
                b,
                effect=0.05,
                why="the same claim on the 2-D toy",
            )
        )
    g.append(
        Gate(
            "mnist: not below nearest-class-mean",
            "mnist_final_acc",
            "dkvb",
            "ncm",
            kind="non_inferiority",
            effect=0.02,
            why="a referee's baseline on the same frozen features: NCM cannot forget; DKVB "
            "should be within 2 points of it to be worth its learned values",
        )
    )
    return tuple(g)


@register_recipe
class KeyValueBottleneck(Recipe):
    slug = "key-value-bottleneck"
    paper = Paper("Discrete Key-Value Bottleneck", "2207.11240")
    claim = (
        "A discrete key-value bottleneck on a frozen encoder (frozen keys from unlabelled data, learnable values, "
        "non-parametric decoding) forgets far less than a linear probe or an MLP head trained on the same "
        "class-incremental stream without task boundaries, so its final accuracy over all classes is higher."
    )
    Settings: TypeAlias = Settings
    modes = {
        "smoke": Settings(seeds=1, toy_steps=20, mnist_steps=10, n_train=600, n_test=200, ae_epochs=1),
        "quick": Settings(seeds=3),
        "record": Settings(seeds=3),
        "full": Settings(seeds=10, mnist_steps=1000, ae_epochs=40),
    }
    ours = "dkvb"
    gates = _gates()
    preconditions = (
        Precondition(
            "positive control: the frozen features support the task",
            "linear_probe_iid",
            "mnist_final_acc",
            ">=",
            0.75,
            why="a linear probe trained i.i.d. on all classes must reach 75 %, else the "
            "encoder, not the head, limits every arm",
        ),
        Precondition(
            "DKVB learns i.i.d.",
            "dkvb_iid",
            "mnist_final_acc",
            ">=",
            0.6,
            why="the bottleneck itself must be able to learn the task when nothing is forgotten",
        ),
    )

    def data(self, s: Settings, seed: int) -> dict:
        return {"mnist": mnist_data(s, seed), "toy": toy_data(seed)}

    def arms(self, s: Settings):
        return {**{m: _arm(m) for m in (*TRAINED, "ncm")}, **{f"{m}_iid": _arm(m, iid=True) for m in TRAINED}}

    def describe(self, s: Settings) -> dict[str, Any]:
        return {
            "heads": HEADS,
            "optimizer": f"adam lr {LR}, one optimizer per run, never reset between tasks",
            "mnist_data": mnist_data(s, 0)["desc"]
            if s.n_train <= 600
            else f"MNIST t10k stream {s.n_train} / test {s.n_test}; keys and encoder on {s.key_source} (see module doc)",
            "toy_data": "8 Gaussians on a circle (radius 1, std 0.1), our variant of the paper's toy",
            "steps_note": "steps are per task; i.i.d. runs use steps x number of tasks on all classes",
            "deviations": [
                "keys by k-means, then frozen (authors' code: EMA-trained keys, unused keys masked at "
                "evaluation, values zero-initialised, CE with label smoothing 0.1) — not applied",
                "toy: 32 heads / 64 keys with projections (paper: one codebook of 400 keys on raw 2-D)",
                "Adam for every model (paper CIFAR sweeps: SGD lr 0.3)",
            ],
        }

    def figures(self, s: Settings, cells, out_dir: Path) -> list[str]:
        plt = pyplot()
        seed = min(cells["dkvb"])
        models = (*TRAINED, "ncm")
        fig, axes = plt.subplots(2, len(models), figsize=(3.2 * len(models), 6.0), squeeze=False)
        for row, setting in zip(axes, ("mnist", "toy")):
            for ax, m in zip(row, models):
                a = np.asarray(cells[m][seed].info[f"{setting}_acc_matrix"])
                ax.imshow(a, vmin=0, vmax=1, cmap="viridis")
                for (i, j), v in np.ndenumerate(a):
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color="w" if v < 0.5 else "k")
                ax.set_title(f"{setting}: {m} (seed {seed})", fontsize=8)
                ax.set_xlabel("task", fontsize=7)
                ax.set_ylabel("after stage", fontsize=7)
        save_figure(fig, out_dir / "accuracy_matrices.png", dpi=90)
        return ["accuracy_matrices.png"]

    changes = (
        "Before the frame (quick, 3 seeds): 'reproduced' — MNIST final accuracy DKVB 0.766 vs linear 0.659, toy 0.999 "
        "vs 0.500. The audit found (1) keys and encoder were fitted on the first half of the same MNIST split as the "
        "stream (same classes; the paper uses another data set), (2) the encoder was trained once with seed 0, and "
        "(3) a nearest-class-mean head on the same features reached 0.816, above DKVB. Now: keys and encoder on "
        "scikit-learn digits (another source), the encoder trained per seed, and NCM as a gated baseline.",
        "History kept from the old notes: a first quick run with i.i.d. bounds in both settings took 476 s; the toy "
        "i.i.d. bound (0.999-1.0 for all three models) was dropped, and codebook statistics were vectorised.",
    )
