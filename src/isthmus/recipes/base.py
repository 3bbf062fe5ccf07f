"""The recipe contract: one seed paper = parts + a claim check → :class:`Result`.

A recipe declares the paper, its claim in one sentence, and how to run in three modes:

* ``smoke`` — seconds; mechanics only; runs in the test suite (its verdict means nothing),
* ``quick`` — ≤ 2 minutes on 2 CPU cores, enough seeds for an honest verdict,
* ``full``  — the larger, GPU-friendly version.

``run`` returns a :class:`Result` with our metrics and the baselines' metrics on the same data
and seeds (mean ± std over seeds, all values kept), a verdict computed from those numbers, the
runtime, the exact config and the library versions. A negative result is a result.
"""

from __future__ import annotations

import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from isthmus._runtime import runtime_defaults

__all__ = ["Paper", "MetricSummary", "Result", "Recipe", "summarize", "summarize_arms", "VERDICTS", "MODES"]

VERDICTS = ("reproduced", "partial", "not reproduced")
MODES = ("smoke", "quick", "full")


@dataclass(frozen=True)
class Paper:
    title: str
    arxiv: str  # "" when the paper has no arXiv id


@dataclass
class MetricSummary:
    mean: float
    std: float
    values: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "values": list(self.values)}

    def __str__(self) -> str:
        return f"{self.mean:.4g} ± {self.std:.2g}"


def summarize(values: Sequence[float]) -> MetricSummary:
    """Mean, sample-free std (ddof=0) and the raw values over seeds; NaNs are kept and reported."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("summarize() needs at least one value")
    arr = np.asarray(vals, dtype=float)
    return MetricSummary(mean=float(np.mean(arr)), std=float(np.std(arr)), values=vals)


def summarize_arms(per: dict[str, dict[str, Sequence[float]]], ours: str
                   ) -> tuple[dict[str, MetricSummary], dict[str, dict[str, MetricSummary]]]:
    """Split ``arm -> metric -> per-seed values`` into ``(metrics of ours, baselines)`` for a Result."""
    if ours not in per:
        raise KeyError(f"arm {ours!r} not among {sorted(per)}")
    summ = {arm: {k: summarize(v) for k, v in metrics.items()} for arm, metrics in per.items()}
    return summ.pop(ours), summ


@dataclass
class Result:
    recipe: str
    paper: Paper
    claim: str
    mode: str
    seeds: list[int]
    metrics: dict[str, MetricSummary]
    baselines: dict[str, dict[str, MetricSummary]]
    verdict: str
    verdict_reason: str = ""
    runtime_s: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)  # file names (relative to the result folder)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "paper": asdict(self.paper),
            "claim": self.claim,
            "mode": self.mode,
            "seeds": list(self.seeds),
            "metrics": {k: v.to_dict() for k, v in self.metrics.items()},
            "baselines": {b: {k: v.to_dict() for k, v in m.items()} for b, m in self.baselines.items()},
            "verdict": self.verdict,
            "verdict_reason": self.verdict_reason,
            "runtime_s": self.runtime_s,
            "config": self.config,
            "versions": self.versions,
            "figures": list(self.figures),
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Result":
        ms = lambda m: {k: MetricSummary(v["mean"], v["std"], list(v["values"])) for k, v in m.items()}  # noqa: E731
        return cls(
            recipe=d["recipe"], paper=Paper(**d["paper"]), claim=d["claim"], mode=d["mode"], seeds=list(d["seeds"]),
            metrics=ms(d["metrics"]), baselines={b: ms(m) for b, m in d["baselines"].items()},
            verdict=d["verdict"], verdict_reason=d.get("verdict_reason", ""), runtime_s=d.get("runtime_s", 0.0),
            config=d.get("config", {}), versions=d.get("versions", {}), figures=d.get("figures", []),
            notes=d.get("notes", []),
        )


def library_versions() -> dict[str, str]:
    import sklearn
    import torch

    from isthmus import __version__

    return {
        "isthmus": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
    }


class Recipe:
    """Base class. Subclasses set the class attributes and implement :meth:`run`.

    ``run(mode, seeds, out_dir)`` must train/evaluate, write any figures into ``out_dir`` (and
    list their file names in ``Result.figures``), and return a :class:`Result` whose verdict it
    computed from the measured numbers with the rule stated in ``verdict_rule``.
    """

    slug: ClassVar[str]
    paper: ClassVar[Paper]
    claim: ClassVar[str]
    verdict_rule: ClassVar[str] = ""  # the rule, in words, that turns numbers into a verdict
    default_seeds: ClassVar[dict[str, int]] = {"smoke": 1, "quick": 3, "full": 5}

    def run(self, mode: str, seeds: Sequence[int], out_dir: Path) -> Result:  # pragma: no cover - abstract
        raise NotImplementedError

    def execute(self, mode: str = "quick", n_seeds: int | None = None, out_dir: str | Path | None = None) -> Result:
        """Validate arguments, time :meth:`run`, and fill runtime and versions."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        n = n_seeds if n_seeds is not None else self.default_seeds[mode]
        if n < 1:
            raise ValueError(f"--seeds must be >= 1, got {n}")
        out = Path(out_dir) if out_dir is not None else Path("runs") / self.slug / mode
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with runtime_defaults():  # 1 thread, flushed denormals; the caller's settings come back after
            result = self.run(mode, list(range(n)), out)
        result.runtime_s = round(time.perf_counter() - t0, 2)
        result.versions = library_versions()
        for name, summary in result.metrics.items():
            if any(math.isnan(v) for v in summary.values):
                result.notes.append(f"metric {name} has NaN values over seeds")
        return result
