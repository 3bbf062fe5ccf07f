"""MNIST-bg composites, the attentive probe, the whitened linear probe and the shared masked-pretraining loop."""

import numpy as np
import pytest
import torch

from isthmus.data.mnist_bg import mnist_background
from isthmus.metrics.attentive_probe import attentive_probe_accuracy
from isthmus.models.masked import MAEConfig, MaskedAutoEncoder
from isthmus.tasks.masked_pretrain import pretrain_masked, whitened_linear_probe


def test_mnist_background_keeps_strokes_and_uses_split_photos():
    pytest.importorskip("skimage")
    digits = np.zeros((4, 28, 28), np.float32)
    digits[:, 10:18, 12:16] = 1.0
    tr, te = mnist_background(digits, "train", seed=0), mnist_background(digits, "test", seed=0)
    assert tr.shape == (4, 1, 28, 28) and tr.dtype == np.float32
    assert (tr[:, 0, 10:18, 12:16] == 1.0).all()  # strokes stay white (pixel-wise max)
    assert (tr >= digits[:, None]).all() and tr[:, 0, :5].std() > 0  # clutter outside the digit
    assert not np.allclose(tr, te)  # different photographs
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        mnist_background(digits * 255, "train")


def test_attentive_probe_reads_one_informative_token_that_mean_pooling_dilutes():
    rng = np.random.default_rng(0)
    n, t, d = 600, 12, 8
    y = rng.integers(0, 2, n)
    tokens = rng.normal(size=(n, t, d)).astype(np.float32)
    pos = rng.integers(0, t, n)  # the label lives in one token at a random position, marked by feature 0
    tokens[np.arange(n), pos, 0] = 6.0
    tokens[np.arange(n), pos, 1] = np.where(y == 1, 3.0, -3.0)
    acc = attentive_probe_accuracy(tokens[:400], y[:400], tokens[400:], y[400:], epochs=40, seed=0)
    assert acc >= 0.9
    assert attentive_probe_accuracy(tokens[:400], y[:400], tokens[400:], y[400:], epochs=40, seed=0) == acc
    with pytest.raises(ValueError, match="single class"):
        attentive_probe_accuracy(tokens[:10], np.zeros(10), tokens[:10], y[:10])


def test_whitened_probe_is_exact_on_separable_data_and_reduces_with_components():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(300, 5))
    y = (z[:, 0] + 0.5 * z[:, 1] > 0).astype(int)
    assert whitened_linear_probe(z[:200], y[:200], z[200:], y[200:]) >= 0.97
    assert whitened_linear_probe(z[:200] * [1e-3, 1, 1, 1, 1e3], y[:200], z[200:] * [1e-3, 1, 1, 1, 1e3],
                                 y[200:]) >= 0.97  # scale of a feature does not matter after whitening
    assert whitened_linear_probe(z[:200], y[:200], z[200:], y[200:], n_components=1) < 0.97  # a 1-D PCA loses it


def test_pretrain_masked_traces_every_epoch_and_probes_when_asked():
    torch.manual_seed(0)
    model = MaskedAutoEncoder(MAEConfig(image_size=8, patch=4, dim=8, heads=2, depth=1, decoder_dim=8,
                                        decoder_depth=1))
    x = torch.rand(32, 1, 8, 8)
    trace = pretrain_masked(model, x[:24], x[24:], epochs=3, seed=0, batch_size=8, probe=lambda m: 0.5,
                            probe_epochs=(2,))
    assert len(trace.val_loss) == 3 and trace.probes == {2: 0.5} and not model.training
    with pytest.raises(ValueError, match="empty"):
        pretrain_masked(model, x, x[:0], epochs=1, seed=0)
