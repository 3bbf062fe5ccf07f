"""The recipe frame: the seed x arm loop, cached cells, overrides, judging, staleness, registry checks."""

import json
import os
from dataclasses import dataclass

import numpy as np
import pytest

from isthmus.config import ConfigError
from isthmus.recipes import registry
from isthmus.recipes.base import Paper, Recipe, RecipeSettings, Result
from isthmus.recipes.catalog import seed
from isthmus.recipes.gates import Gate, Measured, Precondition
from isthmus.recipes.registry import RecipeError, register_recipe
from isthmus.recipes.render import load_result, render_reproductions_table, staleness, write_result

SLUG = "model-collapse"
CALLS: list[tuple[str, int]] = []


@dataclass
class ToySettings(RecipeSettings):
    gain: float = 0.3
    control: float = 0.9


def _ours(s, seed_, data):
    CALLS.append(("ours", seed_))
    return Measured(metrics={"acc": data + s.gain + 0.001 * seed_}, curves={"loss": [1.0, 0.5, 0.4, 0.4]})


def _base(s, seed_, data):
    CALLS.append(("base", seed_))
    return {"acc": data}


def _control(s, seed_, data):
    CALLS.append(("control", seed_))
    return {"acc": s.control}


class Toy(Recipe):
    slug = SLUG
    paper = Paper(seed(SLUG).title, seed(SLUG).arxiv)
    claim = "ours beats base by 0.1"
    Settings = ToySettings
    modes = {"smoke": ToySettings(seeds=1), "quick": ToySettings(seeds=3), "record": ToySettings(seeds=5)}
    gates = (Gate("acc", "acc", "ours", "base", effect=0.1, headline=True),)
    preconditions = (Precondition("control learns", "control", "acc", ">=", 0.8),)

    def data(self, settings, seed_):
        return 0.2 + 0.05 * seed_  # seed-dependent level shared by the arms: pairing removes it

    def arms(self, settings):
        return {"ours": _ours, "base": _base, "control": _control}


@pytest.fixture(autouse=True)
def _clear():
    CALLS.clear()


def test_frame_judges_a_clear_paired_effect(tmp_path):
    r = Toy().execute("quick", out_dir=tmp_path)
    assert r.verdict == "reproduced", r.verdict_reason
    assert r.seeds == [0, 1, 2] and r.gates[0].n == 3 and r.gates[0].lo > 0.1
    assert set(r.baselines) == {"base", "control"} and r.metrics["acc"].values[0] == pytest.approx(0.5)
    assert r.metrics["acc"].std == pytest.approx(0.051)  # ddof=1 over seeds (ddof=0 gives 0.0416)
    assert r.config["settings"]["gain"] == 0.3
    assert r.declared == Toy().declaration()


def test_cells_are_cached_and_reused_when_seeds_are_added(tmp_path):
    Toy().execute("quick", out_dir=tmp_path)
    assert len(CALLS) == 9
    CALLS.clear()
    r = Toy().execute("quick", out_dir=tmp_path, overrides=["seeds=5"])
    assert sorted(CALLS) == sorted([(a, s) for a in ("ours", "base", "control") for s in (3, 4)])
    assert r.gates[0].n == 5


def test_changed_settings_invalidate_the_cache(tmp_path):
    Toy().execute("quick", out_dir=tmp_path)
    CALLS.clear()
    r = Toy().execute("quick", out_dir=tmp_path, overrides=["gain=0.0"])
    assert len(CALLS) == 9 and r.verdict == "not reproduced"


def test_damaged_cache_cell_is_recomputed(tmp_path):
    Toy().execute("quick", out_dir=tmp_path)
    (tmp_path / "cells" / "ours" / "seed-1.json").write_text("{not json")
    CALLS.clear()
    Toy().execute("quick", out_dir=tmp_path)
    assert CALLS == [("ours", 1)]


def test_cached_cell_missing_a_declared_metric_is_recomputed(tmp_path, capsys):
    """A cell cached before the recipe's code changed (same settings) may lack a metric a precondition now
    reads; it is recomputed, not reused (model-collapse was judged 'inconclusive' on such a cell once)."""
    Toy().execute("quick", out_dir=tmp_path)
    path = tmp_path / "cells" / "control" / "seed-2.json"
    d = json.loads(path.read_text())
    d["measured"]["metrics"] = {"other": 1.0}  # as written by an older version of the arm
    path.write_text(json.dumps(d))
    CALLS.clear()
    r = Toy().execute("quick", out_dir=tmp_path)
    assert CALLS == [("control", 2)] and r.verdict == "reproduced", r.verdict_reason
    assert "control/seed-2" in capsys.readouterr().err


def _noisy_ours(s, seed_, data):
    # reads the global RNG, as careless arms do; pid shows which process ran the cell
    return {"acc": data + s.gain + 0.01 * float(np.random.rand()), "pid": float(os.getpid())}


