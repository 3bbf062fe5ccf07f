"""Recipe coarse-to-fine-tokens (seed 39): cluster masks, the token transformer under Trainer, and the
feature classifier's disjoint training rows. (The shared parametrized smoke test runs the recipe.)"""

import numpy as np
import torch

from isthmus.models import TokenTransformer
from isthmus.recipes.coarse_to_fine_tokens import Settings, clusters, member_mask, setup
from isthmus.train import Trainer, TrainerConfig


def test_member_mask_and_random_clusters_keep_sizes():
    cb = torch.randn(40, 4)
    lab = clusters(cb, 5)
    assert sorted(np.bincount(lab["ctf"])) == sorted(np.bincount(lab["ctf_random"]))
    m = member_mask(lab["ctf"], 40)
    assert m.shape == (5, 40) and ((m == 0).sum(0) == 1).all()  # every fine token in exactly one cluster


def test_masked_one_pass_predictor_learns_and_never_leaves_its_cluster():
    torch.manual_seed(0)
    K, C, T = 12, 3, 4
    labels = np.arange(K) % C
    fine = torch.randint(0, K, (256, T))
    coarse = torch.as_tensor(labels)[fine]
    y = torch.zeros(256, dtype=torch.long)
    model = TokenTransformer(C, K, T, 1, 16, 1, causal=False, member_mask=member_mask(labels, K))
    res = Trainer(model, TrainerConfig(epochs=3, batch_size=64, progress=False, device="cpu")).fit((coarse, fine, y))
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    pred = model.eval().predict_tokens(coarse, y, torch.Generator().manual_seed(0))
    assert (torch.as_tensor(labels)[pred] == coarse).all()


def test_feature_classifier_never_sees_the_fd_reference():
    st = setup(Settings(n_train=400, n_eval=200, codebook=64, coarse=8, vq_epochs=1, max_epochs=2, d_model=16,
                        per_class=10, clf_epochs=2))
    assert not set(st["data"]["eval_rows"].tolist()) & set(st["clf"].train_indices_.tolist())
    assert len(st["clf"].train_indices_) + len(st["data"]["eval_rows"]) == st["data"]["n_rows"]
