"""Recipe codebook-features (seed 38): hidden-state alignment, the shared best-unit detection rule and the
steering draw. (The smoke run is the shared parametrized test in test_recipes_smoke.py.)"""

from __future__ import annotations

import torch

from isthmus.interp.toy import make_task
from isthmus.recipes.codebook_features import (best_unit_scores, code_pr, hidden_states, one_hot_fires,
                                               steer_targets, symbol_positions, threshold_fires)

torch.set_num_threads(1)


def test_hidden_state_alignment():
    data = make_task("fsm", 4, seed=1, n_states=5, n_symbols=3, steps=6)
    pos = symbol_positions(data.tokens)
    assert len(pos) == 6 and (data.tokens[:, pos] >= 6).all()  # symbol tokens come after the 5 states + BOS
    torch.testing.assert_close(data.tokens[:, pos + 1] - 1, hidden_states(data))  # next token = entered state


def test_best_unit_picks_by_fit_f1_and_scores_on_eval():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (600,), generator=g)
    codes = (y * 2 + torch.randint(0, 2, (600,), generator=g))[:, None]  # 2 pure codes per state: recall ~0.5
    pr, rc = code_pr(codes, y, 6, 3)
    assert torch.allclose(pr[0, :2], torch.ones(2)) and 0.3 < float(rc[0, 0]) < 0.7
    merged = (codes // 2)  # one pure code per state: recall 1 -> the better F1
    both = torch.cat([one_hot_fires(codes, 6), one_hot_fires(merged, 3)], 1)
    out = best_unit_scores(both[:300], y[:300], both[300:], y[300:], states=[0, 1, 2])
    assert out["precision"] == [1.0, 1.0, 1.0] and out["recall"] == [1.0, 1.0, 1.0]
    split = best_unit_scores(one_hot_fires(codes[:300], 6), y[:300], one_hot_fires(codes[300:], 6), y[300:], [0])
    assert split["precision"] == [1.0] and split["f1"][0] < 0.8  # precise but half the recall: F1 sees it


def test_threshold_fires_enumerates_neuron_threshold_pairs():
    acts = torch.tensor([[0.0, 1.0], [2.0, -1.0]])
    thr = torch.tensor([[0.5, 1.5], [0.0, 2.0]])
    f = threshold_fires(acts, thr)
    assert f.shape == (2, 4) and f.tolist() == [[False, False, True, False], [True, True, False, False]]


def test_steer_targets_are_paired_and_never_the_true_state():
    data = make_task("fsm", 64, seed=2, n_states=6, n_symbols=3, steps=8)
    rows, col, target = steer_targets(data, list(range(6)), seed=0)
    rows2, col2, target2 = steer_targets(data, list(range(6)), seed=0)
    assert torch.equal(col, col2) and torch.equal(target, target2)
    assert not bool((hidden_states(data)[rows, col // 2 - 1] == target).any())
