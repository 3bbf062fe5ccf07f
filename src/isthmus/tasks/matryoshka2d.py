"""2D Matryoshka sentence embeddings: every (layer, dim) sub-model of a transformer encoder is an encoder.

Starbucks (Zhuang, Wang, Koopman & Zuccon, arXiv 2410.13230), fine-tuning part ("SRL"): the
embedding of sub-model (l, d) is the attention-masked mean of layer l's hidden states, truncated to
its first d dimensions. Each step sums a contrastive loss over a **fixed list** of (layer, dim) pairs
(the full model included) plus, for every pair other than the full model, a KL term pulling the
sub-model towards the full model. The 2D Matryoshka baseline (2DMSE, Li et al., arXiv 2402.14776)
instead trains the full model plus **one random** (layer, dim) pair per step; ``strategy="full"`` is
plain fine-tuning of the full model only (the "fine-tuned, then truncated" baseline) and
``strategy="only"`` trains just the listed pairs, without the full model or a KL term (a separately
trained small model, the paper's headline baseline).

Contrastive loss: MultipleNegativesRanking / InfoNCE with in-batch negatives on cosine similarities
times ``scale`` (sentence-transformers' default 20). KL term, ``kl_target``:

* ``"embedding"`` (default, as in the reference code ``ielab/Starbucks`` built on
  sentence-transformers' ``AdaptiveLayerLoss``): KL(softmax(full[:d]/T) ‖ softmax(sub[:d]/T)) over the
  embedding dimensions of each (normalised) embedding, weighted by ``kl_weight · T`` (T = 0.3);
* ``"similarity"``: the same KL between the rows of the in-batch query–document similarity matrices
  (the full model's ranking distribution as the teacher).

The full model's side of the KL is detached (it is the teacher). Works with any Hugging Face encoder
that returns ``hidden_states``; the model is passed in, nothing is downloaded here.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence, cast

import torch
import torch.nn.functional as F
from torch import nn

from isthmus.models.output import ModelOutput

__all__ = [
    "Matryoshka2DConfig",
    "Matryoshka2DEncoder",
    "mean_pool",
    "mnrl_loss",
    "kl_to_full",
    "tokenize_pairs",
    "diagonal_pairs",
]

Pair = tuple[int, int]


def diagonal_pairs(n_layers: int, hidden: int, n: int | None = None) -> list[Pair]:
    """Starbucks' diagonal list scaled to an encoder: layer ``i·L/n`` with ``hidden·i/n`` dims, i = 1..n.

    For MiniLM (6 × 384) and n = 6 this is not the paper's BERT list rescaled exactly; the recipe
    passes the list from the notes, [(1,24),(2,48),(3,96),(4,192),(5,288),(6,384)], explicitly.
    """
    n = n or n_layers
    return [(max(1, round(i * n_layers / n)), max(1, round(i * hidden / n))) for i in range(1, n + 1)]


@dataclass
class Matryoshka2DConfig:
    """How the (layer, dim) sub-models are trained. Layers count from 1 (0 = the embedding layer)."""

    pairs: list[Pair] = field(default_factory=lambda: [(1, 24), (2, 48), (3, 96), (4, 192), (5, 288), (6, 384)])
    strategy: Literal["fixed", "random", "full", "only"] = "fixed"  # Starbucks / 2DMSE / full only / pairs only
    kl_weight: float = 1.0
    kl_temperature: float = 0.3
    kl_target: Literal["embedding", "similarity"] = "embedding"
    scale: float = 20.0  # inverse temperature of the contrastive softmax
    random_layers: list[int] | None = None  # 2DMSE sampling grid (default: 1..L-1)
    random_dims: list[int] | None = None  # (default: the dims of ``pairs``)
    seed: int = 0

    def validate(self, n_layers: int, hidden: int) -> None:
        if self.strategy not in ("fixed", "random", "full", "only"):
            raise ValueError(f"strategy must be 'fixed', 'random', 'full' or 'only', got {self.strategy!r}")
        if self.kl_target not in ("embedding", "similarity"):
            raise ValueError(f"kl_target must be 'embedding' or 'similarity', got {self.kl_target!r}")
        for layer, dim in self.pairs:
            if not (1 <= layer <= n_layers and 1 <= dim <= hidden):
                raise ValueError(f"pair ({layer}, {dim}) is outside the encoder's {n_layers} layers × {hidden} dims")
        if self.kl_weight < 0 or self.kl_temperature <= 0 or self.scale <= 0:
            raise ValueError("kl_weight must be >= 0, kl_temperature and scale > 0")


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Attention-masked mean over tokens: ``(B, T, C), (B, T) -> (B, C)``."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)


def mnrl_loss(q: torch.Tensor, d: torch.Tensor, scale: float = 20.0) -> torch.Tensor:
    """InfoNCE with in-batch negatives: query i's positive is document i. Inputs need not be normalised."""
    sim = F.normalize(q, dim=-1) @ F.normalize(d, dim=-1).T * scale  # (B, B)
    return F.cross_entropy(sim, torch.arange(len(q), device=q.device))


