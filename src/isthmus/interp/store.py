"""An on-disk activation store: sharded safetensors + a JSON manifest, streamed in bounded memory.

Layout of a store folder::

    manifest.json          format, model, point, dataset, dtype, d, row_shape, n_rows, shards[...]
    shard_00000.safetensors   activations (n, d), token_ids (n,) int32, positions (n,) int32,
    shard_00001.safetensors   sequence (n,) int64  -- one row per token
    ...

A store is written into a hidden temporary folder (each shard and the manifest atomically) and
renamed into place by :meth:`StoreWriter.close`, so a folder with a manifest is always complete.

:meth:`ActivationStore.iter_batches` streams one epoch: the rows are cut into chunks (ranges of
one shard), the chunk order is shuffled, and chunks are loaded into a fixed buffer whose rows are
permuted before batches are drawn; leftovers (< one batch) carry to the next refill. Chunks are
read from disk straight into the buffer (a row range of a safetensors tensor is one byte range),
so a shard is never loaded whole. Every row comes exactly once per epoch, and the tensors the
iterator holds (buffer, permutation, the batch being built) never exceed ``max_memory_mb``: see
``last_stats``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch
from torch import nn

from isthmus.interp.hooks import run_with_cache
from isthmus.interp.precision import autocast
from isthmus.io import CheckpointError, atomic_write_json, read_json, save_tensors

__all__ = [
    "FORMAT",
    "StoreExistsError",
    "Rows",
    "iter_activations",
    "StoreWriter",
    "ActivationStore",
    "harvest_to_store",
]

FORMAT = "isthmus.activation_store"
META_FIELDS = {"token_ids": torch.int32, "positions": torch.int32, "sequence": torch.int64}
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class StoreExistsError(ValueError):
    """The target folder already holds an activation store and ``overwrite`` was not given."""


@dataclass
class Rows:
    """One batch of harvested tokens: ``acts[point]`` is ``(n, *shape)``; the rest are ``(n,)``."""

    acts: dict[str, torch.Tensor]
    token_ids: torch.Tensor
    positions: torch.Tensor
    sequence: torch.Tensor


def _split_batch(batch: Any, drop_special: bool) -> tuple[Any, torch.Tensor, torch.Tensor]:
    """(model inputs, token ids (B, T), keep mask (B, T)) for a dict / token tensor / (tokens, ...) batch."""
    if isinstance(batch, dict):
        inputs = dict(batch)
        special = inputs.pop("special_tokens_mask", None)
        ids = inputs["input_ids"]
        keep = inputs.get("attention_mask", torch.ones_like(ids)).bool()
        if drop_special and special is not None:
            keep = keep & ~special.bool()
        return inputs, ids, keep
    if isinstance(batch, (tuple, list)):
        batch = batch[0]
    if not isinstance(batch, torch.Tensor) or batch.dim() != 2:
        raise TypeError(
            "each batch must be a dict of tokenizer outputs, a (B, T) token tensor, or a tuple "
            f"starting with one; got {type(batch).__name__}"
        )
    return batch, batch, torch.ones_like(batch, dtype=torch.bool)


def iter_activations(
    model: nn.Module,
    batches: Iterable[Any],
    points: Sequence[str],
    *,
    max_tokens: int | None = None,
    drop_special: bool = True,
    autocast_dtype: str | torch.dtype | None = None,
    rank: int = 0,
    world: int = 1,
) -> Iterator[Rows]:
    """Run each batch through ``model`` (no grad, stopping after the last point) and yield kept tokens.

    Inputs go to the model's device; ``autocast_dtype`` ("bfloat16", "float16") runs the forward under
    :func:`torch.autocast`; activations come back to the CPU as float32.

    ``rank``/``world`` shard the work: every rank reads all batches but runs the model only on
    batches ``rank, rank + world, ...``. Which tokens are kept (``max_tokens`` included) and the
    ``sequence`` ids are decided from the masks alone, so the ranks' rows together are exactly the
    rows of one process."""
    seen, seq_offset = 0, 0
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    for index, batch in enumerate(batches):
        inputs, ids, keep = _split_batch(batch, drop_special)
        ids, keep = ids.cpu(), keep.cpu()
        if index % world != rank:  # another rank's batch: only count its sequences and kept tokens
            seq_offset += ids.shape[0]
            seen += int(keep.sum()) if max_tokens is None else min(int(keep.sum()), max_tokens - seen)
            if max_tokens is not None and seen >= max_tokens:
                return
            continue
        if isinstance(inputs, dict):
            inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
        else:
            inputs = inputs.to(device)
        with autocast(device, autocast_dtype):
            acts = {p: a.cpu() for p, a in run_with_cache(model, inputs, points).items()}
        b, t = ids.shape
        pos = torch.arange(t).expand(b, t)
        seq = (torch.arange(b) + seq_offset).unsqueeze(1).expand(b, t)
        seq_offset += b
        idx = keep.nonzero(as_tuple=True)
        if max_tokens is not None:
            idx = tuple(i[: max_tokens - seen] for i in idx)
        n = len(idx[0])
        if n:
            yield Rows(
                {p: a[idx].float() for p, a in acts.items()},
                ids[idx].to(torch.int32),
                pos[idx].to(torch.int32),
                seq[idx].to(torch.int64),
            )
        seen += n
        if max_tokens is not None and seen >= max_tokens:
            return


class StoreWriter:
    """Append rows, get a store: ``with StoreWriter(path, ...) as w: w.add(acts, ...)``.

    Shards hold about ``shard_mb`` MiB (or exactly ``shard_rows`` rows). ``meta`` (model, point,
    dataset, ...) goes into the manifest. An exception inside the ``with`` leaves no store behind.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        dtype: str = "float32",
        shard_mb: float = 64.0,
        shard_rows: int | None = None,
        meta: dict[str, Any] | None = None,
        overwrite: bool = False,
    ):
        self.path = Path(path)
        if (self.path / "manifest.json").exists() and not overwrite:
            raise StoreExistsError(
                f"{self.path} already holds an activation store; pass overwrite=True "
                "(CLI: --overwrite) or choose another folder"
            )
        if dtype not in _DTYPES:
            raise ValueError(f"store dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        self.dtype, self.shard_mb, self.shard_rows = dtype, shard_mb, shard_rows
        self.meta, self.overwrite = dict(meta or {}), overwrite
        self.tmp = self.path.parent / f".{self.path.name}.tmp-{os.getpid()}-{time.monotonic_ns()}"
        self.tmp.mkdir(parents=True)
        self.row_shape: tuple[int, ...] | None = None
        self.pending: list[dict[str, torch.Tensor]] = []
        self.pending_rows = 0
        self.shards: list[dict[str, Any]] = []
        self.n_rows = 0

    def add(
        self,
        acts: torch.Tensor,
        token_ids: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        sequence: torch.Tensor | None = None,
    ) -> None:
        """Append ``acts`` ``(n, *row_shape)`` with optional per-row token ids, positions, sequence ids."""
        n = acts.shape[0]
        if self.row_shape is None:
            self.row_shape = tuple(acts.shape[1:])
            d = math.prod(self.row_shape)
            itemsize = torch.empty((), dtype=_DTYPES[self.dtype]).element_size()
            self.shard_rows = self.shard_rows or max(1, int(self.shard_mb * 2**20 // (d * itemsize)))
        elif tuple(acts.shape[1:]) != self.row_shape:
            raise ValueError(f"row shape changed from {self.row_shape} to {tuple(acts.shape[1:])}")
        fill = torch.full((n,), -1, dtype=torch.int64)
        rows = {"activations": acts.detach().cpu().reshape(n, -1).to(_DTYPES[self.dtype])}
        for name, value in (("token_ids", token_ids), ("positions", positions), ("sequence", sequence)):
            rows[name] = (fill if value is None else value.detach().cpu().reshape(n)).to(META_FIELDS[name])
        self.pending.append(rows)
        self.pending_rows += n
        assert self.shard_rows is not None  # set with row_shape by the first add
        while self.pending_rows >= self.shard_rows:
            self._flush(self.shard_rows)

    def _flush(self, rows: int) -> None:
        merged = {k: torch.cat([p[k] for p in self.pending]) for k in self.pending[0]}
        shard = {k: v[:rows].clone() for k, v in merged.items()}
        rest = {k: v[rows:] for k, v in merged.items()}
        self.pending = [rest] if len(rest["activations"]) else []
        self.pending_rows -= rows
        name = f"shard_{len(self.shards):05d}.safetensors"
        save_tensors(self.tmp / name, shard)
        self.shards.append({"file": name, "rows": rows})
        self.n_rows += rows

    def flush(self) -> None:
        """Write the rows not yet in a shard as a (short) shard."""
        if self.pending_rows:
            self._flush(self.pending_rows)

    def close(self) -> "ActivationStore":
        """Write the last shard and the manifest, move the store into place, and open it."""
        self.flush()
        if not self.n_rows:
            self.abort()
            raise ValueError(f"no rows were added to the activation store {self.path}")
        assert self.row_shape is not None  # set by the first add
        manifest = {
            "format": FORMAT,
            "version": 1,
            **self.meta,
            "dtype": self.dtype,
            "d": math.prod(self.row_shape),
            "row_shape": list(self.row_shape),
            "n_rows": self.n_rows,
            "fields": {"activations": self.dtype, **{k: str(v).removeprefix("torch.") for k, v in META_FIELDS.items()}},
            "shards": self.shards,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        atomic_write_json(self.tmp / "manifest.json", manifest)
        old = None
        if self.path.exists():
            old = self.path.parent / f".{self.path.name}.old-{time.monotonic_ns()}"
            os.replace(self.path, old)
        os.replace(self.tmp, self.path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return ActivationStore(self.path)

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _check_manifest(m: Any, where: Path) -> None:
    """Every manifest field the reader relies on, with its type: a damaged or foreign manifest is a
    :class:`CheckpointError` naming the field, not a KeyError (or a silently mis-shaped read)."""

    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{where} is not a valid isthmus activation store manifest: {what}")

    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise bad("no 'format': 'isthmus.activation_store'")
    if not isinstance(m.get("dtype"), str) or m["dtype"] not in _DTYPES:
        raise bad(f"dtype {m.get('dtype')!r} not in {sorted(_DTYPES)}")
    shape = m.get("row_shape")
    if not (isinstance(shape, list) and shape and all(type(v) is int and v > 0 for v in shape)):
        raise bad(f"row_shape {shape!r} is not a list of positive integers")
    if type(m.get("d")) is not int or m["d"] != math.prod(shape):
        raise bad(f"d {m.get('d')!r} is not the product of row_shape {shape}")
    shards = m.get("shards")
    if not (
        isinstance(shards, list)
        and all(
            isinstance(s, dict) and isinstance(s.get("file"), str) and type(s.get("rows")) is int and s["rows"] >= 0
            for s in shards
        )
    ):
        raise bad("'shards' is not a list of {file, rows}")
    for s in shards:
        if Path(s["file"]).name != s["file"] or s["file"] in ("", ".", ".."):
            raise bad(f"shard file {s['file']!r} is not a plain file name inside the store")
    if type(m.get("n_rows")) is not int or m["n_rows"] != sum(s["rows"] for s in shards):
        raise bad(f"n_rows {m.get('n_rows')!r} is not the sum of the shard rows")


class ActivationStore:
    """Read a store folder written by :class:`StoreWriter`: ``len(store)`` rows of ``store.d`` numbers."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / "manifest.json").exists():
            raise CheckpointError(f"{self.path} is not an activation store (no manifest.json)")
        self.manifest: dict[str, Any] = read_json(self.path / "manifest.json")
        _check_manifest(self.manifest, self.path / "manifest.json")
        missing = [s["file"] for s in self.manifest["shards"] if not (self.path / s["file"]).exists()]
        if missing:
            raise CheckpointError(f"{self.path}: shard file(s) {missing[:3]} are missing")
        self.d: int = int(self.manifest["d"])
        self.row_shape = tuple(self.manifest["row_shape"])
        self.dtype = _DTYPES[self.manifest["dtype"]]
        self.shard_sizes = [int(s["rows"]) for s in self.manifest["shards"]]
        self.last_stats: dict[str, int] = {}
        self._headers: dict[int, tuple[Path, int, dict[str, Any]]] = {}

    def __len__(self) -> int:
        return int(self.manifest["n_rows"])

    def __repr__(self) -> str:
        m = self.manifest
        return (
            f"ActivationStore({str(self.path)!r}, rows={len(self)}, d={self.d}, point={m.get('point')!r}, "
            f"model={m.get('model')!r}, shards={len(self.shard_sizes)})"
        )

    def _header(self, shard: int) -> tuple[Path, int, dict[str, Any]]:
        """(file, data start, tensor table) of a shard; parsed once (safetensors: u64 length + JSON)."""
        if shard not in self._headers:
            file = self.path / self.manifest["shards"][shard]["file"]
            with open(file, "rb") as fh:
                size = int.from_bytes(fh.read(8), "little")
                try:
                    table = json.loads(fh.read(min(size, 1 << 24)))
                except (json.JSONDecodeError, UnicodeDecodeError):
                    raise CheckpointError(
                        f"{file} has no readable safetensors header; it is truncated or not a shard of this store"
                    ) from None
            rows = self.shard_sizes[shard]
            dtypes = {
                "activations": {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}[self.dtype],
                "token_ids": "I32",
                "positions": "I32",
                "sequence": "I64",
            }
            for field, dtype in dtypes.items():
                info = table.get(field) if isinstance(table, dict) else None
                want = [rows, self.d] if field == "activations" else [rows]
                if info is not None and (info.get("dtype") != dtype or info.get("shape") != want):
                    raise CheckpointError(
                        f"{file}: {field} is {info.get('dtype')} {info.get('shape')} but the "
                        f"manifest says {dtype} {want}; the manifest does not describe this shard"
                    )
            if not isinstance(table, dict) or "activations" not in table:
                raise CheckpointError(f"{file} holds no activations; it is not a shard of this store")
            self._headers[shard] = (file, 8 + size, table)
        return self._headers[shard]

    def _read_into(self, shard: int, field: str, start: int, stop: int, out: torch.Tensor) -> None:
        """Copy rows ``[start, stop)`` of ``field`` from disk straight into ``out`` (no whole-shard load).

        safetensors stores each tensor as one contiguous row-major block at ``data_offsets``, so a
        row range is one byte range: read it with ``readinto`` into the destination's memory.
        """
        file, base, table = self._header(shard)
        info = table[field]
        row_bytes = out[0].nbytes if len(out) else 0
        if stop > info["shape"][0] or not out.is_contiguous():
            raise ValueError(f"bad read of rows {start}:{stop} from {file.name}:{field}")
        view = out.view(torch.int16) if out.dtype == torch.bfloat16 else out  # numpy has no bfloat16
        with open(file, "rb") as fh:
            fh.seek(base + info["data_offsets"][0] + start * row_bytes)
            got = fh.readinto(view.numpy().data.cast("B"))
        if got != (stop - start) * row_bytes:
            raise CheckpointError(f"{file} is truncated (read {got} of {(stop - start) * row_bytes} bytes)")

    def _read(self, shard: int, start: int, stop: int, fields: Sequence[str]) -> dict[str, torch.Tensor]:
        out = {}
        for k in fields:
            shape = (stop - start, self.d) if k == "activations" else (stop - start,)
            out[k] = torch.empty(shape, dtype=self.dtype if k == "activations" else META_FIELDS[k])
            self._read_into(shard, k, start, stop, out[k])
        return out

    def read(self, start: int = 0, stop: int | None = None, field: str = "activations") -> torch.Tensor:
        """Rows ``[start, stop)`` of one field, in store order (loads only the shards it touches)."""
        stop = len(self) if stop is None else min(stop, len(self))
        parts, offset = [], 0
        for i, size in enumerate(self.shard_sizes):
            lo, hi = max(start - offset, 0), min(stop - offset, size)
            if lo < hi:
                parts.append(self._read(i, lo, hi, [field])[field])
            offset += size
        if parts:
            return torch.cat(parts)
        # an empty range: the field's own shape and dtype, like any other read
        if field == "activations":
            return torch.empty(0, self.d, dtype=self.dtype)
        return torch.empty(0, dtype=META_FIELDS[field])

    def iter_batches(
        self,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        max_memory_mb: float = 512.0,
        drop_last: bool = False,
        with_meta: bool = False,
        dtype: torch.dtype | None = None,
    ) -> Iterator[Any]:
        """One epoch of batches ``(B, d)`` (dicts with token ids/positions/sequence if ``with_meta``).

        ``shuffle=False`` reads rows in store order (evaluation). Tensors held by the iterator stay
        below ``max_memory_mb``; batches you keep are yours. ``last_stats`` reports the peak.
        """
        fields = ["activations", *(META_FIELDS if with_meta else [])]
        itemsize = {"activations": self.d * self.dtype.itemsize, **{k: v.itemsize for k, v in META_FIELDS.items()}}
        row_bytes = sum(itemsize[f] for f in fields)
        limit = int(max_memory_mb * 2**20)
        limit_rows = limit // (row_bytes + 8)  # + one int64 permutation index per buffered row
        if limit_rows < 3 * batch_size:
            raise ValueError(
                f"max_memory_mb={max_memory_mb} holds {limit_rows} rows of {row_bytes} bytes; "
                f"it must hold at least 3 batches ({3 * batch_size} rows): raise it or lower "
                "batch_size"
            )
        # Peak = buffer + one batch; chunks of a quarter buffer keep >= 3 chunks mixed in it.
        capacity = min(limit_rows - batch_size, len(self))
        chunk_rows = max(1, (capacity - batch_size) // 4)
        chunks = [
            (i, s, min(s + chunk_rows, size))
            for i, size in enumerate(self.shard_sizes)
            for s in range(0, size, chunk_rows)
        ]
        gen = torch.Generator().manual_seed(seed)
        if shuffle:
            chunks = [chunks[j] for j in torch.randperm(len(chunks), generator=gen).tolist()]
        buf = {
            f: torch.empty(
                (capacity, self.d) if f == "activations" else (capacity,),
                dtype=self.dtype if f == "activations" else META_FIELDS[f],
            )
            for f in fields
        }
        stats = self.last_stats = {
            "limit_bytes": limit,
            "peak_held_bytes": 0,
            "rows_yielded": 0,
            "chunks": len(chunks),
            "buffer_rows": capacity,
        }
        yield from self._stream(buf, chunks, fields, batch_size, shuffle, gen, drop_last, with_meta, dtype, stats)

    def _stream(
        self,
        buf: dict[str, torch.Tensor],
        chunks: list[tuple[int, int, int]],
        fields: list[str],
        bs: int,
        shuffle: bool,
        gen: torch.Generator,
        drop_last: bool,
        with_meta: bool,
        dtype: torch.dtype | None,
        stats: dict[str, int],
    ) -> Iterator[Any]:
        capacity = len(buf["activations"])
        held = sum(t.untyped_storage().nbytes() for t in buf.values())
        n, ci = 0, 0

        def note(*extra: Any) -> None:
            total = held + sum(
                t.untyped_storage().nbytes() for e in extra for t in (e.values() if isinstance(e, dict) else [e])
            )
            stats["peak_held_bytes"] = max(stats["peak_held_bytes"], total)

        while True:
            while ci < len(chunks) and n + chunks[ci][2] - chunks[ci][1] <= capacity:
                shard, start, stop = chunks[ci]
                k = stop - start
                for f in fields:  # straight from disk into the buffer: no temporary chunk tensor
                    self._read_into(shard, f, start, stop, buf[f][n : n + k])
                n, ci = n + k, ci + 1
            if n == 0:
                return
            last = ci == len(chunks)
            perm = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
            full = n // bs
            stop = n if last and not drop_last else full * bs
            for s in range(0, stop, bs):
                idx = perm[s : min(s + bs, stop)]
                batch = {f: buf[f][idx] for f in fields}
                if dtype is not None:
                    batch["activations"] = batch["activations"].to(dtype)
                note(perm, batch)
                stats["rows_yielded"] += len(idx)
                yield batch if with_meta else batch["activations"]
                del batch
            if last:
                return
            r = n - full * bs
            if r:
                rest = perm[full * bs :]
                for f in fields:
                    buf[f][:r] = buf[f][rest]
            n = r
            del perm


def harvest_to_store(
    model: nn.Module,
    batches: Iterable[Any],
    point: str | Sequence[str],
    store_dir: str | Path,
    *,
    max_tokens: int | None = None,
    drop_special: bool = True,
    dtype: str = "float32",
    shard_mb: float = 64.0,
    meta: dict[str, Any] | None = None,
    progress: bool = True,
    overwrite: bool = False,
    autocast_dtype: str | torch.dtype | None = None,
) -> ActivationStore | dict[str, ActivationStore]:
    """Harvest ``point`` activations of every kept token into a store at ``store_dir``.

    ``batches`` are tokenizer-output dicts (padding and, with ``drop_special``, special tokens are
    dropped) or ``(B, T)`` token tensors. Several points write one store each, in
    ``store_dir/<point>/``, from the same forward passes. The host runs on its own device, under
    ``autocast_dtype`` if given. Returns the opened store(s).

    Under ``torchrun`` the ranks share the work and write one store: see :mod:`isthmus.interp.store_ranks`.
    """
    from tqdm.auto import tqdm

    from isthmus.interp.store_ranks import close_across_ranks, join

    info = join(model)
    points = [point] if isinstance(point, str) else list(point)
    root = Path(store_dir)
    dirs = {p: root if isinstance(point, str) else root / p for p in points}
    writers = {
        p: StoreWriter(d, dtype=dtype, shard_mb=shard_mb, overwrite=overwrite, meta={**(meta or {}), "point": p})
        for p, d in dirs.items()
    }
    share = None if max_tokens is None else math.ceil(max_tokens / info.world)  # rank 0 counts its own rows
    bar = tqdm(
        total=share,
        unit="tok",
        desc="harvest" if not info.active else f"harvest (rank 0 of {info.world})",
        disable=not progress or not info.is_main,
    )
    t0 = time.perf_counter()
    try:
        for rows in iter_activations(
            model,
            batches,
            points,
            max_tokens=max_tokens,
            drop_special=drop_special,
            autocast_dtype=autocast_dtype,
            rank=info.rank,
            world=info.world,
        ):
            for p, w in writers.items():
                w.add(rows.acts[p], rows.token_ids, rows.positions, rows.sequence)
            bar.update(len(rows.token_ids))
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    finally:
        bar.close()
    elapsed = time.perf_counter() - t0
    stores = {}
    for p, w in writers.items():
        w.meta["harvest_seconds"] = round(elapsed, 3)
        stores[p] = close_across_ranks(w, info) if info.active else w.close()
    return stores[point] if isinstance(point, str) else stores
