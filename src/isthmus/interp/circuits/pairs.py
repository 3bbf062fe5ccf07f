"""Positive prompts and minimally edited negatives for the toy tasks (``isthmus.interp.toy.tasks``).

Each returns ``(positives, negatives, mask)``: token ids ``(N, T)`` of equal shape, paired row by row, and
the positions whose token the task scores (predicted from the position before). In a negative the answer
is not inferable from the context, following the paper's corruptions:

=============== ==========================================================================================
``induction``   second copy replaced by fresh random tokens (nothing to copy)
``ioi``         the subject's first mention replaced by a third name (the indirect object is not inferable)
``greater_than`` the start year YY set to 01 (Hanna et al.: every year is then "greater")
``docstring``   the signature's argument names replaced by other names (nothing to copy into ``param``)
=============== ==========================================================================================
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from isthmus.interp.toy.tasks import make_task

__all__ = ["task_pairs", "PAIR_TASKS"]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) + 7919)


def _induction(n: int, seed: int, vocab: int = 48, half: int = 16) -> tuple:
    d = make_task("induction", n, seed, vocab=vocab, half=half)
    neg = d.tokens.clone()
    neg[:, half + 1 :] = torch.randint(1, vocab, (n, half), generator=_gen(seed))
    return d.tokens, neg, d.mask


def _ioi(n: int, seed: int, n_names: int = 20) -> tuple:
    d = make_task("ioi", n, seed, n_names=n_names)
    io, s = d.meta["io"], d.meta["s"]
    name0 = len(d.vocab) - n_names
    g = _gen(seed)
    c = (torch.randint(1, n_names - 1, (n,), generator=g) + (io - name0)) % n_names + name0
    c = torch.where(c == s, (c - name0 + n_names - 1) % n_names + name0, c)  # c differs from io and s
    neg = d.tokens.clone()
    first_s = torch.where(d.tokens[:, 2] == s, 2, 4)
    neg[torch.arange(n), first_s] = c
    return d.tokens, neg, d.mask


def _greater_than(n: int, seed: int) -> tuple:
    d = make_task("greater_than", n, seed)
    neg = d.tokens.clone()
    neg[:, 8] = d.meta["number_offset"] + 1  # YY -> "01"
    return d.tokens, neg, d.mask


def _docstring(n: int, seed: int, n_args: int = 3, n_arg_names: int = 24) -> tuple:
    d = make_task("docstring", n, seed, n_args=n_args, n_arg_names=n_arg_names)
    off = len(d.vocab) - n_arg_names
    g = _gen(seed)
    neg = d.tokens.clone()
    used = torch.zeros(n, n_arg_names, dtype=torch.bool)
    used[torch.arange(n)[:, None], d.meta["args"] - off] = True
    noise = torch.rand(n, n_arg_names, generator=g) + used.float() * 2  # used names sort last
    fresh = noise.argsort(1)[:, :n_args] + off
    neg[:, [4 + 2 * i for i in range(n_args)]] = fresh
    return d.tokens, neg, d.mask


PAIR_TASKS: dict[str, Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {
    "induction": _induction,
    "ioi": _ioi,
    "greater_than": _greater_than,
    "docstring": _docstring,
}


def task_pairs(task: str, n: int, seed: int = 0, **task_kwargs: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(positives, negatives, mask)`` for ``task`` in :data:`PAIR_TASKS`."""
    if task not in PAIR_TASKS:
        raise ValueError(f"no positive/negative pairs for task {task!r}; choose from {sorted(PAIR_TASKS)}")
    return PAIR_TASKS[task](n, seed, **task_kwargs)
