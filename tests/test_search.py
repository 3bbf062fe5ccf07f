"""The search-space language and the DeepArchitect searchers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isthmus.search import (
    SEARCHERS, Choice, Concat, EvolutionSearcher, MCTSSearcher, Module, Optional, Or, RandomSearcher, Repeat,
    SMBOSearcher, count, enumerate_paths, is_specified, key, module_types, next_choice, ngram_counts, resolve,
    run_search, sample_path,
)

LAYER = Concat([Module("affine", {"width": Choice("width", [8, 16])}), Optional("norm", Module("batchnorm", {})),
                Or("act", Module("relu", {}), Module("tanh", {}))])
SPACE = Module("net", {"body": Repeat("depth", LAYER, (1, 2, 3), tied=(3,)),
                       "opt": Module("adam", {"lr": Choice("lr", [0.1, 0.01])})})
# per layer 2 x 2 x 2 = 8; depth 1: 8, depth 2 untied: 64, depth 3 tied: 8; x 2 learning rates
N_SPACE = (8 + 64 + 8) * 2


def test_enumeration_count_is_exact_and_paths_are_distinct_architectures():
    paths = list(enumerate_paths(SPACE))
    assert len(paths) == count(SPACE) == N_SPACE
    assert len({key(resolve(SPACE, p)) for p in paths}) == N_SPACE


def test_tied_repeat_shares_choices_and_untied_does_not():
    arch = resolve(SPACE, (2, 1, 1, 0, 1))  # depth 3 (tied): width 16, batchnorm, relu; lr 0.01
    assert arch["body"] == [[{"type": "affine", "width": 16}, {"type": "batchnorm"}, {"type": "relu"}]] * 3
    assert arch["opt"]["lr"] == 0.01
    two = resolve(SPACE, (1, 0, 0, 1, 1, 1, 0, 0))
    assert two["body"][0] != two["body"][1]


def test_next_choice_walks_the_decisions_and_rejects_bad_paths():
    assert next_choice(SPACE, ()) == ("depth", 3)
    assert next_choice(SPACE, (0,)) == ("width", 2)
    assert next_choice(SPACE, (0, 0, 0, 0)) == ("lr", 2)
    assert is_specified(SPACE, (0, 0, 0, 0, 1))
    with pytest.raises(ValueError, match="out of range"):
        resolve(SPACE, (5,))
    with pytest.raises(ValueError, match="incomplete"):
        resolve(SPACE, (0, 0))
    with pytest.raises(ValueError, match="specified after"):
        resolve(SPACE, (0, 0, 0, 0, 1, 1))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_sampled_architectures_round_trip_through_json_and_sampling_is_seeded(seed):
    path = sample_path(SPACE, np.random.default_rng(seed))
    assert path == sample_path(SPACE, np.random.default_rng(seed))
    arch = resolve(SPACE, path)
    assert json.loads(json.dumps(arch)) == arch and key(json.loads(key(arch))) == key(arch)


def test_module_types_mark_absent_optionals_as_empty():
    arch = resolve(SPACE, (0, 1, 0, 1, 0))
    assert module_types(arch) == ["net", "affine", "empty", "tanh", "adam"]


def test_ngram_counts_exact_including_the_authors_off_by_one():
    toks = ["a", "b", "a", "b"]
    full = ngram_counts(toks, 3, authors_ngrams=False)
    assert full == {("a",): 2, ("b",): 2, ("a", "b"): 2, ("b", "a"): 1}
    authors = ngram_counts(toks, 3)  # range(len - n): the last unigram and the last bigram are left out
    assert authors == {("a",): 2, ("b",): 1, ("a", "b"): 1, ("b", "a"): 1}
    assert ngram_counts(["a", "empty", "a"], 2, skip="empty", authors_ngrams=False) == {("a",): 2}


def _score(path):
    arch = resolve(SPACE, path)
    body = arch["body"]
    return len(body) + sum(b[0]["width"] / 16 + (b[1] is not None) for b in body) + (arch["opt"]["lr"] == 0.1)


@pytest.mark.parametrize("name", sorted(SEARCHERS))
def test_budget_is_exact_and_same_seed_gives_the_same_trajectory(name):
    a = run_search(SEARCHERS[name](SPACE, np.random.default_rng(3)), _score, 30)
    b = run_search(SEARCHERS[name](SPACE, np.random.default_rng(3)), _score, 30)
    assert len(a.paths) == len(a.scores) == 30 and a.paths == b.paths
    assert a.best_so_far() == sorted(a.best_so_far()) and a.incumbent(30) == a.paths[int(np.argmax(a.scores))]
    with pytest.raises(ValueError):
        a.incumbent(31)


def test_mcts_finds_the_argmax_of_a_deterministic_two_level_tree():
    tree = Concat([Choice("a", [0, 1, 2, 3]), Choice("b", [0, 1, 2, 3])])
    best = (2, 1)
    score = lambda p: 1.0 if tuple(p) == best else 0.5 * (p[0] == best[0])  # noqa: E731
    trace = run_search(MCTSSearcher(tree, np.random.default_rng(0)), score, 40)
    assert trace.incumbent(40) == best
    # after finding it, UCT exploits: the optimum is proposed again and again
    assert trace.paths[-20:].count(best) >= 5


def test_smbo_surrogate_learns_a_visible_feature():
    # score = number of batchnorm modules: visible to the n-gram features, so SMBO should exploit it
    score = lambda p: float(module_types(resolve(SPACE, p)).count("batchnorm"))  # noqa: E731
    smbo = [run_search(SMBOSearcher(SPACE, np.random.default_rng(r)), score, 20).scores[10:] for r in range(5)]
    rand = [run_search(RandomSearcher(SPACE, np.random.default_rng(r)), score, 20).scores[10:] for r in range(5)]
    assert np.mean(smbo) > np.mean(rand) + 0.5


def test_evolution_mutation_changes_one_decision_and_stays_valid():
    evo = EvolutionSearcher(SPACE, np.random.default_rng(0))
    for seed in range(20):
        p = sample_path(SPACE, np.random.default_rng(seed))
        m = evo.mutate(p)
        assert is_specified(SPACE, m) and m != p


def test_ridge_fit_matches_sklearn():
    from sklearn.linear_model import Ridge

    from isthmus.search.searchers import RidgeFit

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 5)) * [1, 10, 0.1, 3, 1], rng.normal(size=30)
    for alpha in (1e-3, 1.0, 1e3):
        ours, ref = RidgeFit.fit(X, y, alpha), Ridge(alpha=alpha).fit(X, y)
        assert np.allclose(ours.coef, ref.coef_, atol=1e-8) and np.isclose(ours.intercept, ref.intercept_)
        assert np.allclose(ours.predict(X[:3]), ref.predict(X[:3]))
