"""Real raw DSLR frames (PANOPTES, ../shared/realdata/panoptes): undersampled stars in a Bayer mosaic.

Two 700 x 700 crops of raw Canon frames (RGGB, ~10.3 arcsec/px, stars 1-2 px wide) taken two minutes
apart; ``solved`` carries an astrometry.net WCS, ``unsolved`` only the mount position, 2.3 degrees
from the crop's centre. The reference stars are the Tycho-2 stars of the field, carried by the test
suite (``data/panoptes_tycho2.csv``, see ``data/make_panoptes_tycho2.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from scipy.spatial import cKDTree

from cpcs.catalogs.model import ReferenceCatalogue
from cpcs.science.astrometry import solve_astrometry
from cpcs.science.image_reduction import ImageReductionResult, ReductionFailed, reduce_image
from cpcs.science.imaging.background import (
    DEFAULT_COSMIC_CONTRAST,
    MaskBit,
    cosmic_contrast_for_psf,
    estimate_background,
    pixel_mask_bits,
)
from cpcs.science.imaging.bayer import green_plane
from cpcs.science.imaging.detection import detect_sources
from cpcs.science.imaging.header import InstrumentDefaults, estimate_saturation_level, standardise_header
from cpcs.science.imaging.photometry import SourceFlag
from cpcs.testing.realdata import read_image, realdata_file

TYCHO = Path(__file__).with_name("data") / "panoptes_tycho2.csv"
#: The mount position written in both headers, 2.3 degrees from the crops' centre.
MOUNT = (301.56439, 44.456875)
#: An alert on the frames (a blank spot near the centre).
TARGET = (303.0, 46.1)
#: The lens's pixel scale, as an instrument record would hold it (the unsolved header has none).
PIXEL_SCALE = 10.3


def _frame(name: str) -> tuple[np.ndarray, fits.Header]:
    """A PANOPTES frame from ../shared/realdata (missing: the test fails, it never skips)."""
    return read_image(realdata_file(f"panoptes/{name}"))


@pytest.fixture(scope="module")
def tycho() -> ReferenceCatalogue:
    table = np.loadtxt(TYCHO, delimiter=",", skiprows=2)
    return ReferenceCatalogue("Tycho-2", table[:, 0], table[:, 1], {"VT": table[:, 2]})


@pytest.fixture(scope="module")
def reduced(tycho: ReferenceCatalogue) -> dict[str, ImageReductionResult]:
    results = {}
    for name in ("solved.fits.fz", "unsolved.fits"):
        data, header = _frame(name)
        image_header = standardise_header(header, instrument=InstrumentDefaults(pixel_scale=PIXEL_SCALE))
        results[name] = reduce_image(
            data, image_header, tycho, target_ra_deg=TARGET[0], target_dec_deg=TARGET[1]
        )
    return results


def test_the_header_marks_a_mosaic_calibrated_as_v() -> None:
    _, header = _frame("unsolved.fits")
    image_header = standardise_header(header)
    assert image_header.bayer_pattern == "RGGB"
    assert image_header.filter_name == "V"
    assert (image_header.ra_deg, image_header.dec_deg) == pytest.approx(MOUNT)  # RA-MNT / DEC-MNT


@pytest.mark.parametrize("name", ["solved.fits.fz", "unsolved.fits"])
def test_both_frames_reduce_with_their_undersampled_stars(
    reduced: dict[str, ImageReductionResult], tycho: ReferenceCatalogue, name: str
) -> None:
    result = reduced[name]
    assert result.measured_plane == "green"
    assert result.quality.fwhm_px < 1.2  # superpixels of 20.6 arcsec: undersampled
    assert len(result.sources) > 800
    solution = result.astrometry
    assert solution.method == ("refine" if name == "solved.fits.fz" else "blind-pointing")
    assert solution.n_matched > 150
    assert solution.rms_arcsec < 0.7 * PIXEL_SCALE
    assert abs(solution.pixel_scale_arcsec / PIXEL_SCALE - 1) < 0.01
    flags = np.asarray(result.sources["FLAGS"])[solution.match_source_index]
    # the stars the mask must not take: no Tycho-2 star has a masked (cosmic or hot) pixel
    assert np.count_nonzero(flags & SourceFlag.BAD_PIXELS) == 0
    # their photometry: green instrumental magnitudes against VT, a tight relation
    mags = np.asarray(result.sources["MAG_APER"])[solution.match_source_index]
    vt = tycho.mags["VT"][solution.match_reference_index]
    clean = np.isfinite(mags) & ((flags & SourceFlag.SATURATED) == 0)
    offsets = vt[clean] - mags[clean]
    scatter = 1.4826 * np.median(np.abs(offsets - np.median(offsets)))
    assert clean.sum() > 120 and scatter < 0.2, (int(clean.sum()), scatter)


def _frame_shift(a: ImageReductionResult, b: ImageReductionResult) -> tuple[float, float]:
    """Median pixel offset of the same stars on two frames (``a`` minus ``b``), from pixels alone."""
    xa = np.column_stack((a.sources["X"], a.sources["Y"]))
    xb = np.column_stack((b.sources["X"], b.sources["Y"]))
    distance, index = cKDTree(xa).query(xb, distance_upper_bound=5.0)
    found = np.isfinite(distance)
    assert found.sum() > 300
    delta = xa[index[found]] - xb[found]
    return float(np.median(delta[:, 0])), float(np.median(delta[:, 1]))


def test_blind_solve_of_the_unsolved_frame_lands_on_the_solved_frames_sky(
    reduced: dict[str, ImageReductionResult],
) -> None:
    """The mount position is 2.3 degrees off; the blind solution agrees with the solved frame's sky.

    The mount drifted by ~1.7 px between the exposures, measured here from the stars' pixels. The
    astrometry.net WCS of ``solved`` is itself ~13 arcsec rms against Tycho-2 (a loose SIP), so the
    few-arcsec comparison is with this pipeline's solution of ``solved``; astrometry.net's agrees to
    its own accuracy.
    """
    solved, unsolved = reduced["solved.fits.fz"], reduced["unsolved.fits"]
    dx, dy = _frame_shift(solved, unsolved)
    assert 0.5 < np.hypot(dx, dy) < 3.0
    gx, gy = np.meshgrid(np.linspace(0, 699, 8), np.linspace(0, 699, 8))
    blind = unsolved.astrometry.wcs.pixel_to_world(gx, gy)
    ours = solved.astrometry.wcs.pixel_to_world(gx + dx, gy + dy)
    offsets = blind.separation(ours).arcsec
    assert np.median(offsets) < 2.0 and offsets.max() < 4.0, offsets
    _, header = _frame("solved.fits.fz")
    astrometry_net = WCS(header).pixel_to_world(gx + dx, gy + dy)
    loose = blind.separation(astrometry_net).arcsec
    assert np.median(loose) < 1.5 * PIXEL_SCALE and loose.max() < 5 * PIXEL_SCALE, loose


def test_the_solver_finds_the_field_from_the_mount_position(
    reduced: dict[str, ImageReductionResult], tycho: ReferenceCatalogue
) -> None:
    """Around the mount position itself (2.3 degrees off) with a wide enough search, from the green
    plane's detections (isophotal fluxes: saturated stars rank as the brightest, as they should)."""
    data, _ = _frame("unsolved.fits")
    plane = green_plane(data, "RGGB", saturation_adu=estimate_saturation_level(data))
    detections = detect_sources(
        plane.data, estimate_background(plane.data), None, saturation_adu=plane.saturation_adu
    )
    x, y = plane.to_frame(detections.table["x"], detections.table["y"])
    solution = solve_astrometry(
        x,
        y,
        np.asarray(detections.table["flux"]),
        tycho.ra_deg,
        tycho.dec_deg,
        tycho.mags["VT"],
        image_shape=(700, 700),
        pointing=MOUNT,
        pixel_scale_arcsec=PIXEL_SCALE,
        max_offset_arcmin=150.0,
    )
    reference = reduced["unsolved.fits"].astrometry.wcs
    gx, gy = np.meshgrid(np.linspace(0, 699, 5), np.linspace(0, 699, 5))
    assert solution.wcs.pixel_to_world(gx, gy).separation(reference.pixel_to_world(gx, gy)).arcsec.max() < 3.0