class NoisyToy(Toy):
    def arms(self, settings):
        return {"ours": _noisy_ours, "base": _base, "control": _control}


def test_jobs_run_seeds_in_processes_with_the_same_cells(tmp_path):
    """jobs=2 gives the same cells as jobs=1 (the frame seeds the global RNGs per cell) and writes the cells."""
    one = NoisyToy().execute("quick", out_dir=tmp_path / "one")
    two = NoisyToy().execute("quick", out_dir=tmp_path / "two", jobs=2)
    assert one.metrics["acc"].values == two.metrics["acc"].values
    assert set(one.metrics["pid"].values) == {os.getpid()} and os.getpid() not in two.metrics["pid"].values
    assert sorted(p.name for p in (tmp_path / "two" / "cells" / "ours").iterdir()) == [f"seed-{i}.json" for i in range(3)]
    # a recomputed cell gets the value it had, whatever ran before it
    (tmp_path / "one" / "cells" / "ours" / "seed-1.json").unlink()
    again = NoisyToy().execute("quick", out_dir=tmp_path / "one")
    assert again.metrics["acc"].values == one.metrics["acc"].values
    with pytest.raises(ValueError, match="jobs must be >= 1"):
        NoisyToy().execute("quick", out_dir=tmp_path / "three", jobs=0)


def test_failed_precondition_makes_it_inconclusive(tmp_path):
    r = Toy().execute("quick", out_dir=tmp_path, overrides={"control": 0.5})
    assert r.verdict == "inconclusive" and "control learns" in r.verdict_reason


def test_too_few_seeds_is_inconclusive_and_smoke_is_never_judged(tmp_path):
    r = Toy().execute("quick", out_dir=tmp_path, n_seeds=2)
    assert r.verdict == "inconclusive" and "enough seeds" in r.verdict_reason
    s = Toy().execute("smoke", out_dir=tmp_path / "s")
    assert s.verdict == "inconclusive" and "never judged" in s.verdict_reason and not s.judged


def test_overrides_are_typed_and_checked():
    t = Toy()
    assert t.settings_for("quick", ["seeds=8", "gain=0.5"]).seeds == 8
    with pytest.raises(ConfigError, match="unknown field"):
        t.settings_for("quick", ["epochs=3"])
    with pytest.raises(ConfigError, match="number"):
        t.settings_for("quick", ["gain=abc"])
    with pytest.raises(ValueError, match="no 'full' mode"):
        t.settings_for("full")


def test_result_round_trips_with_gates(tmp_path):
    r = Toy().execute("quick", out_dir=tmp_path)
    write_result(r, tmp_path)
    back = load_result(tmp_path)
    assert back.to_dict() == json.loads(json.dumps(r.to_dict()))
    assert back.gates[0].outcome == "met" and back.checks[0].name == "enough seeds"
    assert "## Gates" in (tmp_path / "report.md").read_text()


def test_changed_gates_mark_a_result_stale(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", {})
    monkeypatch.setattr(registry, "_LOADED", True)
    register_recipe(Toy)
    r = Toy().execute("quick", out_dir=tmp_path)
    write_result(r, tmp_path / "res")
    assert staleness(r) == ""
    fresh = render_reproductions_table(tmp_path / "res")
    assert "(stale)" not in fresh
    # a quick run is shown, but not counted among the results of record
    assert "quick run: not a result of record" in fresh and "quick runs only (not evidence yet): 1" in fresh
    assert "results of record: reproduced: 0" in fresh
    monkeypatch.setattr(Toy, "gates", (Gate("acc", "acc", "ours", "base", effect=0.2, headline=True),))
    assert staleness(r) == "stale"
    table = render_reproductions_table(tmp_path / "res")
    assert "(stale)" in table and "inconclusive: 0" in table
    legacy = Result.from_dict({**r.to_dict(), "gates": []})
    assert staleness(legacy) == "legacy"


def test_arm_returning_junk_is_refused(tmp_path):
    class Bad(Toy):
        def arms(self, settings):
            return {"ours": lambda s, i, d: {"acc": "high"}, "base": _base, "control": _control}

    with pytest.raises(TypeError, match="non-numeric"):
        Bad().execute("quick", out_dir=tmp_path)


def test_registry_refuses_an_undeclared_frame_recipe(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", {})

    class NoGates(Toy):
        gates = ()

    class NoRecord(Toy):
        modes = {"smoke": ToySettings(), "quick": ToySettings()}

    class WrongArm(Toy):
        gates = (Gate("acc", "acc", "ours", "nobody", headline=True),)

    with pytest.raises(RecipeError, match="gates is empty"):
        register_recipe(NoGates)
    with pytest.raises(RecipeError, match="record"):
        register_recipe(NoRecord)
    with pytest.raises(ValueError, match="nobody"):
        WrongArm().execute("quick", out_dir=None)
