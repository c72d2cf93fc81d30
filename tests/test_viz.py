"""Image grids (`show_images`, `image_grid`): every image, in order, with its title above it."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from course_utils.viz import image_grid, show_images  # noqa: E402


def test_image_grid_tiles_row_by_row_on_white_with_room_above_each_row():
    images = torch.stack([torch.full((3, 2, 2), v) for v in (0.1, 0.2, 0.3)])
    grid = image_grid(images, ncols=2, gap=2, top=3)
    assert grid.shape == (2 * (3 + 2 + 2), 2 * (2 + 2), 3)
    tile = 3 + 2 + 2
    assert np.allclose(grid[3 + 1:3 + 3, 1:3], 0.1)  # row 0, col 0: below its title band, inside its gap
    assert np.allclose(grid[3 + 1:3 + 3, 5:7], 0.2)
    assert np.allclose(grid[tile + 4:tile + 6, 1:3], 0.3)  # row 1, col 0
    assert np.allclose(grid[tile + 4:tile + 6, 5:7], 1.0)  # no fourth image: white
    assert np.allclose(grid[:3], 1.0) and np.allclose(grid[:, 0], 1.0)  # the title band and the gaps are white
    assert (np.isclose(grid, 1.0).all(-1)).sum() == grid.shape[0] * grid.shape[1] - 3 * 4


def test_image_grid_shows_one_channel_in_gray_and_clamps():
    images = torch.tensor([[[[-1.0, 0.5], [2.0, 0.25]]]])
    grid = image_grid(images, ncols=1, gap=0)
    assert np.allclose(grid[..., 0], grid[..., 2]) and np.allclose(grid[..., 0], [[0, 0.5], [1, 0.25]])


def test_show_images_titles_each_image_above_it_on_one_axes():
    images = torch.rand(5, 3, 8, 8)
    titles = [f"image {i}\nsecond line" for i in range(5)]
    fig = show_images(images, titles, ncols=3, scale=1.5, suptitle="five")
    try:
        (ax,) = fig.axes
        assert [t.get_text() for t in ax.texts] == titles
        assert fig._suptitle.get_text() == "five"
        assert fig.get_size_inches()[0] == pytest.approx(3 * 1.5)
        picture = ax.images[0].get_array()
        column = picture.shape[1] / 3
        for i, text in enumerate(ax.texts):
            x, y = text.get_position()
            row, col = divmod(i, 3)
            assert col * column <= x <= (col + 1) * column  # over its own column
            below = picture[int(y) + 2:, int(x)]  # its image starts just below it
            assert not np.allclose(below[:8], 1.0)
            assert np.allclose(picture[max(0, int(y) - 1), :], 1.0)  # a white band holds the title
            assert text.get_va() == "bottom" and text.get_ha() == "center"
        assert len({round(t.get_position()[1]) for t in ax.texts}) == 2  # two rows
    finally:
        plt.close(fig)


def test_show_images_without_titles_and_with_fewer_images_than_columns():
    fig = show_images(torch.rand(2, 1, 4, 4), ncols=8)
    try:
        (ax,) = fig.axes
        assert not ax.texts and ax.images[0].get_array().shape[:2] == (5, 10)  # 2 columns, a 1-pixel gap each
    finally:
        plt.close(fig)
