"""Multivariate series with planted channel groups and labelled anomalies (StackVAE-G's option B).

``n_channels`` channels fall into ``n_groups`` groups (contiguous blocks, then shuffled so group
membership is not the channel order). Each group has one latent signal — a sinusoid with a
group-specific period and phase plus an AR(1) process — and each channel is
``gain · latent + offset + noise`` with channel-specific gain (sign kept positive) and offset, so
channels co-move exactly with their own group. The test part holds ``n_anomalies`` labelled events,
each with its faulty channels:

* ``decouple``     one channel follows an independent AR(1) of its own variance (range kept:
                   only the relation to its group breaks),
* ``level_shift``  1–3 channels of one group jump by ±2.5 of their standard deviation,
* ``spike``        1–2 channels get a short burst of ±4 standard deviations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["ChannelGroupSeries", "make_channel_groups", "GROUP_ANOMALY_KINDS"]

GROUP_ANOMALY_KINDS = ("decouple", "level_shift", "spike")


@dataclass
class ChannelGroupSeries:
    train: np.ndarray  # (T_train, C) float32, anomaly-free
    test: np.ndarray  # (T_test, C) float32
    test_labels: np.ndarray  # (T_test,) int64, 1 = anomalous step
    groups: np.ndarray  # (C,) group id of each channel
    events: list[tuple[int, int, list[int], str]] = field(default_factory=list)  # [start, end), channels, kind

    def same_group(self) -> np.ndarray:
        """(C, C) bool: True where two *different* channels share a group."""
        g = self.groups
        return (g[:, None] == g[None, :]) & ~np.eye(len(g), dtype=bool)


def _ar1(rng: np.random.Generator, n: int, phi: float = 0.95) -> np.ndarray:
    e = rng.standard_normal(n) * np.sqrt(1 - phi**2)
    out = np.empty(n)
    out[0] = rng.standard_normal()
    for t in range(1, n):
        out[t] = phi * out[t - 1] + e[t]
    return out


def make_channel_groups(
    n_channels: int = 24,
    n_groups: int = 4,
    n_train: int = 3000,
    n_test: int = 3000,
    n_anomalies: int = 10,
    anomaly_length: tuple[int, int] = (20, 60),
    noise: float = 0.3,
    seed: int = 0,
) -> ChannelGroupSeries:
    """Generate train (clean) and test (with events) parts of one grouped series; see the module doc."""
    if not 1 <= n_groups <= n_channels:
        raise ValueError(f"need 1 <= n_groups <= n_channels, got {n_groups}, {n_channels}")
    lo, hi = anomaly_length
    if n_test < n_anomalies * (hi + 10):
        raise ValueError(f"n_test={n_test} too short for {n_anomalies} events of up to {hi} steps")
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    t = np.arange(n)
    groups = rng.permutation(np.arange(n_channels) % n_groups)
    latents = np.stack(
        [
            np.sin(2 * np.pi * t / rng.uniform(40, 160) + rng.uniform(0, 2 * np.pi)) + 0.7 * _ar1(rng, n)
            for _ in range(n_groups)
        ],
        1,
    )  # (T, G)
    gain = rng.uniform(0.5, 2.0, n_channels)
    offset = rng.uniform(-1.0, 1.0, n_channels)
    x = latents[:, groups] * gain + offset + noise * rng.standard_normal((n, n_channels))  # (T, C)
    train, test = x[:n_train].copy(), x[n_train:].copy()
    sd = train.std(0)
    labels = np.zeros(n_test, dtype=np.int64)
    slots = np.sort(rng.choice(np.arange(n_test // (hi + 10)), n_anomalies, replace=False)) * (hi + 10) + 5
    events = []
    for i, start in enumerate(slots):
        kind = GROUP_ANOMALY_KINDS[i % len(GROUP_ANOMALY_KINDS)]
        g = rng.integers(n_groups)
        members = np.flatnonzero(groups == g)
        if kind == "decouple":
            length = int(rng.integers(lo, hi + 1))
            chans = [int(rng.choice(members))]
            c = chans[0]
            test[start : start + length, c] = offset[c] + train[:, c].std() * _ar1(rng, length)
        elif kind == "level_shift":
            length = int(rng.integers(lo, hi + 1))
            chans = sorted(
                int(v) for v in rng.choice(members, min(len(members), int(rng.integers(1, 4))), replace=False)
            )
            test[start : start + length, chans] += rng.choice([-2.5, 2.5]) * sd[chans]
        else:
            length = int(rng.integers(3, 8))
            chans = sorted(
                int(v) for v in rng.choice(members, min(len(members), int(rng.integers(1, 3))), replace=False)
            )
            test[start : start + length, chans] += rng.choice([-4.0, 4.0]) * sd[chans]
        labels[start : start + length] = 1
        events.append((int(start), int(start + length), chans, kind))
    return ChannelGroupSeries(train.astype(np.float32), test.astype(np.float32), labels, groups, events)
