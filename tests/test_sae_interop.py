"""SAELens / sparsify folders ↔ isthmus: the installed peers write, isthmus loads, encode/decode agree to
1e-5, and back (isthmus writes, the peer loads). Every parameter is randomised (biases, thresholds, skip
weights included), so a transposed or dropped tensor would show. Skips cleanly without the peers.

SAELens SAEs are trained here with SAELens' own training classes (``training_forward_pass`` + Adam, the
step its runner takes; the runner itself needs a TransformerLens model) and saved with
``save_inference_model``, as its runner does; randomised inference SAEs cover the remaining architectures."""

from __future__ import annotations

import json

import pytest
import torch

from isthmus.interp.interop import InteropError
from isthmus.interp.sae import SAEConfig, SparseAutoEncoder
from isthmus.interp.transcoder import Transcoder

torch.set_num_threads(1)
D, M = 16, 64


def _randomise(module: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.is_floating_point():
                p.copy_(torch.randn(p.shape, generator=g) * (0.5 if "b_" in name or "bias" in name else 1.0))


def _x(n: int = 64, d: int = D) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(1))


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-5), float((a - b).abs().max())


# ---- SAELens ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sl():
    return pytest.importorskip("sae_lens")


def _saelens_sae(sl, arch: str):
    if arch == "topk":
        return sl.TopKSAE(sl.TopKSAEConfig(d_in=D, d_sae=M, k=5))
    if arch == "standard":
        return sl.StandardSAE(sl.StandardSAEConfig(d_in=D, d_sae=M))
    if arch == "standard_nobias":
        return sl.StandardSAE(sl.StandardSAEConfig(d_in=D, d_sae=M, apply_b_dec_to_input=False))
    return sl.JumpReLUSAE(sl.JumpReLUSAEConfig(d_in=D, d_sae=M))


@pytest.mark.parametrize("arch", ["topk", "standard", "standard_nobias", "jumprelu"])
def test_saelens_folder_loads_with_equal_encode_decode(sl, tmp_path, arch):
    peer = _saelens_sae(sl, arch)
    _randomise(peer)
    if arch == "jumprelu":
        with torch.no_grad():
            peer.threshold.copy_(torch.rand(M) * 0.8)  # thresholds must be >= 0
    peer.save_model(tmp_path / "sl")
    ours = SparseAutoEncoder.from_saelens(tmp_path / "sl")
    x = _x()
    with torch.no_grad():
        z_peer, z_ours = peer.encode(x), ours.encode(x)
        _close(z_ours, z_peer)
        assert 0 < int((z_ours != 0).sum()) < z_ours.numel()  # some latents fire, not all
        _close(ours.decode(z_peer), peer.decode(z_peer))
        _close(ours(x).recon, peer(x))
    # ... and back: isthmus writes, SAELens loads the same function
    ours.to_saelens(tmp_path / "back")
    again = sl.SAE.load_from_disk(tmp_path / "back")
    with torch.no_grad():
        _close(again.encode(x), z_peer)
        _close(again(x), peer(x))


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "standard"])
def test_sae_trained_by_saelens_loads_with_equal_outputs(sl, tmp_path, arch):
    from sae_lens.saes.sae import TrainStepInput

    torch.manual_seed(0)
    classes = {"topk": (sl.TopKTrainingSAE, sl.TopKTrainingSAEConfig, {"k": 5}),
               "batchtopk": (sl.BatchTopKTrainingSAE, sl.BatchTopKTrainingSAEConfig, {"k": 5}),
               "standard": (sl.StandardTrainingSAE, sl.StandardTrainingSAEConfig, {})}
    cls, cfg_cls, extra = classes[arch]
    peer = cls(cfg_cls(d_in=D, d_sae=M, **extra)).train()
    data = _x(2048) @ torch.randn(D, D, generator=torch.Generator().manual_seed(2))
    opt = torch.optim.Adam(peer.parameters(), lr=3e-3)
    coeffs = {"l1": 1e-3} if arch == "standard" else {}
    for step in range(60):
        out = peer.training_forward_pass(TrainStepInput(sae_in=data[step * 32 % 2048:][:256], coefficients=coeffs,
                                                        dead_neuron_mask=None, n_training_steps=step,
                                                        is_logging_step=False))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    peer.save_inference_model(tmp_path / "sl")
    inference = sl.SAE.load_from_disk(tmp_path / "sl")
    ours = SparseAutoEncoder.from_saelens(tmp_path / "sl")
    x = data[:128]
    with torch.no_grad():
        z = inference.encode(x)
        assert 0 < int((z != 0).sum()) < z.numel()
        _close(ours.encode(x), z)
        _close(ours(x).recon, inference(x))
        ours.to_saelens(tmp_path / "back")
        _close(sl.SAE.load_from_disk(tmp_path / "back")(x), inference(x))


