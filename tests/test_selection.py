"""Feature-based data selection (isthmus.interp.selection): Jaccard, pooling, ranking, baselines."""

import numpy as np
import pytest
import torch

from isthmus.interp import selection as sel

torch.set_num_threads(1)


def test_generalized_jaccard_values():
    proto = torch.tensor([1.0, 2.0, 0.0])
    x = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 3.0], [0.5, 1.0, 0.0], [2.0, 4.0, 0.0]])
    j = sel.generalized_jaccard(x, proto)
    assert torch.allclose(j, torch.tensor([1.0, 0.0, 0.5, 0.5]))
    # unlike cosine, Jaccard sees scale: x[2] and x[3] are collinear with proto
    assert torch.allclose(sel.cosine_to(x[2:], proto), torch.ones(2))
    with pytest.raises(ValueError, match="non-negative"):
        sel.generalized_jaccard(-x, proto)


def test_mean_pool_is_a_mean_not_a_sum():
    vals = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    ids = torch.tensor([0, 0, 1])
    assert sel.mean_pool(vals, ids).tolist() == [[2.0, 0.0], [0.0, 2.0]]
    assert sel.mean_pool(vals, ids, 3)[2].tolist() == [0.0, 0.0]  # an example with no tokens


def test_select_top_share_and_ties():
    s = np.array([0.1, 0.9, 0.5, 0.9, 0.2])
    assert sel.select_top(s, k=3).tolist() == [1, 3, 2]
    assert sel.select_top(s, share=0.5).tolist() == [1, 3, 2]  # ceil(2.5)
    with pytest.raises(ValueError):
        sel.select_top(s, share=0.0)


def test_on_task_share():
    assert sel.on_task_share([0, 2, 3], ["a", "b", "a", "b"], "a") == pytest.approx(2 / 3)


def test_tfidf_ranks_the_lexically_closest_first():
    pool = ["x y z", "q r s", "x y w", "q q q"]
    scores = sel.tfidf_scores(pool, ["x y", "y z"])
    assert set(sel.select_top(scores, k=2).tolist()) == {0, 2}
    assert scores[3] == 0.0


def test_encode_pooled_and_similarity_pick_the_target_examples():
    from isthmus.interp.sae import SAEConfig, SparseAutoEncoder

    torch.manual_seed(0)
    sae = SparseAutoEncoder(SAEConfig(d_in=4, d_sae=8, bottleneck_config={"k": 2}))
    with torch.no_grad():
        sae.W_enc.zero_()
        sae.W_enc[:4] = torch.eye(4)
        sae.b_dec.zero_()
    # examples 0, 1: tokens along axes 0/1 (like the target); 2, 3: along axes 2/3
    toks = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [1.0, 0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0],
                         [0, 0, 1.0, 0]])
    ids = torch.tensor([0, 0, 1, 2, 2, 3])
    z = sel.encode_pooled(sae, toks, ids)
    target = sel.encode_pooled(sae, torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]), torch.tensor([0, 0]))
    for metric in ("jaccard", "cosine"):
        scores = sel.similarity_scores(z, target, metric)
        assert set(sel.select_top(scores, share=0.5).tolist()) == {0, 1}
    assert sel.similarity_scores(z, target, "jaccard")[0] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        sel.similarity_scores(z, target, "euclid")
