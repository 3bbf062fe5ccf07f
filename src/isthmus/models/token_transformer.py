"""A small class-conditional transformer over discrete tokens, trained by :class:`~isthmus.train.Trainer`.

Used as an autoregressive prior over VQ tokens (``causal=True``: next-token prediction, ancestral
sampling) or as a one-pass predictor that sees its whole input sequence (``causal=False``; e.g. the
fine tokens given coarse labels in coarse-to-fine generation, arXiv 2503.16194). An optional
``member_mask`` ``(vocab_in, vocab_out)`` of 0 / -inf restricts each position's output to the tokens
allowed by its input token (fine tokens inside their coarse cluster), in training and sampling.

Batches for :meth:`compute_loss` are ``(inputs, targets, classes)``; for a causal prior inputs and
targets are the same sequence (the shift happens inside).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from isthmus.models.output import ModelOutput

__all__ = ["TokenTransformer"]


class TokenTransformer(nn.Module):
    member_mask: torch.Tensor | None  # a buffer

    def __init__(
        self,
        vocab_in: int,
        vocab_out: int,
        n_pos: int,
        n_classes: int,
        d_model: int,
        n_layers: int,
        causal: bool,
        n_heads: int = 4,
        member_mask: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be a multiple of n_heads={n_heads}")
        self.causal, self.vocab_in, self.vocab_out = causal, vocab_in, vocab_out
        self.tok = nn.Embedding(vocab_in + 1, d_model)  # +1: start token
        self.pos = nn.Parameter(torch.randn(n_pos, d_model) * 0.02)
        self.cls = nn.Embedding(n_classes, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, 4 * d_model, dropout=0.0, batch_first=True, norm_first=True
        )
        self.body = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, vocab_out))
        if member_mask is not None and tuple(member_mask.shape) != (vocab_in, vocab_out):
            raise ValueError(f"member_mask must be ({vocab_in}, {vocab_out}), got {tuple(member_mask.shape)}")
        self.register_buffer("member_mask", member_mask, persistent=member_mask is not None)

    def forward(self, tokens: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, T, vocab_out)`` (masked by ``member_mask`` when set); ``tokens`` ``(B, T)`` are the
        targets (causal) or the inputs."""
        inp = tokens
        if self.causal:
            start = torch.full_like(tokens[:, :1], self.vocab_in)
            tokens = torch.cat([start, tokens[:, :-1]], 1)
        T = tokens.shape[1]
        h = self.tok(tokens) + self.pos[:T] + self.cls(y)[:, None]  # (B, T, d)
        mask = nn.Transformer.generate_square_subsequent_mask(T, device=h.device) if self.causal else None
        logits = self.head(self.body(h, mask=mask, is_causal=self.causal))
        if self.member_mask is not None:
            logits = logits + self.member_mask[inp]
        return logits

    def compute_loss(self, batch: Any) -> ModelOutput:
        if not isinstance(batch, (tuple, list)) or len(batch) != 3:
            raise ValueError("TokenTransformer batches are (inputs, targets, classes) triples")
        inp, target, y = batch
        logits = self(inp.long(), y.long())
        ce = F.cross_entropy(logits.transpose(1, 2), target.long())
        acc = (logits.argmax(-1) == target).float().mean().detach()
        return ModelOutput(loss=ce, losses={"ce": ce}, logits=logits, stats={"token_accuracy": acc})

    @torch.no_grad()
    def sample(self, y: torch.Tensor, n_pos: int, g: torch.Generator) -> torch.Tensor:
        """Ancestral sampling (temperature 1) of ``(B, n_pos)`` tokens; causal models only."""
        if not self.causal:
            raise ValueError("sample() needs a causal model; use predict_tokens() for one-pass models")
        out = torch.zeros(len(y), 0, dtype=torch.long)
        for _ in range(n_pos):
            logits = self(torch.cat([out, torch.zeros(len(y), 1, dtype=torch.long)], 1), y)[:, -1]  # last = next
            out = torch.cat([out, torch.multinomial(F.softmax(logits, -1), 1, generator=g)], 1)
        return out

    @torch.no_grad()
    def predict_tokens(self, inp: torch.Tensor, y: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
        """One pass of a non-causal model: every output token at once, sampled (with ``g``) or argmax."""
        logits = self(inp, y)
        if g is None:
            return logits.argmax(-1)
        return torch.multinomial(F.softmax(logits, -1).reshape(-1, self.vocab_out), 1, generator=g).reshape(inp.shape)