def test_the_default_cosmic_test_would_take_the_stars_the_fitted_one_spares(
    reduced: dict[str, ImageReductionResult],
) -> None:
    data, _ = _frame("solved.fits.fz")
    plane = green_plane(data, "RGGB", saturation_adu=estimate_saturation_level(data))
    background = estimate_background(plane.data)
    result = reduced["solved.fits.fz"]
    matched = result.astrometry.match_source_index
    x = (np.asarray(result.sources["X"])[matched] - 0.5) / 2
    y = (np.asarray(result.sources["Y"])[matched] - 0.5) / 2
    ix, iy = np.rint(x).astype(int), np.rint(y).astype(int)

    def stars_hit(contrast: float) -> int:
        bits = pixel_mask_bits(
            plane.data, saturation_adu=plane.saturation_adu, background=background, cosmic_contrast=contrast
        )
        return int(np.count_nonzero(bits[iy, ix] & MaskBit.COSMIC))

    assert stars_hit(DEFAULT_COSMIC_CONTRAST) > 0.3 * matched.size
    # the pipeline's probe: the PSF measured with only saturated pixels masked
    probe = detect_sources(plane.data, background, None, saturation_adu=plane.saturation_adu)
    contrast = cosmic_contrast_for_psf(probe.fwhm_px, probe.beta)
    assert contrast > 3 * DEFAULT_COSMIC_CONTRAST
    assert stars_hit(contrast) == 0


def test_the_green_diagonal_is_read_from_the_data() -> None:
    """The header says RGGB, but the crop's green pixels sit on the other diagonal (rows flipped)."""
    data, _ = _frame("unsolved.fits")
    plane = green_plane(data, "RGGB", saturation_adu=None)
    assert plane.green_offset == 0
    sites = [float(np.median(data[r::2, c::2])) for r, c in ((0, 0), (1, 1), (0, 1), (1, 0))]
    assert abs(sites[0] - sites[1]) < 0.2 * abs(sites[2] - sites[3])
    assert plane.data.shape == (350, 350)
    assert plane.data[10, 20] == data[20, 40] + data[21, 41]


def test_an_alert_outside_the_crop_is_a_clear_failure(tycho: ReferenceCatalogue) -> None:
    """KIC 8462852 (the mount position) lies ~2 degrees off this 2-degree crop: the reduction
    says so with the detections kept, where forced photometry off the frame used to crash."""
    data, header = _frame("solved.fits.fz")
    image_header = standardise_header(header, instrument=InstrumentDefaults(pixel_scale=PIXEL_SCALE))
    with pytest.raises(ReductionFailed) as failure:
        reduce_image(data, image_header, tycho, target_ra_deg=301.5644, target_dec_deg=44.4568)
    assert failure.value.error.code == "target_outside_image"
    assert "outside this 700x700 image" in str(failure.value)
    assert failure.value.partial.detections is not None and len(failure.value.partial.detections) > 100
