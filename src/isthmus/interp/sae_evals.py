"""The SAEBench-style evaluations that need labels or ground truth: feature absorption on a planted
hierarchy and k-sparse probing. (Shrinkage is in :func:`isthmus.metrics.sae.evaluate_sae`; the KL score
when spliced is in :func:`isthmus.interp.splice.splice_loss_recovered`.)

* **Absorption** (Chanin et al. 2024, arXiv 2409.14507, ported from first-letter tokens to the planted
  parent/child hierarchy of :class:`~isthmus.interp.superposition.SuperpositionData`). For each parent
  feature p: its *main latent* is the latent whose firing best predicts p's firing (F1). On tokens where p
  fires, the main latent's *false negatives* are counted, and a false negative is *absorbed* when some
  other firing latent j carries at least ``min_share`` of p's true coefficient along p's direction,
  z_j·⟨d_j, f_p⟩ ≥ min_share·a_p — typically a child latent that swallowed its parent. Reported per
  parent and averaged: ``absorption_rate`` (absorbed / parent-positive tokens) and ``false_negative_rate``.
* **k-sparse probing** (Gurnee et al. 2023; SAEBench ``sparse_probing``): on a binary task, pick the k
  latents with the largest class-mean difference on the training split, fit a logistic regression on
  them, report held-out accuracy for each k — next to the same probe on the top-k input dimensions and
  a dense probe on all inputs. Tasks: the planted features' firing (superposition data) or token
  identity (any store with token ids: "is this token t?" for the most frequent tokens).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from isthmus.interp.superposition import SuperpositionData

__all__ = [
    "planted_absorption",
    "absorption_from_codes",
    "k_sparse_probe",
    "probe_tasks_from_tokens",
    "planted_probe_tasks",
    "sparse_probing",
]


def _f1(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """F1 of each column of ``pred`` (n, m) bool against ``truth`` (n,) bool."""
    t = truth.unsqueeze(1)
    tp = (pred & t).sum(0).float()
    return 2 * tp / (pred.sum(0).float() + t.sum().float()).clamp_min(1)


@torch.no_grad()
def absorption_from_codes(
    codes: torch.Tensor,
    dictionary: torch.Tensor,
    features: torch.Tensor,
    coef: torch.Tensor,
    parents: Sequence[int],
    min_share: float = 0.4,
) -> dict[str, Any]:
    """Absorption of ``parents`` given codes (n, m), decoder rows (m, d), true features (F, d) and true
    coefficients (n, F). See the module docstring for the definitions."""
    w = dictionary / dictionary.norm(dim=1, keepdim=True).clamp_min(1e-12)
    fired = codes > 0
    rows = []
    for p in parents:
        pos = coef[:, p] > 0
        n_pos = int(pos.sum())
        if n_pos == 0:
            continue
        f1 = _f1(fired, pos)
        main = int(f1.argmax())
        fn = pos & ~fired[:, main]
        along = codes * (w @ features[p])  # (n, m): each latent's contribution along f_p
        along[:, main] = 0
        absorbed = fn & (along.max(1).values >= min_share * coef[:, p])
        rows.append(
            {
                "parent": int(p),
                "main_latent": main,
                "main_f1": float(f1[main]),
                "positives": n_pos,
                "false_negative_rate": int(fn.sum()) / n_pos,
                "absorption_rate": int(absorbed.sum()) / n_pos,
            }
        )
    if not rows:
        raise ValueError("no parent feature fired in the sample; draw more tokens")
    return {
        "absorption_rate": float(np.mean([r["absorption_rate"] for r in rows])),
        "false_negative_rate": float(np.mean([r["false_negative_rate"] for r in rows])),
        "main_f1": float(np.mean([r["main_f1"] for r in rows])),
        "per_parent": rows,
        "min_share": min_share,
    }


def _encode(sae: Any, x: torch.Tensor, batch: int = 4096) -> torch.Tensor:
    w = sae.W_enc
    was = sae.training
    sae.eval()
    try:
        with torch.no_grad():
            return torch.cat(
                [
                    sae.encode(x[s : s + batch].to(device=w.device, dtype=w.dtype)).float().cpu()
                    for s in range(0, len(x), batch)
                ]
            )
    finally:
        sae.train(was)


@torch.no_grad()
def planted_absorption(
    sae: Any, data: SuperpositionData, n: int = 16_384, seed: int = 12_345, min_share: float = 0.4
) -> dict[str, Any]:
    """Absorption of ``sae`` on ``n`` fresh samples of ``data`` (every parent of its hierarchy)."""
    x, coef = data.sample(n, torch.Generator().manual_seed(seed))
    parents = sorted({int(p) for p in data.parent[data.parent >= 0]})
    return absorption_from_codes(
        _encode(sae, x), sae.W_dec.detach().float().cpu(), data.features, coef, parents, min_share
    )


def _top_by_mean_diff(x: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    diff = np.abs(x[y].mean(0) - x[~y].mean(0))
    return np.argsort(-diff, kind="stable")[:k]


def k_sparse_probe(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    ks: Sequence[int] = (1, 2, 5, 10, 20),
) -> dict[str, float]:
    """Held-out accuracy of a logistic-regression probe on the top-k columns (by class-mean difference)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    y_train, y_test = np.asarray(y_train, bool), np.asarray(y_test, bool)
    if y_train.all() or not y_train.any():
        raise ValueError("a probing task needs both classes in its training split")
    out = {}
    for k in ks:
        cols = _top_by_mean_diff(x_train, y_train, min(k, x_train.shape[1]))
        scaler = StandardScaler().fit(x_train[:, cols])
        clf = LogisticRegression(max_iter=1000, class_weight="balanced")
        clf.fit(scaler.transform(x_train[:, cols]), y_train)
        out[str(k)] = float(clf.score(scaler.transform(x_test[:, cols]), y_test))
    return out


