"""Seed 21 — NaTra: adversarial training along class-independent latent directions of a generative model.

Wang, Lyu, Nepal et al. (CSIRO) 2021, arXiv 2105.04070; no authors' code and no full text were found
(errata), so this is the referee card's mechanism-level test (cards-G-H-K.md § Seed 21), not the
face/StyleGAN result. A small conv autoencoder stands in for the pretrained generator: trained on an
**unlabelled pool with broad lighting**, while the classifier trains on a **narrow labelled set**.
NaTra's pipeline on it: batch inverse encoding (encoder + 10 latent Adam steps,
:func:`isthmus.tasks.latent_edit.invert`), unsupervised directions (SeFa on the decoder's first linear
layer), and per item the **worst** of K = 8 candidates (4 directions × ± a bounded magnitude) mixed
50/50 with the clean image (:class:`isthmus.tasks.augmented_training.AugmentedClassifier`).

Data, "Lit-MNIST" (:mod:`isthmus.data.lighting`): MNIST t10k digits on grey photo-patch textures
(train photos for train/val/pool, test photos for the test), times an illumination field (ambient,
directional ramp, soft shadow), then gamma. Labelled train and clean test: narrow lighting; pool: the
full range; shifted test: the same test digits under dark, strongly graded, shadowed lighting.

Arms (the same ConvEncoder classifier, epochs, batches and Adam for all; every augmented arm mixes
50/50 with clean): ``natra`` (ours); ``erm``; ``photometric`` (random global brightness/contrast/gamma
spanning the pool's global range); ``photometric_worst`` (worst of 8 such jitters: the referee's
control with NaTra's adversarial selection, added to the card); ``random_latent`` (the same 8 latent
candidates, one picked at random: isolates the adversarial choice); ``pgd`` (PGD-2, L∞ 8/255;
reported); ``oracle`` (re-lighting the true albedo with the pool's range; reported upper bound and
the positive control).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping, TypeAlias, cast

import numpy as np
import torch

from isthmus.data.lighting import (
    FULL,
    NARROW,
    SHIFTED,
    lighting_regressor,
    lit_digits,
    photometric_jitter,
    relight,
    sample_lighting,
)
from isthmus.bottlenecks import build_bottleneck
from isthmus.models import AutoEncoder
from isthmus.nn.conv import ConvDecoder, ConvDecoderConfig, ConvEncoder, ConvEncoderConfig
from isthmus.recipes.base import Paper, Recipe, RecipeSettings
from isthmus.recipes.gates import Check, Gate, Measured, Precondition, converged_on_every_seed, plateaued
from isthmus.recipes.registry import register_recipe
from isthmus.tasks.adversarial import pgd
from isthmus.tasks.augmented_training import Augment, AugmentedClassifier, pick_rule, sampled_rule
from isthmus.tasks.latent_edit import (
    direction_response,
    direction_scales,
    edit_candidates,
    invert,
    sefa_directions,
    valid_directions,
)
from isthmus.train import Trainer, TrainerConfig
from isthmus.train.callbacks import EpochTrace
from isthmus.viz import image_grid, pyplot, save_figure

ARMS = ("natra", "erm", "photometric", "photometric_worst", "random_latent", "pgd", "oracle")


@dataclass
class Settings(RecipeSettings):
    n_train: int = 2000
    n_val: int = 500
    n_pool: int = 5500
    n_test: int = 2000
    latent: int = 32
    ae_channels: list[int] = field(default_factory=lambda: [16, 32])
    ae_epochs: int = 20
    ae_warmup: int = 200  # linear lr warm-up steps: without it seed 4's AE collapsed to a constant (see changes)
    invert_steps: int = 10
    invert_lr: float = 0.05
    n_directions: int = 4
    magnitude: float = 2.0  # in units of the pool codes' spread along each direction
    k_jitter: int = 8  # candidates of photometric_worst (= 4 directions x 2 signs of natra)
    cnn_channels: list[int] = field(default_factory=lambda: [16, 32])
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    pgd_eps: float = 8 / 255
    pgd_steps: int = 2
    n_direction_check: int = 200
    # a valid direction must also change the lighting regressor's output by >= this many pool SDs between -m and +m
    min_direction_change: float = 0.1
    schedule: str = "cosine"  # classifier lr schedule (all arms): decays to 0 so every arm ends on a plateau


@lru_cache(maxsize=1)
def _mnist() -> tuple[np.ndarray, np.ndarray]:
    from isthmus.data import load_mnist

    t = load_mnist()
    assert t.y is not None
    return t.X[:, 0], t.y


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(a))


def make_splits(s: Settings, seed: int) -> dict[str, Any]:
    """Digits split by a seed-fixed permutation into labelled train, val, pool and test; rendered under the
    card's lighting ranges (test digits twice: narrow = clean, shifted)."""
    X, y = _mnist()
    need = s.n_train + s.n_val + s.n_pool + s.n_test
    if need > len(X):
        raise ValueError(f"{need} digits requested, MNIST t10k has {len(X)}")
    perm = np.random.default_rng(seed).permutation(len(X))
    cut = np.cumsum([0, s.n_train, s.n_val, s.n_pool, s.n_test])
    idx = {k: perm[cut[i] : cut[i + 1]] for i, k in enumerate(("train", "val", "pool", "test"))}
    out: dict[str, Any] = {}
    for k, ranges, split in (
        ("train", NARROW, "train"),
        ("val", NARROW, "train"),
        ("pool", FULL, "train"),
        ("test", NARROW, "test"),
    ):
        img, alb, light = lit_digits(X[idx[k]], ranges, seed=1000 * seed + len(out), split=split)
        out[k] = (img, y[idx[k]].astype(np.int64), alb, light)
    test_alb = out["test"][2]
    shifted = relight(test_alb, sample_lighting(len(test_alb), SHIFTED, np.random.default_rng(seed + 99)))
    out["shifted"] = (shifted, out["test"][1])
    return out


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a - b) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return float((10 * torch.log10(1.0 / mse)).mean())


