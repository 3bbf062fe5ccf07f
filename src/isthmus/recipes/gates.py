"""Gates, preconditions and the one verdict rule every recipe is judged by.

A recipe's claim is split into **gates**. A gate compares one metric of one arm with another arm
(or a constant) on **paired per-seed differences** — arms share seeds, data and initialisation, so
pairing removes most of the seed-to-seed noise. With ``d_s = sign · (arm_s − vs_s)`` (``sign = −1``
when lower is better) the gate computes the mean difference, its 95 % interval (Student t with
ddof = 1, or a paired bootstrap over seeds and, where the recipe reports them, over items such as
queries or test rows) and the smallest effect the run could have detected (80 % power).

Outcomes, with ``δ`` the pre-declared smallest effect that counts (the referee cards' convention):

==================  ==========================================  ===============================
kind                met when                                    failed when
==================  ==========================================  ===============================
superiority         the interval lies above 0 and mean ≥ ``δ``  the interval lies below ``δ``
non-inferiority     the interval lies above ``−δ``              the interval lies below ``−δ``
parity              the interval lies in ``±δ``                 the interval lies outside ``±δ``
==================  ==========================================  ===============================

and *unresolved* otherwise (the run cannot tell). A **precondition** is what must hold for the
experiment to be able to show anything (the positive control works, training converged, enough
seeds); a failed one makes the verdict *inconclusive*. The verdict (see :func:`decide`):

* ``reproduced``: every gate met;
* ``partial``: the headline gate(s) met, another failed or unresolved;
* ``not reproduced``: a headline gate failed;
* ``inconclusive``: a precondition failed, or a headline gate is unresolved.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Literal, Mapping, Sequence

import numpy as np

__all__ = [
    "ALPHA",
    "VERDICTS",
    "Gate",
    "GateResult",
    "Precondition",
    "Check",
    "Measured",
    "paired_differences",
    "evaluate_gate",
    "evaluate_precondition",
    "decide",
    "plateaued",
    "converged_on_every_seed",
    "VERDICT_RULE",
]

ALPHA = 0.05  # two-sided: 95 % intervals
POWER = 0.80  # for the smallest detectable effect
N_BOOT = 4000
VERDICTS = ("reproduced", "partial", "not reproduced", "inconclusive")
VERDICT_RULE = (
    "Each gate is judged on paired per-seed differences (ddof=1) with a 95 % interval against its pre-declared "
    "smallest effect d: a superiority gate is met when the interval excludes 0 and the mean is at least d, failed "
    "when the interval lies below d; a non-inferiority gate is met when the interval lies above -d, failed when it "
    "lies below; a parity gate is met inside +-d, failed outside; otherwise unresolved. reproduced = every "
    "gate met; partial = headline gate(s) met, another failed or unresolved; not reproduced = a headline gate "
    "failed; inconclusive = a precondition failed or a headline gate is unresolved."
)

Direction = Literal["higher", "lower"]
Kind = Literal["superiority", "non_inferiority", "parity"]


@dataclass
class Measured:
    """What one arm measured on one seed.

    ``metrics`` are scalars; ``items`` are per-item values (per query, per test row) whose mean is the
    per-seed value when the metric is not also in ``metrics`` (gates with ``method="bootstrap"``
    resample them); ``curves`` are per-epoch/step traces for plots and convergence checks; ``info`` is
    any other JSON the recipe wants to keep (never judged).
    """

    metrics: dict[str, float] = field(default_factory=dict)
    items: dict[str, list[float]] = field(default_factory=dict)
    curves: dict[str, list[float]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def value(self, metric: str) -> float:
        if metric in self.metrics:
            return float(self.metrics[metric])
        if metric in self.items:
            vals = np.asarray(self.items[metric], dtype=float)
            return float(vals.mean()) if vals.size else math.nan
        raise KeyError(metric)

    def names(self) -> list[str]:
        return list(self.metrics) + [k for k in self.items if k not in self.metrics]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Measured":
        return cls(
            metrics={k: float(v) for k, v in d.get("metrics", {}).items()},
            items={k: [float(x) for x in v] for k, v in d.get("items", {}).items()},
            curves={k: [float(x) for x in v] for k, v in d.get("curves", {}).items()},
            info=dict(d.get("info", {})),
        )

    @classmethod
    def coerce(cls, out: Any, where: str) -> "Measured":
        """Accept a :class:`Measured` or a plain ``{metric: number}`` dict from an arm function."""
        if isinstance(out, Measured):
            m = out
        elif isinstance(out, Mapping):
            bad = {k: type(v).__name__ for k, v in out.items() if not isinstance(v, (int, float, np.number))}
            if bad:
                raise TypeError(
                    f"{where} returned non-numeric metrics {bad}; return a Measured(...) for items, curves or info"
                )
            m = cls(metrics={k: float(v) for k, v in out.items()})
        else:
            raise TypeError(f"{where} must return a Measured or a dict of metrics, got {type(out).__name__}")
        for name in m.metrics:
            if not isinstance(name, str) or not name:
                raise TypeError(f"{where}: metric names must be non-empty strings, got {name!r}")
        return m


@dataclass(frozen=True)
class Gate:
    """One part of a claim: ``arm`` vs ``vs`` (an arm or a constant) on ``metric``."""

    name: str
    metric: str
    arm: str
    vs: str | float
    direction: Direction = "higher"
    kind: Kind = "superiority"
    effect: float = 0.0  # superiority: smallest gain that counts; non-inferiority / parity: the margin
    headline: bool = False
    method: Literal["t", "bootstrap"] = "t"
    why: str = ""  # one line: why this effect size is the one that counts

    def __post_init__(self) -> None:
        if self.direction not in ("higher", "lower"):
            raise ValueError(f"gate {self.name!r}: direction must be 'higher' or 'lower', got {self.direction!r}")
        if self.kind not in ("superiority", "non_inferiority", "parity"):
            raise ValueError(f"gate {self.name!r}: unknown kind {self.kind!r}")
        if self.method not in ("t", "bootstrap"):
            raise ValueError(f"gate {self.name!r}: method must be 't' or 'bootstrap', got {self.method!r}")
        if not math.isfinite(self.effect) or self.effect < 0:
            raise ValueError(f"gate {self.name!r}: effect must be a finite number >= 0, got {self.effect!r}")
        if self.kind == "parity" and self.effect == 0:
            raise ValueError(f"gate {self.name!r}: a parity gate needs a margin effect > 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        vs = f"{self.vs:g}" if isinstance(self.vs, (int, float)) else self.vs
        better = "higher" if self.direction == "higher" else "lower"
        rel = {
            "superiority": f"beats {vs} by ≥ {self.effect:g}",
            "non_inferiority": f"is within {self.effect:g} of {vs} or better",
            "parity": f"is within ±{self.effect:g} of {vs}",
        }[self.kind]
        return f"{self.arm} {rel} on {self.metric} ({better} is better)"


@dataclass
class GateResult:
    gate: Gate
    outcome: Literal["met", "failed", "unresolved"]
    n: int
    mean: float  # mean paired difference, oriented so that positive favours ``gate.arm``
    lo: float
    hi: float
    mde: float  # smallest effect detectable at 80 % power with this n and spread
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "gate": self.gate.to_dict(),
            "outcome": self.outcome,
            "n": self.n,
            "mean": self.mean,
            "lo": self.lo,
            "hi": self.hi,
            "mde": self.mde,
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "GateResult":
        return cls(
            gate=Gate(**d["gate"]),
            outcome=d["outcome"],
            n=int(d["n"]),
            mean=float(d["mean"]),
            lo=float(d["lo"]),
            hi=float(d["hi"]),
            mde=float(d["mde"]),
            detail=d.get("detail", ""),
        )

    def interval(self) -> str:
        return f"{self.mean:+.4g} [{self.lo:+.4g}, {self.hi:+.4g}]"


@dataclass(frozen=True)
class Precondition:
    """``metric`` of ``arm`` must satisfy ``op threshold`` — on the seed mean, on every seed, or on any."""

    name: str
    arm: str
    metric: str
    op: Literal[">=", "<="]
    threshold: float
    over: Literal["mean", "every", "any"] = "mean"
    why: str = ""

    def __post_init__(self) -> None:
        if self.op not in (">=", "<="):
            raise ValueError(f"precondition {self.name!r}: op must be '>=' or '<=', got {self.op!r}")
        if self.over not in ("mean", "every", "any"):
            raise ValueError(f"precondition {self.name!r}: over must be mean/every/any, got {self.over!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def converged_on_every_seed(arm: str, why: str, name: str | None = None, metric: str = "converged") -> Precondition:
    """The usual convergence precondition: ``arm`` reports ``metric`` = 1 (its curve :func:`plateaued`) on
    every seed — a mean would let one unconverged seed hide behind the others."""
    return Precondition(name or f"{arm} converged", arm, metric, ">=", 1.0, over="every", why=why)


@dataclass
class Check:
    """The outcome of one precondition (declared or computed by the recipe)."""

    name: str
    ok: bool
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": bool(self.ok), "detail": self.detail}


Cells = Mapping[str, Mapping[int, Measured]]  # arm -> seed -> measured


def _values(cells: Cells, arm: str, metric: str) -> dict[int, float]:
    if arm not in cells:
        raise KeyError(f"no arm named {arm!r}; arms are {sorted(cells)}")
    out = {}
    for s, m in cells[arm].items():
        try:
            out[s] = m.value(metric)
        except KeyError:
            raise KeyError(f"arm {arm!r} seed {s} did not report metric {metric!r} (it reported {m.names()})") from None
    return out


def paired_differences(gate: Gate, cells: Cells) -> tuple[list[int], np.ndarray]:
    """Seeds present (and finite) in both arms and ``sign · (arm − vs)`` on each."""
    sign = 1.0 if gate.direction == "higher" else -1.0
    a = _values(cells, gate.arm, gate.metric)
    b = {s: float(gate.vs) for s in a} if isinstance(gate.vs, (int, float)) else _values(cells, gate.vs, gate.metric)
    seeds = sorted(s for s in a if s in b and math.isfinite(a[s]) and math.isfinite(b[s]))
    return seeds, np.asarray([sign * (a[s] - b[s]) for s in seeds], dtype=float)


def _t_interval(d: np.ndarray) -> tuple[float, float, float]:
    from scipy import stats

    n = len(d)
    se = float(d.std(ddof=1)) / math.sqrt(n)
    t = float(stats.t.ppf(1 - ALPHA / 2, n - 1))
    mde = (t + float(stats.t.ppf(POWER, n - 1))) * se
    return float(d.mean()) - t * se, float(d.mean()) + t * se, mde


def _item_diffs(gate: Gate, cells: Cells, seeds: Sequence[int]) -> list[np.ndarray] | None:
    """Per-seed arrays of per-item paired differences, or None when the metric has no items."""
    if isinstance(gate.vs, (int, float)):
        return None
    sign = 1.0 if gate.direction == "higher" else -1.0
    out = []
    for s in seeds:
        ia, ib = cells[gate.arm][s].items.get(gate.metric), cells[gate.vs][s].items.get(gate.metric)
        if ia is None or ib is None or len(ia) != len(ib) or not len(ia):
            return None
        out.append(sign * (np.asarray(ia, dtype=float) - np.asarray(ib, dtype=float)))
    return out


def _bootstrap_interval(d: np.ndarray, items: list[np.ndarray] | None) -> tuple[float, float, float]:
    """Paired percentile bootstrap: resample seeds, and items within each seed when present."""
    rng = np.random.default_rng(0)  # fixed: the same data always gives the same interval
    n = len(d)
    stats_ = np.empty(N_BOOT)
    for b in range(N_BOOT):
        pick = rng.integers(0, n, n)
        if items is None:
            stats_[b] = d[pick].mean()
        else:
            stats_[b] = np.mean([items[i][rng.integers(0, len(items[i]), len(items[i]))].mean() for i in pick])
    lo, hi = np.quantile(stats_, [ALPHA / 2, 1 - ALPHA / 2])
    z = 1.959963984540054
    mde = (hi - lo) / 2 * (z + 0.8416212335729143) / z
    return float(lo), float(hi), float(mde)


def evaluate_gate(gate: Gate, cells: Cells) -> GateResult:
    """Judge one gate on the paired per-seed differences."""
    seeds, d = paired_differences(gate, cells)
    n = len(d)
    if n < 2:
        return GateResult(
            gate,
            "unresolved",
            n,
            float(d.mean()) if n else math.nan,
            -math.inf,
            math.inf,
            math.inf,
            f"{n} paired seed(s): an interval needs at least 2",
        )
    if gate.method == "bootstrap":
        items = _item_diffs(gate, cells, seeds)
        mean = float(np.mean([x.mean() for x in items])) if items else float(d.mean())
        lo, hi, mde = _bootstrap_interval(d, items)
        how = f"paired bootstrap over {n} seeds" + (" and items" if items else "")
    else:
        mean = float(d.mean())
        lo, hi, mde = _t_interval(d)
        how = f"paired t over {n} seeds"
    e = gate.effect
    outcome: Literal["met", "failed", "unresolved"]
    if gate.kind == "superiority":
        outcome = "met" if (lo > 0 and mean >= e) else "failed" if hi < e else "unresolved"
    elif gate.kind == "non_inferiority":
        outcome = "met" if lo > -e else "failed" if hi < -e else "unresolved"
    else:
        outcome = "met" if (lo > -e and hi < e) else "failed" if (lo > e or hi < -e) else "unresolved"
    return GateResult(gate, outcome, n, mean, lo, hi, mde, how)


def evaluate_precondition(pre: Precondition, cells: Cells) -> Check:
    try:
        vals = _values(cells, pre.arm, pre.metric)
    except KeyError as exc:
        return Check(pre.name, False, str(exc).strip("'\""))
    arr = np.asarray(list(vals.values()), dtype=float)
    if not arr.size:
        return Check(pre.name, False, f"arm {pre.arm!r} has no seeds")
    cmp: Callable[[np.ndarray], np.ndarray] = (
        (lambda v: v >= pre.threshold) if pre.op == ">=" else (lambda v: v <= pre.threshold)
    )
    finite = np.isfinite(arr)
    if pre.over == "mean":
        ok, shown = bool(finite.all() and cmp(np.asarray(arr.mean()))), f"mean {arr.mean():.4g}"
    elif pre.over == "every":
        ok, shown = bool(finite.all() and cmp(arr).all()), f"per seed {np.array2string(arr, precision=4)}"
    else:
        ok, shown = bool((finite & cmp(arr)).any()), f"per seed {np.array2string(arr, precision=4)}"
    return Check(pre.name, ok, f"{pre.arm}.{pre.metric} {shown} ({pre.over} {pre.op} {pre.threshold:g})")


def decide(gates: Sequence[GateResult], checks: Iterable[Check]) -> tuple[str, str]:
    """The one verdict rule (module docstring). Returns ``(verdict, reason)``."""
    if not gates:
        raise ValueError("a recipe needs at least one gate")
    failed_pre = [c for c in checks if not c.ok]
    heads = [g for g in gates if g.gate.headline] or [gates[0]]
    summary = "; ".join(f"{g.gate.name} {g.outcome} ({g.interval()}, n={g.n})" for g in gates)
    if failed_pre:
        why = "; ".join(f"{c.name}: {c.detail}" for c in failed_pre)
        return "inconclusive", f"precondition failed — {why}. Gates: {summary}"
    if any(g.outcome == "failed" for g in heads):
        return "not reproduced", summary
    if any(g.outcome == "unresolved" for g in heads):
        return "inconclusive", f"headline unresolved — {summary}"
    if all(g.outcome == "met" for g in gates):
        return "reproduced", summary
    return "partial", summary


def plateaued(curve: Sequence[float], window: int | None = None, rel_tol: float = 0.02) -> bool:
    """Has a training curve stopped improving?

    Compares the mean of the last ``window`` points with the mean of the ``window`` before them: the
    change must be within ``rel_tol`` of the curve's overall range (range-relative so that a loss near
    zero and an accuracy near one are judged alike). ``window`` defaults to a tenth of the curve (≥ 2).

    Under a learning-rate schedule that decays to zero (cosine, linear decay) every curve flattens at its end
    whatever the budget, so this test cannot tell a converged run from a short one there (nerv-plus-plus: NeRV
    "plateaued" at 150 cosine epochs yet gained 4.3 dB at 2.1x the epochs). For such runs declare a
    longer-run check instead or as well — the gain of a run k times longer on one seed, as model-collapse's
    "within 1 nat of a 3x longer run" does.
    """
    c = np.asarray([v for v in curve if math.isfinite(v)], dtype=float)
    w = window or max(2, len(c) // 10)
    if len(c) < 2 * w:
        return False
    span = float(c.max() - c.min())
    if span == 0.0:
        return True
    return abs(float(c[-w:].mean() - c[-2 * w : -w].mean())) <= rel_tol * span
