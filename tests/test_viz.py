import numpy as np
import pytest

from isthmus.viz import image_grid, latent_map, pyplot, save_image_grid, seed_bars, training_curves


def test_image_grid_layouts():
    g = image_grid(np.ones((5, 1, 4, 4)), ncol=3, pad=1)
    assert g.shape == (2 * 5 + 1, 3 * 5 + 1)
    rgb = image_grid(np.zeros((2, 4, 4, 3)), ncol=2)
    assert rgb.shape == (6, 11, 3)
    assert rgb[1:5, 1:5].max() == 0.0 and rgb[0, 0, 0] == 1.0  # padding is white, images placed
    with pytest.raises(ValueError, match=r"\(N, H, W\[, C\]\)"):
        image_grid(np.zeros((4, 4)))


def test_plots_write_pngs(tmp_path):
    rng = np.random.default_rng(0)
    paths = [
        save_image_grid([rng.random((3, 8, 8)), rng.random((3, 8, 8))], tmp_path / "g.png", ["a", "b"]),
        latent_map(rng.normal(size=(50, 5)), rng.integers(0, 3, 50), tmp_path / "m.png"),
        latent_map(rng.normal(size=(50, 1)), None, tmp_path / "m1.png"),
        training_curves([{"train_loss": 2.0, "val_loss": 2.5}, {"train_loss": 1.0}], tmp_path / "c.png"),
    ]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sample_panels_tiles_each_grid_and_refuses_flat_images(tmp_path):
    import matplotlib.image as mpimg

    from isthmus.viz import sample_panels

    grids = {"a": np.zeros((2, 3, 4, 4)), "b": np.ones((2, 3, 4, 4))}
    path = sample_panels(grids, tmp_path / "s.png")
    img = mpimg.imread(path)
    assert path.is_file() and img.ndim == 3 and img.shape[1] > img.shape[0]  # two panels side by side
    with pytest.raises(ValueError, match="rows, cols, H, W"):
        sample_panels({"flat": np.zeros((4, 4))}, tmp_path / "bad.png")


def test_seed_bars_draws_means_seeds_and_the_highlighted_arm():
    plt = pyplot()
    fig, ax = plt.subplots()
    seed_bars(ax, {"pca": [1.0, 3.0], "ours": [4.0, 5.0, 6.0], "empty": []}, highlight="ours", offset=0.2, width=0.4)
    bars = ax.patches
    assert [b.get_height() for b in bars] == [2.0, 5.0]  # means; the empty arm draws nothing
    assert [b.get_x() + b.get_width() / 2 for b in bars] == pytest.approx([0.2, 1.2])
    assert bars[1].get_facecolor()[:3] != bars[0].get_facecolor()[:3]  # ours stands out
    dots = [line.get_ydata().tolist() for line in ax.lines]
    assert dots == [[1.0, 3.0], [4.0, 5.0, 6.0]]  # one dot per seed
    assert [t.get_text() for t in ax.get_xticklabels()] == ["pca", "ours", "empty"]
    plt.close(fig)
