"""Recipe feature-data-selection (seed 32): the planted pool and the BM25 baseline.
(The smoke run is the shared parametrized test in test_recipes_smoke.py.)"""

import numpy as np
import torch

from isthmus.interp.selection import bm25_scores, select_top
from isthmus.recipes.feature_data_selection import FeatureDataSelection, make_pool

torch.set_num_threads(1)


def test_pool_has_keyword_sharing_distractors_with_partly_shared_transitions():
    cfg = FeatureDataSelection.modes["quick"]  # generation only: cheap
    data = make_pool(cfg, 0)
    pool, labels = data["pool"].numpy(), data["labels"]
    assert len(pool) == 2 * cfg.n_topics * cfg.per_task and data["target"].shape[1] == cfg.length
    vocab_of = lambda task: set(np.unique(pool[labels == task]).tolist())  # noqa: E731
    assert vocab_of(0) <= set(range(cfg.n_shared + cfg.n_keywords))  # target stays inside topic 0's tokens
    assert not vocab_of(0) & vocab_of(2) - set(range(cfg.n_shared))  # other topics: other keywords
    big = lambda task: {(a, b) for row in pool[labels == task] for a, b in zip(row[:-1], row[1:])}  # noqa: E731
    shared = len(big(0) & big(1)) / len(big(0))
    assert 0.2 < shared < 0.95  # related, not identical, not disjoint


def test_bm25_ranks_matching_documents_first_and_uses_bigrams():
    pool = ["a b c d", "c d a b", "x y z w", "a b a b"]
    target = ["a b a b a b"]
    s = bm25_scores(pool, target)
    assert s[2] == 0 and s[3] > s[2] and list(select_top(s, k=1)) == [3]
    # unigram BM25 cannot tell "a b c d" from "c d a b"; with bigrams ("c d" vs "d a") it still scores them alike,
    # but "b c" is not in the target while "a b" is in both: equal, and both below the pure "a b" document
    s2 = bm25_scores(pool, target, ngram_range=(1, 2))
    assert s[0] == s[1] and s2[3] > s2[0] and s2[3] > s2[1]


def test_bm25_saturates_term_frequency():
    s = bm25_scores(["a", "a a", "a a a a a a a a", "b"], ["a"])
    assert s[0] < s[1] < s[2] and s[3] == 0
    assert s[2] < 2.5 * s[0]  # bounded by (k1 + 1) x idf, however often the term repeats
