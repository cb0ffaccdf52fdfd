"""Undersampled and colour-mosaic frames on the simulator: stars kept, positions and magnitudes right.

Before the cosmic-ray test followed the PSF, a 1 px FWHM frame ended ``too_few_stars`` and at 1.3 px
the target itself was masked (6 mag off).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from cpcs.science.field_calibration import calibrate_field
from cpcs.science.image_reduction import ImageReductionResult, reduce_image
from cpcs.science.imaging.background import (
    DEFAULT_COSMIC_CONTRAST,
    MaskBit,
    cosmic_contrast_for_psf,
    estimate_background,
    pixel_mask_bits,
)
from cpcs.science.imaging.header import standardise_header
from cpcs.science.imaging.photometry import SourceFlag
from cpcs.simulation.image_simulator import SimulatedImage, simulate_image

PIXEL_SCALE = 0.6  # the simulator's default, arcsec/px


def _reduce(image: SimulatedImage) -> tuple[ImageReductionResult, float]:
    """Reduce and calibrate against PS1 r; returns the result and the target's error (mag)."""
    target = image.target
    assert target is not None
    result = reduce_image(
        image.data,
        standardise_header(image.header),
        image.references["Gaia"],
        target_ra_deg=target.ra_deg,
        target_dec_deg=target.dec_deg,
    )
    sources = result.sources
    field = calibrate_field(
        np.asarray(sources["RA"]),
        np.asarray(sources["DEC"]),
        np.asarray(sources["MAG_APER"]),
        np.asarray(sources["MAGERR_APER"]),
        target_ra_deg=target.ra_deg,
        target_dec_deg=target.dec_deg,
        references={"PS1": image.references["PS1"]},
        forced_target=result.forced_target(),
        force_filter="PS1/r",
    )
    truth = image.truth.band("PS1", "r")
    expected = target.true_mag - truth.colour_term * target.true_colour  # the server assumes colour 0
    return result, float(field.target.mag - expected)


def _bright_stars_found(image: SimulatedImage, result: ImageReductionResult) -> float:
    """Fraction of the frame's unsaturated stars of S/N > 30 with a source within 1 px (frame pixels)."""
    stars = image.stars
    bright = np.asarray(stars["in_frame"] & ~stars["saturated"] & (stars["snr_optimal"] > 30))
    truth = np.column_stack((np.asarray(stars["x"])[bright], np.asarray(stars["y"])[bright]))
    found = np.column_stack((result.sources["X"], result.sources["Y"]))
    distance, _ = cKDTree(found).query(truth)
    return float(np.mean(distance < 1.0))


@pytest.mark.parametrize("fwhm_px", [1.0, 1.3])
def test_the_psf_fitted_cosmic_test_spares_stars_and_still_finds_cosmic_rays(fwhm_px: float) -> None:
    image = simulate_image(
        11, shape=(1024, 1024), fwhm_arcsec=fwhm_px * PIXEL_SCALE, n_cosmics=200, n_hot_pixels=100
    )
    background = estimate_background(image.data)
    stars = image.stars
    bright = np.asarray(stars["in_frame"] & ~stars["saturated"] & (stars["snr_optimal"] > 30))
    star_x = np.rint(np.asarray(stars["x"])[bright]).astype(int)
    star_y = np.rint(np.asarray(stars["y"])[bright]).astype(int)
    cosmic, hot = image.truth.cosmic_ray_pixels, image.truth.hot_pixels

    def masked(contrast: float) -> tuple[float, float, float]:
        bits = pixel_mask_bits(
            image.data,
            saturation_adu=image.truth.saturation_adu,
            background=background,
            cosmic_contrast=contrast,
        )
        hit = (bits & np.uint8(MaskBit.COSMIC)) > 0
        return (
            float(hit[star_y, star_x].mean()),
            float(hit[cosmic[:, 1], cosmic[:, 0]].mean()),
            float(hit[hot[:, 1], hot[:, 0]].mean()),
        )

    stars_hit, _, _ = masked(DEFAULT_COSMIC_CONTRAST)
    assert stars_hit > 0.2  # the default test takes undersampled stars
    stars_hit, cosmic_hit, hot_hit = masked(cosmic_contrast_for_psf(fwhm_px, 3.0))
    assert stars_hit == 0.0
    assert cosmic_hit > 0.9 and hot_hit > 0.9


@pytest.mark.parametrize("fwhm_px", [1.0, 1.3])
def test_undersampled_stars_survive_the_cosmic_ray_test(fwhm_px: float) -> None:
    image = simulate_image(
        11,
        shape=(1024, 1024),
        fwhm_arcsec=fwhm_px * PIXEL_SCALE,
        n_cosmics=200,
        n_hot_pixels=100,
        target="bright",
    )
    result, error = _reduce(image)
    assert "detection_psf_probe" in result.timings_ms  # the mask was rebuilt for the PSF
    assert abs(result.quality.fwhm_px - fwhm_px) < 0.15 * fwhm_px
    assert _bright_stars_found(image, result) > 0.95
    flags = np.asarray(result.sources["FLAGS"])[result.astrometry.match_source_index]
    assert np.count_nonzero(flags & SourceFlag.BAD_PIXELS) == 0
    assert result.astrometry.rms_arcsec < 0.4 * PIXEL_SCALE
    assert abs(error) < 0.02, error


def test_a_well_sampled_frame_keeps_the_default_mask() -> None:
    image = simulate_image(12, shape=(1024, 1024), fwhm_arcsec=3.0 * PIXEL_SCALE, target="bright")
    result, error = _reduce(image)
    assert "detection_psf_probe" not in result.timings_ms
    assert abs(error) < 0.02


def test_a_bayer_mosaic_is_measured_in_its_green_pixels_on_the_frames_grid() -> None:
    image = simulate_image(
        13, shape=(1024, 1024), fwhm_arcsec=3.0 * PIXEL_SCALE, bayer_pattern="RGGB", target="bright"
    )
    header = standardise_header(image.header)
    assert header.bayer_pattern == "RGGB" and header.filter_name == "r"  # a real filter card wins
    result, error = _reduce(image)
    assert result.measured_plane == "green"
    assert result.quality.fwhm_px == pytest.approx(1.5, rel=0.15)  # superpixels
    # positions and the WCS in the uploaded frame's pixels
    ny, nx = image.data.shape
    gx, gy = np.meshgrid(np.linspace(0, nx - 1, 9), np.linspace(0, ny - 1, 9))
    solved = result.astrometry.wcs.pixel_to_world(gx, gy)
    assert solved.separation(image.true_wcs.pixel_to_world(gx, gy)).arcsec.max() < 0.3 * PIXEL_SCALE
    target = image.target
    assert target is not None
    assert np.hypot(result.target_x - target.x, result.target_y - target.y) < 0.3
    assert _bright_stars_found(image, result) > 0.95
    assert abs(error) < 0.03, error
