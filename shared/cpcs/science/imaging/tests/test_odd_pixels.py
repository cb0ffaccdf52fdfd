"""Colour mosaics, the PSF-fitted cosmic-ray contrast and saturation below hot pixels."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cpcs.science.imaging.background import DEFAULT_COSMIC_CONTRAST, cosmic_contrast_for_psf
from cpcs.science.imaging.bayer import bayer_pattern_from_cards, green_plane
from cpcs.science.imaging.header import estimate_saturation_level


def _mosaic(green_offset: int, shape: tuple[int, int] = (64, 80)) -> np.ndarray:
    """Sky of 1000 (green), 600 (red), 400 (blue) ADU with the green pair on the given diagonal."""
    rng = np.random.default_rng(3)
    data = np.empty(shape, dtype=np.float32)
    data[0::2, green_offset::2] = 1000.0
    data[1::2, 1 - green_offset :: 2] = 1000.0
    data[0::2, 1 - green_offset :: 2] = 600.0
    data[1::2, green_offset::2] = 400.0
    return data + rng.normal(0.0, 5.0, shape).astype(np.float32)


def test_patterns_are_read_from_bayerpat_or_a_filter_card() -> None:
    assert bayer_pattern_from_cards({"BAYERPAT": "rggb "}) == "RGGB"
    assert bayer_pattern_from_cards({"FILTER": "GBRG"}) == "GBRG"
    assert bayer_pattern_from_cards({"FILTER": "V"}) is None
    assert bayer_pattern_from_cards({}) is None


@pytest.mark.parametrize(("pattern", "green_offset"), [("RGGB", 1), ("RGGB", 0), ("GRBG", 0), ("GRBG", 1)])
def test_the_green_pixels_are_found_whatever_the_header_says(pattern: str, green_offset: int) -> None:
    data = _mosaic(green_offset)
    plane = green_plane(data, pattern, saturation_adu=None)
    assert plane.green_offset == green_offset
    assert plane.data.shape == (32, 40)
    assert np.median(plane.data) == pytest.approx(2000.0, abs=5.0)
    assert plane.to_frame(3.0, 4.0) == (6.5, 8.5)
    assert plane.from_frame(6.5, 8.5) == (3.0, 4.0)


def test_a_superpixel_with_a_saturated_green_pixel_is_saturated() -> None:
    data = _mosaic(1)
    data[10, 21] = 4000.0  # a green site (row 10, odd column)
    plane = green_plane(data, "RGGB", saturation_adu=3000.0)
    assert plane.saturation_adu == 6000.0
    assert plane.data[5, 10] == 6000.0
    assert np.count_nonzero(plane.data >= 6000.0) == 1


def test_the_cosmic_contrast_grows_as_the_psf_sharpens() -> None:
    contrasts = [cosmic_contrast_for_psf(f, 3.0) for f in (0.8, 1.0, 1.3, 1.6, 2.5, 4.0)]
    assert all(a > b for a, b in itertools.pairwise(contrasts[:5]))
    assert contrasts[-1] == DEFAULT_COSMIC_CONTRAST == contrasts[-2]
    assert cosmic_contrast_for_psf(float("nan")) == DEFAULT_COSMIC_CONTRAST
    # a Gaussian core is sharper than a Moffat of the same FWHM: it needs a larger contrast
    assert cosmic_contrast_for_psf(1.2, None) > cosmic_contrast_for_psf(1.2, 2.5)


def test_saturation_is_found_below_a_few_hot_pixels() -> None:
    rng = np.random.default_rng(5)
    data = np.round(rng.normal(2200.0, 30.0, (300, 300)))
    data[100:110, 100:110] = 13583.0  # a saturated star: the white level
    data[5, 5], data[7, 9] = 13863.0, 13639.0  # two hot pixels above it
    assert estimate_saturation_level(data) == pytest.approx(0.98 * 13583.0)
    clean = np.round(rng.normal(2200.0, 30.0, (300, 300)))
    clean[5, 5] = 13863.0
    assert estimate_saturation_level(clean) is None
