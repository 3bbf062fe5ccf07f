"""Sparse-autoencoder metrics: sparsity, reconstruction, latent liveness and loss recovered.

Conventions follow SAELens/SAEBench where they exist (see ``../shared/papers/peers-sae.md``):

* ``l0`` — mean number of non-zero latents per token.
* ``fvu`` — fraction of variance unexplained, Σ‖x − x̂‖² / Σ‖x − x̄‖² (1 − explained variance).
* ``dead``/``dense`` — latents that fired in no token / in more than ``dense_threshold`` of the tokens of
  a window (:class:`FiringTracker`).
* ``loss_recovered`` — (L_zero − L_spliced) / (L_zero − L_clean): 1 when splicing the reconstruction
  into the host model costs nothing, 0 when it is as bad as zero-ablating the activation.
* shrinkage — ``l2_ratio`` = mean ‖x̂‖/‖x‖ over non-zero inputs (SAELens) and ``relative_reconstruction_bias`` γ =
  E‖x̂‖² / E⟨x̂, x⟩ (Rajamanoharan et al. 2024, arXiv 2404.16014): γ < 1 means the SAE shrinks its
  reconstructions (the L1 bias), 1 is unbiased.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np
import torch

__all__ = [
    "l0",
    "sae_mse",
    "fvu",
    "explained_variance",
    "cosine_similarity",
    "FiringTracker",
    "density_histogram",
    "loss_recovered",
    "loss_recovered_from_callables",
    "evaluate_sae",
]


def l0(z: torch.Tensor) -> float:
    """Mean number of non-zero entries per row of a (B, m) code."""
    return float((z != 0).sum(1).float().mean())


def sae_mse(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Mean squared error per element."""
    return float((x - x_hat).pow(2).mean())


