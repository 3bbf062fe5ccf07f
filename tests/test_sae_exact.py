"""``SparseAutoEncoder`` pinned to hand computations, written against the survivors of
`make mutate MODULES=sae` (docs/mutation.md): the encoder input and decoder, both reconstruction
losses, AuxK's value and when it applies, which latents count as fired, the statistics, Matryoshka
prefixes, the skip term of a transcoder, and the config's and forward's messages. Each of the three
forward paths (TopK sparse kernels, BatchTopK COO kernels, dense autograd) is checked.
"""

from __future__ import annotations

import re

import pytest
import torch

from isthmus.bottlenecks import BOTTLENECKS
from isthmus.config import ConfigError
from isthmus.interp import sae as sae_module
from isthmus.interp.sae import SAEConfig, SparseAutoEncoder
from isthmus.interp.transcoder import Transcoder, TranscoderConfig

torch.set_num_threads(1)


def make(bottleneck="sae_topk", d=8, m=32, seed=0, **kw):
    torch.manual_seed(seed)
    bcfg = kw.pop("bottleneck_config", {"k": 4})
    sae = SparseAutoEncoder(SAEConfig(d_in=d, d_sae=m, bottleneck=bottleneck, bottleneck_config=bcfg, **kw))
    with torch.no_grad():
        sae.b_dec.copy_(torch.randn(d) * 0.3)  # a non-zero pre-bias: encode must subtract it
        sae.b_enc.copy_(torch.randn(m) * 0.1)
    return sae


PATHS = [("sae_topk", True), ("sae_topk", False), ("sae_batchtopk", True), ("sae_batchtopk", False)]


# ---- config ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kw, msg", [
    ({"d_in": 0}, "SAEConfig: d_in and d_sae must be >= 1, got 0, 512"),
    ({"d_sae": 0}, "SAEConfig: d_in and d_sae must be >= 1, got 64, 0"),
    ({"recon_loss": "l1"}, "SAEConfig.recon_loss must be 'mse' or 'fvu', got 'l1'"),
    ({"aux_k": -1}, "SAEConfig: aux_k and aux_coeff must be >= 0"),
    ({"aux_coeff": -0.5}, "SAEConfig: aux_k and aux_coeff must be >= 0"),
])
def test_invalid_sae_configs_are_named(kw, msg):
    with pytest.raises(ConfigError, match="^" + re.escape(msg) + "$"):
        SAEConfig(**kw)


def test_invalid_bottleneck_lists_the_sparse_ones():
    sparse = [n for n in BOTTLENECKS.names() if n.startswith("sae_")]
    assert {"sae_topk", "sae_batchtopk", "sae_jumprelu"} <= set(sparse)
    with pytest.raises(ConfigError, match="^" + re.escape(f"SAEConfig.bottleneck must be one of {sparse}, got 'vq'")):
        SAEConfig(bottleneck="vq")


def test_smallest_valid_configs():
    SAEConfig(d_in=1, d_sae=1, bottleneck_config={"k": 1}, recon_loss="fvu", aux_k=0, aux_coeff=0.0)
    sae = SparseAutoEncoder(SAEConfig(d_in=4, d_sae=16, bottleneck_config={"k": 3}), d_sae=32)  # an override
    assert sae.config.d_sae == 32 and sae.W_dec.shape == (32, 4)
    assert sae.bottleneck.config.k == 3 and sae.bottleneck.config.latent_dim == 32


# ---- encode / decode / forward ---------------------------------------------------------------------------


@pytest.mark.parametrize("bottleneck, normalize", [("sae_topk", True), ("sae_topafa", False), ("sae_relu", False)])
def test_encode_is_the_bottleneck_of_the_centred_input_with_decoder_and_input_norms(bottleneck, normalize):
    sae = make(bottleneck, normalize_decoder=normalize, sparse_backward=False,
               bottleneck_config={"k": 4} if bottleneck == "sae_topk" else {})
    with torch.no_grad():
        sae.W_dec.mul_(torch.rand(32, 1) + 0.5)  # rows of unequal norm (used when not normalised)
    x = torch.randn(6, 8)
    xc = x - sae.b_dec
    pre = xc @ sae.W_enc.t() + sae.b_enc
    dn = None if normalize else sae.W_dec.norm(dim=1)
    sae.eval()
    with torch.no_grad():
        expected = sae.bottleneck(pre, decoder_norm=dn, input_norm=xc.norm(dim=1)).latent
        torch.testing.assert_close(sae.encode(x), expected)
        torch.testing.assert_close(sae(x).latent, expected)
        z = torch.rand(3, 32)
        torch.testing.assert_close(sae.decode(z), z @ sae.W_dec + sae.b_dec)
    assert (sae._decoder_norm() is None) == normalize


