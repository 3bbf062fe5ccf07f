"""Disentanglement metrics against known ground-truth factors: InfoMEC, MIG and DCI.

All take ``sources`` (N, n_sources) — the ground-truth factor values, any numeric labels — and
``latents`` (N, n_latents), and return plain floats (plus the matrices behind them).

* **InfoMEC** (Hsu et al., "Disentanglement via Latent Quantization", arXiv 2305.18378): from the
  normalised mutual information matrix ``NMI[i, j] = I(source_i; latent_j) / H(source_i)``,
  InfoM (modularity: each active latent informs about one source), InfoC (compactness: each source is
  captured by one latent), both rescaled so a uniform spread scores 0 and a one-to-one map 1; and InfoE
  (explicitness: how much of each source's entropy a linear, multinomial logistic read-out of all
  latents removes). Written from the paper's definitions and the authors' released metric description.
* **MIG** (Chen et al., "Isolating Sources of Disentanglement in VAEs", arXiv 1802.04942): mean over
  sources of the gap between the two latents most informative about it, divided by H(source); latents
  are discretised into equal-width bins.
* **DCI** (Eastwood & Williams, ICLR 2018): an importance matrix R (latent × source) from per-source
  regressors; disentanglement = importance-weighted ``1 - H_K(row)``, completeness = mean ``1 - H_D(column)``,
  informativeness = held-out R² of the regressors. The default importance is a small random forest
  (nonlinear, and on a random code its importances spread evenly, so D and C fall to ≈0). ``"lasso"`` is
  faster and exact for linear codes, but on a random code its few tiny non-zero coefficients look
  concentrated (D ≈ 0.5 measured), so read its D/C only together with its informativeness.
  Regression treats each factor's label index as ordinal, which suits position/scale/angle factors.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from sklearn.ensemble import RandomForestRegressor
from sklearn.feature_selection import mutual_info_classif
from sklearn.linear_model import Lasso, LogisticRegression
from sklearn.metrics import log_loss, mutual_info_score
from sklearn.model_selection import train_test_split

from isthmus.metrics._arrays import to_numpy

__all__ = ["infomec", "nmi_matrix", "mig", "dci", "disentanglement_report"]


def _prepare(sources: Any, latents: Any) -> tuple[np.ndarray, np.ndarray]:
    """Sources label-encoded per column (N, S) ints; latents (N, L) floats."""
    s = to_numpy(sources, "sources", dtype=None)
    z = to_numpy(latents, "latents")
    s = s[:, None] if s.ndim == 1 else s
    z = z[:, None] if z.ndim == 1 else z
    if s.ndim != 2 or z.ndim != 2 or s.shape[0] != z.shape[0]:
        raise ValueError(f"sources and latents must be (N, S) and (N, L) with one N, got {s.shape} and {z.shape}")
    if s.shape[0] < 2:
        raise ValueError("need at least 2 samples")
    coded = np.stack([np.unique(s[:, i], return_inverse=True)[1].ravel() for i in range(s.shape[1])], 1)
    return coded.astype(np.int64), z


def _standardize(z: np.ndarray) -> np.ndarray:
    std = z.std(0)
    return (z - z.mean(0)) / np.where(std > 0, std, 1.0)  # a constant latent stays 0, not NaN


def _label_encode(z: np.ndarray) -> np.ndarray:
    """Each column's distinct values as integer labels 0..k-1, (N, L)."""
    return np.stack([np.unique(z[:, j], return_inverse=True)[1].ravel() for j in range(z.shape[1])], 1)


def _entropy(labels: np.ndarray) -> float:
    return float(mutual_info_score(labels, labels))  # nats; I(s; s) = H(s)


