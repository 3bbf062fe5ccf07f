"""Recipe auto-interp (seed 18): the arm helpers and the superposition of the studied layer.
(The smoke run is the shared parametrized test in test_recipes_smoke.py.)"""

import torch

from isthmus.interp.toy import make_task
from isthmus.recipes.auto_interp import ARCH, TASK_KW, topk_sparsify

torch.set_num_threads(1)


def test_topk_sparsify_keeps_k_largest_nonnegative():
    x = torch.tensor([[[0.5, -0.1, 2.0, 1.0]]])
    assert topk_sparsify(x, 2).tolist() == [[[0.0, 0.0, 2.0, 1.0]]]
    assert topk_sparsify(-x.abs(), 1).abs().sum() == 0  # negative winners are clamped to 0


def test_studied_layer_is_in_superposition():
    d = make_task("planted", 8, seed=0, **TASK_KW)
    n_concepts = TASK_KW["n_topics"] + TASK_KW["n_markers"]  # topic slices and marker/partner pairs at least
    assert len(d.vocab) >= 10 * ARCH["d_mlp"] and n_concepts >= ARCH["d_mlp"]
