"""Every recipe's smoke mode, through one parametrized test: it runs, writes a result that reads back,
declares its gates, and reports finite metrics. (Smoke results are never judged.)"""

import json
import math

import pytest

from isthmus.data import DataNotFoundError
from isthmus.recipes import Result, get_recipe
from isthmus.recipes.registry import implemented_slugs
from isthmus.recipes.render import write_result

SLUGS = list(implemented_slugs())


@pytest.mark.parametrize("slug", SLUGS)
def test_smoke(slug, tmp_path):
    recipe = get_recipe(slug)()
    try:
        result = recipe.execute("smoke", out_dir=tmp_path)
    except DataNotFoundError as exc:  # a recipe whose data (or offline model) is not on this machine
        pytest.skip(str(exc).splitlines()[0])
    back = Result.from_dict(json.loads(write_result(result, tmp_path).read_text()))
    assert back.recipe == slug and back.mode == "smoke" and not back.judged
    assert [g.gate.name for g in back.gates] == [g.name for g in recipe.gates]
    assert back.declared == recipe.declaration()
    arms = {recipe.ours: back.metrics, **back.baselines}
    for gate in recipe.gates:  # every gated metric is reported by both sides
        assert gate.metric in arms[gate.arm], (gate.name, gate.arm)
        if isinstance(gate.vs, str):
            assert gate.metric in arms[gate.vs], (gate.name, gate.vs)
    for arm, metrics in arms.items():
        for name, summary in metrics.items():
            assert all(math.isfinite(v) for v in summary.values), f"{slug}: {arm}/{name} = {summary.values}"
    assert all((tmp_path / f).is_file() for f in back.figures)
    assert (tmp_path / "report.md").read_text().startswith(f"# `{slug}`")
