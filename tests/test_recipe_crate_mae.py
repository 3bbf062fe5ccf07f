"""crate-mae recipe: the arms' sizes and the compression read-out."""

import torch

from isthmus.recipes import crate_mae as cm
from isthmus.tasks.masked_pretrain import n_params


def test_the_parameter_matched_mae_is_within_5_percent_and_crate_is_about_a_third():
    s = cm.Settings()
    crate, mae, matched = (n_params(cm.build(a, s)) for a in ("crate_mae", "mae", "mae_matched"))
    assert abs(matched / crate - 1) <= 0.05
    assert 0.20 <= crate / mae <= 0.45


def test_rate_ratio_is_positive_and_finite():
    torch.manual_seed(0)
    r = cm._rate_ratio(cm.build("crate_mae", cm.Settings()).eval(), torch.rand(8, 1, 28, 28))
    assert 0.0 < r < 10.0
