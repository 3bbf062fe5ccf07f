"""Padded conv AE + classification head (seed 23's black box): padding round-trips, shapes, stages train."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from isthmus.models.supervised_ae import ConvAEClassifier, pad_to_square, square_side, unpad


@given(st.integers(1, 3000))
@settings(max_examples=50, deadline=None)
def test_square_side_is_the_smallest_multiple_of_8_that_fits(p):
    s = square_side(p)
    assert s % 8 == 0 and s * s >= p and (s - 8) ** 2 < p


def test_padding_round_trips_and_pads_with_zeros():
    X = np.random.default_rng(0).normal(size=(4, 70)).astype(np.float32)
    img = pad_to_square(X)
    assert img.shape == (4, 1, 16, 16)
    assert torch.equal(unpad(img, 70), torch.as_tensor(X))
    assert torch.all(img.reshape(4, -1)[:, 70:] == 0)
    assert square_side(1433) == 40 and square_side(2000) == 48
    with pytest.raises(ValueError, match="n_rows, n_features"):
        pad_to_square(np.zeros(5))


def test_shapes_and_stages():
    torch.manual_seed(0)
    m = ConvAEClassifier(100, 3)  # side 16 → embedding 2×2×8
    x = torch.randn(5, 100)
    assert m(x).shape == (5, 3)
    assert m.reconstruct(x).shape == (5, 1, 16, 16)
    assert m.embed(x).shape == (5, 8, 2, 2)
    loss = m.reconstruction_model().compute_loss((pad_to_square(x), torch.zeros(5))).loss
    loss.backward()
    assert m.decoder[-1].weight.grad is not None and m.head[-1].weight.grad is None
    m.zero_grad()
    clf = m.classifier()
    clf.compute_loss((pad_to_square(x), torch.tensor([0, 1, 2, 0, 1]))).loss.backward()
    assert m.encoder[0][0].weight.grad is not None  # stage 2 keeps training the encoder (errata §23.1)
    assert m.decoder[-1].weight.grad is None
    with pytest.raises(ValueError, match="expected 100 features"):
        m(torch.randn(2, 99))
    with pytest.raises(ValueError, match="n_classes"):
        ConvAEClassifier(10, 1)
    assert ConvAEClassifier(10, 2)(torch.randn(2, 10)).shape == (2, 2)  # side 8: embedding 1×1, no head pooling
