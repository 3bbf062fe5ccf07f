"""Latent editing with a trained decoder: unsupervised directions, inversion, and edited candidates.

* :func:`sefa_directions` — closed-form factorisation (SeFa; Shen & Zhou, arXiv 2007.06600): the top
  eigenvectors of ``Wᵀ W`` for the decoder's first linear map ``W`` (``out × latent``) are the latent
  directions that the decoder's first layer amplifies most. Unit-norm, mutually orthogonal.
* :func:`invert` — "batch inverse encoding": start from the encoder's code and run ``steps`` Adam steps on
  the reconstruction MSE of each image with the decoder frozen; returns the per-step loss trace.
* :func:`edit_candidates` — for each image, the decoded edits ``z ± m·v`` along each direction ``v``. With
  ``residual=True`` the edit is applied as ``x + G(z + δ) − G(z)``: the decoder's change is added to the
  original image, so details the decoder cannot reproduce are kept (standing in for the "latent codes
  expansion" that raises fidelity in NaTra, Wang et al. 2021).
* :func:`direction_monotonicity` — does a direction move a known attribute (read by a predictor trained
  where the attribute is known) consistently? A validity check for unsupervised directions;
  :func:`direction_response` also gives the size of the change, which a validity check needs too
  (:func:`valid_directions` combines both).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

__all__ = ["sefa_directions", "invert", "edit_candidates", "direction_scales", "direction_monotonicity"]

Decoder = Callable[[torch.Tensor], torch.Tensor]


def sefa_directions(weight: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(directions (k, latent), eigenvalues (k,))`` of ``Wᵀ W`` for ``weight`` ``(out, latent)``, largest first."""
    w = weight.detach().double()
    if w.ndim != 2:
        raise ValueError(f"weight must be a 2-D (out, latent) matrix, got shape {tuple(weight.shape)}")
    if not 1 <= k <= w.shape[1]:
        raise ValueError(f"k must be in [1, {w.shape[1]}] (the latent size), got {k}")
    vals, vecs = torch.linalg.eigh(w.T @ w)  # ascending
    order = torch.argsort(vals, descending=True)[:k]
    dirs = vecs[:, order].T
    # eigenvectors have no sign; fix one (largest entry positive) so that runs are reproducible
    idx = dirs.abs().argmax(1)
    dirs = dirs * torch.sign(dirs[torch.arange(k), idx]).unsqueeze(1)
    return dirs.to(weight.dtype), vals[order].to(weight.dtype)