def train_generator(s: Settings, seed: int, d: dict[str, Any]) -> dict[str, Any]:
    """The stand-in generator (AE on the pool), inversion, SeFa directions, candidates and their checks."""
    pool = _t(d["pool"][0])
    torch.manual_seed(seed)
    enc = ConvEncoder(ConvEncoderConfig(1, 32, list(s.ae_channels), s.latent))
    dec = ConvDecoder(ConvDecoderConfig(s.latent, 1, 32, list(reversed(s.ae_channels))))
    ae = AutoEncoder(enc, build_bottleneck("identity", latent_dim=s.latent), dec)
    n_fit = len(pool) * 9 // 10
    res = Trainer(
        ae,
        TrainerConfig(epochs=s.ae_epochs, batch_size=64, lr=2e-3, warmup_steps=s.ae_warmup, seed=seed, progress=False),
    ).fit((pool[:n_fit],), (pool[n_fit:],))
    ae.eval()
    for p in ae.parameters():
        p.requires_grad_(False)
    inv = lambda x: invert(enc, dec, x, steps=s.invert_steps, lr=s.invert_lr)  # noqa: E731
    z_held, trace = inv(pool[n_fit:])
    with torch.no_grad():
        held_psnr = _psnr(dec(z_held).reshape(pool[n_fit:].shape), pool[n_fit:])
        z_pool = enc(pool[:n_fit])
    dirs, eig = sefa_directions(dec.fc.weight, s.n_directions)
    mags = s.magnitude * direction_scales(z_pool, dirs)
    signed = torch.stack([mags, -mags], 1)  # (k, 2): + and - per direction
    x_tr, x_va = _t(d["train"][0]), _t(d["val"][0])
    z_tr, _ = inv(x_tr)
    cands = edit_candidates(dec, z_tr, x_tr, dirs, signed)  # (N, 8, 1, 32, 32)
    n_chk = min(s.n_direction_check, len(x_va))
    z_va, _ = inv(x_va[:n_chk])
    targets = d["pool"][3].targets()
    regress = lighting_regressor(d["pool"][0], targets)
    rho, change = direction_response(dec, z_va, x_va[:n_chk], dirs, mags, regress)
    size = np.abs(change) / np.maximum(np.asarray(targets).std(0), 1e-12)  # (k, outputs) in pool SDs
    valid = valid_directions(rho, size, s.min_direction_change)
    val_cands = edit_candidates(dec, z_va, x_va[:n_chk], dirs, signed)
    curve = [float(h["val_loss"]) for h in res.history]
    return {
        "cands": cands,
        "val_cands": val_cands,
        "info": {
            "ae_psnr": held_psnr,
            "ae_converged": float(plateaued(curve)),
            "valid_directions": float(valid.sum()),
            "invert_gain": trace[0] - trace[-1],
            "inversion_non_increasing": float(all(b <= a + 1e-9 for a, b in zip(trace, trace[1:]))),
        },
        "curves": {
            "ae_val_loss": curve,
            "invert_mse": trace,
            "direction_rho": np.abs(rho).max(1).tolist(),
            "direction_change_sd": size.max(1).tolist(),
            "sefa_eig": eig.tolist(),
        },
    }


