"""Image folders (PNG files written with Pillow), LeCun idx files and finding real data."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from isthmus.data import (DataError, DataNotFoundError, find_data, load_image_folder, load_mnist, load_mnist_idx,
                          load_table, read_idx, write_idx)

MNIST = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist"


def _write_png(path: Path, value: int, size=(6, 4), mode="L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color=value if mode == "L" else (value, 0, 255)).save(path)


# ---- image folders -------------------------------------------------------------------------------
def test_image_folder_round_trip(tmp_path):
    _write_png(tmp_path / "dogs" / "a.png", 255)
    _write_png(tmp_path / "cats" / "b.png", 51)
    _write_png(tmp_path / "cats" / "c.png", 0)
    (tmp_path / "cats" / "notes.txt").write_text("ignored: not an image extension")
    t = load_image_folder(tmp_path, grayscale=True)
    assert t.meta["classes"] == ["cats", "dogs"]            # sorted, as torchvision
    assert t.X.shape == (3, 1, 4, 6) and t.X.dtype == np.float32   # (N, C, H, W); PIL size is (W, H)
    assert t.y.tolist() == [0, 0, 1]
    np.testing.assert_allclose(t.X[:, 0, 0, 0], [0.2, 0.0, 1.0], atol=1e-6)
    assert t.meta["files"][2].endswith("a.png")
    rgb = load_table(tmp_path, size=(8, 8))
    assert rgb.X.shape == (3, 3, 8, 8) and 0.0 <= rgb.X.min() and rgb.X.max() <= 1.0


def test_image_folder_rgb_channels(tmp_path):
    _write_png(tmp_path / "a" / "x.png", 255, mode="RGB")
    t = load_image_folder(tmp_path)
    np.testing.assert_allclose(t.X[0, :, 0, 0], [1.0, 0.0, 1.0])  # channels R, G, B in order


def test_image_folder_errors(tmp_path):
    _write_png(tmp_path / "a" / "x.png", 10, size=(6, 4))
    _write_png(tmp_path / "a" / "y.png", 10, size=(5, 5))
    with pytest.raises(DataError, match=r"y\.png: is 5x5 but .*x\.png is 6x4.*size="):
        load_image_folder(tmp_path)
    assert load_image_folder(tmp_path, size=4).X.shape == (2, 3, 4, 4)
    (tmp_path / "b").mkdir()
    with pytest.raises(DataError, match=r"[/\\]b: class folder holds no images"):
        load_image_folder(tmp_path, size=4)
    (tmp_path / "b" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match=r"broken\.png: cannot be read as an image"):
        load_image_folder(tmp_path, size=4)
    flat = tmp_path / "flat"
    flat.mkdir()
    _write_png(flat / "lonely.png", 1)  # an image directly in root, no class folder
    with pytest.raises(DataError, match="no class sub-folders"):
        load_image_folder(flat)
    with pytest.raises(DataError, match="image folder not found"):
        load_image_folder(tmp_path / "nowhere")


# ---- idx -----------------------------------------------------------------------------------------
def _mnist_like(tmp_path: Path, n: int = 5, gz: bool = True) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    ext = ".gz" if gz else ""
    ip, lp = tmp_path / f"imgs-idx3-ubyte{ext}", tmp_path / f"lbls-idx1-ubyte{ext}"
    write_idx(ip, images)
    write_idx(lp, labels)
    return ip, lp, images, labels


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path, gz):
    ip, lp, images, labels = _mnist_like(tmp_path, gz=gz)
    assert ip.read_bytes()[:2] == (b"\x1f\x8b" if gz else b"\x00\x00")
    t = load_mnist_idx(ip, lp)
    assert t.X.shape == (5, 1, 28, 28) and t.y.tolist() == labels.tolist()
    np.testing.assert_allclose(t.X[:, 0], images / 255.0, atol=1e-7)
    assert load_table(ip).X.shape == (5, 1, 28, 28)
    # the header is spelt out by hand once, independent of write_idx
    raw = bytes([0, 0, 0x08, 1]) + (3).to_bytes(4, "big") + bytes([7, 2, 1])
    (tmp_path / "hand-idx1-ubyte").write_bytes(raw)
    assert read_idx(tmp_path / "hand-idx1-ubyte").tolist() == [7, 2, 1]
    floats = np.array([[1.5, -2.0]], dtype=np.float32)
    write_idx(tmp_path / "f.idx", floats)
    np.testing.assert_array_equal(read_idx(tmp_path / "f.idx"), floats)  # big-endian float round trip


def test_idx_errors(tmp_path):
    ip, lp, _, _ = _mnist_like(tmp_path, gz=False)
    raw = ip.read_bytes()
    (tmp_path / "magic").write_bytes(b"\x08\x03\x00\x00" + raw[4:])
    with pytest.raises(DataError, match="bad idx magic number 0x08030000"):
        read_idx(tmp_path / "magic")
    (tmp_path / "short").write_bytes(raw[:-100])
    with pytest.raises(DataError, match=r"truncated: dims \(5, 28, 28\).*3920 bytes.*found 3820"):
        read_idx(tmp_path / "short")
    (tmp_path / "short.gz").write_bytes(gzip.compress(raw)[:-40])
    with pytest.raises(DataError, match="gzip data is truncated"):
        read_idx(tmp_path / "short.gz")
    (tmp_path / "page.gz").write_bytes(b"<html>404</html>")
    with pytest.raises(DataError, match="not gzip data.*HTML"):
        read_idx(tmp_path / "page.gz")
    with pytest.raises(DataError, match="swap the images and labels"):
        load_mnist_idx(lp, ip)
    few = tmp_path / "few-idx1-ubyte"
    write_idx(few, np.zeros(3, dtype=np.uint8))
    with pytest.raises(DataError, match="has 3 labels but .* has 5 images"):
        load_mnist_idx(ip, few)


# ---- finding real data ---------------------------------------------------------------------------
def test_find_data_env_var_and_helpful_error(tmp_path, monkeypatch):
    (tmp_path / "mnist").mkdir()
    _, _, images, labels = _mnist_like(tmp_path / "mnist")
    for src, dst in (("imgs-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"), ("lbls-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz")):
        (tmp_path / "mnist" / src).rename(tmp_path / "mnist" / dst)
    monkeypatch.setenv("ISTHMUS_DATA", str(tmp_path))
    assert find_data("mnist") == tmp_path.resolve() / "mnist"   # the env var wins over ../shared/data
    t = load_mnist()
    assert len(t) == 5 and t.y.tolist() == labels.tolist()
    with pytest.raises(DataNotFoundError) as err:
        find_data("no-such-set")
    msg = str(err.value)
    assert str(tmp_path.resolve() / "no-such-set") in msg and "export ISTHMUS_DATA" in msg
    with pytest.raises(DataNotFoundError, match="no MNIST train images file"):
        load_mnist(split="train")


@pytest.mark.skipif(not MNIST.is_dir(), reason="real MNIST copy (../shared/data/mnist) not present")
def test_real_mnist_test_split(monkeypatch):
    monkeypatch.delenv("ISTHMUS_DATA", raising=False)
    t = load_mnist()
    assert t.X.shape == (10000, 1, 28, 28) and t.X.dtype == np.float32
    assert t.y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]          # published first labels
    assert np.bincount(t.y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert abs(float(t.X.mean()) - 33.79 / 255) < 1e-3
