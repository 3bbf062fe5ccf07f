"""Perceiver resampler and the Gaussian-mixture head (DiCoDe parts)."""

import math

import torch

from isthmus.nn.mixture_head import MixtureDensityHead
from isthmus.nn.resampler import PerceiverResampler


def test_resampler_output_shape_is_independent_of_input_length():
    torch.manual_seed(0)
    r = PerceiverResampler(in_dim=10, dim=16, n_queries=3, depth=2, heads=2)
    for n in (1, 5, 40):
        assert r(torch.randn(2, n, 10)).shape == (2, 3, 16)


def test_resampler_ignores_input_order_so_callers_must_add_positions():
    torch.manual_seed(0)
    r = PerceiverResampler(in_dim=10, dim=16, n_queries=3, depth=2, heads=2).eval()
    x = torch.randn(2, 7, 10)
    assert torch.allclose(r(x), r(x[:, torch.randperm(7)]), atol=1e-5)


def test_mixture_with_one_component_is_the_gaussian_nll():
    torch.manual_seed(0)
    head = MixtureDensityHead(in_dim=5, out_dim=3, k=1)
    h, x = torch.randn(4, 5), torch.randn(4, 3)
    _, mu, var = head.params(h)
    ref = torch.distributions.Normal(mu[:, 0], var[:, 0].sqrt()).log_prob(x).sum(-1)
    torch.testing.assert_close(head.log_prob(h, x), ref)
    torch.testing.assert_close(head.nll(h, x), -(ref / 3).mean())


def test_mixture_head_recovers_both_modes_of_a_bimodal_target():
    torch.manual_seed(0)
    head = MixtureDensityHead(in_dim=1, out_dim=1, k=2)
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    h = torch.ones(512, 1)
    for _ in range(300):
        x = torch.where(torch.rand(512, 1) < 0.5, -2.0, 2.0) + 0.1 * torch.randn(512, 1)
        loss = head.nll(h, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    s = head.sample(h, generator=torch.Generator().manual_seed(0))[:, 0]
    assert abs((s < 0).float().mean().item() - 0.5) < 0.1
    assert abs(s[s < 0].mean().item() + 2) < 0.2 and abs(s[s > 0].mean().item() - 2) < 0.2
    # the best mixture's NLL is log 2 + ½ log(2πe·0.01) ≈ −0.19 nats (one Gaussian can reach only ≈ 1.7)
    assert loss.item() < math.log(2) + 0.5 * math.log(2 * math.pi * math.e * 0.01) + 0.1
