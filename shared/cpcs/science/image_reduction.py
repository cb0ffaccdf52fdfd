"""Reducing one image: the measurement steps in order, from pixels to a calibration-ready source list.

Pure orchestration (arrays in, typed result out; no I/O): background and pixel masks, detection and
the FWHM, the PSF model, astrometry against the reference stars (Gaia, or another catalogue with
good positions) moved to the image epoch, aperture photometry of every source (PSF photometry of the
target's neighbourhood), forced photometry at the alert's position, and the image's quality figures.
The reduce service reads the file and the reference stars, calls :func:`reduce_image` and stores
what it returns.

Odd frames
----------
* **Undersampled stars** (FWHM below ~1.7 px): the default cosmic-ray test would take their sharp
  cores. When the PSF of the first detection needs a contrast above ``REBUILD_CONTRAST_FACTOR``
  times the default (:func:`~cpcs.science.imaging.background.cosmic_contrast_for_psf`), or no FWHM
  could be measured (every star's core was taken), the PSF is measured again with only saturated
  and non-finite pixels masked, and the mask is rebuilt with the contrast that spares a star of
  that PSF. Well-sampled frames pay nothing. Apertures never shrink below ``MIN_APERTURE_SCALE_PX``.
* **Saturated stars are detected** (their pixels are masked for photometry, not for detection): they
  are the brightest stars, which the blind solver's patterns are made of, and they are flagged.
* **Bayer mosaics** (:mod:`~cpcs.science.imaging.bayer`) are measured in their green superpixels;
  positions, the WCS and the source table are in the uploaded frame's pixels, the quality figures
  (FWHM, pixel scale) in superpixels.
* **Wrong pointings**: when the header WCS or pointing does not solve, the field is solved blindly
  around the target, which lies on the frame, with an uncertainty of the frame's half-diagonal (the
  mount position of a crop from a wide-field camera can be degrees from the crop's centre). The
  reference stars must then cover twice the half-diagonal around the target
  (:func:`reference_radius_deg`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol, TypeVar

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table
from astropy.time import Time
from astropy.units import deg
from numpy.typing import NDArray

from cpcs.catalogs.model import ReferenceCatalogue
from cpcs.errors import CalibrationFailed
from cpcs.science.astrometry import AstrometricSolution, solve_astrometry
from cpcs.science.field_calibration import ForcedTarget
from cpcs.science.imaging import source_table as columns
from cpcs.science.imaging.background import (
    DEFAULT_COSMIC_CONTRAST,
    ImageBackground,
    MaskBit,
    cosmic_contrast_for_psf,
    estimate_background,
    pixel_mask_bits,
)
from cpcs.science.imaging.bayer import GreenPlane, green_plane
from cpcs.science.imaging.detection import Detections, detect_sources
from cpcs.science.imaging.forced import ForcedMeasurement, forced_photometry
from cpcs.science.imaging.header import ImageHeader, estimate_saturation_level
from cpcs.science.imaging.noise import NoiseModel, choose_noise_model
from cpcs.science.imaging.photometry import SourceMeasurements, measure_sources
from cpcs.science.imaging.psf import PsfError, build_psf
from cpcs.science.imaging.quality import ImageQuality, image_quality

T = TypeVar("T")

PSF_NEIGHBOURHOOD_FWHM = 15.0  # PSF-fit the sources this close to the target (the rest: apertures)
#: The mask is rebuilt for the PSF when that needs this many times the default cosmic-ray contrast
#: (a Moffat of beta 3 below ~1.7 px FWHM; above, the default test spares the stars).
REBUILD_CONTRAST_FACTOR = 1.5
#: Bands that order the reference stars by brightness for the astrometry, first found wins.
RANKING_BANDS = ("G", "r", "V", "g", "i", "R")
#: Reference stars this far beyond the frame (arcmin) are asked for (header WCS off by a little).
REFERENCE_MARGIN_ARCMIN = 2.0


def reference_radius_deg(
    header: ImageHeader, shape: tuple[int, ...], target_ra_deg: float, target_dec_deg: float
) -> float:
    """Radius (degrees) of the reference cone around the target that :func:`reduce_image` needs.

    With a header WCS: out to the frame's farthest corner as that WCS places it (a target near an
    edge needs references across the whole frame), at least the half-diagonal and at most the full
    diagonal, plus ``REFERENCE_MARGIN_ARCMIN``. Without one the frame may lie anywhere around the
    target, so twice the half-diagonal (see the module docstring). The pixel scale is that of the
    header (1 arcsec/px when unknown).
    """
    scale = header.pixel_scale_arcsec or 1.0
    half_diagonal_deg = math.hypot(*shape[-2:]) / 2 * scale / 3600
    reach = 2.0 * half_diagonal_deg
    if header.wcs is not None:
        ny, nx = shape[-2:]
        corners = header.wcs.pixel_to_world([0, nx - 1, 0, nx - 1], [0, 0, ny - 1, ny - 1])
        farthest = float(corners.separation(SkyCoord(target_ra_deg * deg, target_dec_deg * deg)).deg.max())
        if math.isfinite(farthest):
            reach = min(max(farthest, half_diagonal_deg), 2.0 * half_diagonal_deg)
    return reach + REFERENCE_MARGIN_ARCMIN / 60


@dataclass(frozen=True)
class PartialReduction:
    """What was measured before a step failed (kept as the observation's partial products)."""

    header: ImageHeader
    detections: Table | None
    quality: ImageQuality | None
    timings_ms: dict[str, float]
    noise: NoiseModel | None = None


class ReductionFailed(Exception):
    """A user-side failure (e.g. the field cannot be solved), with what had been measured."""

    def __init__(self, error: CalibrationFailed, partial: PartialReduction):
        super().__init__(str(error))
        self.error = error
        self.partial = partial


@dataclass(frozen=True)
class ImageReductionResult:
    header: ImageHeader
    astrometry: AstrometricSolution
    quality: ImageQuality
    sources: Table  # NUMBER RA DEC X Y MAG_PSF MAGERR_PSF MAG_APER MAGERR_APER FLAGS FWHM (instrumental)
    # X, Y, FWHM and target_x/y are in the uploaded frame's pixels (also for a Bayer mosaic)
    forced: ForcedMeasurement
    target_x: float
    target_y: float
    noise: NoiseModel
    saturation_adu: float | None
    timings_ms: dict[str, float] = field(default_factory=dict)
    reference_survey: str | None = None  # the catalogue the astrometry was solved against
    measured_plane: str = "frame"  # "frame", or "green" (superpixels of a Bayer mosaic)

    def forced_target(self) -> ForcedTarget:
        return ForcedTarget(
            mag_inst=self.forced.mag_inst,
            magerr_inst=self.forced.magerr_inst,
            limit_mag_inst=self.forced.limit_mag_inst_5sigma,
            snr=self.forced.snr,
        )


def julian_year(mjd: float) -> float:
    return float(Time(mjd, format="mjd", scale="utc").jyear)


def reduce_image(
    data: np.ndarray,
    header: ImageHeader,
    references: ReferenceCatalogue,
    *,
    target_ra_deg: float,
    target_dec_deg: float,
) -> ImageReductionResult:
    """Measure an image and solve its astrometry.

    Parameters
    ----------
    data : ndarray (2-D)
        The uploaded frame, ADU (a raw Bayer mosaic when ``header.bayer_pattern`` says so).
    header : ImageHeader
    references : ReferenceCatalogue
        Reference stars with good positions around the target (Gaia when cached; any survey
        will do at the arcsecond level), within :func:`reference_radius_deg`.
    target_ra_deg, target_dec_deg : float
        The alert, which lies on the frame.

    Raises
    ------
    CalibrationFailed
        ``no_valid_pixels`` when no pixel is finite.
    ReductionFailed
        ``too_few_stars`` when the image shows too few stars for a PSF model; when the astrometry
        cannot be solved (``astrometry_failed`` and kin); ``target_outside_image`` when the solved
        frame does not contain the target. All with the detections.
    """
    timings: dict[str, float] = {}

    def timed(name: str, step: Callable[[], T]) -> T:
        started = time.perf_counter()
        result = step()
        timings[name] = round(timings.get(name, 0.0) + 1e3 * (time.perf_counter() - started), 1)
        return result

    frame = np.asarray(data, dtype=np.float32)
    finite = int(np.count_nonzero(np.isfinite(frame)))
    if finite == 0:
        raise CalibrationFailed(
            "Every pixel of the image is NaN or infinite, so nothing can be measured: upload the "
            "calibrated frame itself (check the flat-field division and the exported BITPIX).",
            code="no_valid_pixels",
        )
    saturation = header.saturation_adu or estimate_saturation_level(frame)
    plane: GreenPlane | None = None
    image = frame
    if header.bayer_pattern is not None and min(frame.shape) >= 16:
        plane = green_plane(frame, header.bayer_pattern, saturation_adu=saturation)
        image, saturation = plane.data, plane.saturation_adu
    binning = 2.0 if plane is not None else 1.0
    background = timed("background", lambda: estimate_background(image))
    noise = choose_noise_model(header, background)
    gain = noise.gain_e_per_adu
    mask, detections = _mask_and_detect(image, background, saturation, timed)
    try:
        psf = timed("psf_model", lambda: build_psf(image, background, mask, detections, gain_e_per_adu=gain))
    except PsfError:
        invalid = 1 - finite / frame.size
        error = CalibrationFailed(
            f"Only {len(detections.table)} sources were detected on the image, too few to model its "
            "stars"
            + (f" ({invalid:.0%} of its pixels are NaN or infinite)" if invalid >= 0.01 else "")
            + ". Check that the frame is not blank or saturated and that the exposure shows stars.",
            code="too_few_stars",
        )
        partial = PartialReduction(header, _detection_table(detections, plane), None, timings, noise)
        raise ReductionFailed(error, partial) from None
    quality = image_quality(
        background,
        detections,
        psf,
        gain_e_per_adu=gain,
        exptime_s=header.exptime_s,
        pixel_scale_arcsec=None if header.pixel_scale_arcsec is None else header.pixel_scale_arcsec * binning,
        mask=mask,
        saturation_adu=saturation,
    )
    try:
        solution = timed(
            "astrometry",
            lambda: _solve(
                detections, plane, header, references, frame.shape, (target_ra_deg, target_dec_deg)
            ),
        )
    except CalibrationFailed as error:
        partial = PartialReduction(header, _detection_table(detections, plane), quality, timings, noise)
        raise ReductionFailed(error, partial) from None

    frame_x, frame_y = (
        float(v) for v in solution.wcs.world_to_pixel(SkyCoord(target_ra_deg * deg, target_dec_deg * deg))
    )
    ny, nx = frame.shape
    if not (-0.5 <= frame_x < nx - 0.5 and -0.5 <= frame_y < ny - 0.5):
        outside = CalibrationFailed(
            f"The alert's position (RA {target_ra_deg:.5f}, Dec {target_dec_deg:.5f}) falls at pixel "
            f"({frame_x:.0f}, {frame_y:.0f}), outside this {nx}x{ny} image by its solved WCS: upload a "
            "frame that contains the target, or check the alert's coordinates.",
            code="target_outside_image",
        )
        partial = PartialReduction(header, _detection_table(detections, plane), quality, timings, noise)
        raise ReductionFailed(outside, partial)
    tx, ty = plane.from_frame(frame_x, frame_y) if plane is not None else (frame_x, frame_y)
    table = detections.table
    near = (
        np.hypot(np.asarray(table["x"]) - tx, np.asarray(table["y"]) - ty)
        < PSF_NEIGHBOURHOOD_FWHM * detections.fwhm_px
    )
    measured = timed(
        "photometry",
        lambda: measure_sources(
            image,
            background,
            mask,
            detections,
            gain_e_per_adu=gain,
            exptime_s=header.exptime_s,
            saturation_adu=saturation,
            psf=psf,
            psf_indices=np.flatnonzero(near),
        ),
    )
    forced = timed(
        "forced",
        lambda: forced_photometry(
            image,
            background,
            background.rms,
            psf,
            tx,
            ty,
            gain_e_per_adu=gain,
            exptime_s=header.exptime_s,
            neighbours=detections,
            mask=mask,
            segmap=detections.segmap,
        ),
    )
    if plane is not None:
        forced = replace(forced, x=frame_x, y=frame_y)
    return ImageReductionResult(
        header=header,
        astrometry=solution,
        quality=quality,
        sources=_source_table(measured, solution, plane),
        forced=forced,
        target_x=frame_x,
        target_y=frame_y,
        noise=noise,
        saturation_adu=saturation,
        timings_ms=timings,
        reference_survey=references.survey,
        measured_plane="frame" if plane is None else "green",
    )


class _Timer(Protocol):
    def __call__(self, name: str, step: Callable[[], T]) -> T: ...


def _detection_mask(bits: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """The mask detection sees: saturated stars are still found (the photometry flags them)."""
    return np.asarray(bits & np.uint8(~MaskBit.SATURATED & 0xFF), dtype=np.uint8)


def _mask_and_detect(
    image: NDArray[np.float32],
    background: ImageBackground,
    saturation: float | None,
    timed: _Timer,
) -> tuple[NDArray[np.uint8], Detections]:
    """Pixel mask and detections, with the cosmic-ray test fitted to an undersampled PSF (module
    docstring)."""
    mask = timed("mask", lambda: pixel_mask_bits(image, saturation_adu=saturation, background=background))
    detections = timed(
        "detection",
        lambda: detect_sources(image, background, _detection_mask(mask), saturation_adu=saturation),
    )
    if (
        np.isfinite(detections.fwhm_px)
        and cosmic_contrast_for_psf(detections.fwhm_px, detections.beta)
        <= REBUILD_CONTRAST_FACTOR * DEFAULT_COSMIC_CONTRAST
    ):
        return mask, detections
    plain = np.asarray(mask & np.uint8(~MaskBit.COSMIC & 0xFF), dtype=np.uint8)
    probe = timed(
        "detection_psf_probe",
        lambda: detect_sources(
            image, background, _detection_mask(plain), saturation_adu=saturation, keep_segmap=False
        ),
    )
    contrast = cosmic_contrast_for_psf(probe.fwhm_px, probe.beta)
    if contrast <= DEFAULT_COSMIC_CONTRAST:
        return mask, detections
    mask = timed(
        "mask",
        lambda: pixel_mask_bits(
            image, saturation_adu=saturation, background=background, cosmic_contrast=contrast
        ),
    )
    detections = timed(
        "detection",
        lambda: detect_sources(image, background, _detection_mask(mask), saturation_adu=saturation),
    )
    return mask, detections


def _solve(
    detections: Detections,
    plane: GreenPlane | None,
    header: ImageHeader,
    references: ReferenceCatalogue,
    shape: tuple[int, ...],
    target: tuple[float, float],
) -> AstrometricSolution:
    """Solve in the frame's pixels: from the header, then blindly around the target (module
    docstring)."""
    reference = references
    if header.mjd_mid is not None and references.has_proper_motions and references.epoch is not None:
        reference = references.at_epoch(julian_year(header.mjd_mid))
    # brightness order of the references: the band nearest the middle of the optical (any will do)
    band = next((b for b in RANKING_BANDS if b in reference.mags), None)
    magnitudes = (
        reference.mags[band]
        if band is not None
        else next(iter(reference.mags.values()), np.full(len(reference), np.nan))
    )
    pointing = None if header.ra_deg is None or header.dec_deg is None else (header.ra_deg, header.dec_deg)
    table = detections.table
    x = np.asarray(table["x"], dtype=float)
    y = np.asarray(table["y"], dtype=float)
    if plane is not None:
        x, y = plane.to_frame(x, y)
    frame_shape = (int(shape[0]), int(shape[1]))

    def solve(**where: object) -> AstrometricSolution:
        return solve_astrometry(
            x,
            y,
            np.asarray(table["flux"], dtype=float),
            reference.ra_deg,
            reference.dec_deg,
            magnitudes,
            image_shape=frame_shape,
            pixel_scale_arcsec=header.pixel_scale_arcsec,
            **where,  # type: ignore[arg-type]
        )

    try:
        return solve(initial_wcs=header.wcs, pointing=pointing)
    except CalibrationFailed as first:
        if header.pixel_scale_arcsec is None:
            raise
        half_diagonal_arcmin = math.hypot(*frame_shape) / 2 * header.pixel_scale_arcsec / 60
        try:
            return solve(pointing=target, max_offset_arcmin=half_diagonal_arcmin + REFERENCE_MARGIN_ARCMIN)
        except CalibrationFailed:
            raise first from None


def _detection_table(detections: Detections, plane: GreenPlane | None) -> Table:
    table = detections.table
    x = np.asarray(table["x"], dtype=float)
    y = np.asarray(table["y"], dtype=float)
    if plane is not None:
        x, y = plane.to_frame(x, y)
    return Table(
        {
            columns.NUMBER: np.arange(1, len(table) + 1),
            columns.X: x,
            columns.Y: y,
            columns.FLUX: np.asarray(table["flux"], dtype=float),
            columns.FLAGS: np.asarray(table["flags"], dtype=np.int32),
        }
    )


def _source_table(
    measured: SourceMeasurements, solution: AstrometricSolution, plane: GreenPlane | None
) -> Table:
    measurements = measured.table
    x = np.asarray(measurements["x"], dtype=float)
    y = np.asarray(measurements["y"], dtype=float)
    fwhm = np.asarray(measurements["fwhm_px"], dtype=float)
    if plane is not None:
        x, y = plane.to_frame(x, y)
        fwhm = 2.0 * fwhm
    sky = solution.wcs.pixel_to_world(x, y)
    return Table(
        {
            columns.NUMBER: np.arange(1, x.size + 1),
            columns.RA: np.asarray(sky.ra.deg, dtype=float),
            columns.DEC: np.asarray(sky.dec.deg, dtype=float),
            columns.X: x,
            columns.Y: y,
            columns.MAG_PSF: np.asarray(measurements["mag_psf"], dtype=float),
            columns.MAGERR_PSF: np.asarray(measurements["magerr_psf"], dtype=float),
            columns.MAG_APER: np.asarray(measurements["mag_aper"], dtype=float),
            columns.MAGERR_APER: np.asarray(measurements["magerr_aper"], dtype=float),
            columns.FLAGS: np.asarray(measurements["flags"], dtype=np.int32),
            columns.FWHM: fwhm,
        }
    )