def sparse_probing(
    sae: Any,
    x: torch.Tensor,
    tasks: dict[str, np.ndarray],
    ks: Sequence[int] = (1, 2, 5, 10, 20),
    test_fraction: float = 0.3,
    seed: int = 0,
) -> dict[str, Any]:
    """k-sparse probes on the SAE's codes vs on the raw activations, for each binary task (n,) over rows of x."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(x))
    cut = int(len(x) * (1 - test_fraction))
    tr, te = perm[:cut], perm[cut:]
    z = _encode(sae, x).numpy()
    xs = x.float().cpu().numpy()
    results: dict[str, dict[str, Any]] = {}
    for name, y in tasks.items():
        y = np.asarray(y, bool)
        if y[tr].all() or not y[tr].any() or y[te].all() or not y[te].any():
            continue
        results[name] = {
            "positives": int(y.sum()),
            "sae": k_sparse_probe(z[tr], y[tr], z[te], y[te], ks),
            "inputs": k_sparse_probe(xs[tr], y[tr], xs[te], y[te], ks),
            "dense_inputs": k_sparse_probe(xs[tr], y[tr], xs[te], y[te], (xs.shape[1],))[str(xs.shape[1])],
        }
    if not results:
        raise ValueError("no probing task has both classes in both splits; use more rows")
    summary = {f"sae_k{k}": float(np.mean([r["sae"][str(k)] for r in results.values()])) for k in ks}
    summary.update({f"inputs_k{k}": float(np.mean([r["inputs"][str(k)] for r in results.values()])) for k in ks})
    summary["dense_inputs"] = float(np.mean([r["dense_inputs"] for r in results.values()]))
    return {"mean": summary, "tasks": results, "ks": list(ks)}


def probe_tasks_from_tokens(
    token_ids: torch.Tensor, n_tasks: int = 4, min_share: float = 0.01
) -> dict[str, np.ndarray]:
    """Token-identity tasks ("token == t") for the ``n_tasks`` most frequent tokens above ``min_share``."""
    ids = token_ids.cpu().numpy()
    if (ids < 0).all():
        return {}
    values, counts = np.unique(ids[ids >= 0], return_counts=True)
    order = np.argsort(-counts, kind="stable")
    return {f"token_{int(values[i])}": ids == values[i] for i in order[:n_tasks] if counts[i] >= min_share * len(ids)}


def planted_probe_tasks(coef: torch.Tensor, n_tasks: int = 4, min_p: float = 0.05) -> dict[str, np.ndarray]:
    """ "Does planted feature i fire?" for the ``n_tasks`` most frequent features firing on ≥ ``min_p``."""
    p = (coef > 0).float().mean(0)
    order = torch.argsort(p, descending=True).tolist()
    return {f"feature_{i}": (coef[:, i] > 0).numpy() for i in order[:n_tasks] if float(p[i]) >= min_p}
