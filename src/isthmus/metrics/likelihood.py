"""Importance-sampled estimate of log p(x) for Gaussian-latent VAEs (the IWAE bound).

Burda, Grosse & Salakhutdinov, "Importance Weighted Autoencoders" (arXiv 1509.00519):

    log p(x) ≈ log (1/k) Σ_s p(x | z_s) p(z_s) / q(z_s | x),   z_s ~ q(z | x),

a lower bound that tightens to log p(x) as k grows (k = 1 gives the ELBO in expectation). The
observation model follows the model's objective: ``bce`` → Bernoulli on decoder probabilities,
``mse`` → Gaussian with variance ``obs_var`` (0.5 makes it the "sum of squares" loss the
AutoEncoder trains with), ``l1`` → Laplace with scale 1. Works with any bottleneck exposing
``posterior(h)`` and ``prior_log_prob(z)`` (Gaussian, ARD, β-TCVAE).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

__all__ = ["importance_sampled_log_likelihood", "observation_log_prob"]


def observation_log_prob(recon: torch.Tensor, x: torch.Tensor, kind: str = "mse", obs_var: float = 0.5) -> torch.Tensor:
    """log p(x | z) summed over features: ``recon`` (..., F), ``x`` broadcastable → (...)."""
    if kind == "bce":
        p = recon.clamp(1e-6, 1 - 1e-6)  # the clamp the training loss uses
        return (x * p.log() + (1 - x) * (1 - p).log()).sum(-1)
    if kind == "mse":
        return (-0.5 * (x - recon).pow(2) / obs_var - 0.5 * math.log(2 * math.pi * obs_var)).sum(-1)
    if kind == "l1":
        return (-(x - recon).abs() - math.log(2.0)).sum(-1)
    raise ValueError(f"no observation model for recon_loss {kind!r}; use 'mse', 'bce' or 'l1'")


def _chunk_ll(
    model: Any, x: torch.Tensor, k: int, k_chunk: int, kind: str, obs_var: float, generator: torch.Generator | None
) -> torch.Tensor:
    # ``model`` is duck-typed (encoder, Gaussian-family bottleneck, decoder); the caller checks it
    bn = model.bottleneck
    mu, logvar = bn.posterior(model.encoder(x))  # (b, D) each
    std = torch.exp(0.5 * logvar)
    target = x.flatten(1)  # (b, F)
    weights = []
    for start in range(0, k, k_chunk):
        s = min(k_chunk, k - start)
        eps = torch.randn((s, *mu.shape), generator=generator).to(mu)  # (s, b, D)
        z = mu + std * eps
        log_q = (-0.5 * (eps.pow(2) + logvar + math.log(2 * math.pi))).sum(-1)  # (s, b)
        log_p = bn.prior_log_prob(z)  # (s, b)
        recon = model.decoder(z.reshape(-1, z.shape[-1])).reshape(s, x.shape[0], -1)  # (s, b, F)
        weights.append(observation_log_prob(recon, target, kind, obs_var) + log_p - log_q)
    w = torch.cat(weights)  # (k, b)
    return torch.logsumexp(w, 0) - math.log(k)


@torch.no_grad()
def importance_sampled_log_likelihood(
    model: nn.Module,
    x: torch.Tensor,
    k: int = 100,
    batch_size: int = 256,
    obs_var: float = 0.5,
    recon_loss: str | None = None,
    generator: torch.Generator | None = None,
    k_chunk: int = 64,
) -> torch.Tensor:
    """Per-sample estimate of log p(x) in nats, ``(N,)``, from ``k`` importance samples.

    ``model`` has ``encoder``, ``bottleneck`` (Gaussian family) and ``decoder``; ``recon_loss``
    defaults to ``model.objective.recon_loss``. Runs in eval mode and restores the mode after.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    bn = getattr(model, "bottleneck", None)
    if bn is None or not hasattr(bn, "posterior") or not hasattr(bn, "prior_log_prob"):
        raise TypeError(
            "importance_sampled_log_likelihood needs a model with a Gaussian-family bottleneck "
            "(posterior + prior_log_prob), e.g. bottleneck='gaussian', 'ard' or 'tcvae'"
        )
    default: str = getattr(getattr(model, "objective", None), "recon_loss", "mse")
    kind = recon_loss or default
    was = model.training
    model.eval()
    try:
        return torch.cat(
            [
                _chunk_ll(model, x[i : i + batch_size], k, k_chunk, kind, obs_var, generator)
                for i in range(0, len(x), batch_size)
            ]
        )
    finally:
        model.train(was)
