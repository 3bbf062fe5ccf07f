"""BatchTopK / Matryoshka through the COO sparse kernels: identical losses, gradients, codes, threshold and
dead-latent tracking to the dense autograd path (float64), with and without AuxK, plain and transcoder."""

from __future__ import annotations

import pytest
import torch

from isthmus.bottlenecks.sparse_backward import batchtopk_encode, coo_decode, dense_from_coo
from isthmus.interp.sae import SAEConfig, SparseAutoEncoder
from isthmus.interp.transcoder import Transcoder, TranscoderConfig


def _pair(bottleneck: str, aux: bool, transcoder: bool = False, seed: int = 0):
    """Two copies (same weights; deepcopy would drop the decoder's gradient hook), sparse and dense path."""
    cfg = dict(d_in=12, d_sae=48, bottleneck=bottleneck, bottleneck_config={"k": 3, "dead_steps": 1},
               aux_k=8 if aux else 0)
    models = []
    for sparse_backward in (True, False):
        torch.manual_seed(seed)
        c = {**cfg, "sparse_backward": sparse_backward}
        model = Transcoder(TranscoderConfig(**c, d_out=10, skip=True)) if transcoder else SparseAutoEncoder(SAEConfig(**c))
        model = model.double().train()
        g = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            model.b_enc.copy_(torch.randn(model.b_enc.shape, generator=g) * 0.3)
            model.b_dec.copy_(torch.randn(model.b_dec.shape, generator=g) * 0.3)
            if transcoder:
                model.W_skip.copy_(torch.randn(model.W_skip.shape, generator=g) * 0.1)
        models.append(model)
    sparse, dense = models
    if aux:  # some dead latents, so AuxK is active in both
        for m in (sparse, dense):
            m.bottleneck.steps_since_fired[::3] = 5
    return sparse, dense


@pytest.mark.parametrize("bottleneck", ["sae_batchtopk", "sae_matryoshka"])
@pytest.mark.parametrize("aux", [False, True])
def test_coo_path_matches_dense_autograd(bottleneck, aux):
    sparse, dense = _pair(bottleneck, aux)
    assert sparse.uses_batch_sparse_path and not dense.uses_batch_sparse_path
    x = torch.randn(20, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    outs = [m(x) for m in (sparse, dense)]
    assert set(outs[0].losses) == set(outs[1].losses) and ("auxk" in outs[0].losses) == aux
    for key in outs[1].losses:
        torch.testing.assert_close(outs[0].losses[key], outs[1].losses[key], msg=key)
    torch.testing.assert_close(outs[0].latent, outs[1].latent)
    torch.testing.assert_close(outs[0].recon, outs[1].recon)
    for o in outs:
        o.loss.backward()
    for (name, a), (_, b) in zip(sparse.named_parameters(), dense.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=f"gradient of {name} differs")
    torch.testing.assert_close(sparse.bottleneck.threshold, dense.bottleneck.threshold)
    assert torch.equal(sparse.bottleneck.steps_since_fired, dense.bottleneck.steps_since_fired)
    assert float(outs[0].stats["l0"]) <= 3.0 + 1e-9


def test_coo_path_for_a_matryoshka_skip_transcoder():
    sparse, dense = _pair("sae_matryoshka", aux=True, transcoder=True)
    x = torch.randn(16, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    y = torch.randn(16, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    a, b = sparse.compute_loss((x, y)), dense.compute_loss((x, y))
    torch.testing.assert_close(a.loss, b.loss)
    a.loss.backward()
    b.loss.backward()
    for (name, p), (_, q) in zip(sparse.named_parameters(), dense.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


def test_coo_kernels_gradcheck_and_rows_without_entries():
    g = torch.Generator().manual_seed(4)
    w_enc, b_enc = torch.randn(10, 6, generator=g, dtype=torch.float64), torch.randn(10, generator=g, dtype=torch.float64)
    w_dec = torch.randn(10, 6, generator=g, dtype=torch.float64)
    x = torch.randn(5, 6, generator=g, dtype=torch.float64)
    x[2] = -100 * w_enc.sum(0) / w_enc.sum(0).norm()  # a row that likely keeps nothing
    for t in (w_enc, b_enc, w_dec, x):
        t.requires_grad_()

    def f(x, w_enc, b_enc, w_dec):
        vals, rows, cols, _, _ = batchtopk_encode(x, w_enc, b_enc, 8)
        return coo_decode(vals, rows, cols, w_dec, 5)
    assert torch.autograd.gradcheck(f, (x, w_enc, b_enc, w_dec))
    vals, rows, cols, _, _ = batchtopk_encode(x, w_enc, b_enc, 8)
    z = dense_from_coo(vals, rows, cols, 5, 10)
    torch.testing.assert_close(coo_decode(vals, rows, cols, w_dec, 5), z @ w_dec)
