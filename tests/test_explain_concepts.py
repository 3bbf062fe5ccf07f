"""ConceptExplainer: named token classes, contexts and repeats; contrastive choice; short token lists; the
extended predicate (ctx / seen) and the explainer-only negatives of a record."""

import numpy as np
import pytest

from isthmus.interp.explain import (ConceptExplainer, Explanation, PredicateSimulator, TokenStatsExplainer,
                                    build_record, predicate_mask, score_record, token_counts)

CLASSES = {f"class {k}": list(range(8 * k, 8 * k + 8)) for k in range(4)}  # 4 classes of 8 tokens; 32..39 other
VOCAB = [f"t{i}" for i in range(40)]


def _corpus(seed=0, n=400, t=16, p_topic=0.85):
    """Each sequence has a topic k: ``p_topic`` of its tokens come from class k, the rest from all 40 tokens."""
    rng = np.random.default_rng(seed)
    topic = rng.integers(0, 4, n)
    own = 8 * topic[:, None] + rng.integers(0, 8, (n, t))
    tokens = np.where(rng.random((n, t)) < p_topic, own, rng.integers(0, 40, (n, t)))
    amp = rng.uniform(0.5, 2.0, (n, t))
    acts = {
        "class2": np.isin(tokens, CLASSES["class 2"]) * amp,  # a class of 8 tokens: no 4-token list covers it
        "topic1": np.repeat(topic[:, None] == 1, t, 1) * amp,  # every token of topic-1 sequences (a context)
        "arbitrary": np.isin(tokens, rng.choice(32, 8, replace=False)) * amp,  # 8 tokens with nothing in common
    }
    return tokens, acts


def _interp(rec, explainer):
    sc = score_record(rec, explainer.explain(rec), PredicateSimulator())
    return (sc["detection_bacc"] + sc["fuzzing_bacc"]) / 2, sc


def _record(tokens, a, **kw):
    return build_record(0, a, tokens, ctx_len=8, n_train=20, n_test=20, n_non_activating=20, vocab=VOCAB, **kw)


def test_predicate_context_and_repeat_parts():
    toks = [1, 2, 1, 3]
    assert predicate_mask({"ctx": [1, 3], "ctx_min": 3}, toks) == [True] * 4  # three tokens of {1, 3}
    assert predicate_mask({"ctx": [1, 3], "ctx_min": 4}, toks) == [False] * 4
    assert predicate_mask({"cur": [1], "ctx": [3], "ctx_min": 1}, toks) == [True, False, True, False]
    assert predicate_mask({"seen": True}, toks) == [False, False, True, False]
    assert predicate_mask({"cur": [1], "seen": False}, toks) == [True, False, False, False]
    assert predicate_mask({"cur": None, "prev": None}, toks) == [False] * 4


def test_names_a_class_that_a_short_token_list_cannot_cover():
    tokens, acts = _corpus(p_topic=0.0)  # class tokens spread over all windows: half a class misses windows
    rec = _record(tokens, acts["class2"], n_train_non_activating=20)
    bg = token_counts(tokens)
    ex = ConceptExplainer(bg, VOCAB, CLASSES, max_tokens=4)
    e = ex.explain(rec)
    assert e.predicate == {"cur": CLASSES["class 2"]} and e.text == "the token is a class 2"
    ours, sc = _interp(rec, ex)
    assert sc["detection_bacc"] == 1.0
    lexical, _ = _interp(rec, TokenStatsExplainer(bg, VOCAB, max_tokens=4))
    assert ours > lexical + 0.15


def test_context_latent_is_explained_by_the_passage_not_by_a_broad_token_class():
    tokens, acts = _corpus()
    bg = token_counts(tokens)
    concepts = {**CLASSES, "any class token": list(range(32))}
    rec = _record(tokens, acts["topic1"], n_train_non_activating=20)
    e = ConceptExplainer(bg, VOCAB, concepts, max_tokens=4).explain(rec)
    assert e.predicate.get("ctx") == CLASSES["class 1"] and "passage" in e.text
    # the explainer's own negatives are what rule out the broad class: its F1 drops once they count
    broad = {"cur": concepts["any class token"]}
    blind = _record(tokens, acts["topic1"])
    assert ConceptExplainer.train_f1(broad, rec) < ConceptExplainer.train_f1(broad, blind) - 0.2


def test_a_concept_scores_above_an_arbitrary_token_set_of_the_same_size():
    # the point of the short lists: an enumeration of 8 unrelated tokens must not explain as well as a class
    tokens, acts = _corpus(p_topic=0.0)
    ex = ConceptExplainer(token_counts(tokens), VOCAB, CLASSES, max_tokens=4)
    scores = {k: _interp(_record(tokens, acts[k], n_train_non_activating=20), ex)[0] for k in ("class2", "arbitrary")}
    assert scores["class2"] > scores["arbitrary"] + 0.15


def test_explainer_negatives_are_disjoint_and_leave_the_test_set_unchanged():
    tokens, acts = _corpus()
    plain = _record(tokens, acts["class2"], seed=1)
    rec = _record(tokens, acts["class2"], seed=1, n_train_non_activating=15)
    assert [e.tokens for e in rec.test] == [e.tokens for e in plain.test]
    assert [e.tokens for e in rec.non_activating] == [e.tokens for e in plain.non_activating]
    assert len(rec.train_non_activating) == 15 and not plain.train_non_activating
    assert all(e.max_act == 0 for e in rec.train_non_activating)
    test_neg = {tuple(e.tokens) for e in rec.non_activating}
    assert not any(tuple(e.tokens) in test_neg for e in rec.train_non_activating if len(set(e.tokens)) > 3)


def test_rejects_bad_concepts():
    with pytest.raises(ValueError, match="no tokens"):
        ConceptExplainer({0: 1}, None, {"empty": []})
    with pytest.raises(ValueError, match="ctx_min"):
        ConceptExplainer({0: 1}, None, CLASSES, ctx_min=(0,))
    assert ConceptExplainer({0: 1}).explain(_record(*_tiny())).predicate is None


def _tiny():
    return np.zeros((4, 8), int), np.zeros((4, 8))


def test_explanation_roundtrip_text_for_unnamed_sets():
    ex = ConceptExplainer({0: 1, 1: 1}, VOCAB, CLASSES)
    rec = _record(*_tiny())
    assert ex.render({"cur": [0, 1], "seen": True}, rec) == (
        'the token is one of {"t0", "t1"} that already occurred earlier in the passage'
    )
    assert isinstance(ex.explain(rec), Explanation)
