"""Scorers: how well an explanation predicts where a latent fires, on held-out windows.

* **Detection** (:func:`detection_score`): the activating test windows (sampled across activation quantiles)
  and the non-activating windows are shown to a *simulator*, which says for each window whether the latent
  fires somewhere in it. Metrics: balanced accuracy, F1, per-quantile recall.
* **Fuzzing** (:func:`fuzzing_score`): each activating test window is shown twice, once with the truly active
  tokens highlighted and once with the same number of random tokens highlighted; the simulator says whether
  the highlights match the explanation. Metric: balanced accuracy.
* **Embedding** (:func:`embedding_score`): the explanation is a retrieval query; AUROC of cosine(explanation,
  window) for activating vs non-activating windows, with a sentence encoder (:class:`MiniLMEncoder`: mean-pooled
  all-MiniLM-L6-v2, from :func:`isthmus.interp.hf.load_minilm`).

The offline simulator (:class:`PredicateSimulator`) evaluates the explanation's lexical predicate exactly; an
LLM simulator can be plugged in through the same two methods (``detect``, ``fuzz``).
"""

from __future__ import annotations

import json
import random
import re
from typing import Any, Protocol, Sequence

import numpy as np

from isthmus.interp.explain.explainers import Explanation, predicate_mask
from isthmus.interp.explain.records import Example, LatentRecord, render_window

__all__ = [
    "Simulator",
    "PredicateSimulator",
    "ClientSimulator",
    "detection_score",
    "fuzzing_score",
    "embedding_score",
    "MiniLMEncoder",
    "balanced_accuracy",
    "auroc",
    "score_record",
]


class Simulator(Protocol):
    def detect(self, explanation: Explanation, windows: Sequence[Example]) -> list[bool]: ...

    def fuzz(
        self, explanation: Explanation, windows: Sequence[Example], highlights: Sequence[Sequence[bool]]
    ) -> list[bool]: ...


class PredicateSimulator:
    """Evaluates ``Explanation.predicate`` (a lexical predicate): a window is detected when the predicate holds
    at some token; highlights are accepted when at least ``fuzz_fraction`` of highlighted tokens satisfy it."""

    def __init__(self, fuzz_fraction: float = 0.5) -> None:
        self.fuzz_fraction = fuzz_fraction

    def detect(self, explanation: Explanation, windows: Sequence[Example]) -> list[bool]:
        return [any(predicate_mask(explanation.predicate, w.tokens)) for w in windows]

    def fuzz(
        self, explanation: Explanation, windows: Sequence[Example], highlights: Sequence[Sequence[bool]]
    ) -> list[bool]:
        out = []
        for w, h in zip(windows, highlights):
            m = predicate_mask(explanation.predicate, w.tokens)
            n = sum(h)
            out.append(n > 0 and sum(a and b for a, b in zip(m, h)) >= self.fuzz_fraction * n)
        return out


DETECT_PROMPT = (
    "A latent of a neural network is described as: {explanation}\n\nFor each numbered text below, "
    "answer 1 if the latent would fire somewhere in it, else 0. Reply with only a JSON list of {n} "
    "integers.\n\n{windows}"
)
FUZZ_PROMPT = (
    "A latent of a neural network is described as: {explanation}\n\nIn each numbered text below some "
    "tokens are marked <<like this>>. Answer 1 if the marked tokens are the ones the description refers "
    "to, else 0. Reply with only a JSON list of {n} integers.\n\n{windows}"
)


class ClientSimulator:
    """An LLM as the simulator (delphi's detection / fuzzing wire format: the reply is a JSON list of 0/1).

    ``client`` is anything with ``complete(messages) -> str`` (e.g. :class:`OpenAICompatibleExplainer`, whose
    retries, cache and concurrency limit apply). Windows are sent in batches of ``batch``; a reply that is not
    a list of the right length counts as all 0 and is tallied in ``self.malformed``."""

    def __init__(self, client: Any, vocab: Sequence[str] | None = None, batch: int = 10) -> None:
        self.client, self.vocab, self.batch, self.malformed = client, vocab, batch, 0

    def _text(self, w: Example, h: Sequence[bool] | None = None) -> str:
        toks = [self.vocab[t] if self.vocab else str(t) for t in w.tokens]
        return render_window(toks, h)

    def _ask(self, template: str, explanation: Explanation, texts: list[str]) -> list[bool]:
        out: list[bool] = []
        for s in range(0, len(texts), self.batch):
            chunk = texts[s : s + self.batch]
            body = "\n".join(f"{i + 1}. {t}" for i, t in enumerate(chunk))
            msg = template.format(explanation=explanation.text, n=len(chunk), windows=body)
            reply = self.client.complete([{"role": "user", "content": msg}])
            m = re.search(r"\[[^\]]*\]", reply)
            try:
                vals = json.loads(m.group(0)) if m else None
            except ValueError:
                vals = None
            if not isinstance(vals, list) or len(vals) != len(chunk):
                self.malformed += 1
                vals = [0] * len(chunk)
            out += [bool(v) for v in vals]
        return out

    def detect(self, explanation: Explanation, windows: Sequence[Example]) -> list[bool]:
        return self._ask(DETECT_PROMPT, explanation, [self._text(w) for w in windows])

    def fuzz(
        self, explanation: Explanation, windows: Sequence[Example], highlights: Sequence[Sequence[bool]]
    ) -> list[bool]:
        return self._ask(FUZZ_PROMPT, explanation, [self._text(w, h) for w, h in zip(windows, highlights)])


