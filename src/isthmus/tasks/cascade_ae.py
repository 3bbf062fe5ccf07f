"""The cascade of small SELU autoencoders of Nagar et al. 2024 (arXiv 2404.02180, seed paper 3).

As in the authors' notebooks (``sydney-machine-learning/autoencoders_remotesensing``, 2024; see
``../shared/papers/errata-seeds-01-22.md``): every stage is a dense SELU autoencoder with a sigmoid
output, L1 activity regularisation (1e-4) on every layer and MSE, trained by Adam (lr 1e-3) on its own:

* stage 1 (the paper's "canonical" AE): ``n → 6 → 4 → 2 → 4 → 6 → n``;
* stage 2: input = [stage-1 reconstruction ⊕ x], layers ``10 → 5 → 2 → 5 → 10``; its 5-d layer is kept;
* stage 3: input = [stage-2 5-d encoding ⊕ stage-2 input], layers ``15 → 10 → 5 → 2 → 5 → 10 → 15``.

The features are stage 3's 2-d code. Inputs are min-max scaled to [0, 1] (the sigmoid output's range).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence, cast

import numpy as np
import torch
from torch import nn

from isthmus.models.output import ModelOutput

__all__ = ["SeluAE", "CascadeAE", "STAGES"]

# (encoder widths, index of the kept layer in the encoder) per stage; the decoder mirrors the encoder.
STAGES: tuple[tuple[tuple[int, ...], int], ...] = (((6, 4, 2), 2), ((10, 5, 2), 1), ((15, 10, 5, 2), 3))


class SeluAE(nn.Module):
    """Dense SELU autoencoder, sigmoid output, L1 activity penalty on every layer's output (Keras
    ``activity_regularizer=l1(λ)``: λ · Σ|a| per sample, averaged over the batch)."""

    def __init__(self, in_dim: int, widths: Sequence[int], l1: float = 1e-4) -> None:
        super().__init__()
        if in_dim < 1 or not widths or min(widths) < 1:
            raise ValueError(f"SeluAE needs in_dim >= 1 and positive widths, got {in_dim}, {list(widths)}")
        if l1 < 0:
            raise ValueError(f"l1 must be >= 0, got {l1}")
        dims = [in_dim, *widths, *reversed(widths[:-1])]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out = nn.Linear(dims[-1], in_dim)
        self.n_enc, self.l1 = len(widths), float(l1)

    def activations(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        acts, h = [], x
        for layer in self.layers:
            h = torch.selu(layer(h))
            acts.append(h)
        return acts, torch.sigmoid(self.out(h))

    def encode(self, x: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        """Output of encoder layer ``layer`` (default: the code, the last encoder layer)."""
        acts, _ = self.activations(x)
        return acts[self.n_enc - 1 if layer is None else layer]

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.activations(x)[1]

    def compute_loss(self, batch) -> ModelOutput:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        acts, recon = self.activations(x)
        mse = (recon - x).pow(2).mean()
        l1 = self.l1 * cast(torch.Tensor, sum(a.abs().sum(1).mean() for a in [*acts, recon]))  # never empty
        return ModelOutput(loss=mse + l1, losses={"recon": mse, "l1": l1}, recon=recon, latent=acts[self.n_enc - 1])


@dataclass
class CascadeAE:
    """Fit the cascade (``n_stages`` = 1 is the canonical AE alone) and encode with it.

    ``epochs`` / ``batch_sizes`` per stage (the authors: 10 / 5 / 5 epochs, batch 64 / 32 / 16, over a
    whole scene). After :meth:`fit`, ``stages`` holds the trained AEs and ``curves`` their per-epoch losses.
    """

    n_stages: int = 3
    epochs: tuple[int, ...] = (10, 5, 5)
    batch_sizes: tuple[int, ...] = (64, 32, 16)
    l1: float = 1e-4
    lr: float = 1e-3
    seed: int = 0
    stages: list[SeluAE] = field(default_factory=list)
    curves: list[list[float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 1 <= self.n_stages <= len(STAGES):
            raise ValueError(f"n_stages must be in 1..{len(STAGES)}, got {self.n_stages}")
        if len(self.epochs) < self.n_stages or len(self.batch_sizes) < self.n_stages:
            raise ValueError(
                f"need epochs and batch_sizes for {self.n_stages} stage(s), got {self.epochs}, {self.batch_sizes}"
            )

    def _inputs(self, x: torch.Tensor, upto: int) -> torch.Tensor:
        """The input of stage ``upto`` (0-based), built from the trained earlier stages."""
        inp = x
        for i in range(upto):
            ae = self.stages[i]
            keep = STAGES[i][1]
            inp = torch.cat([ae.reconstruct(inp) if i == 0 else ae.encode(inp, keep), inp], 1)
        return inp

    def fit(self, x: np.ndarray) -> "CascadeAE":
        from isthmus.train import Trainer, TrainerConfig

        X = torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32)
        self.stages, self.curves = [], []
        for i in range(self.n_stages):
            with torch.no_grad():
                inp = self._inputs(X, i)
            torch.manual_seed(self.seed + i)
            ae = SeluAE(inp.shape[1], STAGES[i][0], self.l1)
            cfg = TrainerConfig(
                epochs=self.epochs[i],
                batch_size=self.batch_sizes[i],
                lr=self.lr,
                optimizer="adam",
                seed=self.seed + i,
                progress=False,
            )
            res = Trainer(ae, cfg).fit(inp)
            self.stages.append(ae.eval())
            self.curves.append([float(h["train_loss"]) for h in res.history])
        return self

    @torch.no_grad()
    def encode(self, x: np.ndarray) -> np.ndarray:
        """The last stage's 2-d code, ``(N, 2)``."""
        if not self.stages:
            raise RuntimeError("CascadeAE.encode before fit")
        X = torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32)
        last = len(self.stages) - 1
        return self.stages[last].encode(self._inputs(X, last)).numpy()

    @torch.no_grad()
    def stage1_fvu(self, x: np.ndarray) -> float:
        """Stage 1's reconstruction: fraction of the input's variance not reconstructed."""
        X = torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32)
        r = self.stages[0].reconstruct(X)
        return float((r - X).pow(2).sum() / (X - X.mean(0)).pow(2).sum().clamp_min(1e-12))
