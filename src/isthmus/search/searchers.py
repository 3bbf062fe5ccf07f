"""Searchers over a :mod:`isthmus.search.space` (DeepArchitect's ``darch/searchers.py``, re-implemented).

Every searcher has ``propose() -> path`` and ``observe(path, score)`` (higher is better) and draws
all randomness from the generator it is given, so one seed gives one trajectory.

* :class:`RandomSearcher` — uniform choice at every decision.
* :class:`MCTSSearcher` — UCT (``mean + c·√(2 ln N_parent / n_child)``, c = 0.5 in the paper,
  unvisited children first with random tie-breaking); the tree walk is followed by a random rollout
  and the tree grows by one level per sample; statistics are updated along the tree part only.
* :class:`SMBOSearcher` — ridge regression (λ = 1e3) on [number of modules, counts of module-type
  n-grams of length 1 … ``ngram_maxlen − 1`` seen ≥ ``thres`` times among evaluated models], refit
  before each proposal; 50 random candidates ranked by it, the top one evaluated (a random one with
  probability 0.25). The authors' n-gram loop stops one window early; ``authors_ngrams`` keeps that.
* :class:`EvolutionSearcher` — regularised evolution (population = the last P evaluated, tournament
  of S, mutate one decision of the winner and re-complete the path).
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Sequence

import numpy as np

from isthmus.search.space import Node, complete_path, module_types, next_choice, resolve, sample_path

__all__ = [
    "RidgeFit",
    "RandomSearcher",
    "MCTSSearcher",
    "SMBOSearcher",
    "EvolutionSearcher",
    "ngram_counts",
    "SearchTrace",
    "run_search",
    "SEARCHERS",
]

Path = tuple[int, ...]


class RandomSearcher:
    def __init__(self, space: Node, rng: np.random.Generator) -> None:
        self.space, self.rng = space, rng

    def propose(self) -> Path:
        return sample_path(self.space, self.rng)

    def observe(self, path: Path, score: float) -> None:
        pass


@dataclass
class _TreeNode:
    n: int = 0
    total: float = 0.0
    children: list["_TreeNode"] | None = None


class MCTSSearcher:
    def __init__(self, space: Node, rng: np.random.Generator, c: float = 0.5) -> None:
        self.space, self.rng, self.c = space, rng, c
        self.root = _TreeNode()
        self._tree_len: dict[Path, list[int]] = {}

    def _best_child(self, node: _TreeNode) -> int:
        assert node.children is not None
        log_n = math.log(node.n) if node.n > 0 else 0.0
        scores = np.array(
            [math.inf if ch.n == 0 else ch.total / ch.n + self.c * math.sqrt(2 * log_n / ch.n) for ch in node.children]
        )
        best = np.flatnonzero(scores == scores.max())
        return int(self.rng.choice(best))

    def propose(self) -> Path:
        node, hist = self.root, []
        while node.children is not None:
            i = self._best_child(node)
            hist.append(i)
            node = node.children[i]
        nxt = next_choice(self.space, hist)
        if nxt is not None:  # expand the leaf we stopped at: one level per sample
            node.children = [_TreeNode() for _ in range(nxt[1])]
        path = complete_path(self.space, hist, self.rng)
        self._tree_len.setdefault(path, []).append(len(hist))
        return path

    def observe(self, path: Path, score: float) -> None:
        depths = self._tree_len.get(path)
        depth = depths.pop(0) if depths else 0
        node = self.root
        node.n, node.total = node.n + 1, node.total + score
        for i in path[:depth]:
            assert node.children is not None
            node = node.children[i]
            node.n, node.total = node.n + 1, node.total + score


def ngram_counts(tokens: Sequence[str], maxlen: int, authors_ngrams: bool = True, skip: str | None = None) -> Counter:
    """Counts of the n-grams of ``tokens`` with 1 ≤ n < ``maxlen``. ``authors_ngrams`` reproduces the
    authors' loop ``for i in range(len(tokens) - n)``, which leaves out the last n-gram of each length."""
    toks = [t for t in tokens if t != skip] if skip else list(tokens)
    out: Counter = Counter()
    for n in range(1, maxlen):
        stop = len(toks) - n if authors_ngrams else len(toks) - n + 1
        for i in range(max(stop, 0)):
            out[tuple(toks[i : i + n])] += 1
    return out


@dataclass
class RidgeFit:
    """Ridge regression with an unpenalised intercept — what ``sklearn.linear_model.Ridge(alpha)`` fits
    (tested against it); solved directly because sklearn's input checks cost 20x the solve for the
    thousands of tiny refits a search makes."""

    coef: np.ndarray
    intercept: float

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, alpha: float) -> "RidgeFit":
        xm, ym = X.mean(0), float(y.mean())
        Xc = X - xm
        coef = np.linalg.solve(Xc.T @ Xc + alpha * np.eye(X.shape[1]), Xc.T @ (y - ym))
        return cls(coef, ym - float(xm @ coef))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return X @ self.coef + self.intercept


@lru_cache(maxsize=100_000)  # repetitions of a search revisit the same paths; spaces are immutable
def _tokens(space: Node, path: Path, tokens: Callable[[Any], list[str]]) -> tuple[str, ...]:
    return tuple(tokens(resolve(space, path)))