def _classifier(s: Settings) -> torch.nn.Module:
    return ConvEncoder(ConvEncoderConfig(1, 32, list(s.cnn_channels), 10))


def _acc(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return (torch.cat([net(x[i : i + 1000]).argmax(1) for i in range(0, len(x), 1000)]) == y).numpy()


def fit_arm(
    s: Settings, seed: int, data: dict[str, Any], augment: Augment | None, extra: torch.Tensor | None
) -> Measured:
    d = data["splits"]
    xtr, ytr = _t(d["train"][0]), _t(d["train"][1])
    xva, yva = _t(d["val"][0]), _t(d["val"][1])
    torch.manual_seed(seed)  # every arm starts from the same classifier weights
    model = AugmentedClassifier(_classifier(s), augment)
    trace = EpochTrace(lambda m: float(_acc(cast(AugmentedClassifier, m).net, xva, yva).mean()))
    tc = TrainerConfig(
        epochs=s.epochs, batch_size=s.batch_size, lr=s.lr, schedule=cast(Any, s.schedule), seed=seed, progress=False
    )
    train = (xtr, ytr) if extra is None else (xtr, ytr, extra)
    Trainer(model, tc, callbacks=[trace]).fit(train)
    model.eval()
    clean = _acc(model.net, _t(d["test"][0]), _t(d["test"][1]))
    shifted = _acc(model.net, _t(d["shifted"][0]), _t(d["shifted"][1]))
    metrics = {
        "acc_shifted": float(shifted.mean()),
        "acc_clean": float(clean.mean()),
        "shift_drop": float(clean.mean() - shifted.mean()),
        "converged": float(plateaued(trace.values)),
    }
    # class independence: the clean val labels this model gives stay unchanged under the largest edit
    vc = data["gen"]["val_cands"]  # (n, 8, 1, 32, 32): every direction at the largest magnitude, both signs
    with torch.no_grad():
        labels = model.net(xva[: len(vc)]).argmax(1)
    metrics["label_kept"] = float(np.mean([_acc(model.net, vc[:, j], labels).mean() for j in range(vc.shape[1])]))
    return Measured(
        metrics=metrics, items={"acc_shifted": shifted.astype(float).tolist()}, curves={"val_acc": trace.values}
    )


def _natra(pick: str) -> Callable[[Settings, int, dict[str, Any]], Measured]:
    def arm(s: Settings, seed: int, data: dict[str, Any]) -> Measured:
        gen = torch.Generator().manual_seed(seed + 7)
        m = fit_arm(s, seed, data, pick_rule("worst" if pick == "worst" else "random", gen), data["gen"]["cands"])
        if pick == "worst":
            m.metrics.update(data["gen"]["info"])
            m.curves.update(data["gen"]["curves"])
            x0 = data["splits"]["train"][0][:3]
            m.info["examples"] = np.round(
                np.concatenate([x0[:, None], data["gen"]["cands"][:3].numpy()], 1), 3
            ).tolist()
        return m

    return arm


def _photometric(worst: bool) -> Callable[[Settings, int, dict[str, Any]], Measured]:
    def arm(s: Settings, seed: int, data: dict[str, Any]) -> Measured:
        gen = torch.Generator().manual_seed(seed + 7)
        sample = lambda x, extra, g: photometric_jitter(x, g)  # noqa: E731
        return fit_arm(s, seed, data, sampled_rule(sample, gen, k=s.k_jitter if worst else 1), None)

    return arm


def _oracle(s: Settings, seed: int, data: dict[str, Any]) -> Measured:
    rng = np.random.default_rng(seed + 7)

    def sample(x: torch.Tensor, albedo: torch.Tensor | None, g: torch.Generator) -> torch.Tensor:
        assert albedo is not None
        return _t(relight(albedo.numpy(), sample_lighting(len(albedo), FULL, rng)))

    gen = torch.Generator().manual_seed(seed + 7)
    return fit_arm(s, seed, data, sampled_rule(sample, gen), _t(data["splits"]["train"][2]))


def _pgd(s: Settings, seed: int, data: dict[str, Any]) -> Measured:
    gen = torch.Generator().manual_seed(seed + 7)
    rule = lambda net, x, y, extra: pgd(net, x, y, eps=s.pgd_eps, steps=s.pgd_steps, generator=gen)  # noqa: E731
    return fit_arm(s, seed, data, rule, None)


def _erm(s: Settings, seed: int, data: dict[str, Any]) -> Measured:
    return fit_arm(s, seed, data, None, None)


@register_recipe
class NaTra(Recipe):
    slug = "natra"
    paper = Paper("Robust Training Using Natural Transformation", "2105.04070")
    claim = (
        "Adversarial augmentation along class-independent latent directions of a generative model (inverted "
        "images, unsupervised directions, the direction and magnitude that maximise the classifier's loss) makes a "
        "classifier more robust to natural shifts such as lighting than pixel-space augmentation, without hurting "
        "clean accuracy (mechanism-level; paper numbers unknown)."
    )
    Settings: TypeAlias = Settings
    ours = "natra"
    min_seeds = 5
    modes = {
        "smoke": Settings(
            seeds=1, n_train=64, n_val=32, n_pool=128, n_test=64, ae_epochs=1, epochs=2, n_direction_check=8
        ),
        "quick": Settings(seeds=3, n_train=1000, n_pool=2500, n_test=1000, ae_epochs=6, ae_warmup=60, epochs=8),
        "record": Settings(seeds=5),
    }
    gates = (
        Gate(
            "beats photometric jitter under lighting shift",
            "acc_shifted",
            "natra",
            "photometric",
            effect=0.02,
            headline=True,
            why="card: 2 points is about 2 SE of an accuracy on 2,000 shifted test images",
        ),
        Gate(
            "the adversarial choice matters",
            "acc_shifted",
            "natra",
            "random_latent",
            effect=0.01,
            why="card: the same 8 latent candidates picked at random isolate the worst-case search",
        ),
        Gate(
            "clean accuracy not hurt",
            "acc_clean",
            "natra",
            "erm",
            kind="non_inferiority",
            effect=0.01,
            why="card: the paper claims better generalisation, so at most 1 point below ERM on clean test",
        ),
        Gate(
            "beats worst-of-8 photometric jitter",
            "acc_shifted",
            "natra",
            "photometric_worst",
            effect=0.01,
            why="added to the card: pixel jitter with NaTra's own worst-of-8 selection, so the gain must come "
            "from the latent directions, not from the adversarial search alone",
        ),
    )
    preconditions = (
        Precondition(
            "the shift hurts ERM by >= 5 points",
            "erm",
            "shift_drop",
            ">=",
            0.05,
            why="card: without a drop there is no robustness to gain",
        ),
        Precondition(
            "the task is learned",
            "erm",
            "acc_clean",
            ">=",
            0.85,
            why="ERM must classify clean held-out digits well, else the budget is broken",
        ),
        Precondition(
            "the generator reconstructs the pool (>= 22 dB)",
            "natra",
            "ae_psnr",
            ">=",
            22.0,
            over="every",
            why="card: inverted held-out pool images must come back at >= 22 dB PSNR, for every seed's generator",
        ),
        Precondition(
            ">= 2 of 4 SeFa directions move the lighting",
            "natra",
            "valid_directions",
            ">=",
            2.0,
            why="card: |Spearman| >= 0.5 between the step along a direction and a lighting regressor's output; "
            "and (added after the record run) that output changes by >= min_direction_change pool SDs from -m to +m",
        ),
        Precondition(
            "the directions are class-independent",
            "erm",
            "label_kept",
            ">=",
            0.9,
            why="card: ERM's labels on clean val images stay unchanged for >= 90 % at the largest magnitude",
        ),
        converged_on_every_seed(
            "natra", "the AE's val loss plateaued (plateaued())", name="generator converged", metric="ae_converged"
        ),
        *(converged_on_every_seed(a, "the clean val accuracy curve plateaued (plateaued())") for a in ARMS),
    )
    changes = (
        "After the record run: the precondition 'the generator reconstructs the pool (>= 22 dB)' was declared on the "
        "seed mean and passed (25.5 dB) although seed 4's autoencoder had collapsed to a constant output (14.7 dB, "
        "inversion gain 0), which makes NaTra's candidates equal the clean image and the natra and random_latent arms "
        "identical to ERM on that seed. The card's 'the AE works' is a per-generator condition, so it is now judged "
        "on every seed. This makes the check stricter; the verdict was already inconclusive (two baseline arms not "
        "plateaued) and stays so. Gates, arms and settings are unchanged.",
        "After the same record run (inconclusive; looked at: seed 4's AE val-loss curve, flat at 51.585 from epoch 1, "
        "never at test accuracies): the generator now warms its lr up linearly over 200 steps (ae_warmup). Cause, "
        "found on seed 4 alone: the first full-size Adam steps (lr 2e-3, per-image summed MSE) drove the decoder to a "
        "constant output it never left (its fc ReLUs stay ~48 % active, so the dead part is downstream); seed 1 came "
        "close (57.4, 55.5 for two epochs). Two-epoch probes on seed 4 (val loss per epoch): as recorded 51.585, "
        "51.585; lr 1e-3 16.8, 14.1; 200-step warm-up 22.5, 13.9. The warm-up keeps the lr that worked on seeds 0-3.",
        "After the same record run: a SeFa direction now counts as moving the lighting only if the lighting output "
        "it moves monotonically (|Spearman| >= 0.5, the card) also changes by >= 0.1 pool SDs between -m and +m "
        "(min_direction_change, chosen before any run with it: a tenth of the lighting spread the generator was "
        "trained on). |Spearman| rewards a monotone change of any size, so seed 4's dead generator (edits equal to "
        "float noise) passed with 4 of 4 directions. The precondition's threshold (>= 2 of 4) is unchanged.",
        "After the same record run: photometric_worst and oracle did not plateau within 30 epochs on 1 and 2 seeds "
        "(clean val accuracy still rising ~1 point over the last 6 epochs at constant lr 1e-3). Every classifier arm "
        "now trains with a cosine lr decay to 0 over the same 30 epochs (schedule='cosine'), identical for all arms. "
        "Chosen over doubling the epochs because the record run must fit ~20 cpu-min on shared CPUs; a decayed lr makes "
        "the final epochs flat by construction, so 'converged' now means 'ended on a plateau of the schedule', "
        "not 'no further gain at constant lr' (the val-curve figure shows how much was still being gained).",
    )

    def data(self, settings: Settings, seed: int) -> dict[str, Any]:
        splits = make_splits(settings, seed)
        return {"splits": splits, "gen": train_generator(settings, seed, splits)}

    def arms(self, settings: Settings):
        return {
            "natra": _natra("worst"),
            "erm": _erm,
            "photometric": _photometric(False),
            "photometric_worst": _photometric(True),
            "random_latent": _natra("random"),
            "pgd": _pgd,
            "oracle": _oracle,
        }

    def checks(self, settings: Settings, cells: Mapping[str, Mapping[int, Measured]]) -> list[Check]:
        e, o = cells["erm"], cells["oracle"]
        rec = [
            (o[s].value("acc_shifted") - e[s].value("acc_shifted")) / max(e[s].value("shift_drop"), 1e-6)
            for s in e
            if s in o
        ]
        mean = float(np.mean(rec)) if rec else float("nan")
        return [
            Check(
                "positive control: the oracle recovers >= 50 % of the shift gap",
                bool(np.isfinite(mean) and mean >= 0.5),
                f"(oracle - erm) / (erm clean - erm shifted) on shifted test, mean over seeds {mean:.3g} "
                "(augmenting with the true lighting model must close half the gap, else the shift is not learnable)",
            )
        ]

    def notes(self, settings: Settings, cells: Mapping[str, Mapping[int, Measured]]) -> list[str]:
        rho = np.asarray([m.curves["direction_rho"] for m in cells["natra"].values()])
        size = np.asarray(
            [m.curves.get("direction_change_sd", [np.nan] * rho.shape[1]) for m in cells["natra"].values()]
        )
        kept = lambda a: float(np.mean([m.value("label_kept") for m in cells[a].values()]))  # noqa: E731
        drop = float(np.mean([m.value("shift_drop") for m in cells["erm"].values()]))
        dead = {s: m.value("ae_psnr") for s, m in cells["natra"].items() if m.value("ae_psnr") < 22.0}
        out = (
            [
                f"seed(s) {sorted(dead)}: the generator failed (PSNR {[round(v, 1) for v in dead.values()]} dB); where "
                "its decoder is constant the latent edits are zero, so natra and random_latent trained exactly as "
                "erm on that seed (its plateaued() AE curve is flat, not converged)"
            ]
            if dead
            else []
        )
        return out + [
            f"direction |Spearman| per SeFa direction, mean over seeds {np.round(rho.mean(0), 3).tolist()}, and the "
            f"largest change of a lighting output from -m to +m in pool SDs {np.round(size.mean(0), 3).tolist()}: any "
            "smooth decoder direction moves a linear lighting regressor monotonically, so the size requirement carries "
            "most of this check; the candidate figure shows what the directions change",
            f"the class-independence check reads ERM's labels under the largest edits (kept {kept('erm'):.3f}); ERM is "
            f"itself fragile to lighting (its shifted-test drop {drop:.3f}), so a failure there can mean the edits "
            f"change the class or that ERM's labels flip under any strong relighting; natra's own classifier keeps "
            f"{kept('natra'):.3f}, photometric's {kept('photometric'):.3f}, the oracle's {kept('oracle'):.3f} (the oracle "
            "is trained on true relighting, so what it does not keep is largely the edits changing more than the "
            "lighting). A seed whose generator is dead keeps 1.0 trivially (the edits are zero)",
            "the shifted test mixes global darkening (ambient 0.3-0.6, gamma 1.1-1.5), which the photometric arms span "
            "by construction, with spatial ramps and shadows, which only the latent and oracle arms can produce",
        ]

    def describe(self, settings: Settings) -> dict[str, Any]:
        r = lambda x: {k: getattr(x, k) for k in ("ambient", "strength", "shadow", "gamma")}  # noqa: E731
        return {
            "data": (
                f"MNIST t10k digits on grey photo-patch textures, 32x32; {settings.n_train} labelled train + "
                f"{settings.n_val} val (narrow lighting), {settings.n_pool} unlabelled pool (full range), "
                f"{settings.n_test} test digits rendered under narrow (clean) and shifted lighting"
            ),
            "lighting": {"narrow": r(NARROW), "pool": r(FULL), "shifted": r(SHIFTED)},
            "generator": f"conv AE, latent {settings.latent}, channels {settings.ae_channels}, {settings.ae_epochs} epochs",
            "classifier": f"ConvEncoder {settings.cnn_channels} -> 10, Adam {settings.lr}, {settings.epochs} epochs",
            "deviations": [
                "no StyleGAN, faces or paper details: a conv AE on an unlabelled pool stands in for the pretrained "
                "generator (card)",
                "the edit is applied as x + G(z + delta) - G(z) (residual) so digit detail the AE cannot reproduce is "
                "kept; this stands in for the paper's 'latent codes expansion'",
                "magnitude bound: 2 standard deviations of the pool codes along each direction (card: 'bounded')",
                "pool 5,500 digits (card 6,000): 500 went to a clean val set for the convergence curves",
                "added arm photometric_worst and its gate (worst-of-8 jitter); PGD is PGD-2 and reported only",
                "shadow depth and gamma ranges are ours (the card fixed only ambient and ramp strength)",
            ],
        }

    def figures(self, settings: Settings, cells, out_dir: Path) -> list[str]:
        plt = pyplot()
        names = []
        fig, ax = plt.subplots(figsize=(7, 3.4))
        for i, a in enumerate(ARMS):
            for key, color, dx in (("acc_clean", "tab:gray", -0.12), ("acc_shifted", "tab:red", 0.12)):
                v = [m.value(key) for m in cells[a].values()]
                ax.scatter([i + dx] * len(v), v, color=color, s=14, label=key if i == 0 else None)
        ax.set_xticks(range(len(ARMS)), ARMS, fontsize=7)
        ax.set_ylabel("test accuracy")
        ax.set_title("clean vs shifted lighting, one dot per seed", fontsize=8)
        ax.legend(fontsize=7)
        names.append(save_figure(fig, out_dir / "accuracy_by_arm.png").name)
        ex = next(iter(cells["natra"].values())).info.get("examples")
        if ex:
            fig, ax = plt.subplots(figsize=(6, 2.4))
            arr = np.asarray(ex, dtype=np.float32)  # (3, 9, 1, 32, 32): original + 8 candidates
            ax.imshow(image_grid(arr.reshape(-1, *arr.shape[2:]), ncol=arr.shape[1]), cmap="gray", vmin=0, vmax=1)
            ax.set_axis_off()
            ax.set_title("train image, then SeFa directions 1-4 at +m, -m (residual edits)", fontsize=8)
            names.append(save_figure(fig, out_dir / "natra_candidates.png").name)
        fig, ax = plt.subplots(figsize=(6, 3.4))
        for i, a in enumerate(ARMS):
            for j, m in enumerate(cells[a].values()):
                ax.plot(m.curves["val_acc"], color=f"C{i}", alpha=0.6, label=a if j == 0 else None)
        ax.set_xlabel("epoch"), ax.set_ylabel("clean val accuracy")
        ax.legend(fontsize=6)
        names.append(save_figure(fig, out_dir / "val_curves.png").name)
        return names
