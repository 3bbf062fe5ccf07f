"""Codebook features: top-k vector-quantization layers spliced into a transformer.

Tamkin, Taufeeque, Goodman, "Codebook Features: Sparse and Discrete Interpretability for Neural
Networks" (arXiv 2310.17230; code ``taufeeque9/codebook-features``, ``models.py``). A
:class:`CodebookLayer` replaces an activation ``a`` (e.g. an attention or MLP output) by the **sum** of
its ``k`` codes with the highest cosine similarity to ``a``:

* forward: ``idx = topk_i cos(a, C_i)``, ``out = sum_j C[idx_j]``;
* backward: straight-through to the input (``d out / d a = I``), while the codebook receives the task
  gradient through ``out``; plus the codebook reconstruction loss ``MSE(out, sg(a))`` (the "aeloss"
  variant) and an optional commitment term ``beta * MSE(a, sg(out))``, both in :meth:`CodebookLayer.loss`;
* dead-code reset: every ``reset_every`` training steps, codes unused since the last reset are
  re-initialised to random activations of the current batch plus noise ``rho * ||a||``;
* steering: :meth:`Codebooks.force` pins chosen code ids at chosen positions.

:func:`insert_codebooks` attaches one layer per hook point with forward hooks (any point that
:func:`isthmus.interp.hooks.patch` accepts), registers the layers as a submodule of the model (so an
optimizer over ``model.parameters()`` trains them) and returns a :class:`Codebooks` handle.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from isthmus.interp.hooks import HookError, Point, _first, _model_points, _register, _replace_first, resolve_point

__all__ = ["CodebookLayer", "Codebooks", "insert_codebooks"]


class CodebookLayer(nn.Module):
    """``n_codes`` vectors of width ``dim``; ``forward(a)`` (..., dim) -> sum of the top-``k`` codes (..., dim).

    After each forward pass ``last_codes`` (..., k) holds the chosen ids and ``last_input`` the input
    (for :meth:`loss`). ``forced`` (..., k) ids with a boolean mask (...) override the choice.
    """

    usage: torch.Tensor  # buffers
    steps: torch.Tensor

    def __init__(
        self, dim: int, n_codes: int, k: int = 1, *, beta: float = 0.0, reset_every: int = 100, rho: float = 0.01
    ) -> None:
        super().__init__()
        if not 1 <= k <= n_codes:
            raise ValueError(f"k must be in 1..n_codes={n_codes}, got {k}")
        self.dim, self.n_codes, self.k = dim, n_codes, k
        self.beta, self.reset_every, self.rho = beta, reset_every, rho
        self.codebook = nn.Parameter(torch.randn(n_codes, dim) / dim**0.5)
        self.register_buffer("usage", torch.zeros(n_codes))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.last_codes: torch.Tensor | None = None
        self.last_input: torch.Tensor | None = None
        self.last_output: torch.Tensor | None = None
        self.forced: tuple[torch.Tensor, torch.Tensor] | None = None  # (ids (..., k), mask (...))
        self.n_reset = 0

    @torch.no_grad()
    def init_from(self, acts: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Initialise the codes to random rows of ``acts`` (N, dim) (divided by k, so k codes sum to ~one row)."""
        acts = acts.reshape(-1, self.dim)
        idx = torch.randint(0, acts.shape[0], (self.n_codes,), generator=generator)
        self.codebook.copy_(acts[idx] / self.k)

    def similarities(self, a: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of each activation with each code: (..., dim) -> (..., n_codes)."""
        return F.normalize(a, dim=-1) @ F.normalize(self.codebook, dim=-1).T

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            idx = self.similarities(a).topk(self.k, dim=-1).indices  # (..., k)
            if self.forced is not None:
                ids, mask = self.forced
                idx = torch.where(mask[..., None], ids.expand_as(idx), idx)
        q = self.codebook[idx].sum(-2)  # (..., dim): gradient flows to the chosen codes
        out = q + (a - a.detach())  # value q, identity gradient to the input (straight-through)
        self.last_codes, self.last_input, self.last_output = idx, a, q
        if self.training and torch.is_grad_enabled():
            self._step(a.detach(), idx)
        return out

    def loss(self) -> torch.Tensor:
        """Codebook reconstruction ``MSE(codes, sg(a))`` (+ ``beta`` x commitment) of the last forward pass."""
        if self.last_output is None or self.last_input is None:
            return self.codebook.new_zeros(())
        rec = F.mse_loss(self.last_output, self.last_input.detach())
        if self.beta > 0:
            rec = rec + self.beta * F.mse_loss(self.last_input, self.last_output.detach())
        return rec

    @torch.no_grad()
    def _step(self, a: torch.Tensor, idx: torch.Tensor) -> None:
        self.usage += torch.bincount(idx.reshape(-1), minlength=self.n_codes).float()
        self.steps += 1
        if self.reset_every > 0 and int(self.steps) % self.reset_every == 0:
            self.reset_dead(a)

    @torch.no_grad()
    def reset_dead(self, a: torch.Tensor) -> int:
        """Re-seed codes unused since the last reset with random rows of ``a`` plus ``rho * ||a||`` noise."""
        dead = (self.usage == 0).nonzero().squeeze(1)
        self.usage.zero_()
        if dead.numel() == 0:
            return 0
        a = a.reshape(-1, self.dim)
        rows = a[torch.randint(0, a.shape[0], (dead.numel(),), device=a.device)]
        noise = torch.randn_like(rows) * self.rho * rows.norm(dim=-1, keepdim=True) / self.dim**0.5
        self.codebook.data[dead] = (rows + noise) / self.k
        self.n_reset += int(dead.numel())
        return int(dead.numel())


class Codebooks(nn.Module):
    """The codebook layers inserted into a model, by hook-point name; ``remove()`` takes them out."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleDict()
        self.names: dict[str, str] = {}  # point name -> ModuleDict key
        self._handles: list[Any] = []

    def __getitem__(self, point: str) -> CodebookLayer:
        return self.layers[self.names[point]]  # type: ignore[return-value]

    def points(self) -> list[str]:
        return list(self.names)

    def loss(self) -> torch.Tensor:
        """Sum of every layer's reconstruction loss for the last forward pass."""
        return sum((self[p].loss() for p in self.names), torch.zeros(()))

    def codes(self) -> dict[str, torch.Tensor]:
        """The code ids (..., k) each layer chose in the last forward pass."""
        return {p: self[p].last_codes for p in self.names}  # type: ignore[misc]

    @contextlib.contextmanager
    def force(self, point: str, ids: torch.Tensor, mask: torch.Tensor) -> Iterator[None]:
        """Inside the block, layer ``point`` uses code ids ``ids`` (..., k) or (...) where ``mask`` (...) is True."""
        layer = self[point]
        ids = ids.long()
        if ids.dim() == mask.dim():
            ids = ids[..., None]
        if ids.shape[-1] not in (1, layer.k):
            raise ValueError(f"forced ids must have last dim 1 or k={layer.k}, got {tuple(ids.shape)}")
        if bool(((ids < 0) | (ids >= layer.n_codes))[mask].any()):
            raise ValueError(f"forced code ids must be in 0..{layer.n_codes - 1}")
        old = layer.forced
        layer.forced = (ids.clamp(0, layer.n_codes - 1), mask.bool())
        try:
            yield
        finally:
            layer.forced = old

    def remove(self) -> None:
        """Detach the hooks (the layers stay in this object)."""
        for h in self._handles:
            h.remove()
        self._handles.clear()


def insert_codebooks(
    model: nn.Module,
    points: Sequence[str | Point],
    n_codes: int = 256,
    k: int = 1,
    *,
    dim: int | None = None,
    init: dict[str, torch.Tensor] | None = None,
    beta: float = 0.0,
    reset_every: int = 100,
    rho: float = 0.01,
    attach: bool = True,
) -> Codebooks:
    """Replace the activation at each of ``points`` by a :class:`CodebookLayer`'s output.

    The width is ``dim`` or, when ``init[point]`` holds activations of that point (used to initialise
    the codes; recommended), their last dimension; one of the two is required. With ``attach`` the
    :class:`Codebooks` module is registered on the model as ``model.codebooks``, so its codes are among
    ``model.parameters()``.
    """
    declared = _model_points(model)
    modules = dict(model.named_modules())
    books = Codebooks()
    for point in points:
        p = resolve_point(model, point, declared)
        if p.readonly:
            raise HookError(f"hook point {p.name!r} is read-only; insert the codebook at the point it comes from")
        width = dim if dim is not None else (init[p.name].shape[-1] if init and p.name in init else None)
        if width is None:
            raise ValueError(f"insert_codebooks: give dim= or init activations for {p.name!r}")
        layer = CodebookLayer(width, n_codes, k, beta=beta, reset_every=reset_every, rho=rho)
        if init and p.name in init:
            layer.init_from(init[p.name])
        key = p.name.replace(".", "__")
        books.layers[key] = layer
        books.names[p.name] = key

        def hook(raw: Any, p: Point = p, layer: CodebookLayer = layer) -> Any:
            t = _first(raw)
            value = p.read(t) if p.read is not None else t
            new = layer(value)
            return _replace_first(raw, p.write(new) if p.write is not None else new)

        books._handles.append(_register(modules[p.module], p.where, hook))
    if attach:
        model.codebooks = books
    return books
