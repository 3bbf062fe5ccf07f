"""Mutation testing of the core modules with mutmut 3, one module at a time (`make mutate`).

Why a driver instead of a bare `mutmut run`: mutmut reads one config per directory and runs every
test that touches a mutated function, so a whole-repo run mutates all of ``src`` against the whole
suite (hours on 2 cores). Here each module of ``tools/mutation.toml`` gets its own scratch folder
``.mutmut/<name>/`` (a copy of ``src`` and ``tests`` plus a generated ``pyproject.toml``) that
mutates that one file and selects only the test files mapped to it. mutmut forks each mutant from a
process that has already imported torch, so a mutant costs only its covering tests.

The score is killed / (mutants - equivalent): timeouts count as killed (the mutant was detected),
"no tests" and "survived" count against. Equivalent mutants are listed, with the mutated line and
the argument, in ``tools/mutation.toml``; an entry whose line no longer matches is counted again.

Usage: ``python tools/mutate.py [sparse checkpoint ...] [--budget SECONDS] [--survivors]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "tools" / "mutation.toml"
WORK = ROOT / ".mutmut"
KILLED = {1, 3, 36, 24, -24, 152, 255}  # test failure / pytest error / timeout
TIMEOUT = {36, 24, -24, 152, 255}  # counted as killed, and shown apart: under load a timeout may be the machine
NICE = int(os.environ.get("MUTATE_NICE", "10"))  # a shared machine: leave the CPU to interactive work
TIMEOUT_CONSTANT = float(os.environ.get("MUTATE_TIMEOUT_CONSTANT", "10"))  # seconds added to a test-time estimate


def _pyproject(module: dict) -> str:
    """mutmut + pytest config for one module's scratch folder."""
    tests = ", ".join(json.dumps(t) for t in module["tests"])
    extra = ["-x", "-q", "-p", "no:randomly"]
    for node in module.get("deselect", []):
        extra += ["--deselect", node]
    return (
        "[tool.mutmut]\n"
        'source_paths = ["src"]\n'
        f"only_mutate = [{json.dumps(module['path'])}]\n"
        f"pytest_add_cli_args_test_selection = [{tests}]\n"
        f"pytest_add_cli_args = {json.dumps(extra)}\n"
        "use_git_change_detection = false\n"
        # mutmut kills a mutant's test run after (estimate + constant) x 15 wall seconds and calls it a
        # timeout, which counts as killed; on a loaded shared machine a sub-second estimate made ~20 s
        # test runs "time out" although the tests would have passed. A larger constant keeps real verdicts.
        f"timeout_constant = {TIMEOUT_CONSTANT}\n"
        "\n[tool.pytest.ini_options]\n"
        'testpaths = ["tests"]\n'
        "addopts = \"-m 'not slow' -p no:cacheprovider\"\n"
        'markers = ["slow: long-running checks"]\n'
        "timeout = 600\n"
    )


def _prepare(module: dict, retest: bool) -> Path:
    wd = WORK / module["name"]
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    if retest:  # keep the mutants and their results; refresh the tests only (mutmut adds stats for new tests)
        shutil.copytree(ROOT / "tests", wd / "tests", ignore=skip, dirs_exist_ok=True)
        (wd / "pyproject.toml").write_text(_pyproject(module))
        return wd
    shutil.rmtree(wd, ignore_errors=True)
    wd.mkdir(parents=True)
    shutil.copytree(ROOT / "src", wd / "src", ignore=skip)
    shutil.copytree(ROOT / "tests", wd / "tests", ignore=skip)
    (wd / "pyproject.toml").write_text(_pyproject(module))
    # must exist before mutmut starts: Python caches a missing PYTHONPATH entry as "no finder", and the
    # tests would then silently import the unmutated package from the editable install
    (wd / "mutants" / "src").mkdir(parents=True)
    return wd


def _env(wd: Path) -> dict:
    env = dict(os.environ)
    # subprocess tests (SIGKILL/resume) must import the mutated copy too
    env["PYTHONPATH"] = str(wd / "mutants" / "src")
    data = ROOT.parent / "shared" / "data"
    if data.exists():
        env.setdefault("ISTHMUS_DATA", str(data.resolve()))
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _mutmut() -> str:
    exe = Path(sys.executable).parent / "mutmut"
    return str(exe) if exe.exists() else "mutmut"


def _results(wd: Path, module: dict) -> dict[str, int | None]:
    meta = wd / "mutants" / (module["path"] + ".meta")
    if not meta.exists():
        return {}
    return json.loads(meta.read_text())["exit_code_by_key"]


def _diff(wd: Path, name: str, env: dict) -> str:
    out = subprocess.run([_mutmut(), "show", name], cwd=wd, env=env, capture_output=True, text=True)
    return out.stdout


def _mutated_lines(diff: str) -> list[str]:
    return [ln[1:].strip() for ln in diff.splitlines() if ln.startswith("+") and not ln.startswith("+++")]


