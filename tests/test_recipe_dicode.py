"""DiCoDe recipe parts: the validity metric and the clip layout."""

import numpy as np
import torch

from isthmus.recipes.dicode import CLIP, KeyframeTokenizer, clips, validity


def test_validity_accepts_real_clips_and_rejects_blur_and_wrong_counts():
    x, counts, _ = clips(5, 0)
    assert x.shape == (20, CLIP, 1, 16, 16)
    assert validity(x, counts) == 1.0
    assert validity(x, counts + 1) == 0.0
    grown = x.clone()
    grown[:, 1:-1] = torch.nn.functional.max_pool2d(grown[:, 1:-1].reshape(-1, 1, 16, 16), 3, 1, 1).reshape(
        grown[:, 1:-1].shape
    )  # sprites 5x5 instead of 3x3: areas 25 > 1.25 x 9
    assert validity(grown, counts) < 0.2
    assert validity(np.full_like(x.numpy(), 0.3), counts) == 0.0  # grey blur: no blob above 0.5


def test_clips_share_boundary_keyframes():
    x, _, _ = clips(3, 0)
    n = 3
    # clip i of a sequence ends on the frame clip i + 1 starts with
    assert torch.equal(x[:n, -1], x[n : 2 * n, 0]) and torch.equal(x[2 * n : 3 * n, -1], x[3 * n :, 0])


def test_tokenizer_gives_64_numbers_per_keyframe():
    torch.manual_seed(0)
    assert KeyframeTokenizer()(torch.rand(2, 1, 16, 16)).shape == (2, 64)


def test_tokenizer_tells_where_the_sprite_is():
    """The resampler ignores input order: without positions, a sprite in the top-left patch and the same
    sprite in the bottom-right patch gave the same tokens (both decoders then drew blank frames)."""
    torch.manual_seed(0)
    tok = KeyframeTokenizer().eval()
    a, b = torch.zeros(2, 1, 1, 16, 16)
    a[..., 0:3, 0:3] = 1
    b[..., 12:15, 12:15] = 1
    assert not torch.allclose(tok(a), tok(b), atol=1e-4)


def test_keyframe_validity_scores_only_the_chosen_frames():
    x, counts, _ = clips(4, 0)
    y = x.clone()
    y[:, 1:-1] = 0  # blank middle frames
    assert validity(y, counts) == 0.0 and validity(y, counts, frames=[0, CLIP - 1]) == 1.0