@pytest.mark.parametrize("bottleneck,cfg", [("sae_topk", {"k": 4}), ("sae_relu", {}), ("sae_jumprelu", {}),
                                            ("sae_batchtopk", {"k": 4})])
def test_isthmus_sae_round_trips_through_saelens(sl, tmp_path, bottleneck, cfg):
    ours = SparseAutoEncoder(SAEConfig(d_in=D, d_sae=M, bottleneck=bottleneck, bottleneck_config=cfg))
    _randomise(ours, 3)
    if bottleneck == "sae_batchtopk":  # an estimated inference threshold, as after training
        ours.bottleneck.threshold.fill_(0.7)
    ours.eval()
    ours.to_saelens(tmp_path / "sl", metadata={"hook_name": "blocks.1.hook_resid_pre"})
    peer = sl.SAE.load_from_disk(tmp_path / "sl")
    x = _x()
    with torch.no_grad():
        _close(peer.encode(x), ours.encode(x))
        _close(peer(x), ours(x).recon)
        back = SparseAutoEncoder.from_saelens(tmp_path / "sl")
        _close(back(x).recon, ours(x).recon)


def test_saelens_transcoders_both_ways(sl, tmp_path):
    for cls, cfg_cls, skip in [(sl.Transcoder, sl.TranscoderConfig, False),
                               (sl.SkipTranscoder, sl.SkipTranscoderConfig, True)]:
        peer = cls(cfg_cls(d_in=D, d_sae=M, d_out=12, apply_b_dec_to_input=False))
        _randomise(peer, 5)
        peer.save_model(tmp_path / cls.__name__)
        ours = SparseAutoEncoder.from_saelens(tmp_path / cls.__name__)
        assert isinstance(ours, Transcoder) and ours.config.skip is skip and ours.config.d_out == 12
        x = _x()
        with torch.no_grad():
            _close(ours.encode(x), peer.encode(x))
            _close(ours.predict(x), peer(x))
        ours.to_saelens(tmp_path / f"{cls.__name__}-back")
        with torch.no_grad():
            _close(sl.SAE.load_from_disk(tmp_path / f"{cls.__name__}-back")(x), peer(x))


def test_saelens_refusals_say_what_to_do(tmp_path):
    sae = SparseAutoEncoder(SAEConfig(d_in=D, d_sae=M, bottleneck="sae_batchtopk", bottleneck_config={"k": 4}))
    with pytest.raises(InteropError, match="threshold"):
        sae.to_saelens(tmp_path / "a")  # never trained: no inference threshold
    topafa = SparseAutoEncoder(SAEConfig(d_in=D, d_sae=M, bottleneck="sae_topafa"))
    with pytest.raises(InteropError, match="no SAELens"):
        topafa.to_saelens(tmp_path / "b")
    ok = SparseAutoEncoder(SAEConfig(d_in=D, d_sae=M, bottleneck_config={"k": 4}))
    ok.to_saelens(tmp_path / "c")
    cfg = json.loads((tmp_path / "c" / "cfg.json").read_text())
    (tmp_path / "c" / "cfg.json").write_text(json.dumps({**cfg, "normalize_activations": "layer_norm"}))
    with pytest.raises(InteropError, match="normalize_activations"):
        SparseAutoEncoder.from_saelens(tmp_path / "c")


