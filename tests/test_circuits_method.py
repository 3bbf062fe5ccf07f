"""find_circuit and the baselines on the planted circuit."""

import numpy as np
import pytest
import torch

from isthmus.interp.circuits import (BASELINES, find_circuit, head_outputs, head_points, induction_pairs,
                                     planted_induction)
from isthmus.metrics.circuits import roc_auc


@pytest.fixture(scope="module")
def planted():
    pc = planted_induction(seed=2)
    pos, neg, mask = induction_pairs(40, seed=7)
    truth = np.array([(L, h) in pc.circuit for L in range(2) for h in range(pc.model.cfg.n_heads)])
    return pc, pos, neg, mask, truth


def test_head_outputs_shape_and_masked_average(planted):
    pc, pos, _, mask, _ = planted
    pts = head_points(pc.model)
    assert pts == ["blocks.0.attn.hook_result", "blocks.1.attn.hook_result"]
    x = head_outputs(pc.model, pos[:5], pts)
    assert x.shape == (5, 12, pc.model.cfg.d_model)
    last = head_outputs(pc.model, pos[:5], pts, position="last")
    only_last = torch.zeros(5, pos.shape[1], dtype=torch.bool)
    only_last[:, -1] = True
    assert torch.allclose(last, head_outputs(pc.model, pos[:5], pts, position=only_last))


def test_find_circuit_ranks_the_planted_heads(planted):
    pc, pos, neg, _, truth = planted
    res = find_circuit(pc.model, pos, neg, head_norm="scale", epochs=200, seed=0)
    assert res.node_scores.shape == (12,) and res.edge_scores.shape == (12, 12)
    assert len(res.ranked_heads) == 12 and set(res.ranked_heads) == set(res.heads)
    assert res.timing["n_forward"] == 80 and res.timing["total_s"] > 0
    assert roc_auc(res.node_scores, truth) >= 0.8
    assert np.all(res.edge_scores[6:, :] == 0)  # no edge from layer 1 to anything
    assert all(a[0] < b[0] for a, b, _ in res.ranked_edges(5))
    with pytest.raises(ValueError, match="head_norm"):
        find_circuit(pc.model, pos, neg, head_norm="bogus", epochs=1)


def test_baselines_on_planted_circuit(planted):
    pc, pos, neg, mask, truth = planted
    for name in ("activation_patching", "attribution_patching", "mean_ablation"):
        r = BASELINES[name](pc.model, pos, neg, mask)
        assert r.scores.shape == (12,) and r.seconds > 0 and r.n_forward > 0
        assert roc_auc(r.scores, truth) == 1.0, name
    diff = BASELINES["output_difference"](pc.model, pos, neg, mask)
    assert diff.scores.shape == (12,) and np.all(diff.scores >= 0)
