"""Recipe sae-circuits (seed 1): the task score, the paper's settings, and cost in forward passes.
(The smoke run is the shared parametrized test in test_recipes_smoke.py.)"""

import torch

from isthmus.interp.circuits import BASELINES, find_circuit, induction_pairs, planted_induction
from isthmus.recipes.sae_circuits import PAPER, PAPER_L1, SaeCircuits, task_score

torch.set_num_threads(1)


def test_task_score_prefers_p_greater():
    assert task_score({"acc": 0.1, "p_greater": 0.9}) == 0.9 and task_score({"acc": 0.7}) == 0.7


def test_the_gated_arm_uses_the_papers_settings():
    assert PAPER["d_sae"] == 200 and PAPER["l1"] == 0.02 and PAPER["head_norm"] == "none"
    assert PAPER_L1 == {"docstring": 0.05}
    assert SaeCircuits.ours == "sae_paper" and "ioi" not in SaeCircuits.modes["quick"].tasks


def test_sae_needs_fewer_forward_passes_than_patching_at_16_heads():
    pc = planted_induction(seed=0, n_heads=8)
    pos, neg, mask = induction_pairs(20, seed=1)
    sae = find_circuit(pc.model, pos, neg, seed=0, **{**PAPER, "epochs": 5})
    patch = BASELINES["activation_patching"](pc.model, pos, neg, mask)
    assert sae.timing["n_forward"] == 2 * 20
    assert patch.n_forward >= 4 * sae.timing["n_forward"]  # about one pass per head per pair
