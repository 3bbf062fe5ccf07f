"""Recipe vae-latent-quantization-defense (seed 35): smoke run, schema, attacks and the BPDA path."""

import json

import torch

from isthmus.models import AutoEncoder, Classifier
from isthmus.recipes import Result, get_recipe
from isthmus.recipes.render import write_result
from isthmus.recipes.vae_latent_quantization_defense import verdict
from isthmus.tasks.adversarial import Purified, accuracy, fgsm, pgd


def test_smoke_writes_a_valid_result(tmp_path):
    recipe = get_recipe("vae-latent-quantization-defense")()
    result = recipe.execute("smoke", out_dir=tmp_path)
    back = Result.from_dict(json.loads(write_result(result, tmp_path).read_text()))
    assert back.recipe == "vae-latent-quantization-defense" and back.mode == "smoke"
    assert back.verdict in ("reproduced", "partial", "not reproduced") and back.verdict_reason
    assert list(back.metrics)[:3] == ["pgd_eps0.1/adaptive", "pgd_eps0.1/transfer", "clean_acc"]
    assert set(back.baselines) == {"undefended", "ae_purifier", "vae_jacobian"}
    assert back.figures and all((tmp_path / f).is_file() for f in back.figures)


def _clf():
    torch.manual_seed(0)
    lin = torch.nn.Linear(12, 3)
    with torch.no_grad():
        lin.weight.mul_(10.0)
        lin.bias.zero_()
    return Classifier(lin).eval()


def test_attacks_stay_in_the_ball_and_hurt():
    clf, x = _clf(), torch.rand(64, 12)
    y = clf(x).argmax(1)
    for adv in (fgsm(clf, x, y, 0.1), pgd(clf, x, y, 0.1, steps=5)):
        assert (adv - x).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert len(y.unique()) > 1
    assert accuracy(clf, pgd(clf, x, y, 0.3, steps=10), y) < accuracy(clf, fgsm(clf, x, y, 0.02), y) <= 1.0


def test_purifier_gradient_passes_the_quantizer_straight_through():
    torch.manual_seed(0)
    ae = AutoEncoder.mlp(12, latent_dim=3, hidden=(16,), bottleneck="quantized_gaussian", step=0.5)
    p = Purified(ae, _clf())
    x = torch.rand(8, 12, requires_grad=True)
    p(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # BPDA: round() does not zero the gradient
    assert not any(q.requires_grad for q in p.parameters()) and not p.training


def test_verdict_from_numbers():
    k_a, k_t = "pgd_eps0.1/adaptive", "pgd_eps0.1/transfer"
    arm = lambda c, a, t: {"clean_acc": [c] * 3, k_a: [a] * 3, k_t: [t] * 3}  # noqa: E731
    v = {"undefended": arm(0.95, 0.05, 0.05), "ae_purifier": arm(0.93, 0.1, 0.4), "qvae": arm(0.93, 0.5, 0.6)}
    assert verdict(v, 3)[0] == "reproduced"
    assert verdict({**v, "qvae": arm(0.93, 0.12, 0.6)}, 3)[0] == "partial"  # masking: transfer only
    assert verdict({**v, "qvae": arm(0.80, 0.5, 0.6)}, 3)[0] == "not reproduced"  # clean accuracy lost
