"""Device and precision: explicit ``--device cpu --dtype bfloat16`` through every ``isthmus sae`` command,
``train_sae`` moving batches to the SAE's device and dtype, autocast, and clear errors for absent devices.

No GPU is lent to these tests; CUDA/MPS paths are exercised through the same code with device "cpu"
(what differs on a GPU is only where tensors live, which the "meta"-free checks below pin down)."""

from __future__ import annotations

import json

import pytest
import torch

from isthmus.cli.main import main
from isthmus.interp.precision import autocast, resolve_device, resolve_dtype
from isthmus.interp.sae import SAEConfig, SparseAutoEncoder
from isthmus.interp.sae_train import SAETrainConfig, train_sae

torch.set_num_threads(1)
TOY = ["--toy-train", "epochs=3", "n_train=1024"]


def test_resolve_device_and_dtype():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    assert resolve_dtype("bfloat16") is torch.bfloat16 and resolve_dtype(None) is torch.float32
    with pytest.raises(ValueError, match="float32"):
        resolve_dtype("int8")
    with pytest.raises(ValueError, match="not a device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            resolve_device("cuda")


@pytest.mark.parametrize("bottleneck,cfg", [("sae_topk", {"k": 4}), ("sae_batchtopk", {"k": 4}),
                                            ("sae_jumprelu", {}), ("sae_matryoshka", {"k": 4})])
def test_bf16_autocast_trains_every_bottleneck_with_fp32_state(bottleneck, cfg):
    torch.manual_seed(0)
    x = torch.randn(512, 16) @ torch.randn(16, 16)
    sae = SparseAutoEncoder(SAEConfig(d_in=16, d_sae=64, bottleneck=bottleneck, bottleneck_config=cfg))
    hist = train_sae(sae, x, SAETrainConfig(steps=30, batch_size=64, lr=3e-3, autocast="bfloat16", log_every=10))
    assert all(p.dtype == torch.float32 for p in sae.parameters())
    assert hist[-1]["fvu"] < hist[0]["fvu"]  # it learns under autocast
    with autocast("cpu", "bfloat16"):  # the encoder GEMM really runs in bf16 (the sparse kernel included)
        pre = torch.addmm(sae.b_enc, x[:4], sae.W_enc.t())
    assert pre.dtype == torch.bfloat16


def test_train_sae_moves_batches_to_the_sae_device_and_dtype():
    """A bfloat16 store batch feeding a float64 SAE: every batch is converted, no dtype error on step 1."""
    seen = []

    class Source:
        def __iter__(self):
            for _ in range(3):
                yield torch.randn(32, 8, dtype=torch.bfloat16)

    sae = SparseAutoEncoder(SAEConfig(d_in=8, d_sae=32, bottleneck_config={"k": 2})).double()
    orig = sae.compute_loss

    def spy(x):
        seen.append((x.dtype, x.device))
        return orig(x)
    sae.compute_loss = spy
    train_sae(sae, Source(), SAETrainConfig(steps=5, batch_size=32, fused_adam=False))
    assert seen and all(s == (torch.float64, sae.W_enc.device) for s in seen)


def test_cli_every_sae_command_takes_device_and_dtype(tmp_path, monkeypatch):
    monkeypatch.setenv("ISTHMUS_CACHE", str(tmp_path / "cache"))
    store, sae_dir, out, site = (tmp_path / n for n in ("acts", "sae", "eval", "site"))
    dev = ["--device", "cpu", "--dtype", "bfloat16"]
    assert main(["sae", "harvest", "--model", "toy:induction", *TOY, "--points", "blocks.1.hook_resid_pre",
                 "--out", str(store), "--max-tokens", "1500", "--no-progress", *dev]) == 0
    assert json.loads((store / "manifest.json").read_text())["dtype"] == "bfloat16"
    args = ["sae", "train", "--store", str(store), "--d-sae", "128", "k=4", "steps=40", "batch_size=128",
            "lr=1e-3", "--out", str(sae_dir), "--no-progress", "--checkpoint-every", "20", *dev]
    assert main(args) == 0
    m = json.loads((sae_dir / "metrics.json").read_text())
    assert m["device"] == "cpu" and m["dtype"] == "bfloat16" and m["fvu"] < 1
    log = [json.loads(line) for line in (sae_dir / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 40 and {"l0", "fvu", "dead_fraction", "tokens_per_s"} <= set(log[-1])
    assert (sae_dir / "checkpoints" / "latest.json").is_file()
    before = SparseAutoEncoder.from_pretrained(sae_dir).W_dec
    assert main(args + ["--resume"]) == 0  # finished run: resumes to the end, same weights
    assert torch.equal(SparseAutoEncoder.from_pretrained(sae_dir).W_dec, before)
    assert main(["sae", "evaluate", str(sae_dir), "--store", str(store), "--host", "toy:induction", *TOY,
                 "--host-tokens", "500", "--out", str(out), "--no-progress", *dev]) == 0
    r = json.loads((out / "metrics.json").read_text())["saes"]["sae"]
    assert r["splice"]["zero_ablated_loss"] > r["splice"]["clean_loss"]
    assert main(["sae", "dashboard", str(sae_dir), "--store", str(store), "--out", str(site),
                 "--max-features", "3", *dev]) == 0
    assert (site / "index.html").is_file()


def test_cli_refuses_a_missing_gpu_with_a_message(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises((SystemExit, ValueError)) as exc:
        rc = main(["sae", "train", "--store", str(tmp_path), "--d-sae", "8", "--out", str(tmp_path / "o"),
                   "--device", "cuda"])
        raise SystemExit(rc)
    text = str(exc.value) + capsys.readouterr().err
    assert "CUDA" in text
