"""Recipe coarse-to-fine-tokens (seed 39): priors, verdict from numbers, and a smoke run with a valid result."""

import json

import torch

from isthmus.recipes import Result, get_recipe
from isthmus.recipes.coarse_to_fine_tokens import ARMS, TokenTransformer, verdict
from isthmus.recipes.render import write_result


def test_causal_prior_does_not_see_the_future_and_samples_in_range():
    torch.manual_seed(0)
    m = TokenTransformer(7, 7, 5, 10, 16, 1, causal=True).eval()
    a = torch.randint(0, 7, (2, 5))
    b = a.clone()
    b[:, 3:] = (b[:, 3:] + 1) % 7
    y = torch.tensor([1, 2])
    with torch.no_grad():
        assert torch.allclose(m(a, y)[:, :4], m(b, y)[:, :4], atol=1e-5)  # logits up to t=3 ignore tokens >= 3
    s = m.sample(y, 5, torch.Generator().manual_seed(0))
    assert s.shape == (2, 5) and int(s.min()) >= 0 and int(s.max()) < 7


def _m(fd, is_, rand_fd, base_fd=10.0, base_is=5.0):
    row = lambda f, i: {"frechet": f, "inception_score": i, "fine_token_acc": 0.5}  # noqa: E731
    return {"ctf": row(fd, is_), "direct_ar": row(base_fd, base_is), "ctf_random": row(rand_fd, is_)}


def test_verdict_from_numbers():
    assert verdict(_m(8.0, 6.0, 9.0))[0] == "reproduced"
    assert verdict(_m(8.0, 6.0, 8.1))[0] == "partial"  # random clusters not worse
    assert verdict(_m(9.8, 6.0, 12.0))[0] == "partial"  # IS only
    assert verdict(_m(9.8, 5.1, 12.0))[0] == "not reproduced"


def test_smoke_writes_a_valid_result(tmp_path):
    recipe = get_recipe("coarse-to-fine-tokens")()
    result = recipe.execute("smoke", out_dir=tmp_path)
    back = Result.from_dict(json.loads(write_result(result, tmp_path).read_text()))
    assert back.recipe == "coarse-to-fine-tokens" and back.mode == "smoke" and back.verdict_reason
    assert list(back.metrics)[0] == "frechet"
    assert set(back.baselines) == set(ARMS) - {"ctf"}
    assert back.figures and all((tmp_path / f).is_file() for f in back.figures)
    assert recipe.verdict_rule
