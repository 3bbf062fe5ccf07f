"""The recipe frame: one seed paper = settings + data + arms + gates + preconditions → :class:`Result`.

A recipe declares, before its first run (see ``docs/reproductions.md`` for the rule it is judged by):

* ``Settings`` — a typed :class:`~isthmus.config.Config` per mode (``modes``), overridable from the
  command line (``isthmus recipes run SLUG --mode record seeds=8 epochs=60``);
* ``data(settings, seed)`` — what every arm of one seed shares;
* ``arms(settings)`` — ``name -> fn(settings, seed, data) -> Measured | {metric: value}``; ``ours``
  names the paper's method;
* ``gates`` — the claim, split into :class:`~isthmus.recipes.gates.Gate` s (one or more headline);
* ``preconditions`` — what must hold for the run to be able to show anything (plus ``checks()`` for
  those that need code).

The frame runs the seed × arm loop (each finished cell cached on disk, so adding seeds or resuming
after a kill reuses it), judges the gates on paired per-seed differences, applies the preconditions
and the one verdict rule, saves figures through ``figures()`` and returns a :class:`Result`.

Modes: ``smoke`` (seconds, CI; never judged), ``quick`` (≤ 2 min on 2 cores), ``record`` (the results
of record: run to convergence, ≤ 15 min on 2 cores), ``full`` (paper scale, GPU).
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np

from isthmus.config import Config, ConfigError
from isthmus.recipes.gates import (
    VERDICT_RULE,
    VERDICTS,
    Check,
    Gate,
    GateResult,
    Measured,
    Precondition,
    decide,
    evaluate_gate,
    evaluate_precondition,
)

__all__ = [
    "Paper",
    "MetricSummary",
    "Result",
    "Recipe",
    "RecipeSettings",
    "summarize",
    "summarize_arms",
    "VERDICTS",
    "MODES",
    "Arm",
]

MODES = ("smoke", "quick", "record", "full")
SMOKE_REASON = "smoke mode checks the mechanics only; it is never judged"

Arm = Callable[[Any, int, Any], "Measured | Mapping[str, float]"]


@dataclass(frozen=True)
class Paper:
    title: str
    arxiv: str  # "" when the paper has no arXiv id


@dataclass
class MetricSummary:
    mean: float
    std: float  # sample standard deviation over seeds (ddof=1); NaN with one seed
    values: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "values": list(self.values)}

    def __str__(self) -> str:
        if len(self.values) < 2 or not math.isfinite(self.std):
            return f"{self.mean:.4g}"
        return f"{self.mean:.4g} ± {self.std:.2g}"


def summarize(values: Sequence[float]) -> MetricSummary:
    """Mean, sample std (ddof=1, NaN for one value) and the raw values over seeds; NaNs are kept."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("summarize() needs at least one value")
    arr = np.asarray(vals, dtype=float)
    std = float(np.std(arr, ddof=1)) if len(arr) > 1 else math.nan
    return MetricSummary(mean=float(np.mean(arr)), std=std, values=vals)


