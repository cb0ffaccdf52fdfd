"""The stars behind a calibration, recomputed for plots.

A calibration record keeps its numbers (zero point, colour term, scatter, the ranked alternatives) but
not the matched stars. Given the same inputs the calibration had (the observer's sources, the reference
cone, the match radius), :func:`diagnose_calibration` makes the matching and the fit of every
survey/band with the function :func:`cpcs.science.field_calibration.calibrate_field` uses
(:func:`cpcs.science.band_fits.fit_survey_bands`), and returns per
survey/band the matched stars with their instrumental and catalogue magnitudes, colours, positions and
residuals, so that a page can show how each candidate fitted and why one was chosen.

Pure: arrays and reference catalogues in, frozen dataclasses out; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from cpcs.catalogs.model import ReferenceCatalogue
from cpcs.catalogs.surveys import SurveyDefinition
from cpcs.science._helpers import BoolArray, FloatArray
from cpcs.science.band_fits import MIN_STARS, fit_survey_bands
from cpcs.science.crossmatch import nearest_source, tangent_plane_offsets
from cpcs.science.zeropoint import ZeroPointFit

__all__ = ["BandDiagnostics", "CalibrationDiagnostics", "MatchedStars", "diagnose_calibration"]

ARCMIN_PER_DEG = 60.0


@dataclass(frozen=True, eq=False)
class MatchedStars:
    """The stars of one survey/band matched to the observer's sources; arrays of equal length.

    Attributes
    ----------
    inst_mag, inst_err : ndarray
        Instrumental magnitude and error from the upload (mag).
    cat_mag, cat_err : ndarray
        Reference magnitude and error in the band (mag); NaN where the star has none.
    colour, colour_err : ndarray
        The reference colour used with the band (e.g. g - r) and its error; NaN where unknown.
    ra_deg, dec_deg : ndarray
        The observer's source (its position in the upload, degrees).
    x_arcmin, y_arcmin : ndarray
        Tangent-plane offsets from the alert's position (east and north, arcmin).
    separation_arcsec : ndarray
        Distance between the source and its reference star.
    residual : ndarray
        ``m_cat - model`` of the fit (mag); NaN for stars the fit could not use, or without a fit.
    colour_residual : ndarray
        ``m_cat - m_inst - zp - P(x, y)``: the residual with the colour term added back, which is what
        a plot against colour shows (a straight line of slope ``colour_term`` through it).
    used : ndarray of bool
        The star was kept by the fit (False: clipped, outside the error cut, or no fit).
    """

    inst_mag: FloatArray
    inst_err: FloatArray
    cat_mag: FloatArray
    cat_err: FloatArray
    colour: FloatArray
    colour_err: FloatArray
    ra_deg: FloatArray
    dec_deg: FloatArray
    x_arcmin: FloatArray
    y_arcmin: FloatArray
    separation_arcsec: FloatArray
    residual: FloatArray
    colour_residual: FloatArray
    used: BoolArray

    def __len__(self) -> int:
        return int(self.inst_mag.size)


@dataclass(frozen=True, eq=False)
class BandDiagnostics:
    """One survey/band as the calibration tried it.

    Attributes
    ----------
    survey, band : str
        The candidate.
    colour_index : str or None
        The colour used with the band (``"g-r"``), None when the survey has none for it.
    n_matched : int
        Matched stars with a catalogue magnitude in the band.
    fit : ZeroPointFit or None
        The fit, None when it could not be made (see ``failure``).
    failure : str or None
        Why there is no usable fit: ``too_few_stars``, ``degenerate_fit``, ``scatter_too_large``...
    stars : MatchedStars
        The matched stars (those without a magnitude in the band left out).
    chosen : bool
        This is the survey/band the calibration used.
    """

    survey: str
    band: str
    colour_index: str | None
    n_matched: int
    fit: ZeroPointFit | None
    failure: str | None
    stars: MatchedStars
    chosen: bool

    @property
    def label(self) -> str:
        return f"{self.survey}/{self.band}"


@dataclass(frozen=True, eq=False)
class CalibrationDiagnostics:
    """Every survey/band of one field, in the order of the reference cone.

    Attributes
    ----------
    match_radius_arcsec : float
        The radius used for the target and for the cross-match.
    n_sources : int
        Sources in the upload.
    target_index : int or None
        The source taken as the target (left out of every fit), None when none is near the alert.
    bands : tuple of BandDiagnostics
        One entry per survey/band of the cone.
    """

    match_radius_arcsec: float
    n_sources: int
    target_index: int | None
    bands: tuple[BandDiagnostics, ...]

    @property
    def chosen(self) -> BandDiagnostics | None:
        return next((b for b in self.bands if b.chosen), None)

    def band(self, survey: str, band: str) -> BandDiagnostics | None:
        return next((b for b in self.bands if b.survey == survey and b.band == band), None)


def _colour_name(definition: SurveyDefinition, band: str) -> str | None:
    if not definition.has_band(band):
        return None
    pair = definition.band(band).colour
    return f"{pair[0]}-{pair[1]}" if pair is not None else None


def diagnose_calibration(
    ra_deg: ArrayLike,
    dec_deg: ArrayLike,
    mag: ArrayLike,
    magerr: ArrayLike,
    *,
    target_ra_deg: float,
    target_dec_deg: float,
    references: Mapping[str, ReferenceCatalogue],
    match_radius_arcsec: float,
    chosen: tuple[str, str] | None = None,
    min_stars: int = MIN_STARS,
    colour_term_priors: Mapping[tuple[str, str], tuple[float, float]] | None = None,
) -> CalibrationDiagnostics:
    """Recompute the matched stars and the fit of every survey/band of a calibrated field.

    Parameters
    ----------
    ra_deg, dec_deg, mag, magerr : array_like
        The observer's sources (degrees; instrumental magnitudes and errors, mag), as calibrated.
    target_ra_deg, target_dec_deg : float
        The alert's position; the nearest source within ``match_radius_arcsec`` is the target and is
        left out of the fits, as in the calibration.
    references : mapping of survey name to ReferenceCatalogue
        The reference cone around the field.
    match_radius_arcsec : float
        The calibration's match radius.
    chosen : (survey, band), optional
        The survey/band the calibration used, marked in the result.
    colour_term_priors : mapping of (survey, band) to (mean, sigma), optional
        The colour-term priors the calibration used (the stored ``colour_term_prior``).

    Returns
    -------
    CalibrationDiagnostics
    """
    src_ra = np.asarray(ra_deg, dtype=float)
    src_dec = np.asarray(dec_deg, dtype=float)
    src_mag = np.asarray(mag, dtype=float)
    src_err = np.asarray(magerr, dtype=float)
    x_deg, y_deg = tangent_plane_offsets(src_ra, src_dec, target_ra_deg, target_dec_deg)
    target_index = nearest_source(src_ra, src_dec, target_ra_deg, target_dec_deg, match_radius_arcsec)
    field = np.arange(src_ra.size)
    if target_index is not None:
        field = field[field != target_index]

    bands: list[BandDiagnostics] = []
    for fitted in fit_survey_bands(
        src_mag,
        src_err,
        src_ra,
        src_dec,
        x_deg,
        y_deg,
        field,
        references,
        match_radius_arcsec,
        min_stars=min_stars,
        colour_term_priors=colour_term_priors,
    ):
        fit, src, colour = fitted.fit, fitted.source_index, fitted.colour
        if fit is not None:
            residual = np.asarray(fit.residuals, dtype=float)
            used = np.asarray(fit.used, dtype=bool)
            colour_residual = residual + (fit.colour_term * colour if fit.colour_fitted else 0.0)
        else:
            residual = np.full(fitted.cat_mag.size, np.nan)
            used = np.zeros(fitted.cat_mag.size, dtype=bool)
            colour_residual = residual
        keep = np.isfinite(fitted.cat_mag)
        stars = MatchedStars(
            inst_mag=src_mag[src][keep],
            inst_err=src_err[src][keep],
            cat_mag=fitted.cat_mag[keep],
            cat_err=fitted.cat_err[keep],
            colour=colour[keep],
            colour_err=fitted.colour_err[keep],
            ra_deg=src_ra[src][keep],
            dec_deg=src_dec[src][keep],
            x_arcmin=x_deg[src][keep] * ARCMIN_PER_DEG,
            y_arcmin=y_deg[src][keep] * ARCMIN_PER_DEG,
            separation_arcsec=fitted.separation_arcsec[keep],
            residual=residual[keep],
            colour_residual=np.asarray(colour_residual, dtype=float)[keep],
            used=used[keep],
        )
        bands.append(
            BandDiagnostics(
                survey=fitted.survey,
                band=fitted.band,
                colour_index=_colour_name(fitted.definition, fitted.band),
                n_matched=fitted.n_matched,
                fit=fit,
                failure=fitted.failure,
                stars=stars,
                chosen=chosen is not None and (fitted.survey, fitted.band) == chosen,
            )
        )
    return CalibrationDiagnostics(
        match_radius_arcsec=float(match_radius_arcsec),
        n_sources=int(src_ra.size),
        target_index=target_index,
        bands=tuple(bands),
    )
