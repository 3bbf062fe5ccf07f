"""Recipe prototype-net (seed 5): the interpretability measure (smoke: tests/test_recipes_smoke.py)."""

import torch

from isthmus.recipes.prototype_net import prototype_report, train_judge, train_prototype


def _toy():
    g = torch.Generator().manual_seed(0)
    return torch.rand(64, 16, generator=g), torch.randint(0, 10, (64,), generator=g)


def test_prototype_report_ranges_and_paper_init():
    x, y = _toy()
    model, curve = train_prototype(x, y, 0, 1, True)
    assert len(curve) == 1
    rep = prototype_report(model, train_judge(x, y, 1), x, pixel_scale=1.0)
    assert rep["decoded"].shape == (15, 16) and 0 <= rep["proto_judge_agreement"] <= 1
    assert rep["proto_pixel_nn_ratio"] > 0


def test_pixel_ratio_is_blind_to_latent_scale_and_sees_pixels():
    """R2 can shrink the latent space; the pixel measure must not move when only the latent scale changes,
    and must move when the decoded prototypes move away from the data."""
    x, y = _toy()
    model, _ = train_prototype(x, y, 0, 1, True)
    judge = train_judge(x, y, 1)
    base = prototype_report(model, judge, x, pixel_scale=1.0)["proto_pixel_nn_ratio"]
    with torch.no_grad():  # scale the code space by 10 (encoder out, prototypes, decoder in): same decodings
        enc_last = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Linear)][-1]
        dec_first = [m for m in model.decoder.modules() if isinstance(m, torch.nn.Linear)][0]
        enc_last.weight.mul_(10), enc_last.bias.mul_(10), model.bottleneck.prototypes.mul_(10)
        dec_first.weight.div_(10)
    scaled = prototype_report(model, judge, x, pixel_scale=1.0)["proto_pixel_nn_ratio"]
    assert abs(scaled - base) < 1e-4 * max(1.0, base)
    far = prototype_report(model, judge, x + 5.0, pixel_scale=1.0)["proto_pixel_nn_ratio"]  # data moved away
    assert far > base + 10
