"""Seed 39 — CTF: predicting k-means coarse token labels autoregressively, then fine tokens in one parallel step.

Guo, Zhang, Shieh, "Improving Autoregressive Image Generation through Coarse-to-Fine Token Prediction"
(arXiv 2503.16194). Scaled down: MNIST t10k (digits when absent) at 16×16, a conv VQ-VAE with a deliberately
large codebook (16 tokens of width 8 per image, one shared codebook), trained once (seed 0). Its codewords are
clustered by k-means into coarse labels. Stage 1: a class-conditional causal transformer over the 16 coarse
labels. Stage 2: a bidirectional transformer that reads the whole coarse sequence (and the class) and predicts
every fine token in one pass, restricted to the members of each position's cluster. Baselines on the same
tokens and seeds: a causal transformer directly over fine tokens with as many layers as both stages together
(``direct_ar``), and the same two stages over *random* clusters of the same sizes (``ctf_random``).

Every prior is :class:`isthmus.models.TokenTransformer` trained by :class:`isthmus.train.Trainer` to its plateau:
early stopping on the loss of a validation tenth of the training tokens (patience 5, best weights restored),
up to ``max_epochs``. Scored with ``isthmus.metrics.generative``: Fréchet distance and the IS analogue in the
features of a small MLP classifier trained once (seed 0) on images DISJOINT from the FD reference (the
held-out images), class accuracy of the samples, and the held-out fine-token accuracy of stage 2 given true
coarse labels. A check confirms that the FD separates real held-out images from a blurred copy and from noise.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeAlias, cast

import numpy as np
import torch
import torch.nn.functional as F

from isthmus.bottlenecks.vq import VQBottleneck
from isthmus.metrics.generative import frechet_distance, inception_score
from isthmus.models import AutoEncoder, TokenTransformer
from isthmus.recipes.base import Paper, Recipe, RecipeSettings
from isthmus.recipes.gates import Check, Gate, Measured, Precondition, plateaued
from isthmus.recipes.registry import register_recipe
from isthmus.tasks.feature_classifier import frechet_sanity, train_feature_classifier
from isthmus.train import Trainer, TrainerConfig
from isthmus.viz import pyplot, save_figure

SIDE, N_TOK, TOK_DIM = 16, 16, 8


@dataclass
class Settings(RecipeSettings):
    n_train: int = 5000
    n_eval: int = 1000
    codebook: int = 256
    coarse: int = 16
    vq_epochs: int = 10
    max_epochs: int = 80  # priors stop earlier at their validation plateau
    patience: int = 5
    d_model: int = 32
    per_class: int = 50
    clf_epochs: int = 15


def load_images(n_train: int, n_eval: int) -> tuple[dict[str, Any], str]:
    """Images ``(N, 1, 16, 16)`` in [0, 1], labels, and the row indices (in the source's order) of each split."""
    from isthmus.data import load_digits, load_mnist
    from isthmus.data.paths import DataNotFoundError

    try:
        t, name = load_mnist(split="test"), "mnist"
    except DataNotFoundError:
        t, name = load_digits(as_images=True), "digits"
    x = F.interpolate(torch.as_tensor(np.asarray(t.X)), size=(SIDE, SIDE), mode="bilinear", align_corners=False)
    y = torch.as_tensor(np.asarray(t.y)).long()
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    n_train = min(n_train, int(0.75 * len(x)))
    tr, ev = perm[:n_train], perm[n_train : n_train + n_eval]
    return {
        "x_train": x[tr].clamp(0, 1),
        "y_train": y[tr],
        "x_eval": x[ev].clamp(0, 1),
        "y_eval": y[ev],
        "eval_rows": ev,
        "n_rows": len(x),
    }, name


def train_tokenizer(x: torch.Tensor, s: Settings) -> AutoEncoder:
    torch.manual_seed(0)
    vq = AutoEncoder.conv(
        image_size=SIDE,
        latent_dim=N_TOK * TOK_DIM,
        channels=(32, 64),
        bottleneck="vq",
        codebook_size=s.codebook,
        groups=N_TOK,
        objective={"recon_loss": "bce"},
    )
    Trainer(vq, TrainerConfig(epochs=s.vq_epochs, batch_size=64, seed=0, progress=False)).fit(x)
    return vq.eval()


@torch.no_grad()
def tokenize(vq: AutoEncoder, x: torch.Tensor) -> torch.Tensor:
    return vq.bottleneck(vq.encoder(x)).codes.reshape(len(x), N_TOK)  # (N, 16)


def codewords(vq: AutoEncoder) -> torch.Tensor:
    """The tokenizer's codewords ``(K, 8)``; :func:`train_tokenizer` builds a "vq" bottleneck."""
    return cast(VQBottleneck, vq.bottleneck).quantizer.codebook


@torch.no_grad()
def detokenize(vq: AutoEncoder, tokens: torch.Tensor) -> torch.Tensor:
    z = codewords(vq)[tokens].reshape(len(tokens), -1)  # (N, 16*8)
    return vq.decode(z).reshape(len(tokens), 1, SIDE, SIDE)


def clusters(codebook: torch.Tensor, n_coarse: int) -> dict[str, np.ndarray]:
    """k-means labels of the codewords, and a random relabelling with the same cluster sizes."""
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=n_coarse, n_init=4, random_state=0).fit(codebook.numpy()).labels_
    return {"ctf": km, "ctf_random": np.random.default_rng(0).permutation(km)}


