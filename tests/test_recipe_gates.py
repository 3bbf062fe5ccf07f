"""The verdict machinery on synthetic per-seed values: paired intervals, outcomes, preconditions, staleness."""

import math

import numpy as np
import pytest

from isthmus.recipes.gates import (
    Check, Gate, Measured, Precondition, decide, evaluate_gate, evaluate_precondition, paired_differences, plateaued,
)


def cells(**arms):
    """cells(ours=[...], base=[...]) -> arm -> seed -> Measured with metric "m"."""
    return {a: {s: Measured(metrics={"m": v}) for s, v in enumerate(vals)} for a, vals in arms.items()}


def gate(**kw):
    return Gate(**{"name": "g", "metric": "m", "arm": "ours", "vs": "base", "headline": True, **kw})


def test_null_effect_with_two_seeds_is_inconclusive():
    c = cells(ours=[0.50, 0.52], base=[0.51, 0.50])
    r = evaluate_gate(gate(effect=0.01), c)
    assert r.outcome == "unresolved" and r.n == 2
    assert decide([r], [])[0] == "inconclusive"


def test_large_paired_effect_with_five_seeds_is_met():
    base = [0.30, 0.45, 0.60, 0.38, 0.52]  # large seed-to-seed spread ...
    ours = [b + 0.10 + e for b, e in zip(base, [0.004, -0.003, 0.002, 0.0, -0.001])]  # ... a tight paired gain
    r = evaluate_gate(gate(effect=0.05), cells(ours=ours, base=base))
    assert r.outcome == "met" and r.n == 5
    assert r.lo > 0 and r.mean == pytest.approx(0.1004)
    assert decide([r], [])[0] == "reproduced"


def test_pairing_is_what_resolves_the_effect():
    """The same numbers judged unpaired would straddle the effect: pairing is the point."""
    base = np.array([0.30, 0.45, 0.60, 0.38, 0.52])
    ours = base + 0.1
    seeds, d = paired_differences(gate(), cells(ours=list(ours), base=list(base)))
    assert seeds == [0, 1, 2, 3, 4] and np.allclose(d, 0.1)
    unpaired_se = math.sqrt(ours.var(ddof=1) / 5 + base.var(ddof=1) / 5)
    assert 2 * unpaired_se > 0.1  # an unpaired test could not resolve it


def test_excluded_effect_is_failed_and_headline_failure_is_not_reproduced():
    base = [0.5, 0.6, 0.7, 0.55, 0.65]
    ours = [b - 0.05 + e for b, e in zip(base, [0.001, -0.002, 0.0, 0.002, -0.001])]
    r = evaluate_gate(gate(effect=0.01), cells(ours=ours, base=base))
    assert r.outcome == "failed" and r.hi < 0.01
    assert decide([r], [])[0] == "not reproduced"


def test_direction_lower_flips_the_sign():
    r = evaluate_gate(gate(direction="lower", effect=0.0), cells(ours=[1.0, 1.1, 0.9], base=[2.0, 2.1, 1.95]))
    assert r.mean == pytest.approx(1.0167, abs=1e-3) and r.outcome == "met"


def test_superiority_needs_a_significant_gain_of_at_least_the_effect():
    # a real gain (interval above 0) whose mean falls short of the effect, while the interval still holds it
    r = evaluate_gate(gate(effect=0.25), cells(ours=[1.15, 1.25, 1.2], base=[1.0, 1.0, 1.0]))
    assert r.lo > 0 and r.mean < 0.25 < r.hi and r.outcome == "unresolved"
    # a mean above the effect whose interval still holds 0
    r = evaluate_gate(gate(effect=0.1), cells(ours=[1.5, 0.9, 1.2], base=[1.0, 1.0, 1.0]))
    assert r.mean >= 0.1 and r.lo < 0 and r.outcome == "unresolved"
    # the same mean with a tight interval: met, though the interval does not clear the effect itself
    r = evaluate_gate(gate(effect=0.2), cells(ours=[1.18, 1.22, 1.21], base=[1.0, 1.0, 1.0]))
    assert r.lo < 0.2 <= r.mean and r.outcome == "met"


