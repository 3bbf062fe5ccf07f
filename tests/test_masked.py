"""ViT parts and the masked autoencoder: patchify round trip, masking keeps exactly the visible patches,
the encoder never sees mask tokens, the loss counts masked patches only."""

import pytest
import torch

from isthmus.models.masked import MAEConfig, MaskedAutoEncoder
from isthmus.nn.vit import SelfAttention, patchify, random_masking, unpatchify


def test_patchify_round_trip_and_layout():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    p = patchify(x, 2)
    assert p.shape == (2, 6, 12)
    torch.testing.assert_close(unpatchify(p, 2, 3, 4, 6), x)
    # the first patch is the top-left 2x2 block of every channel, channel last
    torch.testing.assert_close(p[0, 0].reshape(2, 2, 3).permute(2, 0, 1), x[0, :, :2, :2])
    with pytest.raises(ValueError, match="divisible"):
        patchify(x, 4)


def test_masking_keeps_exactly_the_visible_patches():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 16, 5)
    kept, mask, keep_idx, restore = random_masking(x, 0.75, generator=g)
    assert kept.shape == (3, 4, 5) and mask.shape == (3, 16)
    assert (mask.sum(1) == 12).all()
    for b in range(3):
        visible = torch.nonzero(mask[b] == 0).ravel()
        assert sorted(keep_idx[b].tolist()) == visible.tolist()
        torch.testing.assert_close(kept[b], x[b, keep_idx[b]])
    # restore is the inverse permutation: kept tokens first, gathered back, land where they came from
    order = restore.argsort(1)  # the shuffle
    assert (order[:, :4] == keep_idx).all()
    with pytest.raises(ValueError):
        random_masking(x, 1.0)


def test_causal_attention_ignores_the_future():
    torch.manual_seed(0)
    attn = SelfAttention(8, heads=2, causal=True)
    x = torch.randn(1, 6, 8)
    y = attn(x)
    x2 = x.clone()
    x2[:, 4:] += 10.0
    y2 = attn(x2)
    torch.testing.assert_close(y[:, :4], y2[:, :4])
    assert not torch.allclose(y[:, 4:], y2[:, 4:])


def tiny():
    return MaskedAutoEncoder(MAEConfig(image_size=8, patch=2, dim=16, depth=1, heads=2, decoder_dim=16,
                                       decoder_depth=1, mask_ratio=0.75))


def test_encoder_sees_only_visible_tokens_and_loss_counts_masked_patches():
    torch.manual_seed(0)
    model = tiny()
    seen = []
    model.encoder[0].register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    x = torch.rand(2, 1, 8, 8)
    out = model(x, generator=torch.Generator().manual_seed(1))
    assert seen == [(2, 4, 16)]  # 16 patches, 75 % masked: 4 visible tokens reach the encoder
    assert out.recon.shape == x.shape and out.latent.shape == (2, 16)
    mask = out.stats["mask"]
    # changing pixels of a visible patch changes the loss only through the prediction, not its target
    target = patchify(x, 2)
    pred = patchify(out.recon, 2)
    expected = (((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum()
    torch.testing.assert_close(out.loss, expected)


def test_conformance_shapes_save_load(tmp_path):
    from tests.conformance import check_output_shapes

    torch.manual_seed(0)
    model = tiny()
    check_output_shapes(model, torch.rand(3, 1, 8, 8))
    model.save_pretrained(tmp_path / "mae")
    back = MaskedAutoEncoder.from_pretrained(tmp_path / "mae")
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(back.encode(x), model.eval().encode(x))
    with pytest.raises(ValueError, match="expects"):
        model.encode(torch.rand(2, 1, 6, 6))


def test_block_masking_exact_count_and_contiguous():
    from isthmus.nn.vit import block_masking

    g = torch.Generator().manual_seed(0)
    m = block_masking(4, 0.5, 6, generator=g)
    assert m.shape == (6, 16) and (m.sum(1) == 8).all()
    # contiguous: most masked patches have a masked 4-neighbour
    grid = m.reshape(6, 4, 4)
    nb = torch.zeros_like(grid)
    nb[:, 1:] += grid[:, :-1]
    nb[:, :-1] += grid[:, 1:]
    nb[:, :, 1:] += grid[:, :, :-1]
    nb[:, :, :-1] += grid[:, :, 1:]
    assert ((nb > 0) & (grid > 0)).sum() / grid.sum() > 0.9


def test_cross_block_leaves_the_context_untouched_and_reads_it():
    from isthmus.nn.vit import CrossBlock

    torch.manual_seed(0)
    blk = CrossBlock(8, 2)
    q, ctx = torch.randn(2, 3, 8), torch.randn(2, 5, 8)
    ctx0 = ctx.clone()
    out = blk(q, ctx)
    assert torch.equal(ctx, ctx0) and out.shape == q.shape
    assert not torch.allclose(blk(q, torch.randn(2, 5, 8)), out)  # (a shifted ctx would be undone by the norm)


def test_cae_target_encoder_gets_no_gradient_and_ablation_drops_the_term():
    from isthmus.models.context_ae import CAEConfig, ContextAutoEncoder

    torch.manual_seed(0)
    cfg = CAEConfig(image_size=8, patch=2, dim=16, heads=2, depth=1, regressor_depth=1, decoder_depth=1)
    model = ContextAutoEncoder(cfg)
    x = torch.rand(2, 1, 8, 8)
    out = model(x, generator=torch.Generator().manual_seed(0))
    assert set(out.losses) == {"align", "reconstruction"} and out.stats["mask"].sum(1).tolist() == [8, 8]
    # the align term's gradient reaches the regressor, never the encoder through the target branch
    model.zero_grad()
    out.losses["align"].backward()
    assert model.regressor[0].attn.q.weight.grad.abs().sum() > 0
    assert model.encoder[0].attn.qkv.weight.grad.abs().sum() > 0  # via z_v (the regressor's context) only
    ablation = ContextAutoEncoder(cfg.with_overrides({"align_weight": 0.0}))
    assert set(ablation(x).losses) == {"reconstruction"}
    from tests.conformance import check_output_shapes

    check_output_shapes(model, x)
