"""Recipe maestro (seed 28): the helpers and the near-tie-robust PCA check (smoke: tests/test_recipes_smoke.py)."""

import numpy as np
import torch
from torch import nn

from isthmus.nn import LowRankLinear, set_rank_fraction, svd_truncated_copy
from isthmus.recipes.maestro import pca_match, spectrum_data


def test_spectrum_data_has_the_promised_covariance():
    x, q = spectrum_data(20000, 0)
    cov = (x.T @ x) / len(x)
    var = torch.diagonal(q.T @ cov @ q)
    assert torch.allclose(var[:4], 0.85 ** torch.arange(4.0), rtol=0.05)


def test_rank_fraction_and_svd_truncation():
    torch.manual_seed(0)
    net = nn.Sequential(LowRankLinear(in_dim=8, out_dim=6), nn.ReLU(), nn.Linear(6, 3))
    assert set_rank_fraction(net, 0.5) == {"0": 3}
    x = torch.randn(4, 8)
    torch.testing.assert_close(net.eval()(x), net[2](torch.relu(net[0](x, rank=3))))
    set_rank_fraction(net, None)
    dense = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))
    full = svd_truncated_copy(dense, 1.0, exclude=("2",))
    assert isinstance(full[0], LowRankLinear) and isinstance(full[2], nn.Linear) and isinstance(dense[0], nn.Linear)
    torch.testing.assert_close(full(x), dense(x), atol=1e-5, rtol=1e-5)
    assert svd_truncated_copy(dense, 0.2)[0].rank == 2  # ceil(0.2 * 6)


def _layer_with(U: torch.Tensor) -> LowRankLinear:
    layer = LowRankLinear(in_dim=U.shape[0], out_dim=U.shape[0], rank=U.shape[1], bias=False, ordered_dropout=False)
    with torch.no_grad():  # x ↦ U Uᵀ x: an orthogonal projection onto span(U[:, :b]) at rank b
        layer.U.copy_(U)
        layer.V.copy_(U)
    return layer.eval()


def test_pca_match_is_zero_for_pca_and_flags_a_swapped_order():
    x, _ = spectrum_data(4000, 0)
    pcs = torch.linalg.svd(x, full_matrices=False).Vh.T[:, :16].contiguous()
    exact = pca_match(_layer_with(pcs), x)
    assert np.abs(exact["gaps"]).max() < 1e-4 and exact["angles"].max() < 0.5
    swapped = pcs[:, [1, 0, *range(2, 16)]]  # components 1 and 2 in the wrong order
    res = pca_match(_layer_with(swapped), x)
    assert res["angles"][0] > 80  # the worst angle sees the swap at prefix 1 ...
    assert 0.0 < res["gaps"][0] < 0.1 and np.abs(res["gaps"][1:]).max() < 1e-4  # ... the gap sees a near-tie cost
    reversed_ = pca_match(_layer_with(pcs.flip(1)), x)  # the least important components first
    assert reversed_["gaps"].max() > 0.3
