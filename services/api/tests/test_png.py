"""The pictures' pure parts: downsampling, cutouts at the edges, the stretches, the marks' places."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from cpcs_api.web.png import (
    CANDIDATE,
    NO_DATA,
    TARGET,
    USED_STAR,
    Marks,
    cutout,
    cutout_png,
    downsample,
    grey_levels,
    thumbnail_png,
)


def _rgb(png: bytes) -> np.ndarray:
    picture = Image.open(io.BytesIO(png))
    assert picture.format == "PNG" and picture.mode == "RGB"
    return np.asarray(picture)


def _noise(shape: tuple[int, int], seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).normal(1000.0, 10.0, shape)


def test_downsample_takes_block_means_with_an_even_factor() -> None:
    image = np.arange(1200 * 900, dtype=float).reshape(900, 1200)
    reduced, factor = downsample(image, 600)
    assert factor == 2 and reduced.shape == (450, 600)
    assert reduced[0, 0] == pytest.approx(image[:2, :2].mean())
    # 1300 / 600 -> 3, made even (a Bayer mosaic's 2x2 pattern averages out): 4, and a ragged edge.
    bayer = np.tile(np.array([[10.0, 50.0], [50.0, 90.0]]), (650, 650))
    reduced, factor = downsample(bayer, 600)
    assert factor == 4 and reduced.shape == (325, 325)
    assert np.allclose(reduced, 50.0)
    small, factor = downsample(np.ones((100, 80)), 600)
    assert factor == 1 and small.shape == (100, 80)


def test_downsample_leaves_nan_out_of_a_block() -> None:
    image = np.ones((8, 8))
    image[0, 0] = np.nan
    image[4:, 4:] = np.nan
    reduced, factor = downsample(image, 2)
    assert factor == 4
    assert reduced[0, 0] == 1.0 and np.isnan(reduced[1, 1])


def test_cutout_is_centred_and_padded_with_nan_beyond_the_frame() -> None:
    image = np.arange(100, dtype=float).reshape(10, 10)
    inner = cutout(image, 4.6, 5.2, 3)  # nearest pixel (5, 5)
    assert np.array_equal(inner, image[4:7, 4:7])
    corner = cutout(image, 0.0, 9.0, 4)  # x from -2, y from 7
    assert corner.shape == (4, 4)
    assert np.isnan(corner[:, :2]).all() and np.isnan(corner[3:, :]).all()
    assert np.array_equal(corner[:3, 2:], image[7:10, 0:2])
    assert np.isnan(cutout(image, 50.0, 50.0, 5)).all()


def test_direct_stretch_shows_a_faint_star_and_keeps_nan() -> None:
    image = _noise((64, 64))
    image[32, 32] += 80.0  # 8 sigma
    image[0, 0] = np.nan
    levels = grey_levels(image)
    assert np.isnan(levels[0, 0]) and np.nanmin(levels) >= 0 and np.nanmax(levels) <= 1
    assert levels[32, 32] > np.nanpercentile(levels, 99)
    assert 0.1 < np.nanmedian(levels) < 0.8  # the sky is neither black nor white


def test_difference_stretch_is_symmetric_about_zero() -> None:
    residual = np.random.default_rng(5).normal(0.0, 10.0, (48, 48))
    residual[24, 24], residual[10, 10] = 500.0, -500.0
    levels = grey_levels(residual, difference=True)
    assert np.median(levels) == pytest.approx(0.5, abs=0.02)
    assert levels[24, 24] == pytest.approx(1.0) and levels[10, 10] == pytest.approx(0.0)


def test_cutout_png_is_its_own_size_y_up_with_no_data_coloured() -> None:
    image = _noise((20, 30))
    image[0, :] = np.nan  # the bottom row of the frame
    picture = _rgb(cutout_png(image))
    assert picture.shape == (20, 30, 3)
    assert (picture[-1] == NO_DATA).all()  # drawn at the bottom of the picture
    assert not (picture[0] == NO_DATA).all(axis=1).any()


def test_thumbnail_marks_the_target_stars_and_candidates_where_they_are() -> None:
    image = _noise((1000, 1200))
    marks = Marks(target_xy=(300.0, 700.0), used_stars_xy=[(900.0, 200.0)], candidates_xy=[(100.0, 100.0)])
    picture = _rgb(thumbnail_png(image, marks, max_px=600))
    assert picture.shape == (500, 600, 3)

    def centre_of(colour: tuple[int, int, int]) -> tuple[float, float]:
        rows, cols = np.nonzero(np.all(picture == np.array(colour, dtype=np.uint8), axis=2))
        assert rows.size > 0, colour
        return float(np.mean(cols)), float(np.mean(rows))

    # frame (x, y) -> picture ((x + 0.5) / 2, 500 - (y + 0.5) / 2)
    for colour, (x, y) in ((TARGET, (300, 700)), (USED_STAR, (900, 200)), (CANDIDATE, (100, 100))):
        px, py = centre_of(colour)
        assert px == pytest.approx((x + 0.5) / 2, abs=1.0) and py == pytest.approx(
            500 - (y + 0.5) / 2, abs=1.0
        )


def test_thumbnail_of_a_blank_frame_draws() -> None:
    picture = _rgb(thumbnail_png(np.full((50, 50), np.nan), Marks(), max_px=600))
    assert picture.shape == (50, 50, 3) and (picture == NO_DATA).all()
