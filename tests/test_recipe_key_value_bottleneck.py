"""Recipe key-value-bottleneck (seed 24): frozen keys, the NCM baseline, and disjoint key data.
(The shared parametrized smoke test runs the recipe end to end.)"""

import numpy as np
import pytest
import torch
from torch import nn

from isthmus.metrics.continual import continual_report
from isthmus.recipes.key_value_bottleneck import (
    _mnist_split,
    build,
    digits_as_mnist,
    toy_data,
)
from isthmus.tasks.continual import ncm_stream, split_classes, train_stream


def test_dkvb_keys_and_encoder_stay_frozen_and_only_values_train():
    data = toy_data(0)
    model = build("dkvb", data, "toy", 0)
    keys = model.head.keys.clone()
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["head.values"]
    r = train_stream(model, data["x"], data["y"], data["x_test"], data["y_test"], split_classes(range(8), 2), 5, 16,
                     lambda p: torch.optim.Adam(p, lr=1e-2))
    assert torch.equal(model.head.keys, keys) and r["acc_matrix"].shape == (4, 4)


def test_continual_report():
    a = np.array([[1.0, 0.0], [0.4, 1.0]])
    r = continual_report(a)
    assert r["final_acc"] == pytest.approx(0.7) and r["forgetting"] == pytest.approx(0.6) and r["last_task_acc"] == 1.0
    with pytest.raises(ValueError):
        split_classes(range(5), 2)


def test_ncm_never_forgets_separable_classes_and_cannot_predict_unseen_ones():
    data = toy_data(0)
    tasks = split_classes(range(8), 2)
    r = ncm_stream(nn.Identity(), data["x"], data["y"], data["x_test"], data["y_test"], tasks, 50, 16, 8)
    acc = r["acc_matrix"]
    assert np.allclose(np.triu(acc, 1), 0.0)  # classes of later tasks are never predicted before they are seen
    assert acc[-1].min() > 0.9 and r["forgetting"] < 0.05  # 8 well-separated Gaussians: nothing is forgotten


def test_key_data_is_disjoint_from_the_stream():
    """Default key source is another data set (digits) in MNIST's layout; the alternative holds images apart."""
    d = digits_as_mnist()
    assert d.shape == (1797, 784) and 0.0 <= float(d.min()) and float(d.max()) <= 1.0
    assert float(d.reshape(-1, 28, 28)[:, :4].abs().max()) == 0.0  # the 4-pixel frame MNIST digits also have
    x, _, unl, _, _ = _mnist_split(300, 100, "mnist")
    assert len(x) == len(unl) == 300
    assert not (torch.cdist(x, unl).min(1).values < 1e-6).any()  # no stream image is a key image
