"""Graphs for clustering and graph-aware training: kNN graphs, normalised adjacency powers, Planetoid.

Conventions (SCGC, Kulatilleke et al. 2022, ``gayanku/SCGC`` ``utils.load_graph``): a graph is a
symmetric 0/1 ``scipy.sparse`` matrix without self-loops; :func:`normalize_adjacency` adds the
self-loops and row-normalises, ``Â = D⁻¹(A + I)``, *before* any power is taken, and
:func:`adjacency_power` forms ``Â^r`` or the cumulative influence ``Â + Â² + … + Â^r``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import scipy.sparse as sp

from isthmus.data.table import Table

__all__ = [
    "knn_graph",
    "edges_to_adjacency",
    "normalize_adjacency",
    "adjacency_power",
    "rewire_edges",
    "load_planetoid",
]


def _check_square(A: sp.spmatrix | np.ndarray, what: str = "adjacency") -> sp.csr_matrix:
    A = sp.csr_matrix(A)
    if A.shape[0] != A.shape[1]:
        raise ValueError(f"{what} must be square, got shape {A.shape}")
    if A.nnz and not np.isfinite(A.data).all():
        raise ValueError(f"{what} holds NaN or inf")
    return A


def knn_graph(X: np.ndarray, k: int = 5, metric: str = "euclidean") -> sp.csr_matrix:
    """Symmetric 0/1 graph linking each row to its ``k`` nearest other rows (self excluded)."""
    from sklearn.neighbors import NearestNeighbors

    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or len(X) < 2:
        raise ValueError(f"knn_graph needs a 2-D array with at least 2 rows, got shape {X.shape}")
    if not 1 <= k < len(X):
        raise ValueError(f"k must be in [1, {len(X) - 1}] for {len(X)} rows, got {k}")
    nn = NearestNeighbors(n_neighbors=k + 1, metric=metric).fit(X)
    idx = nn.kneighbors(X, return_distance=False)
    rows = np.repeat(np.arange(len(X)), k + 1)
    A = sp.csr_matrix((np.ones(rows.size), (rows, idx.ravel())), shape=(len(X), len(X)))
    A.setdiag(0)  # duplicates of a row may list themselves elsewhere than first
    A = ((A + A.T) > 0).astype(np.float64)
    A.eliminate_zeros()
    return A.tocsr()


def edges_to_adjacency(edge_index: np.ndarray, n_nodes: int) -> sp.csr_matrix:
    """Symmetric 0/1 adjacency from a ``(2, E)`` edge list (either direction; self-loops dropped)."""
    e = np.asarray(edge_index)
    if e.ndim != 2 or e.shape[0] != 2:
        raise ValueError(f"edge_index must have shape (2, E), got {e.shape}")
    if e.size and (e.min() < 0 or e.max() >= n_nodes):
        raise ValueError(f"edge_index holds node ids outside [0, {n_nodes})")
    A = sp.csr_matrix((np.ones(e.shape[1]), (e[0], e[1])), shape=(n_nodes, n_nodes))
    A = ((A + A.T) > 0).astype(np.float64)
    A.setdiag(0)
    A.eliminate_zeros()
    return A.tocsr()


def normalize_adjacency(
    A: sp.spmatrix | np.ndarray, self_loops: bool = True, kind: Literal["row", "sym"] = "row"
) -> sp.csr_matrix:
    """``D⁻¹(A + I)`` (row, SCGC/SDCN) or ``D^-½(A + I)D^-½`` (sym, GCN); isolated rows stay zero."""
    A = _check_square(A)
    if self_loops:
        A = A + sp.eye(A.shape[0], format="csr")
    deg = np.asarray(A.sum(axis=1)).ravel()
    with np.errstate(divide="ignore"):
        if kind == "row":
            inv = np.where(deg > 0, 1.0 / deg, 0.0)
            return sp.diags(inv) @ A
        if kind == "sym":
            inv = np.where(deg > 0, 1.0 / np.sqrt(deg), 0.0)
            return (sp.diags(inv) @ A @ sp.diags(inv)).tocsr()
    raise ValueError(f"kind must be 'row' or 'sym', got {kind!r}")


def adjacency_power(A_hat: sp.spmatrix | np.ndarray, r: int, cumulative: bool = False) -> np.ndarray:
    """Dense ``Â^r`` (or ``Σ_{i≤r} Â^i`` with ``cumulative``). Dense because the contrastive loss needs
    every pair; fine for graphs of a few thousand nodes."""
    if r < 1:
        raise ValueError(f"the power r must be >= 1, got {r}")
    A = _check_square(A_hat).toarray()
    out, power = (A.copy() if cumulative else None), A
    for _ in range(r - 1):
        power = power @ A
        if cumulative:
            out += power
    return out if out is not None else power  # out is set iff cumulative


def rewire_edges(A: sp.spmatrix, fraction: float, seed: int = 0) -> sp.csr_matrix:
    """Replace ``fraction`` of the undirected edges by random non-edges (robustness to wrong edges)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    A = _check_square(A)
    n = A.shape[0]
    upper = sp.triu(A, k=1).tocoo()
    rng = np.random.default_rng(seed)
    m = upper.nnz
    drop = rng.choice(m, size=int(round(fraction * m)), replace=False)
    keep = np.setdiff1d(np.arange(m), drop)
    rows, cols = list(upper.row[keep]), list(upper.col[keep])
    existing = set(zip(upper.row.tolist(), upper.col.tolist()))
    added = 0
    while added < len(drop):
        i, j = sorted(rng.integers(0, n, 2).tolist())
        if i != j and (i, j) not in existing:
            existing.add((i, j))
            rows.append(i)
            cols.append(j)
            added += 1
    return edges_to_adjacency(np.asarray([rows, cols]), n)


def load_planetoid(name: str = "cora", root: str | Path | None = None) -> tuple[Table, sp.csr_matrix]:
    """Planetoid citation graph (``planetoid/<name>.npz``, pickle-free): ``(Table(X, y), adjacency)``.

    Features are the binary bag-of-words rows as float32 (dense; Cora is 2708 × 1433); labels −1 mark
    Citeseer's unlabelled isolated nodes.
    """
    from isthmus.data.paths import find_data

    path = (Path(root) if root is not None else find_data("planetoid")) / f"{name}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; Planetoid graphs are read from <data>/planetoid/<name>.npz")
    with np.load(path, allow_pickle=False) as d:
        X = sp.csr_matrix((d["x_data"], d["x_indices"], d["x_indptr"]), shape=tuple(d["x_shape"]))
        y, edges = d["y"], d["edge_index"]
    A = edges_to_adjacency(edges, X.shape[0])
    return Table(X=np.asarray(X.todense(), dtype=np.float32), y=np.asarray(y), meta={"name": f"planetoid-{name}"}), A
