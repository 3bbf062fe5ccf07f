"""Choose the autoencoder score of the default AnomalyDetector on the ODDS *design* half only.

This is the model-selection experiment behind the defaults in ``isthmus.tasks.anomaly`` (issue 22).
It refuses the held-out sets (``anomaly_odds.HELDOUT``), so nothing here can leak their labels.
Per design set and seed: the split and scaling of ``anomaly_odds.py``; the default ensemble is
fitted with ``distance_weight=0`` and each training option (plain MSE, trimmed loss); the
fitted members are then scored several ways (cheap, no refit):

- ``member``:  sum of squared errors / each member's median training error (the old score);
- ``feature``: per-feature noise model, each feature's squared error divided by that
  feature's mean training error (a diagonal Gaussian whose variances are learned per feature);
- ``latent``: the Mahalanobis distance of the member's latent code from the training codes
  (Ledoit-Wolf covariance), normalised by its median training value (a latent-density term);
  ``latent_knn``: the distance to the 5th nearest training code instead (a local latent density);
- ``distance``: the squared distance from the training mean in the scaled input space (not an
  autoencoder term; the old default added it).

Run from the repo root: ``nice .venv/bin/python benchmarks/anomaly_design.py [--seeds 3]``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.covariance import LedoitWolf
from sklearn.ensemble import IsolationForest
from sklearn.model_selection import train_test_split
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).parent))
from anomaly_odds import DESIGN, HELDOUT, load  # noqa: E402

from isthmus.metrics import auroc  # noqa: E402
from isthmus.tasks.anomaly import AnomalyDetector, _squared_error  # noqa: E402


def _codes(model: torch.nn.Module, Z: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.encode(torch.from_numpy(Z.astype(np.float64))).numpy()


def components(det: AnomalyDetector, Ztr: np.ndarray, Zte: np.ndarray) -> dict[str, np.ndarray]:
    """Each candidate term on the test rows, each normalised by its median on the training rows."""
    out: dict[str, list[np.ndarray]] = {"member": [], "feature": [], "latent": [], "latent_knn": []}
    for model in det.models_:
        etr, ete = _squared_error(model, Ztr), _squared_error(model, Zte)
        out["member"].append(ete.sum(1) / max(np.median(etr.sum(1)), 1e-12))
        f_scale = np.maximum(etr.mean(0), 1e-6 * etr.mean())
        ftr = (etr / f_scale).sum(1)
        out["feature"].append((ete / f_scale).sum(1) / np.median(ftr))
        ctr, cte = _codes(model, Ztr), _codes(model, Zte)
        lw = LedoitWolf().fit(ctr)
        ltr, lte = lw.mahalanobis(ctr), lw.mahalanobis(cte)
        out["latent"].append(lte / max(np.median(ltr), 1e-12))
        nn = NearestNeighbors(n_neighbors=5).fit(ctr)
        ktr, kte = nn.kneighbors(None)[0][:, -1], nn.kneighbors(cte)[0][:, -1]
        out["latent_knn"].append(kte / max(np.median(ktr), 1e-12))
    comp = {k: np.mean(v, 0) for k, v in out.items()}
    dtr, dte = ((Ztr - Ztr.mean(0)) ** 2).sum(1), ((Zte - Ztr.mean(0)) ** 2).sum(1)
    comp["distance"] = dte / np.median(dtr)
    return comp


COMBOS = {  # name -> weights of the components
    "member (old AE term)": {"member": 1}, "feature": {"feature": 1}, "latent": {"latent": 1},
    "member+latent": {"member": 1, "latent": 1}, "feature+latent": {"feature": 1, "latent": 1},
    "feature+0.5latent": {"feature": 1, "latent": 0.5}, "feature+latent_knn": {"feature": 1, "latent_knn": 1},
    "member+distance (old default)": {"member": 1, "distance": 1},
    "feature+latent+distance": {"feature": 1, "latent": 1, "distance": 1},
}


def scores(det: AnomalyDetector, Ztr: np.ndarray, Zte: np.ndarray) -> dict[str, np.ndarray]:
    """Every candidate score of the test rows from one fitted detector."""
    comp = components(det, Ztr, Zte)
    return {name: sum(w * comp[k] for k, w in ws.items()) for name, ws in COMBOS.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default=",".join(DESIGN))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--trims", default="0,0.1")
    args = ap.parse_args()
    sets = args.sets.split(",")
    leaked = sorted(set(sets) & set(HELDOUT))
    if leaked:
        raise SystemExit(f"refusing held-out sets {leaked}: defaults are chosen on the design half only")
    torch.set_num_threads(1)
    trims = [float(t) for t in args.trims.split(",")]
    res: dict[str, dict[str, list[float]]] = {}
    for name in sets:
        X, y = load(name)
        for seed in range(args.seeds):
            Xtr, Xte, _, yte = train_test_split(X, y, test_size=0.4, stratify=y, random_state=seed)
            sc = StandardScaler().fit(Xtr)
            Ztr, Zte = sc.transform(Xtr), sc.transform(Xte)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                s_if = -IsolationForest(random_state=seed).fit(Ztr).score_samples(Zte)
            res.setdefault("iforest", {}).setdefault(name, []).append(auroc(yte, s_if))
            for trim in trims:
                t0 = time.perf_counter()
                det = AnomalyDetector(distance_weight=0.0, trim=trim, random_state=seed).fit(Ztr)
                # the detector re-standardises internally; score in its own scaled space
                ztr = det.scaler_.transform(Ztr.astype(np.float32)).astype(np.float64)
                zte = det.scaler_.transform(Zte.astype(np.float32)).astype(np.float64)
                for k, s in scores(det, ztr, zte).items():
                    res.setdefault(f"trim{trim:g}/{k}", {}).setdefault(name, []).append(auroc(yte, s))
                print(f"# {name} seed {seed} trim {trim:g}: {time.perf_counter() - t0:.1f}s", flush=True)
        print(f"{name:12s} " + "  ".join(f"{k}={np.mean(v[name]):.3f}" for k, v in res.items()), flush=True)
    print(f"\nDesign half ({len(sets)} sets, {args.seeds} seeds): mean test AUROC")
    print(f"{'score':28s} " + " ".join(f"{n[:8]:>8s}" for n in sets) + f" {'mean':>7s}")
    for k, v in res.items():
        per = [np.mean(v[n]) for n in sets]
        print(f"{k:28s} " + " ".join(f"{p:8.3f}" for p in per) + f" {np.mean(per):7.4f}")


if __name__ == "__main__":
    main()
