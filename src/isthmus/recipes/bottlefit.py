"""Seed 4 — BottleFit: a small encoder head with a C-channel bottleneck replaces a classifier's early stages;
trained in two stages (generalised head-network distillation, then KD fine-tuning of decoder + tail with
the encoder frozen), it keeps the teacher's accuracy at high compression where one-stage training does not.

Matsubara et al., arXiv 2201.02693 (`yoshitomo-matsubara/bottlefit-split_computing`). Referee card
``cards-I-J.md`` §4 followed: teacher = ResNet-8 (8-16-32) trained once on MNIST-M (8,000 train, 10 % val,
2,000 test; digits from MNIST t10k, backgrounds drawn from one pool of photos); the split is at the teacher's
stage-2 output (16 × 7 × 7). Student = encoder (3→8 s2 → 8→16 s2 → 16→C, the raw conv output is the
transmitted tensor, errata) → 8-bit per-sample link → decoder (BN, ReLU, C→32→16) → the teacher's stage 3
+ classifier, initialised from the teacher. Stage 1 (GHND): Σ MSE (sum reduction, batch-mean) at
[decoder ↔ teacher stage 2] and [stage 3 ↔ teacher stage 3], tail frozen, Adam 1e-3, ×0.1 at half. Stage 2:
encoder frozen, KD (T = 1, α = 0.5) on decoder + tail, SGD 1e-3, momentum 0.9, wd 5e-4, ×0.1 at half.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from typing import Any, Callable, TypeAlias

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from isthmus.models.distill import distillation_loss
from isthmus.nn.resnet import ResNet
from isthmus.recipes.base import Paper, Recipe, RecipeSettings
from isthmus.recipes.gates import Gate, Measured, Precondition
from isthmus.recipes.registry import register_recipe
from isthmus.tasks.compress import count_flops, fake_quantize_uint8, latency_ratio
from isthmus.tasks.multistage import StageConfig, improved_less_than, train_stage

SPLIT = "stage2"  # teacher features at the split: 16 × 7 × 7


@dataclass
class Settings(RecipeSettings):
    n_train: int = 8000  # 10 % of it is validation
    n_test: int = 2000
    teacher_epochs: int = 12
    stage_epochs: int = 3  # BottleFit: 3 + 3; one-stage arms: 6 (equal epochs)
    c_small: int = 2  # 7·7·2 = 98 B vs 2,352 input values: 95.8 % compression
    c_large: int = 12  # 75 %
    batch_size: int = 64
    lowres: int = 10  # the equal-byte arm's grey input side (100 B)
    latency_repeats: int = 41
    disjoint_photos: bool = False  # True: test backgrounds from photos never seen in training (a domain shift)


class Student(nn.Module):
    """encoder → (8-bit link at eval) → decoder → tail; ``quantize`` switches the link on."""

    def __init__(self, c: int, tail: nn.Module, stage3: nn.Module) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 8, 3, 2, 1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, 2, 1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, c, 3, 1, 1),
        )  # raw conv output = the transmitted tensor (errata: BN/ReLU are decoder's)
        self.decoder = _decoder(c)
        self.tail, self.stage3 = tail, stage3  # stage3 is the first module of tail (for the GHND loss)
        self.quantize = True

    def link(self, z: torch.Tensor) -> torch.Tensor:
        return fake_quantize_uint8(z) if self.quantize and not self.training else z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.decoder(self.link(self.encoder(x))))


def _decoder(c: int) -> nn.Sequential:
    return nn.Sequential(
        nn.BatchNorm2d(c),
        nn.ReLU(),
        nn.Conv2d(c, 32, 3, 1, 1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Conv2d(32, 16, 3, 1, 1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
    )


class AESplit(nn.Module):
    """The teacher's head, frozen, then a conv AE at the split reconstructing its features, then its tail."""

    def __init__(self, c: int, teacher: ResNet) -> None:
        super().__init__()
        self.head, self.tail = teacher.head(SPLIT), teacher.tail(SPLIT)
        self.encoder, self.decoder = nn.Conv2d(16, c, 3, 1, 1), _decoder(c)
        self.quantize = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encoder(self.head(x))
        z = fake_quantize_uint8(z) if self.quantize and not self.training else z
        return self.tail(self.decoder(z))


