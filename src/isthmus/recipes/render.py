"""Write, read and render recipe results.

* :func:`write_result` → ``result.json`` (exactly ``Result.to_dict()``) and ``report.md``.
* :func:`load_result` reads one back; :func:`collect_results` finds the best one per recipe.
* :func:`render_reproductions_table` produces ``docs/reproductions.md``.

The table shows each recipe's headline gate (metric, ours vs the compared arm, n and the 95 %
interval of the paired difference), its verdict, and whether the result is **stale** (the recipe's
gates or preconditions changed since it was judged) or **legacy** (judged before the recipe frame).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Iterable, Union

from isthmus.io import atomic_write_bytes, atomic_write_json, read_json
from isthmus.recipes.base import MetricSummary, Result
from isthmus.recipes.gates import VERDICT_RULE, VERDICTS
from isthmus.recipes.catalog import SLUGS, arxiv_url, seed
from isthmus.recipes.registry import get_recipe, list_recipes

__all__ = [
    "RESULT_FILE",
    "REPORT_FILE",
    "write_result",
    "load_result",
    "render_report",
    "collect_results",
    "render_reproductions_table",
    "key_metric",
]

RESULT_FILE = "result.json"
REPORT_FILE = "report.md"
# Record runs are the results of record; then paper-scale, then quick; smoke runs prove nothing.
MODE_PREFERENCE = ("record", "full", "quick", "smoke")
RECORD_MODES = ("record", "full")  # the runs whose verdicts count as results of record

ResultSource = Union[str, Path, Result]


def _cell(text: object) -> str:
    """Make text safe inside one Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def key_metric(result: Result) -> str | None:
    """The headline metric: the headline gate's, else the first one the recipe reported."""
    head = result.headline
    return head.gate.metric if head is not None else next(iter(result.metrics), None)


def staleness(result: Result) -> str:
    """``""`` when the result was judged by the recipe's current declaration, else why not."""
    if not result.gates:
        return "legacy"
    try:
        current = get_recipe(result.recipe)().declaration()
    except Exception:  # noqa: BLE001 - an unknown or planned recipe cannot be compared
        return ""
    return "" if current == result.declared else "stale"


