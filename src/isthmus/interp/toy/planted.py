"""A token corpus with three **planted** feature families whose position-level ground truth is known.

Each sequence is ``BOS TOPIC x2 … x_{T-1}`` where

* **long-range** (topic): the topic token at position 1 (one of ``n_topics``) sets the distribution of
  every later filler token (``p_topic`` of them come from that topic's own slice of the content
  vocabulary), so predicting filler well needs a head that looks back to position 1;
* **short-range** (skip-bigram): a marker ``A_j`` is followed by one random content token and then by its
  partner ``B_j``; predicting ``B_j`` at position t+1 needs the token at t-1 (a previous-token head);
* **induction**: a random n-gram of distinct *repeat* tokens (a vocabulary range used nowhere else, so
  the previous occurrence of a token is unique) appears twice; from the second token of the second copy
  on, the next token is predictable only by induction (a previous-token head + an induction head).

``meta`` holds boolean (N, T) masks of the positions *at which* each family's information is needed to
predict the next token (``feature_masks``), the position holding that information (``source_positions``,
-1 elsewhere: the token after the earlier copy, the marker at t-1, the topic at 1), the matching target
masks (``target_masks``: position t+1), and
the topic of each sequence. The training ``mask`` holds all induction and short-range targets and a
``long_range_loss_frac`` share of the long-range ones. Which head computes which family is decided by the
trained model: find it by attention to ``source_positions`` (:func:`isthmus.interp.attribution.attention_to_sources`)
and verify by ablation (:func:`isthmus.interp.attribution.head_ablation_effects`).
"""

from __future__ import annotations

import numpy as np
import torch

from isthmus.interp.toy.tasks import TaskData, register_task

__all__ = ["planted", "FAMILIES"]

FAMILIES = ("induction", "long_range", "short_range")


@register_task("planted")
def planted(
    n: int,
    seed: int = 0,
    length: int = 40,
    n_topics: int = 4,
    topic_vocab: int = 8,
    n_markers: int = 4,
    ngram: int = 6,
    n_repeat_vocab: int = 16,
    p_topic: float = 0.85,
    n_skip: int = 2,
    long_range_loss_frac: float = 0.25,
) -> TaskData:
    """``n`` sequences of ``length`` tokens with the three planted families (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n_content = n_topics * topic_vocab
    # vocab layout: 0 BOS | topics | content | markers A | partners B | repeat tokens (n-grams only)
    t0, c0 = 1, 1 + n_topics
    a0 = c0 + n_content
    b0 = a0 + n_markers
    r0 = b0 + n_markers
    vocab = (
        ["<bos>"]
        + [f"<topic{i}>" for i in range(n_topics)]
        + [f"c{i}" for i in range(n_content)]
        + [f"A{i}" for i in range(n_markers)]
        + [f"B{i}" for i in range(n_markers)]
        + [f"r{i}" for i in range(n_repeat_vocab)]
    )
    need = 2 + 2 * ngram + 3 * n_skip + 4
    if length < need:
        raise ValueError(f"planted: length={length} too short for ngram={ngram}, n_skip={n_skip} (need >= {need})")
    tok = np.zeros((n, length), dtype=np.int64)
    fam = {f: np.zeros((n, length), dtype=bool) for f in FAMILIES}
    src = {f: np.full((n, length), -1, dtype=np.int64) for f in FAMILIES}  # where the needed token sits
    topics = rng.integers(0, n_topics, n)
    for i in range(n):
        k = topics[i]
        tok[i, 1] = t0 + k
        own = rng.random(length) < p_topic
        tok[i, 2:] = np.where(
            own[2:],
            c0 + k * topic_vocab + rng.integers(0, topic_vocab, length - 2),
            c0 + rng.integers(0, n_content, length - 2),
        )
        free = np.ones(length, dtype=bool)
        free[:2] = False
        # induction: the second copy starts at least 2 tokens after the first ends
        s1 = rng.integers(2, length - 2 * ngram - 4)
        s2 = rng.integers(s1 + ngram + 2, length - ngram + 1)
        gram = r0 + rng.permutation(n_repeat_vocab)[:ngram]  # distinct, so the previous occurrence is unique
        tok[i, s1 : s1 + ngram], tok[i, s2 : s2 + ngram] = gram, gram
        free[s1 : s1 + ngram] = free[s2 : s2 + ngram] = False
        fam["induction"][i, s2 : s2 + ngram - 1] = True
        src["induction"][i, s2 : s2 + ngram - 1] = np.arange(s1 + 1, s1 + ngram)  # token after the earlier copy
        # skip-bigrams A_j c B_j in free slots
        placed = 0
        for start in rng.permutation(np.arange(2, length - 2)):
            if placed == n_skip:
                break
            if free[start : start + 3].all():
                j = rng.integers(0, n_markers)
                tok[i, start], tok[i, start + 2] = a0 + j, b0 + j
                free[start : start + 3] = False
                fam["short_range"][i, start + 1] = True
                src["short_range"][i, start + 1] = start
                placed += 1
        # long-range: every filler position whose next token is topic-drawn filler
        nxt_free = np.zeros(length, dtype=bool)
        nxt_free[:-1] = free[1:]
        fam["long_range"][i] = nxt_free & (np.arange(length) >= 2)
        src["long_range"][i, fam["long_range"][i]] = 1
    feature_masks = {f: torch.as_tensor(m) for f, m in fam.items()}
    target_masks = {f: torch.nn.functional.pad(m[:, :-1], (1, 0)) for f, m in feature_masks.items()}
    # the training mask keeps only a fraction of the (many) long-range targets, so the rarer induction
    # targets are not drowned out and the induction circuit forms within a short training run
    keep = torch.as_tensor(rng.random((n, length)) < long_range_loss_frac)
    mask = target_masks["induction"] | target_masks["short_range"] | (target_masks["long_range"] & keep)
    return TaskData(
        torch.as_tensor(tok),
        mask,
        vocab,
        {
            "feature_masks": feature_masks,
            "target_masks": target_masks,
            "source_positions": {f: torch.as_tensor(v) for f, v in src.items()},
            "topics": torch.as_tensor(topics),
            "families": FAMILIES,
            # the tokens each family's targets are drawn from ("which one" is the family's information)
            "family_vocab": {
                "induction": torch.arange(r0, r0 + n_repeat_vocab),
                "long_range": torch.arange(c0, c0 + n_content),
                "short_range": torch.arange(b0, b0 + n_markers),
            },
            "layout": {"topic": t0, "content": c0, "marker": a0, "partner": b0, "repeat": r0},
        },
    )
