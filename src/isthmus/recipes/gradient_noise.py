"""Seed 10 — annealed gradient noise lets a 20-layer ReLU MLP with a poor init train.

Neelakantan et al. 2015, arXiv 1511.06807. Gradient ← clip(gradient) + N(0, η / (1 + t)^0.55)
(the isthmus Trainer's ``grad_noise_eta``, applied after clipping). Model: 20 hidden ReLU layers
of 50 units, every weight N(0, 0.1²), biases 0 ("simple init"), plain SGD. The two arms share
seeds, so each pair has the same init and batch order and differs only by the noise.

Data: MNIST t10k (8k train / 2k test, flattened) from the local data folder, else scikit-learn
digits (the result's ``config.data`` says which).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from isthmus.models import Classifier
from isthmus.nn import MLP, MLPConfig
from isthmus.recipes.base import Paper, Recipe, Result, summarize
from isthmus.recipes.registry import register_recipe
from isthmus.train import NonFiniteLossError, Trainer, TrainerConfig
from isthmus.train.callbacks import Callback
from isthmus.viz import pyplot

TRAINED_THRESHOLD = 0.5  # final test accuracy (5x chance) that counts a run as "trained"
# Quick mode: lr 0.1 and clip 10 were chosen before any run from the paper's grid (lr {0.1, 0.01},
# clip {10, 100}, eta {0.01, 0.3, 1.0}): clip 10 is the paper's setting with the clearest reported
# effect, lr 0.1 because quick runs are short. The first quick run used eta 0.01 alone; it was
# widened to all three paper etas (every one reported) rather than picking one after the fact.
MODE_SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": dict(n_train=512, n_test=256, epochs=2, batch_size=64, grid=[(0.1, 10.0, 0.01)], good_init_seeds=1),
    "quick": dict(n_train=8000, n_test=2000, epochs=10, batch_size=64,
                  grid=[(0.1, 10.0, 0.01), (0.1, 10.0, 0.3), (0.1, 10.0, 1.0)], good_init_seeds=2),
    "full": dict(n_train=8000, n_test=2000, epochs=50, batch_size=64,
                 grid=list(itertools.product([0.1, 0.01], [10.0, 100.0], [0.01, 0.3, 1.0])), good_init_seeds=5),
}
MODEL = dict(hidden=[50] * 20, activation="relu", init="normal", init_std=0.1)


class _TestAccuracy(Callback):
    """Test-set accuracy after every epoch (the paper reports best and final test accuracy)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y, self.acc = x, y, []

    def on_epoch_end(self, trainer, logs: dict[str, Any]) -> None:
        pred = trainer.model.predict(self.x)
        self.acc.append(float((pred == self.y).float().mean()))


def load_data(n_train: int, n_test: int) -> tuple[tuple[torch.Tensor, ...], str]:
    """``((x_train, y_train, x_test, y_test), description)``: MNIST t10k if present, else digits."""
    from isthmus.data import DataNotFoundError, load_digits, load_mnist

    try:
        table, name = load_mnist(), "MNIST t10k (local copy)"
    except DataNotFoundError:
        table, name = load_digits(), "scikit-learn digits (MNIST not found)"
        n_train, n_test = min(n_train, 1397), min(n_test, 400)
    X, y = table.X.reshape(len(table.X), -1), table.y
    perm = np.random.default_rng(0).permutation(len(X))  # one fixed split for every seed and arm
    tr, te = perm[:n_train], perm[n_train : n_train + n_test]
    t = lambda a, dt: torch.as_tensor(np.ascontiguousarray(a), dtype=dt)  # noqa: E731
    data = (t(X[tr], torch.float32), t(y[tr], torch.long), t(X[te], torch.float32), t(y[te], torch.long))
    return data, f"{name}: {len(tr)} train / {len(te)} test, {X.shape[1]} features"