# ---- one result -----------------------------------------------------------------------------
def write_result(result: Result, out_dir: str | Path) -> Path:
    """Write ``out_dir/result.json`` and ``out_dir/report.md`` atomically; return the JSON path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / RESULT_FILE, result.to_dict())
    atomic_write_bytes(out / REPORT_FILE, render_report(result).encode("utf-8"))
    return out / RESULT_FILE


def load_result(path: str | Path) -> Result:
    """Read a ``result.json`` (or the folder holding one) back into a :class:`Result`."""
    p = Path(path)
    if p.is_dir():
        p = p / RESULT_FILE
    data = read_json(p)  # CheckpointError when missing or not JSON
    try:
        return Result.from_dict(data)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{p} is not an isthmus result file (bad or missing field {exc})") from None


def metrics_table(result: Result) -> list[str]:
    names = list(result.metrics)
    for metrics in result.baselines.values():
        names += [n for n in metrics if n not in names]
    cols = ["ours", *result.baselines]
    lines = ["| metric | " + " | ".join(_cell(c) for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name in names:
        row = [result.metrics.get(name)] + [m.get(name) for m in result.baselines.values()]
        lines.append(f"| {_cell(name)} | " + " | ".join(str(s) if s else "—" for s in row) + " |")
    return lines


def _per_seed_lines(result: Result) -> list[str]:
    fmt = lambda s: ", ".join(f"{v:.4g}" for v in s.values)  # noqa: E731
    lines = [f"- ours / {name}: {fmt(s)}" for name, s in result.metrics.items()]
    for base, metrics in result.baselines.items():
        lines += [f"- {base} / {name}: {fmt(s)}" for name, s in metrics.items()]
    return lines


def gates_table(result: Result) -> list[str]:
    lines = ["| gate | claim | n | mean Δ [95 % CI] | smallest detectable | outcome |", "|---|---|---:|---|---:|---|"]
    for g in result.gates:
        head = " (headline)" if g.gate.headline else ""
        lines.append(
            f"| {_cell(g.gate.name)}{head} | {_cell(g.gate.describe())} | {g.n} | {_cell(g.interval())} "
            f"| {g.mde:.3g} | **{g.outcome}** |"
        )
    return lines


def _gates_lines(result: Result) -> list[str]:
    if not result.gates:
        return ["> Judged before the recipe frame (no declared gates): a legacy result.", ""]
    out = ["## Gates (paired per-seed differences, positive favours the first arm)", "", *gates_table(result), ""]
    if result.checks:
        out += ["## Preconditions", "", "| precondition | holds | detail |", "|---|---|---|"]
        out += [f"| {_cell(c.name)} | {'yes' if c.ok else '**no**'} | {_cell(c.detail)} |" for c in result.checks]
        out += [""]
    return out


def render_report(result: Result) -> str:
    """The Markdown report of one result (what ``report.md`` holds)."""
    paper = result.paper
    link = f"[{paper.title}]({arxiv_url(paper.arxiv)}) (arXiv:{paper.arxiv})" if paper.arxiv else paper.title
    reason = f" — {result.verdict_reason}" if result.verdict_reason else ""
    seeds = ", ".join(str(s) for s in result.seeds)
    out = [
        f"# `{result.recipe}`: {paper.title}",
        "",
        f"**Paper:** {link}  ",
        f"**Claim:** {result.claim}  ",
        f"**Verdict:** **{result.verdict}**{reason}  ",
        f"**Mode:** {result.mode} · **seeds:** {seeds} · **runtime:** {result.runtime_s:.1f} s",
        "",
        *(
            ["> Smoke run: it checks the mechanics only; its verdict means nothing.", ""]
            if result.mode == "smoke"
            else []
        ),
        *_gates_lines(result),
        f"## Metrics (mean ± std over {len(result.seeds)} seed(s))",
        "",
        *metrics_table(result),
        "",
        "Per-seed values:",
        "",
        *_per_seed_lines(result),
        "",
    ]
    if result.figures:
        out += ["## Figures", ""] + [f"![{Path(f).stem}]({Path(f).as_posix()})" for f in result.figures] + [""]
    if result.notes:
        out += ["## Notes", ""] + [f"- {n}" for n in result.notes] + [""]
    out += ["## What was changed after seeing results", ""]
    out += [f"- {c}" for c in result.changes] if result.changes else ["- nothing"]
    out += [""]
    config = json.dumps(result.config, indent=2, sort_keys=True, default=str)
    out += ["## Config", "", "```json", config, "```", ""]
    if result.versions:
        out += ["## Versions", "", "| package | version |", "|---|---|"]
        out += [f"| {_cell(k)} | {_cell(v)} |" for k, v in result.versions.items()] + [""]
    return "\n".join(out)


# ---- many results ---------------------------------------------------------------------------
def _rank(mode: str, path: Path | None) -> tuple[int, float]:
    """Sort key, higher is better: preferred mode first, then the newest file."""
    pref = len(MODE_PREFERENCE) - MODE_PREFERENCE.index(mode) if mode in MODE_PREFERENCE else 0
    return pref, (path.stat().st_mtime if path is not None else 0.0)


def _catalog_order(slug: str) -> tuple[int, str]:
    return (SLUGS.index(slug) if slug in SLUGS else len(SLUGS), slug)


def collect_results(root: str | Path) -> dict[str, Path]:
    """Find ``result.json`` files under ``root``; keep one per recipe (quick > full > smoke, then
    newest by mtime). Returns slug → path in catalog order; ``{}`` when ``root`` does not exist."""
    root = Path(root)
    best: dict[str, tuple[tuple[int, float], Path]] = {}
    for path in sorted(root.rglob(RESULT_FILE)) if root.is_dir() else []:
        data = read_json(path)
        slug = data.get("recipe") if isinstance(data, dict) else None
        if not isinstance(slug, str):
            raise ValueError(f"{path} is not an isthmus result file (no 'recipe' field)")
        rank = _rank(data.get("mode", ""), path)
        if slug not in best or rank > best[slug][0]:
            best[slug] = (rank, path)
    return {s: best[s][1] for s in sorted(best, key=_catalog_order)}


def _gather(results: ResultSource | Iterable[ResultSource] | None) -> dict[str, tuple[Result, Path | None]]:
    if results is None:
        return {}
    if isinstance(results, (str, Path)) and Path(results).is_dir():
        return {s: (load_result(p), p) for s, p in collect_results(results).items()}
    items = [results] if isinstance(results, (str, Path, Result)) else list(results)
    found: dict[str, tuple[Result, Path | None]] = {}
    for item in items:
        res, path = (item, None) if isinstance(item, Result) else (load_result(item), Path(item))
        if path is not None and path.is_dir():
            path = path / RESULT_FILE
        old = found.get(res.recipe)
        if old is None or _rank(res.mode, path) >= _rank(old[0].mode, old[1]):
            found[res.recipe] = (res, path)
    return found


def _baseline_cell(result: Result, metric: str) -> str:
    parts = [f"{_cell(b)}: {m[metric]}" for b, m in result.baselines.items() if metric in m]
    return "<br>".join(parts) or "—"


def _row(slug: str, found: tuple[Result, Path | None] | None, link_from: Path | None) -> str:
    s = seed(slug)
    paper = f"[{_cell(s.title)}]({arxiv_url(s.arxiv)})" if s.arxiv else _cell(s.title)
    if found is None:
        cells = [f"`{slug}`", paper, _cell(get_recipe(slug).claim), "—", "—", "—", "not run", "—", "—", "—"]
        return f"| {s.number} | " + " | ".join(cells) + " |"
    res, path = found
    name = f"`{slug}`"
    if path is not None and link_from is not None:
        rel = Path(os.path.relpath(path.parent / REPORT_FILE, link_from)).as_posix()
        name = f"[{name}]({rel})"
    head = res.headline
    km = key_metric(res)
    ours: MetricSummary | None = res.metrics.get(km) if km else None
    if head is not None:
        km = head.gate.metric  # what key_metric picked; narrows km to str
        vs = head.gate.vs if isinstance(head.gate.vs, str) else f"{head.gate.vs:g}"
        # the arm named by the gate: a baseline's own metrics, else ours
        ours = res.baselines[head.gate.arm].get(km) if head.gate.arm in res.baselines else ours
        base = res.baselines.get(vs, {}).get(km) if isinstance(head.gate.vs, str) else None
        gate = f"{_cell(head.gate.describe())}: {head.interval()}, n={head.n} → {head.outcome}"
        compared = f"{_cell(vs)}: {base}" if base is not None else _cell(vs)
    else:
        gate, compared = f"{_cell(km or '—')} (no gates)", _baseline_cell(res, km) if km else "—"
    verdict = "— (smoke, not judged)" if res.mode == "smoke" else f"**{res.verdict}**"
    if res.mode == "quick" and res.gates:
        verdict += " (quick run: not a result of record)"
    flag = staleness(res)
    if flag:
        verdict += f" ({flag})"
    cells = [
        name,
        paper,
        _cell(res.claim),
        gate,
        str(ours) if ours else "—",
        compared,
        verdict,
        res.mode,
        str(len(res.seeds)),
        f"{res.runtime_s:.0f} s",
    ]
    return f"| {s.number} | " + " | ".join(cells) + " |"


def _header(shown: list, found: dict, n_total: int) -> list[str]:
    judged = {e.slug: found[e.slug][0] for e in shown if e.slug in found and found[e.slug][0].judged}
    of_record = {k: r for k, r in judged.items() if r.mode in RECORD_MODES}
    counts = {v: sum(1 for r in of_record.values() if r.verdict == v) for v in VERDICTS}
    quick = len(judged) - len(of_record)
    legacy = sum(1 for e in shown if e.slug in found and not found[e.slug][0].gates)
    not_run = sum(1 for e in shown if e.slug not in found or found[e.slug][0].mode == "smoke")
    stale = sum(1 for r in judged.values() if staleness(r))
    tally = "results of record: " + ", ".join(f"{v}: {n}" for v, n in counts.items())
    tally += f"; quick runs only (not evidence yet): {quick}; legacy (judged before the frame, not counted): {legacy}; stale: {stale}; not run: {not_run}"
    return [
        "# Reproductions",
        "",
        "<!-- Generated by `isthmus recipes table`; edit the recipes or rerun them, not this file. -->",
        "",
        "Each recipe checks its paper's headline claim against the strongest natural baselines on the same data",
        "and seeds. The claim is split into gates declared before the first run; each gate is judged on paired",
        "per-seed differences with a 95 % interval. **The rule, for every recipe:** " + VERDICT_RULE,
        'An underpowered run is *inconclusive*, never "not reproduced". A result is marked *stale* when the',
        "recipe's gates changed after it was judged, *legacy* when it was judged before the gates existed.",
        "",
        f"**{len(shown)} of {n_total} recipes implemented** ({tally}).",
        "",
    ]


def _footer(shown: list, planned: list, found: dict) -> list[str]:
    out: list[str] = []
    reasons = [(e.slug, found[e.slug][0]) for e in shown if e.slug in found and found[e.slug][0].verdict_reason]
    if reasons:
        out += ["## Why each verdict", ""]
        out += [f"- `{slug}` — **{r.verdict}**: {r.verdict_reason}" for slug, r in reasons] + [""]
    out += [f"## Planned ({len(planned)})", ""]
    for e in planned:
        paper = f"[{e.title}]({arxiv_url(e.arxiv)})" if e.arxiv else e.title
        # "- #N" rather than "N." so Markdown does not renumber the gaps away.
        out.append(f"- #{e.number} `{e.slug}` — {paper}")
    return out


def render_reproductions_table(
    results: ResultSource | Iterable[ResultSource] | None = None,
    link_from: str | Path | None = None,
) -> str:
    """Markdown for ``docs/reproductions.md``.

    ``results`` is a folder (searched with :func:`collect_results`), result files/folders, or
    :class:`Result` objects. One table row per implemented recipe (plus any catalog recipe that
    has a result), then the planned ones. ``link_from`` is the folder the Markdown will live in;
    when given, recipe names link to their ``report.md``.
    """
    found = _gather(results)
    before = _verdicts_before(results)
    for slug in [s for s in found if s not in SLUGS]:
        warnings.warn(f"result for unknown recipe {slug!r} left out of the table", stacklevel=2)
    entries = list_recipes()
    shown = [e for e in entries if e.status == "implemented" or e.slug in found]
    planned = [e for e in entries if e not in shown]
    base = Path(link_from) if link_from is not None else None
    out = _header(shown, found, len(entries))
    if shown:
        out += [
            "| # | Recipe | Paper | Claim | Headline gate: Δ [95 % CI], n | Ours | Compared with | Verdict | Mode "
            "| Seeds | Runtime |",
            "|---:|---|---|---|---|---|---|---|---|---:|---:|",
            *[_row(e.slug, found.get(e.slug), base) for e in shown],
            "",
        ]
    else:
        out += ["_No recipe is implemented yet._", ""]
    return "\n".join(out + _moved(shown, found, before) + _footer(shown, planned, found)) + "\n"


BEFORE_FILE = "verdicts-before-frame.json"


def _short(text: str, limit: int = 240) -> str:
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + " …"


def _verdicts_before(results: object) -> dict[str, dict]:
    """Verdicts of record before the recipe frame, when the results folder keeps them."""
    if isinstance(results, (str, Path)) and (Path(results) / BEFORE_FILE).is_file():
        return dict(read_json(Path(results) / BEFORE_FILE).get("verdicts", {}))
    return {}


def _moved(shown: list, found: dict, before: dict[str, dict]) -> list[str]:
    """Per recipe: the verdict before the frame, the verdict now, and what changed (the result's own words)."""
    rows = [e.slug for e in shown if e.slug in before]
    if not rows:
        return []
    out = [
        "## Before and after the recipe frame",
        "",
        "Verdicts of record before the frame (quick mode, old rules) and now; the last column is the first "
        "entry of the result's *what was changed after seeing results*.",
        "",
        "| Recipe | Before | Now | Why it moved |",
        "|---|---|---|---|",
    ]
    for slug in rows:
        b = before[slug]
        res = found.get(slug, (None, None))[0]
        now = (
            "not run"
            if res is None
            else ("— (smoke)" if res.mode == "smoke" else f"{res.verdict} ({res.mode}, n={len(res.seeds)})")
        )
        if res is not None and not res.gates:
            now += " (legacy)"
        why = _cell(_short(res.changes[0])) if res is not None and res.changes else "—"
        out.append(f"| `{slug}` | {b['verdict']} ({b['mode']}, n={b['seeds']}) | {now} | {why} |")
    return out + [""]
