"""Arithmetic volume coding (AriEL): a language model's next-token probabilities tile the unit cube.

Celotti et al., "AriEL: volume coding for sentence generation" (arXiv 2003.13600; code LuCeHe/DifferentiableAriEL).
A deterministic, parameter-free encoder/decoder on top of *any* next-token model. Start from the box
``[0, S]^D``; at step t pick dimension ``d = t mod D`` (a kd-tree schedule), split that side of the box into
consecutive sub-intervals, one per vocabulary token, of lengths proportional to ``p(token | prefix)``, and keep
the sub-interval of the token that was said. After EOS, ``encode`` returns the box centre; ``decode`` replays
the splits and follows the point. So each sentence owns a box of volume ``S^D · p_LM(sentence)``, every point of
the cube decodes to exactly one sentence, and decoding ``z ~ U([0, S]^D)`` is exactly ancestral sampling.

The LM is any object with ``vocab_size`` and ``step(state, prev) -> (probs (n, V) float64, state)`` (``prev``
is ``None`` at the first step) and ``start(n) -> state`` (:class:`StepLM`); :class:`BigramLM` is a hand-set one
and :meth:`isthmus.models.ariel.GRULanguageModel.as_step_lm` wraps a trained GRU.

**Precision.** Encode and decode compute the split edges with the same float64 formula, so a round trip is
bit-exact as long as the final box is wider than the float64 spacing around its centre in every dimension:
dimension d's side shrinks by the product of the probabilities of the tokens written to it, and the centre
stops being strictly inside once that product falls below about ``2**-52 ≈ 2e-16``, i.e. once the tokens of one
dimension carry more than ~36 nats (~52 bits). With ``D = 16`` that is ~580 nats per sentence spread evenly;
with one dimension, 36 nats (about a dozen tokens from a 20-word uniform LM). :meth:`ArithmeticVolumeCoder.box`
returns the bounds so callers can check ``log_volume`` and the per-dimension widths. Tokens with zero
probability own empty intervals: they are never decoded and cannot be encoded (``ValueError``).
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

import numpy as np

__all__ = ["StepLM", "BigramLM", "ArithmeticVolumeCoder"]


class StepLM(Protocol):
    vocab_size: int

    def start(self, n: int) -> Any: ...

    def step(self, state: Any, prev: np.ndarray | None) -> tuple[np.ndarray, Any]: ...


class BigramLM:
    """A fixed bigram table as a :class:`StepLM`: ``probs[prev]`` is the next-token distribution; row ``bos`` is
    used for the first token. Handy for tests (exact probabilities, no training)."""

    def __init__(self, table: np.ndarray, bos: int) -> None:
        t = np.asarray(table, dtype=np.float64)
        if t.ndim != 2 or t.shape[0] != t.shape[1] or not np.allclose(t.sum(1), 1.0):
            raise ValueError("table must be (V, V) with rows summing to 1")
        self.table, self.bos, self.vocab_size = t, bos, t.shape[1]

    def start(self, n: int) -> int:
        return n

    def step(self, state: int, prev: np.ndarray | None) -> tuple[np.ndarray, int]:
        prev = np.full(state, self.bos) if prev is None else np.asarray(prev)
        return self.table[prev], state

    def log_prob(self, sentence: Sequence[int], eos: int | None) -> float:
        toks = list(sentence) + ([eos] if eos is not None else [])
        prev = [self.bos] + toks[:-1]
        return float(sum(np.log(self.table[a, b]) for a, b in zip(prev, toks)))


class ArithmeticVolumeCoder:
    """``encode(sentences) -> points (n, D)``, ``decode(points) -> sentences``; float64 throughout.

    Sentences are lists of token ids *without* EOS; encoding appends EOS unless the sentence already has
    ``max_len`` tokens (decoding stops at EOS or after ``max_len`` tokens, so both agree).
    """

    def __init__(self, lm: StepLM, dim: int = 16, eos: int = 2, max_len: int = 32, size: float = 1.0) -> None:
        if dim < 1 or max_len < 1 or size <= 0:
            raise ValueError("dim and max_len must be >= 1 and size > 0")
        self.lm, self.dim, self.eos, self.max_len, self.size = lm, dim, eos, max_len, float(size)

    def _edges(self, probs: np.ndarray, low: np.ndarray, up: np.ndarray) -> np.ndarray:
        """Split edges ``(n, V+1)`` of the current side ``[low, up)``; encode and decode share this formula."""
        cum = np.concatenate([np.zeros((len(probs), 1)), np.cumsum(probs, axis=1)], axis=1)  # (n, V+1)
        cum /= cum[:, -1:]  # exact 1 at the end
        return low[:, None] + (up - low)[:, None] * cum

    def box(self, sentences: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """The boxes ``(low, up)``, each ``(n, D)``, owned by ``sentences``."""
        toks = [list(s) + ([self.eos] if len(s) < self.max_len else []) for s in sentences]
        if any(len(s) > self.max_len for s in sentences):
            raise ValueError(f"a sentence is longer than max_len={self.max_len}")
        n = len(toks)
        low, up = np.zeros((n, self.dim)), np.full((n, self.dim), self.size)
        T = max((len(t) for t in toks), default=0)
        state, prev, rows = self.lm.start(n), None, np.arange(n)
        for t in range(T):
            probs, state = self.lm.step(state, prev)
            cur = np.array([s[t] if t < len(s) else self.eos for s in toks])
            live = np.array([t < len(s) for s in toks])
            if (probs[rows[live], cur[live]] <= 0).any():
                raise ValueError(f"a token at step {t} has zero probability under the LM; it owns no volume")
            d = t % self.dim
            e = self._edges(probs, low[:, d], up[:, d])
            low[live, d], up[live, d] = e[rows[live], cur[live]], e[rows[live], cur[live] + 1]
            prev = cur
        return low, up

    def encode(self, sentences: Sequence[Sequence[int]]) -> np.ndarray:
        """Box centres ``(n, D)``."""
        low, up = self.box(sentences)
        return (low + up) / 2.0

    def log_volume(self, sentences: Sequence[Sequence[int]]) -> np.ndarray:
        """``log`` of each box's volume (= the LM log-probability of the sentence with EOS, when S = 1)."""
        low, up = self.box(sentences)
        return np.log(up - low).sum(1)

    def decode(self, points: np.ndarray) -> list[list[int]]:
        """Sentences (without EOS) of ``points`` ``(n, D)``; inputs outside the cube are clipped."""
        return self.decode_with_status(points)[0]

    def decode_with_status(self, points: np.ndarray) -> tuple[list[list[int]], np.ndarray]:
        """(sentences, ended) — ``ended[i]`` is False when sentence i hit ``max_len`` without EOS."""
        z = np.clip(np.asarray(points, dtype=np.float64), 0.0, self.size)
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise ValueError(f"points must be (n, {self.dim}), got {z.shape}")
        n = len(z)
        low, up = np.zeros((n, self.dim)), np.full((n, self.dim), self.size)
        out: list[list[int]] = [[] for _ in range(n)]
        done = np.zeros(n, dtype=bool)
        state, prev, rows = self.lm.start(n), None, np.arange(n)
        for t in range(self.max_len):
            probs, state = self.lm.step(state, prev)
            d = t % self.dim
            e = self._edges(probs, low[:, d], up[:, d])
            k = (e[:, 1:-1] <= z[:, d : d + 1]).sum(1)  # index of the sub-interval holding z_d, (n,)
            k = self._nonempty(k, probs)
            low[:, d], up[:, d] = e[rows, k], e[rows, k + 1]
            for i in np.flatnonzero(~done):
                if k[i] == self.eos:
                    done[i] = True
                else:
                    out[i].append(int(k[i]))
            if done.all():
                break
            prev = np.where(done, self.eos, k)
        return out, done

    @staticmethod
    def _nonempty(k: np.ndarray, probs: np.ndarray) -> np.ndarray:
        """Move a choice that landed on a zero-probability token (edge round-off) to the nearest token below it."""
        bad = np.flatnonzero(probs[np.arange(len(k)), k] <= 0)
        for i in bad:
            nz = np.flatnonzero(probs[i] > 0)
            below = nz[nz <= k[i]]
            k[i] = below[-1] if len(below) else nz[0]
        return k
