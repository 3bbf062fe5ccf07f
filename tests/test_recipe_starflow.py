"""STARFlow recipe parts: the pixel arm's patch tokens."""

import torch

from isthmus.recipes.starflow import _pixels, _unpixels


def test_pixel_tokens_are_4x4_patches_in_raster_order_and_round_trip():
    x = torch.rand(3, 1, 16, 16)
    p = _pixels(x)
    assert p.shape == (3, 256) and p.min() >= -1 and p.max() <= 1
    tokens = p.reshape(3, 16, 16)
    # token 5 = patch row 1, column 1: pixels [4:8, 4:8]
    torch.testing.assert_close(tokens[:, 5], x[:, 0, 4:8, 4:8].reshape(3, 16) * 2 - 1)
    torch.testing.assert_close(_unpixels(p), x)