def train_once(data, seed: int, lr: float, clip: float, eta: float, cfg: dict, init: str = "normal") -> dict:
    """One run; returns per-epoch test accuracy and the summary numbers of the paper's table."""
    xtr, ytr, xte, yte = data
    torch.manual_seed(seed)
    net = MLP(MLPConfig(in_dim=xtr.shape[1], out_dim=10, **{**MODEL, "init": init}))
    model = Classifier(net)
    tc = TrainerConfig(epochs=cfg["epochs"], batch_size=cfg["batch_size"], optimizer="sgd", lr=lr,
                       grad_clip=clip, grad_noise_eta=eta, grad_noise_gamma=0.55, seed=seed, progress=False)
    cb = _TestAccuracy(xte, yte)
    trainer = Trainer(model, tc, callbacks=[cb])
    try:
        trainer.fit((xtr, ytr))
        diverged = False
    except NonFiniteLossError:  # a diverged run is a failed run, not a crash of the recipe
        diverged = True
    acc = cb.acc + [float((model.predict(xte) == yte).float().mean())] * (cfg["epochs"] - len(cb.acc))
    losses = [float(h.get("train_loss", float("nan"))) for h in trainer.history]
    final_loss = float("nan") if diverged or not losses else losses[-1]
    return {"curve": acc, "best_acc": max(acc), "final_acc": acc[-1], "final_train_loss": final_loss,
            "trained": float(acc[-1] > TRAINED_THRESHOLD), "diverged": diverged}


def _summary(runs: list[dict]) -> dict[str, list[float]]:
    keys = ("best_acc", "final_acc", "final_train_loss", "trained")
    return {k: [r[k] for r in runs] for k in keys}


