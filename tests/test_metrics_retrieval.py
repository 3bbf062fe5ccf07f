"""Retrieval metrics (MRR@k, recall@k, nDCG@k) on hand-computed cases."""

import math

import numpy as np
import pytest
import torch

from isthmus.metrics.retrieval import mrr_at_k, ndcg_at_k, recall_at_k, retrieval_report

# 3 queries × 4 docs; rankings: q0 -> [0,1,2,3], q1 -> [3,2,1,0], q2 -> [1,0,3,2]
S = np.array([[0.9, 0.8, 0.7, 0.6],
              [0.1, 0.2, 0.3, 0.4],
              [0.5, 0.9, 0.1, 0.2]])


def test_single_relevant_index_vector():
    rel = np.array([0, 1, 2])  # ranks 1, 3, 4
    assert mrr_at_k(S, rel, 10) == pytest.approx((1 + 1 / 3 + 1 / 4) / 3)
    assert mrr_at_k(S, rel, 2) == pytest.approx(1 / 3)  # only q0 hits within the top 2
    assert recall_at_k(S, rel, 1) == pytest.approx(1 / 3)
    assert recall_at_k(S, rel, 3) == pytest.approx(2 / 3)
    expected = (1 + 1 / math.log2(4) + 1 / math.log2(5)) / 3  # one relevant doc: IDCG = 1
    assert ndcg_at_k(S, rel, 10) == pytest.approx(expected)


def test_graded_matrix_and_multiple_relevant():
    rel = np.zeros((3, 4))
    rel[0, [1, 3]] = 1          # q0: ranks 2 and 4
    rel[1, 0], rel[1, 3] = 2, 1  # q1: grade 1 at rank 1, grade 2 at rank 4
    rel[2, :] = 0                # q2: no relevant doc -> left out
    assert mrr_at_k(S, rel, 10) == pytest.approx((1 / 2 + 1) / 2)
    assert recall_at_k(S, rel, 2) == pytest.approx((1 / 2 + 1 / 2) / 2)
    d0 = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    d1 = (1 + 2 / math.log2(5)) / (2 + 1 / math.log2(3))
    assert ndcg_at_k(S, rel, 10) == pytest.approx((d0 + d1) / 2)
    d0_2 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    d1_2 = 1 / (2 + 1 / math.log2(3))
    assert ndcg_at_k(S, rel, 2) == pytest.approx((d0_2 + d1_2) / 2)


def test_ties_break_by_doc_index_and_torch_inputs():
    s = torch.zeros(2, 3)
    assert mrr_at_k(s, torch.tensor([0, 2]), 3) == pytest.approx((1 + 1 / 3) / 2)
    perfect = retrieval_report(np.eye(5), np.arange(5), ks=(1, 5))
    assert all(v == pytest.approx(1.0) for v in perfect.values()) and len(perfect) == 6


def test_no_relevant_at_all_is_nan_and_bad_inputs_raise():
    assert math.isnan(recall_at_k(S, np.zeros((3, 4)), 2))
    with pytest.raises(ValueError):
        mrr_at_k(S, np.array([0, 1, 9]), 2)
    with pytest.raises(ValueError):
        mrr_at_k(S, np.array([0.0, 1.0, 2.0]), 2)
    with pytest.raises(ValueError):
        mrr_at_k(S, np.array([0, 1, 2]), 0)
    with pytest.raises(ValueError):
        mrr_at_k(S[0], np.array([0]), 1)


def test_reciprocal_ranks_per_query_mean_is_mrr():
    from isthmus.metrics.retrieval import reciprocal_ranks

    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.3], [0.1, 0.2, 0.3]])
    rr = reciprocal_ranks(scores, np.array([2, 1, 0]), k=2)
    np.testing.assert_allclose(rr, [0.5, 1.0, 0.0])  # rank 2, rank 1, outside the top 2
    assert rr.mean() == mrr_at_k(scores, np.array([2, 1, 0]), k=2)
