"""Layer routers (FiRST): threshold extremes, per-row skipping, gradients in soft mode."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from isthmus.nn.router import LayerRouter, RoutedLayers, masked_mean


def _stack(n: int = 3, d: int = 16, seed: int = 0) -> RoutedLayers:
    torch.manual_seed(seed)
    layers = [nn.TransformerEncoderLayer(d, 2, 32, dropout=0.0, batch_first=True) for _ in range(n)]
    return RoutedLayers(layers, d, hidden=8).eval()


@torch.no_grad()  # eval + no_grad: the same (fast-path) kernels the stack uses below
def _plain(stack: RoutedLayers, h: torch.Tensor, run: list[int]) -> torch.Tensor:
    for i in run:
        h = stack.layers[i](h)
    return h


def test_masked_mean_hand_case():
    h = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    assert torch.allclose(masked_mean(h, torch.tensor([[1, 1, 0]])), torch.tensor([[2.0, 3.0]]))
    assert torch.allclose(masked_mean(h), h.mean(1))
    with pytest.raises(ValueError, match="mask shape"):
        masked_mean(h, torch.ones(1, 2))


def test_threshold_zero_skips_nothing_and_equals_the_base_stack():
    stack, h = _stack(), torch.randn(4, 5, 16)
    with torch.no_grad():
        out = stack(h, threshold=0.0)
        # routers pushed hard towards "skip": threshold 0 must still keep every layer
        for r in stack.routers.values():
            r.net[2].bias.fill_(-1e4)
        out_neg = stack(h, threshold=0.0)
    assert out.kept.all() and out_neg.kept.all()
    assert torch.equal(out.hidden, _plain(stack, h, [0, 1, 2]))
    assert torch.equal(out_neg.hidden, out.hidden)


def test_threshold_one_skips_every_routed_layer_even_when_p_rounds_to_one():
    torch.manual_seed(0)
    layers = [nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True) for _ in range(3)]
    stack, h = RoutedLayers(layers, 16, routed=[0, 2], hidden=8).eval(), torch.randn(4, 5, 16)
    with torch.no_grad():
        for r in stack.routers.values():
            r.net[2].bias.fill_(1e4)  # sigmoid is exactly 1.0 in float32
        out = stack(h, threshold=1.0)
    assert out.kept.tolist() == [[False, True, False]] * 4
    assert torch.equal(out.hidden, _plain(stack, h, [1]))
    assert out.skipped.tolist() == [2.0] * 4


def test_per_row_skips_equal_running_each_sequence_alone():
    stack, h = _stack(), torch.randn(3, 5, 16)
    skip = torch.tensor([[True, False, False], [False, False, True], [False, False, False]])
    with torch.no_grad():
        out = stack(h, skip=skip)
        for b in range(3):
            run = [i for i in range(3) if not skip[b, i]]
            assert torch.allclose(out.hidden[b], _plain(stack, h[b:b + 1], run)[0], atol=1e-6)
    assert out.kept.tolist() == (~skip).tolist()


def test_hard_decisions_follow_the_router_probabilities():
    stack, h = _stack(), torch.randn(8, 5, 16)
    with torch.no_grad():
        out = stack(h, threshold=0.5)
    # the first layer's decision reads the stack input, so it can be checked directly
    p0 = torch.sigmoid(stack.routers["0"](h))
    assert torch.equal(out.kept[:, 0], p0 > 0.5)
    assert torch.allclose(out.keep_prob[:, 0], p0)


def test_soft_mode_mixes_and_sends_gradients_to_every_router():
    stack, h = _stack(), torch.randn(4, 5, 16)
    for p in stack.layers.parameters():
        p.requires_grad_(False)
    out = stack(h, mode="soft")
    (out.hidden.pow(2).mean() + 0.01 * out.keep_prob.mean()).backward()
    for name, r in stack.routers.items():
        grads = [p.grad for p in r.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), name
        assert sum(float(g.abs().sum()) for g in grads) > 0, name
    # soft mode at p = 1 for every layer equals the plain stack
    with torch.no_grad():
        for r in stack.routers.values():
            r.net[2].weight.zero_()
            r.net[2].bias.fill_(1e4)
        assert torch.allclose(stack(h, mode="soft").hidden, _plain(stack, h, [0, 1, 2]), atol=1e-5)


def test_bad_arguments_are_refused():
    stack, h = _stack(), torch.randn(2, 5, 16)
    with pytest.raises(ValueError, match="threshold"):
        stack(h, threshold=1.5)
    with pytest.raises(ValueError, match="mode"):
        stack(h, mode="medium")
    with pytest.raises(ValueError, match="skip"):
        stack(h, skip=torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="routed"):
        RoutedLayers([nn.Identity()], 4, routed=[3])
    with pytest.raises(ValueError):
        LayerRouter(0)
