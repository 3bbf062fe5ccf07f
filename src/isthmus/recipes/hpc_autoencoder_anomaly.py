"""Seed 6 — per-node autoencoders detect anomalies in HPC telemetry without anomaly labels.

Borghesi et al., IAAI 2019, arXiv 1811.05269. One dense autoencoder per node, trained on that
node's healthy period only; score = reconstruction error; threshold = the 99th percentile of the
training errors. Here the autoencoder is :class:`~isthmus.tasks.anomaly.AnomalyDetector` with
``distance_weight=0`` (pure reconstruction error, the paper's detector), wrapped per node by
:class:`~isthmus.tasks.fleet.FleetDetector`.

Data: the synthetic fleet of :mod:`isthmus.data.telemetry` (correlation-breaking anomalies that
stay inside every metric's range; ≈ 19 % of test steps are anomalous, so flagging nothing scores
≈ 0.81 accuracy) and the SMD server machines (:mod:`isthmus.data.smd`; each machine is a "node",
the same data for every seed). Rows are single time steps, not the paper's window aggregates.

Arms, each fitted per node on the same healthy rows and thresholded the same way (99th percentile
of its training scores): the per-node AE (ours), one global AE over all nodes, per-metric z-score
(max |z|), PCA reconstruction error (90 % variance), IsolationForest, OneClassSVM (≤ 2000 training
rows, RBF, ν = 0.01), and ``flag_all`` — every step flagged, the F1 base rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, TypeAlias

import numpy as np

from isthmus.recipes.base import Paper, Recipe, RecipeSettings
from isthmus.recipes.gates import Check, Gate, Measured, Precondition, plateaued
from isthmus.recipes.registry import register_recipe

PERCENTILE = 99.0
CLASSIC = ("zscore", "pca", "iforest", "ocsvm")


@dataclass
class Settings(RecipeSettings):
    n_nodes: int = 4
    n_steps: int = 2400
    n_cores: int = 4
    anomalies_per_node: int = 3
    ae_members: int = 1
    ae_max_steps: int = 1500
    max_train: int = 4000  # training rows per node (a subsample; 0 = all)
    smd: bool = True
    smd_test: int = 0  # first train and test steps of each SMD machine (0 = all)


def _baseline_scorer(name: str, Xtr: np.ndarray, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """Fit one classical detector on a node's healthy rows; return its scoring function (higher = anomalous).
    PCA and IsolationForest are the library's (:mod:`isthmus.tasks.anomaly_classic`); the per-metric z-score
    and the OneClassSVM are this paper's extra baselines."""
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import OneClassSVM

    from isthmus.tasks.anomaly_classic import IsolationForestDetector, PCADetector

    if name == "pca":
        return PCADetector(variance=0.9, percentile=PERCENTILE).fit(Xtr).score_samples
    if name == "iforest":
        return IsolationForestDetector(random_state=seed, percentile=PERCENTILE).fit(Xtr).score_samples
    sc = StandardScaler().fit(Xtr)
    if name == "zscore":
        return lambda X: np.abs(sc.transform(X)).max(1)
    rows = np.random.default_rng(seed).permutation(len(Xtr))[:2000]
    svm = OneClassSVM(nu=0.01, gamma="scale").fit(sc.transform(Xtr)[rows])
    return lambda X: -svm.score_samples(sc.transform(X))