@pytest.mark.parametrize("bottleneck, sparse", PATHS)
@pytest.mark.parametrize("recon_loss", ["mse", "fvu"])
def test_reconstruction_loss_exact(bottleneck, sparse, recon_loss):
    sae = make(bottleneck, sparse_backward=sparse, recon_loss=recon_loss, aux_coeff=0.0)
    x = torch.randn(10, 8) * 0.2  # variance below 1: a clamp at 1 would show
    out = sae(x)
    se = ((out.recon - x) ** 2).sum(1).mean()
    if recon_loss == "fvu":
        se = se / ((x - x.mean(0)) ** 2).sum(1).mean()
    torch.testing.assert_close(out.losses["recon"], se)


def _kill(sae, dead):
    """Mark latents ``dead`` (indices) as not having fired for ``dead_steps`` training forwards."""
    bn = sae.bottleneck
    bn.steps_since_fired.zero_()
    bn.steps_since_fired[dead] = bn.config.dead_steps


@pytest.mark.parametrize("bottleneck, sparse", PATHS)
def test_auxk_loss_exact_and_only_in_training(bottleneck, sparse):
    sae = make(bottleneck, sparse_backward=sparse, aux_k=3, aux_coeff=0.25)
    dead = torch.arange(10)
    _kill(sae, dead)
    x = torch.randn(12, 8) * 0.2
    out = sae(x)
    xc = x - sae.b_dec
    pre = (xc @ sae.W_enc.t() + sae.b_enc).detach()
    masked = torch.full_like(pre, float("-inf"))
    masked[:, dead] = pre[:, dead]
    vals, idx = masked.topk(3, dim=1)
    e_hat = torch.einsum("bk,bkd->bd", torch.relu(vals), sae.W_dec.detach()[idx])
    e = (x - out.recon).detach()
    expected = 0.25 * ((e - e_hat) ** 2).sum(1).mean() / ((x - x.mean(0)) ** 2).sum(1).mean()
    torch.testing.assert_close(out.losses["auxk"], expected)
    sae.eval()
    assert "auxk" not in sae(x).losses  # AuxK is a training loss
    sae.train()
    sae_off = make(bottleneck, sparse_backward=sparse, aux_k=3, aux_coeff=0.0)
    _kill(sae_off, dead)
    assert "auxk" not in sae_off(x).losses


@pytest.mark.parametrize("bottleneck, sparse", PATHS)
def test_fired_latents_reset_and_statistics(bottleneck, sparse):
    sae = make(bottleneck, sparse_backward=sparse, aux_coeff=0.0)
    with torch.no_grad():
        sae.b_enc.fill_(-100.0)  # every pre-activation negative: the kept values are all ReLU'd to 0
    x = torch.randn(5, 8) * 0.01
    _kill(sae, torch.arange(8))
    out = sae(x)
    assert sae.bottleneck.steps_since_fired.tolist() == [sae.bottleneck.config.dead_steps + 1] * 8 + [1] * 24
    assert float(out.stats["l0"]) == 0.0 and float(out.stats["dead_fraction"]) == 8 / 32
    with torch.no_grad():
        sae.b_enc.fill_(0.0)
        sae.W_enc.mul_(0.01)  # small positive activations (< 1) for the kept latents
    _kill(sae, torch.arange(8))
    out = sae(torch.randn(5, 8))
    z = out.latent if out.latent is not None else None
    fired = sae.bottleneck.steps_since_fired == 0
    assert float(out.stats["l0"]) == 4.0  # k per row (batch top-k keeps k * B in all)
    if z is not None:
        assert torch.equal(fired, (z > 0).any(0)) and float(z.detach().max()) < 1
    still_dead = sae.bottleneck.steps_since_fired >= sae.bottleneck.config.dead_steps
    assert float(out.stats["dead_fraction"]) == float(still_dead.float().mean()) and still_dead.any()
    if bottleneck == "sae_batchtopk" and sparse:
        assert out.stats["threshold"] == float(sae.bottleneck.threshold)
    sae.eval()
    before = sae.bottleneck.steps_since_fired.clone()
    sae(torch.randn(5, 8))
    assert torch.equal(sae.bottleneck.steps_since_fired, before)  # eval forwards do not count