class SMBOSearcher:
    def __init__(
        self,
        space: Node,
        rng: np.random.Generator,
        n_candidates: int = 50,
        explore: float = 0.25,
        ridge: float = 1e3,
        ngram_maxlen: int = 5,
        thres: int = 3,
        authors_ngrams: bool = True,
        tokens: Callable[[Any], list[str]] = module_types,
    ) -> None:
        self.space, self.rng = space, rng
        self.n_candidates, self.explore, self.ridge = n_candidates, explore, ridge
        self.maxlen, self.thres, self.authors = ngram_maxlen, thres, authors_ngrams
        self.tokens = tokens
        self.seen: list[list[str]] = []
        self.scores: list[float] = []
        self.vocab: dict[tuple[str, ...], int] = {}
        self.model: Any = None
        self._grams: dict[tuple[str, ...], Counter] = {}

    def _path_tokens(self, path: Path) -> list[str]:
        return list(_tokens(self.space, tuple(path), self.tokens))

    def features(self, toks: list[str]) -> np.ndarray:
        x = np.zeros(1 + len(self.vocab))
        x[0] = len(toks)  # the authors' "depth": number of modules, Empty included
        t = tuple(toks)
        if t not in self._grams:
            self._grams[t] = ngram_counts(toks, self.maxlen, self.authors)
        for g, c in self._grams[t].items():
            if g in self.vocab:
                x[1 + self.vocab[g]] += c
        return x

    def _refit(self) -> None:
        total: Counter = Counter()
        for toks in self.seen:  # the vocabulary is rebuilt from the evaluated models, Empty left out
            total.update(ngram_counts(toks, self.maxlen, self.authors, skip="empty"))
        self.vocab = {g: i for i, g in enumerate(sorted(g for g, c in total.items() if c >= self.thres))}
        X = np.stack([self.features(t) for t in self.seen])
        self.model = RidgeFit.fit(X, np.asarray(self.scores), self.ridge)

    def propose(self) -> Path:
        if self.seen:
            self._refit()
        cands = [sample_path(self.space, self.rng) for _ in range(self.n_candidates)]
        if self.model is None:
            pred = np.zeros(len(cands))
        else:
            pred = self.model.predict(np.stack([self.features(self._path_tokens(c)) for c in cands]))
        order = np.argsort(-pred, kind="stable")
        if self.rng.random() < self.explore:
            order = self.rng.permutation(len(cands))
        return cands[int(order[0])]

    def observe(self, path: Path, score: float) -> None:
        self.seen.append(self._path_tokens(path))
        self.scores.append(float(score))


class EvolutionSearcher:
    def __init__(self, space: Node, rng: np.random.Generator, population: int = 20, sample: int = 5) -> None:
        self.space, self.rng, self.P, self.S = space, rng, population, sample
        self.pop: deque[tuple[Path, float]] = deque(maxlen=population)  # aging: the oldest leaves first

    def mutate(self, path: Path) -> Path:
        """Change one decision; later decisions keep their index where still valid, else are redrawn."""
        i = int(self.rng.integers(len(path)))
        new: list[int] = list(path[:i])
        n = next_choice(self.space, new)
        assert n is not None
        if n[1] > 1:
            new.append(int((path[i] + 1 + self.rng.integers(n[1] - 1)) % n[1]))
        else:
            new.append(0)
        for old in path[i + 1 :]:
            nxt = next_choice(self.space, new)
            if nxt is None:
                break
            new.append(old if old < nxt[1] else int(self.rng.integers(nxt[1])))
        return complete_path(self.space, new, self.rng)

    def propose(self) -> Path:
        if len(self.pop) < self.P:
            return sample_path(self.space, self.rng)
        idx = self.rng.choice(len(self.pop), size=min(self.S, len(self.pop)), replace=False)
        parent = max((self.pop[int(j)] for j in idx), key=lambda ps: ps[1])[0]
        return self.mutate(parent)

    def observe(self, path: Path, score: float) -> None:
        self.pop.append((path, float(score)))


SEARCHERS: dict[str, Callable[..., Any]] = {
    "random": RandomSearcher,
    "mcts": MCTSSearcher,
    "smbo": SMBOSearcher,
    "evolution": EvolutionSearcher,
}


@dataclass
class SearchTrace:
    paths: list[Path] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    def incumbent(self, budget: int) -> Path:
        """The best *observed* path among the first ``budget`` evaluations (first one on ties)."""
        if not 1 <= budget <= len(self.scores):
            raise ValueError(f"budget must lie in [1, {len(self.scores)}], got {budget}")
        return self.paths[int(np.argmax(self.scores[:budget]))]

    def best_so_far(self) -> list[float]:
        return np.maximum.accumulate(self.scores).tolist()


def run_search(searcher: Any, evaluate: Callable[[Path], float], budget: int) -> SearchTrace:
    """Propose → evaluate → observe, exactly ``budget`` times."""
    if budget < 1:
        raise ValueError(f"budget must be >= 1, got {budget}")
    trace = SearchTrace()
    for _ in range(budget):
        path = searcher.propose()
        score = float(evaluate(path))
        searcher.observe(path, score)
        trace.paths.append(path)
        trace.scores.append(score)
    return trace
