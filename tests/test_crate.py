"""CRATE blocks and the coding rate: the formulas of the authors' code, checked on hand-computable cases."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from isthmus.metrics.coding_rate import coding_rate
from isthmus.models.masked import MAEConfig, MaskedAutoEncoder
from isthmus.nn.crate import ISTA, MSSA, CRATEDecoderBlock, CRATEEncoderBlock, crate_block_params


def test_mssa_has_one_projection_shared_by_queries_keys_and_values():
    torch.manual_seed(0)
    m = MSSA(8, heads=2)
    linears = [mod for mod in m.modules() if isinstance(mod, torch.nn.Linear)]
    assert len(linears) == 2 and m.qkv.weight.shape == (8, 8) and m.qkv.bias is None
    x = torch.randn(3, 5, 8)
    w = (x @ m.qkv.weight.T).reshape(3, 5, 2, 4).transpose(1, 2)  # the same w plays q, k and v
    attn = torch.softmax(w @ w.transpose(-1, -2) / 2.0, -1)
    expect = m.out((attn @ w).transpose(1, 2).reshape(3, 5, 8))
    torch.testing.assert_close(m(x), expect)


def test_ista_step_equals_the_closed_form_and_vanishes_for_large_lambda():
    torch.manual_seed(0)
    ista = ISTA(4, step=0.1, lambd=0.5)
    d = ista.weight.detach()
    x = torch.randn(6, 4)
    expect = torch.relu(x + 0.1 * (x @ d - x @ d.T @ d) - 0.05)  # row form of Dᵀx − DᵀDx
    torch.testing.assert_close(ista(x), expect)
    with torch.no_grad():
        assert float(ISTA(4, step=0.1, lambd=1e6)(x).abs().max()) == 0.0


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), lambd=st.floats(0.0, 2.0, allow_subnormal=False))
def test_ista_step_does_not_raise_the_nonnegative_lasso_objective(seed, lambd):
    g = torch.Generator().manual_seed(seed)
    ista = ISTA(6, step=0.1, lambd=lambd)
    with torch.no_grad():
        d = torch.randn(6, 6, generator=g)
        ista.weight.copy_(d / torch.linalg.matrix_norm(d, 2) * 2.0)  # ‖D‖² = 4 < 1/η: a valid step
    x = torch.rand(5, 6, generator=g)  # a feasible (non-negative) start a = x

    def objective(a):  # ½‖x − D a‖² + λ‖a‖₁ per row (column convention: D a)
        return 0.5 * (x - a @ ista.weight.T).pow(2).sum(1) + lambd * a.abs().sum(1)

    with torch.no_grad():
        assert (objective(ista(x)) <= objective(x) + 1e-5).all()


def test_block_parameter_counts_and_ratio_to_a_vit_mae():
    for block in (CRATEEncoderBlock(16, 4), CRATEDecoderBlock(16, 4)):
        assert sum(p.numel() for p in block.parameters()) == crate_block_params(16)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    crate = MaskedAutoEncoder(MAEConfig(patch=7, dim=64, decoder_dim=64, block="crate"))
    vit = MaskedAutoEncoder(MAEConfig(patch=7, dim=64, decoder_dim=64))
    assert 0.2 <= n(crate) / n(vit) <= 0.45
    x = torch.rand(2, 1, 28, 28)
    layers = crate.encode_layers(x)
    assert len(layers) == 4 and (layers[-1] >= 0).all()  # ISTA output is a ReLU: non-negative codes
    assert torch.isfinite(crate(x).loss)


def test_decoder_block_is_dictionary_then_subtracted_attention():
    torch.manual_seed(0)
    blk = CRATEDecoderBlock(8, 2)
    z = torch.randn(2, 3, 8)
    y = blk.norm1(z) @ blk.dictionary.T
    torch.testing.assert_close(blk(z), y - blk.attn(blk.norm2(y)))


def test_coding_rate_hand_value_duplicates_and_rank():
    eye = torch.eye(4)[None]  # 4 orthonormal tokens in 4-D: Gram = I
    assert coding_rate(eye, eps=0.5) == pytest.approx(2 * math.log(1 + 4 / (4 * 0.5)))
    torch.manual_seed(0)
    z = torch.randn(3, 6, 5)
    assert coding_rate(torch.cat([z, z], 1)) == pytest.approx(coding_rate(z), rel=1e-9)  # duplicated rows
    assert coding_rate(z * 7.0) == pytest.approx(coding_rate(z))  # tokens are normalised first
    low = torch.randn(3, 6, 1) @ torch.randn(1, 5)  # rank 1
    assert coding_rate(low) < coding_rate(z)
    heads = torch.randn(2, 3, 6, 5)
    assert coding_rate(heads) == pytest.approx(sum(coding_rate(heads[:, h]) for h in range(3)))
    with pytest.raises(ValueError):
        coding_rate(z, eps=0.0)
    assert np.isfinite(coding_rate(torch.zeros(1, 3, 4)))


def test_crate_mae_passes_the_conformance_battery(tmp_path):
    from tests.conformance import run_battery

    cfg = MAEConfig(image_size=8, patch=4, dim=8, heads=2, depth=2, decoder_dim=8, decoder_depth=1, block="crate")
    run_battery(lambda: MaskedAutoEncoder(cfg), torch.rand(4, 1, 8, 8), tmp_path)
