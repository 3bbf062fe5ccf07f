"""Recipe top-afa-sae (seed 29): the top-AFA selection rule, per-token standardisation, the matched k and the
frontier helper. (The smoke run is the shared parametrized test in test_recipes_smoke.py.)"""

import math

import torch

from isthmus.bottlenecks import BOTTLENECKS
from isthmus.recipes.top_afa_sae import matched_k, standardize_tokens, topk_frontier

torch.set_num_threads(1)


def test_topk_frontier_interpolates_in_log_l0_and_refuses_to_extrapolate():
    assert topk_frontier(4.0, [(2, 0.2), (4, 0.1), (8, 0.05)]) == 0.1
    assert abs(topk_frontier(2 * 2 ** 0.5, [(2, 0.2), (4, 0.1)]) - 0.15) < 1e-9
    assert math.isnan(topk_frontier(20.0, [(2, 0.2), (8, 0.05)]))


def test_matched_k_rounds_and_clips():
    assert matched_k(3.4, 64) == 3 and matched_k(3.6, 64) == 4
    assert matched_k(0.2, 64) == 1 and matched_k(500.0, 64) == 64


def test_standardize_tokens_gives_norm_sqrt_d():
    x = torch.randn(5, 64) * 7 + 3
    z = standardize_tokens(x)
    assert torch.allclose(z.mean(1), torch.zeros(5), atol=1e-5)
    assert torch.allclose(z.norm(dim=1), torch.full((5,), 63 ** 0.5), atol=1e-3)  # unbiased std: sqrt(d - 1)


def test_topafa_keeps_prefix_whose_norm_matches_input():
    bn = BOTTLENECKS.build("sae_topafa", {"latent_dim": 6, "afa_coeff": 0.0})
    h = torch.tensor([[3.0, 0.0, 4.0, 0.1, -1.0, 0.2], [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]])
    out = bn(h, input_norm=torch.tensor([5.0, 2.0]))
    # sample 0: sorted 4, 3, .2, .1 -> cumulative norms 4, 5, 5.004, ... -> k = 2 (closest to 5)
    assert out.codes.tolist() == [2, 4] and out.latent[0].tolist() == [3.0, 0, 4.0, 0, 0, 0]
    assert int((out.latent[1] != 0).sum()) == 4  # sqrt(4) = 2
