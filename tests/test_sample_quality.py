"""The shared split and scorer of the latent-generation recipes: disjointness, blur, FD-VALID on digits."""

import numpy as np
import pytest
import torch

from isthmus.tasks.sample_quality import SampleScorer, gaussian_blur, image_split


def test_gaussian_blur_keeps_constants_and_mass_and_smooths_a_spike():
    c = torch.full((1, 1, 9, 9), 0.3)
    torch.testing.assert_close(gaussian_blur(c), c)
    spike = torch.zeros(1, 1, 15, 15)
    spike[0, 0, 7, 7] = 1.0
    b = gaussian_blur(spike, 1.0)
    assert b.sum().item() == pytest.approx(1.0, abs=1e-5)
    # the 1-D kernel at offset 0 is 1/Σ exp(-k²/2), k = -3..3
    k0 = 1 / np.exp(-np.arange(-3, 4) ** 2 / 2).sum()
    assert b[0, 0, 7, 7].item() == pytest.approx(k0 ** 2, rel=1e-5)


@pytest.mark.slow
def test_split_is_fixed_and_the_classifier_never_sees_the_test_rows():
    a, b = image_split(8, 900, 200, 300), image_split(8, 900, 200, 300)
    assert torch.equal(a.x_test, b.x_test) and a.x_train.shape[1:] == (1, 8, 8)
    sc = SampleScorer(a, clf_epochs=5)
    assert set(sc.clf.train_indices_) == set(a.rows_fit)
    assert len(a.rows_fit) == len(a.x_train) + len(a.x_val)
    v = sc.fd_valid()
    assert v["real"] < v["blurred"] < v["noise"]
    s = sc.score(a.x_test[:100], a.y_test[:100])
    assert s["class_accuracy"] > 0.4 and s["frechet"] >= 0