def member_mask(labels: np.ndarray, K: int) -> torch.Tensor:
    """``(C, K)``: 0 where fine token k belongs to coarse label c, -inf elsewhere."""
    lab = torch.as_tensor(labels).long()
    mask = torch.full((int(lab.max()) + 1, K), float("-inf"))
    mask[lab, torch.arange(K)] = 0.0
    return mask


def setup(s: Settings) -> dict[str, Any]:
    """Seed-independent parts: images, tokenizer (seed 0), tokens, clusters, feature classifier, references."""
    d = s.to_dict()
    d.pop("seeds", None)
    return _setup(json.dumps(d, sort_keys=True))


@lru_cache(maxsize=1)
def _setup(key: str) -> dict[str, Any]:
    s = Settings.from_dict(json.loads(key))
    torch.set_flush_denormal(True)
    data, source = load_images(s.n_train, s.n_eval)
    vq = train_tokenizer(data["x_train"], s)
    tok = {"train": tokenize(vq, data["x_train"]), "eval": tokenize(vq, data["x_eval"])}
    held = torch.ones(data["n_rows"], dtype=torch.bool)
    held[data["eval_rows"]] = False  # the classifier never sees the FD reference images
    clf = train_feature_classifier(
        source, side=SIDE, seed=0, epochs=s.clf_epochs, train_indices=torch.nonzero(held)[:, 0].numpy()
    )
    half = len(data["x_eval"]) // 2
    sanity = frechet_sanity(clf, data["x_eval"][half:], data["x_eval"][:half])
    return {
        "data": data,
        "source": source,
        "vq": vq,
        "tok": tok,
        "clf": clf,
        "sanity": sanity,
        "labels": clusters(codewords(vq), s.coarse),
        "vq_reference": score(clf, detokenize(vq, tok["eval"]), data["y_eval"], data["x_eval"]),
    }