def detection_metrics(y: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    from isthmus.metrics.anomaly import auroc, best_f1, f1_at_threshold

    pred = scores > threshold
    return {
        "auroc": auroc(y, scores),
        "f1_p99": f1_at_threshold(y, scores, threshold),
        "accuracy_p99": float((pred == y).mean()),
        "best_f1": best_f1(y, scores).f1,
    }


def _subsample(X: np.ndarray, n: int, seed: int) -> np.ndarray:
    if not n or len(X) <= n:
        return X
    return X[np.sort(np.random.default_rng(seed).permutation(len(X))[:n])]


def score_nodes(method: str, nodes: dict, seed: int, s: Settings) -> tuple[np.ndarray, list[list[float]]]:
    """Per-node-thresholded scores (score − the node's p99 training score) of ``method`` on the pooled test
    rows, and the AE's training-loss curves (one per node; empty for classical methods)."""
    train = [_subsample(x, s.max_train, seed) for x in nodes["train"]]
    test = nodes["test"]
    ent_te = np.concatenate([np.full(len(x), i) for i, x in enumerate(test)])
    if method in ("per_node_ae", "global_ae"):
        from isthmus.tasks.anomaly import AnomalyDetector
        from isthmus.tasks.fleet import FleetDetector

        ent_tr = np.concatenate([np.full(len(x), i) for i, x in enumerate(train)])
        det = AnomalyDetector(
            distance_weight=0.0, percentile=PERCENTILE, n_estimators=s.ae_members, max_steps=s.ae_max_steps
        )
        fleet = FleetDetector(det, fit_global=method == "global_ae", random_state=seed)
        fleet.fit(np.concatenate(train), ent_tr)
        mode = "global" if method == "global_ae" else "entity"
        scores = fleet.decision_function(np.concatenate(test), ent_te, mode=mode)
        if mode == "global":
            assert fleet.global_ is not None  # fitted: fit_global is set for this mode
            dets = [fleet.global_]
        else:
            dets = list(fleet.detectors_.values())
        curves = [[h["train_loss"] for h in d.history_[0]] for d in dets]
        return scores, curves
    out = np.zeros(len(ent_te))
    for i, x in enumerate(train):
        score = _baseline_scorer(method, x, seed)
        out[ent_te == i] = score(test[i]) - np.percentile(score(x), PERCENTILE)
    return out, []


@lru_cache(maxsize=1)
def _smd(n_test: int) -> dict | None:
    from isthmus.data import DataNotFoundError
    from isthmus.data.smd import load_smd

    try:
        ms = load_smd(n_test=n_test or None, n_train=n_test or None)
    except DataNotFoundError:
        return None
    return {
        "train": [m.train for m in ms],
        "test": [m.test for m in ms],
        "y": np.concatenate([m.labels for m in ms]),
        "names": [m.name for m in ms],
    }


def _arm(method: str):
    def arm(s: Settings, seed: int, data: dict) -> Measured:
        metrics: dict[str, float] = {}
        curves: dict[str, list[float]] = {}
        conv = []
        for ds, nodes in data.items():
            if nodes is None:
                metrics.update({f"{ds}_{k}": float("nan") for k in ("auroc", "f1_p99", "accuracy_p99", "best_f1")})
                continue
            y = nodes["y"]
            if method == "flag_all":  # every step flagged: the F1 base rate (its accuracy is the anomaly share)
                metrics.update(
                    {
                        f"{ds}_auroc": 0.5,
                        f"{ds}_f1_p99": 2 * y.mean() / (1 + y.mean()),
                        f"{ds}_accuracy_p99": float(y.mean()),
                        f"{ds}_best_f1": 2 * y.mean() / (1 + y.mean()),
                        f"{ds}_flag_nothing_accuracy": float(1 - y.mean()),
                    }
                )
                continue
            scores, node_curves = score_nodes(method, nodes, seed, s)
            metrics.update({f"{ds}_{k}": v for k, v in detection_metrics(y, scores, 0.0).items()})
            for i, c in enumerate(node_curves):
                curves[f"{ds}_loss_node{i}"] = c
                conv.append(plateaued(c))
        if method.endswith("_ae"):
            metrics["converged"] = float(all(conv))
        return Measured(metrics=metrics, curves=curves)

    return arm


def _gates() -> tuple[Gate, ...]:
    g = [
        Gate(
            "detects anomalies: fleet F1@p99 over the base rate",
            "fleet_f1_p99",
            "per_node_ae",
            "flag_all",
            effect=0.25,
            headline=True,
            why="flagging every step already scores F1 2p/(1+p) ≈ 0.32 (and flagging none 0.81 accuracy); the "
            "paper's 88-96 % accuracy at this anomaly share needs F1 at least 0.25 above that",
        )
    ]
    for ds in ("fleet", "smd"):
        for b in CLASSIC:
            g.append(
                Gate(
                    f"{ds}: AUROC not below {b}",
                    f"{ds}_auroc",
                    "per_node_ae",
                    b,
                    kind="non_inferiority",
                    effect=0.01,
                    why="'beating simpler baselines': at least as good, within one AUROC point",
                )
            )
    return tuple(g)


@register_recipe
class HPCAutoencoderAnomaly(Recipe):
    slug = "hpc-autoencoder-anomaly"
    paper = Paper("Anomaly Detection using Autoencoders in High Performance Computing Systems", "1811.05269")
    claim = (
        "A dense autoencoder per node, trained only on healthy telemetry and thresholded at the 99th percentile "
        "of its training error, detects unseen anomalies (88-96 % accuracy in the paper), beating simpler "
        "baselines."
    )
    Settings: TypeAlias = Settings
    modes = {
        "smoke": Settings(
            seeds=1,
            n_nodes=2,
            n_steps=800,
            n_cores=2,
            anomalies_per_node=2,
            ae_max_steps=200,
            max_train=1000,
            smd_test=5000,
        ),
        "quick": Settings(seeds=3, ae_max_steps=1000, smd_test=10000),
        "record": Settings(seeds=3, ae_max_steps=1500),
        "full": Settings(
            seeds=10,
            n_nodes=8,
            n_steps=4000,
            n_cores=8,
            anomalies_per_node=4,
            ae_members=5,
            ae_max_steps=2000,
            max_train=0,
        ),
    }
    ours = "per_node_ae"
    gates = _gates()
    preconditions = (
        Precondition(
            "AE training converged",
            "per_node_ae",
            "converged",
            ">=",
            1.0,
            over="every",
            why="every node's AE loss curve has plateaued (plateaued() on the logged epochs)",
        ),
        Precondition(
            "positive control: PCA finds the fleet anomalies",
            "pca",
            "fleet_auroc",
            ">=",
            0.7,
            why="a linear reconstruction detector must see the planted anomalies, else the data are broken",
        ),
    )

    def data(self, s: Settings, seed: int) -> dict:
        from isthmus.data.telemetry import make_fleet_telemetry

        short: dict[str, Any] = {"anomaly_length": (30, 60)} if s.n_steps < 1000 else {}
        f = make_fleet_telemetry(
            seed=seed,
            n_nodes=s.n_nodes,
            n_steps=s.n_steps,
            n_cores=s.n_cores,
            anomalies_per_node=s.anomalies_per_node,
            **short,
        )
        out: dict[str, Any] = {
            "fleet": {"train": list(f.train), "test": list(f.test), "y": np.concatenate(list(f.test_labels))}
        }
        smd = _smd(s.smd_test) if s.smd else None
        if smd is not None:
            out["smd"] = smd
        elif s.smd:  # judged but absent: NaN metrics, and the "SMD present" check makes the verdict inconclusive
            out["smd"] = None
        return out

    def arms(self, s: Settings):
        return {m: _arm(m) for m in ("per_node_ae", "global_ae", *CLASSIC, "flag_all")}

    def checks(self, s: Settings, cells) -> list[Check]:
        if not s.smd:
            return []
        ok = _smd(s.smd_test) is not None
        return [
            Check(
                "SMD present",
                ok,
                "SMD judged on every machine found"
                if ok
                else "SMD not found (find_data('smd')); its gates cannot be judged",
            )
        ]

    def describe(self, s: Settings) -> dict[str, Any]:
        smd = _smd(s.smd_test) if s.smd else None
        return {
            "autoencoder": {
                "members": s.ae_members,
                "max_steps": s.ae_max_steps,
                "distance_weight": 0.0,
                "sizes": "hidden clip(2·d, 16, 128), latent round(d/4) (AnomalyDetector defaults)",
            },
            "threshold": f"{PERCENTILE:g}th percentile of training scores, per node",
            "smd": {
                "machines": smd["names"],
                "test_steps": s.smd_test or "all",
                "anomalous_share": float(smd["y"].mean()),
            }
            if smd
            else "not used",
            "deviations": [
                "rows are single time steps (the paper aggregates windows)",
                "no L1 activity regularisation; the judged data include the synthetic fleet",
                "the paper compares with supervised prior work; 'simpler baselines' are ours",
            ],
        }

    changes = (
        "Before the frame (quick, 3 seeds): verdict 'partial' from (a) accuracy@p99 ≥ 0.88 met (0.934) and (b) AUROC "
        "within 0.01 of every baseline failed (AE 0.867 vs PCA 0.903, OC-SVM 0.909). The audit showed (a) cannot fail: "
        "≈ 19 % of test steps are anomalous (the old note said 'a few %'), so flagging nothing scores ≈ 0.81 and "
        "every reconstruction method passed. (a) is replaced by F1@p99 against the flag-everything base rate.",
        "SMD was reported, not judged; the audit measured the AE below z-score and IsolationForest there (0.746 vs "
        "0.796 / 0.791), so SMD is now judged with the same non-inferiority gates as the fleet.",
        "PCA and IsolationForest moved to the library detectors of tasks/anomaly_classic (issue 22) after the record "
        "run; they score identically (max |Δ| ~1e-16, tests/test_recipe_hpc_autoencoder_anomaly.py), so the result "
        "stands.",
        "The audit's strengthening probe (5-member ensemble 0.864, latent 4 0.861 vs 1 AE 0.855) found the AE deficit "
        "is not an under-powered-AE artefact; the recipe keeps one member in quick/record and five in full.",
    )
