"""Synthetic fleet telemetry with labelled, correlation-breaking anomalies (seed 6's data, option A).

Each of ``n_nodes`` nodes runs a latent workload (a fleet-wide cycle + node-specific AR(1)
noise + job bursts) that drives its metrics through simple physics with node-specific gains and
lags:

* ``core{i}_load``  load of core i ∈ [0, 1] (the workload plus per-core jitter),
* ``freq``          DVFS frequency (GHz), rises with load,
* ``power``         idle power + a gain × load × frequency,
* ``temp``          first-order lag (node-specific time constant) towards ambient + power − fan cooling,
* ``fan``           fan speed (krpm), lagged controller on the temperature,
* ``mem``           memory use (GB), follows the slowly smoothed load.

Anomalies are injected only after ``train_fraction`` of the series (the start is healthy, for
training) and are clipped into the node's own healthy range, so no single metric leaves its
normal range: only the *relations* between metrics break. Kinds and their faulty metrics:

* ``freq_cap``   frequency capped low while load stays high → ``freq``, ``power``;
* ``fan_fail``   fan stuck at its minimum, temperature drifts up at normal power → ``fan``, ``temp``;
* ``mem_leak``   memory grows steadily regardless of load → ``mem``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from isthmus.config import Config, ConfigError

__all__ = ["TelemetryConfig", "FleetTelemetry", "make_fleet_telemetry", "ANOMALY_KINDS"]

ANOMALY_KINDS: dict[str, tuple[str, ...]] = {
    "freq_cap": ("freq", "power"),
    "fan_fail": ("fan", "temp"),
    "mem_leak": ("mem",),
}


@dataclass
class TelemetryConfig(Config):
    """Size, timing and anomaly budget of a synthetic fleet.

    ``period`` is the workload cycle in steps; keep several cycles inside the training part so a
    healthy model has seen every operating phase before it is tested.
    """

    n_nodes: int = 8
    n_steps: int = 3000
    n_cores: int = 4
    train_fraction: float = 0.5
    anomalies_per_node: int = 3
    anomaly_length: tuple[int, int] = (40, 120)
    kinds: tuple[str, ...] = ("freq_cap", "fan_fail", "mem_leak")
    noise: float = 0.02
    period: int = 500
    seed: int = 0

    def validate(self) -> None:
        if self.n_nodes < 1 or self.n_steps < 50 or self.n_cores < 1:
            raise ConfigError(
                f"TelemetryConfig needs n_nodes >= 1, n_steps >= 50, n_cores >= 1, got "
                f"{self.n_nodes}, {self.n_steps}, {self.n_cores}"
            )
        if self.period < 2 or self.noise < 0:
            raise ConfigError(f"TelemetryConfig needs period >= 2 and noise >= 0, got {self.period}, {self.noise}")
        if not 0 < self.train_fraction < 1:
            raise ConfigError(f"TelemetryConfig.train_fraction must be in (0, 1), got {self.train_fraction}")
        unknown = set(self.kinds) - set(ANOMALY_KINDS)
        if unknown:
            raise ConfigError(f"TelemetryConfig.kinds: unknown {sorted(unknown)}; known {list(ANOMALY_KINDS)}")
        lo, hi = self.anomaly_length
        test_len = self.n_steps - int(self.train_fraction * self.n_steps)
        if not 1 <= lo <= hi or self.anomalies_per_node * (hi + 10) > test_len:
            raise ConfigError(
                f"TelemetryConfig: {self.anomalies_per_node} anomalies of length up to {hi} "
                f"do not fit in the {test_len} test steps; lower them or raise n_steps"
            )


@dataclass
class FleetTelemetry:
    """``X`` (n_nodes, n_steps, n_metrics); ``labels`` (n_nodes, n_steps), 1 = anomalous step;
    ``events``: one dict per anomaly (node, start, end [exclusive], kind, metrics, metric_idx)."""

    X: np.ndarray
    labels: np.ndarray
    metrics: list[str]
    events: list[dict] = field(default_factory=list)
    train_end: int = 0

    @property
    def train(self) -> np.ndarray:
        """(n_nodes, train_end, n_metrics): the healthy part, for fitting."""
        return self.X[:, : self.train_end]

    @property
    def test(self) -> np.ndarray:
        return self.X[:, self.train_end :]

    @property
    def test_labels(self) -> np.ndarray:
        return self.labels[:, self.train_end :]

    def to_frame(self):
        """Long pandas DataFrame: ``node``, ``t``, one column per metric, ``label``."""
        import pandas as pd

        n, t, m = self.X.shape
        df = pd.DataFrame(self.X.reshape(n * t, m), columns=self.metrics)
        df.insert(0, "t", np.tile(np.arange(t), n))
        df.insert(0, "node", np.repeat([f"node{i:02d}" for i in range(n)], t))
        df["label"] = self.labels.reshape(-1)
        return df


def _workload(cfg: TelemetryConfig, rng: np.random.Generator) -> np.ndarray:
    """(n_nodes, n_steps) load in [0, 1]: shared daily cycle + per-node AR(1) + job bursts."""
    n, t = cfg.n_nodes, cfg.n_steps
    phase = rng.uniform(0, 0.5, size=(n, 1))  # nodes see the cycle slightly shifted
    cycle = 0.5 + 0.25 * np.sin(2 * np.pi * (np.arange(t)[None] / cfg.period + phase))
    ar = np.zeros((n, t))
    eps = rng.normal(0, 0.05, size=(n, t))
    for k in range(1, t):
        ar[:, k] = 0.97 * ar[:, k - 1] + eps[:, k]
    bursts = np.zeros((n, t))
    for i in range(n):
        for start in rng.choice(t, size=max(1, t // 300), replace=False):
            bursts[i, start : start + rng.integers(20, 80)] += rng.uniform(0.15, 0.3)
    return np.clip(cycle + ar + bursts, 0.02, 1.0)


def _node_params(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    u = lambda lo, hi: rng.uniform(lo, hi, size=n)  # noqa: E731 - one node-specific gain each
    return {
        "f_min": u(1.0, 1.4),
        "f_max": u(2.6, 3.4),
        "p_idle": u(60, 90),
        "p_gain": u(120, 200),
        "ambient": u(22, 28),
        "k_power": u(0.18, 0.25),
        "k_fan": u(1.5, 2.5),
        "tau_temp": u(3, 10),
        "fan_min": u(2.0, 3.0),
        "fan_gain": u(0.15, 0.3),
        "setpoint": u(45, 55),
        "tau_fan": u(2, 5),
        "mem_base": u(8, 16),
        "mem_gain": u(20, 40),
        "tau_mem": u(5, 15),
    }


def _simulate(load: np.ndarray, p: dict, masks: dict[str, np.ndarray], noise: np.ndarray) -> dict[str, np.ndarray]:
    """Step the node physics; ``masks[kind]`` (n_nodes, n_steps) switches an anomaly on."""
    n, t = load.shape
    out = {k: np.zeros((n, t)) for k in ("freq", "power", "temp", "fan", "mem")}
    temp, fan, mem_s, leak = p["ambient"] + 20.0, p["fan_min"].copy(), load[:, 0].copy(), np.zeros(n)
    cap = p["f_min"] + 0.25 * (p["f_max"] - p["f_min"])
    for k in range(t):
        freq = p["f_min"] + (p["f_max"] - p["f_min"]) * np.sqrt(load[:, k])
        freq = np.where(masks["freq_cap"][:, k], np.minimum(freq, cap), freq)
        power = p["p_idle"] + p["p_gain"] * load[:, k] * freq / p["f_max"]
        temp = temp + (p["ambient"] + p["k_power"] * power - p["k_fan"] * (fan - p["fan_min"]) - temp) / p["tau_temp"]
        fan_target = p["fan_min"] + p["fan_gain"] * np.maximum(temp - p["setpoint"], 0.0)
        fan = np.where(masks["fan_fail"][:, k], p["fan_min"], fan + (fan_target - fan) / p["tau_fan"])
        mem_s = mem_s + (load[:, k] - mem_s) / p["tau_mem"]
        leak = np.where(masks["mem_leak"][:, k], leak + 0.02 * p["mem_gain"], 0.0)
        values = {
            "freq": freq,
            "power": power,
            "temp": temp,
            "fan": fan,
            "mem": p["mem_base"] + p["mem_gain"] * mem_s + leak,
        }
        for j, name in enumerate(out):
            out[name][:, k] = values[name] * (1 + noise[j, :, k])
    return out


def _plan_events(cfg: TelemetryConfig, rng: np.random.Generator, train_end: int) -> list[dict]:
    """Non-overlapping anomaly windows per node, all inside the test part."""
    events = []
    lo, hi = cfg.anomaly_length
    for node in range(cfg.n_nodes):
        slots = np.array_split(np.arange(train_end + 5, cfg.n_steps - 5), cfg.anomalies_per_node)
        for slot in slots:
            length = int(rng.integers(lo, hi + 1))
            start = int(rng.integers(slot[0], max(slot[0] + 1, slot[-1] - length)))
            kind = str(rng.choice(cfg.kinds))
            events.append({"node": node, "start": start, "end": min(start + length, cfg.n_steps), "kind": kind})
    return events


def make_fleet_telemetry(config: TelemetryConfig | None = None, **overrides) -> FleetTelemetry:
    """Generate a fleet; ``make_fleet_telemetry(n_nodes=4, seed=1)`` overrides config fields."""
    cfg = config or TelemetryConfig()
    if overrides:
        cfg = TelemetryConfig.from_dict({**cfg.to_dict(), **overrides})
    cfg.validate()
    rng = np.random.default_rng(cfg.seed)
    n, t = cfg.n_nodes, cfg.n_steps
    train_end = int(cfg.train_fraction * t)
    load, params = _workload(cfg, rng), _node_params(n, rng)
    noise = rng.normal(0, cfg.noise, size=(5 + cfg.n_cores, n, t))
    events = _plan_events(cfg, rng, train_end)
    masks = {k: np.zeros((n, t), bool) for k in ANOMALY_KINDS}
    for e in events:
        masks[e["kind"]][e["node"], e["start"] : e["end"]] = True
    healthy = _simulate(load, params, {k: np.zeros_like(v) for k, v in masks.items()}, noise)
    faulty = _simulate(load, params, masks, noise)
    any_mask = np.any(np.stack(list(masks.values())), axis=0)
    for name in faulty:
        # Clip anomalous steps into the node's healthy range: only the correlations may break.
        lo = np.quantile(healthy[name], 0.01, axis=1, keepdims=True)
        hi = np.quantile(healthy[name], 0.99, axis=1, keepdims=True)
        faulty[name] = np.where(any_mask, np.clip(faulty[name], lo, hi), faulty[name])
    cores = [np.clip(load * (1 + noise[5 + c] * 3), 0, 1) for c in range(cfg.n_cores)]
    metrics = [f"core{c}_load" for c in range(cfg.n_cores)] + list(faulty)
    X = np.stack(cores + [faulty[m] for m in faulty], axis=-1).astype(np.float32)
    for e in events:
        e["metrics"] = list(ANOMALY_KINDS[e["kind"]])
        e["metric_idx"] = [metrics.index(m) for m in e["metrics"]]
    return FleetTelemetry(X=X, labels=any_mask.astype(np.int64), metrics=metrics, events=events, train_end=train_end)
