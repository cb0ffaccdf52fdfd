"""Reducing one image: the measurement steps in order, from pixels to a calibration-ready source list.

Pure orchestration (arrays in, typed result out; no I/O): background and pixel masks, detection and
the FWHM, the PSF model, astrometry against Gaia moved to the image epoch, aperture photometry of
every source (PSF photometry of the target's neighbourhood), forced photometry at the alert's
position, and the image's quality figures. The reduce service reads the file and the reference
stars, calls :func:`reduce_image` and stores what it returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table
from astropy.time import Time
from astropy.units import deg

from cpcs.catalogs.model import ReferenceCatalogue
from cpcs.errors import CalibrationFailed
from cpcs.science.astrometry import AstrometricSolution, solve_astrometry
from cpcs.science.field_calibration import ForcedTarget
from cpcs.science.imaging.background import estimate_background, pixel_mask_bits
from cpcs.science.imaging.detection import Detections, detect_sources
from cpcs.science.imaging.forced import ForcedMeasurement, forced_photometry
from cpcs.science.imaging.header import ImageHeader, estimate_saturation_level
from cpcs.science.imaging.noise import NoiseModel, choose_noise_model
from cpcs.science.imaging.photometry import SourceMeasurements, measure_sources
from cpcs.science.imaging.psf import PsfError, build_psf
from cpcs.science.imaging.quality import ImageQuality, image_quality

T = TypeVar("T")

PSF_NEIGHBOURHOOD_FWHM = 15.0  # PSF-fit the sources this close to the target (the rest: apertures)


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
    forced: ForcedMeasurement
    target_x: float
    target_y: float
    noise: NoiseModel
    saturation_adu: float | None
    timings_ms: dict[str, float] = field(default_factory=dict)

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
    gaia: ReferenceCatalogue,
    *,
    target_ra_deg: float,
    target_dec_deg: float,
) -> ImageReductionResult:
    """Measure an image and solve its astrometry.

    Raises
    ------
    CalibrationFailed
        ``no_valid_pixels`` when no pixel is finite.
    ReductionFailed
        ``too_few_stars`` when the image shows too few stars for a PSF model; when the astrometry
        cannot be solved (``astrometry_failed`` and kin). Both with the detections.
    """
    timings: dict[str, float] = {}

    def timed(name: str, step: Callable[[], T]) -> T:
        started = time.perf_counter()
        result = step()
        timings[name] = round(1e3 * (time.perf_counter() - started), 1)
        return result

    image = np.asarray(data, dtype=np.float32)
    finite = int(np.count_nonzero(np.isfinite(image)))
    if finite == 0:
        raise CalibrationFailed(
            "Every pixel of the image is NaN or infinite, so nothing can be measured: upload the "
            "calibrated frame itself (check the flat-field division and the exported BITPIX).",
            code="no_valid_pixels",
        )
    saturation = header.saturation_adu or estimate_saturation_level(image)
    background = timed("background", lambda: estimate_background(image))
    noise = choose_noise_model(header, background)
    gain = noise.gain_e_per_adu
    mask = timed("mask", lambda: pixel_mask_bits(image, saturation_adu=saturation, background=background))
    detections = timed(
        "detection", lambda: detect_sources(image, background, mask, saturation_adu=saturation)
    )
    try:
        psf = timed("psf_model", lambda: build_psf(image, background, mask, detections, gain_e_per_adu=gain))
    except PsfError:
        invalid = 1 - finite / image.size
        error = CalibrationFailed(
            f"Only {len(detections.table)} sources were detected on the image, too few to model its "
            "stars"
            + (f" ({invalid:.0%} of its pixels are NaN or infinite)" if invalid >= 0.01 else "")
            + ". Check that the frame is not blank or saturated and that the exposure shows stars.",
            code="too_few_stars",
        )
        partial = PartialReduction(header, _detection_table(detections), None, timings, noise)
        raise ReductionFailed(error, partial) from None
    quality = image_quality(
        background,
        detections,
        psf,
        gain_e_per_adu=gain,
        exptime_s=header.exptime_s,
        pixel_scale_arcsec=header.pixel_scale_arcsec,
        mask=mask,
        saturation_adu=saturation,
    )
    try:
        solution = timed("astrometry", lambda: _solve(detections, header, gaia, image.shape))
    except CalibrationFailed as error:
        partial = PartialReduction(header, _detection_table(detections), quality, timings, noise)
        raise ReductionFailed(error, partial) from None

    tx, ty = (
        float(v) for v in solution.wcs.world_to_pixel(SkyCoord(target_ra_deg * deg, target_dec_deg * deg))
    )
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
    return ImageReductionResult(
        header=header,
        astrometry=solution,
        quality=quality,
        sources=_source_table(measured, solution),
        forced=forced,
        target_x=tx,
        target_y=ty,
        noise=noise,
        saturation_adu=saturation,
        timings_ms=timings,
    )


def _solve(
    detections: Detections, header: ImageHeader, gaia: ReferenceCatalogue, shape: tuple[int, ...]
) -> AstrometricSolution:
    reference = gaia
    if header.mjd_mid is not None and gaia.has_proper_motions and gaia.epoch is not None:
        reference = gaia.at_epoch(julian_year(header.mjd_mid))
    magnitudes = reference.mags.get("G")
    if magnitudes is None:
        magnitudes = next(iter(reference.mags.values()), np.full(len(reference), np.nan))
    pointing = None if header.ra_deg is None or header.dec_deg is None else (header.ra_deg, header.dec_deg)
    table = detections.table
    return solve_astrometry(
        np.asarray(table["x"], dtype=float),
        np.asarray(table["y"], dtype=float),
        np.asarray(table["flux"], dtype=float),
        reference.ra_deg,
        reference.dec_deg,
        magnitudes,
        image_shape=(int(shape[0]), int(shape[1])),
        initial_wcs=header.wcs,
        pointing=pointing,
        pixel_scale_arcsec=header.pixel_scale_arcsec,
    )


def _detection_table(detections: Detections) -> Table:
    table = detections.table
    return Table(
        {
            "NUMBER": np.arange(1, len(table) + 1),
            "X": np.asarray(table["x"], dtype=float),
            "Y": np.asarray(table["y"], dtype=float),
            "FLUX": np.asarray(table["flux"], dtype=float),
            "FLAGS": np.asarray(table["flags"], dtype=np.int32),
        }
    )


def _source_table(measured: SourceMeasurements, solution: AstrometricSolution) -> Table:
    columns = measured.table
    x = np.asarray(columns["x"], dtype=float)
    y = np.asarray(columns["y"], dtype=float)
    sky = solution.wcs.pixel_to_world(x, y)
    return Table(
        {
            "NUMBER": np.arange(1, x.size + 1),
            "RA": np.asarray(sky.ra.deg, dtype=float),
            "DEC": np.asarray(sky.dec.deg, dtype=float),
            "X": x,
            "Y": y,
            "MAG_PSF": np.asarray(columns["mag_psf"], dtype=float),
            "MAGERR_PSF": np.asarray(columns["magerr_psf"], dtype=float),
            "MAG_APER": np.asarray(columns["mag_aper"], dtype=float),
            "MAGERR_APER": np.asarray(columns["magerr_aper"], dtype=float),
            "FLAGS": np.asarray(columns["flags"], dtype=np.int32),
            "FWHM": np.asarray(columns["fwhm_px"], dtype=float),
        }
    )
