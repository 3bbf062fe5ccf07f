"""Codebook features layer: top-k cosine codes, straight-through gradient, losses, dead-code reset, insertion,
forcing codes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from isthmus.interp import HookError, capture
from isthmus.interp.codebook import CodebookLayer, insert_codebooks
from isthmus.interp.toy import ToyConfig, ToyTransformer

torch.set_num_threads(1)


def _model() -> ToyTransformer:
    return ToyTransformer(ToyConfig(vocab_size=12, n_ctx=10, n_layers=2, d_model=16, n_heads=2)).eval()


def test_topk_cosine_codes_are_summed():
    layer = CodebookLayer(dim=2, n_codes=3, k=2)
    with torch.no_grad():
        layer.codebook.copy_(torch.tensor([[10.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
    a = torch.tensor([[1.0, 0.9], [-1.0, 0.1]])
    out = layer(a)
    # cosine, not inner product: code 0's large norm does not make it win for a = (-1, .1)
    assert sorted(layer.last_codes[0].tolist()) == [0, 1] and sorted(layer.last_codes[1].tolist()) == [1, 2]
    torch.testing.assert_close(out, torch.tensor([[10.0, 1.0], [-1.0, 1.0]]))


def test_straight_through_and_codebook_gradients():
    torch.manual_seed(0)
    layer = CodebookLayer(dim=4, n_codes=8, k=1)
    a = torch.randn(5, 4, requires_grad=True)
    w = torch.randn(5, 4)
    (layer(a) * w).sum().backward()
    torch.testing.assert_close(a.grad, w)           # identity gradient to the input
    used = layer.last_codes.reshape(-1).unique()
    assert layer.codebook.grad[used].abs().sum() > 0  # task gradient reaches the chosen codes only
    unused = torch.ones(8, dtype=torch.bool)
    unused[used] = False
    assert layer.codebook.grad[unused].abs().sum() == 0
    layer.codebook.grad = None
    a2 = torch.randn(5, 4)
    layer(a2)
    loss = layer.loss()
    torch.testing.assert_close(loss, F.mse_loss(layer.codebook[layer.last_codes].sum(-2), a2))
    loss.backward()
    assert layer.codebook.grad.abs().sum() > 0


def test_dead_code_reset_reseeds_unused_codes():
    torch.manual_seed(0)
    layer = CodebookLayer(dim=3, n_codes=6, k=1, reset_every=2, rho=0.0).train()
    with torch.no_grad():
        layer.codebook.copy_(torch.eye(3).repeat(2, 1) * torch.tensor([[1.0]] * 3 + [[-1.0]] * 3))
    a = torch.rand(20, 3) + 0.1  # positive: codes 3..5 (negative axes) never win
    before = layer.codebook.detach().clone()
    layer(a)
    layer(a)
    assert layer.n_reset == 3
    now = layer.codebook.detach()
    assert not torch.equal(now[3:], before[3:]) and torch.equal(now[:3], before[:3])
    # the re-seeded codes are rows of the batch (rho = 0)
    assert all(bool((a == row).all(1).any()) for row in layer.codebook[3:].detach())


def test_insert_replaces_the_point_and_trains_with_the_model():
    torch.manual_seed(0)
    model = _model()
    tokens = torch.randint(0, 12, (4, 10))
    with capture(model, ["blocks.0.hook_mlp_out"]) as acts:
        model(tokens)
    books = insert_codebooks(model, ["blocks.0.hook_mlp_out", "blocks.1.hook_attn_out"], n_codes=16, k=2,
                             dim=16, init=None)
    assert set(books.points()) == {"blocks.0.hook_mlp_out", "blocks.1.hook_attn_out"}
    assert any(p is books["blocks.0.hook_mlp_out"].codebook for p in model.parameters())
    with capture(model, ["blocks.0.hook_mlp_out"]) as after:
        model(tokens)
    layer = books["blocks.0.hook_mlp_out"]
    torch.testing.assert_close(after["blocks.0.hook_mlp_out"], layer.codebook[layer.last_codes].sum(-2).detach())
    assert not torch.allclose(after["blocks.0.hook_mlp_out"], acts["blocks.0.hook_mlp_out"])
    assert books.loss() > 0
    books.remove()
    with capture(model, ["blocks.0.hook_mlp_out"]) as removed:
        model(tokens)
    torch.testing.assert_close(removed["blocks.0.hook_mlp_out"], acts["blocks.0.hook_mlp_out"])
    with pytest.raises(HookError, match="read-only"):
        insert_codebooks(model, ["blocks.0.attn.hook_result"], dim=16, attach=False)
    with pytest.raises(ValueError, match="dim"):
        insert_codebooks(model, ["blocks.0.hook_mlp_out"], attach=False)


def test_init_from_activations_and_per_head_point():
    model = _model()
    tokens = torch.randint(0, 12, (3, 10))
    with capture(model, ["blocks.0.attn.hook_z"]) as acts:
        model(tokens)
    books = insert_codebooks(model, ["blocks.0.attn.hook_z"], n_codes=8, k=1, init=acts, attach=False)
    layer = books["blocks.0.attn.hook_z"]
    assert layer.dim == 8  # per-head width (B, T, H, dh)
    flat = acts["blocks.0.attn.hook_z"].reshape(-1, 8)
    assert all(bool((flat == row).all(1).any()) for row in layer.codebook.detach())
    with torch.no_grad():
        model(tokens)
    assert layer.last_codes.shape == (3, 10, 2, 1)


def test_force_pins_codes_at_masked_positions_only():
    torch.manual_seed(0)
    model = _model()
    books = insert_codebooks(model, ["blocks.1.hook_mlp_out"], n_codes=16, k=1, dim=16)
    tokens = torch.randint(0, 12, (2, 10))
    with torch.no_grad():
        base = model(tokens)
        free = books["blocks.1.hook_mlp_out"].last_codes.clone()
        mask = torch.zeros(2, 10, dtype=torch.bool)
        mask[0, 5] = True
        ids = torch.full((2, 10), 3)
        with books.force("blocks.1.hook_mlp_out", ids, mask):
            forced = model(tokens)
            got = books["blocks.1.hook_mlp_out"].last_codes
    assert got[0, 5, 0] == 3 and torch.equal(got[~mask], free[~mask])
    assert books["blocks.1.hook_mlp_out"].forced is None
    # last layer's MLP: only the forced position's logits can change
    keep = torch.ones(2, 10, dtype=torch.bool)
    keep[0, 5] = False
    torch.testing.assert_close(forced[keep], base[keep])
    with pytest.raises(ValueError, match="code ids"):
        with books.force("blocks.1.hook_mlp_out", torch.full((2, 10), 99), mask):
            pass