def nmi_matrix(
    sources: Any, latents: Any, discrete_latents: bool = False, n_neighbors: int = 10, random_state: int = 0
) -> np.ndarray:
    """``NMI[i, j] = I(source_i; latent_j) / H(source_i)``, shape (S, L).

    Discrete latents use the plug-in MI of the label pairs; continuous ones the KSG estimator of
    ``mutual_info_classif`` on standardised latents (k = ``n_neighbors``), as the InfoMEC authors do.
    """
    s, z = _prepare(sources, latents)
    out = np.zeros((s.shape[1], z.shape[1]))
    zc = _label_encode(z) if discrete_latents else z  # label pairs, not floats, for the plug-in MI
    for i in range(s.shape[1]):
        h = _entropy(s[:, i])
        if h == 0:
            continue  # a constant source carries no information to share
        if discrete_latents:
            mi = np.array([mutual_info_score(s[:, i], zc[:, j]) for j in range(z.shape[1])])
        else:
            mi = mutual_info_classif(
                _standardize(z), s[:, i], discrete_features=False, n_neighbors=n_neighbors, random_state=random_state
            )
        out[i] = mi / h
    return out


def _concentration(m: np.ndarray, axis: int) -> float:
    """Mean over the other axis of max/sum along ``axis``, rescaled so uniform → 0 and one-hot → 1."""
    n = m.shape[axis]
    if n < 2:
        return float("nan")  # with one source (or one active latent) the score is undefined
    total = m.sum(axis)
    ratio = np.divide(m.max(axis), total, out=np.full(total.shape, 1.0 / n), where=total > 0)
    return float((ratio.mean() - 1.0 / n) / (1.0 - 1.0 / n))


def _explicitness(s: np.ndarray, z: np.ndarray, discrete_latents: bool, max_iter: int) -> float:
    """Mean over sources of (H_null - CE) / H_null for an unpenalised balanced logistic read-out."""
    if discrete_latents:
        cols = [np.unique(z[:, j], return_inverse=True)[1].ravel() for j in range(z.shape[1])]
        x = np.concatenate([np.eye(c.max() + 1)[c] for c in cols], 1)  # one-hot per latent
    else:
        x = _standardize(z)
    scores = []
    for i in range(s.shape[1]):
        y = s[:, i]
        k = int(y.max()) + 1
        if k < 2:
            continue
        clf = LogisticRegression(C=np.inf, class_weight="balanced", max_iter=max_iter).fit(x, y)
        ce = log_loss(y, clf.predict_proba(x), labels=np.arange(k))
        # The same balanced regression on an all-zero input predicts the uniform distribution
        # (its weighted optimum), so its cross-entropy is exactly log k.
        h_null = float(np.log(k))
        scores.append((h_null - ce) / h_null)
    return float(np.mean(scores)) if scores else float("nan")


def infomec(
    sources: Any,
    latents: Any,
    discrete_latents: bool = False,
    n_neighbors: int = 10,
    random_state: int = 0,
    max_iter: int = 500,
) -> dict[str, Any]:
    """InfoM, InfoE, InfoC of ``latents`` against ``sources``.

    Active latents: range > 0 (discrete) or range > max range / 20 (continuous); InfoM and InfoC use
    only those. Returns ``{"infom", "infoe", "infoc", "nmi" (S, L), "active" (L,) bool}``.
    """
    s, z = _prepare(sources, latents)
    nmi = nmi_matrix(s, z, discrete_latents, n_neighbors, random_state)
    ranges = z.max(0) - z.min(0)
    active = ranges > 0 if discrete_latents else ranges > ranges.max() / 20
    pruned = nmi[:, active]  # (S, L_active)
    if pruned.shape[1] == 0:
        infom = infoc = float("nan")
    else:
        infom = _concentration(pruned, axis=0)  # per latent: one source?
        infoc = _concentration(pruned, axis=1)  # per source: one latent?
    infoe = _explicitness(s, z, discrete_latents, max_iter)
    return {"infom": infom, "infoe": infoe, "infoc": infoc, "nmi": nmi, "active": active}