def test_non_inferiority_and_parity():
    ours, base = [0.800, 0.812, 0.795, 0.805], [0.802, 0.808, 0.800, 0.803]
    assert evaluate_gate(gate(kind="non_inferiority", effect=0.02), cells(ours=ours, base=base)).outcome == "met"
    assert evaluate_gate(gate(kind="parity", effect=0.02), cells(ours=ours, base=base)).outcome == "met"
    far = [b + 0.2 for b in base]
    assert evaluate_gate(gate(kind="parity", effect=0.02), cells(ours=far, base=base)).outcome == "failed"
    worse = [b - 0.2 for b in base]
    assert evaluate_gate(gate(kind="non_inferiority", effect=0.02), cells(ours=worse, base=base)).outcome == "failed"


def test_gate_against_a_constant():
    r = evaluate_gate(gate(vs=0.5, effect=0.0), cells(ours=[0.7, 0.72, 0.69, 0.71]))
    assert r.outcome == "met" and r.mean == pytest.approx(0.205)


def test_sample_std_with_ddof_1_and_t_quantile():
    d = np.array([0.1, 0.3, 0.2])
    r = evaluate_gate(gate(vs=0.0), cells(ours=list(d)))
    half = 4.302652729911275 * d.std(ddof=1) / math.sqrt(3)  # t(0.975, 2)
    assert r.lo == pytest.approx(0.2 - half) and r.hi == pytest.approx(0.2 + half)
    assert r.mde > half  # the detectable effect adds the power quantile


def test_nan_seeds_are_dropped_from_the_pairs():
    r = evaluate_gate(gate(), cells(ours=[0.9, float("nan"), 0.8], base=[0.1, 0.2, 0.1]))
    assert r.n == 2


def test_bootstrap_uses_items_within_seeds():
    rng = np.random.default_rng(1)
    c = {"ours": {}, "base": {}}
    for s in range(3):
        base = rng.random(200)
        c["base"][s] = Measured(items={"m": list(base)})
        c["ours"][s] = Measured(items={"m": list(base + 0.05 + rng.normal(0, 0.01, 200))})
    r = evaluate_gate(gate(method="bootstrap", effect=0.02), c)
    assert r.outcome == "met" and r.mean == pytest.approx(0.05, abs=0.005) and "items" in r.detail
    assert r.lo < r.mean < r.hi


def test_failed_precondition_forces_inconclusive():
    met = evaluate_gate(gate(effect=0.0), cells(ours=[0.9, 0.91, 0.92], base=[0.1, 0.12, 0.11]))
    assert decide([met], [Check("control", True)])[0] == "reproduced"
    verdict, reason = decide([met], [Check("control trains", False, "acc 0.11")])
    assert verdict == "inconclusive" and "control trains" in reason


def test_partial_when_headline_met_and_another_not():
    c = cells(ours=[0.9, 0.91, 0.92], base=[0.1, 0.12, 0.11])
    head = evaluate_gate(gate(effect=0.0), c)
    other = evaluate_gate(gate(name="g2", headline=False, effect=5.0), c)
    assert other.outcome == "failed"
    assert decide([head, other], [])[0] == "partial"
    assert decide([other, head], [])[0] == "partial"  # the headline flag, not the order, decides


def test_precondition_modes():
    c = cells(ctl=[0.9, 0.85, 0.5])
    assert evaluate_precondition(Precondition("p", "ctl", "m", ">=", 0.7), c).ok
    assert not evaluate_precondition(Precondition("p", "ctl", "m", ">=", 0.7, over="every"), c).ok
    assert evaluate_precondition(Precondition("p", "ctl", "m", "<=", 0.5, over="any"), c).ok
    missing = evaluate_precondition(Precondition("p", "ctl", "other", ">=", 0.0), c)
    assert not missing.ok and "other" in missing.detail


def test_invalid_gates_are_refused():
    with pytest.raises(ValueError, match="direction"):
        gate(direction="up")
    with pytest.raises(ValueError, match="effect"):
        gate(effect=-1)
    with pytest.raises(ValueError, match="margin"):
        gate(kind="parity", effect=0.0)


def test_plateau():
    assert plateaued([1.0, 0.5, 0.3, 0.2, 0.15, 0.12, 0.11, 0.105, 0.102, 0.101, 0.1, 0.1], window=2)
    assert not plateaued([1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3], window=2)
    assert not plateaued([1.0, 0.5])  # too short to tell
