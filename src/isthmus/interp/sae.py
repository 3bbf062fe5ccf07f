"""``SparseAutoEncoder``: the dictionary-learning model trained on a host model's activations.

x̂ = b_dec + Σ_i z_i d_i with z = σ(W_enc (x − b_dec) + b_enc), where σ is any sparse bottleneck from
:mod:`isthmus.bottlenecks.sparse` (TopK, BatchTopK, JumpReLU, ReLU+L1, top-AFA, Matryoshka).

* Tied pre-bias: ``b_dec`` is subtracted before encoding and added after decoding.
* Decoder rows (``W_dec``, shape (m, d)) are kept at unit norm: a gradient hook removes each row's
  component parallel to the row, and :meth:`normalize_decoder_` renormalises after every optimizer
  step (called from :meth:`set_step`, which the isthmus Trainer calls before each step, and from
  :func:`train_sae`).
* TopK trains through the sparse kernels of :mod:`isthmus.bottlenecks.sparse_backward` (≈2·d·m + 8·k·d
  FLOP per token instead of ≈10·d·m); ``sparse_backward=False`` gives the naive dense autograd path.
* AuxK (Gao et al., arXiv 2406.04093 §A.2): the top ``aux_k`` dead latents reconstruct the residual
  e = x − x̂ (detached), loss ``auxk`` = α·‖e − ê‖² / ‖x − x̄‖².
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from isthmus.bottlenecks import BOTTLENECKS
from isthmus.bottlenecks.sparse import BatchTopKBottleneck, SparseBottleneck, TopKBottleneck
from isthmus.bottlenecks.sparse_backward import (
    batchtopk_encode,
    coo_decode,
    dense_from_coo,
    dense_from_topk,
    sparse_decode,
    topk_encode,
)
from isthmus.config import Config, ConfigError
from isthmus.io import Pretrained
from isthmus.models.output import ModelOutput
from isthmus.train.callbacks.base import Callback

__all__ = [
    "SAEConfig",
    "SparseAutoEncoder",
    "UnitNormDecoder",
]  # + SAETrainConfig, train_sae, resample_dead_latents (lazy)


@dataclass
class SAEConfig(Config):
    """Architecture of a :class:`SparseAutoEncoder` (``config.json`` holds exactly this)."""

    d_in: int = 64
    d_sae: int = 512
    bottleneck: str = "sae_topk"
    bottleneck_config: dict[str, Any] = field(default_factory=dict)
    normalize_decoder: bool = True
    sparse_backward: bool = True
    aux_k: int = 256
    aux_coeff: float = 1.0 / 32
    recon_loss: str = "mse"  # "mse": mean_b ‖x − x̂‖²; "fvu": that divided by the batch variance

    def validate(self) -> None:
        name = type(self).__name__
        if self.d_in < 1 or self.d_sae < 1:
            raise ConfigError(f"{name}: d_in and d_sae must be >= 1, got {self.d_in}, {self.d_sae}")
        if self.bottleneck not in BOTTLENECKS.names() or not self.bottleneck.startswith("sae_"):
            sparse = [n for n in BOTTLENECKS.names() if n.startswith("sae_")]
            raise ConfigError(f"{name}.bottleneck must be one of {sparse}, got {self.bottleneck!r}")
        if self.recon_loss not in ("mse", "fvu"):
            raise ConfigError(f"{name}.recon_loss must be 'mse' or 'fvu', got {self.recon_loss!r}")
        if self.aux_k < 0 or self.aux_coeff < 0:
            raise ConfigError(f"{name}: aux_k and aux_coeff must be >= 0")


class SparseAutoEncoder(Pretrained, nn.Module):
    """A sparse autoencoder over d-dimensional activations with an m-latent dictionary.

    ``save_pretrained(path)`` / ``from_pretrained(path, map_location=)`` come from :class:`isthmus.io.Pretrained`
    (``config.json`` holding this :class:`SAEConfig` + ``model.safetensors``, digest-checked, eval mode).

    >>> sae = SparseAutoEncoder(SAEConfig(d_in=16, d_sae=64, bottleneck_config={"k": 4}))
    >>> sae.encode(torch.randn(3, 16)).shape
    torch.Size([3, 64])
    """

    config_class = SAEConfig

    def __init__(self, config: SAEConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        config = config or SAEConfig()
        self.config = config.with_overrides(overrides) if overrides else config
        d, m = self.config.d_in, self.config.d_sae
        self.bottleneck = cast(
            SparseBottleneck,
            BOTTLENECKS.build(  # validate() allows only "sae_*" bottlenecks
                self.config.bottleneck, {**self.config.bottleneck_config, "latent_dim": m}
            ),
        )
        w = torch.randn(m, d)
        w = w / w.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(w)  # (m, d), rows = dictionary atoms
        self.W_enc = nn.Parameter(w.clone())  # (m, d), tied initialisation (Gao et al.)
        self.b_enc = nn.Parameter(torch.zeros(m))
        self.b_dec = nn.Parameter(torch.zeros(d))
        if self.config.normalize_decoder:
            self.W_dec.register_hook(self._project_grad)

    # ---- decoder norm ------------------------------------------------------------------------------
    def _project_grad(self, g: torch.Tensor) -> torch.Tensor:
        """Remove the component of each row's gradient parallel to the (unit) row."""
        w = self.W_dec.detach()
        dot = torch.einsum("md,md->m", g, w)  # (m,), no (m, d) temporary
        return torch.addcmul(g, dot.unsqueeze(1), w, value=-1.0)

    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        if self.config.normalize_decoder:
            self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8))

    def set_step(self, step: int) -> None:
        """Called by the Trainer before each step: advance warm-ups and re-impose unit-norm rows."""
        self.bottleneck.set_step(step)
        self.normalize_decoder_()

    @torch.no_grad()
    def init_b_dec_(self, x: torch.Tensor) -> None:
        """Initialise the pre-bias at the data mean (a cheap stand-in for the geometric median)."""
        self.b_dec.copy_(x.mean(0))

    # ---- forward -----------------------------------------------------------------------------------
    @property
    def uses_sparse_path(self) -> bool:
        return self.config.sparse_backward and type(self.bottleneck) is TopKBottleneck

    @property
    def uses_batch_sparse_path(self) -> bool:
        """BatchTopK / Matryoshka in training: the batch-level top-k through the COO kernels (eval mode uses
        the global threshold, a dense elementwise op)."""
        return self.config.sparse_backward and self.training and isinstance(self.bottleneck, BatchTopKBottleneck)

    def _decoder_norm(self) -> torch.Tensor | None:
        return None if self.config.normalize_decoder else self.W_dec.norm(dim=1)

    def _center(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's input: x − b_dec (tied pre-bias); a :class:`Transcoder` encodes x as is."""
        return x - self.b_dec

    def _skip(self, x: torch.Tensor) -> torch.Tensor | None:
        """A linear skip term added to the reconstruction (skip transcoders); None for an SAE."""
        return None

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Dense sparse code z (B, m)."""
        x_c = self._center(x)
        pre = torch.addmm(self.b_enc, x_c, self.W_enc.t())  # (B, m)
        return self.bottleneck(pre, decoder_norm=self._decoder_norm(), input_norm=x_c.norm(dim=1)).latent

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.W_dec + self.b_dec

    def _recon_loss(self, recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        se = (recon - x).pow(2).sum(1).mean()
        if self.config.recon_loss == "fvu":
            se = se / (x - x.mean(0)).pow(2).sum(1).mean().clamp_min(1e-12)
        return se

    def _aux_k(self, dead: torch.Tensor) -> int:
        n_dead = int(dead.sum()) if self.training and self.config.aux_coeff > 0 else 0
        return min(self.config.aux_k, n_dead)

    def _auxk_loss(self, x: torch.Tensor, recon: torch.Tensor, aux_vals, aux_idx) -> torch.Tensor:
        """``x`` is the target (the input for an SAE)."""
        e = (x - recon).detach()
        e_hat = sparse_decode(aux_vals, aux_idx, self.W_dec)
        var = (x - x.mean(0)).pow(2).sum(1).mean().clamp_min(1e-12)  # input variance, as sparsify does
        return self.config.aux_coeff * (e - e_hat).pow(2).sum(1).mean() / var

    def _sparse_forward(self, x: torch.Tensor, y: torch.Tensor, dense_latent: bool):
        """TopK through the sparse kernels; returns (recon, latent or None, codes, extra losses, stats)."""
        bn, m = cast(TopKBottleneck, self.bottleneck), self.config.d_sae  # uses_sparse_path checked the type
        dead = bn.dead_mask()
        k_aux = self._aux_k(dead)
        vals, idx, aux_vals, aux_idx = topk_encode(
            self._center(x), self.W_enc, self.b_enc, bn.config.k_eff, dead if k_aux else None, k_aux
        )
        recon = sparse_decode(vals, idx, self.W_dec) + self.b_dec
        skip = self._skip(x)
        recon = recon if skip is None else recon + skip
        if self.training:
            fired = torch.zeros(m, dtype=torch.bool, device=x.device)
            fired[idx[vals > 0]] = True
            bn.track(fired)
        losses = {"auxk": self._auxk_loss(y, recon, aux_vals, aux_idx)} if k_aux else {}
        stats = {"l0": (vals > 0).sum(1).float().mean().detach(), "dead_fraction": bn.dead_mask().float().mean()}
        latent = dense_from_topk(vals, idx, m) if dense_latent else None
        return recon, latent, idx, losses, stats

    def _batch_sparse_forward(self, x: torch.Tensor, y: torch.Tensor, dense_latent: bool):
        """BatchTopK (and Matryoshka prefixes) through the COO kernels; same outputs as the dense path."""
        bn, m, B = (
            cast(BatchTopKBottleneck, self.bottleneck),
            self.config.d_sae,
            x.shape[0],
        )  # see uses_batch_sparse_path
        dead = bn.dead_mask()
        k_aux = self._aux_k(dead)
        vals, rows, cols, aux_vals, aux_idx = batchtopk_encode(
            self._center(x), self.W_enc, self.b_enc, bn.config.k_eff * B, dead if k_aux else None, k_aux
        )
        skip = self._skip(x)
        base = self.b_dec if skip is None else self.b_dec + skip
        recon = coo_decode(vals, rows, cols, self.W_dec, B) + base
        fired = torch.zeros(m, dtype=torch.bool, device=x.device)
        fired[cols[vals > 0]] = True
        bn.track(fired)
        bn.update_threshold(vals.detach())
        losses = {}
        sizes = getattr(bn, "nested_sizes", None)
        if sizes and len(sizes) > 1:
            losses["matryoshka"] = sum(
                self._recon_loss(coo_decode(vals * (cols < s), rows, cols, self.W_dec, B) + base, y) for s in sizes[:-1]
            )
        if k_aux:
            losses["auxk"] = self._auxk_loss(y, recon, aux_vals, aux_idx)
        stats = {
            "l0": (vals > 0).sum().float().div(B).detach(),
            "dead_fraction": bn.dead_mask().float().mean(),
            "threshold": float(bn.threshold),
        }
        latent = dense_from_coo(vals, rows, cols, B, m) if dense_latent else None
        return recon, latent, None, losses, stats

    def _dense_forward(self, x: torch.Tensor, y: torch.Tensor):
        x_c = self._center(x)
        pre = torch.addmm(self.b_enc, x_c, self.W_enc.t())  # (B, m)
        dead = self.bottleneck.dead_mask()  # before this batch updates it, as in the sparse path
        out = self.bottleneck(pre, decoder_norm=self._decoder_norm(), input_norm=x_c.norm(dim=1))
        z = out.latent
        skip = self._skip(x)
        base = self.b_dec if skip is None else self.b_dec + skip
        recon = z @ self.W_dec + base
        losses = dict(out.losses)
        sizes = getattr(self.bottleneck, "nested_sizes", None)
        if sizes and len(sizes) > 1:
            losses["matryoshka"] = sum(self._recon_loss(z[:, :s] @ self.W_dec[:s] + base, y) for s in sizes[:-1])
        k_aux = self._aux_k(dead)
        if k_aux:
            aux_vals, aux_idx = pre.masked_fill(~dead, float("-inf")).topk(k_aux, dim=1)
            losses["auxk"] = self._auxk_loss(y, recon, torch.relu(aux_vals), aux_idx)
        return recon, z, out.codes, losses, out.stats

    def forward(self, x: torch.Tensor, dense_latent: bool = True, target: torch.Tensor | None = None) -> ModelOutput:
        """Reconstruct ``x`` (B, d) — or predict ``target`` (a transcoder's output activation).
        ``dense_latent=False`` skips building the (B, m) code on the TopK fast path (``latent`` is then
        None and ``codes`` holds the (B, k) active indices)."""
        if x.dim() != 2 or x.shape[1] != self.config.d_in:
            raise ValueError(f"{type(self).__name__} expects (B, {self.config.d_in}) activations, got {tuple(x.shape)}")
        y = x if target is None else target
        if self.uses_sparse_path:
            recon, z, codes, losses, stats = self._sparse_forward(x, y, dense_latent)
        elif self.uses_batch_sparse_path:
            recon, z, codes, losses, stats = self._batch_sparse_forward(x, y, dense_latent)
        else:
            recon, z, codes, losses, stats = self._dense_forward(x, y)
        losses = {"recon": self._recon_loss(recon, y), **losses}
        return ModelOutput(loss=sum(losses.values()), losses=losses, recon=recon, latent=z, codes=codes, stats=stats)

    def compute_loss(self, batch: Any) -> ModelOutput:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x, dense_latent=False)

    # ---- peer formats (see isthmus.interp.interop) ------------------------------------------------------
    @classmethod
    def from_saelens(cls, path: str | Path) -> "SparseAutoEncoder":
        """Load a SAELens folder (``cfg.json`` + ``sae_weights.safetensors``; transcoders give a Transcoder)."""
        from isthmus.interp.interop import from_saelens

        return from_saelens(path)

    def to_saelens(self, path: str | Path, metadata: dict | None = None) -> Path:
        """Write a folder that ``sae_lens.SAE.load_from_disk`` loads (same encode/decode)."""
        from isthmus.interp.interop import to_saelens

        return to_saelens(self, path, metadata)

    @classmethod
    def from_sparsify(cls, path: str | Path) -> "SparseAutoEncoder":
        """Load a sparsify ``SparseCoder`` folder (``cfg.json`` + ``sae.safetensors``)."""
        from isthmus.interp.interop import from_sparsify

        return from_sparsify(path)

    def to_sparsify(self, path: str | Path) -> Path:
        """Write a folder that ``sparsify.SparseCoder.load_from_disk`` loads (TopK only)."""
        from isthmus.interp.interop import to_sparsify

        return to_sparsify(self, path)


# ---- training ------------------------------------------------------------------------------------------
class UnitNormDecoder(Callback):
    """Trainer callback: renormalise decoder rows after every step and when fit ends."""

    def on_step_end(self, trainer) -> None:
        trainer.model.normalize_decoder_()

    def on_fit_end(self, trainer) -> None:
        trainer.model.normalize_decoder_()


def __getattr__(name: str) -> Any:
    """``SAETrainConfig``, ``train_sae`` and ``resample_dead_latents`` live in :mod:`isthmus.interp.sae_train`
    (resumable training); they stay importable from here (PEP 562 lazy attribute, no import cycle)."""
    if name in ("SAETrainConfig", "train_sae", "resample_dead_latents"):
        from isthmus.interp import sae_train

        return getattr(sae_train, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
