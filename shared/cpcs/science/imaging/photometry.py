"""Aperture photometry of every detected source, aperture-corrected to the package's "total" flux.

Conventions
-----------
* **Instrumental magnitude**: ``mag_inst = -2.5 log10(flux_e / exptime_s)`` (electrons per second)
  when the exposure time is known, else ``-2.5 log10(flux_e)`` (electrons in the exposure), with
  ``flux_e = flux_adu × gain`` (gain 1 when the noise model has none:
  :mod:`~cpcs.science.imaging.noise`). The calibration fits ``m_cat = m_inst + zp``, so any constant would
  do; the same function (:func:`instrumental_magnitude`) serves stars, the target and limits.
* **Total flux** is the flux inside ``REFERENCE_RADIUS_FWHM`` (2.5) × FWHM, local sky removed. The
  photometric aperture (``aperture_radius_fwhm`` × FWHM, 1.0 by default: close to the best S/N for
  Moffat profiles and little crowding) is corrected to it with the median difference measured on
  bright isolated stars (a surface over the field when the FWHM varies). PSF fluxes are put on the
  same scale (:mod:`~cpcs.science.imaging.psf`). For a Moffat of beta = 3 the 2.5 FWHM circle holds
  ≈ 98.5 % of the light; the rest is a constant absorbed by the zero point.
* **Undersampled stars**: apertures and annuli scale with the FWHM but never with less than
  ``MIN_APERTURE_SCALE_PX`` (1.5 px), so a 1 px star gets a 1.5 px aperture, not a 1 px one.
* **Radius**: when the FWHM varies by more than 5 % over the field, each source's aperture and
  annulus scale with the local FWHM (``fwhm_at``), which keeps the encircled fraction nearly
  constant; ``aperture_radius_px`` is then the value at the median FWHM.
* **Errors**: area × rms² (sky + read noise, from the smooth background noise map at the source) +
  source flux / gain (left out when the gain is None: background-only noise) + (area × error of
  the annulus mean)²; the aperture-correction error
  (scatter / √n) is added in quadrature to every magnitude.
* **Local sky**: mean of the annulus pixels (3-5 FWHM) outside every source's sep footprint and
  outside bad pixels, on the image with the smooth sky map already removed.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np
from astropy.table import Table
from numpy.typing import ArrayLike, NDArray
from scipy.spatial import cKDTree

from cpcs.science.imaging._aperture import (
    ANNULUS_FWHM,
    MIN_SKY_PIXELS,
    REFERENCE_RADIUS_FWHM,
    ApertureImages,
    aperture_scale_px,
    aperture_sums,
    source_mask,
)
from cpcs.science.imaging._poly import Poly2D, fit_surface
from cpcs.science.imaging.background import ImageBackground, MaskBit
from cpcs.science.imaging.detection import Detections, select_isolated

__all__ = [
    "MAG_ERR_PER_INVERSE_SNR",
    "SourceFlag",
    "SourceMeasurements",
    "instrumental_magnitude",
    "measure_sources",
]

#: 2.5 / ln(10): magnitude error per unit relative flux error.
MAG_ERR_PER_INVERSE_SNR = 2.5 / math.log(10.0)
#: Bright isolated stars used for the aperture correction: at most this many, brightest first.
MAX_APCORR_STARS = 200
#: Largest magnitude error of a star used for the aperture correction.
APCORR_MAX_MAGERR = 0.02


class SourceFlag(enum.IntFlag):
    """Quality bits of a measured source (``flags`` column)."""

    SATURATED = 1  #: a saturated pixel in the aperture, or peak above the saturation level
    NEAR_EDGE = 2  #: aperture or sky annulus cut by the image edge
    CROWDED = 4  #: deblended by sep, or another source closer than aperture + 1 FWHM
    BAD_PIXELS = 8  #: masked (cosmic, hot, non-finite) pixels inside the aperture
    POOR_SKY = 16  #: fewer than 20 usable sky pixels in the annulus (map sky used)
    PSF_FIT_FAILED = 32  #: PSF fit attempted and failed
    NON_POSITIVE = 64  #: flux ≤ 0: magnitudes are NaN


def instrumental_magnitude(
    flux_adu: ArrayLike, flux_err_adu: ArrayLike, *, gain_e_per_adu: float | None, exptime_s: float | None
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Instrumental magnitude and its error from a flux in ADU (convention: module docstring).

    Non-positive or non-finite fluxes give NaN magnitudes (and NaN errors). A gain of None
    (:mod:`~cpcs.science.imaging.noise`'s ``background_only``) counts as 1: magnitudes of the
    pixel values themselves.
    """
    flux = np.asarray(flux_adu, dtype=np.float64)
    err = np.asarray(flux_err_adu, dtype=np.float64)
    rate = flux * (gain_e_per_adu or 1.0) / (exptime_s if exptime_s and exptime_s > 0 else 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.where(flux > 0, -2.5 * np.log10(rate), np.nan)
        magerr = np.where(flux > 0, MAG_ERR_PER_INVERSE_SNR * err / flux, np.nan)
    return mag, magerr


@dataclass(frozen=True)
class SourceMeasurements:
    """Photometry of the detected sources.

    Attributes
    ----------
    table : astropy.table.Table
        Rows in the order of ``detections.table``: ``x, y`` (px, 0-based), ``flux_aper,
        flux_aper_err`` (ADU, aperture-corrected to total), ``mag_aper, magerr_aper``
        (instrumental, corrected), ``flux_psf, flux_psf_err, mag_psf, magerr_psf`` (NaN where not
        fitted), ``fwhm_px``, ``aperture_correction`` (mag added at that position), ``sky`` (local
        residual sky, ADU/px), ``snr`` (aperture), ``flags`` (:class:`SourceFlag`).
    aperture_radius_px : float
        Photometric aperture radius at the median FWHM, px.
    aperture_correction_mag : float
        Aperture correction at the image centre (mag, ≤ 0: it brightens), added to ``mag_aper``.
    aperture_correction_err : float
        Its error (robust scatter / √n), mag; included in every ``magerr_aper``.
    n_aperture_correction_stars : int
    n_psf_stars : int
        Stars used for the PSF model (0 when PSF photometry was not done).
    gain_e_per_adu : float
    exptime_s : float or None
    """

    table: Table
    aperture_radius_px: float
    aperture_correction_mag: float
    aperture_correction_err: float
    n_aperture_correction_stars: int
    n_psf_stars: int
    gain_e_per_adu: float | None
    exptime_s: float | None


def _aperture_correction(
    images: ApertureImages,
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    fwhm_local: NDArray[np.float64],
    small: NDArray[np.float64],
    chosen: NDArray[np.bool_],
    annulus: tuple[float, float],
    gain: float | None,
    shape: tuple[int, int],
) -> tuple[Poly2D, float, int]:
    idx = np.nonzero(chosen)[0]
    if idx.size == 0:
        return Poly2D.constant(0.0, shape), 0.0, 0
    big = aperture_sums(
        images,
        x[idx],
        y[idx],
        REFERENCE_RADIUS_FWHM * fwhm_local[idx],
        (annulus[0] * fwhm_local[idx], annulus[1] * fwhm_local[idx]),
        gain,
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = -2.5 * np.log10(big.flux / small[idx])
    good = np.isfinite(delta) & (big.masked_frac == 0) & (big.n_sky >= MIN_SKY_PIXELS)
    if good.sum() < 3:
        return Poly2D.constant(0.0, shape), 0.0, 0
    surface, keep = fit_surface(x[idx][good], y[idx][good], delta[good], shape, max_degree=1)
    resid = delta[good][keep] - surface(x[idx][good][keep], y[idx][good][keep])
    n = int(keep.sum())
    scatter = 1.4826 * float(np.median(np.abs(resid - np.median(resid))))
    err = scatter / math.sqrt(max(n - surface.degree * 2 - 1, 1))
    return surface, err, n


def measure_sources(
    data: NDArray[np.floating],
    background: ImageBackground,
    mask: NDArray[np.bool_] | NDArray[np.uint8] | None,
    detections: Detections,
    *,
    gain_e_per_adu: float | None,
    exptime_s: float | None = None,
    aperture_radius_fwhm: float = 1.0,
    annulus: tuple[float, float] = ANNULUS_FWHM,
    saturation_adu: float | None = None,
    psf: object | None = None,
    psf_indices: ArrayLike | None = None,
) -> SourceMeasurements:
    """Aperture photometry of every detection (and PSF photometry of a chosen few).

    Parameters
    ----------
    data : ndarray
        Image, ADU (sky not subtracted).
    background : ImageBackground
    mask : ndarray of bool or uint8 (:class:`MaskBit` bits), optional
        Bad pixels; with the bits, saturated pixels in an aperture set ``SATURATED``.
    detections : Detections
        Positions, FWHM map and segmentation map (the annulus excludes every footprint).
    gain_e_per_adu : float or None
        Gain: source photon noise and the electron scale of the magnitudes (None: background-only
        noise, magnitudes of the pixel values).
    exptime_s : float, optional
        Exposure time: magnitudes per second when given.
    aperture_radius_fwhm : float
        Photometric aperture radius in FWHM.
    annulus : (float, float)
        Inner and outer sky-annulus radii in FWHM.
    saturation_adu : float, optional
        Saturation level on the scale of ``data``: a source peaking above it is ``SATURATED``.
    psf : PsfModel, optional
        When given, the sources ``psf_indices`` (all when None) are PSF-fitted too.
    psf_indices : array of int, optional

    Returns
    -------
    SourceMeasurements
        Sources with a non-positive flux keep their flux and get NaN magnitudes.
    """
    table_in = detections.table
    x = np.asarray(table_in["x"], dtype=np.float64)
    y = np.asarray(table_in["y"], dtype=np.float64)
    n = x.size
    shape = detections.shape
    fwhm = detections.fwhm_px
    if not np.isfinite(fwhm):
        col = np.asarray(table_in["fwhm_px"], dtype=np.float64) if n else np.zeros(0)
        fwhm = float(np.nanmedian(col)) if np.isfinite(col).any() else 3.0
    variable = np.isfinite(detections.fwhm_variation) and detections.fwhm_variation > 1.05
    fwhm_local = np.asarray(detections.fwhm_at(x, y)) if variable else np.full(n, fwhm)
    fwhm_local = np.where(np.isfinite(fwhm_local) & (fwhm_local > 0), fwhm_local, fwhm)
    # undersampled stars: apertures of at least MIN_APERTURE_SCALE_PX "FWHM"
    fwhm = float(aperture_scale_px(fwhm))
    fwhm_local = aperture_scale_px(fwhm_local)
    bits: NDArray[np.uint8] | None = None
    mask_bool = None
    if mask is not None:
        mask_arr = np.asarray(mask)
        mask_bool = np.ascontiguousarray(mask_arr != 0)
        if mask_arr.dtype != np.bool_:
            bits = mask_arr.astype(np.uint8, copy=False)
    data_sub = background.subtract(data)
    images = ApertureImages.prepare(
        data_sub, background.rms, mask_bool, source_mask(mask_bool, detections.segmap)
    )
    radius = aperture_radius_fwhm * fwhm_local
    sums = aperture_sums(
        images, x, y, radius, (annulus[0] * fwhm_local, annulus[1] * fwhm_local), gain_e_per_adu
    )

    # flags
    flags = np.zeros(n, dtype=np.int32)
    sep_flags = np.asarray(table_in["flags"], dtype=np.int32) if n else np.zeros(0, np.int32)
    if bits is not None and n:
        sat_rows, sat_cols = np.nonzero(bits & np.uint8(MaskBit.SATURATED))
        if sat_rows.size:
            near_sat = cKDTree(np.column_stack([sat_cols, sat_rows])).query_ball_point(
                np.column_stack([x, y]), radius + 1.0, return_length=True
            )
            flags[np.asarray(near_sat) > 0] |= SourceFlag.SATURATED
        # masked pixels in the aperture that are not saturation: cosmics, hot pixels, NaN
        flags[(sums.masked_frac > 0) & ((flags & SourceFlag.SATURATED) == 0)] |= SourceFlag.BAD_PIXELS
    elif mask_bool is not None:
        flags[sums.masked_frac > 0] |= SourceFlag.BAD_PIXELS
    if saturation_adu is not None and n:
        ix = np.clip(np.rint(x).astype(int), 0, shape[1] - 1)
        iy = np.clip(np.rint(y).astype(int), 0, shape[0] - 1)
        peak = np.asarray(table_in["peak"], dtype=np.float64) + background.level[iy, ix]
        flags[peak >= saturation_adu] |= SourceFlag.SATURATED
    edge = annulus[1] * fwhm_local
    near_edge = (x < edge) | (y < edge) | (x > shape[1] - 1 - edge) | (y > shape[0] - 1 - edge)
    flags[near_edge] |= SourceFlag.NEAR_EDGE
    flags[(sep_flags & 1) != 0] |= SourceFlag.CROWDED  # sep OBJ_MERGED
    if n > 1:
        dist, _ = cKDTree(np.column_stack([x, y])).query(np.column_stack([x, y]), 2)
        flags[dist[:, 1] < radius + fwhm_local] |= SourceFlag.CROWDED
    flags[sums.n_sky < MIN_SKY_PIXELS] |= SourceFlag.POOR_SKY
    flags[~(sums.flux > 0)] |= SourceFlag.NON_POSITIVE

    # aperture correction from bright isolated clean stars
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_err = sums.flux_err / sums.flux
    clean = (flags == 0) & (rel_err < APCORR_MAX_MAGERR / MAG_ERR_PER_INVERSE_SNR) & ((sep_flags & 0xFF) == 0)
    iso_radius = float(np.median(REFERENCE_RADIUS_FWHM * fwhm_local) + fwhm) if n else 0.0
    flux_iso = np.asarray(table_in["flux"], dtype=np.float64) if n else np.zeros(0)
    clean = select_isolated(x, y, flux_iso, clean, radius=iso_radius, outer_radius=annulus[1] * fwhm)
    if clean.sum() > MAX_APCORR_STARS:
        idx = np.nonzero(clean)[0]
        clean[:] = False
        clean[idx[np.argsort(-sums.flux[idx])][:MAX_APCORR_STARS]] = True
    surface, apcorr_err, n_apcorr = _aperture_correction(
        images, x, y, fwhm_local, sums.flux, clean, annulus, gain_e_per_adu, shape
    )
    apcorr = surface(x, y) if n else np.zeros(0)
    factor = 10.0 ** (-0.4 * apcorr)
    flux_aper = sums.flux * factor
    flux_aper_err = sums.flux_err * factor
    mag_aper, magerr_aper = instrumental_magnitude(
        flux_aper, flux_aper_err, gain_e_per_adu=gain_e_per_adu, exptime_s=exptime_s
    )
    magerr_aper = np.hypot(magerr_aper, apcorr_err)

    flux_psf = np.full(n, np.nan)
    flux_psf_err = np.full(n, np.nan)
    n_psf_stars = 0
    if psf is not None and n:
        from cpcs.science.imaging.psf import PsfModel, psf_photometry

        if not isinstance(psf, PsfModel):
            raise TypeError("psf must be a PsfModel")
        n_psf_stars = psf.n_stars
        idx = np.arange(n) if psf_indices is None else np.asarray(psf_indices, dtype=np.intp)
        fitted = psf_photometry(
            data,
            background,
            background.rms,
            psf,
            np.column_stack([x[idx], y[idx]]),
            gain_e_per_adu=gain_e_per_adu,
            mask=mask_bool,
            initial_flux=np.maximum(sums.flux[idx], 0.0),
        )
        ok = np.asarray(fitted["fit_ok"], dtype=bool)
        flux_psf[idx[ok]] = np.asarray(fitted["flux"])[ok]
        flux_psf_err[idx[ok]] = np.asarray(fitted["flux_err"])[ok]
        flags[idx[~ok]] |= SourceFlag.PSF_FIT_FAILED
    mag_psf, magerr_psf = instrumental_magnitude(
        flux_psf, flux_psf_err, gain_e_per_adu=gain_e_per_adu, exptime_s=exptime_s
    )
    table = Table(
        {
            "x": x,
            "y": y,
            "flux_aper": flux_aper,
            "flux_aper_err": flux_aper_err,
            "mag_aper": mag_aper,
            "magerr_aper": magerr_aper,
            "flux_psf": flux_psf,
            "flux_psf_err": flux_psf_err,
            "mag_psf": mag_psf,
            "magerr_psf": magerr_psf,
            "fwhm_px": np.asarray(table_in["fwhm_px"], dtype=np.float64) if n else np.zeros(0),
            "aperture_correction": apcorr,
            "sky": sums.sky,
            "snr": np.where(sums.flux_err > 0, sums.flux / sums.flux_err, np.nan),
            "flags": flags,
        }
    )
    return SourceMeasurements(
        table=table,
        aperture_radius_px=float(aperture_radius_fwhm * fwhm),
        aperture_correction_mag=float(
            surface(np.array((shape[1] - 1) / 2.0), np.array((shape[0] - 1) / 2.0))
        ),
        aperture_correction_err=float(apcorr_err),
        n_aperture_correction_stars=n_apcorr,
        n_psf_stars=n_psf_stars,
        gain_e_per_adu=gain_e_per_adu,
        exptime_s=exptime_s,
    )
