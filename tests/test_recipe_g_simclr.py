"""g-simclr: the recipe's own logic (random-batch baseline share, loss smoothing, the card's bound on G2)."""

from __future__ import annotations

import numpy as np
import pytest

from isthmus.data.batching import ClusterInterleavedBatchSampler
from isthmus.metrics.clustering import batch_same_label_rate
from isthmus.recipes.g_simclr import GSimCLR, chunked, epoch_plateau, random_share


def test_random_share_is_the_chance_that_a_random_pair_agrees():
    y = np.repeat(np.arange(4), [10, 20, 30, 40])
    n = len(y)
    counts = np.bincount(y)
    exact = float((counts * (counts - 1)).sum() / (n * (n - 1)))
    assert random_share(y, 25, draws=200) == pytest.approx(exact, rel=0.03)


def test_balanced_batches_of_64_from_10_classes_cannot_go_below_the_cards_bound():
    # the card's probe finding: with K = B = 64 > 10 classes every batch still holds same-class pairs
    y = np.tile(np.arange(10), 7)[:64]  # as balanced as 64 items from 10 classes can be
    assert batch_same_label_rate([np.arange(64)], y) == pytest.approx((4 * 21 + 6 * 15) / (64 * 63 / 2))
    # pure pseudo-clusters (one class each) interleaved: the share equals that bound, not zero
    pseudo = np.arange(640) % 64
    true = pseudo % 10
    share = batch_same_label_rate(list(ClusterInterleavedBatchSampler(pseudo, 64)), true)
    assert share == pytest.approx((4 * 21 + 6 * 15) / 2016)
    assert share / random_share(true, 64) > 0.8


def test_chunked_averages_consecutive_steps():
    assert chunked([1, 2, 3, 4, 5, 6], 3) == [1.5, 3.5, 5.5]
    assert chunked([1.0, 2.0], 20) == [1.0, 2.0]


def test_declaration_has_one_headline_and_names_real_arms():
    r = GSimCLR()
    heads = [g for g in r.gates if g.headline]
    assert [g.name for g in heads] == ["G1 beats SimCLR"]
    arms = r.arms(r.settings_for("smoke"))
    r._validate_declaration(list(arms))
    assert r.min_seeds >= 5


def test_epoch_plateau_compares_whole_epochs():
    # 5 epochs: window of one epoch, the last vs the one before; tolerance 2 % of the range (3.5 -> 0.07)
    assert epoch_plateau([4.0, 2.0, 1.0, 0.56, 0.5])
    assert not epoch_plateau([4.0, 2.0, 1.0, 0.6, 0.5])
    # 20 epochs: windows of two epochs; a bump that repeats every epoch cannot fake a trend
    assert epoch_plateau([4.0, 3.0, 2.0, 1.0] + [0.5] * 16)
    assert not epoch_plateau([1.0])  # too short to judge


def test_record_cosine_period_is_the_run():
    s = GSimCLR().settings_for("record")
    steps_per_epoch = -(-s.n_pretrain // s.batch_size)  # the last short batch is a step too
    assert s.restart_steps == s.epochs * steps_per_epoch
