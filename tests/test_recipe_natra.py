"""Recipe-specific logic of seed 21 (natra): the splits, the direction-validity check, the oracle control."""

import numpy as np
import pytest

from isthmus.data import DataNotFoundError
from isthmus.recipes.gates import Measured
from isthmus.recipes.natra import ARMS, NaTra, Settings, make_splits


def test_declaration_has_one_headline_and_every_arm_must_converge():
    r = NaTra()
    heads = [g for g in r.gates if g.headline]
    assert len(heads) == 1 and (heads[0].arm, heads[0].vs, heads[0].metric) == ("natra", "photometric", "acc_shifted")
    conv = {p.arm for p in r.preconditions if p.metric == "converged"}
    assert conv == set(ARMS) == set(r.arms(Settings()))
    assert r.min_seeds >= 3 and r.modes["record"].seeds >= r.min_seeds


def test_splits_are_disjoint_paired_and_the_shift_darkens():
    s = Settings(n_train=40, n_val=10, n_pool=30, n_test=20)
    try:
        d = make_splits(s, 0)
    except DataNotFoundError as exc:
        pytest.skip(str(exc).splitlines()[0])
    sizes = {k: len(d[k][0]) for k in ("train", "val", "pool", "test", "shifted")}
    assert sizes == {"train": 40, "val": 10, "pool": 30, "test": 20, "shifted": 20}
    np.testing.assert_array_equal(d["test"][1], d["shifted"][1])  # the same digits, relit
    assert d["shifted"][0].mean() < d["test"][0].mean() - 0.1
    # no digit image is shared between labelled train and test (albedo compared)
    tr, te = d["train"][2].reshape(40, -1), d["test"][2].reshape(20, -1)
    assert not any(np.allclose(a, b) for a in tr for b in te)
    again = make_splits(s, 0)
    np.testing.assert_array_equal(again["train"][0], d["train"][0])


def _cells(erm_clean, erm_shift, oracle_shift):
    m = lambda c, s: Measured(metrics={"acc_clean": c, "acc_shifted": s, "shift_drop": c - s})  # noqa: E731
    return {
        "erm": {i: m(erm_clean, erm_shift[i]) for i in range(len(erm_shift))},
        "oracle": {i: m(erm_clean, oracle_shift[i]) for i in range(len(erm_shift))},
    }


def test_oracle_control_measures_the_share_of_the_gap_closed():
    r = NaTra()
    ok = r.checks(Settings(), _cells(0.9, [0.5, 0.6], [0.8, 0.8]))[0]  # closes 75 % and 67 %
    assert ok.ok and "0.708" in ok.detail
    bad = r.checks(Settings(), _cells(0.9, [0.5, 0.5], [0.6, 0.6]))[0]  # closes 25 %
    assert not bad.ok


def test_every_classifier_arm_decays_its_lr_and_the_generator_warms_up():
    s = NaTra.modes["record"]
    assert s.schedule == "cosine" and s.ae_warmup > 0 and s.min_direction_change > 0
