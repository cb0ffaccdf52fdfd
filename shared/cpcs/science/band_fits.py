"""The fit of every survey/band of a field: one cross-match per survey, one zero-point fit per band.

:func:`cpcs.science.field_calibration.calibrate_field` ranks these fits and calibrates the target;
:func:`cpcs.science.calibration_diagnostics.diagnose_calibration` shows the same fits in the plots.
Both call :func:`fit_survey_bands`, so a plot always shows the fit the calibration made.

Pure: arrays and reference catalogues in, frozen dataclasses out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from cpcs.catalogs.model import ReferenceCatalogue
from cpcs.catalogs.surveys import SurveyDefinition, colour_of, definition_for
from cpcs.errors import CalibrationFailed
from cpcs.science._helpers import FloatArray, IntArray
from cpcs.science.crossmatch import match_catalogues
from cpcs.science.zeropoint import ZeroPointFit, fit_zero_point

MIN_STARS = 5
MIN_COLOUR_STARS = 8  # fewer stars with a colour: fit the zero point alone
# A relation this loose is no calibration: chance matches of a catalogue whose astrometry is off
# scatter by a magnitude or more, while real fields, even poor ones, stay well under this.
MAX_SCATTER_MAG = 0.5


@dataclass(frozen=True, eq=False)
class BandFit:
    """One survey/band fitted against the field's sources; arrays are per matched star.

    Attributes
    ----------
    survey, band : str
        The reference survey and band.
    definition : SurveyDefinition
        The survey's band definitions (colours, systems).
    source_index : ndarray of int
        Indices of the matched stars into the observer's sources.
    separation_arcsec : ndarray
        Distance between each source and its reference star.
    cat_mag, cat_err, colour, colour_err : ndarray
        The reference magnitude in the band, its error, the colour used with the band and its
        error (NaN where the star has none).
    fit : ZeroPointFit or None
        The fit (None when it could not be made).
    failure : str or None
        Why there is no usable fit: the fit's failure code, or ``scatter_too_large``.
    """

    survey: str
    band: str
    definition: SurveyDefinition
    source_index: IntArray
    separation_arcsec: FloatArray
    cat_mag: FloatArray
    cat_err: FloatArray
    colour: FloatArray
    colour_err: FloatArray
    fit: ZeroPointFit | None
    failure: str | None

    @property
    def n_matched(self) -> int:
        """Matched stars with a magnitude in the band."""
        return int(np.isfinite(self.cat_mag).sum())


def fit_survey_bands(
    src_mag: FloatArray,
    src_err: FloatArray,
    src_ra: FloatArray,
    src_dec: FloatArray,
    x: FloatArray,
    y: FloatArray,
    field_stars: IntArray,
    references: Mapping[str, ReferenceCatalogue],
    match_radius_arcsec: float,
    *,
    forced: tuple[str | None, str] | None = None,
    min_stars: int = MIN_STARS,
    colour_term_priors: Mapping[tuple[str, str], tuple[float, float]] | None = None,
) -> list[BandFit]:
    """Cross-match ``field_stars`` (indices into the sources) with each survey and fit each band.

    ``x, y`` are the sources' spatial coordinates for the fit's spatial terms; ``forced`` (survey
    or None, band) keeps only that band; ``colour_term_priors`` per (survey, band) are Gaussian
    priors of the colour term (``cpcs.science.colour_terms``). The colour term is fitted only with
    ``MIN_COLOUR_STARS`` stars that have a colour.
    """
    fits: list[BandFit] = []
    for survey, reference in references.items():
        if forced is not None and forced[0] is not None and survey.casefold() != forced[0].casefold():
            continue
        definition = definition_for(survey, reference.bands)
        match = match_catalogues(
            src_ra[field_stars],
            src_dec[field_stars],
            reference.ra_deg,
            reference.dec_deg,
            match_radius_arcsec,
        )
        src = field_stars[match.source_index]
        ref = match.reference_index
        for band in reference.bands:
            if forced is not None and band != forced[1]:
                continue
            cat_mag, cat_err = reference.mags[band][ref], reference.errs[band][ref]
            colour, colour_err = (values[ref] for values in colour_of(reference, band))
            with_colour = int((np.isfinite(cat_mag) & np.isfinite(colour)).sum())
            fit: ZeroPointFit | None = None
            failure = None
            try:
                fit = fit_zero_point(
                    src_mag[src],
                    src_err[src],
                    cat_mag,
                    cat_err,
                    colour if with_colour >= MIN_COLOUR_STARS else None,
                    x[src],
                    y[src],
                    fit_colour_term=with_colour >= MIN_COLOUR_STARS,
                    min_stars=min_stars,
                    colour_term_prior=(colour_term_priors or {}).get((survey, band)),
                )
            except CalibrationFailed as exc:
                failure = exc.code
            if fit is not None and fit.scatter > MAX_SCATTER_MAG:
                failure = "scatter_too_large"
            fits.append(
                BandFit(
                    survey=survey,
                    band=band,
                    definition=definition,
                    source_index=src,
                    separation_arcsec=match.separation_arcsec,
                    cat_mag=cat_mag,
                    cat_err=cat_err,
                    colour=colour,
                    colour_err=colour_err,
                    fit=fit,
                    failure=failure,
                )
            )
    return fits
