"""Recipe auto-interp (seed 18): the arm helpers and the superposition of the studied layer.
(The smoke run is the shared parametrized test in test_recipes_smoke.py.)"""

import numpy as np
import pytest
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


def test_planted_concepts_and_concept_f1():
    from isthmus.recipes.auto_interp import concept_f1, concept_masks, planted_concepts

    d = make_task("planted", 16, seed=0, **TASK_KW)
    classes = planted_concepts(d)
    topic_slices = [v for k, v in classes.items() if k.startswith("content token of topic")]
    assert len(topic_slices) == TASK_KW["n_topics"] and all(len(v) == TASK_KW["topic_vocab"] for v in topic_slices)
    assert sorted(sum(topic_slices, [])) == classes["content token"]
    masks = concept_masks(d)
    # a unit that fires exactly on a planted class scores 1; one firing on a random half of all positions does not
    exact = torch.as_tensor(np.isin(d.tokens.numpy(), classes["marker (A)"]), dtype=torch.float32)
    noise = torch.as_tensor(np.random.default_rng(0).random(d.tokens.shape) < 0.5, dtype=torch.float32)
    codes = torch.stack([exact, noise], -1)
    assert concept_f1(codes, masks, [0]) == pytest.approx(1.0)
    assert concept_f1(codes, masks, [1]) < 0.7
    assert np.isnan(concept_f1(codes, masks, []))