@register_recipe
class GradientNoise(Recipe):
    slug = "gradient-noise"
    paper = Paper("Adding Gradient Noise Improves Learning for Very Deep Networks", "1511.06807")
    claim = ("Annealed Gaussian gradient noise (sigma^2 = eta/(1+t)^0.55) lets a 20-layer, 50-unit ReLU MLP with poor "
             "N(0, 0.1^2) init, trained by SGD with gradient clipping, train where it otherwise fails: higher best and "
             "average test accuracy over seeds and more runs that train.")
    verdict_rule = (
        "Per setting, over the same seeds: (a) mean best test accuracy with noise exceeds the no-noise mean by more "
        "than max(0.02, 2 * sqrt(std_noise^2/n + std_base^2/n)); (b) at least 2 more runs (out of n >= 5) end with "
        f"test accuracy > {TRAINED_THRESHOLD} with noise than without. reproduced = (a) and (b); partial = one of "
        "them; not reproduced = neither. With several settings (full mode) the verdict is the one reached by the "
        "majority of settings, ties going to the weaker verdict."
    )
    default_seeds = {"smoke": 1, "quick": 5, "full": 10}

    def run(self, mode: str, seeds: Sequence[int], out_dir: Path) -> Result:
        cfg = MODE_SETTINGS[mode]
        data, data_desc = load_data(cfg["n_train"], cfg["n_test"])
        metrics, baselines, verdicts, reasons, curves = {}, {}, [], [], {}
        base_runs: dict[tuple[float, float], list[dict]] = {}  # the no-noise arm depends on (lr, clip) only
        for lr, clip, eta in cfg["grid"]:
            tag = "" if len(cfg["grid"]) == 1 else f"lr{lr:g}_clip{clip:g}_eta{eta:g}/"
            noise = [train_once(data, s, lr, clip, eta, cfg) for s in seeds]
            if (lr, clip) not in base_runs:
                base_runs[(lr, clip)] = [train_once(data, s, lr, clip, 0.0, cfg) for s in seeds]
            base = base_runs[(lr, clip)]
            curves[(lr, clip, eta)] = (noise, base)
            for k, v in _summary(noise).items():
                metrics[tag + k] = summarize(v)
            baselines.setdefault("no_noise", {}).update({tag + k: summarize(v) for k, v in _summary(base).items()})
            v, why = self._verdict(_summary(noise), _summary(base), len(seeds))
            verdicts.append(v)
            reasons.append(f"{tag or ''}{why}")
        lr0, clip0, _ = cfg["grid"][0]
        good = [train_once(data, s, lr0, clip0, 0.0, cfg, init="kaiming") for s in seeds[: cfg["good_init_seeds"]]]
        good_sum = {k: summarize(v) for k, v in _summary(good).items()}
        tags = [f"lr{lr:g}_clip{clip:g}_eta{eta:g}/" for lr, clip, eta in cfg["grid"] if (lr, clip) == (lr0, clip0)]
        # keyed like the noise metrics of every setting sharing its lr and clip, so tables line up
        baselines["good_init_no_noise"] = {(t if len(cfg["grid"]) > 1 else "") + k: v
                                           for t in tags for k, v in good_sum.items()}
        verdict = self._combine(verdicts)
        figure = self._plot(curves, good, out_dir)
        config = {"mode": mode, "data": data_desc, "model": {**MODEL, "layers": "20 hidden + output"},
                  "optimizer": "sgd (no momentum)", "grad_noise_gamma": 0.55,
                  "noise_applied": "after global-norm clipping, before the SGD step",
                  "grid_lr_clip_eta": [list(g) for g in cfg["grid"]], "epochs": cfg["epochs"],
                  "batch_size": cfg["batch_size"], "trained_threshold": TRAINED_THRESHOLD,
                  "good_init_reference": f"kaiming-normal init, no noise, lr {lr0}, clip {clip0}, "
                                         f"seeds {list(seeds[: cfg['good_init_seeds']])}"}
        notes = [f"per-seed values are in each metric's `values` (seeds {list(seeds)})"]
        if mode == "quick":
            notes.append("quick first ran eta 0.01 only (chosen a priori): 0/5 vs 0/5 runs trained, best acc 0.115 in "
                         "both arms; the grid was then widened to all three of the paper's etas, all reported here")
            notes.append("exploratory, not part of this verdict: 40-epoch runs (lr 0.1, clip 10, 2 seeds) - eta 0.01 "
                         "trained seed 0 to 0.875 test acc (take-off near epoch 25), not seed 1; eta 0.3 0/2; no noise "
                         "0/2. Quick mode's 10 epochs are likely too short for the effect; full mode runs 50 epochs.")
        n_div = sum(r.get("diverged", False) for runs in curves.values() for arm in runs for r in arm)
        if n_div:
            notes.append(f"{n_div} run(s) diverged (non-finite loss); counted as not trained, final_train_loss = NaN")
        return Result(recipe=self.slug, paper=self.paper, claim=self.claim, mode=mode, seeds=list(seeds),
                      metrics=metrics, baselines=baselines, verdict=verdict, verdict_reason="; ".join(reasons),
                      config=config, figures=[figure], notes=notes)

    @staticmethod
    def _verdict(noise: dict, base: dict, n: int) -> tuple[str, str]:
        bn, bb = np.asarray(noise["best_acc"]), np.asarray(base["best_acc"])
        margin = max(0.02, 2.0 * float(np.sqrt(bn.var() / n + bb.var() / n)))
        a = bn.mean() - bb.mean() > margin
        tn, tb = int(sum(noise["trained"])), int(sum(base["trained"]))
        b = n >= 5 and tn - tb >= 2
        verdict = "reproduced" if a and b else "partial" if a or b else "not reproduced"
        why = (f"mean best acc noise {bn.mean():.3f} vs no noise {bb.mean():.3f} (margin {margin:.3f}: "
               f"{'passed' if a else 'failed'}); trained runs {tn}/{n} vs {tb}/{n} ({'passed' if b else 'failed'})")
        return verdict, why

    @staticmethod
    def _combine(verdicts: list[str]) -> str:
        order = ["not reproduced", "partial", "reproduced"]
        ranks = sorted(order.index(v) for v in verdicts)
        return order[ranks[(len(ranks) - 1) // 2]]  # the median, rounding toward the weaker verdict

    @staticmethod
    def _plot(curves: dict, good: list[dict], out_dir: Path) -> str:
        plt = pyplot()

        n = len(curves)
        fig, axes = plt.subplots(1, n, figsize=(5 * n, 3.6), squeeze=False)
        for ax, ((lr, clip, eta), (noise, base)) in zip(axes[0], curves.items()):
            for i, r in enumerate(noise):
                ax.plot(range(1, len(r["curve"]) + 1), r["curve"], color="tab:red", alpha=0.7,
                        label="with noise" if i == 0 else None)
            for i, r in enumerate(base):
                ax.plot(range(1, len(r["curve"]) + 1), r["curve"], color="tab:blue", alpha=0.7, ls="--",
                        label="no noise" if i == 0 else None)
            for i, r in enumerate(good):
                ax.plot(range(1, len(r["curve"]) + 1), r["curve"], color="gray", alpha=0.6, ls=":",
                        label="good init, no noise" if i == 0 else None)
            ax.axhline(TRAINED_THRESHOLD, color="k", lw=0.5)
            ax.set_ylim(0, 1), ax.set_xlabel("epoch"), ax.set_ylabel("test accuracy")
            ax.set_title(f"lr {lr:g}, clip {clip:g}, eta {eta:g} (one line per seed)", fontsize=9)
            ax.legend(fontsize=7)
        fig.tight_layout()
        name = "accuracy_curves.png"
        fig.savefig(out_dir / name, dpi=90)
        plt.close(fig)
        return name
