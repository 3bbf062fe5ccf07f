"""Recipe top-afa-sae (seed 29): the top-AFA selection rule, per-token standardisation, the matched k and the
frontier helper. (The smoke run is the shared parametrized test in test_recipes_smoke.py.)"""

import math

import torch

from isthmus.bottlenecks import BOTTLENECKS
from isthmus.bottlenecks.sparse import afa_coeff_for
from isthmus.recipes.top_afa_sae import (
    Settings,
    build_sae,
    matched_k,
    standardize_tokens,
    topk_frontier,
)

torch.set_num_threads(1)


def test_topk_frontier_interpolates_in_log_l0_and_refuses_to_extrapolate():
    assert topk_frontier(4.0, [(2, 0.2), (4, 0.1), (8, 0.05)]) == 0.1
    assert abs(topk_frontier(2 * 2**0.5, [(2, 0.2), (4, 0.1)]) - 0.15) < 1e-9
    assert math.isnan(topk_frontier(20.0, [(2, 0.2), (8, 0.05)]))


def test_matched_k_rounds_and_clips():
    assert matched_k(3.4, 64) == 3 and matched_k(3.6, 64) == 4
    assert matched_k(0.2, 64) == 1 and matched_k(500.0, 64) == 64


def test_standardize_tokens_gives_norm_sqrt_d():
    x = torch.randn(5, 64) * 7 + 3
    z = standardize_tokens(x)
    assert torch.allclose(z.mean(1), torch.zeros(5), atol=1e-5)
    assert torch.allclose(z.norm(dim=1), torch.full((5,), 63**0.5), atol=1e-3)  # unbiased std: sqrt(d - 1)


def test_topafa_keeps_prefix_whose_norm_matches_input():
    bn = BOTTLENECKS.build("sae_topafa", {"latent_dim": 6, "afa_coeff": 0.0})
    h = torch.tensor([[3.0, 0.0, 4.0, 0.1, -1.0, 0.2], [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]])
    out = bn(h, input_norm=torch.tensor([5.0, 2.0]))
    # sample 0: sorted 4, 3, .2, .1 -> cumulative norms 4, 5, 5.004, ... -> k = 2 (closest to 5)
    assert out.codes.tolist() == [2, 4] and out.latent[0].tolist() == [3.0, 0, 4.0, 0, 0, 0]
    assert int((out.latent[1] != 0).sum()) == 4  # sqrt(4) = 2


def _authors_topafa(acts: torch.Tensor, w_dec: torch.Tensor, x_cent: torch.Tensor) -> torch.Tensor:
    """A transcription of TopAFASAE.forward's selection in SewoongLee/top-afa-sae (training/sae.py)."""
    afa = torch.norm(x_cent, p=2, dim=1, keepdim=True).pow(2)
    dec_scaled = (acts * torch.norm(w_dec, p=2, dim=-1)).pow(2)
    order = torch.argsort(dec_scaled, dim=-1, descending=True)
    cum = torch.cumsum(torch.gather(dec_scaled, -1, order), dim=-1)
    cum[..., -1] = 1e8
    k = torch.abs(cum.sqrt() - afa.sqrt()).argmin(dim=-1) + 1
    mask = torch.zeros_like(acts, dtype=torch.bool).scatter_(
        1, order, torch.arange(acts.shape[1]).unsqueeze(0) < k.unsqueeze(1)
    )
    return acts * mask


def test_topafa_selection_matches_the_authors_code_with_uneven_decoder_norms():
    g = torch.Generator().manual_seed(0)
    x_cent, w_enc = torch.randn(64, 12, generator=g), torch.randn(12, 48, generator=g)
    w_dec = torch.randn(48, 12, generator=g) * torch.rand(48, 1, generator=g).add(0.2)  # rows of unequal norm
    pre = x_cent @ w_enc * 0.15  # small codes, so several latents are needed to reach ‖x − b_dec‖
    bn = BOTTLENECKS.build("sae_topafa", {"latent_dim": 48, "k_max": 48, "afa_coeff": 0.0})
    ours = bn(pre, decoder_norm=w_dec.norm(dim=1), input_norm=x_cent.norm(dim=1)).latent
    theirs = _authors_topafa(torch.relu(pre), w_dec, x_cent)
    assert (ours != 0).sum(1).float().std() > 0  # k really varies across rows
    assert torch.equal(ours, theirs)


def test_afa_loss_balances_reconstruction_as_in_the_authors_code():
    """Authors: mean over batch and dims of (x̂ − x)² + λ·mean_b(‖f‖ − ‖x‖)²; ours sums over dims, so the
    recipe passes λ·d and our loss is d × theirs (b_dec = 0 here, where ‖x − b_dec‖ = ‖x‖)."""
    d, lam = 24, 1.0 / 32
    s = Settings(expansion=4)
    sae = build_sae("sae_topafa", {"k_max": 4 * d, "afa_coeff": afa_coeff_for(lam, d)}, d, s)
    x = standardize_tokens(torch.randn(128, d, generator=torch.Generator().manual_seed(1)))
    out = sae(x)
    gap = (out.latent.norm(dim=1) - x.norm(dim=1)).pow(2).mean()
    assert gap > 0  # a non-trivial AFA term (the discrete k leaves a norm gap)
    assert torch.allclose(out.losses["recon"] / d, (out.recon - x).pow(2).mean(), rtol=1e-5)
    assert torch.allclose(out.losses["afa"] / d, lam * gap, rtol=1e-5)
