"""``isthmus`` entry point: a thin argparse front over command-group modules.

To add a command group, write ``isthmus/cli/<name>.py`` with ``add_parser(subparsers)`` that
registers a sub-parser and sets ``func=<handler(args) -> int>`` on it, then append the module to
:data:`COMMAND_MODULES`. Errors the user can fix (bad config, missing file, unknown recipe) print
``error: <message>`` and exit 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
import warnings
from collections.abc import Sequence

from isthmus import __version__

__all__ = ["COMMAND_MODULES", "build_parser", "main"]

COMMAND_MODULES: tuple[str, ...] = (
    "isthmus.cli.model_commands",
    "isthmus.cli.demo",
    "isthmus.cli.recipes",
    "isthmus.cli.sae",
    "isthmus.cli.detect",
    "isthmus.cli.generate",
    "isthmus.cli.restore",
)

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every command group's sub-parser attached."""
    parser = argparse.ArgumentParser(
        prog="isthmus",
        description="Composable autoencoders: train, measure, and reproduce the seed papers.",
    )
    parser.add_argument("--version", action="version", version=f"isthmus {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(subparsers)
    _add_debug_flag(subparsers)
    return parser


def _add_debug_flag(subparsers: argparse._SubParsersAction) -> None:
    """Accept ``--debug`` after any sub-command too (``isthmus recipes run X --debug``).

    SUPPRESS keeps a sub-parser from resetting a ``--debug`` given before the command.
    """
    for sub in set(subparsers.choices.values()):
        if "--debug" not in sub._option_string_actions:
            sub.add_argument(
                "--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks on errors"
            )
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                _add_debug_flag(action)


def _user_error_types() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the input was wrong", not "isthmus has a bug".

    ConfigError, RunFolderError and the recipe errors subclass ValueError. Resolved only when an
    error happened, so a command never pays for importing the data or training packages.
    """
    from isthmus.io import CheckpointError

    types: list[type[BaseException]] = [ValueError, CheckpointError, FileNotFoundError]
    try:  # DataError lives in isthmus.data, which may not define it (yet)
        from isthmus.data import DataError  # type: ignore[attr-defined]

        types.append(DataError)
    except ImportError:
        pass
    if "isthmus.train.trainer" in sys.modules:  # a diverging loss: the message says what to change
        types.append(sys.modules["isthmus.train.trainer"].NonFiniteLossError)
    return tuple(types)


# The operating system refused a read or write: permissions, read-only or full disks, a folder where
# a file was expected. The user fixes these, so they get a sentence, not a traceback.
_OS_ERRNOS = {
    errno.EACCES: "fix the permissions or choose another path",
    errno.EPERM: "fix the permissions or choose another path",
    errno.EROFS: "the file system is read-only; choose another path",
    errno.ENOSPC: "the disk is full; free space or choose another path",
    errno.EDQUOT: "the disk quota is exceeded; free space or choose another path",
    errno.EISDIR: "a folder is in the way of a file of the same name",
    errno.ENOTDIR: "a file is in the way of a folder of the same name",
}


def _os_message(exc: OSError) -> str | None:
    hint = _OS_ERRNOS.get(exc.errno or -1)
    if hint is None:
        return None
    where = f": {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or exc}{where}; {hint}"


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings on the command line read as ``warning: <message>``, not as source locations."""
    return f"warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # argparse stops filling a nargs="*" positional at the first option, so the overrides in
        # `isthmus train cfg.yaml --out runs/x trainer.epochs=3` would be "unrecognized": take them.
        if isinstance(getattr(args, "overrides", None), list) and all(
            "=" in e and not e.startswith("-") for e in extra
        ):
            args.overrides.extend(extra)
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    func = getattr(args, "func", None)
    if func is None:
        # A bare group (``isthmus`` or ``isthmus recipes``): show the relevant help.
        getattr(args, "help_parser", parser).print_help(sys.stderr)
        return EXIT_USAGE
    if getattr(args, "needs_torch", True):  # listings stay light (< 1 s): they never import torch
        from isthmus._runtime import configure

        configure()  # the CLI owns its process: 1 thread, flushed denormals (opt out: ISTHMUS_RUNTIME_DEFAULTS=0)
    previous, warnings.formatwarning = warnings.formatwarning, _format_warning
    try:
        return _run(func, args)
    finally:
        warnings.formatwarning = previous


def _run(func, args: argparse.Namespace) -> int:
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `isthmus recipes list | head`: the reader left; silence the flush at exit, as the
        # Python docs recommend, instead of printing a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:
        if args.debug:
            raise
        message = _os_message(exc) if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError) else None
        if message is None and not isinstance(exc, _user_error_types()):
            raise
        print(f"error: {message or exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
