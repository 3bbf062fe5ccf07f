"""Recipe ard-vae (seed 7): smoke mode runs end to end; the verdict comes from the numbers."""

import json

from isthmus.recipes import Result, get_recipe
from isthmus.recipes.ard_vae import ARDVAE, shapes_data
from isthmus.recipes.render import write_result


def test_smoke_writes_a_valid_result(tmp_path):
    recipe = get_recipe("ard-vae")()
    result = recipe.execute("smoke", out_dir=tmp_path)
    back = Result.from_dict(json.loads(write_result(result, tmp_path).read_text()))
    assert back.recipe == "ard-vae" and back.mode == "smoke"
    assert back.verdict in ("reproduced", "partial", "not reproduced") and recipe.verdict_rule
    assert next(iter(back.metrics)) == "dim_abs_error"
    assert set(back.metrics) >= {"dim_abs_error", "exact_rate", "latent_size_spread", "dims/K2_L8", "recon_mse"}
    assert set(back.baselines) == {"vae_active_units", "vae_active_units_cov", "pca_99"}
    assert all("dims/K2_L8" in m for m in back.baselines.values())
    assert 1 <= back.metrics["dims/K2_L8"].mean <= 8
    assert back.figures == ["dims_vs_k.png"] and (tmp_path / "dims_vs_k.png").stat().st_size > 0


def test_data_has_k_varying_factors():
    x = shapes_data(2, 0, 50)
    assert x.shape == (50, 256) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def _per(ard_err, spread, vae_err, pca_err):
    return {"ard": {"dim_abs_error": ard_err, "latent_size_spread": spread},
            "vae_active_units": {"dim_abs_error": vae_err}, "vae_active_units_cov": {"dim_abs_error": vae_err},
            "pca_99": {"dim_abs_error": pca_err}}


def test_verdict_rule():
    v = ARDVAE._verdict
    assert v(_per([0.0, 0.5], [0.0, 1.0], [3.0, 3.0], [50.0, 50.0]))[0] == "reproduced"
    assert v(_per([2.0, 2.0], [0.0, 0.0], [3.0, 3.0], [50.0, 50.0]))[0] == "partial"  # (b) only
    assert v(_per([2.0, 2.0], [3.0, 3.0], [3.0, 3.0], [50.0, 50.0]))[0] == "partial"  # (c) only
    assert v(_per([4.0, 4.0], [3.0, 3.0], [3.0, 3.0], [50.0, 50.0]))[0] == "not reproduced"
