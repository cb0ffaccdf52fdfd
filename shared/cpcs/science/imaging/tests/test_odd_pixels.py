"""Colour mosaics, the PSF-fitted cosmic-ray contrast, saturation below hot pixels and saturated cores
repaired by another pipeline."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cpcs.science.imaging._synthetic import star_profile
from cpcs.science.imaging.background import (
    DEFAULT_COSMIC_CONTRAST,
    MaskBit,
    cosmic_contrast_for_psf,
    estimate_background,
    pixel_mask_bits,
)
from cpcs.science.imaging.bayer import bayer_pattern_from_cards, green_plane
from cpcs.science.imaging.detection import detect_sources
from cpcs.science.imaging.header import estimate_saturation_level
from cpcs.simulation.image_simulator import simulate_image

PIXEL_SCALE = 0.6  # the simulator's default, arcsec/px


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


def _repair_core_like_sdss(data: np.ndarray, x: int, y: int, sky: float) -> None:
    """What SDSS frames do to a saturated star (measured on the r frame of M2): the three rows
    through the core become a band fainter than the star's wings, with spikes left in the middle row."""
    wing_above = data[y - 2, x - 3 : x + 4] - sky
    wing_below = data[y + 2, x - 3 : x + 4] - sky
    data[y - 1, x - 3 : x + 4] = sky + 0.3 * wing_above
    data[y + 1, x - 3 : x + 4] = sky + 0.3 * wing_below
    data[y, x - 3 : x + 4] = sky + 0.3 * wing_above
    data[y, x - 1 : x + 2] = sky + np.array([1.2, 1.8, 0.5]) * wing_above[3]


def test_repaired_saturated_cores_are_saturated_not_cosmic_and_cosmic_rays_stay_cosmic() -> None:
    fwhm_px, gain = 1.9, 1.5
    image = simulate_image(
        5,
        shape=(768, 768),
        fwhm_arcsec=fwhm_px * PIXEL_SCALE,
        gain_e_per_adu=gain,
        n_cosmics=300,
        n_hot_pixels=100,
        target=None,
    )
    rng = np.random.default_rng(8)
    data = np.array(image.data, dtype=np.float32)
    sky = float(np.median(data))
    # six stars of 2-4e5 e- (peaks of 25-50k ADU) on empty sky, whose cores are then repaired the
    # SDSS way
    size = 12
    empty = [
        (cx, cy)
        for cy in range(40, 740, 60)
        for cx in range(40, 740, 60)
        if np.max(data[cy - size : cy + size + 1, cx - size : cx + size + 1]) < sky + 200.0
    ]
    assert len(empty) >= 6
    x = np.array([cx for cx, _ in empty[:: len(empty) // 6][:6]]) + rng.uniform(-0.5, 0.5, 6)
    y = np.array([cy for _, cy in empty[:: len(empty) // 6][:6]]) + rng.uniform(-0.5, 0.5, 6)
    dy, dx = np.mgrid[-size : size + 1, -size : size + 1].astype(np.float64)
    for xs, ys, flux_e in zip(x, y, np.linspace(2e5, 4e5, x.size), strict=True):
        ix, iy = round(xs), round(ys)
        star_e = flux_e * star_profile(dx + ix - xs, dy + iy - ys, fwhm_px, 3.0)
        data[iy - size : iy + size + 1, ix - size : ix + size + 1] += rng.poisson(star_e) / gain
        _repair_core_like_sdss(data, ix, iy, sky)
    x, y = np.round(x), np.round(y)
    background = estimate_background(data)
    bits = pixel_mask_bits(data, saturation_adu=None, background=background)
    for xs, ys in zip(x.astype(int), y.astype(int), strict=True):
        core = bits[ys - 1 : ys + 2, xs - 3 : xs + 4]
        assert np.all(core & MaskBit.SATURATED) and not np.any(core & MaskBit.COSMIC)
    # the cosmic rays and hot pixels are still cosmic, none taken for a repaired core
    cosmic, hot = image.truth.cosmic_ray_pixels, image.truth.hot_pixels
    for pixels in (cosmic, hot):
        found = bits[pixels[:, 1], pixels[:, 0]]
        assert ((found & MaskBit.COSMIC) > 0).mean() > 0.9
    elsewhere = np.ones(data.shape, dtype=bool)
    for xs, ys in zip(x.astype(int), y.astype(int), strict=True):
        elsewhere[ys - 8 : ys + 9, xs - 8 : xs + 9] = False
    assert not np.any(bits[elsewhere] & MaskBit.SATURATED)
    # each repaired star is one detection, flagged at its centre
    detections = detect_sources(data, background, bits & np.uint8(~MaskBit.SATURATED & 0xFF))
    found_x, found_y = np.asarray(detections.table["x"]), np.asarray(detections.table["y"])
    for xs, ys in zip(x, y, strict=True):
        assert np.count_nonzero(np.hypot(found_x - xs, found_y - ys) < 4.0) == 1
