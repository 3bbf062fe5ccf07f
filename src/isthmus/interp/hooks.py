"""Capture and patch activations of any ``torch.nn.Module`` by name, with forward hooks.

A *hook point* is a :class:`Point`: a module path, whether we read the module's output (or its first
input), and optional ``read``/``write`` transforms between the raw tensor and the value users see
(e.g. the context layer ``(B, T, H·dh)`` read as per-head ``(B, T, H, dh)``). A plain module path such
as ``"encoder.layer.0.output.dense"`` is the output of that module. Models may name extra points:

* a model with a ``hook_points()`` method (the toy zoo) returns ``{name: Point}``;
* a Hugging Face model (anything with ``config.model_type``) gets the names of
  :func:`isthmus.interp.hf.hook_points` (``blocks.0.hook_resid_post``, ``blocks.0.attn.hook_z`` ...).

>>> with capture(model, ["blocks.0.hook_resid_post"]) as acts:   # doctest: +SKIP
...     model(tokens)
>>> acts["blocks.0.hook_resid_post"].shape                        # doctest: +SKIP
>>> with patch(model, "blocks.0.hook_mlp_out", lambda x: x * 0):  # doctest: +SKIP
...     ablated = model(tokens)
"""

from __future__ import annotations

import contextlib
import difflib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

__all__ = [
    "Point",
    "HookError",
    "StopForward",
    "resolve_point",
    "available_points",
    "capture",
    "patch",
    "run_with_cache",
]

Transform = Callable[[torch.Tensor], torch.Tensor]