def balanced_accuracy(y: Sequence[bool], pred: Sequence[bool]) -> float:
    t, p = np.asarray(y, bool), np.asarray(pred, bool)
    if t.all() or (~t).all():
        return float("nan")
    return float(0.5 * ((p[t]).mean() + (~p[~t]).mean()))


def _f1(y: Sequence[bool], pred: Sequence[bool]) -> float:
    t, p = np.asarray(y, bool), np.asarray(pred, bool)
    tp = int((t & p).sum())
    return 2 * tp / max(2 * tp + int((~t & p).sum()) + int((t & ~p).sum()), 1)


def auroc(pos: Sequence[float], neg: Sequence[float]) -> float:
    """P(score_pos > score_neg) + ½ P(tie) (Mann-Whitney)."""
    p, n = np.asarray(pos, float), np.asarray(neg, float)
    if not len(p) or not len(n):
        return float("nan")
    gt = (p[:, None] > n[None]).mean()
    eq = (p[:, None] == n[None]).mean()
    return float(gt + 0.5 * eq)


def detection_score(record: LatentRecord, explanation: Explanation, simulator: Simulator) -> dict[str, float]:
    windows = list(record.test) + list(record.non_activating)
    y = [True] * len(record.test) + [False] * len(record.non_activating)
    pred = simulator.detect(explanation, windows)
    out = {"detection_bacc": balanced_accuracy(y, pred), "detection_f1": _f1(y, pred)}
    qs = sorted({ex.quantile for ex in record.test})
    for q in qs:
        hits = [p for ex, p in zip(record.test, pred) if ex.quantile == q]
        out[f"detection_recall_q{q}"] = float(np.mean(hits))
    return out


def fuzzing_score(
    record: LatentRecord, explanation: Explanation, simulator: Simulator, seed: int = 0
) -> dict[str, float]:
    rng = random.Random(seed + 104729 * record.latent)
    windows, highlights, y = [], [], []
    for ex in record.test:
        true = ex.active(record.threshold)
        n = max(1, sum(true))
        fake_pos = set(rng.sample(range(len(ex.tokens)), min(n, len(ex.tokens))))
        fake = [i in fake_pos for i in range(len(ex.tokens))]
        windows += [ex, ex]
        highlights += [true, fake]
        y += [True, fake == true]  # a random draw that equals the truth is a correct highlight
    pred = simulator.fuzz(explanation, windows, highlights)
    return {"fuzzing_bacc": balanced_accuracy(y, pred)}


class MiniLMEncoder:
    """Mean-pooled, L2-normalised all-MiniLM-L6-v2 sentence embeddings (offline; loaded on first use)."""

    def __init__(self, batch_size: int = 64) -> None:
        self.batch_size = batch_size
        self._model: Any = None  # MiniLM and its tokenizer, loaded on first use
        self._tok: Any = None

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        if self._model is None:
            from isthmus.interp.hf import load_minilm

            self._model, self._tok = load_minilm()
        outs = []
        with torch.no_grad():
            for s in range(0, len(texts), self.batch_size):
                enc = self._tok(
                    list(texts[s : s + self.batch_size]), padding=True, truncation=True, return_tensors="pt"
                )
                h = self._model(**enc).last_hidden_state
                m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
                e = (h * m).sum(1) / m.sum(1).clamp(min=1)
                outs.append(torch.nn.functional.normalize(e, dim=-1).numpy())
        return np.concatenate(outs) if outs else np.zeros((0, 384), np.float32)


def embedding_score(record: LatentRecord, explanation: Explanation, encoder: Any) -> dict[str, float]:
    """AUROC of cos(explanation, window text) for activating test windows vs non-activating windows."""
    texts = [" ".join(record.decode(ex.tokens)) for ex in list(record.test) + list(record.non_activating)]
    emb = encoder.encode([explanation.text] + texts)
    sims = emb[1:] @ emb[0]
    n = len(record.test)
    return {"embedding_auroc": auroc(sims[:n], sims[n:])}


def score_record(
    record: LatentRecord,
    explanation: Explanation,
    simulator: Simulator | None = None,
    encoder: Any = None,
    seed: int = 0,
) -> dict[str, float]:
    """Detection + fuzzing (+ embedding when an ``encoder`` is given) for one record."""
    sim = simulator or PredicateSimulator()
    out = {**detection_score(record, explanation, sim), **fuzzing_score(record, explanation, sim, seed)}
    if encoder is not None:
        out.update(embedding_score(record, explanation, encoder))
    return out
