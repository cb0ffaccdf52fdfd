"""Transient candidates of a frame without a template: what the reference catalogues do not explain.

A measured source is a candidate when, on the frame's zero point (``m = m_inst + zp``, the colour
term at colour 0), it is

* ``"not_in_catalogue"``: no star of any reference catalogue of the cone within the match
  radius, while it is brighter than what the calibration's catalogue reaches in its band (the
  95th percentile of its magnitudes there: a fainter source may simply be below the catalogue);
* ``"brighter_than_catalogue"``: matched to a star of the calibration's catalogue but brighter
  than it by at least ``margin_mag`` (and by more than 3 sigma of both errors).

Only sources inside the cone the references cover, measured at S/N ≥ ``min_snr``, unsaturated and
away from the edge, are considered: those flagged otherwise cannot be judged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from cpcs.science.crossmatch import nearest_neighbours
from cpcs.science.imaging.photometry import SourceFlag

__all__ = ["CatalogueCandidate", "catalogue_candidates"]

FloatArray = NDArray[np.float64]
#: Sources with these flags are not judged (a saturated star is always "fainter" than its catalogue).
UNJUDGED = SourceFlag.SATURATED | SourceFlag.NEAR_EDGE | SourceFlag.NON_POSITIVE
_MAG_PER_SNR = 2.5 / math.log(10.0)


@dataclass(frozen=True)
class CatalogueCandidate:
    index: int  # row of the measured-source table
    ra_deg: float
    dec_deg: float
    mag: float  # on the frame's zero point
    mag_err: float
    snr: float
    reason: str  # "not_in_catalogue" or "brighter_than_catalogue"
    catalogue_mag: float | None  # the matched star's, in the calibration's band
    brighter_by: float | None


def _separation_arcsec(ra1: FloatArray, dec1: FloatArray, ra2: float, dec2: float) -> FloatArray:
    d_ra = ((ra1 - ra2 + 180.0) % 360.0 - 180.0) * np.cos(np.radians(dec2))
    return np.asarray(3600.0 * np.hypot(d_ra, dec1 - dec2), dtype=np.float64)


def catalogue_candidates(
    ra_deg: FloatArray,
    dec_deg: FloatArray,
    mag_inst: FloatArray,
    magerr_inst: FloatArray,
    flags: NDArray[np.integer],
    *,
    zp: float,
    cone_ra_deg: float,
    cone_dec_deg: float,
    cone_radius_deg: float,
    catalogue_positions: list[tuple[FloatArray, FloatArray]],
    band_ra_deg: FloatArray,
    band_dec_deg: FloatArray,
    band_mag: FloatArray,
    band_magerr: FloatArray,
    match_radius_arcsec: float,
    margin_mag: float,
    min_snr: float = 5.0,
) -> tuple[tuple[CatalogueCandidate, ...], float | None]:
    """The candidates and the catalogue depth used (None: no stars in the band).

    Parameters
    ----------
    ra_deg, dec_deg, mag_inst, magerr_inst, flags : ndarray
        The measured sources.
    zp : float
        The calibration's zero point (v1 sign: ``m = m_inst + zp``).
    cone_ra_deg, cone_dec_deg, cone_radius_deg : float
        The cone the references were fetched for.
    catalogue_positions : list of (ra, dec) arrays
        Every reference catalogue of the cone (absence is absence from all of them).
    band_ra_deg, band_dec_deg, band_mag, band_magerr : ndarray
        The calibration's catalogue in its band (NaN magnitudes are skipped).
    match_radius_arcsec, margin_mag, min_snr : float
    """
    ra, dec = np.asarray(ra_deg, np.float64), np.asarray(dec_deg, np.float64)
    mag = np.asarray(mag_inst, np.float64) + zp
    err = np.asarray(magerr_inst, np.float64)
    snr = np.where(err > 0, _MAG_PER_SNR / np.where(err > 0, err, 1.0), 0.0)
    judged = (
        np.isfinite(mag)
        & (snr >= min_snr)
        & ((np.asarray(flags, np.int64) & int(UNJUDGED)) == 0)
        & (_separation_arcsec(ra, dec, cone_ra_deg, cone_dec_deg) <= 3600.0 * cone_radius_deg)
    )
    known = np.isfinite(band_mag)
    b_ra, b_dec = np.asarray(band_ra_deg)[known], np.asarray(band_dec_deg)[known]
    b_mag, b_err = np.asarray(band_mag)[known], np.nan_to_num(np.asarray(band_magerr)[known], nan=0.0)
    depth = float(np.percentile(b_mag, 95)) if b_mag.size else None
    judged_index = np.flatnonzero(judged)
    at_ra, at_dec = ra[judged_index], dec[judged_index]
    # Whether any catalogue of the cone has a star within the radius (absence is absence from all).
    in_any = np.zeros(judged_index.size, dtype=bool)
    for c_ra, c_dec in catalogue_positions:
        if len(c_ra):
            in_any |= nearest_neighbours(at_ra, at_dec, c_ra, c_dec, match_radius_arcsec)[0] >= 0
    in_band, _ = nearest_neighbours(at_ra, at_dec, b_ra, b_dec, match_radius_arcsec)
    out = []
    for i, listed, j in zip(judged_index, in_any, in_band, strict=True):
        if not listed:
            if depth is not None and mag[i] < depth:
                out.append(
                    CatalogueCandidate(
                        int(i),
                        float(ra[i]),
                        float(dec[i]),
                        float(mag[i]),
                        float(err[i]),
                        float(snr[i]),
                        "not_in_catalogue",
                        None,
                        None,
                    )
                )
            continue
        if j < 0:
            continue
        brighter = float(b_mag[j] - mag[i])
        if brighter >= margin_mag and brighter > 3.0 * math.hypot(float(err[i]), float(b_err[j])):
            out.append(
                CatalogueCandidate(
                    int(i),
                    float(ra[i]),
                    float(dec[i]),
                    float(mag[i]),
                    float(err[i]),
                    float(snr[i]),
                    "brighter_than_catalogue",
                    float(b_mag[j]),
                    round(brighter, 4),
                )
            )
    out.sort(key=lambda c: -c.snr)
    return tuple(out), depth
