"""Recipe attention-output-sae (seed 42), the planted-feature generator and head attribution helpers.
(The smoke run is the shared parametrized test in test_recipes_smoke.py.)"""

import math

import pytest
import torch

from isthmus.interp.attribution import (attention_to_sources, attribution_entropy, head_ablation_effects,
                                        head_block_norms, head_direct_effects,
                                        indicator_correlation, splice_losses)
from isthmus.interp.toy import ToyTransformer, make_task
from isthmus.interp.toy.planted import FAMILIES
from isthmus.recipes.attention_output_sae import attribution_scores, ground_truth

torch.set_num_threads(1)


def test_planted_ground_truth_masks():
    d = make_task("planted", 32, seed=3, ngram=6, length=40)
    tok, fm, lay = d.tokens, d.meta["feature_masks"], d.meta["layout"]
    assert tok.shape == (32, 40) and set(fm) == set(FAMILIES)
    assert torch.equal(tok[:, 1] - lay["topic"], d.meta["topics"])
    b, t = torch.nonzero(fm["short_range"], as_tuple=True)  # A_j x B_j around each marked position
    assert torch.equal(tok[b, t + 1] - lay["partner"], tok[b, t - 1] - lay["marker"])
    b, t = torch.nonzero(fm["induction"], as_tuple=True)  # the next token repeats what followed the earlier copy
    for i, j in zip(b.tolist(), t.tolist()):
        prev = [k for k in range(j) if tok[i, k] == tok[i, j]]
        assert len(prev) == 1 and tok[i, prev[0] + 1] == tok[i, j + 1]
    assert (fm["induction"].sum(1) == 5).all()
    src = d.meta["source_positions"]
    for f in FAMILIES:
        assert torch.equal(src[f] >= 0, fm[f])
    b, t = torch.nonzero(fm["induction"], as_tuple=True)
    assert torch.equal(tok[b, src["induction"][b, t] - 1], tok[b, t])  # the source follows the earlier copy
    assert torch.equal(make_task("planted", 4, seed=1).tokens, make_task("planted", 4, seed=1).tokens)


def test_head_block_norms_and_entropy():
    w = torch.zeros(3, 8)
    w[0, :2] = 1.0             # all in head 0
    w[1] = 1.0                 # spread over the 4 heads
    w[2, 6:] = torch.tensor([3.0, 4.0])  # all in head 3, norm 5
    n = head_block_norms(w, 4)
    assert torch.allclose(n[2], torch.tensor([0, 0, 0, 5.0]))
    e = attribution_entropy(n)
    assert e[0] < 1e-6 and abs(e[1] - math.log(4)) < 1e-5
    with pytest.raises(ValueError):
        head_block_norms(torch.zeros(2, 7), 4)


def test_indicator_correlation():
    y = torch.tensor([0, 1, 0, 1, 1.0])[:, None]
    z = torch.stack([y[:, 0] * 2, 1 - y[:, 0], torch.ones(5)], 1)
    c = indicator_correlation(z, y)
    assert torch.allclose(c[:, 0], torch.tensor([1.0, -1.0, 0.0]), atol=1e-6)


def test_ablation_and_splice_on_a_tiny_model():
    d = make_task("planted", 16, seed=0, ngram=6, length=40)
    model = ToyTransformer(dict(vocab_size=d.vocab_size, n_ctx=40, n_layers=2, d_model=32, n_heads=2,
                                attn_only=True)).eval()
    pts = ["blocks.0.attn.hook_z", "blocks.1.attn.hook_z"]
    eff, clean = head_ablation_effects(model, d.tokens, pts, d.meta["target_masks"])
    assert eff.shape == (4, 3) and set(clean) == set(FAMILIES)
    direct = head_direct_effects(model, d.tokens, 2, d.meta["target_masks"], vocabs=d.meta["family_vocab"])
    att = attention_to_sources(model, d.tokens, 2, d.meta["source_positions"])
    assert direct.shape == (4, 3) and att.shape == (4, 3) and ((att >= 0) & (att <= 1)).all()
    sp = splice_losses(model, d.tokens, pts, lambda x: x, d.mask)  # identity reconstruction
    assert abs(sp["spliced_ce"] - sp["clean_ce"]) < 1e-5
    sp0 = splice_losses(model, d.tokens, pts, torch.zeros_like, d.mask)
    assert abs(sp0["spliced_ce"] - sp0["zero_ce"]) < 1e-5


def test_attribution_scores_and_ground_truth():
    eff = torch.zeros(8, 3)
    eff[5, 0], eff[1, 0] = 1.0, 0.6    # induction: heads 1.1 and 0.1
    eff[2, 1] = 0.5                    # long range: 0.2
    eff[1, 2] = 0.9                    # short range: 0.1 (so 0.1 is polysemantic)
    gt, learned = ground_truth(eff, eff)
    assert gt == [{1, 5}, {2}, {1}] and all(learned)
    assert ground_truth(eff, eff * 0.01)[1] == [False] * 3  # ablation does not confirm the heads
    norms = torch.full((6, 8), 0.1)
    for f, h in enumerate([5, 5, 2, 2, 1, 3]):
        norms[f, h] = 1.0 if f != 5 else 0.9
    feats = {"induction": torch.tensor([0, 1]), "long_range": torch.tensor([2, 3]),
             "short_range": torch.tensor([4, 5])}
    s = attribution_scores(norms, feats, gt, learned)
    assert s["top_head_accuracy"] == pytest.approx(5 / 6) and s["family_head_accuracy"] == 1.0
    assert s["polysemantic_share_gt"] == pytest.approx(1 / 3)
