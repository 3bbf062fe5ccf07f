"""Recipe catalog, registry, Result rendering and the reproductions table."""

import json
import os
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from isthmus.recipes import registry
from isthmus.recipes.base import Paper, Recipe, RecipeSettings
from isthmus.recipes.gates import Gate
from isthmus.recipes.catalog import SEEDS, SLUGS, seed
from isthmus.recipes.registry import (
    PlannedRecipeError,
    RecipeError,
    UnknownRecipeError,
    get_recipe,
    list_recipes,
    load_recipe_modules,
    register_recipe,
)
from isthmus.recipes.render import (
    collect_results,
    load_result,
    render_reproductions_table,
    write_result,
)

SHARED = Path(os.environ.get("ISTHMUS_SHARED", Path(__file__).resolve().parents[2] / "shared"))
TOY_SLUG = "model-collapse"


@dataclass
class ToySettings(RecipeSettings):
    lr: float = 0.1


class ToyRecipe(Recipe):
    """A recipe on the frame whose numbers are a function of the seed; registered per test."""

    slug = TOY_SLUG
    paper = Paper(title=seed(TOY_SLUG).title, arxiv=seed(TOY_SLUG).arxiv)
    claim = "Accumulating data keeps test loss bounded."
    Settings = ToySettings
    modes = {"smoke": ToySettings(seeds=1), "quick": ToySettings(seeds=2), "record": ToySettings(seeds=3)}
    ours = "accumulate"
    min_seeds = 1
    gates = (Gate("ours below baseline", metric="test_loss", arm="accumulate", vs="replace | data",
                  direction="lower", effect=0.1, headline=True, why="a toy: any clear gap"),)

    def arms(self, settings):
        return {"accumulate": lambda s, sd, d: {"test_loss": 0.1 + 0.01 * sd, "steps": 10.0},
                "replace | data": lambda s, sd, d: {"test_loss": 0.5 + 0.01 * sd}}

    def figures(self, settings, cells, out_dir):
        (out_dir / "curve.png").write_bytes(b"\x89PNG fake")
        return ["curve.png"]


@pytest.fixture
def toy_registry(monkeypatch):
    """An isolated registry holding only ToyRecipe (real recipe modules are not imported)."""
    monkeypatch.setattr(registry, "_REGISTRY", {})
    monkeypatch.setattr(registry, "_LOADED", True)
    register_recipe(ToyRecipe)
    return ToyRecipe


# ---- catalog ---------------------------------------------------------------------------------
def test_catalog_has_44_unique_numbered_entries_with_plausible_ids():
    assert [s.number for s in SEEDS] == list(range(1, 45))
    assert len(set(SLUGS)) == 44
    for s in SEEDS:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", s.slug), s.slug
        assert s.arxiv == "" or re.fullmatch(r"\d{4}\.\d{4,5}", s.arxiv), (s.slug, s.arxiv)


@pytest.mark.skipif(not (SHARED / "recipes.md").exists(), reason="shared/recipes.md not present")
def test_catalog_matches_shared_recipes_md():
    rows = re.findall(r"^\|\s*(\d+)\s*\|\s*`([^`]+)`\s*\|\s*(.+?)\s*\|\s*$",
                      (SHARED / "recipes.md").read_text(), flags=re.M)
    assert len(rows) == 44
    assert [(int(n), slug, title) for n, slug, title in rows] == [(s.number, s.slug, s.title) for s in SEEDS]


# ---- registry --------------------------------------------------------------------------------
def test_registry_rejects_unknown_slug_with_suggestion(toy_registry):
    class Bad(ToyRecipe):
        slug = "gradient-nosie"

    with pytest.raises(UnknownRecipeError, match="did you mean gradient-noise"):
        register_recipe(Bad)
    with pytest.raises(UnknownRecipeError, match="did you mean gradient-noise"):
        get_recipe("gradient_noise")


def test_registry_rejects_malformed_classes(toy_registry):
    class NoClaim(ToyRecipe):
        claim = "  "

    class NotARecipe:
        slug, paper, claim = TOY_SLUG, ToyRecipe.paper, "x"

    with pytest.raises(RecipeError, match="claim"):
        register_recipe(NoClaim)
    with pytest.raises(RecipeError, match="subclass"):
        register_recipe(NotARecipe)
    with pytest.raises(RecipeError, match="already registered"):
        register_recipe(type("Other", (ToyRecipe,), {}))


def test_registry_status_and_planned_error(toy_registry):
    entries = list_recipes()
    assert len(entries) == 44
    assert {e.slug for e in entries if e.status == "implemented"} == {TOY_SLUG}
    assert get_recipe(TOY_SLUG) is ToyRecipe
    with pytest.raises(PlannedRecipeError, match="planned"):
        get_recipe("starflow")


