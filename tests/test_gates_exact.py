"""The verdict machinery pinned to exact values: ties at every outcome boundary, the interval and MDE
formulas, the bootstrap's resampling, preconditions' messages, plateau windows, and serialisation.

Written against the survivors of `make mutate MODULES=gates` (docs/mutation.md): each test names
the behaviour a wrong verdict would come from. Constant per-seed differences (deterministic arms
are common: the same data and init give the same metric on every seed) put the interval exactly
on a margin, so the strict/non-strict comparisons of the outcome table are decided here.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from isthmus.recipes.gates import (
    Check, Gate, GateResult, Measured, Precondition, converged_on_every_seed, decide, evaluate_gate,
    evaluate_precondition, plateaued,
)


def cells(**arms):
    return {a: {s: Measured(metrics={"m": v}) for s, v in enumerate(vals)} for a, vals in arms.items()}


def gate(**kw):
    return Gate(**{"name": "g", "metric": "m", "arm": "ours", "vs": "base", "headline": True, **kw})


def outcome(kind, diff, effect, n=3):
    """Outcome of a gate whose paired difference is ``diff`` on every one of ``n`` seeds (lo = hi = mean)."""
    c = cells(ours=[1.0 + diff] * n, base=[1.0] * n)
    r = evaluate_gate(gate(kind=kind, effect=effect), c)
    assert r.lo == r.hi == r.mean == pytest.approx(diff, abs=0)  # 1.25 - 1.0 etc. are exact in binary
    return r.outcome


@pytest.mark.parametrize(
    "kind, diff, effect, expected",
    [
        # identical arms must not be "superior", nor "failed" at effect 0: the interval touches 0
        ("superiority", 0.0, 0.0, "unresolved"),
        # a gain of exactly the effect, with a zero-width interval above 0, is met (mean >= effect)
        ("superiority", 0.25, 0.25, "met"),
        ("superiority", 0.25, 0.5, "failed"),
        # non-inferiority: an interval that touches -margin is not inside it, and not below it either
        ("non_inferiority", -0.25, 0.25, "unresolved"),
        ("non_inferiority", -0.5, 0.25, "failed"),
        ("non_inferiority", 1.0, 0.25, "met"),  # much better than the reference is still non-inferior
        # parity: touching either margin is neither inside nor outside
        ("parity", -0.25, 0.25, "unresolved"),
        ("parity", 0.25, 0.25, "unresolved"),
        ("parity", 0.0, 0.25, "met"),
        ("parity", 0.5, 0.25, "failed"),
        ("parity", -0.5, 0.25, "failed"),
    ],
)
def test_outcome_at_and_around_every_margin(kind, diff, effect, expected):
    assert outcome(kind, diff, effect) == expected


def test_an_interval_straddling_minus_margin_is_unresolved_not_failed():
    # hi inside (-e, e), lo below -e: not inside the margin, not beyond it
    c = cells(ours=[0.98, 0.88, 0.93, 0.96, 0.90], base=[1.0] * 5)  # differences: mean -0.07, t half-width 0.05
    r = evaluate_gate(gate(kind="parity", effect=0.1), c)
    assert r.lo < -0.1 < r.hi < 0.1 and r.outcome == "unresolved"
    r = evaluate_gate(gate(kind="non_inferiority", effect=0.1), c)
    assert r.lo < -0.1 < r.hi < 0.1 and r.outcome == "unresolved"


def test_t_interval_and_mde_exact():
    r = evaluate_gate(gate(vs=0.0), cells(ours=[0.1, 0.3, 0.2]))
    se = 0.1 / math.sqrt(3)  # sample std (ddof=1) of 0.1, 0.3, 0.2 is 0.1
    t975, t80 = 4.302652729749462, 1.0606601717798214  # t quantiles with n - 1 = 2 degrees of freedom
    assert (r.lo, r.hi) == pytest.approx((0.2 - t975 * se, 0.2 + t975 * se), rel=1e-9)
    assert r.mde == pytest.approx((t975 + t80) * se, rel=1e-9)
    assert (r.n, r.detail) == (3, "paired t over 3 seeds")


@pytest.mark.parametrize("vals, mean", [([0.7], 0.7), ([], math.nan)])
def test_fewer_than_two_seeds_give_an_unbounded_unresolved_result(vals, mean):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no seeds: NaN without numpy's empty-mean warning
        r = evaluate_gate(gate(vs=0.0), cells(ours=vals))
    assert (r.outcome, r.n, r.lo, r.hi, r.mde) == ("unresolved", len(vals), -math.inf, math.inf, math.inf)
    assert r.mean == pytest.approx(mean, nan_ok=True)
    assert r.detail == f"{len(vals)} paired seed(s): an interval needs at least 2"


# ---- bootstrap ---------------------------------------------------------------------------------------------


def test_seed_bootstrap_is_deterministic_and_matches_the_t_interval_on_many_seeds():
    d = np.random.default_rng(5).normal(0.3, 1.0, 60)
    c = cells(ours=list(d), base=[0.0] * 60)
    r = evaluate_gate(gate(method="bootstrap"), c)
    assert r.detail == "paired bootstrap over 60 seeds" and r.mean == pytest.approx(d.mean())
    again = evaluate_gate(gate(method="bootstrap"), c)
    assert (again.lo, again.hi) == (r.lo, r.hi)  # a fixed generator: the same data, the same interval
    # a 2.5 % / 97.5 % percentile interval: each half close to the t interval's. With this data and the
    # fixed generator the halves are 0.95 and 1.00 of it; 1.7 % / 98.3 % quantiles would give 1.03 and 1.06,
    # 10 % / 90 % 0.63 and 0.66
    half = stats.t.ppf(0.975, 59) * d.std(ddof=1) / math.sqrt(60)
    assert 0.9 * half < r.mean - r.lo < 1.02 * half and 0.9 * half < r.hi - r.mean < 1.02 * half
    z, zp = stats.norm.ppf(0.975), stats.norm.ppf(0.8)
    assert r.mde == pytest.approx((r.hi - r.lo) / 2 * (z + zp) / z, rel=1e-12)  # (z_α/2 + z_power) · se


def test_seed_bootstrap_resamples_every_seed():
    # one seed carries the whole effect: resamples that can draw it reach above the mean
    r = evaluate_gate(gate(method="bootstrap", vs=0.0), cells(ours=[3.0, 0.0, 0.0]))
    assert r.mean == pytest.approx(1.0) and r.lo == 0.0 and r.hi == pytest.approx(3.0)


def _item_cells(ours_items, base_items, metrics=None):
    c = {"ours": {}, "base": {}}
    for s, (a, b) in enumerate(zip(ours_items, base_items)):
        c["ours"][s] = Measured(items={"m": list(a)}, metrics=dict(metrics or {}))
        c["base"][s] = Measured(items={"m": list(b)}, metrics=dict(metrics or {}))
    return c


def test_item_bootstrap_resamples_items_within_each_seed():
    # per seed: one outlier item (20) among 19 zeros, so every seed's mean difference is exactly 1
    items = [[20.0] + [0.0] * 19] * 3
    r = evaluate_gate(gate(method="bootstrap"), _item_cells(items, [[0.0] * 20] * 3))
    assert r.detail == "paired bootstrap over 3 seeds and items" and r.mean == pytest.approx(1.0)
    # the seeds agree exactly, so all the spread comes from resampling items (all of them, outlier included)
    assert r.lo < 1.0 < r.hi
    # a resample's mean is (outlier draws in 3 x 20 items) / 3, Binomial(60, 1/20) / 3: a 95 % range of
    # about [0, 2.3]; resampling one item per seed instead would give means in {0, 6.7, 13.3, 20}
    assert r.hi - r.lo < 3.0


def test_item_bootstrap_direction_lower_flips_the_item_differences():
    items_o, items_b = [[0.0, 1.0, 2.0]] * 2, [[1.0, 2.0, 3.0]] * 2
    r = evaluate_gate(gate(method="bootstrap", direction="lower"), _item_cells(items_o, items_b))
    assert r.mean == pytest.approx(1.0) and r.lo == pytest.approx(1.0) and r.hi == pytest.approx(1.0)


def test_bootstrap_mean_comes_from_the_items_it_resamples():
    # the metric is both a scalar (the per-seed value) and items: the interval is over the items,
    # so the reported mean must be the items' mean difference and lie inside that interval
    c = _item_cells([[1.0, 1.2, 1.1]] * 3, [[0.0, 0.0, 0.0]] * 3)
    for s in range(3):
        c["ours"][s].metrics["m"] = 5.0
        c["base"][s].metrics["m"] = 0.0
    r = evaluate_gate(gate(method="bootstrap"), c)
    assert r.mean == pytest.approx(1.1) and r.lo <= r.mean <= r.hi


def test_bootstrap_falls_back_to_seeds_when_items_do_not_pair():
    c = _item_cells([[1.0, 2.0], [1.5, 2.5]], [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])  # 2 vs 3 items per seed
    r = evaluate_gate(gate(method="bootstrap"), c)
    assert r.detail == "paired bootstrap over 2 seeds" and r.mean == pytest.approx(1.75)
    assert (r.lo, r.hi) == pytest.approx((1.5, 2.0))  # resampling 2 seeds: means 1.5, 1.75 or 2
    c = _item_cells([[1.0], [2.0]], [[0.0], [0.0]])
    del c["base"][1].items["m"]
    c["base"][1].metrics["m"] = 0.0
    assert evaluate_gate(gate(method="bootstrap"), c).detail == "paired bootstrap over 2 seeds"


# ---- preconditions -----------------------------------------------------------------------------------------


def test_precondition_threshold_is_inclusive_and_reports_what_it_judged():
    c = cells(ctl=[0.5, 0.7, 0.9])
    assert evaluate_precondition(Precondition("p", "ctl", "m", ">=", 0.5, over="every"), c).ok
    assert evaluate_precondition(Precondition("p", "ctl", "m", "<=", 0.9, over="every"), c).ok
    assert not evaluate_precondition(Precondition("p", "ctl", "m", "<=", 0.6), c).ok  # mean 0.7
    chk = evaluate_precondition(Precondition("p", "ctl", "m", ">=", 0.6), c)
    assert chk == Check("p", True, "ctl.m mean 0.7 (mean >= 0.6)")
    thirds = cells(ctl=[1 / 3, 2 / 3])
    chk = evaluate_precondition(Precondition("p", "ctl", "m", "<=", 0.123456, over="every"), thirds)
    assert chk == Check("p", False, "ctl.m per seed [0.3333 0.6667] (every <= 0.123456)")
    chk = evaluate_precondition(Precondition("q", "ctl", "m", ">=", 2.0, over="any"), thirds)
    assert chk == Check("q", False, "ctl.m per seed [0.3333 0.6667] (any >= 2)")


def test_precondition_over_mean_is_not_over_any():
    c = cells(ctl=[0.1, 0.1, 0.9])  # one seed passes, the mean does not
    assert not evaluate_precondition(Precondition("p", "ctl", "m", ">=", 0.5), c).ok
    assert evaluate_precondition(Precondition("p", "ctl", "m", ">=", 0.5, over="any"), c).ok


def test_precondition_nan_seeds_never_pass():
    c = cells(ctl=[float("nan"), 0.1])
    assert not evaluate_precondition(Precondition("p", "ctl", "m", ">=", 0.5, over="any"), c).ok
    assert not evaluate_precondition(Precondition("p", "ctl", "m", ">=", 0.0), c).ok  # mean is NaN
    assert evaluate_precondition(Precondition("p", "ctl", "m", ">=", 0.0, over="any"), c).ok


def test_precondition_missing_arm_or_seeds_is_a_failed_check_with_a_reason():
    c = cells(ctl=[0.9])
    assert evaluate_precondition(Precondition("p", "nope", "m", ">=", 0.0), c) == Check(
        "p", False, "no arm named 'nope'; arms are ['ctl']"
    )
    assert evaluate_precondition(Precondition("p", "ctl", "x", ">=", 0.0), c) == Check(
        "p", False, "arm 'ctl' seed 0 did not report metric 'x' (it reported ['m'])"
    )
    assert evaluate_precondition(Precondition("p", "e", "m", ">=", 0.0), {"e": {}}) == Check(
        "p", False, "arm 'e' has no seeds"
    )


# ---- decide ------------------------------------------------------------------------------------------------


def _result(name, outcome_, headline=False):
    return GateResult(gate(name=name, headline=headline), outcome_, 3, 0.5, 0.25, 0.75, 0.1)


def test_without_headline_flags_the_first_gate_is_the_headline():
    assert decide([_result("a", "met"), _result("b", "failed")], [])[0] == "partial"
    assert decide([_result("a", "failed"), _result("b", "met")], [])[0] == "not reproduced"
    assert decide([_result("a", "unresolved"), _result("b", "met")], [])[0] == "inconclusive"


def test_decide_reasons_are_exact():
    gates = [_result("a", "met", True), _result("b", "failed")]
    assert decide(gates, []) == ("partial", "a met (+0.5 [+0.25, +0.75], n=3); b failed (+0.5 [+0.25, +0.75], n=3)")
    checks = [Check("c1", False, "too low"), Check("ok", True, "fine"), Check("c2", False, "no seeds")]
    assert decide(gates[:1], checks) == (
        "inconclusive", "precondition failed — c1: too low; c2: no seeds. Gates: a met (+0.5 [+0.25, +0.75], n=3)"
    )
    with pytest.raises(ValueError, match="^a recipe needs at least one gate$"):
        decide([], [])


# ---- plateau -----------------------------------------------------------------------------------------------


def test_plateau_default_window_is_a_tenth_of_the_curve_at_least_two():
    # the last two points equal the two before them; the three before the last three do not
    tail = [0.0, 0.0, 0.5, 0.5, 0.5, 0.5]
    c20, c30 = [1.0] * 14 + tail, [1.0] * 24 + tail
    assert plateaued(c20) and not plateaued(c20, window=3)  # 20 points: window 2
    assert not plateaued(c30) and plateaued(c30, window=2)  # 30 points: window 3


def test_plateau_needs_two_windows_and_compares_the_last_two():
    assert plateaued([1.0, 0.0, 0.5, 0.5], window=2)  # exactly two windows: judged, flat at the end
    assert not plateaued([0.5, 0.5, 0.5], window=2)  # fewer than two windows: cannot tell
    # long curve: the window before the last is c[-4:-2], not something counted from the start
    assert plateaued([9.0, 9.0, 0.0, 0.0, 0.0, 0.0, 5.0, 5.0, 5.0, 5.0], window=2)
    assert not plateaued([5.0, 5.0, 5.0, 5.0, 5.0, 9.0, 0.0, 0.0], window=2)


def test_plateau_tolerance_is_relative_to_the_range_and_inclusive():
    assert plateaued([3.0, 1.0, 2.0, 2.0, 1.5, 1.5], window=2, rel_tol=0.25)  # |1.5 - 2| = 0.25 · range 2
    assert not plateaued([3.0, 1.0, 2.0, 2.0, 1.4, 1.4], window=2, rel_tol=0.25)
    assert plateaued([2.0, 1.0, 2.0, 2.0, 1.5, 1.5], window=2, rel_tol=0.5)  # range 1 exactly: 0.5 <= 0.5
    assert not plateaued([1.0, 0.0, 1.0, 1.0, 0.0, 0.0], window=2)  # range 1, a full-range step
    assert plateaued([4.0] * 6)  # a flat curve has plateaued
    assert plateaued([float("nan"), 1.0, 1.0, float("inf"), 1.0, 1.0])  # non-finite points are dropped


# ---- Measured, Gate, GateResult, Check: values and serialisation -------------------------------------------


def test_measured_round_trip_and_defaults():
    m = Measured(metrics={"a": 1.0}, items={"a": [0.0], "b": [1.0, 3.0]}, curves={"loss": [2.0, 1.0]},
                 info={"note": "x"})
    back = Measured.from_dict(m.to_dict())
    assert back == m and back.names() == ["a", "b"]
    assert Measured.from_dict({}) == Measured()
    assert Measured(items={"b": [1, 3]}).value("b") == 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an empty item list is NaN, without numpy's empty-mean warning
        assert math.isnan(Measured(items={"b": []}).value("b"))
    with pytest.raises(KeyError, match="zz"):
        Measured(metrics={"a": 1.0}).value("zz")


def test_measured_coerce_messages():
    with pytest.raises(TypeError, match=r"^arm x returned non-numeric metrics \{'b': 'str'\}; return a Measured"):
        Measured.coerce({"a": 1, "b": "no"}, "arm x")
    with pytest.raises(TypeError, match="^arm x must return a Measured or a dict of metrics, got list$"):
        Measured.coerce([1.0], "arm x")
    with pytest.raises(TypeError, match="^arm x: metric names must be non-empty strings, got ''$"):
        Measured.coerce({"": 1.0}, "arm x")
    with pytest.raises(TypeError, match="got 3"):
        Measured.coerce(Measured(metrics={3: 1.0}), "arm x")  # type: ignore[dict-item]


def test_gate_describe_is_exact():
    assert gate(effect=0.05).describe() == "ours beats base by ≥ 0.05 on m (higher is better)"
    assert gate(kind="non_inferiority", effect=0.02, direction="lower").describe() == (
        "ours is within 0.02 of base or better on m (lower is better)"
    )
    assert gate(kind="parity", effect=0.1, vs=1 / 3).describe() == (
        "ours is within ±0.1 of 0.333333 on m (higher is better)"  # a constant is shown like the effect, :g
    )


def test_invalid_gate_and_precondition_messages():
    with pytest.raises(ValueError, match="gate 'g': unknown kind 'better'"):
        gate(kind="better")
    with pytest.raises(ValueError, match="gate 'g': method must be 't' or 'bootstrap', got 'z'"):
        gate(method="z")
    with pytest.raises(ValueError, match="precondition 'p': op must be '>=' or '<=', got '>'"):
        Precondition("p", "a", "m", ">", 0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="precondition 'p': over must be mean/every/any, got 'all'"):
        Precondition("p", "a", "m", ">=", 0.0, over="all")  # type: ignore[arg-type]
    with pytest.raises(KeyError, match=r"no arm named 'x'; arms are \['base', 'ours'\]"):
        evaluate_gate(gate(arm="x"), cells(ours=[1.0], base=[1.0]))


def test_gate_result_and_check_round_trip():
    r = GateResult(gate(), "met", 3, 0.5, 0.25, 0.75, 0.1, "paired t over 3 seeds")
    assert GateResult.from_dict(r.to_dict()) == r
    d = r.to_dict()
    del d["detail"]
    assert GateResult.from_dict(d).detail == ""
    assert Check("c", 1, "d").to_dict() == {"name": "c", "ok": True, "detail": "d"}  # type: ignore[arg-type]
    assert Check("c", 0).to_dict()["ok"] is False  # type: ignore[arg-type]


def test_converged_on_every_seed_is_the_every_seed_precondition_and_one_bad_seed_fails_it():
    pre = converged_on_every_seed("ae", "curve plateaued")
    assert pre == Precondition("ae converged", "ae", "converged", ">=", 1.0, over="every", why="curve plateaued")
    named = converged_on_every_seed("gen", "why", name="generator converged", metric="ae_converged")
    assert (named.name, named.metric) == ("generator converged", "ae_converged")
    cells = {"ae": {0: Measured({"converged": 1.0}), 1: Measured({"converged": 0.0}), 2: Measured({"converged": 1.0})}}
    assert evaluate_precondition(pre, cells).ok is False  # the mean (0.67) would hide the seed that did not converge
