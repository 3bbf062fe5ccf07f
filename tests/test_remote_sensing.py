"""Remote-sensing loaders (Statlog Landsat, RGB GeoTIFF) and patch features."""

import numpy as np
import pytest

from isthmus.data.paths import DataNotFoundError, find_data
from isthmus.data.remote_sensing import load_geotiff_rgb, load_statlog_landsat, pixel_patches
from isthmus.data.validation import DataError


def _have(name):
    try:
        find_data(name)
        return True
    except DataNotFoundError:
        return False


@pytest.mark.skipif(not _have("statlog-landsat"), reason="shared Statlog Landsat data not present")
def test_statlog_matches_uci_counts():
    tr, te = load_statlog_landsat(split="train"), load_statlog_landsat(split="test")
    assert tr.X.shape == (4435, 36) and te.X.shape == (2000, 36)
    vals, counts = np.unique(tr.y, return_counts=True)
    assert dict(zip(vals.tolist(), counts.tolist())) == {1: 1072, 2: 479, 3: 961, 4: 415, 5: 470, 7: 1038}
    assert len(load_statlog_landsat(split="both")) == 6435


@pytest.mark.skipif(not _have("landsat7-crop"), reason="shared Landsat 7 crop not present")
def test_geotiff_rgb_and_mask():
    img, valid = load_geotiff_rgb()
    assert img.shape == (718, 791, 3) and img.dtype == np.uint8
    assert 0.6 < valid.mean() < 0.7  # ~32.5 % nodata collar


def test_loader_errors(tmp_path):
    with pytest.raises(DataError, match="split"):
        load_statlog_landsat(tmp_path, split="val")
    with pytest.raises(DataNotFoundError):
        load_statlog_landsat(tmp_path)
    (tmp_path / "sat.trn").write_text("1 2 3\n4 5 6\n")
    with pytest.raises(DataError, match="37 columns"):
        load_statlog_landsat(tmp_path)
    with pytest.raises(DataNotFoundError):
        load_geotiff_rgb(tmp_path / "missing.tif")


def test_pixel_patches_layout():
    img = np.arange(4 * 5 * 2, dtype=np.float32).reshape(4, 5, 2)
    P = pixel_patches(img, 3)
    assert P.shape == (20, 18)
    np.testing.assert_array_equal(P[:, 8:10], img.reshape(20, 2))  # centre pixel = 5th of 9
    np.testing.assert_array_equal(P[1 * 5 + 1, 0:2], img[0, 0])  # top-left neighbour