def fvu(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Fraction of variance unexplained: Σ‖x − x̂‖² / Σ‖x − mean(x)‖² over the batch."""
    den = (x - x.mean(0)).pow(2).sum()
    return float((x - x_hat).pow(2).sum() / den.clamp_min(1e-12))


def explained_variance(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    return 1.0 - fvu(x, x_hat)


def cosine_similarity(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Mean cosine similarity between each input row and its reconstruction."""
    return float(torch.nn.functional.cosine_similarity(x, x_hat, dim=1).mean())


class FiringTracker:
    """Counts, over a window of tokens, how often each of ``m`` latents fires.

    >>> t = FiringTracker(3); t.update(torch.tensor([[1., 0, 0], [2., 0, 0]]))
    >>> t.dead_fraction(), t.density().tolist()
    (0.6666666666666666, [1.0, 0.0, 0.0])
    """

    def __init__(self, m: int, window: int | None = None) -> None:
        self.m, self.window = m, window
        self._chunks: list[tuple[int, torch.Tensor]] = []  # (tokens, fire counts (m,))

    def update(self, z: torch.Tensor) -> None:
        """Add a (B, m) code; with ``window`` set, only the last ``window`` tokens (by chunk) are kept."""
        self._chunks.append((z.shape[0], (z != 0).sum(0).to(torch.long).cpu()))
        if self.window is not None:
            while len(self._chunks) > 1 and sum(n for n, _ in self._chunks[1:]) >= self.window:
                self._chunks.pop(0)

    @property
    def tokens(self) -> int:
        return sum(n for n, _ in self._chunks)

    def density(self) -> torch.Tensor:
        """(m,) firing frequency of each latent over the window."""
        if not self._chunks:
            return torch.zeros(self.m)
        counts = torch.stack([c for _, c in self._chunks]).sum(0)
        return counts.double().div(max(self.tokens, 1)).float()

    def dead_fraction(self) -> float:
        return float((self.density() == 0).float().mean())

    def dense_fraction(self, threshold: float = 0.1) -> float:
        """Share of latents firing on more than ``threshold`` of the tokens."""
        return float((self.density() > threshold).float().mean())


def density_histogram(
    density: torch.Tensor | np.ndarray, bins: int = 30, log_range: tuple[float, float] = (-7.0, 0.0)
) -> dict[str, Any]:
    """Histogram of log10 firing density (dead latents counted apart), as in Anthropic's plots."""
    d = np.asarray(density, dtype=np.float64)
    alive = d[d > 0]
    counts, edges = np.histogram(np.log10(alive), bins=bins, range=log_range)
    return {"counts": counts.tolist(), "log10_edges": edges.tolist(), "dead": int((d == 0).sum())}


def loss_recovered(clean_loss: float, spliced_loss: float, zero_ablated_loss: float) -> float:
    """(L_zero − L_spliced) / (L_zero − L_clean); NaN when ablation does not change the loss."""
    den = zero_ablated_loss - clean_loss
    if abs(den) < 1e-12:
        return float("nan")
    return (zero_ablated_loss - spliced_loss) / den


def loss_recovered_from_callables(
    clean: Callable[[], float], spliced: Callable[[], float], zero_ablated: Callable[[], float]
) -> dict[str, float]:
    """Evaluate the three host-model losses (each a zero-argument callable, e.g. a forward with a hook
    that replaces the activation by the SAE reconstruction / by zeros) and the loss-recovered score."""
    c, s, z = float(clean()), float(spliced()), float(zero_ablated())
    return {"clean_loss": c, "spliced_loss": s, "zero_ablated_loss": z, "loss_recovered": loss_recovered(c, s, z)}


@torch.no_grad()
def evaluate_sae(
    sae: torch.nn.Module, batches: Iterable[torch.Tensor], dense_threshold: float = 0.1, bins: int = 30
) -> dict[str, Any]:
    """L0, MSE, FVU, cosine, shrinkage, dead/dense fractions and density histogram of ``sae`` over ``batches``.

    ``sae`` needs ``forward(x)`` returning an output with ``recon`` and a dense ``latent`` (B, m).
    Batches are (B, d) tensors, or ``(x, y)`` pairs for a transcoder (errors are then measured against y).
    """
    was = sae.training
    sae.eval()
    tracker, n, sums = None, 0, {"l0": 0.0, "mse": 0.0, "cosine": 0.0}
    sq_err, xs, xsq, rr, rx, l2_sum, l2_n = 0.0, None, 0.0, 0.0, 0.0, 0.0, 0
    try:
        for batch in batches:
            inp, x = (batch[0], batch[1]) if isinstance(batch, (tuple, list)) else (batch, batch)
            out = sae(inp)
            z = out.latent
            tracker = tracker or FiringTracker(z.shape[1])
            tracker.update(z)
            b = x.shape[0]
            sums["l0"] += l0(z) * b
            sums["mse"] += sae_mse(x, out.recon) * b
            sums["cosine"] += cosine_similarity(x, out.recon) * b
            r = out.recon.double()
            xn = x.double().norm(dim=1)
            ok = xn > 1e-6 * xn.mean().clamp_min(1e-30)  # all-zero inputs have no ratio
            l2_sum += float((r.norm(dim=1)[ok] / xn[ok]).sum())
            l2_n += int(ok.sum())
            rr += float(r.pow(2).sum())
            rx += float((r * x.double()).sum())
            sq_err += float((x - out.recon).double().pow(2).sum())
            xs = x.double().sum(0) if xs is None else xs + x.double().sum(0)
            xsq += float(x.double().pow(2).sum())
            n += b
    finally:
        sae.train(was)
    if n == 0:
        raise ValueError("evaluate_sae got no batches")
    assert tracker is not None and xs is not None  # set by the first batch
    total_var = xsq - float((xs * xs).sum()) / n  # Σ‖x − x̄‖² over all tokens
    density = tracker.density()
    return {
        **{k: v / n for k, v in sums.items()},
        "fvu": sq_err / max(total_var, 1e-12),
        "tokens": n,
        "l2_ratio": l2_sum / l2_n if l2_n else float("nan"),
        "relative_reconstruction_bias": rr / rx if abs(rx) > 1e-12 else float("nan"),
        "dead_fraction": tracker.dead_fraction(),
        "dense_fraction": tracker.dense_fraction(dense_threshold),
        "density_histogram": density_histogram(density, bins),
    }
