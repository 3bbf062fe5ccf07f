"""A small decoder-only transformer with named hook points, in the spirit of nanoGPT / TransformerLens.

Pre-LN blocks (``resid + attn(ln1(resid))``, ``resid + mlp(ln2(resid))``), learned positions, an
optional attention-only mode (no MLPs), and a key/value cache for generation. Every interesting
activation passes through an identity :class:`HookPoint`, so its module path is its name:

``hook_embed``, ``hook_pos_embed``, ``blocks.L.hook_resid_pre``, ``blocks.L.attn.hook_q/k/v``
``(B, T, H, dh)``, ``blocks.L.attn.hook_pattern`` ``(B, H, Tq, Tk)``, ``blocks.L.attn.hook_z``
``(B, T, H, dh)`` (per head, before W_O), ``blocks.L.hook_attn_out``, ``blocks.L.hook_resid_mid``,
``blocks.L.hook_mlp_out``, ``blocks.L.hook_resid_post``, ``hook_resid_final``; plus the derived,
read-only ``blocks.L.attn.hook_result`` ``(B, T, H, d)`` (each head's write into the residual stream).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from isthmus.config import Config, ConfigError
from isthmus.interp.hooks import Point
from isthmus.io import Pretrained
from isthmus.models.output import ModelOutput

__all__ = ["ToyConfig", "ToyTransformer", "HookPoint"]

KVCache = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class ToyConfig(Config):
    """Shape of a :class:`ToyTransformer`. ``d_head`` defaults to ``d_model // n_heads``."""

    vocab_size: int = 64
    n_ctx: int = 64
    n_layers: int = 2
    d_model: int = 64
    n_heads: int = 4
    d_head: int | None = None
    d_mlp: int | None = None
    attn_only: bool = False
    seed: int = 0

    def validate(self) -> None:
        if not 1 <= self.n_layers <= 8:
            raise ConfigError(f"ToyConfig.n_layers must be in 1..8, got {self.n_layers}")
        for name in ("vocab_size", "n_ctx", "d_model", "n_heads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"ToyConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.d_head is None and self.d_model % self.n_heads:
            raise ConfigError(
                f"ToyConfig: d_model={self.d_model} is not divisible by n_heads={self.n_heads}; set d_head explicitly"
            )

    @property
    def head_dim(self) -> int:
        return self.d_head or self.d_model // self.n_heads

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


class HookPoint(nn.Identity):
    """An identity module that exists only to be hooked (capture/patch by its path)."""


class Attention(nn.Module):
    def __init__(self, cfg: ToyConfig) -> None:
        super().__init__()
        self.n_heads, self.d_head = cfg.n_heads, cfg.head_dim
        hd = self.n_heads * self.d_head
        self.W_Q, self.W_K, self.W_V = (nn.Linear(cfg.d_model, hd) for _ in range(3))
        self.W_O = nn.Linear(hd, cfg.d_model)
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()
        self.hook_pattern, self.hook_z = HookPoint(), HookPoint()

    def forward(
        self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        b, t, _ = x.shape  # (B, T, d)
        split = lambda y: y.view(b, t, self.n_heads, self.d_head)  # noqa: E731
        q, k, v = self.hook_q(split(self.W_Q(x))), self.hook_k(split(self.W_K(x))), self.hook_v(split(self.W_V(x)))
        if past is not None:
            k, v = torch.cat([past[0], k], 1), torch.cat([past[1], v], 1)
        tk = k.shape[1]
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(self.d_head)  # (B, H, T, Tk)
        causal = torch.ones(t, tk, dtype=torch.bool, device=x.device).tril(tk - t)
        pattern = self.hook_pattern(scores.masked_fill(~causal, float("-inf")).softmax(-1))
        z = self.hook_z(torch.einsum("bhqk,bkhd->bqhd", pattern, v))  # (B, T, H, dh)
        return self.W_O(z.flatten(-2)), (k, v)


class Block(nn.Module):
    def __init__(self, cfg: ToyConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = Attention(cfg)
        self.mlp = (
            None
            if cfg.attn_only
            else nn.Sequential(
                nn.LayerNorm(cfg.d_model),
                nn.Linear(cfg.d_model, cfg.d_mlp or 4 * cfg.d_model),
                nn.GELU(),
                nn.Linear(cfg.d_mlp or 4 * cfg.d_model, cfg.d_model),
            )
        )
        self.hook_resid_pre, self.hook_attn_out, self.hook_resid_mid = HookPoint(), HookPoint(), HookPoint()
        self.hook_mlp_out, self.hook_resid_post = HookPoint(), HookPoint()

    def forward(self, x: torch.Tensor, past: Any = None) -> tuple[torch.Tensor, Any]:
        x = self.hook_resid_pre(x)
        attn, kv = self.attn(self.ln1(x), past)
        x = self.hook_resid_mid(x + self.hook_attn_out(attn))
        if self.mlp is not None:
            x = x + self.hook_mlp_out(self.mlp(x))
        return self.hook_resid_post(x), kv


class ToyTransformer(Pretrained, nn.Module):
    """Decoder-only transformer over integer tokens; ``forward(tokens) -> logits (B, T, vocab)``."""

    config_class = ToyConfig  # save_pretrained/from_pretrained: see isthmus.io.Pretrained
    config_attr = "cfg"

    def __init__(self, cfg: ToyConfig | dict | None = None) -> None:
        super().__init__()
        self.cfg = ToyConfig.from_dict(cfg) if isinstance(cfg, dict) else (cfg or ToyConfig())
        gen = torch.random.fork_rng()
        with gen:
            torch.manual_seed(self.cfg.seed)
            self.embed = nn.Embedding(self.cfg.vocab_size, self.cfg.d_model)
            self.pos_embed = nn.Embedding(self.cfg.n_ctx, self.cfg.d_model)
            self.blocks = nn.ModuleList(Block(self.cfg) for _ in range(self.cfg.n_layers))
            self.ln_final = nn.LayerNorm(self.cfg.d_model)
            self.unembed = nn.Linear(self.cfg.d_model, self.cfg.vocab_size)
            for m in self.modules():
                if isinstance(m, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(m.weight, std=0.02 if isinstance(m, nn.Linear) else 0.1)
        self.hook_embed, self.hook_pos_embed, self.hook_resid_final = HookPoint(), HookPoint(), HookPoint()

    def forward(
        self, tokens: torch.Tensor, past: KVCache | None = None, use_cache: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, KVCache]:
        """Logits ``(B, T, vocab)``; with ``use_cache`` also the per-layer (K, V) cache for :meth:`generate`."""
        b, t = tokens.shape
        start = past[0][0].shape[1] if past else 0
        if start + t > self.cfg.n_ctx:
            raise ValueError(f"sequence length {start + t} exceeds n_ctx={self.cfg.n_ctx}")
        pos = torch.arange(start, start + t, device=tokens.device)
        x = self.hook_embed(self.embed(tokens)) + self.hook_pos_embed(self.pos_embed(pos))  # (B, T, d)
        cache: KVCache = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, past[i] if past else None)
            cache.append(kv)
        logits = self.unembed(self.hook_resid_final(self.ln_final(x)))
        return (logits, cache) if use_cache else logits

    @torch.no_grad()
    def generate(
        self, tokens: torch.Tensor, n_new: int, temperature: float = 0.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Append ``n_new`` tokens (greedy when ``temperature`` is 0), reusing the KV cache."""
        logits, cache = self.forward(tokens, use_cache=True)
        out = [tokens]
        for _ in range(n_new):
            last = logits[:, -1]
            if temperature > 0:
                nxt = torch.multinomial((last / temperature).softmax(-1), 1, generator=generator)
            else:
                nxt = last.argmax(-1, keepdim=True)
            out.append(nxt)
            logits, cache = self.forward(nxt, past=cache, use_cache=True)
        return torch.cat(out, 1)

    def compute_loss(self, batch: Any) -> ModelOutput:
        """Next-token cross-entropy on the positions that matter: ``batch = tokens`` or ``(tokens, mask)``;
        ``mask[b, t]`` marks tokens[b, t] as a target (predicted from the prefix before it)."""
        tokens, mask = (batch[0], batch[1]) if isinstance(batch, (tuple, list)) else (batch, None)
        logits = self(tokens)[:, :-1]
        target = tokens[:, 1:]
        m = torch.ones_like(target, dtype=torch.bool) if mask is None else mask[:, 1:].bool()
        ce = F.cross_entropy(logits[m], target[m])
        acc = (logits[m].argmax(-1) == target[m]).float().mean().detach()
        return ModelOutput(loss=ce, losses={"ce": ce}, logits=logits, stats={"acc": acc})

    def hook_points(self) -> dict[str, Point]:
        """Every :class:`HookPoint` by path, plus the derived per-head ``blocks.L.attn.hook_result``."""
        points = {n: Point(n, n) for n, m in self.named_modules() if isinstance(m, HookPoint)}
        for i, block in enumerate(self.blocks):
            attn = cast(Attention, block.attn)

            def result(z: torch.Tensor, attn: Attention = attn) -> torch.Tensor:  # (B,T,H,dh) -> (B,T,H,d)
                w = attn.W_O.weight.T.reshape(attn.n_heads, attn.d_head, -1)
                return torch.einsum("bthk,hkd->bthd", z, w)

            name = f"blocks.{i}.attn.hook_result"
            points[name] = Point(name, f"blocks.{i}.attn.hook_z", read=result, readonly=True)
        return points