def _student(c: int, teacher: ResNet, seed: int) -> Student:
    torch.manual_seed(seed)
    tail = copy.deepcopy(teacher.tail(SPLIT))
    return Student(c, tail, tail[0])


@torch.no_grad()
def _acc(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return float(torch.cat([model(x[i : i + 1000]).argmax(1) for i in range(0, len(x), 1000)]).eq(y).float().mean())


def _one_stage(s: Settings) -> StageConfig:
    return StageConfig(epochs=2 * s.stage_epochs, lr=1e-3, batch_size=s.batch_size)


def _ghnd_loss(st: Student) -> Callable[..., torch.Tensor]:
    def loss(x: torch.Tensor, f2: torch.Tensor, f3: torch.Tensor, *_: torch.Tensor) -> torch.Tensor:
        h = st.decoder(st.encoder(x))
        # repo: MSELoss(reduction="sum") per layer, summed; divided by the batch so lr means the same per batch size
        return (F.mse_loss(h, f2, reduction="sum") + F.mse_loss(st.stage3(h), f3, reduction="sum")) / len(x)

    return loss


def _kd_loss(model: nn.Module, alpha: float = 0.5, temperature: float = 1.0) -> Callable[..., torch.Tensor]:
    def loss(
        x: torch.Tensor, f2: torch.Tensor, f3: torch.Tensor, t_logits: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        logits = model(x)
        return alpha * distillation_loss(logits, t_logits, temperature) + (1 - alpha) * F.cross_entropy(logits, y)

    return loss


def _ce_loss(
    model: nn.Module, transform: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> Callable[..., torch.Tensor]:
    def loss(x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(transform(x) if transform else x), rest[-1])

    return loss


def _result(
    model: nn.Module, d: dict, curve: list[float], bytes_: float, head: nn.Module | None, extra: dict | None = None
) -> Measured:
    metrics = {
        "acc": _acc(model, d["xte"], d["yte"]),
        "converged": float(improved_less_than(curve)),
        "bytes_per_sample": bytes_,
        "teacher_gap": d["teacher_acc"] - _acc(model, d["xte"], d["yte"]),
    }
    if head is not None:
        metrics["head_flops"] = count_flops(head, d["xte"][:1])
    if hasattr(model, "quantize"):
        model.quantize = False  # type: ignore[assignment]  # a plain bool attribute, not a Tensor/Module
        metrics["quant_drop"] = abs(_acc(model, d["xte"], d["yte"]) - metrics["acc"])
        model.quantize = True  # type: ignore[assignment]
    return Measured(metrics={**metrics, **(extra or {})}, curves={"val_acc": curve})


def bottlefit_arm(c_attr: str) -> Callable[[Settings, int, dict], Measured]:
    def arm(s: Settings, seed: int, d: dict) -> Measured:
        c = getattr(s, c_attr)
        st = _student(c, d["teacher"], seed)
        ev = lambda: _acc(st, d["xva"], d["yva"])  # noqa: E731
        curve = train_stage(
            [st.encoder, st.decoder],
            _ghnd_loss(st),
            d["train"],
            StageConfig(epochs=s.stage_epochs, lr=1e-3, batch_size=s.batch_size),
            seed,
            frozen=[st.tail],
            evaluate=ev,
        )
        curve += train_stage(
            [st.decoder, st.tail],
            _kd_loss(st),
            d["train"],
            StageConfig(
                epochs=s.stage_epochs,
                optimizer="sgd",
                lr=1e-3,
                momentum=0.9,
                weight_decay=5e-4,
                batch_size=s.batch_size,
            ),
            seed + 1,
            frozen=[st.encoder],
            evaluate=ev,
        )
        x1 = d["xte"][:1]
        ratio = latency_ratio(
            lambda: _no_grad(st.encoder, x1), lambda: _no_grad(d["ae_head"], x1), repeats=s.latency_repeats
        )
        return _result(st, d, curve, 7 * 7 * c + 8, st.encoder, {"log_head_latency_vs_ae_split": math.log(ratio)})

    return arm


@torch.no_grad()
def _no_grad(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return m(x)


def _one_stage_student(kind: str) -> Callable[[Settings, int, dict], Measured]:
    def arm(s: Settings, seed: int, d: dict) -> Measured:
        st = _student(s.c_small, d["teacher"], seed)
        train: list[nn.Module]
        frozen: list[nn.Module]
        if kind == "hnd":  # BottleFit's stage 1 alone, for all the epochs
            loss, train, frozen = _ghnd_loss(st), [st.encoder, st.decoder], [st.tail]
        else:
            loss, train, frozen = (_ce_loss(st) if kind == "naive" else _kd_loss(st)), [st], []
        curve = train_stage(
            train, loss, d["train"], _one_stage(s), seed, frozen=frozen, evaluate=lambda: _acc(st, d["xva"], d["yva"])
        )
        return _result(st, d, curve, 7 * 7 * s.c_small + 8, st.encoder)

    return arm


def ae_split(s: Settings, seed: int, d: dict) -> Measured:
    torch.manual_seed(seed)
    m = AESplit(s.c_small, copy.deepcopy(d["teacher"]))

    def loss(x: torch.Tensor, f2: torch.Tensor, *_: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(m.decoder(m.encoder(f2)), f2, reduction="sum") / len(x)

    curve = train_stage(
        [m.encoder, m.decoder],
        loss,
        d["train"],
        _one_stage(s),
        seed,
        frozen=[m.head, m.tail],
        evaluate=lambda: _acc(m, d["xva"], d["yva"]),
    )
    return _result(m, d, curve, 7 * 7 * s.c_small + 8, nn.Sequential(m.head, m.encoder))


def lowres(x: torch.Tensor, side: int) -> torch.Tensor:
    """The equal-byte input: grey, area-downsampled to ``side²`` 8-bit pixels, upsampled back on the server."""
    g = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    small = torch.round(F.adaptive_avg_pool2d(g, side) * 255) / 255
    return F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False).expand(-1, 3, -1, -1)


def equal_byte(s: Settings, seed: int, d: dict) -> Measured:
    torch.manual_seed(seed)
    t = copy.deepcopy(d["teacher"])
    model = nn.Sequential(_Lowres(s.lowres), t)
    curve = train_stage(
        [t], _ce_loss(model), d["train"], _one_stage(s), seed, evaluate=lambda: _acc(model, d["xva"], d["yva"])
    )
    return _result(model, d, curve, float(s.lowres**2), None)


class _Lowres(nn.Module):
    def __init__(self, side: int) -> None:
        super().__init__()
        self.side = side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return lowres(x, self.side)


def teacher(s: Settings, seed: int, d: dict) -> dict[str, float]:
    return {
        "acc": d["teacher_acc"],
        "bytes_per_sample": 3 * 28 * 28.0,
        "head_flops": float(count_flops(d["teacher"].head(SPLIT), d["xte"][:1])),
    }


_CACHE: dict[str, dict] = {}


def _shared(s: Settings) -> dict:
    """MNIST-M and the teacher, built once per settings (seed-independent: the card's 'trained once')."""
    key = json.dumps({k: v for k, v in s.to_dict().items() if k != "seeds"}, sort_keys=True)
    if key in _CACHE:
        return _CACHE[key]
    from isthmus.data.mnist_m import mnist_m

    xtr, ytr, xte, yte = (
        torch.as_tensor(a) for a in mnist_m(s.n_train, s.n_test, seed=0, disjoint_photos=s.disjoint_photos)
    )
    n_val = s.n_train // 10
    xva, yva, xtr, ytr = xtr[:n_val], ytr[:n_val], xtr[n_val:], ytr[n_val:]
    torch.manual_seed(0)
    t = ResNet(widths=(8, 16, 32))
    t_curve = train_stage(
        [t],
        _ce_loss(t),
        (xtr, ytr),
        StageConfig(epochs=s.teacher_epochs, batch_size=s.batch_size, evals_per_epoch=1),
        0,
        evaluate=lambda: _acc(t, xva, yva),
    )
    with torch.no_grad():
        feats = [t.features(xtr[i : i + 1000]) for i in range(0, len(xtr), 1000)]
    f2 = torch.cat([f[SPLIT] for f in feats])
    f3 = torch.cat([f["stage3"] for f in feats])
    logits = torch.cat([f["logits"] for f in feats])
    ae_head = nn.Sequential(t.head(SPLIT), nn.Conv2d(16, s.c_small, 3, 1, 1)).eval()
    _CACHE.clear()
    _CACHE[key] = {
        "teacher": t,
        "teacher_acc": _acc(t, xte, yte),
        "teacher_curve": t_curve,
        "train": (xtr, f2, f3, logits, ytr),
        "xva": xva,
        "yva": yva,
        "xte": xte,
        "yte": yte,
        "ae_head": ae_head,
    }
    return _CACHE[key]


@register_recipe
class Bottlefit(Recipe):
    slug = "bottlefit"
    paper = Paper(
        "BottleFit: Learning Compressed Representations in Deep Neural Networks for Effective and Efficient "
        "Split Computing",
        "2201.02693",
    )
    claim = (
        "A small encoder head with a 2-channel bottleneck (95.8 % compression), trained in BottleFit's two stages, "
        "beats the same student trained end-to-end with CE, with KD, or with head distillation alone by >= 1 pt; "
        "at 12 channels (75 %) it stays within 1 pt of the teacher."
    )
    Settings: TypeAlias = Settings
    modes = {
        "smoke": Settings(seeds=1, n_train=600, n_test=200, teacher_epochs=1, stage_epochs=1, latency_repeats=3),
        "quick": Settings(seeds=3, n_train=4000, teacher_epochs=6, stage_epochs=2, latency_repeats=11),
        "record": Settings(seeds=4, teacher_epochs=20, stage_epochs=6),
    }
    ours = "bottlefit"
    min_seeds = 4
    changes = (
        "after the quick run (before any record run): MNIST-M test backgrounds came from photos disjoint from the "
        "training photos, a domain shift (teacher validation 0.80 vs test 0.74) that the BottleFit claim is not "
        "about and that pushed the teacher below the card's 85 % 'teacher learns' floor; train and test now draw "
        "different patches from one pool of all photos (Ganin et al. use one photo collection)",
        "same quick run: the teacher was still improving at its last epoch (val 0.785 → 0.80), so the record "
        "teacher trains 20 epochs instead of 12 (it is trained once, before any student)",
        "session 5, after the record result (inconclusive: 'equal_byte converged' failed on seeds 0 and 1, "
        "equal_byte.converged [0 0 1 1]): the equal-byte teacher, fine-tuned on 10x10 grey inputs, was still "
        "gaining validation accuracy after its LR drop (seed 0: 0.7788 -> 0.79, seed 1: 0.78 -> 0.7925 over the last "
        "20 % of its 6 epochs, above the 1 % relative PLATEAU bound). Epochs chosen on that arm's PLATEAU margin "
        "alone, seeds 0 and 1 (validation split): at 6+6 (12 epochs for one-stage arms) the last-20 % rise is "
        "-0.005 / +0.004 (bound 0.008); at 5+5 +0.006 / +0.014 (seed 1 fails). For equal effort every student "
        "trains longer too: record stage_epochs 3 -> 6, i.e. BottleFit 6 + 6 and naive, KD, HND, AE-split and "
        "equal-byte 12 epochs "
        "(the card's 3 + 3 / 6; the LR still drops x0.1 at half). The teacher (20 epochs, seed 0) is unchanged. "
        "The probe also printed the arm's test accuracy, not used.",
    )
    gates = (
        Gate(
            "beats naive CE at C=2",
            "acc",
            "bottlefit",
            "naive",
            effect=0.01,
            headline=True,
            why="H (all three of the C=2 gates): 1 pt ≈ 2× paired noise at 2,000 test images",
        ),
        Gate("beats KD-only at C=2", "acc", "bottlefit", "kd", effect=0.01, headline=True, why="H, as above"),
        Gate(
            "beats HND (stage 1 only) at C=2",
            "acc",
            "bottlefit",
            "hnd",
            effect=0.01,
            headline=True,
            why="H, as above: is the second stage worth it?",
        ),
        Gate(
            "within 1 pt of the teacher at C=12",
            "acc",
            "bottlefit_c12",
            "teacher",
            kind="non_inferiority",
            effect=0.01,
            why="the paper's 0.6 pt plus slack for a tiny tail",
        ),
        Gate(
            "no worse than AE-split at C=2",
            "acc",
            "bottlefit",
            "ae_split",
            kind="non_inferiority",
            effect=0.01,
            why="with a far smaller head (head FLOPs reported)",
        ),
        Gate(
            "beats sending an equal-byte image",
            "acc",
            "bottlefit",
            "equal_byte",
            effect=0.01,
            why="referee: why split the network rather than send a 10×10 grey image (100 B)?",
        ),
    )
    preconditions = (
        Precondition("teacher learns", "teacher", "acc", ">=", 0.85),
        Precondition("teacher not at ceiling", "teacher", "acc", "<=", 0.985),
        Precondition(
            "compression matters",
            "naive",
            "teacher_gap",
            ">=",
            0.02,
            why="teacher − naive(C=2) ≥ 2 pts, else training strategies cannot differ",
        ),
        Precondition("8-bit link is harmless", "bottlefit", "quant_drop", "<=", 0.003),
        *(
            Precondition(
                f"{a} converged",
                a,
                "converged",
                ">=",
                1.0,
                over="every",
                why="validation accuracy rose < 1 % (relative) over the last 20 % of training",
            )
            for a in ("bottlefit", "bottlefit_c12", "naive", "kd", "hnd", "ae_split", "equal_byte")
        ),
    )

    def data(self, s: Settings, seed: int) -> dict[str, Any]:
        return _shared(s)

    def arms(self, s: Settings):
        return {
            "bottlefit": bottlefit_arm("c_small"),
            "bottlefit_c12": bottlefit_arm("c_large"),
            "teacher": teacher,
            "naive": _one_stage_student("naive"),
            "kd": _one_stage_student("kd"),
            "hnd": _one_stage_student("hnd"),
            "ae_split": ae_split,
            "equal_byte": equal_byte,
        }

    def notes(self, s: Settings, cells) -> list[str]:
        d = _CACHE.get(next(iter(_CACHE), ""), None)
        if d is None:
            return []
        return [f"teacher validation accuracy per epoch: {np.round(d['teacher_curve'], 4).tolist()}"]

    def figures(self, s: Settings, cells, out_dir) -> list[str]:
        from isthmus.viz import pyplot, save_figure

        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6, 3.8))
        for arm, ms in cells.items():
            acc = [m.value("acc") for m in ms.values()]
            b = [m.value("bytes_per_sample") for m in ms.values()]
            ax.scatter(b, acc, s=14, alpha=0.7, label=arm)
        ax.set_xscale("log"), ax.set_xlabel("bytes sent per image"), ax.set_ylabel("test accuracy")
        ax.legend(fontsize=7), ax.set_title("MNIST-M: accuracy vs transmitted bytes (one point per seed)", fontsize=9)
        return [save_figure(fig, out_dir / "accuracy_vs_bytes.png").name]

    def describe(self, s: Settings) -> dict[str, Any]:
        return {
            "data": f"MNIST-M (offline): {s.n_train} train (10 % val) / {s.n_test} test",
            "teacher": f"ResNet-8 (8-16-32, strides 2-2-2), {s.teacher_epochs} epochs Adam 1e-3, trained once",
            "latency": "head latency vs the AE-split head: batch 1, one thread, interleaved, median; reported "
            "as a log ratio, not gated",
            "deviations": [
                f"ResNet-152/ImageNet → ResNet-8/MNIST-M; 10 + 10 epochs → {s.stage_epochs} + {s.stage_epochs}",
                "stage-1 MSE (sum reduction) divided by the batch size",
                "one-stage arms (naive, KD, HND, AE-split, equal-byte) use Adam 1e-3 ×0.1 at half for "
                f"{2 * s.stage_epochs} epochs; BottleFit's stage 2 uses the repo's SGD",
                "8-bit link: per-sample affine quantisation at evaluation only (training sees floats); "
                "bytes = C·7·7 + 8 (scale and zero point)",
                "the card's H is a conjunction: its three gates are all marked headline",
                "power and Jetson/RPi latency not measurable: head FLOPs and a 1-thread head latency ratio",
            ],
        }