def score(clf, samples: torch.Tensor, y: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    p = clf.probs(samples)
    fd, is_ = frechet_distance(clf.features(samples), clf.features(reference)), inception_score(p)[0]
    return {
        "frechet": fd,
        "inception_score": is_,
        "log_frechet": math.log(fd),
        "log_inception": math.log(is_),
        "class_accuracy": float((p.argmax(1) == y.numpy()).mean()),
    }


def fit_prior(
    model: TokenTransformer, inp: torch.Tensor, target: torch.Tensor, y: torch.Tensor, s: Settings, seed: int
) -> tuple[TokenTransformer, list[float], bool]:
    """Trainer with early stopping on a validation tenth; returns (model, validation-loss curve, stopped early)."""
    n_val = max(1, len(inp) // 10)
    perm = torch.randperm(len(inp), generator=torch.Generator().manual_seed(seed))
    va, tr = perm[:n_val], perm[n_val:]
    torch.manual_seed(seed)
    cfg = TrainerConfig(
        epochs=s.max_epochs,
        batch_size=128,
        lr=1e-3,
        seed=seed,
        progress=False,
        device="cpu",
        early_stopping_patience=s.patience,
        restore_best=True,
    )
    res = Trainer(model, cfg).fit((inp[tr], target[tr], y[tr]), val=(inp[va], target[va], y[va]))
    return model.eval(), [h["val_loss"] for h in res.history], bool(res.stopped_early)


def _arm(arm: str):
    def fn(s: Settings, seed: int, _: Any) -> Measured:
        st = setup(s)
        tok, d, K, dm = st["tok"], st["data"], s.codebook, s.d_model
        y_s = torch.arange(10).repeat_interleave(s.per_class)
        g = torch.Generator().manual_seed(seed)
        curves, stopped = {}, []
        if arm == "direct_ar":
            prior, curves["val_loss"], st1 = fit_prior(
                TokenTransformer(K, K, N_TOK, 10, dm, 4, causal=True), tok["train"], tok["train"], d["y_train"], s, seed
            )
            stopped.append(st1)
            t0 = time.perf_counter()
            fine = prior.sample(y_s, N_TOK, g)
            acc = None
        else:
            lab = torch.as_tensor(st["labels"][arm]).long()
            C = int(lab.max()) + 1
            stage1, curves["val_loss_stage1"], st1 = fit_prior(
                TokenTransformer(C, C, N_TOK, 10, dm, 2, causal=True),
                lab[tok["train"]],
                lab[tok["train"]],
                d["y_train"],
                s,
                seed,
            )
            stage2, curves["val_loss_stage2"], st2 = fit_prior(
                TokenTransformer(C, K, N_TOK, 10, dm, 2, causal=False, member_mask=member_mask(st["labels"][arm], K)),
                lab[tok["train"]],
                tok["train"],
                d["y_train"],
                s,
                seed,
            )
            stopped += [st1, st2]
            acc = float((stage2.predict_tokens(lab[tok["eval"]], d["y_eval"]) == tok["eval"]).float().mean())
            t0 = time.perf_counter()
            fine = stage2.predict_tokens(stage1.sample(y_s, N_TOK, g), y_s, g)  # one parallel step
        spi = (time.perf_counter() - t0) / len(y_s)
        imgs = detokenize(st["vq"], fine)
        m = score(st["clf"], imgs, y_s, d["x_eval"])
        m.update(
            {
                "sec_per_image": spi,
                "converged": float(all(stopped) or all(plateaued(c) for c in curves.values())),
                "epochs_trained": float(np.mean([len(c) for c in curves.values()])),
            }
        )
        if acc is not None:
            m["fine_token_acc"] = acc
        info = {"grid": imgs.reshape(10, s.per_class, SIDE, SIDE)[:, :8].tolist()} if seed == 0 else {}
        return Measured(metrics=m, curves=curves, info=info)

    return fn


@register_recipe
class CoarseToFineTokens(Recipe):
    slug = "coarse-to-fine-tokens"
    paper = Paper("Improving Autoregressive Image Generation through Coarse-to-Fine Token Prediction", "2503.16194")
    claim = (
        "Autoregressively predicting k-means cluster labels of VQ tokens and then filling in the fine tokens "
        "with one bidirectional pass generates better images (lower FID, higher IS) than autoregression over "
        "the fine tokens directly; with random clusters the fine tokens cannot be recovered."
    )
    Settings: TypeAlias = Settings
    modes = {
        "smoke": Settings(
            seeds=1,
            n_train=400,
            n_eval=200,
            codebook=64,
            coarse=8,
            vq_epochs=1,
            max_epochs=2,
            d_model=16,
            per_class=10,
            clf_epochs=2,
        ),
        "quick": Settings(seeds=3, max_epochs=30),
        "record": Settings(seeds=3),
        "full": Settings(
            seeds=5,
            n_train=8000,
            n_eval=2000,
            codebook=512,
            coarse=32,
            vq_epochs=30,
            max_epochs=200,
            d_model=96,
            per_class=200,
            clf_epochs=30,
        ),
    }
    ours = "ctf"
    gates = (
        Gate(
            "lower Fréchet distance than direct AR",
            "log_frechet",
            "ctf",
            "direct_ar",
            direction="lower",
            effect=0.05,
            headline=True,
            why="the paper's FID claim: at least ≈ 5 % lower FD (0.05 in log FD)",
        ),
        Gate(
            "higher IS than direct AR",
            "log_inception",
            "ctf",
            "direct_ar",
            effect=0.05,
            why="the paper's IS claim: at least ≈ 5 % higher (0.05 in log IS)",
        ),
        Gate(
            "random clusters: fine tokens harder to recover",
            "fine_token_acc",
            "ctf",
            "ctf_random",
            effect=0.05,
            why="the sub-claim as measured where it lives: stage-2 accuracy on held-out tokens, 5 points",
        ),
    )
    preconditions = (
        Precondition(
            "CTF priors trained to their plateau",
            "ctf",
            "converged",
            ">=",
            1.0,
            over="every",
            why="early stopping on validation loss fired (or the curve plateaued) before max_epochs",
        ),
        Precondition(
            "direct AR prior trained to its plateau",
            "direct_ar",
            "converged",
            ">=",
            1.0,
            over="every",
            why="the baseline gets the same chance: a 256-way AR learns more slowly than a 16-way one",
        ),
    )

    def arms(self, s: Settings):
        return {a: _arm(a) for a in ("ctf", "direct_ar", "ctf_random")}

    def checks(self, s: Settings, cells) -> list[Check]:
        st = setup(s)
        fd, vq, acc = st["sanity"], st["vq_reference"], st["clf"].heldout_accuracy_
        return [
            Check(
                "FD separates real images from blurred ones and from noise",
                fd["real"] < 0.5 * min(fd["blurred"], fd["noise"]),
                f"FD to held-out reference: other real {fd['real']:.3g}, blurred {fd['blurred']:.3g}, noise "
                f"{fd['noise']:.3g} (real must be below half of both)",
            ),
            Check("feature classifier is accurate", acc >= 0.9, f"held-out accuracy {acc:.3f} (≥ 0.9)"),
            Check(
                "tokenizer keeps the digits",
                vq["class_accuracy"] >= 0.8,
                f"class accuracy of VQ reconstructions {vq['class_accuracy']:.3f} (≥ 0.8), FD {vq['frechet']:.3g}",
            ),
        ]

    def describe(self, s: Settings) -> dict[str, Any]:
        st = setup(s)
        K, C, d = s.codebook, s.coarse, s.d_model
        n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        return {
            "data": f"{st['source']} resized to {SIDE}x{SIDE}; split fixed with seed 0",
            "tokenizer": f"AutoEncoder.conv (32, 64) + VQ ({K} codes of width {TOK_DIM}, {N_TOK} tokens/image), "
            "BCE, trained once (seed 0)",
            "codes_used_on_train": int(len(torch.unique(st["tok"]["train"]))),
            "feature_classifier": {
                "trained_on": f"{len(st['clf'].train_indices_)} images, none of them in the FD reference",
                "heldout_accuracy": st["clf"].heldout_accuracy_,
            },
            "fd_sanity": st["sanity"],
            "vq_reconstruction_reference": st["vq_reference"],
            "priors": "TokenTransformer, pre-LN, 4 heads, Adam 1e-3, batch 128, Trainer with early stopping "
            f"(patience {s.patience}) on a validation tenth, best weights restored; stage 1 and 2: 2 "
            "layers each; direct AR: 4 layers",
            "params": {
                "ctf_stage1": n(TokenTransformer(C, C, N_TOK, 10, d, 2, True)),
                "ctf_stage2": n(TokenTransformer(C, K, N_TOK, 10, d, 2, False)),
                "direct_ar": n(TokenTransformer(K, K, N_TOK, 10, d, 4, True)),
            },
            "deviations": [
                "stage 2 predicts only among the fine tokens of each position's cluster (a mask)",
                "no classifier-free guidance; temperature 1; tiny models (d = 32)",
            ],
        }

    def figures(self, s: Settings, cells, out_dir: Path) -> list[str]:
        plt = pyplot()
        grids = {a: np.asarray(c[0].info["grid"]) for a, c in cells.items() if 0 in c and c[0].info}
        if not grids:
            return []
        fig, axes = plt.subplots(1, len(grids), figsize=(3.2 * len(grids), 4.0))
        for ax, (arm, g) in zip(np.atleast_1d(axes), grids.items()):
            rows, cols = g.shape[:2]
            ax.imshow(g.transpose(0, 2, 1, 3).reshape(rows * SIDE, cols * SIDE), cmap="gray", vmin=0, vmax=1)
            ax.set_title(arm, fontsize=9)
            ax.axis("off")
        save_figure(fig, out_dir / "samples.png", dpi=90)
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for arm, c in cells.items():
            for k, v in c[min(c)].curves.items():
                ax.plot(range(1, len(v) + 1), v, label=f"{arm} {k}")
        ax.set_xlabel("epoch"), ax.set_ylabel("validation loss"), ax.legend(fontsize=6)
        save_figure(fig, out_dir / "prior_curves.png", dpi=90)
        return ["samples.png", "prior_curves.png"]

    changes = (
        "Before the frame (quick, 3 seeds, 6 prior epochs ≈ 240 steps): 'reproduced'. The audit re-ran seed 0 at 24 "
        "and 48 epochs: the direct AR caught up (48 epochs: FD 5.1 CTF vs 5.3 direct, IS 8.11 vs 8.21) — the quick "
        "verdict measured sample efficiency of a 16-way vs a 256-way AR. Now every prior trains to its validation "
        "plateau (early stopping, best weights restored), up to 80 epochs.",
        "The random-cluster sub-claim was gated on FD only while its own fine-token accuracy contradicted it "
        "(random 0.613 > k-means 0.431); it is now gated on held-out stage-2 fine-token accuracy.",
        "The feature classifier behind FD/IS was trained on a split overlapping the FD reference images; it now "
        "trains on every image outside the reference, and a check requires FD to separate real held-out images "
        "from a blurred copy and from noise.",
        "History from the old notes: a first quick run with a weaker tokenizer (4,000 images, 6 VQ epochs) was limited "
        "by the tokenizer (its reconstructions FD 77); quick then moved to 5,000 images and 10 VQ epochs.",
    )
