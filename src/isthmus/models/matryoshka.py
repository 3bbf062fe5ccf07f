"""``MatryoshkaAutoEncoder``: an AutoEncoder whose latent prefixes are each a valid embedding.

Matryoshka Representation Learning (Kusupati et al., arXiv 2205.13147) in its 1D form, with the
fixed prefix list of Starbucks (Zhuang et al., arXiv 2410.13230). Works with any bottleneck: the
latent it returns is masked to each prefix size k (dims ≥ k set to 0), decoded by the one shared
decoder, and the reconstruction losses are summed with per-prefix weights. The bottleneck's own
terms (KL, ...) are added once.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from isthmus.bottlenecks import Bottleneck
from isthmus.bottlenecks.matryoshka import MatryoshkaConfig, nested_latents, prefix_mask
from isthmus.config import ConfigError
from isthmus.models.autoencoder import AutoEncoder, ObjectiveConfig, _check_finite
from isthmus.models.objectives import corrupt, reconstruction_loss
from isthmus.models.output import ModelOutput

__all__ = ["MatryoshkaAutoEncoder"]


def _default_prefixes(latent_dim: int) -> list[int]:
    """Powers of two below the latent size (the full latent is appended by the config)."""
    dims, k = [], 1
    while k < latent_dim:
        dims.append(k)
        k *= 2
    return dims or [latent_dim]


class MatryoshkaAutoEncoder(AutoEncoder):
    """Encoder → bottleneck → shared decoder applied to every nested prefix of the latent.

    Loss terms are ``recon@k`` for each prefix size k (weighted), plus the bottleneck's terms.
    ``recon`` in the output is the full-latent reconstruction.

    >>> m = MatryoshkaAutoEncoder.mlp(12, latent_dim=8, matryoshka={"prefix_dims": [2, 4]})
    >>> sorted(m(torch.rand(3, 12)).losses)
    ['recon@2', 'recon@4', 'recon@8']
    """

    def __init__(
        self,
        encoder: nn.Module,
        bottleneck: Bottleneck | str | dict,
        decoder: nn.Module,
        objective: ObjectiveConfig | None = None,
        matryoshka: MatryoshkaConfig | dict | None = None,
    ) -> None:
        super().__init__(encoder, bottleneck, decoder, objective)
        self.set_nesting(matryoshka)

    def set_nesting(self, matryoshka: MatryoshkaConfig | dict | None) -> None:
        """Set (and validate against the latent size) the prefix list and weights."""
        if isinstance(matryoshka, dict):
            matryoshka = MatryoshkaConfig.from_dict(matryoshka)
        self.matryoshka = matryoshka or MatryoshkaConfig(prefix_dims=_default_prefixes(self.latent_dim))
        self.sizes = self.matryoshka.sizes(self.latent_dim)
        self.weights = self.matryoshka.weights(self.latent_dim)

    @classmethod
    def mlp(
        cls, *args: Any, matryoshka: MatryoshkaConfig | dict | None = None, **kwargs: Any
    ) -> "MatryoshkaAutoEncoder":
        model = cast("MatryoshkaAutoEncoder", super().mlp(*args, **kwargs))
        model.set_nesting(matryoshka)
        return model

    @classmethod
    def conv(
        cls, *args: Any, matryoshka: MatryoshkaConfig | dict | None = None, **kwargs: Any
    ) -> "MatryoshkaAutoEncoder":
        model = cast("MatryoshkaAutoEncoder", super().conv(*args, **kwargs))
        model.set_nesting(matryoshka)
        return model

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> ModelOutput:
        _check_finite(x)
        clean = x if target is None else target
        obj = self.objective
        inp = corrupt(x, obj.corruption, obj.corruption_level) if self.training else x
        bn = self.bottleneck(self.encoder(inp))
        terms: dict[str, torch.Tensor] = {}
        recon = None
        for k, w, z_k in zip(self.sizes, self.weights, nested_latents(bn.latent, self.sizes)):
            recon = self.decoder(z_k).reshape(clean.shape)  # the last one is the full latent
            terms[f"recon@{k}"] = w * reconstruction_loss(recon, clean, obj.recon_loss, obj.recon_reduction)
        terms.update(bn.losses)
        unknown = set(obj.loss_weights) - set(terms)
        if unknown:
            raise ConfigError(f"loss_weights names unknown term(s) {sorted(unknown)}; terms are {sorted(terms)}")
        losses = {k: v * obj.loss_weights.get(k, 1.0) for k, v in terms.items()}
        total = cast(torch.Tensor, sum(losses.values()))  # never empty: one recon@k per prefix at least
        return ModelOutput(loss=total, losses=losses, recon=recon, latent=bn.latent, codes=bn.codes, stats=bn.stats)

    def encode_prefix(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """The first ``k`` latent dimensions, ``(B, k)``: the size-k embedding."""
        return self.encode(x)[:, :k]

    @torch.no_grad()
    def reconstruct_prefix(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """Reconstruction from the first ``k`` latent dimensions only (eval mode)."""
        was = self.training
        self.eval()
        try:
            return self.decoder(prefix_mask(self.encode(x), k)).reshape(x.shape)
        finally:
            self.train(was)

    # ---- save / load: the nesting config travels in config.json -------------------------------
    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "matryoshka": self.matryoshka.to_dict()}

    @classmethod
    def _extra_from_spec(cls, spec: dict[str, Any]) -> dict[str, Any]:
        return {"matryoshka": MatryoshkaConfig.from_dict(spec.get("matryoshka", {}))}
