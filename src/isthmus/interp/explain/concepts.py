"""An offline explainer whose vocabulary can name *concepts* (classes of tokens, and contexts), not only lists
of tokens.

:class:`~isthmus.interp.explain.explainers.TokenStatsExplainer` can only say "the token is one of {<= 16
tokens}" (or "right after one of ..."). A latent that fires on a class of 24–64 tokens, or on every token of
a passage about one topic, is then unexplainable however clean it is — and so is a random direction, so the
two score alike. This is the predicate explainer of the paper notes (seed 18, (d)): it picks the best
explanation from a closed candidate set, the mined lexical predicates **plus** predicates built from named
concepts (token sets supplied by the caller, e.g. a corpus' planted classes), used in three roles:

* ``cur``: "the token is a <concept>",
* ``prev``: "the token right after a <concept>",
* ``ctx``: "in a passage with at least m <concept> tokens" (the window holds >= ``ctx_min`` of them),

plus ``seen`` ("a token that already occurred earlier in the passage": repeats, as induction features need),

and conjunctions of two candidates with different roles ("a <concept> token in a passage about ..."). The
choice is by F1 on the train windows only (the explainer never sees the test or non-activating windows);
the simulator (:class:`~isthmus.interp.explain.scorers.PredicateSimulator`) evaluates the same predicate.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any, Mapping, Sequence

from isthmus.interp.explain.explainers import Explanation, TokenStatsExplainer
from isthmus.interp.explain.records import LatentRecord

__all__ = ["ConceptExplainer"]

ROLES = ("cur", "prev", "ctx", "seen")


def _roles(pred: dict[str, Any]) -> set[str]:
    return {r for r in ROLES if pred.get(r) is not None}


class ConceptExplainer(TokenStatsExplainer):
    """Token statistics plus named concepts (see the module docstring).

    ``concepts`` maps a readable name ("content token of topic 3") to its token ids. ``ctx_min`` lists the
    thresholds tried for the context role; ``beam`` single candidates (by train F1) are combined pairwise."""

    def __init__(
        self,
        background: Mapping[int, int],
        vocab: Sequence[str] | None = None,
        concepts: Mapping[str, Sequence[int]] | None = None,
        *,
        ctx_min: Sequence[int] = (2, 3),
        beam: int = 6,
        **kw: Any,
    ) -> None:
        super().__init__(background, vocab, **kw)
        self.concepts = {str(k): sorted({int(t) for t in v}) for k, v in (concepts or {}).items()}
        empty = [k for k, v in self.concepts.items() if not v]
        if empty:
            raise ValueError(f"ConceptExplainer: concept(s) {empty} have no tokens; drop them or give their ids")
        if not ctx_min or min(ctx_min) < 1:
            raise ValueError(f"ConceptExplainer: ctx_min must be a non-empty list of ints >= 1, got {ctx_min!r}")
        self.ctx_min, self.beam = tuple(int(m) for m in ctx_min), int(beam)
        self._names = {tuple(v): k for k, v in self.concepts.items()}

    def _singles(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{"seen": True}, {"seen": False}]  # repeats / first occurrences
        for ids in self.concepts.values():
            out += [{"cur": ids}, {"prev": ids}]
            out += [{"ctx": ids, "ctx_min": m} for m in self.ctx_min]
        return out

    def explain(self, record: LatentRecord) -> Explanation:
        lexical = self.candidates(record)
        if not lexical:
            return Explanation("no activating examples", None, {"train_f1": 0.0})
        scored = [(self.train_f1(c, record), i, c) for i, c in enumerate(lexical + self._singles())]
        scored.sort(key=lambda x: (-x[0], x[1]))  # best F1 first; ties keep the simpler, earlier candidate
        pairs: list[tuple[float, int, dict[str, Any]]] = []
        for (_, _, a), (_, _, b) in combinations(scored[: self.beam], 2):
            if not _roles(a) & _roles(b):
                both = {
                    **{k: v for k, v in a.items() if v is not None},
                    **{k: v for k, v in b.items() if v is not None},
                }
                pairs.append((self.train_f1(both, record), len(scored) + len(pairs), both))
        f1, _, best = min(scored + pairs, key=lambda x: (-x[0], x[1]))
        return Explanation(self.render(best, record), best, {"train_f1": f1})

    def _set(self, ids: Sequence[int], record: LatentRecord) -> str:
        name = self._names.get(tuple(sorted(int(t) for t in ids)))
        return f"a {name}" if name else "one of {" + ", ".join(f'"{self._name(t, record)}"' for t in ids) + "}"

    def render(self, pred: dict, record: LatentRecord) -> str:
        parts = []
        if pred.get("cur"):
            parts.append(f"the token is {self._set(pred['cur'], record)}")
        if pred.get("prev"):
            parts.append(f"{'it' if parts else 'the token'} follows {self._set(pred['prev'], record)}")
        text = " and ".join(parts) if parts else "any token"
        if pred.get("seen") is not None:
            text += " that " + ("already occurred" if pred["seen"] else "has not occurred") + " earlier in the passage"
        if pred.get("ctx"):
            text += f", in a passage with at least {pred.get('ctx_min', 2)} tokens that are {self._set(pred['ctx'], record)}"
        return text
