"""ddmi: equal-capacity decoder configs and the convergence measures."""

from __future__ import annotations

import pytest

from isthmus.models.inr_vae import INRVAE
from isthmus.recipes.ddmi import CONFIGS, DDMI, _plateau_db, _plateau_rel


def test_decoders_have_equal_capacity_within_ten_percent():
    p = {a: INRVAE(c).decoder_parameters() for a, c in CONFIGS.items()}
    assert all(abs(v / p["ddmi"] - 1) <= 0.10 for v in p.values())


def test_plateau_measures():
    assert _plateau_db([10.0, 11.0, 12.0, 12.0, 12.0, 12.05]) == pytest.approx(0.05)
    assert _plateau_rel([2.0] * 8 + [1.0, 1.0]) == pytest.approx(1.0)


def test_one_headline_gate():
    assert sum(g.headline for g in DDMI().gates) == 1
