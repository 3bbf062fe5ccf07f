"""isthmus's default AnomalyDetector, its autoencoder term alone, and isthmus's classical detectors
(IsolationForest, kNN, LOF, ECOD, PCA) vs PyOD's AE/VAE on 14 ODDS sets, design and held-out halves.

Protocol (issue 5): per data set and seed, a 60/40 stratified split; every method is fitted on
the (contaminated, unlabelled) training rows after a StandardScaler fitted on them, and scored on
the test rows; test AUROC and AUPRC, 3 seeds. isthmus runs with its constructor defaults (only
``random_state`` set): no per-dataset choices anywhere. ``isthmus_ae`` is the same detector with
``distance_weight=0``: only terms computed by the autoencoders (reconstruction error under the
per-feature noise model + latent density). PyOD's VAE runs as it ships, whose KL term is clamped to
zero by default (``capacity=0``), so it is close to a plain AE with noise.

Honest model selection (issue 22): the sets are split into a DESIGN and a HELDOUT half by a fixed
rule (below); every default of AnomalyDetector from issue 22 on was chosen on DESIGN only
(``benchmarks/anomaly_design.py``), and the tables report each half separately. Disclosure: the
``distance_weight=1`` term predates this split and was chosen on 5 of the 14 sets (cardio among
them) with benchmark seed 0; and the per-set numbers of the older detector on all 14 sets (audit,
issue 22's text) were known when the split rule was fixed.

Run from the repo root: ``nice .venv/bin/python benchmarks/anomaly_odds.py [--sets cardio,letter]
[--seeds 3] [--methods isthmus,iforest]``. PyOD columns need ``pip install -e .[bench]``; without
it they are printed as skipped. Last line (all sets run): ``mean_auroc isthmus <v> pyod_autoencoder
<v> iforest <v>``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from typing import Callable

import numpy as np
import torch
from scipy.io import loadmat
from scipy.stats import rankdata
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from isthmus.data import find_data
from isthmus.metrics import auprc, auroc
from isthmus.tasks.anomaly import AnomalyDetector
from isthmus.tasks.anomaly_classic import ECODDetector, IsolationForestDetector, KNNDetector, LOFDetector, PCADetector

SETS = ["annthyroid", "breastw", "cardio", "glass", "ionosphere", "letter", "lympho", "mammography",
        "mnist", "pendigits", "pima", "satellite", "thyroid", "vertebral"]
# Honest model selection (issue 22). Rule, fixed before any result of this split was computed:
# sort the 14 names alphabetically and alternate, starting with the first -> design; the rest are held
# out. Every default of AnomalyDetector is chosen on DESIGN only (benchmarks/anomaly_design.py refuses
# HELDOUT); HELDOUT is reported separately below and never used to choose anything.
DESIGN = sorted(SETS)[0::2]
HELDOUT = sorted(SETS)[1::2]
Scorer = Callable[[np.ndarray, np.ndarray, int], np.ndarray]  # (train, test, seed) -> test scores


_FITTED: dict[tuple, AnomalyDetector] = {}  # one default fit per (data, seed), scored two ways


def _default_fit(Xtr: np.ndarray, seed: int) -> AnomalyDetector:
    key = (Xtr.shape, float(Xtr.sum()), seed)
    if key not in _FITTED:
        _FITTED[key] = AnomalyDetector(random_state=seed).fit(Xtr)
    return _FITTED[key]


def isthmus_default(Xtr: np.ndarray, Xte: np.ndarray, seed: int) -> np.ndarray:
    return _default_fit(Xtr, seed).score_samples(Xte)


def isthmus_ae(Xtr: np.ndarray, Xte: np.ndarray, seed: int) -> np.ndarray:
    """The autoencoder term alone: the default's fit, scored without the distance-from-mean term
    (the term does not enter training, so this equals fitting with ``distance_weight=0``)."""
    det = _default_fit(Xtr, seed)
    weight = det.distance_weight
    try:
        return det.set_params(distance_weight=0.0).score_samples(Xte)
    finally:
        det.set_params(distance_weight=weight)


def _classic(cls: type, **kw: object) -> Scorer:
    """An isthmus classical detector at its defaults (its own scaler off: the data is already scaled)."""
    def run(Xtr: np.ndarray, Xte: np.ndarray, seed: int) -> np.ndarray:
        params = dict(kw)
        if "random_state" in cls().get_params():
            params["random_state"] = seed
        if "scaler" in cls().get_params():
            params["scaler"] = "none"
        return cls(**params).fit(Xtr).score_samples(Xte)

    return run


iforest = _classic(IsolationForestDetector)  # equal to scikit-learn's -IsolationForest.score_samples
knn = _classic(KNNDetector)  # distance to the 5th nearest training row (PyOD KNN's defaults)
lof = _classic(LOFDetector)
ecod = _classic(ECODDetector)
pca_recon = _classic(PCADetector)  # residual from the components explaining 90 % of the variance


def _pyod(name: str) -> Scorer | None:
    try:
        from pyod.models.auto_encoder import AutoEncoder as PyodAE
        from pyod.models.vae import VAE as PyodVAE
    except Exception as exc:  # noqa: BLE001 - any import failure means the columns are skipped
        print(f"# PyOD not importable ({type(exc).__name__}: {exc}); {name} column skipped")
        return None
    cls = PyodAE if name == "pyod_autoencoder" else PyodVAE

    def run(Xtr: np.ndarray, Xte: np.ndarray, seed: int) -> np.ndarray:
        torch.manual_seed(seed)
        np.random.seed(seed)
        model = cls(random_state=seed, verbose=0) if "random_state" in cls.__init__.__code__.co_varnames else cls()
        return model.fit(Xtr).decision_function(Xte)

    return run


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    mat = loadmat(find_data("odds") / f"{name}.mat")
    return np.asarray(mat["X"], dtype=np.float64), np.asarray(mat["y"]).ravel().astype(int)


def evaluate(method: Scorer, X: np.ndarray, y: np.ndarray, seeds: int) -> tuple[float, float, float]:
    """Mean test AUROC, AUPRC and fit+score seconds over ``seeds`` stratified 60/40 splits."""
    aurocs, auprcs, times = [], [], []
    for seed in range(seeds):
        Xtr, Xte, _, yte = train_test_split(X, y, test_size=0.4, stratify=y, random_state=seed)
        sc = StandardScaler().fit(Xtr)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s = np.nan_to_num(method(sc.transform(Xtr), sc.transform(Xte), seed), nan=0.0,
                              posinf=np.finfo(np.float64).max)
        times.append(time.perf_counter() - t0)
        aurocs.append(auroc(yte, s))
        auprcs.append(auprc(yte, s))
    return float(np.mean(aurocs)), float(np.mean(auprcs)), float(np.mean(times))


KNOWN: dict[str, Callable[[], Scorer | None]] = {
    "isthmus": lambda: isthmus_default, "isthmus_ae": lambda: isthmus_ae, "iforest": lambda: iforest,
    "pca": lambda: pca_recon, "knn": lambda: knn, "lof": lambda: lof, "ecod": lambda: ecod,
    "pyod_autoencoder": lambda: _pyod("pyod_autoencoder"), "pyod_vae": lambda: _pyod("pyod_vae")}


def run_set(job: tuple[str, str, int]) -> dict[str, tuple[float, float, float]]:
    """Every method on one data set (a process of its own with --jobs)."""
    name, method_names, seeds = job
    torch.set_num_threads(1)
    methods = {m: KNOWN[m]() for m in method_names.split(",")}
    X, y = load(name)
    _FITTED.clear()
    out = {m: evaluate(fn, X, y, seeds) for m, fn in methods.items() if fn is not None}
    row = "  ".join(f"{m}={r[0]:.3f}" for m, r in out.items())
    print(f"{name:12s} n={len(X):5d} d={X.shape[1]:3d} out={y.mean():.3f}  {row}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--methods", default="isthmus,isthmus_ae,iforest,knn,lof,ecod,pca,pyod_autoencoder,pyod_vae")
    ap.add_argument("--jobs", type=int, default=1, help="data sets run in parallel processes (1 thread each)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    methods = {m: KNOWN[m]() for m in args.methods.split(",")}
    sets = args.sets.split(",")
    res: dict[str, dict[str, tuple[float, float, float]]] = {m: {} for m in methods}
    jobs = [(name, args.methods, args.seeds) for name in sets]
    if args.jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs) as pool:
            done = list(pool.map(run_set, jobs))
    else:
        done = [run_set(job) for job in jobs]
    for name, per in zip(sets, done):
        for m, r in per.items():
            res[m][name] = r
    report(res, sets, methods)
    print("# isthmus_ae reuses the isthmus fit, so its fit+score seconds count scoring only")


def _table(res: dict, sets: list[str], ran: list[str], title: str) -> np.ndarray:
    print(f"\n{title}: test AUROC / AUPRC (mean of seeds)")
    print(f"{'dataset':12s} " + " ".join(f"{m:>16s}" for m in ran))
    for name in sets:
        print(f"{name:12s} " + " ".join(f"{res[m][name][0]:7.3f} / {res[m][name][1]:.3f}" for m in ran))
    auc = np.array([[res[m][n][0] for m in ran] for n in sets])
    ranks = np.vstack([rankdata(-row) for row in auc]).mean(0)
    print(f"{'method':18s} {'mean AUROC':>10s} {'mean AUPRC':>10s} {'mean rank':>9s} {'fit+score s':>11s}")
    for j, m in enumerate(ran):
        print(f"{m:18s} {auc[:, j].mean():10.4f} {np.mean([res[m][n][1] for n in sets]):10.4f} "
              f"{ranks[j]:9.2f} {np.mean([res[m][n][2] for n in sets]):11.2f}")
    return auc


def report(res: dict, sets: list[str], methods: dict) -> None:
    ran = [m for m in methods if methods[m] is not None]
    if not ran:
        return
    halves = [("DESIGN half (defaults chosen here)", [s for s in sets if s in DESIGN]),
              ("HELDOUT half (never used to choose)", [s for s in sets if s in HELDOUT])]
    for title, part in halves:
        if part:
            _table(res, part, ran, f"{title}, {len(part)} sets")
    auc = _table(res, sets, ran, f"ALL {len(sets)} sets")
    if "isthmus_ae" in ran and "iforest" in ran:
        for title, part in halves:
            if part:
                a = np.mean([res["isthmus_ae"][n][0] for n in part])
                f = np.mean([res["iforest"][n][0] for n in part])
                print(f"{title.split(' (')[0]}: isthmus_ae {a:.4f} vs iforest {f:.4f} -> "
                      f"{'met' if a >= f else 'NOT met'} (goal: AE term alone >= IsolationForest)")
    mean = {m: (f"{auc[:, ran.index(m)].mean():.4f}" if m in ran else "nan")
            for m in ("isthmus", "pyod_autoencoder", "iforest")}
    print(f"mean_auroc isthmus {mean['isthmus']} pyod_autoencoder {mean['pyod_autoencoder']} "
          f"iforest {mean['iforest']}")


if __name__ == "__main__":
    main()
