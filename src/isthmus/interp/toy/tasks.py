"""Synthetic sequence tasks with known structure, for tiny transformers (and their circuits).

Each generator returns a :class:`TaskData`: ``tokens`` ``(N, T)``, ``mask`` ``(N, T)`` marking the
tokens whose prediction the task is about (the loss and the accuracy use only those), the
``vocab`` (token strings) and ``meta`` (ground truth: answer positions, names, the automaton...).
All generators are deterministic functions of ``(n, seed, **kwargs)``.

=================== ===================================================================================
``induction``       ``BOS r1..rL r1..rL``: the second copy is predictable only by induction
``copy_reverse_sort`` ``BOS TAG x1..xL SEP y1..yL`` with TAG in {copy, reverse, sort} (``meta["task"]``)
``ioi``             "When A and B went to the PLACE, B gave a OBJ to" → A (indirect-object identification)
``greater_than``    "The war lasted from the year 17 YY to the year 17" → ZZ > YY (two-digit tokens)
``docstring``       ``def f(a, b, c): DOC param a param b param`` → c (argument copying)
``fsm``             ``BOS s0 x1 s1 x2 s2 ...``: states of a random DFA (``meta["transitions"]``)
``shakespeare``     character windows of Tiny Shakespeare (local data only; never downloaded)
=================== ===================================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

__all__ = ["TaskData", "TASKS", "make_task", "register_task"]


@dataclass
class TaskData:
    tokens: torch.Tensor  # (N, T) int64
    mask: torch.Tensor  # (N, T) bool: targets that matter
    vocab: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def __len__(self) -> int:
        return len(self.tokens)

    def as_training_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.tokens, self.mask


TASKS: dict[str, Callable[..., TaskData]] = {}


def register_task(name: str) -> Callable:
    def deco(fn: Callable[..., TaskData]) -> Callable[..., TaskData]:
        TASKS[name] = fn
        return fn

    return deco


def make_task(name: str, n: int, seed: int = 0, **kwargs: Any) -> TaskData:
    """``n`` sequences of task ``name`` (see the module docstring); kwargs go to its generator."""
    if name not in TASKS:
        raise ValueError(f"unknown toy task {name!r}; choose from {sorted(TASKS)}")
    return TASKS[name](n, seed, **kwargs)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


@register_task("induction")
def induction(n: int, seed: int = 0, vocab: int = 48, half: int = 16) -> TaskData:
    """Repeated random sequences; the mask covers the second copy from its 2nd token on."""
    g = _gen(seed)
    r = torch.randint(1, vocab, (n, half), generator=g)
    tokens = torch.cat([torch.zeros(n, 1, dtype=torch.long), r, r], 1)  # (N, 2L+1), 0 = BOS
    mask = torch.zeros_like(tokens, dtype=torch.bool)
    mask[:, half + 2 :] = True
    return TaskData(
        tokens,
        mask,
        ["<bos>"] + [f"t{i}" for i in range(1, vocab)],
        {"half": half, "first_copy": (1, half + 1), "second_copy": (half + 1, 2 * half + 1)},
    )


@register_task("copy_reverse_sort")
def copy_reverse_sort(
    n: int, seed: int = 0, length: int = 8, digits: int = 10, tasks: tuple[str, ...] = ("copy", "reverse", "sort")
) -> TaskData:
    g = _gen(seed)
    names = ["copy", "reverse", "sort"]
    vocab = ["<bos>", "<sep>", *(f"<{t}>" for t in names), *(str(i) for i in range(digits))]
    off = 5
    x = torch.randint(0, digits, (n, length), generator=g)
    which = torch.tensor([names.index(t) for t in tasks])[torch.randint(0, len(tasks), (n,), generator=g)]
    y = torch.where((which == 0)[:, None], x, torch.where((which == 1)[:, None], x.flip(1), x.sort(1).values))
    tokens = torch.cat(
        [
            torch.zeros(n, 1, dtype=torch.long),
            (2 + which)[:, None],
            x + off,
            torch.ones(n, 1, dtype=torch.long),
            y + off,
        ],
        1,
    )
    mask = torch.zeros_like(tokens, dtype=torch.bool)
    mask[:, length + 3 :] = True
    return TaskData(tokens, mask, vocab, {"task": [names[i] for i in which.tolist()], "length": length})


@register_task("ioi")
def ioi(n: int, seed: int = 0, n_names: int = 20) -> TaskData:
    """Indirect-object identification; ``meta``: io/s name ids and whether the order is ABBA."""
    g = _gen(seed)
    words = ["<bos>", "When", "and", "went", "to", "the", ",", "gave", "a"]
    places, objects = ["store", "park", "school", "garden"], ["drink", "book", "ball", "gift"]
    vocab = words + places + objects + [f"Name{i}" for i in range(n_names)]
    w = {s: i for i, s in enumerate(vocab)}
    name0 = len(words) + len(places) + len(objects)
    a = torch.randint(0, n_names, (n,), generator=g)
    b = (a + torch.randint(1, n_names, (n,), generator=g)) % n_names  # b != a
    abba = torch.rand(n, generator=g) < 0.5
    place = torch.randint(0, len(places), (n,), generator=g) + len(words)
    obj = torch.randint(0, len(objects), (n,), generator=g) + len(words) + len(places)
    io, s = a + name0, b + name0  # indirect object A, subject B
    first, second = torch.where(abba, io, s), torch.where(abba, s, io)
    col = lambda tok: torch.full((n,), w[tok]) if isinstance(tok, str) else tok  # noqa: E731
    seq = ["<bos>", "When", first, "and", second, "went", "to", "the", place, ",", s, "gave", "a", obj, "to", io]
    tokens = torch.stack([col(t) for t in seq], 1)
    mask = torch.zeros_like(tokens, dtype=torch.bool)
    mask[:, -1] = True
    return TaskData(tokens, mask, vocab, {"io": io, "s": s, "abba": abba, "answer_position": len(seq) - 1})


@register_task("greater_than")
def greater_than(n: int, seed: int = 0) -> TaskData:
    """Answer ZZ is uniform in (YY, 99]; score a model by its probability mass on years > YY."""
    g = _gen(seed)
    words = ["<bos>", "The", "war", "lasted", "from", "the", "year", "17", "to"]
    vocab = words + [f"{i:02d}" for i in range(100)]
    w = {s: i for i, s in enumerate(words)}
    yy = torch.randint(2, 99, (n,), generator=g)
    zz = yy + 1 + (torch.rand(n, generator=g) * (99 - yy)).long()
    col = lambda tok: torch.full((n,), w[tok]) if isinstance(tok, str) else tok  # noqa: E731
    seq = [
        "<bos>",
        "The",
        "war",
        "lasted",
        "from",
        "the",
        "year",
        "17",
        yy + len(words),
        "to",
        "the",
        "year",
        "17",
        zz + len(words),
    ]
    tokens = torch.stack([col(t) for t in seq], 1)
    mask = torch.zeros_like(tokens, dtype=torch.bool)
    mask[:, -1] = True
    return TaskData(tokens, mask, vocab, {"yy": yy, "zz": zz, "number_offset": len(words)})


@register_task("docstring")
def docstring(n: int, seed: int = 0, n_args: int = 3, n_arg_names: int = 24) -> TaskData:
    """Copy argument names from a signature into ``param`` lines; mask = the argument after each param."""
    g = _gen(seed)
    words = ["<bos>", "def", "f", "(", ",", ")", ":", "<doc>", "param"]
    vocab = words + [f"arg{i}" for i in range(n_arg_names)]
    args = torch.rand(n, n_arg_names, generator=g).argsort(1)[:, :n_args] + len(words)  # distinct names
    w = {s: i for i, s in enumerate(words)}
    cols = [w["<bos>"], w["def"], w["f"], w["("]]
    parts: list[torch.Tensor] = [torch.full((n,), c) for c in cols]
    for i in range(n_args):
        parts += [args[:, i]] + ([torch.full((n,), w[","])] if i < n_args - 1 else [])
    parts += [torch.full((n,), w[")"]), torch.full((n,), w[":"]), torch.full((n,), w["<doc>"])]
    answer = []
    for i in range(n_args):
        parts += [torch.full((n,), w["param"]), args[:, i]]
        answer.append(len(parts) - 1)
    tokens = torch.stack(parts, 1)
    mask = torch.zeros_like(tokens, dtype=torch.bool)
    mask[:, answer] = True
    return TaskData(tokens, mask, vocab, {"args": args, "answer_positions": answer})


@register_task("fsm")
def fsm(
    n: int, seed: int = 0, n_states: int = 4, n_symbols: int = 3, steps: int = 12, machine_seed: int = 0
) -> TaskData:
    """Interleaved input symbols and DFA states; the automaton depends on ``machine_seed`` only."""
    trans = torch.randint(0, n_states, (n_states, n_symbols), generator=_gen(machine_seed))
    g = _gen(seed)
    state = torch.randint(0, n_states, (n,), generator=g)
    sym = torch.randint(0, n_symbols, (n, steps), generator=g)
    cols, states = [torch.zeros(n, dtype=torch.long), state + 1], [state]
    for t in range(steps):
        state = trans[state, sym[:, t]]
        states.append(state)
        cols += [sym[:, t] + 1 + n_states, state + 1]
    tokens = torch.stack(cols, 1)
    mask = torch.zeros_like(tokens, dtype=torch.bool)
    mask[:, 3::2] = True  # states after each input symbol
    vocab = ["<bos>"] + [f"S{i}" for i in range(n_states)] + [f"x{i}" for i in range(n_symbols)]
    return TaskData(tokens, mask, vocab, {"transitions": trans, "states": torch.stack(states, 1)})


def load_chars(path: str | Path | None = None) -> tuple[torch.Tensor, list[str]]:
    """Tiny Shakespeare (or any text file) as character ids plus the sorted character vocabulary."""
    if path is None:
        from isthmus.data.paths import find_data

        path = find_data("tinyshakespeare") / "input.txt"
    codes = np.frombuffer(Path(path).read_text(encoding="utf-8").encode("utf-32-le"), dtype=np.uint32)
    chars, ids = np.unique(codes, return_inverse=True)  # sorted code points = sorted characters
    return torch.from_numpy(ids.astype(np.int64)), [chr(c) for c in chars]


@register_task("shakespeare")
def shakespeare(n: int, seed: int = 0, n_ctx: int = 64, path: str | None = None, split: str = "train") -> TaskData:
    """Random character windows: the first 90 % of the text is ``train``, the rest ``val``."""
    ids, vocab = load_chars(path)
    cut = int(0.9 * len(ids))
    ids = ids[:cut] if split == "train" else ids[cut:]
    starts = torch.randint(0, len(ids) - n_ctx, (n,), generator=_gen(seed))
    tokens = ids[starts[:, None] + torch.arange(n_ctx)]
    return TaskData(tokens, torch.ones_like(tokens, dtype=torch.bool), vocab, {"split": split})
