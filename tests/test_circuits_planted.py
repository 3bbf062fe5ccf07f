"""The planted previous-token + induction circuit: exact ground truth, verified by ablation."""

import torch

from isthmus.interp import patch
from isthmus.interp.circuits import induction_pairs, planted_induction


def _accuracy(model, tokens, mask):
    with torch.no_grad():
        pred = model(tokens)[:, :-1].argmax(-1)
    return float((pred == tokens[:, 1:])[mask[:, 1:]].float().mean())


def _ablated(model, layer, head, tokens, mask):
    def zero(z):
        z = z.clone()
        z[:, :, head] = 0
        return z
    with patch(model, f"blocks.{layer}.attn.hook_z", zero):
        return _accuracy(model, tokens, mask)


def test_circuit_heads_are_necessary_and_distractors_are_not():
    pc = planted_induction(seed=1)
    pos, neg, mask = induction_pairs(48, seed=2)
    assert _accuracy(pc.model, pos, mask) > 0.97          # induction works
    assert _accuracy(pc.model, neg, mask) < 0.1           # nothing to copy on negatives
    for layer in range(2):
        for head in range(pc.model.cfg.n_heads):
            acc = _ablated(pc.model, layer, head, pos, mask)
            if (layer, head) in pc.circuit:
                assert acc < 0.1, (layer, head, acc)
            else:
                assert acc > 0.95, (layer, head, acc)
    assert pc.edges == [(pc.circuit[0], pc.circuit[1])]


def test_distractor_writes_match_circuit_norms():
    from isthmus.interp import run_with_cache

    pc = planted_induction(seed=0)
    pos, _, _ = induction_pairs(32, seed=5)
    for layer in range(2):
        p = f"blocks.{layer}.attn.hook_result"
        norms = run_with_cache(pc.model, pos, [p])[p].norm(dim=-1).mean((0, 1))
        assert float(norms.max() / norms.min()) < 1.3  # no head stands out by output size
