"""One policy for every command that writes a run folder (``train``, ``detect fit``, ``sae train`` ...).

* A folder that already holds files is refused, naming what is there, unless the user says what to
  do with it: ``--overwrite`` clears it first, ``--resume`` keeps it for the command to continue.
  Writing into it silently would mix two runs (an old model next to a new log) or lose the old one.
* A lock file (``.isthmus.lock``, ``flock``) stops two processes sharing a folder: the second gets a
  clear error instead of both deleting each other's temp files. The kernel drops the lock when the
  process dies, even by SIGKILL, so a killed run never leaves a stale lock behind.
* Writability is checked up front (the folder and every sub-folder already in it), so a read-only
  folder fails in a second, not after an hour of training.

Use it as a context manager around the whole command::

    with claim_run_folder(args.out, overwrite=args.overwrite, resume=args.resume) as out:
        ...  # write into out

and give the command ``add_run_folder_flags(parser)`` for the two flags.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["LOCK_NAME", "RunFolderError", "add_run_folder_flags", "check_writable", "claim_run_folder"]

LOCK_NAME = ".isthmus.lock"


class RunFolderError(ValueError):
    """The output folder cannot be used as asked (not empty, locked, not writable)."""


def add_run_folder_flags(p: argparse.ArgumentParser, resume: bool = True) -> None:
    """``--overwrite`` (and, for commands that can continue, ``--resume``) on a command that writes ``--out``."""
    if resume:
        mode = p.add_mutually_exclusive_group()
        mode.add_argument("--overwrite", action="store_true", help="clear a non-empty --out folder first")
        mode.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    else:
        p.add_argument("--overwrite", action="store_true", help="clear a non-empty --out folder first")


def _contents(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.name != LOCK_NAME)


def check_writable(path: Path) -> None:
    """Create and delete a file in ``path`` and every folder below it; a :class:`RunFolderError` if one fails."""
    dirs = [path] + sorted(p for p in path.rglob("*") if p.is_dir() and not p.is_symlink())
    for d in dirs:
        try:
            fd, tmp = tempfile.mkstemp(dir=d, prefix=".write-test-")
            os.close(fd)
            os.unlink(tmp)
        except OSError as exc:
            raise RunFolderError(
                f"cannot write to {d} ({exc.strerror}); fix its permissions or free space, or choose another --out"
            ) from None


def _lock(path: Path) -> IO[str] | None:
    try:
        import fcntl
    except ImportError:  # Windows: no flock; the folder policy still applies, only without a lock
        return None
    fh = open(path / LOCK_NAME, "a+")
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.seek(0)
        owner = fh.read().strip() or "another process"
        fh.close()
        raise RunFolderError(
            f"{path} is in use by {owner} (lock file {path / LOCK_NAME}); wait for it to finish or choose another --out"
        ) from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"isthmus process {os.getpid()}\n")
    fh.flush()
    return fh


def _clear(path: Path) -> None:
    for p in path.iterdir():
        if p.name == LOCK_NAME:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


@contextlib.contextmanager
def claim_run_folder(
    path: str | Path, *, overwrite: bool = False, resume: bool = False, flag: str = "--out"
) -> Iterator[Path]:
    """Create or claim ``path`` for one command: refuse a non-empty folder unless ``overwrite`` (clear it)
    or ``resume`` (keep it); hold the lock until the block ends; check it is writable."""
    if overwrite and resume:
        raise RunFolderError(
            "--overwrite and --resume exclude each other: one clears the folder, the other continues what is in it"
        )
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"{flag} {path} is a file, not a folder; choose a folder name")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunFolderError(f"cannot create {flag} folder {path} ({exc.strerror}); choose another {flag}") from None
    existing = _contents(path)
    if existing and not (overwrite or resume):
        shown = ", ".join(existing[:6]) + (", ..." if len(existing) > 6 else "")
        raise RunFolderError(
            f"{flag} {path} is not empty ({shown}); pass --overwrite to replace it"
            f"{', --resume to continue it' if 'checkpoints' in existing else ''}, "
            f"or choose another {flag}"
        )
    if resume and not existing:
        raise RunFolderError(f"--resume: {path} holds no run to continue; drop --resume to start one")
    check_writable(path)
    lock = _lock(path)
    try:
        if overwrite and existing:
            _clear(path)
        yield path
    finally:
        if lock is not None:
            lock.close()  # releases the flock; the (empty-owner) file stays and is ignored by the checks
