"""``isthmus`` entry point: a thin argparse front over command-group modules.

To add a command group, write ``isthmus/cli/<name>.py`` with ``add_parser(subparsers)`` that
registers a sub-parser and sets ``func=<handler(args) -> int>`` on it, then append the module to
:data:`COMMAND_MODULES`. Errors the user can fix (bad config, missing file, unknown recipe) print
``error: <message>`` and exit 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from isthmus import __version__
from isthmus._runtime import configure

__all__ = ["COMMAND_MODULES", "build_parser", "main"]

COMMAND_MODULES: tuple[str, ...] = ("isthmus.cli.model_commands", "isthmus.cli.demo", "isthmus.cli.recipes",
                                     "isthmus.cli.sae", "isthmus.cli.detect")

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
            sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show full tracebacks on errors")
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                _add_debug_flag(action)


def _user_error_types() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the input was wrong", not "isthmus has a bug".

    ConfigError and the recipe errors subclass ValueError. Resolved only when an error happened,
    so a command never pays for importing the data package.
    """
    from isthmus.io import CheckpointError

    types: list[type[BaseException]] = [ValueError, CheckpointError, FileNotFoundError]
    try:  # DataError lives in isthmus.data, which may not define it (yet)
        from isthmus.data import DataError  # type: ignore[attr-defined]

        types.append(DataError)
    except ImportError:
        pass
    return tuple(types)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        # A bare group (``isthmus`` or ``isthmus recipes``): show the relevant help.
        getattr(args, "help_parser", parser).print_help(sys.stderr)
        return EXIT_USAGE
    configure()  # the CLI owns its process: 1 thread, flushed denormals (opt out: ISTHMUS_RUNTIME_DEFAULTS=0)
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
        if args.debug or not isinstance(exc, _user_error_types()):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