class HookError(KeyError, ValueError):
    """An unknown hook point, or a point that cannot be used the way asked (e.g. patching a read-only one).

    A ``ValueError`` too, so the CLI reports it as a user error."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0]) if self.args else ""


class StopForward(Exception):
    """Raised inside a hook to end a forward pass early, once every requested point was captured."""


@dataclass(frozen=True)
class Point:
    """Where an activation lives: ``module`` path, ``where`` ("output" or "input"), and transforms.

    ``read`` maps the raw tensor (the first element when the module returns a tuple) to the value
    seen by users; ``write`` maps a user value back to a raw tensor (``None``: read-only point).
    """

    name: str
    module: str
    where: str = "output"
    read: Transform | None = None
    write: Transform | None = None
    readonly: bool = False


def _model_points(model: nn.Module) -> dict[str, Point]:
    """Named points the model declares (toy zoo ``hook_points()``, or Hugging Face families)."""
    own = getattr(model, "hook_points", None)
    if callable(own):
        return own()
    if getattr(getattr(model, "config", None), "model_type", None) is not None:
        from isthmus.interp.hf import hook_points as hf_points

        try:
            return hf_points(model)
        except ValueError:  # an HF architecture we have no table for: module paths still work
            return {}
    return {}


def available_points(model: nn.Module) -> list[str]:
    """Every name :func:`resolve_point` accepts: declared points, then all module paths."""
    return list(dict.fromkeys(list(_model_points(model)) + [n for n, _ in model.named_modules() if n]))


def resolve_point(model: nn.Module, point: str | Point, _declared: dict[str, Point] | None = None) -> Point:
    """A :class:`Point` for a declared name or a module path; unknown names list close matches."""
    if isinstance(point, Point):
        return point
    declared = _model_points(model) if _declared is None else _declared
    if point in declared:
        return declared[point]
    modules = dict(model.named_modules())
    if point in modules and point:
        return Point(name=point, module=point)
    candidates = list(dict.fromkeys(list(declared) + [n for n in modules if n]))
    close = difflib.get_close_matches(point, candidates, n=5, cutoff=0.5)
    hint = f"; close matches: {close}" if close else ""
    examples = list(declared)[:4] or candidates[:4]
    raise HookError(
        f"{type(model).__name__} has no hook point {point!r}{hint} "
        f"(e.g. {examples}; see isthmus.interp.available_points(model))"
    )


def _first(value: Any) -> torch.Tensor:
    return value[0] if isinstance(value, (tuple, list)) else value


def _replace_first(value: Any, new: torch.Tensor) -> Any:
    if isinstance(value, tuple):
        return (new,) + tuple(value[1:])
    if isinstance(value, list):
        return [new] + list(value[1:])
    return new


def _register(module: nn.Module, where: str, fn: Callable) -> torch.utils.hooks.RemovableHandle:
    if where == "output":
        return module.register_forward_hook(lambda _m, _args, out: fn(out))
    if where == "input":

        def pre(_m: nn.Module, args: tuple) -> tuple | None:
            new = fn(args[0])
            return None if new is None else (new,) + tuple(args[1:])

        return module.register_forward_pre_hook(pre)
    raise ValueError(f"Point.where must be 'output' or 'input', got {where!r}")


@contextlib.contextmanager
def capture(
    model: nn.Module,
    points: Sequence[str | Point],
    *,
    detach: bool = True,
    to_cpu: bool = False,
    stop_early: bool = False,
) -> Iterator[dict[str, torch.Tensor]]:
    """Record the activations at ``points`` during forward passes inside the ``with`` block.

    Yields a dict filled as the model runs (the last call wins when a module runs repeatedly).
    ``stop_early`` raises :class:`StopForward` once all points are captured, so later layers are
    skipped; use :func:`run_with_cache`, which catches it.
    """
    declared = _model_points(model)
    resolved = [resolve_point(model, p, declared) for p in points]
    modules = dict(model.named_modules())
    store: dict[str, torch.Tensor] = {}
    wanted = {p.name for p in resolved}
    handles = []

    def make(p: Point) -> Callable:
        def fn(raw: Any) -> None:
            t = _first(raw)
            value = p.read(t) if p.read is not None else t
            if detach:
                value = value.detach()
            store[p.name] = value.cpu() if to_cpu else value
            if stop_early and wanted.issubset(store):
                raise StopForward

        return fn

    try:
        for p in resolved:
            handles.append(_register(modules[p.module], p.where, make(p)))
        yield store
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def patch(model: nn.Module, point: str | Point, fn: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Replace the activation at ``point`` by ``fn(value)`` for forward passes inside the block.

    Hooks on one module run in registration order: enter ``patch`` before ``capture`` when both
    target the same module and the capture should see the patched value.

    ``fn`` sees the value as :func:`capture` would (e.g. per-head ``(B, T, H, dh)``) and returns a
    tensor of the same shape; returning ``None`` leaves the activation unchanged.
    """
    p = resolve_point(model, point)
    if p.readonly:
        raise HookError(
            f"hook point {p.name!r} is read-only (it is derived from another point); "
            "patch the point it is computed from instead"
        )
    module = dict(model.named_modules())[p.module]

    def hook(raw: Any) -> Any:
        t = _first(raw)
        value = p.read(t) if p.read is not None else t
        new = fn(value)
        if new is None:
            return None
        if new.shape != value.shape:
            raise ValueError(
                f"patch fn for {p.name!r} returned shape {tuple(new.shape)}, expected {tuple(value.shape)}"
            )
        new_raw = p.write(new) if p.write is not None else new
        return _replace_first(raw, new_raw)

    handle = _register(module, p.where, hook)
    try:
        yield
    finally:
        handle.remove()


def run_with_cache(
    model: nn.Module, inputs: Any, points: Sequence[str | Point], *, stop_early: bool = True, **capture_kw: Any
) -> dict[str, torch.Tensor]:
    """Run ``model(inputs)`` (``model(**inputs)`` for a dict) without grad and return the captures.

    With ``stop_early`` the forward pass ends at the last requested point, skipping later layers.
    """
    declared = _model_points(model)
    resolved = [resolve_point(model, p, declared) for p in points]
    with torch.no_grad(), capture(model, resolved, stop_early=stop_early, **capture_kw) as acts:
        try:
            model(**inputs) if isinstance(inputs, dict) else model(inputs)
        except StopForward:
            pass
    missing = [p.name for p in resolved if p.name not in acts]
    if missing:
        raise HookError(f"the forward pass never reached hook point(s) {missing}")
    return dict(acts)
