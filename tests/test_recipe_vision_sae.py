"""Recipe vision-sae (seed 25): ontology/OOD helpers, the verdict rule, and a smoke run."""

import json

import numpy as np
import torch

from isthmus.recipes import Result, get_recipe
from isthmus.recipes.render import write_result
from isthmus.recipes.vision_sae import CLASS_NAMES, knn_score, ontology_distance, ontology_scores, verdict

torch.set_num_threads(1)


def test_ontology_distance_is_a_tree_metric():
    d = ontology_distance()
    sq, tri, ell = (CLASS_NAMES.index(c) for c in ("square", "triangle", "ellipse"))
    assert d.shape == (9, 9) and (d == d.T).all() and (np.diag(d) == 0).all()
    assert d[sq, tri] == 1 and d[sq, ell] == 2 and d[0, 1] == 2 and d[0, sq] == 3


def test_ontology_scores_recover_a_planted_hierarchy():
    rng = np.random.default_rng(0)
    sup = np.array([[1, 0, 0, 0]] * 5 + [[0, 1, 1, 0]] * 2 + [[0, 1, 0, 1]] * 2, dtype=float)  # class → features
    y = np.repeat(np.arange(9), 40)
    codes = np.hstack([sup[y] * 3, rng.normal(size=(len(y), 9)) * 0.05 + np.eye(9)[y]])
    s = ontology_scores(np.maximum(codes, 0), y)
    assert s["ontology_spearman"] > 0.7 and s["superclass_ari"] == 1.0
    noise = ontology_scores(np.abs(rng.normal(size=(len(y), 20))), y)
    assert noise["ontology_spearman"] < s["ontology_spearman"]


def test_knn_score_is_higher_far_from_training_data():
    train = torch.tensor([[1.0, 0.0], [0.9, 0.1]])
    s = knn_score(train, torch.tensor([[1.0, 0.05], [0.0, 1.0]]), k=2)
    assert s[1] > s[0]


def test_verdict_from_numbers():
    base = {"ood_auroc_knn": 0.8, "ontology_spearman": 0.5}
    assert verdict({"ood_auroc_knn": 0.9, "ontology_spearman": 0.7}, base, base)[0] == "reproduced"
    assert verdict({"ood_auroc_knn": 0.9, "ontology_spearman": 0.505}, base, base)[0] == "partial"
    assert verdict({"ood_auroc_knn": 0.9, "ontology_spearman": 0.3}, base, base)[0] == "not reproduced"
    assert verdict(base, base, {"ood_auroc_knn": 0.95, "ontology_spearman": 0.5})[0] == "not reproduced"


def test_smoke_writes_a_valid_result(tmp_path):
    recipe = get_recipe("vision-sae")()
    result = recipe.execute("smoke", out_dir=tmp_path)
    back = Result.from_dict(json.loads(write_result(result, tmp_path).read_text()))
    assert back.recipe == "vision-sae" and back.verdict_reason and recipe.verdict_rule
    assert list(back.metrics)[:2] == ["ood_auroc_knn", "ood_auroc_recon"]
    assert set(back.baselines) == {"raw_embedding", "random_sae", "pca"}
    assert back.figures and all((tmp_path / f).is_file() for f in back.figures)