def run_module(
    module: dict, budget: float, show_survivors: bool, retest: bool = False, report_only: bool = False
) -> dict:
    wd = WORK / module["name"]
    if report_only:
        return _summarise(module, wd, _env(wd), finished=True, t0=time.time(), show_survivors=show_survivors)
    again: list[str] = []
    earlier: dict[str, int] = {}
    if retest:
        codes = _results(wd, module)
        changed = bool(codes) and (ROOT / module["path"]).read_bytes() != (wd / module["path"]).read_bytes()
        if not codes or changed:
            print(f"   no usable earlier run of {module['name']} to retest" + (" (source changed)" if changed else ""))
            retest = False
        else:
            again = sorted(k for k, v in codes.items() if v is None or v not in KILLED)
            earlier = {k: v for k, v in codes.items() if v in KILLED}
    wd = _prepare(module, retest)
    env = _env(wd)
    cmd = ["nice", "-n", str(NICE), _mutmut(), "run", "--max-children", "1", *again]
    t0 = time.time()
    print(f"== {module['name']}: {module['path']} against {' '.join(module['tests'])}", flush=True)
    # own process group: on timeout the forked mutant workers (and their test subprocesses) stop too
    proc = subprocess.Popen(
        cmd, cwd=wd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=budget)
        finished = proc.returncode == 0
        if not finished:
            print(out[-3000:])
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate()
        finished = False
        print(f"   stopped after the {budget:.0f} s budget; the score below covers the mutants checked so far")
    if earlier:
        _merge_earlier(wd, module, earlier)
    return _summarise(module, wd, env, finished, t0, show_survivors)


def _merge_earlier(wd: Path, module: dict, earlier: dict[str, int]) -> None:
    """A retest runs only the survivors, and mutmut then records no result for the rest: put back the
    earlier run's kills so that the score (and the next --retest) covers the whole module again."""
    meta = wd / "mutants" / (module["path"] + ".meta")
    data = json.loads(meta.read_text())
    codes = data["exit_code_by_key"]
    for name, code in earlier.items():
        if codes.get(name) is None:
            codes[name] = code
    meta.write_text(json.dumps(data))


def _summarise(module: dict, wd: Path, env: dict, finished: bool, t0: float, show_survivors: bool) -> dict:
    codes = _results(wd, module)
    equivalent = {}
    for name, entry in module.get("equivalent", {}).items():
        if name not in codes:
            print(f"   note: equivalent mutant {name} no longer exists (source changed); entry ignored")
            continue
        if entry["line"].strip() not in _mutated_lines(_diff(wd, name, env)):
            print(f"   WARNING: {name} no longer mutates `{entry['line']}`; counted as a normal mutant")
            continue
        equivalent[name] = entry["why"]
    checked = {k: v for k, v in codes.items() if v is not None}
    killed = sorted(k for k, v in checked.items() if v in KILLED)
    eq_checked = [k for k in equivalent if k in checked]
    survived = sorted(k for k in checked if k not in killed and k not in equivalent)
    denominator = len(checked) - len(eq_checked)
    summary = {
        "module": module["name"],
        "path": module["path"],
        "mutants": len(codes),
        "checked": len(checked),
        "killed": len(killed),
        "timeouts": sum(1 for k in killed if checked[k] in TIMEOUT),
        "equivalent": len(eq_checked),
        "survived": survived,
        "score": (len(killed) - len([k for k in eq_checked if k in killed])) / denominator if denominator else None,
        "finished": finished,
        "seconds": round(time.time() - t0),
    }
    (wd / "survivors.txt").write_text("\n".join(survived) + "\n")
    if show_survivors:
        for name in survived:
            print(_diff(wd, name, env))
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("modules", nargs="*", help="names from tools/mutation.toml (default: all, in order)")
    ap.add_argument("--budget", type=float, default=1800, help="seconds per module (default 1800)")
    ap.add_argument("--survivors", action="store_true", help="print the diff of every surviving mutant")
    ap.add_argument("--report", action="store_true", help="only recompute the scores of the last runs")
    ap.add_argument(
        "--retest",
        action="store_true",
        help="rerun the last run's survivors and unchecked mutants against the current tests (source unchanged)",
    )
    args = ap.parse_args(argv)
    modules = tomllib.loads(CONFIG.read_text())["module"]
    known = {m["name"]: m for m in modules}
    unknown = [n for n in args.modules if n not in known]
    if unknown:
        ap.error(f"unknown module(s) {unknown}; choose from {list(known)}")
    chosen = [known[n] for n in args.modules] if args.modules else modules
    if args.report:
        chosen = [m for m in chosen if _results(WORK / m["name"], m)]
    rows = [run_module(m, args.budget, args.survivors, args.retest, args.report) for m in chosen]
    WORK.mkdir(exist_ok=True)
    (WORK / "summary.json").write_text(json.dumps(rows, indent=1))
    print("\nmodule       mutants  checked  killed (timeouts)  equivalent  survived  score   time")
    for r in rows:
        score = "  -  " if r["score"] is None else f"{100 * r['score']:5.1f}%"
        partial = "" if r["finished"] else "  (partial: budget ran out)"
        print(
            f"{r['module']:<12} {r['mutants']:>7}  {r['checked']:>7}  {r['killed']:>6} ({r['timeouts']:>6})"
            f"  {r['equivalent']:>10}  {len(r['survived']):>8}  {score}  {r['seconds']:>4} s{partial}"
        )
    print(f"survivor names: {WORK}/<module>/survivors.txt; diffs: cd {WORK}/<module> && mutmut show NAME")
    print("scores so far, equivalent mutants excluded and why, what the survivors mean: docs/mutation.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
