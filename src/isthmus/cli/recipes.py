"""``isthmus recipes``: list the 44 seed recipes, run one, render the reproductions table."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from isthmus.cli._args import positive_int
from isthmus.recipes.base import MODES

__all__ = ["add_parser"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``recipes list|run|table``."""
    group = subparsers.add_parser(
        "recipes",
        help="list, run and tabulate the seed-paper recipes",
        description="Each seed paper is a recipe that checks the paper's claim against a baseline.",
    )
    group.set_defaults(help_parser=group)
    sub = group.add_subparsers(dest="recipes_command", metavar="SUBCOMMAND")

    p = sub.add_parser(
        "list",
        help="show all 44 recipes and their status",
        description="Show number, slug, status, title and arXiv id of every recipe.",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a text table")
    p.set_defaults(func=cmd_list, needs_torch=False)

    p = sub.add_parser(
        "run",
        help="run one recipe and write result.json + report.md",
        description="Run a recipe, compare against its baselines, write its result.",
    )
    p.add_argument("slug", metavar="SLUG", help="recipe slug, e.g. gradient-noise (see `isthmus recipes list`)")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="override the mode's settings, e.g. seeds=8 epochs=60 (see --show-settings)",
    )
    p.add_argument(
        "--mode",
        choices=MODES,
        default="quick",
        help="smoke: seconds, never judged; quick: <= 2 min on CPU (default); record: the results of "
        "record, run to convergence (<= 15 min on 2 cores); full: paper scale (GPU)",
    )
    p.add_argument(
        "--show-settings", action="store_true", help="print the mode's settings (after overrides) as JSON and exit"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--seeds",
        type=positive_int,
        default=None,
        metavar="N",
        help="number of seeds (default: the recipe's default for the mode)",
    )
    p.add_argument("--out", type=Path, default=None, metavar="DIR", help="output folder (default: runs/SLUG/MODE)")
    p.add_argument(
        "--jobs",
        type=positive_int,
        default=1,
        metavar="N",
        help="run N seeds at once, one process and one thread each (default 1; use the number of cores)",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "table",
        help="render docs/reproductions.md from saved results",
        description="Collect result.json files and render the reproductions table.",
    )
    p.add_argument(
        "--results",
        type=Path,
        default=Path("runs"),
        metavar="DIR",
        help="folder searched for result.json files (default: runs)",
    )
    p.add_argument(
        "--output",
        "-o",
        type=Path,
        default=None,
        metavar="FILE",
        help="write the Markdown here (e.g. docs/reproductions.md) instead of stdout",
    )
    p.add_argument("--out", dest="output", type=Path, help=argparse.SUPPRESS)  # the old name of --output
    p.set_defaults(func=cmd_table)


def catalog_status() -> list:
    """Every catalog entry with its status, without importing the recipes.

    A recipe is implemented when its module file exists (the registry's own rule; a module that then
    fails to import is reported by `recipes run` and the recipe tests). Importing all of them would
    pull in torch, transformers and scikit-learn: ~8 s for a listing instead of well under 1 s.
    """
    import importlib.util

    from isthmus.recipes import registry
    from isthmus.recipes.catalog import SEEDS, CatalogEntry, slug_to_module

    if registry._LOADED:  # already imported (a Python session, tests): the registry itself is the truth
        return registry.list_recipes()
    return [
        CatalogEntry(
            s.number,
            s.slug,
            s.title,
            s.arxiv,
            "implemented" if importlib.util.find_spec(f"isthmus.recipes.{slug_to_module(s.slug)}") else "planned",
        )
        for s in SEEDS
    ]


def cmd_list(args: argparse.Namespace) -> int:
    entries = catalog_status()
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2))
        return 0
    width = max(len(e.slug) for e in entries)
    print(f"{'#':>2}  {'slug':<{width}}  {'status':<11}  {'arXiv':<10}  title")
    for e in entries:
        print(f"{e.number:>2}  {e.slug:<{width}}  {e.status:<11}  {e.arxiv or '-':<10}  {e.title}")
    done = sum(e.status == "implemented" for e in entries)
    print(f"\n{done} of {len(entries)} implemented")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from isthmus.recipes.registry import get_recipe
    from isthmus.recipes.render import REPORT_FILE, metrics_table, write_result
    from isthmus.recipes.render import gates_table

    recipe = get_recipe(args.slug)()  # PlannedRecipeError / UnknownRecipeError → exit 2
    if args.show_settings:
        print(recipe.settings_for(args.mode, args.overrides).to_json())
        return 0
    out = args.out if args.out is not None else Path("runs") / args.slug / args.mode
    from isthmus.cli.run_folder import claim_run_folder

    # the one run-folder rule (lock, writability first); a recipe folder always resumes: its cached cells are
    # reused only under the same settings, so continuing it never mixes runs
    with claim_run_folder(out, resume=out.is_dir() and any(out.iterdir())):
        result = recipe.execute(
            mode=args.mode,
            n_seeds=args.seeds,
            out_dir=out,
            overrides=args.overrides,
            progress=not args.no_progress,
            jobs=args.jobs,
        )
        path = write_result(result, out)
    print("\n".join(metrics_table(result)))  # every metric, ours vs each baseline, mean ± std
    if result.gates:
        print()
        print("\n".join(gates_table(result)))
    reason = f" — {result.verdict_reason}" if result.verdict_reason else ""
    print(f"{args.slug} ({args.mode}, {len(result.seeds)} seed(s), {result.runtime_s:.1f} s): {result.verdict}{reason}")
    print(f"wrote {path} and {path.parent / REPORT_FILE}")
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    from isthmus.io import atomic_write_bytes
    from isthmus.recipes.render import render_reproductions_table

    results = args.results
    if not results.exists():
        # A fresh checkout has no runs yet: still render the catalog, but say so.
        print(f"note: {results} does not exist; rendering the table without results", file=sys.stderr)
        results = None
    if args.output is None:
        sys.stdout.write(render_reproductions_table(results))
        return 0
    text = render_reproductions_table(results, link_from=args.output.resolve().parent)
    atomic_write_bytes(args.output, text.encode("utf-8"))
    print(f"wrote {args.output}")
    return 0
