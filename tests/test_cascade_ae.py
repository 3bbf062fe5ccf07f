"""The authors' cascade of small SELU AEs (seed 3): stage wiring, code size, L1 term, canonical = stage 1."""

import numpy as np
import pytest
import torch

from isthmus.tasks.cascade_ae import CascadeAE, SeluAE


def _x(n=256, d=6, seed=0):
    return np.random.default_rng(seed).random((n, d)).astype(np.float32)


def test_stage_inputs_are_previous_output_concatenated_with_previous_input():
    casc = CascadeAE(epochs=(1, 1, 1), batch_sizes=(64, 64, 64)).fit(_x())
    widths = [ae.layers[0].in_features for ae in casc.stages]
    assert widths == [6, 12, 5 + 12]  # n, [recon ⊕ x] = 2n, [5-d code ⊕ stage-2 input]
    assert casc.encode(_x(10)).shape == (10, 2) and len(casc.curves) == 3


def test_canonical_is_the_first_stage_of_the_cascade():
    x = _x()
    one = CascadeAE(n_stages=1, epochs=(2,), batch_sizes=(64,), seed=3).fit(x)
    three = CascadeAE(epochs=(2, 1, 1), batch_sizes=(64, 64, 64), seed=3).fit(x)
    for a, b in zip(one.stages[0].parameters(), three.stages[0].parameters()):
        torch.testing.assert_close(a, b)


def test_l1_activity_term_and_sigmoid_output():
    torch.manual_seed(0)
    ae = SeluAE(4, (3, 2), l1=0.5)
    x = torch.rand(8, 4)
    out = ae.compute_loss(x)
    acts, recon = ae.activations(x)
    expected = 0.5 * sum(a.abs().sum(1).mean() for a in [*acts, recon])
    torch.testing.assert_close(out.losses["l1"], expected)
    assert 0 < float(recon.min()) and float(recon.max()) < 1
    assert float(SeluAE(4, (3, 2), l1=0.0).compute_loss(x).loss) < float(out.loss)


def test_bad_arguments():
    with pytest.raises(ValueError):
        CascadeAE(n_stages=4)
    with pytest.raises(ValueError):
        CascadeAE(n_stages=3, epochs=(1,))
    with pytest.raises(RuntimeError):
        CascadeAE().encode(_x(2))