# ---- sparsify --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sp():
    return pytest.importorskip("sparsify")


def _sparsify_out(coder, x):
    with torch.no_grad():
        enc = coder.encode(x)
        dense = torch.zeros(x.shape[0], coder.num_latents).scatter(1, enc.top_indices, enc.top_acts)
        return dense, coder(x).sae_out


@pytest.mark.parametrize("transcode,skip", [(False, False), (True, False), (True, True), (False, True)])
def test_sparsify_folder_loads_and_round_trips(sp, tmp_path, transcode, skip):
    coder = sp.SparseCoder(D, sp.SparseCoderConfig(k=5, num_latents=M, transcode=transcode, skip_connection=skip))
    _randomise(coder, 7)
    coder.set_decoder_norm_to_unit_norm()
    coder.save_to_disk(tmp_path / "sp")
    ours = SparseAutoEncoder.from_sparsify(tmp_path / "sp")
    assert isinstance(ours, Transcoder) == (transcode or skip)
    x = _x()
    z_peer, out_peer = _sparsify_out(coder, x)
    with torch.no_grad():
        _close(ours.encode(x), z_peer)
        _close(ours(x).recon, out_peer)
    ours.to_sparsify(tmp_path / "back")
    again = sp.SparseCoder.load_from_disk(tmp_path / "back")
    z2, out2 = _sparsify_out(again, x)
    _close(z2, z_peer)
    _close(out2, out_peer)


def test_isthmus_topk_to_sparsify_and_refusals(sp, tmp_path):
    ours = SparseAutoEncoder(SAEConfig(d_in=D, d_sae=M, bottleneck_config={"k": 6})).eval()
    _randomise(ours, 9)
    ours.normalize_decoder_()
    ours.to_sparsify(tmp_path / "sp")
    z, out = _sparsify_out(sp.SparseCoder.load_from_disk(tmp_path / "sp"), _x())
    with torch.no_grad():
        _close(z, ours.encode(_x()))
        _close(out, ours(_x()).recon)
    with pytest.raises(InteropError, match="TopK"):
        SparseAutoEncoder(SAEConfig(d_in=D, d_sae=M, bottleneck="sae_relu")).to_sparsify(tmp_path / "x")


def test_documented_layout_without_the_peer(tmp_path):
    """The sparsify layout written by hand from its documented format (cfg.json + sae.safetensors) loads."""
    from isthmus.io import save_tensors

    g = torch.Generator().manual_seed(0)
    w_enc, b_enc, w_dec, b_dec = (torch.randn(M, D, generator=g), torch.randn(M, generator=g),
                                  torch.randn(M, D, generator=g), torch.randn(D, generator=g))
    w_dec = w_dec / w_dec.norm(dim=1, keepdim=True)
    tmp_path.joinpath("cfg.json").write_text(json.dumps({"activation": "topk", "expansion_factor": 4,
                                                         "normalize_decoder": True, "num_latents": M, "k": 3,
                                                         "multi_topk": False, "skip_connection": False,
                                                         "transcode": False, "d_in": D}))
    save_tensors(tmp_path / "sae.safetensors", {"encoder.weight": w_enc, "encoder.bias": b_enc, "W_dec": w_dec,
                                                "b_dec": b_dec})
    sae = SparseAutoEncoder.from_sparsify(tmp_path)
    x = _x()
    pre = torch.relu((x - b_dec) @ w_enc.t() + b_enc)
    vals, idx = pre.topk(3, dim=1)
    expect = torch.zeros_like(pre).scatter(1, idx, vals) @ w_dec + b_dec
    with torch.no_grad():
        _close(sae(x).recon, expect)
