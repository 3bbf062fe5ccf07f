"""Recipe mm-gpvae (seed 8): smoke mode runs end to end; the verdict comes from the numbers."""

import json

from isthmus.recipes import Result, get_recipe
from isthmus.recipes.mm_gpvae import ARMS, MMGPVAE
from isthmus.recipes.render import write_result


def test_smoke_writes_a_valid_result(tmp_path):
    recipe = get_recipe("mm-gpvae")()
    result = recipe.execute("smoke", out_dir=tmp_path)
    back = Result.from_dict(json.loads(write_result(result, tmp_path).read_text()))
    assert back.recipe == "mm-gpvae" and back.mode == "smoke" and recipe.verdict_rule
    assert back.verdict in ("reproduced", "partial", "not reproduced")
    assert set(back.metrics) >= {"r2_shared", "r2_image", "r2_neural", "r2_shared_block", "image_mse", "rate_r2"}
    assert set(back.baselines) == set(ARMS) - {"mmgpvae"}
    assert "image_mse" not in back.baselines["neural_only"] and "rate_r2" not in back.baselines["image_only"]
    assert all(-1.0 <= v.mean <= 1.0 for k, v in back.metrics.items() if k.startswith("r2_"))
    assert back.figures == ["latents.png"] and (tmp_path / "latents.png").stat().st_size > 0


def _per(mm_shared, img, neu, mm_blocks, time_blocks):
    block = lambda vals: {f"r2_{k}_block": [v] for k, v in zip(("shared", "image", "neural"), vals)}  # noqa: E731
    return {"mmgpvae": {**block(mm_blocks), "r2_shared_block": [mm_shared]},
            "image_only": {"r2_shared": [img]}, "neural_only": {"r2_shared": [neu]},
            "mm_time": block(time_blocks), "plain_vae": {"r2_shared": [0.0]}}


def test_verdict_rule():
    v = MMGPVAE._verdict
    assert v(_per(0.9, 0.5, 0.6, (0.9, 0.8, 0.7), (0.5, 0.5, 0.5)))[0] == "reproduced"
    assert v(_per(0.5, 0.5, 0.6, (0.5, 0.8, 0.7), (0.5, 0.5, 0.5)))[0] == "partial"  # (b) only
    assert v(_per(0.9, 0.5, 0.6, (0.9, 0.1, 0.1), (0.5, 0.5, 0.5)))[0] == "partial"  # (a) only
    assert v(_per(0.1, 0.5, 0.6, (0.1, 0.1, 0.1), (0.5, 0.5, 0.5)))[0] == "not reproduced"
