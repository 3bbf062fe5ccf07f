"""Streamed text corpora through Hugging Face ``datasets``, tokenized with context packing.

:class:`Corpus` reads local parquet, JSON lines, arrow or plain-text files (a file, a folder, or a glob)
with ``datasets.load_dataset(..., streaming=True)``: examples are read lazily, so memory stays bounded
whatever the corpus size. A local dataset folder saved by ``datasets`` (or a Hub name, if the caller has
it cached) works through ``builder=``. ``datasets`` is an optional extra (``pip install isthmus[stream]``),
imported only here and only when a corpus is opened.

:func:`pack_tokens` is context packing as SAELens and sparsify do it: texts are tokenized without
special tokens, joined with a separator (EOS, else SEP), and cut into full windows of ``context``
tokens (optionally each opened by BOS/CLS), so no position is padding and no token is wasted on
truncation. Harvesting several hook points in one pass is :func:`isthmus.interp.store.harvest_to_store`
with a list of points.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, cast

import torch

__all__ = ["Corpus", "pack_tokens", "BUILDERS"]

# file suffix -> datasets builder
BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".arrow": "arrow", ".txt": "text", ".csv": "csv"}
_INSTALL = "streaming corpora need Hugging Face `datasets`: pip install 'isthmus[stream]' (or pip install datasets)"


def _datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise ImportError(_INSTALL) from None
    return datasets


@dataclass
class Corpus:
    """Texts from local files via ``datasets`` (``streaming=True`` by default).

    ``path``: a file, a folder (every file with a known suffix, of one kind) or a glob. ``builder``
    overrides the suffix-based choice (e.g. ``"text"`` for a folder of ``.md`` files, or a dataset name).
    ``text_field``: the column holding the text (``"text"`` for the text builder).
    """

    path: str | Path
    text_field: str = "text"
    split: str = "train"
    streaming: bool = True
    builder: str | None = None
    sample_by: str = "line"  # text builder only: "line", "paragraph" or "document"

    @property
    def label(self) -> str:
        return str(self.path)

    def _files(self) -> tuple[str, list[str]]:
        p = Path(self.path)
        if p.is_dir():
            files = sorted(str(f) for f in p.rglob("*") if f.is_file() and f.suffix in BUILDERS)
        elif p.is_file():
            files = [str(p)]
        else:
            files = sorted(glob.glob(str(self.path), recursive=True))
        if not files:
            raise FileNotFoundError(f"corpus {self.path}: no {sorted(BUILDERS)} files found")
        kinds = {BUILDERS.get(Path(f).suffix) for f in files}
        if self.builder:
            return self.builder, files
        if len(kinds) != 1 or None in kinds:
            raise ValueError(
                f"corpus {self.path} mixes file kinds {sorted(map(str, kinds))}; point it at one kind or pass builder="
            )
        return cast(str, kinds.pop()), files  # None in kinds was rejected above

    def dataset(self) -> Any:
        """The (iterable, when streaming) ``datasets`` object."""
        ds = _datasets()
        builder, files = self._files()
        kwargs: dict[str, Any] = {"sample_by": self.sample_by} if builder == "text" else {}
        return ds.load_dataset(
            builder, data_files={self.split: files}, split=self.split, streaming=self.streaming, **kwargs
        )

    def texts(self) -> Iterator[str]:
        """Non-empty texts, lazily."""
        for row in self.dataset():
            if self.text_field not in row:
                raise KeyError(
                    f"corpus {self.path} has no column {self.text_field!r} (columns: {sorted(row)}); "
                    "pass text_field= (CLI: --text-field)"
                )
            text = row[self.text_field]
            if isinstance(text, str) and text.strip():
                yield text


def pack_tokens(
    tokenizer: Any,
    texts: Any,
    context: int,
    batch_size: int,
    *,
    prepend_bos: bool = True,
    max_windows: int | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """Batches ``{"input_ids", "attention_mask", "special_tokens_mask"}`` of shape (B, ``context``) packed
    from ``texts``.

    Each window starts with the tokenizer's BOS (or CLS) when ``prepend_bos`` and one exists; documents
    are separated by EOS (or SEP). The last partial window is dropped (it would need padding)."""
    bos = (
        (getattr(tokenizer, "bos_token_id", None) or getattr(tokenizer, "cls_token_id", None)) if prepend_bos else None
    )
    sep = getattr(tokenizer, "eos_token_id", None)
    sep = sep if sep is not None else getattr(tokenizer, "sep_token_id", None)
    body = context - (bos is not None)
    if body < 1:
        raise ValueError(f"context={context} leaves no room for tokens")
    buf: list[int] = []
    windows: list[list[int]] = []
    made = 0

    def batch() -> dict[str, torch.Tensor]:
        t = torch.tensor(windows, dtype=torch.long)
        special = torch.zeros_like(t)  # BOS/separators: dropped by harvest, kept clean by splicing
        if sep is not None:
            special |= (t == sep).long()
        if bos is not None:
            special[:, 0] = 1
        return {"input_ids": t, "attention_mask": torch.ones_like(t), "special_tokens_mask": special}

    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        buf.extend(ids)
        if sep is not None:
            buf.append(sep)
        while len(buf) >= body:
            windows.append(([bos] if bos is not None else []) + buf[:body])
            del buf[:body]
            made += 1
            if len(windows) == batch_size or (max_windows is not None and made >= max_windows):
                yield batch()
                windows = []
            if max_windows is not None and made >= max_windows:
                return
    if windows:
        yield batch()