def direction_scales(codes: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """``(k,)`` standard deviation of ``codes`` ``(N, latent)`` projected on each direction: the unit in which a
    magnitude is "bounded" (a step of 1 moves a code by one typical spread along that direction)."""
    if codes.ndim != 2 or directions.ndim != 2 or codes.shape[1] != directions.shape[1]:
        raise ValueError(
            f"codes (N, d) and directions (k, d) must share d, got {tuple(codes.shape)}, {tuple(directions.shape)}"
        )
    return (codes.detach() @ directions.T).std(0, unbiased=True)


def invert(
    encoder: Callable[[torch.Tensor], torch.Tensor],
    decoder: Decoder,
    x: torch.Tensor,
    steps: int = 10,
    lr: float = 0.05,
    batch_size: int = 512,
) -> tuple[torch.Tensor, list[float]]:
    """``(codes (N, latent), mean MSE after 0..steps steps)``: encoder init + per-image latent optimisation.

    The encoder and decoder are not updated (no parameter gradients are kept); each image's code is
    optimised on its own reconstruction MSE, so the result does not depend on the batch split.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    codes, trace = [], torch.zeros(steps + 1, dtype=torch.float64)
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size]
        with torch.no_grad():
            z0 = encoder(xb)
        z = z0.detach().clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=lr)
        for t in range(steps + 1):
            rec = decoder(z).reshape(xb.shape)
            per = F.mse_loss(rec, xb, reduction="none").flatten(1).mean(1)
            trace[t] += float(per.detach().sum())
            if t == steps:
                break
            opt.zero_grad()
            # sum over images: each code's gradient is its own image's loss gradient
            (g,) = torch.autograd.grad(per.sum(), z)
            z.grad = g
            opt.step()
        codes.append(z.detach())
    return torch.cat(codes), (trace / max(len(x), 1)).tolist()


@torch.no_grad()
def edit_candidates(
    decoder: Decoder,
    codes: torch.Tensor,
    x: torch.Tensor,
    directions: torch.Tensor,
    magnitudes: Sequence[float] | torch.Tensor,
    residual: bool = True,
    batch_size: int = 512,
) -> torch.Tensor:
    """``(N, K, *x.shape[1:])`` with ``K = len(directions) · len(magnitudes)``: candidate ``k = j·M + m`` is image
    ``i`` moved by ``magnitudes[m]`` along ``directions[j]`` (magnitudes are absolute latent distances),
    clipped to [0, 1]."""
    mags = torch.as_tensor(magnitudes, dtype=codes.dtype)
    if mags.ndim == 1:
        mags = mags.unsqueeze(0).expand(len(directions), -1)  # the same magnitudes for every direction
    if mags.shape[0] != len(directions):
        raise ValueError(f"magnitudes must be (M,) or (k, M) for {len(directions)} directions, got {tuple(mags.shape)}")
    deltas = (directions.unsqueeze(1) * mags.unsqueeze(2)).reshape(-1, directions.shape[1])  # (K, d)
    k = len(deltas)
    out = torch.empty((len(x), k, *x.shape[1:]), dtype=x.dtype)
    for i in range(0, len(x), batch_size):
        z, xb = codes[i : i + batch_size], x[i : i + batch_size]
        base = decoder(z).reshape(xb.shape) if residual else None
        moved = decoder((z.unsqueeze(1) + deltas.unsqueeze(0)).reshape(-1, z.shape[1]))
        moved = moved.reshape(len(z), k, *xb.shape[1:])
        if residual:
            assert base is not None
            moved = xb.unsqueeze(1) + moved - base.unsqueeze(1)
        out[i : i + batch_size] = moved.clamp(0.0, 1.0)
    return out


def direction_response(
    decoder: Decoder,
    codes: torch.Tensor,
    x: torch.Tensor,
    dirs: torch.Tensor,
    mags: torch.Tensor,
    regress: Callable[[Any], Any],
    n_steps: int = 7,
) -> tuple[Any, Any]:
    """How a step ``t ∈ [−mags[j], mags[j]]`` along each direction ``j`` moves each output ``o`` of an
    attribute predictor ``regress`` (images → ``(N, outputs)``). Returns two ``(k, outputs)`` arrays:
    ``rho``, the mean over images of Spearman(t, output) (0 where no image's output changes), and
    ``change``, the mean over images of output(+mags[j]) − output(−mags[j]). Spearman alone rewards a
    monotone change of any size (a dead decoder's float noise included), so a validity check needs both."""
    import warnings

    import numpy as np
    from scipy.stats import spearmanr

    t = np.linspace(-1.0, 1.0, n_steps)
    rho, change = [], []
    for j in range(len(dirs)):
        cand = edit_candidates(decoder, codes, x, dirs[j : j + 1], torch.as_tensor(t) * mags[j])  # (N, T, ...)
        pred = np.asarray(regress(cand.reshape(-1, *x.shape[1:]).numpy())).reshape(len(x), n_steps, -1)
        r = []
        for o in range(pred.shape[2]):
            with warnings.catch_warnings():  # a direction that changes nothing gives constant outputs: rho NaN
                warnings.simplefilter("ignore")
                rhos = [spearmanr(t, pred[i, :, o]).statistic for i in range(len(x))]
            r.append(float(np.nanmean(rhos)) if np.isfinite(rhos).any() else 0.0)
        rho.append(r)
        change.append((pred[:, -1] - pred[:, 0]).mean(0))
    return np.asarray(rho, dtype=float), np.asarray(change, dtype=float)


def direction_monotonicity(
    decoder: Decoder,
    codes: torch.Tensor,
    x: torch.Tensor,
    dirs: torch.Tensor,
    mags: torch.Tensor,
    regress: Callable[[Any], Any],
    n_steps: int = 7,
) -> list[float]:
    """Per direction ``j``: how consistently a step ``t ∈ [−mags[j], mags[j]]`` along it moves an attribute
    predictor ``regress`` (images → ``(N, outputs)``): the max over outputs of |mean over images of
    Spearman(t, output)|. 0 for a direction that changes no output. Blind to the size of the change: see
    :func:`direction_response`."""
    rho, _ = direction_response(decoder, codes, x, dirs, mags, regress, n_steps)
    return [float(v) for v in abs(rho).max(1)]


def valid_directions(rho: Any, size: Any, min_size: float, min_rho: float = 0.5) -> Any:
    """Per direction: does some attribute output move both consistently (|Spearman| >= ``min_rho``) and by a
    real amount (``size`` >= ``min_size``, e.g. |change| from :func:`direction_response` in units of the
    attribute's spread)? ``rho``, ``size``: ``(k, outputs)``; returns ``(k,)`` booleans."""
    import numpy as np

    return ((np.abs(rho) >= min_rho) & (size >= min_size)).any(1)
