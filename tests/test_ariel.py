"""AriEL arithmetic volume coding (isthmus.bottlenecks.ariel) and its GRU sequence models (isthmus.models.ariel)."""

import numpy as np
import pytest
import torch

from isthmus.bottlenecks.ariel import ArithmeticVolumeCoder, BigramLM
from isthmus.models.ariel import EOS, SPECIAL, GRULanguageModel, GRUSeqAutoencoder, fit_sequence_model, sample_lm

V = 10  # 0 PAD, 1 BOS, 2 EOS, 3 UNK, words 4..9


def _bigram(seed=0) -> BigramLM:
    rng = np.random.default_rng(seed)
    t = rng.dirichlet(np.ones(V), size=V)
    t[:, [0, 1, 3]] = 0.0  # PAD, BOS, UNK are never emitted
    t[:, EOS] += 0.15  # sentences end
    return BigramLM(t / t.sum(1, keepdims=True), bos=1)


def _sentences(n, rng, max_len=12):
    return [list(rng.integers(SPECIAL, V, size=rng.integers(1, max_len))) for _ in range(n)]


def test_round_trip_is_exact_for_200_sentences_and_volumes_are_probabilities():
    lm, rng = _bigram(), np.random.default_rng(1)
    coder = ArithmeticVolumeCoder(lm, dim=4, eos=EOS, max_len=16)
    sents = _sentences(200, rng)
    z = coder.encode(sents)
    assert z.shape == (200, 4) and z.dtype == np.float64 and ((z > 0) & (z < 1)).all()
    assert coder.decode(z) == sents
    lp = np.array([lm.log_prob(s, EOS) for s in sents])
    assert np.allclose(coder.log_volume(sents), lp, rtol=1e-9, atol=1e-9)


def test_sentence_of_max_len_needs_no_eos_and_longer_is_rejected():
    coder = ArithmeticVolumeCoder(_bigram(), dim=2, eos=EOS, max_len=5)
    s = [4, 5, 6, 7, 8]
    out, ended = coder.decode_with_status(coder.encode([s]))
    assert out == [s] and not ended[0]
    with pytest.raises(ValueError):
        coder.encode([s + [4]])


def test_zero_probability_tokens_own_no_volume():
    lm = _bigram()
    coder = ArithmeticVolumeCoder(lm, dim=3, eos=EOS, max_len=8)
    with pytest.raises(ValueError):
        coder.encode([[4, 3, 5]])  # UNK has probability 0
    sents = coder.decode(np.random.default_rng(0).random((500, 3)))
    assert all(t >= SPECIAL for s in sents for t in s)
    assert coder.decode(np.array([[1.0, 1.0, 1.0], [-3.0, 0.0, 2.0]]))  # edges and outside points are clipped


def test_uniform_points_decode_like_ancestral_sampling():
    lm = _bigram(2)
    coder = ArithmeticVolumeCoder(lm, dim=2, eos=EOS, max_len=1)  # one token: frequencies = p(w | BOS)
    toks = np.array([s[0] if s else EOS for s in coder.decode(np.random.default_rng(0).random((20000, 2)))])
    freq = np.bincount(toks, minlength=V) / len(toks)
    assert np.abs(freq - lm.table[1]).max() < 0.015


def test_precision_limit_in_one_dimension():
    """Documented limit: one dimension holds ~52 bits; a uniform 6-word LM gives ~2.6 bits/token."""
    t = np.zeros((V, V))
    t[:, SPECIAL:] = 1.0
    t[:, EOS] = 1e-3
    coder = ArithmeticVolumeCoder(BigramLM(t / t.sum(1, keepdims=True), bos=1), dim=1, eos=EOS, max_len=64)
    rng = np.random.default_rng(0)
    short = _sentences(50, rng, max_len=12)
    assert coder.decode(coder.encode(short)) == short
    long = [list(rng.integers(SPECIAL, V, size=40)) for _ in range(20)]
    assert coder.decode(coder.encode(long)) != long  # ~103 bits in one float64 dimension cannot round-trip


def test_gru_lm_round_trip_and_sampling():
    torch.manual_seed(0)
    lm = GRULanguageModel(V, emb=8, hidden=16)
    sents = _sentences(64, np.random.default_rng(3), max_len=10)
    coder = ArithmeticVolumeCoder(lm.as_step_lm(), dim=8, eos=EOS, max_len=12)
    assert coder.decode(coder.encode(sents)) == sents
    assert np.allclose(coder.log_volume(sents), lm.log_prob(sents), atol=1e-5)
    samples = sample_lm(lm, 10, 12, torch.Generator().manual_seed(0))
    assert len(samples) == 10 and all(len(s) <= 12 and all(t >= SPECIAL for t in s) for s in samples)


@pytest.mark.parametrize("variational", [False, True])
def test_sequence_autoencoder_learns_a_tiny_set(variational):
    sents = [[4, 5, 6], [7, 8], [9, 4, 4, 5], [6, 6]] * 16
    model = GRUSeqAutoencoder(V, latent_dim=4, emb=8, hidden=32, variational=variational,
                              word_dropout=0.1 if variational else 0.0, kl_anneal_steps=50)
    hist = fit_sequence_model(model, sents, epochs=30, seed=0, batch_size=16, lr=1e-2)
    assert hist[-1] < hist[0]
    rec = model.decode(model.encode(sents[:4]), max_len=6)
    assert sum(r == s for r, s in zip(rec, sents[:4])) >= 3
    assert model.encode(sents).shape == (64, 4)