@pytest.mark.parametrize("bottleneck, sparse", PATHS[:3])
def test_compute_loss_skips_the_dense_code_on_the_fast_paths(bottleneck, sparse):
    sae = make(bottleneck, sparse_backward=sparse)
    x = torch.randn(4, 8)
    out = sae.compute_loss((x, torch.zeros(1)))  # (x, label) batches: the first element is the input
    assert (out.latent is None) == sparse
    torch.testing.assert_close(out.loss, sae.compute_loss(x).loss)
    if bottleneck == "sae_topk" and sparse:
        assert out.codes.shape == (4, 4)


@pytest.mark.parametrize("sparse", [True, False])
@pytest.mark.parametrize("fractions, nested", [([1.0], False), ([0.25, 1.0], True)])
def test_matryoshka_loss_is_the_prefix_reconstruction(sparse, fractions, nested):
    torch.manual_seed(0)
    sae = SparseAutoEncoder(SAEConfig(d_in=8, d_sae=32, bottleneck="sae_matryoshka", sparse_backward=sparse,
                                      aux_coeff=0.0, bottleneck_config={"k": 6, "prefix_fractions": fractions}))
    x = torch.randn(7, 8)
    out = sae(x)
    assert ("matryoshka" in out.losses) == nested
    if nested:
        z = sae(x, dense_latent=True).latent.detach()
        prefix = z[:, :8] @ sae.W_dec[:8] + sae.b_dec
        torch.testing.assert_close(out.losses["matryoshka"], ((prefix - x) ** 2).sum(1).mean())


@pytest.mark.parametrize("bottleneck, sparse", PATHS)
def test_transcoder_skip_term_is_added(bottleneck, sparse):
    torch.manual_seed(0)
    tc = Transcoder(TranscoderConfig(d_in=8, d_out=6, d_sae=32, bottleneck=bottleneck, sparse_backward=sparse,
                                     bottleneck_config={"k": 4}, skip=True, aux_coeff=0.0))
    with torch.no_grad():
        tc.W_skip.copy_(torch.randn(6, 8))
    x, y = torch.randn(5, 8), torch.randn(5, 6)
    out = tc(x, target=y)
    z = out.latent.detach()
    torch.testing.assert_close(out.recon, z @ tc.W_dec + tc.b_dec + x @ tc.W_skip.t())


def test_forward_rejects_the_wrong_shape_by_name():
    sae = make()
    for bad in (torch.randn(8), torch.randn(3, 7)):
        msg = f"SparseAutoEncoder expects (B, 8) activations, got {tuple(bad.shape)}"
        with pytest.raises(ValueError, match="^" + re.escape(msg) + "$"):
            sae(bad)


def test_training_helpers_stay_importable_from_here():
    from isthmus.interp import sae_train

    for name in ("SAETrainConfig", "train_sae", "resample_dead_latents"):
        assert getattr(sae_module, name) is getattr(sae_train, name)
    with pytest.raises(AttributeError, match="^module 'isthmus.interp.sae' has no attribute 'nope'$"):
        sae_module.nope  # noqa: B018


def test_peer_format_round_trips(tmp_path):
    sae = make()
    sae.eval()
    x = torch.randn(3, 8)
    back = SparseAutoEncoder.from_saelens(sae.to_saelens(tmp_path / "lens", metadata={"hook_name": "blocks.0"}))
    torch.testing.assert_close(back(x).recon, sae(x).recon)
    assert "blocks.0" in (tmp_path / "lens" / "cfg.json").read_text()
    back = SparseAutoEncoder.from_sparsify(sae.to_sparsify(tmp_path / "sp"))
    torch.testing.assert_close(back(x).recon, sae(x).recon)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("bottleneck", ["sae_topk", "sae_batchtopk"])
def test_training_forward_keeps_the_firing_mask_on_the_input_device(bottleneck):
    # the fast paths build the fired-latent mask themselves: on the CPU any device default works,
    # on an accelerator it must be the input's (the four device mutants of docs/mutation.md)
    sae = make(bottleneck).cuda()
    out = sae(torch.randn(6, 8, device="cuda"))
    assert out.recon.device.type == "cuda" and int((sae.bottleneck.steps_since_fired == 0).sum()) > 0
