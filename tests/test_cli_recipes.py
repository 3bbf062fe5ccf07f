"""`isthmus recipes ...` run in-process through main(argv), plus one real subprocess call."""

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from isthmus.cli.main import main
from isthmus.recipes import registry
from isthmus.recipes.base import Paper, Recipe, RecipeSettings
from isthmus.recipes.gates import Gate
from isthmus.recipes.registry import register_recipe

ISTHMUS_BIN = Path(sys.executable).parent / "isthmus"
TOY_SLUG = "model-collapse"


@dataclass
class ToySettings(RecipeSettings):
    pass


class ToyRecipe(Recipe):
    slug = TOY_SLUG
    paper = Paper(title="Is Model Collapse Inevitable?", arxiv="2404.01413")
    claim = "Accumulating data keeps test loss bounded."
    Settings = ToySettings
    modes = {"smoke": ToySettings(seeds=1), "quick": ToySettings(seeds=2), "record": ToySettings(seeds=3)}
    ours = "accumulate"
    min_seeds = 1
    gates = (Gate("ours below baseline", metric="test_loss", arm="accumulate", vs="replace", direction="lower",
                  effect=0.1, headline=True),)

    def arms(self, settings):
        return {"accumulate": lambda s, sd, d: {"test_loss": 0.1 + 0.01 * sd},
                "replace": lambda s, sd, d: {"test_loss": 0.5 + 0.02 * sd}}


@pytest.fixture
def toy_registry(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", {})
    monkeypatch.setattr(registry, "_LOADED", True)
    register_recipe(ToyRecipe)


def test_list_text_and_json(toy_registry, capsys):
    assert main(["recipes", "list"]) == 0
    out = capsys.readouterr().out
    assert "model-collapse" in out and "implemented" in out and "1 of 44 implemented" in out
    assert main(["recipes", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 44 and set(rows[0]) == {"number", "slug", "status", "title", "arxiv"}
    assert [r["slug"] for r in rows if r["status"] == "implemented"] == [TOY_SLUG]


def test_run_writes_result_and_report(toy_registry, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["recipes", "run", TOY_SLUG, "--mode", "quick", "--seeds", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "reproduced" in printed and str(out / "result.json") in printed
    data = json.loads((out / "result.json").read_text())
    assert data["mode"] == "quick" and data["seeds"] == [0, 1] and data["verdict"] == "reproduced"
    assert (out / "report.md").exists()


def test_run_planned_and_unknown_exit_2_without_traceback(capsys):
    planned = next((e.slug for e in registry.list_recipes() if e.status == "planned"), None)
    if planned is None:
        pytest.skip("every recipe is implemented")
    assert main(["recipes", "run", planned, "--mode", "smoke"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "planned" in err and "Traceback" not in err
    assert main(["recipes", "run", "gradent-noise"]) == 2
    assert "did you mean gradient-noise" in capsys.readouterr().err


def test_debug_flag_reraises(toy_registry):
    with pytest.raises(registry.PlannedRecipeError):
        main(["recipes", "run", "starflow", "--debug"])
    with pytest.raises(registry.PlannedRecipeError):
        main(["--debug", "recipes", "run", "starflow"])


def test_bad_arguments_are_usage_errors(capsys):
    for argv in (["recipes", "run", TOY_SLUG, "--mode", "huge"], ["recipes", "run", TOY_SLUG, "--seeds", "0"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    assert main(["recipes"]) == 2  # a bare group prints its help
    assert "SUBCOMMAND" in capsys.readouterr().err


def test_table_to_file_and_stdout(toy_registry, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["recipes", "run", TOY_SLUG, "--mode", "quick", "--seeds", "1", "--out", str(runs / "a")]) == 0
    target = tmp_path / "docs" / "reproductions.md"
    assert main(["recipes", "table", "--results", str(runs), "--out", str(target)]) == 0
    text = target.read_text()
    assert "(../runs/a/report.md)" in text and "## Planned (43)" in text
    capsys.readouterr()
    assert main(["recipes", "table", "--results", str(tmp_path / "none")]) == 0
    captured = capsys.readouterr()
    assert "## Planned" in captured.out and "does not exist" in captured.err


@pytest.mark.skipif(not ISTHMUS_BIN.exists(), reason="console script not installed in this environment")
def test_installed_console_script_help():
    proc = subprocess.run([str(ISTHMUS_BIN), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "recipes" in proc.stdout and "--debug" in proc.stdout