def _discretize(z: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width bins per latent (the usual MIG protocol), (N, L) ints."""
    cols = []
    for j in range(z.shape[1]):
        edges = np.histogram_bin_edges(z[:, j], bins=n_bins)
        cols.append(np.digitize(z[:, j], edges[1:-1]))
    return np.stack(cols, 1)


def mig(sources: Any, latents: Any, n_bins: int = 20) -> dict[str, Any]:
    """Mutual information gap. Returns ``{"mig", "per_source" (S,), "mi" (S, L) in nats}``."""
    s, z = _prepare(sources, latents)
    if z.shape[1] < 2:
        raise ValueError("MIG needs at least 2 latents (it is a gap between the top two)")
    zd = _discretize(z, n_bins)
    mi = np.array([[mutual_info_score(s[:, i], zd[:, j]) for j in range(z.shape[1])] for i in range(s.shape[1])])
    gaps = []
    for i in range(s.shape[1]):
        h = _entropy(s[:, i])
        top = np.sort(mi[i])[::-1]
        gaps.append((top[0] - top[1]) / h if h > 0 else 0.0)
    per = np.array(gaps)
    return {"mig": float(per.mean()), "per_source": per, "mi": mi}


def _importance(x_tr, y_tr, x_te, y_te, kind: str, alpha: float, random_state: int) -> tuple[np.ndarray, float]:
    """Importance of each latent for one (standardised) source, and the held-out R²."""
    if kind == "lasso":
        model = Lasso(alpha=alpha).fit(x_tr, y_tr)
        imp = np.abs(model.coef_)
    else:
        model = RandomForestRegressor(n_estimators=30, max_depth=8, random_state=random_state, n_jobs=1)
        model.fit(x_tr, y_tr)
        imp = model.feature_importances_
    return imp, float(np.clip(model.score(x_te, y_te), 0.0, 1.0))


def _one_minus_entropy(p_rows: np.ndarray, base: int) -> np.ndarray:
    """1 - H_base of each row of a non-negative matrix (normalised per row); all-zero rows score 0."""
    total = p_rows.sum(1, keepdims=True)
    if base < 2:
        return (total[:, 0] > 0).astype(float)  # one choice only: trivially concentrated
    p = np.divide(p_rows, total, out=np.zeros_like(p_rows), where=total > 0)
    h = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), 1) / np.log(base)
    return np.where(total[:, 0] > 0, 1.0 - h, 0.0)


def dci(
    sources: Any,
    latents: Any,
    importance: Literal["lasso", "forest"] = "forest",
    alpha: float = 0.02,
    test_fraction: float = 0.3,
    random_state: int = 0,
) -> dict[str, Any]:
    """DCI disentanglement, completeness, informativeness; ``importance`` (L, S) is returned too."""
    if importance not in ("lasso", "forest"):
        raise ValueError(f"importance must be 'lasso' or 'forest', got {importance!r}")
    s, z = _prepare(sources, latents)
    x = _standardize(z)
    y = _standardize(s.astype(float))
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, random_state=random_state)
    n_lat, n_src = z.shape[1], s.shape[1]
    r = np.zeros((n_lat, n_src))
    info = np.zeros(n_src)
    for k in range(n_src):
        r[:, k], info[k] = _importance(x_tr, y_tr[:, k], x_te, y_te[:, k], importance, alpha, random_state)
    total = r.sum()
    d_per_latent = _one_minus_entropy(r, n_src)  # (L,)
    weights = r.sum(1) / total if total > 0 else np.zeros(n_lat)
    c_per_source = _one_minus_entropy(r.T, n_lat)  # (S,)
    return {
        "disentanglement": float(np.sum(weights * d_per_latent)),
        "completeness": float(c_per_source.mean()),
        "informativeness": float(info.mean()),
        "importance": r,
    }


def disentanglement_report(
    sources: Any, latents: Any, discrete_latents: bool = False, random_state: int = 0
) -> dict[str, float]:
    """All scalar scores at once: InfoM, InfoE, InfoC, MIG and DCI (forest) D, C, I, as plain floats.

    ``discrete_latents`` applies to InfoMEC (plug-in MI, one-hot read-out); MIG bins and DCI treat
    the latents as numbers either way, so a quantized code is scored by the same rule as a continuous one.
    """
    info = infomec(sources, latents, discrete_latents=discrete_latents, random_state=random_state)
    d = dci(sources, latents, random_state=random_state)
    return {
        "infom": info["infom"],
        "infoe": info["infoe"],
        "infoc": info["infoc"],
        "mig": mig(sources, latents)["mig"],
        "dci_d": d["disentanglement"],
        "dci_c": d["completeness"],
        "dci_i": d["informativeness"],
        "active_latents": float(np.sum(info["active"])),
    }