def test_loader_skips_absent_modules_but_raises_on_broken_ones(tmp_path, monkeypatch):
    pkg = tmp_path / "fake_recipes_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "good.py").write_text("LOADED = True\n")
    (pkg / "broken.py").write_text(textwrap.dedent("import isthmus_module_that_does_not_exist\n"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fake_recipes_pkg", raising=False)
    assert load_recipe_modules("fake_recipes_pkg", ["absent", "good"]) == ["good"]
    with pytest.raises(ModuleNotFoundError, match="isthmus_module_that_does_not_exist"):
        load_recipe_modules("fake_recipes_pkg", ["good", "broken"])


def test_real_recipe_modules_import_and_register_their_own_slug():
    # Whatever recipe modules exist in the package must import cleanly and register their slug.
    for name in load_recipe_modules():
        slug = name.replace("_", "-")
        assert get_recipe(slug).slug == slug


# ---- results ---------------------------------------------------------------------------------
def test_execute_write_and_load_round_trip(toy_registry, tmp_path):
    result = get_recipe(TOY_SLUG)().execute(mode="quick", n_seeds=2, out_dir=tmp_path)
    path = write_result(result, tmp_path)
    data = json.loads(path.read_text())
    assert {"recipe", "paper", "claim", "mode", "seeds", "metrics", "baselines", "verdict",
            "runtime_s", "config", "versions"} <= set(data)
    assert set(data["paper"]) == {"title", "arxiv"}
    for summary in data["metrics"].values():
        assert set(summary) == {"mean", "std", "values"}
    for metrics in data["baselines"].values():
        for summary in metrics.values():
            assert set(summary) == {"mean", "std", "values"}
    assert data == result.to_dict()
    assert data["seeds"] == [0, 1] and data["metrics"]["test_loss"]["values"] == [0.1, 0.11]
    assert "torch" in data["versions"] and data["runtime_s"] >= 0
    assert load_result(tmp_path).to_dict() == data

    report = (tmp_path / "report.md").read_text()
    assert ToyRecipe.claim in report and "**reproduced**" in report and "ours below baseline" in report
    assert "![curve](curve.png)" in report and '"lr": 0.1' in report
    assert r"replace \| data" in report  # a pipe in a name must not break the table
    assert "0.105 ± 0.0071" in report and "0.505 ± 0.0071" in report  # ddof=1


def test_load_result_errors(tmp_path):
    from isthmus.io import CheckpointError

    with pytest.raises(CheckpointError, match="does not exist"):
        load_result(tmp_path / "missing.json")
    (tmp_path / "result.json").write_text('{"recipe": "x"}')
    with pytest.raises(ValueError, match="not an isthmus result"):
        load_result(tmp_path)


def _write(toy, root: Path, mode: str, seeds: int, mtime: float) -> Path:
    out = root / f"{mode}-{seeds}"
    path = write_result(toy().execute(mode=mode, n_seeds=seeds, out_dir=out), out)
    os.utime(path, (mtime, mtime))
    return path


def test_collect_results_prefers_quick_then_newest(toy_registry, tmp_path):
    _write(ToyRecipe, tmp_path, "smoke", 1, mtime=3_000)
    _write(ToyRecipe, tmp_path, "quick", 1, mtime=1_000)
    newest_quick = _write(ToyRecipe, tmp_path, "quick", 2, mtime=2_000)
    assert collect_results(tmp_path) == {TOY_SLUG: newest_quick}
    assert collect_results(tmp_path / "nowhere") == {}


def test_table_renders_implemented_and_planned(toy_registry, tmp_path):
    _write(ToyRecipe, tmp_path / "runs", "quick", 2, mtime=1_000)
    docs = tmp_path / "docs"
    text = render_reproductions_table(tmp_path / "runs", link_from=docs)
    row = next(line for line in text.splitlines() if line.startswith("| 17 |"))
    assert "[`model-collapse`](../runs/quick-2/report.md)" in row
    assert "https://arxiv.org/abs/2404.01413" in row and ToyRecipe.claim in row
    assert "test_loss" in row and "0.105 ± 0.0071" in row and "0.505 ± 0.0071" in row
    assert "**reproduced**" in row and "| quick | 2 |" in row
    assert "## Planned (43)" in text and "- #19 `starflow`" in text
    assert "- #17 `model-collapse`" not in text


def test_table_without_results_marks_implemented_as_not_run(toy_registry):
    text = render_reproductions_table(None)
    row = next(line for line in text.splitlines() if line.startswith("| 17 |"))
    assert "not run" in row and ToyRecipe.claim in row
    assert "## Planned (43)" in text


def test_summarize_arms_splits_ours_from_baselines():
    from isthmus.recipes.base import summarize_arms

    metrics, baselines = summarize_arms({"ours": {"acc": [0.5, 0.7]}, "pca": {"acc": [0.4, 0.4]}}, "ours")
    assert metrics["acc"].mean == pytest.approx(0.6) and metrics["acc"].values == [0.5, 0.7]
    assert list(baselines) == ["pca"] and baselines["pca"]["acc"].std == 0.0
    with pytest.raises(KeyError, match="'mine' not among"):
        summarize_arms({"ours": {}}, "mine")