def summarize_arms(
    per: Mapping[str, Mapping[str, Sequence[float]]], ours: str
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
    gates: list[GateResult] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    declared: dict[str, Any] = field(default_factory=dict)  # gates + preconditions as judged (staleness)
    changes: list[str] = field(default_factory=list)  # what was changed after seeing results, and why

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")

    @property
    def headline(self) -> GateResult | None:
        heads = [g for g in self.gates if g.gate.headline]
        return heads[0] if heads else (self.gates[0] if self.gates else None)

    @property
    def judged(self) -> bool:
        """False for smoke runs and for results made before the frame (no gates)."""
        return self.mode != "smoke" and bool(self.gates)

    def to_dict(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "paper": {"title": self.paper.title, "arxiv": self.paper.arxiv},
            "claim": self.claim,
            "mode": self.mode,
            "seeds": list(self.seeds),
            "verdict": self.verdict,
            "verdict_reason": self.verdict_reason,
            "gates": [g.to_dict() for g in self.gates],
            "preconditions": [c.to_dict() for c in self.checks],
            "declared": self.declared,
            "metrics": {k: v.to_dict() for k, v in self.metrics.items()},
            "baselines": {b: {k: v.to_dict() for k, v in m.items()} for b, m in self.baselines.items()},
            "runtime_s": self.runtime_s,
            "config": self.config,
            "versions": self.versions,
            "figures": list(self.figures),
            "notes": list(self.notes),
            "changes": list(self.changes),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Result":
        ms = lambda m: {k: MetricSummary(v["mean"], v["std"], list(v["values"])) for k, v in m.items()}  # noqa: E731
        return cls(
            recipe=d["recipe"],
            paper=Paper(**d["paper"]),
            claim=d["claim"],
            mode=d["mode"],
            seeds=list(d["seeds"]),
            metrics=ms(d["metrics"]),
            baselines={b: ms(m) for b, m in d["baselines"].items()},
            verdict=d["verdict"],
            verdict_reason=d.get("verdict_reason", ""),
            runtime_s=d.get("runtime_s", 0.0),
            config=d.get("config", {}),
            versions=d.get("versions", {}),
            figures=d.get("figures", []),
            notes=d.get("notes", []),
            gates=[GateResult.from_dict(g) for g in d.get("gates", [])],
            checks=[Check(**c) for c in d.get("preconditions", [])],
            declared=d.get("declared", {}),
            changes=d.get("changes", []),
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


@dataclass
class RecipeSettings(Config):
    """Settings every recipe has; a recipe's ``Settings`` subclasses this with its own fields."""

    seeds: int = 3

    def validate(self) -> None:
        if self.seeds < 1:
            raise ConfigError(f"{type(self).__name__}.seeds must be >= 1, got {self.seeds}")


def _settings_key(settings: RecipeSettings) -> str:
    """Hash of everything but the seed count: a cached cell is reused only under the same settings."""
    d = settings.to_dict()
    d.pop("seeds", None)
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Recipe:
    """Base class of every recipe (module docstring). Subclasses set the class attributes and
    implement :meth:`arms` (and usually :meth:`data`, :meth:`figures`, :meth:`checks`)."""

    slug: ClassVar[str]
    paper: ClassVar[Paper]
    claim: ClassVar[str]
    Settings: ClassVar[type[RecipeSettings]] = RecipeSettings
    modes: ClassVar[dict[str, RecipeSettings]] = {}
    ours: ClassVar[str] = "ours"
    gates: ClassVar[tuple[Gate, ...]] = ()
    preconditions: ClassVar[tuple[Precondition, ...]] = ()
    min_seeds: ClassVar[int] = 3
    changes: ClassVar[tuple[str, ...]] = ()  # what was changed after seeing results, and why
    verdict_rule: ClassVar[str] = VERDICT_RULE

    # ---- what a recipe implements ------------------------------------------------------------
    def data(self, settings: Any, seed: int) -> Any:
        """What every arm of one seed shares (a split, a trained host model, ...)."""
        return None

    def arms(self, settings: Any) -> dict[str, Arm]:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must define arms(settings)")

    def checks(self, settings: Any, cells: Mapping[str, Mapping[int, Measured]]) -> list[Check]:
        """Preconditions that need code (a declared :class:`Precondition` covers most)."""
        return []

    def figures(self, settings: Any, cells: Mapping[str, Mapping[int, Measured]], out_dir: Path) -> list[str]:
        """Draw figures into ``out_dir`` (through :mod:`isthmus.viz`); return their file names."""
        return []

    def notes(self, settings: Any, cells: Mapping[str, Mapping[int, Measured]]) -> list[str]:
        return []

    def describe(self, settings: Any) -> dict[str, Any]:
        """Extra, JSON-able description of the run for ``result.config`` (data, model, deviations)."""
        return {}

    # ---- the frame -----------------------------------------------------------------------------
    def settings_for(self, mode: str, overrides: Sequence[str] | Mapping[str, Any] | None = None) -> Any:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode not in self.modes:
            raise ValueError(f"recipe {self.slug} has no {mode!r} mode; it has {sorted(self.modes)}")
        base = self.modes[mode]
        return (
            base.with_overrides(list(overrides) if not isinstance(overrides, Mapping) else dict(overrides))
            if overrides
            else base
        )

    def declaration(self) -> dict[str, Any]:
        """Gates, preconditions and the seed minimum as declared now (compared for staleness)."""
        return {
            "gates": [g.to_dict() for g in self.gates],
            "preconditions": [p.to_dict() for p in self.preconditions],
            "min_seeds": self.min_seeds,
        }

    def _validate_declaration(self, arm_names: Sequence[str]) -> None:
        if self.ours not in arm_names:
            raise ValueError(f"{self.slug}: ours={self.ours!r} is not among the arms {sorted(arm_names)}")
        if not self.gates:
            raise ValueError(f"{self.slug}: declare at least one gate")
        for g in self.gates:
            for a in (g.arm, g.vs):
                if isinstance(a, str) and a not in arm_names:
                    raise ValueError(f"{self.slug}: gate {g.name!r} names arm {a!r}; arms are {sorted(arm_names)}")
        for p in self.preconditions:
            if p.arm not in arm_names:
                raise ValueError(
                    f"{self.slug}: precondition {p.name!r} names arm {p.arm!r}; arms are {sorted(arm_names)}"
                )

    def _declared_metrics(self) -> dict[str, set[str]]:
        """arm -> the metrics its gates and preconditions read (what every cell of that arm must report)."""
        needed: dict[str, set[str]] = {}
        for g in self.gates:
            needed.setdefault(g.arm, set()).add(g.metric)
            if isinstance(g.vs, str):
                needed.setdefault(g.vs, set()).add(g.metric)
        for p in self.preconditions:
            needed.setdefault(p.arm, set()).add(p.metric)
        return needed

    def run_cells(
        self, settings: Any, seeds: Sequence[int], out_dir: Path | None, progress: bool = True, jobs: int = 1
    ) -> dict[str, dict[int, Measured]]:
        """Run (or reuse from ``out_dir/cells``) every arm on every seed; ``jobs`` > 1 runs seeds in parallel
        processes (one intra-op thread each), with the same cells as ``jobs=1``."""
        if jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {jobs}")
        arms = self.arms(settings)
        self._validate_declaration(list(arms))
        key = _settings_key(settings)
        needed = self._declared_metrics()
        cells: dict[str, dict[int, Measured]] = {a: {} for a in arms}
        todo, outdated = [], []
        for s in seeds:
            for a in arms:
                path = out_dir / "cells" / a / f"seed-{s}.json" if out_dir is not None else None
                cached = _read_cell(path, key)
                # A cell cached before the recipe's code changed (same settings) may lack a metric that a gate or
                # precondition now reads: recompute it rather than judge the run 'inconclusive' on a missing key.
                if cached is not None and not needed.get(a, set()) <= set(cached.names()):
                    outdated.append(f"{a}/seed-{s}")
                    cached = None
                if cached is not None:
                    cells[a][s] = cached
                else:
                    todo.append((s, a, path))
        if outdated:
            print(
                f"{self.slug}: {len(outdated)} cached cell(s) lack metrics the declaration reads "
                f"(cached before the recipe changed); recomputing: {', '.join(outdated[:6])}"
                + (" ..." if len(outdated) > 6 else ""),
                file=sys.stderr,
            )
        bar = _progress(len(todo), f"{self.slug}", progress)
        groups: dict[int, list[tuple[str, Path | None]]] = {}
        for s, a, path in todo:
            groups.setdefault(s, []).append((a, path))
        if jobs > 1 and len(groups) > 1:
            self._run_groups_in_processes(settings, groups, key, jobs, cells, bar)
        else:
            from isthmus._runtime import seed_everything

            for s, group in groups.items():
                seed_everything(s)  # the data too, as in a worker process
                data = self.data(settings, s)
                for a, path in group:
                    bar.set_postfix_str(f"seed {s} · {a}")
                    cells[a][s] = _run_cell(self, arms[a], settings, s, data, a, path, key)
                    bar.update(1)
        bar.close()
        return cells

    def _run_groups_in_processes(self, settings: Any, groups, key: str, jobs: int, cells, bar) -> None:
        """``jobs`` worker processes, one seed per task: each task builds its data once and runs its arms in the
        sequential order, writing each cell as it finishes, so an interrupted run resumes the same way. Workers
        are reused across seeds; the per-cell ``seed_everything`` makes that invisible to the cells."""
        import multiprocessing
        import pickle
        from concurrent.futures import ProcessPoolExecutor, as_completed

        try:
            pickle.dumps(type(self))
        except (pickle.PicklingError, AttributeError, TypeError) as e:
            raise ValueError(
                f"{self.slug}: jobs > 1 needs a recipe class importable at module level ({e}); use jobs=1"
            ) from None
        ctx = multiprocessing.get_context("spawn")  # no forked torch thread pools
        with ProcessPoolExecutor(max_workers=min(jobs, len(groups)), mp_context=ctx) as ex:
            futures = {
                ex.submit(_run_seed_group, type(self), settings, s, group, key): s for s, group in groups.items()
            }
            for f in as_completed(futures):
                s = futures[f]
                for a, measured in f.result():  # re-raises an arm's exception here, with its traceback
                    cells[a][s] = Measured.from_dict(measured)
                    bar.update(1)
                bar.set_postfix_str(f"seed {s} done")

    def judge(
        self, mode: str, settings: Any, cells: Mapping[str, Mapping[int, Measured]]
    ) -> tuple[str, str, list[GateResult], list[Check]]:
        gates = [evaluate_gate(g, cells) for g in self.gates]
        n = min(len(v) for v in cells.values())
        checks = [Check("enough seeds", n >= self.min_seeds, f"{n} seed(s), at least {self.min_seeds} needed")]
        checks += [evaluate_precondition(p, cells) for p in self.preconditions]
        checks += list(self.checks(settings, cells))
        if mode == "smoke":
            return "inconclusive", SMOKE_REASON, gates, checks
        verdict, reason = decide(gates, checks)
        return verdict, reason, gates, checks

    def execute(
        self,
        mode: str = "quick",
        n_seeds: int | None = None,
        out_dir: str | Path | None = None,
        overrides: Sequence[str] | Mapping[str, Any] | None = None,
        progress: bool = False,
        jobs: int = 1,
    ) -> Result:
        """Run the recipe in ``mode`` and return its judged :class:`Result`.

        ``n_seeds`` (or ``overrides=["seeds=8"]``) sets the seed count; cells already in
        ``out_dir/cells`` under the same settings are reused. ``jobs`` > 1 runs that many seeds at once, each in
        its own process (use the number of cores; every process keeps one intra-op thread).
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        settings = self.settings_for(mode, overrides)
        if n_seeds is not None:
            if n_seeds < 1:
                raise ValueError(f"--seeds must be >= 1, got {n_seeds}")
            settings = settings.with_overrides({"seeds": n_seeds})
        out = Path(out_dir) if out_dir is not None else Path("runs") / self.slug / mode
        out.mkdir(parents=True, exist_ok=True)
        seeds = list(range(settings.seeds))
        t0 = time.perf_counter()
        from isthmus._runtime import runtime_defaults  # imports torch: not needed to list or describe recipes

        with runtime_defaults():  # 1 thread, flushed denormals; the caller's settings come back after
            cells = self.run_cells(settings, seeds, out, progress=progress, jobs=jobs)
        verdict, reason, gate_results, checks = self.judge(mode, settings, cells)
        figures = list(self.figures(settings, cells, out))
        runtime = round(time.perf_counter() - t0, 2)
        per = {a: {m: [cells[a][s].value(m) for s in seeds] for m in _metric_names(cells[a], seeds)} for a in cells}
        metrics, baselines = summarize_arms(per, self.ours)
        notes = list(self.notes(settings, cells))
        for arm, ms in per.items():
            for name, vals in ms.items():
                if any(not math.isfinite(v) for v in vals):
                    notes.append(f"{arm} / {name} has non-finite values over seeds")
        return Result(
            recipe=self.slug,
            paper=self.paper,
            claim=self.claim,
            mode=mode,
            seeds=seeds,
            metrics=metrics,
            baselines=baselines,
            verdict=verdict,
            verdict_reason=reason,
            runtime_s=runtime,
            config={"settings": settings.to_dict(), **self.describe(settings)},
            versions=library_versions(),
            figures=figures,
            notes=notes,
            gates=gate_results,
            checks=checks,
            declared=self.declaration(),
            changes=list(self.changes),
        )


def _metric_names(per_seed: Mapping[int, Measured], seeds: Sequence[int]) -> list[str]:
    """Metrics reported by every seed of an arm, in first-reported order."""
    names = per_seed[seeds[0]].names()
    return [n for n in names if all(n in per_seed[s].names() for s in seeds)]


def _run_cell(recipe: Recipe, arm: Any, settings: Any, seed: int, data: Any, name: str, path: Path | None, key: str):
    from isthmus._runtime import seed_everything
    from isthmus.io import atomic_write_json

    # Every cell starts from the same global RNG state whatever ran before it (other arms, cached cells, another
    # process under jobs > 1), so a cell's value does not depend on the schedule; arms should still seed their own.
    seed_everything(seed)
    measured = Measured.coerce(arm(settings, seed, data), f"arm {name!r} of {recipe.slug}")
    if path is not None:
        atomic_write_json(path, {"settings_key": key, "arm": name, "seed": seed, "measured": measured.to_dict()})
    return measured


def _run_seed_group(
    recipe_cls: type[Recipe], settings: Any, seed: int, group: list[tuple[str, Path | None]], key: str
) -> list[tuple[str, dict[str, Any]]]:
    """Worker of ``run_cells(jobs > 1)``: one seed's arms in a fresh process (module level, so it pickles)."""
    from isthmus._runtime import runtime_defaults, seed_everything

    recipe = recipe_cls()
    with runtime_defaults():
        seed_everything(seed)
        data = recipe.data(settings, seed)
        arms = recipe.arms(settings)
        return [(a, _run_cell(recipe, arms[a], settings, seed, data, a, path, key).to_dict()) for a, path in group]


def _read_cell(path: Path | None, key: str) -> Measured | None:
    if path is None or not path.is_file():
        return None
    try:
        d = json.loads(path.read_text())
        if d.get("settings_key") != key:
            return None
        return Measured.from_dict(d["measured"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a damaged cache cell is recomputed, never trusted


class _NoBar:
    def set_postfix_str(self, s: str) -> None: ...
    def update(self, n: int) -> None: ...
    def close(self) -> None: ...


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if not enabled or total == 0:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="cell", file=sys.stderr)
