"""Image quality summary: seeing, its variation, sky, depth, source counts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from cpcs.science.imaging.background import ImageBackground, MaskBit
from cpcs.science.imaging.detection import Detections
from cpcs.science.imaging.forced import ForcedMeasurement, limiting_magnitude_5sigma
from cpcs.science.imaging.header import ImageHeader
from cpcs.science.imaging.psf import PsfModel

__all__ = ["ImageQuality", "image_quality"]


@dataclass(frozen=True)
class ImageQuality:
    """One image's quality figures.

    Attributes
    ----------
    fwhm_px : float
        Median FWHM of the stars, px.
    fwhm_arcsec : float or None
        The same in arcsec (None without a pixel scale).
    fwhm_variation : float
        Largest over smallest FWHM of the fitted FWHM surface across the image (1.0: uniform).
    background_level_adu, background_rms_adu : float
        Global sky level and noise, ADU.
    limit_mag_inst_5sigma : float
        Instrumental 5-sigma point-source limit at the image centre (NaN without a PSF).
    n_sources : int
        Detections.
    n_saturated : int
        Detections touching saturated pixels (or peaking above the level).
    ellipticity : float
        Median ``1 - b/a`` of the PSF stars.
    beta : float
        Moffat index of the PSF.
    n_masked_pixels : int
    """

    fwhm_px: float
    fwhm_arcsec: float | None
    fwhm_variation: float
    background_level_adu: float
    background_rms_adu: float
    limit_mag_inst_5sigma: float
    n_sources: int
    n_saturated: int
    ellipticity: float
    beta: float
    n_masked_pixels: int


def image_quality(
    background: ImageBackground,
    detections: Detections,
    psf: PsfModel | None,
    *,
    gain_e_per_adu: float | None = None,
    exptime_s: float | None = None,
    pixel_scale_arcsec: float | None = None,
    mask: NDArray[np.bool_] | NDArray[np.uint8] | None = None,
    saturation_adu: float | None = None,
    header: ImageHeader | None = None,
    forced: ForcedMeasurement | None = None,
) -> ImageQuality:
    """Summarise an image's quality from the products of the earlier steps.

    Gain, exposure time, pixel scale and saturation level not given explicitly are taken from
    ``header`` (no gain: background-only noise, magnitudes of the pixel values). The limit is the
    5-sigma limit at the image centre; ``forced`` is accepted for convenience and not needed (its
    own limit is at the target). ``n_saturated`` counts detections whose peak (with sky) reaches
    the saturation level or, with a :class:`MaskBit` mask, whose centre pixel is saturated. Pass
    the same ``exptime_s`` as to the photometry so the limit is on the same magnitude scale.
    """
    del forced
    if header is not None:
        gain_e_per_adu = gain_e_per_adu if gain_e_per_adu is not None else header.gain_e_per_adu
        pixel_scale_arcsec = (
            pixel_scale_arcsec if pixel_scale_arcsec is not None else header.pixel_scale_arcsec
        )
        saturation_adu = saturation_adu if saturation_adu is not None else header.saturation_adu
    gain = gain_e_per_adu if gain_e_per_adu is not None and gain_e_per_adu > 0 else None
    table = detections.table
    ny, nx = detections.shape
    n_sat = 0
    if len(table):
        ix = np.clip(np.rint(np.asarray(table["x"])).astype(int), 0, nx - 1)
        iy = np.clip(np.rint(np.asarray(table["y"])).astype(int), 0, ny - 1)
        saturated = np.zeros(len(table), dtype=bool)
        if saturation_adu is not None:
            saturated |= np.asarray(table["peak"]) + background.level[iy, ix] >= saturation_adu
        if mask is not None and np.asarray(mask).dtype != np.bool_:
            saturated |= (np.asarray(mask)[iy, ix] & MaskBit.SATURATED) != 0
        n_sat = int(saturated.sum())
    cy, cx = (ny - 1) // 2, (nx - 1) // 2
    limit = float("nan")
    if psf is not None:
        limit = limiting_magnitude_5sigma(
            float(background.rms[cy, cx]), psf, gain_e_per_adu=gain, exptime_s=exptime_s
        )
    fwhm = detections.fwhm_px if np.isfinite(detections.fwhm_px) else (psf.fwhm_px if psf else float("nan"))
    return ImageQuality(
        fwhm_px=float(fwhm),
        fwhm_arcsec=float(fwhm * pixel_scale_arcsec) if pixel_scale_arcsec and np.isfinite(fwhm) else None,
        fwhm_variation=float(detections.fwhm_variation),
        background_level_adu=background.global_level,
        background_rms_adu=background.global_rms,
        limit_mag_inst_5sigma=limit,
        n_sources=detections.n_sources,
        n_saturated=n_sat,
        ellipticity=float(detections.ellipticity),
        beta=float(psf.beta if psf is not None else detections.beta),
        n_masked_pixels=int(np.count_nonzero(mask)) if mask is not None else 0,
    )