def kl_to_full(sub: torch.Tensor, full: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(full/T) ‖ softmax(sub/T)) row-wise, batch mean; ``full`` is treated as the fixed teacher."""
    return F.kl_div(
        F.log_softmax(sub / temperature, dim=-1), F.softmax(full.detach() / temperature, dim=-1), reduction="batchmean"
    )


def tokenize_pairs(
    tokenizer: Any, queries: Sequence[str], docs: Sequence[str], max_length: int = 32
) -> tuple[torch.Tensor, ...]:
    """``(q_ids, q_mask, d_ids, d_mask)`` padded to ``max_length``: a tuple the isthmus Trainer batches."""
    q = tokenizer(list(queries), padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
    d = tokenizer(list(docs), padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
    return q["input_ids"], q["attention_mask"], d["input_ids"], d["attention_mask"]


class Matryoshka2DEncoder(nn.Module):
    """A Hugging Face encoder trained so that every (layer, dim) prefix is a sentence embedding.

    ``compute_loss((q_ids, q_mask, d_ids, d_mask))`` returns a :class:`ModelOutput` with terms
    ``mnrl@L{l}d{d}`` and ``kl@L{l}d{d}`` and ``latent`` = the full model's normalised embeddings of the
    queries then the documents ``(2B, hidden)``; ``embed(texts, layer, dim)`` gives normalised embeddings.
    """

    def __init__(
        self, backbone: nn.Module, tokenizer: Any, config: Matryoshka2DConfig | dict | None = None, max_length: int = 32
    ) -> None:
        super().__init__()
        cfg = config if isinstance(config, Matryoshka2DConfig) else Matryoshka2DConfig(**(config or {}))
        self.backbone, self.tokenizer, self.config, self.max_length = backbone, tokenizer, cfg, max_length
        hf_config: Any = backbone.config  # a Hugging Face model's config
        self.n_layers = int(hf_config.num_hidden_layers)
        self.hidden = int(hf_config.hidden_size)
        cfg.validate(self.n_layers, self.hidden)
        self.full: Pair = (self.n_layers, self.hidden)
        self._step = 0

    def set_step(self, step: int) -> None:
        """Called by the Trainer each step; seeds the random pair of the 2DMSE strategy reproducibly."""
        self._step = step

    def layer_means(self, ids: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        """Mean-pooled hidden state of every layer (index 0 = embeddings), each ``(B, hidden)``."""
        out = self.backbone(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        return [mean_pool(h, mask) for h in out.hidden_states]

    def train_pairs(self) -> list[Pair]:
        """The (layer, dim) pairs this step trains; the full model comes first (except for ``"only"``)."""
        cfg = self.config
        if cfg.strategy == "full":
            return [self.full]
        if cfg.strategy == "only":
            return [cast(Pair, tuple(p)) for p in cfg.pairs]  # JSON gives lists
        if cfg.strategy == "fixed":
            return [self.full] + [p for p in cfg.pairs if tuple(p) != self.full]
        rng = random.Random(cfg.seed * 1_000_003 + self._step)
        layers = cfg.random_layers or list(range(1, self.n_layers))
        dims = cfg.random_dims or sorted({d for _, d in cfg.pairs})
        return [self.full, (rng.choice(layers), rng.choice(dims))]

    def compute_loss(self, batch: tuple[torch.Tensor, ...]) -> ModelOutput:
        q_ids, q_mask, d_ids, d_mask = batch
        b = len(q_ids)
        t = max(int(q_mask.sum(1).max()), int(d_mask.sum(1).max()))  # trim shared padding: (2B, t)
        ids = torch.cat([q_ids[:, :t], d_ids[:, :t]])
        mask = torch.cat([q_mask[:, :t], d_mask[:, :t]])
        means = self.layer_means(ids, mask)
        cfg, losses = self.config, {}
        full = F.normalize(means[self.n_layers], dim=-1)
        for layer, dim in self.train_pairs():
            e = means[layer][:, :dim]
            q, d = e[:b], e[b:]
            losses[f"mnrl@L{layer}d{dim}"] = mnrl_loss(q, d, cfg.scale)
            if (layer, dim) == self.full or cfg.kl_weight == 0 or cfg.strategy == "only":
                continue
            losses[f"kl@L{layer}d{dim}"] = cfg.kl_weight * cfg.kl_temperature * self._kl(e, full[:, :dim], b)
        loss = torch.stack(list(losses.values())).sum()
        return ModelOutput(loss=loss, losses=losses, latent=full)

    def _kl(self, sub: torch.Tensor, full: torch.Tensor, b: int) -> torch.Tensor:
        sub, T = F.normalize(sub, dim=-1), self.config.kl_temperature
        if self.config.kl_target == "embedding":
            return kl_to_full(sub, full, T)
        full = F.normalize(full, dim=-1)
        return kl_to_full(sub[:b] @ sub[b:].T, full[:b] @ full[b:].T, T)

    @torch.no_grad()
    def embed_all(self, texts: Sequence[str], batch_size: int = 64) -> list[torch.Tensor]:
        """Un-normalised mean-pooled states of every layer for ``texts``: list over layers of ``(N, hidden)``."""
        was = self.training
        self.eval()
        parts: list[list[torch.Tensor]] = [[] for _ in range(self.n_layers + 1)]
        try:
            for i in range(0, len(texts), batch_size):
                enc = self.tokenizer(
                    list(texts[i : i + batch_size]),
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                for layer, m in enumerate(self.layer_means(enc["input_ids"], enc["attention_mask"])):
                    parts[layer].append(m)
        finally:
            self.train(was)
        return [torch.cat(p) for p in parts]

    def embed(self, texts: Sequence[str], layer: int | None = None, dim: int | None = None) -> torch.Tensor:
        """L2-normalised embeddings of sub-model (layer, dim), ``(N, dim)``; defaults to the full model."""
        layer = self.n_layers if layer is None else layer
        dim = self.hidden if dim is None else dim
        if not (0 <= layer <= self.n_layers and 1 <= dim <= self.hidden):
            raise ValueError(f"(layer, dim) = ({layer}, {dim}) outside 0..{self.n_layers} × 1..{self.hidden}")
        return F.normalize(self.embed_all(texts)[layer][:, :dim], dim=-1)
