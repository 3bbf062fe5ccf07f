"""Contrastive-learning parts: augmentations, batch samplers, the same-label rate, NT-Xent's negative
mask on a hand-computed case, TF's cosine-decay-with-restarts schedule, and a SimCLR fit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from isthmus.config import ConfigError
from isthmus.data.augment import AUTHORS_G_SIMCLR, CARD_G_SIMCLR, AugmentConfig, augment
from isthmus.data.batching import ClusterInterleavedBatchSampler, RandomBatchSampler, cluster_interleaved_order
from isthmus.data.mnist_bg import add_backgrounds
from isthmus.metrics.clustering import batch_same_label_rate
from isthmus.nn.contrastive import nt_xent
from isthmus.tasks.simclr import SimCLR, SimCLRConfig, SmallCNN, cosine_decay_restarts, fit_simclr


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- augment ---------------------------------------------------------------------------------
def test_default_augment_is_identity():
    x = torch.rand(3, 1, 8, 8)
    assert torch.equal(augment(x, AugmentConfig(), _gen()), x)


def test_certain_flip_mirrors_the_image():
    x = torch.rand(2, 1, 6, 6)
    out = augment(x, AugmentConfig(flip_p=1.0), _gen())
    assert torch.allclose(out, torch.flip(x, dims=[-1]), atol=1e-5)


def test_jitter_matches_brightness_then_contrast_by_hand():
    x = torch.tensor([[[[0.2, 0.4], [0.6, 0.8]]]])
    cfg = AugmentConfig(jitter_p=1.0, brightness=0.1, contrast=0.5)
    g = _gen(3)
    out = augment(x, cfg, g)
    g = _gen(3)
    torch.rand(1, generator=g)  # the apply/skip draw
    shift = -0.1 + 0.2 * torch.rand(1, generator=g)
    scale = 0.5 + 1.0 * torch.rand(1, generator=g)
    shifted = x + shift
    expected = ((shifted - shifted.mean()) * scale + shifted.mean()).clamp(0, 1)
    assert torch.allclose(out, expected, atol=1e-6)


def test_augment_is_seeded_and_per_image_or_per_batch():
    x = torch.rand(1, 1, 12, 12).repeat(4, 1, 1, 1)  # four copies of one image
    a, b = augment(x, CARD_G_SIMCLR, _gen(1)), augment(x, CARD_G_SIMCLR, _gen(1))
    assert torch.equal(a, b)
    assert not torch.equal(a, augment(x, CARD_G_SIMCLR, _gen(2)))
    assert not torch.allclose(a[0], a[1])  # per image: copies get different views
    batch = CARD_G_SIMCLR.with_overrides({"per": "batch"})
    c = augment(x, batch, _gen(1))
    assert all(torch.allclose(c[0], c[i]) for i in range(4))  # per batch: one transform for all
    assert c.min() >= 0 and c.max() <= 1


def test_augment_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="crop_scale"):
        AugmentConfig(crop_scale=(0.0, 1.0))
    with pytest.raises(ConfigError, match="flip_p"):
        AugmentConfig(flip_p=1.5)
    assert AugmentConfig.from_dict(AUTHORS_G_SIMCLR.to_dict()) == AUTHORS_G_SIMCLR


# ---- batching --------------------------------------------------------------------------------
def test_equal_clusters_with_k_equal_b_give_one_item_per_cluster_per_batch():
    labels = np.repeat(np.arange(8), 5)[np.random.default_rng(0).permutation(40)]
    batches = list(ClusterInterleavedBatchSampler(labels, 8))
    assert len(batches) == 5
    assert all(sorted(labels[b]) == list(range(8)) for b in batches)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=80), st.integers(1, 9), st.one_of(st.none(), st.integers(0, 5)))
def test_interleaved_batches_cover_every_item_once_and_never_repeat_a_cluster_within_a_rank_group(labels, bs, seed):
    y = np.asarray(labels)
    order = cluster_interleaved_order(y, seed)
    assert sorted(order.tolist()) == list(range(len(y)))  # a permutation: every item exactly once
    # rank of each item within its cluster, in the output order
    rank = np.empty(len(y), dtype=int)
    counts: dict[int, int] = {}
    for i in order:
        rank[i] = counts.get(int(y[i]), 0)
        counts[int(y[i])] = rank[i] + 1
    assert np.all(np.diff(rank[order]) >= 0)  # sorted by rank
    for b in ClusterInterleavedBatchSampler(y, bs, seed=seed):
        b = np.asarray(b)
        for r in np.unique(rank[b]):  # inside one rank group every cluster appears at most once
            grp = y[b[rank[b] == r]]
            assert len(np.unique(grp)) == len(grp)
    # while every cluster still has members and B divides K (the paper: B = K), no batch repeats a cluster
    k = len(np.unique(y))
    full_groups = min(counts.values())
    if k % bs == 0:
        for b in list(ClusterInterleavedBatchSampler(y, bs, seed=seed))[: full_groups * k // bs]:
            assert len(np.unique(y[b])) == len(b)


def test_random_sampler_reshuffles_unless_fixed():
    s = RandomBatchSampler(20, 6, seed=0)
    e1, e2 = list(s), list(s)
    assert e1 != e2 and sorted(sum(e1, [])) == list(range(20)) and len(s) == 4
    f = RandomBatchSampler(20, 6, seed=0, fixed=True)
    assert list(f) == list(f)
    assert all(len(b) == 6 for b in RandomBatchSampler(20, 6, drop_last=True))


def test_interleaved_sampler_rejects_bad_labels():
    with pytest.raises(ValueError, match="integers"):
        cluster_interleaved_order(np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="batch_size"):
        ClusterInterleavedBatchSampler([0, 1], 0)


# ---- metric --------------------------------------------------------------------------------
def test_batch_same_label_rate_by_hand():
    labels = [0, 0, 1, 1, 1]
    # batch [0,1,2]: pairs (0,1) same, (0,2), (1,2) → 1 of 3; batch [3,4]: 1 of 1 → 2 of 4 pooled
    assert batch_same_label_rate([[0, 1, 2], [3, 4]], labels) == pytest.approx(0.5)
    assert batch_same_label_rate([[0, 2], [1, 3]], labels) == 0.0
    with pytest.raises(ValueError, match="undefined"):
        batch_same_label_rate([[0], [1]], labels)
    with pytest.raises(ValueError, match="indices"):
        batch_same_label_rate([[0, 7]], labels)


# ---- NT-Xent mask, hand-computed --------------------------------------------------------------
def test_nt_xent_negative_mask_hand_computed_case():
    # 2 items, orthonormal-ish 2-D views; tau = 1
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    views = torch.cat([z1, z2])  # already unit norm
    sim = views @ views.T
    # anchor 0: positive 2, negatives 1 and 3; with the mask removing item 1 from item 0's negatives
    # (and symmetrically), anchor 0 keeps only its positive: loss 0; check the full mean by hand.
    def loss_row(i, pos, negs):
        return -sim[i, pos] + torch.logsumexp(torch.stack([sim[i, pos], *[sim[i, j] for j in negs]]), 0)

    unmasked = torch.stack([loss_row(0, 2, [1, 3]), loss_row(1, 3, [0, 2]), loss_row(2, 0, [1, 3]),
                            loss_row(3, 1, [0, 2])]).mean()
    assert nt_xent(z1, z2, tau=1.0) == pytest.approx(float(unmasked), abs=1e-6)
    mask = torch.tensor([[True, False], [False, True]])  # items 0 and 1 are "the same class"
    assert nt_xent(z1, z2, tau=1.0, negative_mask=mask) == pytest.approx(0.0, abs=1e-6)
    half = torch.tensor([[True, False], [True, True]])  # only anchor-item 0 drops item 1
    expected = torch.stack([loss_row(0, 2, []), loss_row(1, 3, [0, 2]), loss_row(2, 0, []),
                            loss_row(3, 1, [0, 2])]).mean()
    assert nt_xent(z1, z2, tau=1.0, negative_mask=half) == pytest.approx(float(expected), abs=1e-6)


# ---- schedule and SimCLR fit -----------------------------------------------------------------
def test_cosine_decay_restarts_matches_tf_definition():
    assert cosine_decay_restarts(0, 1000) == pytest.approx(1.0)
    assert cosine_decay_restarts(500, 1000) == pytest.approx(0.5)
    assert cosine_decay_restarts(999, 1000) < 1e-4
    assert cosine_decay_restarts(1000, 1000) == pytest.approx(1.0)  # restart, next period 2000 steps
    assert cosine_decay_restarts(2000, 1000) == pytest.approx(0.5)
    assert cosine_decay_restarts(3000, 1000) == pytest.approx(1.0)
    assert cosine_decay_restarts(250, 1000, t_mul=1.0) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_fit_simclr_lowers_the_loss_and_records_the_batches():
    torch.manual_seed(0)
    x = torch.rand(64, 1, 8, 8)
    model = SimCLR(SmallCNN(1, (4, 8)), 8, head=(16, 16, 8))
    res = fit_simclr(model, x, RandomBatchSampler(64, 16, seed=0), SimCLRConfig(epochs=15, lr=0.1, restart_steps=0))
    assert res.epoch_loss[-1] < res.epoch_loss[0]
    assert sorted(sum(res.batches, [])) == list(range(64))
    feats = model.features(x, ("p3", "p2", "p1"))
    assert {k: v.shape for k, v in feats.items()} == {"p3": (64, 8), "p2": (64, 16), "p1": (64, 16)}


def test_add_backgrounds_keeps_digits_and_fills_the_rest():
    digits = np.zeros((3, 4, 4), dtype=np.float32)
    digits[:, 1, 1] = 1.0
    photo = np.full((10, 10), 0.5, dtype=np.float32)
    out = add_backgrounds(digits, seed=0, photos=[photo], strength=0.6)
    assert np.allclose(out[:, 1, 1], 1.0) and np.allclose(out[:, 0, 0], 0.3)
    with pytest.raises(ValueError, match="255"):
        add_backgrounds(digits * 255, photos=[photo])
