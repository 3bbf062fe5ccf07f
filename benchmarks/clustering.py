"""DeepClusterer's default against the clustering baselines people use, on design and held-out data.

Design data (defaults were chosen here): scikit-learn digits. Held out: MNIST t10k and Cora node
features (``../shared/data``; skipped with a note when absent). Methods, each over ``--seeds`` seeds:
k-means on the raw features; PCA(10) + k-means; DeepClusterer with its defaults (AE latents +
k-means); the N2D-style pipeline (AE latents + spectral embedding + k-means, ``manifold="spectral"``).
Peer figures on digits (``../shared/papers/peers-general.md`` §2): k-means NMI 0.742; AE + spectral
+ k-means 0.846.

Run from the repo root: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/clustering.py [--seeds 5]
[--datasets digits,mnist,cora] [--max-rows N]`` (one BLAS thread, as the Trainer uses one torch thread). The ``cpu-s``
column is CPU seconds per seed (process time). Last line: ``mean_nmi isthmus <value> kmeans <value>``
(over every dataset run).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

from isthmus.metrics.clustering import ari, clustering_accuracy, nmi
from isthmus.tasks.deep_clusterer import DeepClusterer


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    if name == "digits":
        from isthmus.data import load_digits

        t = load_digits()
        return t.X.reshape(len(t.X), -1), t.y
    if name == "mnist":
        from isthmus.data import load_mnist

        t = load_mnist()
        return t.X.reshape(len(t.X), -1), t.y
    if name == "cora":
        from isthmus.data.graphs import load_planetoid

        t, _ = load_planetoid("cora")
        return t.X, t.y
    raise ValueError(name)


def methods(k: int, seed: int):
    return {
        "kmeans": lambda X: KMeans(k, n_init=20, random_state=seed).fit_predict(X),
        "pca_kmeans": lambda X: KMeans(k, n_init=20, random_state=seed).fit_predict(
            PCA(10, random_state=seed).fit_transform(X)),
        "isthmus": lambda X: DeepClusterer(n_clusters=k, random_state=seed).fit_predict(X),
        "ae_spectral": lambda X: DeepClusterer(n_clusters=k, manifold="spectral", random_state=seed).fit_predict(X),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--datasets", default="digits,mnist,cora")
    ap.add_argument("--max-rows", type=int, default=0,
                    help="random subsample (rng 0) of each data set to at most this many rows; 0 = all. The full "
                         "5-seed run takes ~9 CPU-minutes; --max-rows 2000 --seeds 3 is a quick check")
    args = ap.parse_args()
    nmis: dict[str, list[float]] = {}
    print(f"{'data':<8} {'role':<9} {'method':<12} {'ACC':>6} {'NMI':>6} {'ARI':>6} {'cpu-s':>7}")
    for name in args.datasets.split(","):
        try:
            X, y = load(name)
        except Exception as exc:  # noqa: BLE001 - a missing data set is reported, not fatal
            print(f"{name:<8} skipped: {exc}".splitlines()[0])
            continue
        if args.max_rows and len(X) > args.max_rows:
            keep = np.random.default_rng(0).permutation(len(X))[:args.max_rows]
            X, y = X[keep], y[keep]
        role = "design" if name == "digits" else "held-out"
        k = len(np.unique(y))
        per: dict[str, list[tuple[float, float, float, float]]] = {}
        for seed in range(args.seeds):
            for method, fn in methods(k, seed).items():
                t0 = time.process_time()  # CPU seconds: wall time on a shared machine measures the neighbours
                labels = fn(X)
                per.setdefault(method, []).append((clustering_accuracy(y, labels), nmi(y, labels), ari(y, labels),
                                                   time.process_time() - t0))
        for method, rows in per.items():
            a = np.asarray(rows)
            print(f"{name:<8} {role:<9} {method:<12} {a[:, 0].mean():6.3f} {a[:, 1].mean():6.3f} {a[:, 2].mean():6.3f} "
                  f"{a[:, 3].mean():7.1f}")
            nmis.setdefault(method, []).append(float(a[:, 1].mean()))
    if nmis:
        print(f"mean_nmi isthmus {np.mean(nmis['isthmus']):.4f} kmeans {np.mean(nmis['kmeans']):.4f}")


if __name__ == "__main__":
    main()
