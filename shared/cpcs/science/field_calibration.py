"""Calibrating one field: an observer's source list against the reference catalogues of its sky.

Pure orchestration of the science steps (no I/O): cross-match each survey once, fit every
survey/band (zero point, colour term, spatial terms), choose the band (AUTO) or take the forced
one, then calibrate the target found at the alert's position, or report a 5-sigma upper limit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from cpcs.catalogs.coverage import outside_coverage
from cpcs.catalogs.model import ReferenceCatalogue
from cpcs.catalogs.surveys import SURVEYS, SurveyDefinition, definition_for
from cpcs.errors import CalibrationFailed
from cpcs.science.band_fits import MAX_SCATTER_MAG, MIN_STARS, fit_survey_bands
from cpcs.science.bands import band_family, standard_band
from cpcs.science.crossmatch import field_cone_radius_deg, nearest_source, tangent_plane_offsets
from cpcs.science.photometric_systems import ab_offset_of
from cpcs.science.selection import (
    BandCandidate,
    RankedCandidate,
    choose_band,
    filter_forced,
    not_tried_reason,
    rank_candidates,
    split_force_filter,
)
from cpcs.science.target import TargetMagnitude, calibrate_target, limiting_magnitude, upper_limit
from cpcs.science.zeropoint import ZeroPointFit

DETECTION_SNR = 5.0  # forced measurements below this are reported as 5-sigma upper limits


@dataclass(frozen=True)
class Alternative:
    """One survey/band considered, as the ranking saw it (kept with the calibration)."""

    survey: str
    band: str
    rank: int
    score: float | None
    scatter: float | None
    colour_term: float | None
    n_stars: int
    n_matched: int
    reason: str
    # The target's calibration error with this fit and its parts (mag; None for failed fits): the
    # quantity AUTO ranks by (cpcs.science.selection).
    err_zero_point: float | None = None
    err_scatter: float | None = None
    err_colour: float | None = None


@dataclass(frozen=True)
class ForcedTarget:
    """The target measured at the alert's position on an image (forced photometry), instrumental."""

    mag_inst: float  # NaN when the flux is not positive
    magerr_inst: float
    limit_mag_inst: float  # 5-sigma point-source limit at that position
    snr: float

    @property
    def is_detection(self) -> bool:
        return bool(self.snr >= DETECTION_SNR and math.isfinite(self.mag_inst))


@dataclass(frozen=True)
class FieldCalibration:
    mode: str  # "AUTO" or "FORCED"
    survey: str
    band: str
    colour_index: str | None
    catalogue_release: str | None
    fit: ZeroPointFit
    n_matched: int
    alternatives: tuple[Alternative, ...]
    target: TargetMagnitude
    target_ra_deg: float | None
    target_dec_deg: float | None
    target_inst_mag: float | None
    ab_offset: float | None  # m_AB - m in the chosen band's system; None if unknown


def _in_family(band: str, family: frozenset[str] | None) -> bool:
    """The reference band belongs to the declared filter's band family (``band_family``)."""
    if family is None:
        return False
    standard = standard_band(band)
    return standard is not None and standard.name in family


def _alternative(entry: RankedCandidate) -> Alternative:
    fit = entry.candidate.fit
    budget = entry.budget
    return Alternative(
        survey=entry.candidate.survey,
        band=entry.candidate.band,
        rank=entry.rank,
        score=entry.score if math.isfinite(entry.score) else None,
        scatter=fit.scatter if fit is not None else None,
        colour_term=fit.colour_term if fit is not None else None,
        n_stars=fit.n_used if fit is not None else 0,
        n_matched=entry.candidate.n_matched,
        reason=entry.reason,
        err_zero_point=budget.zero_point if budget is not None else None,
        err_scatter=budget.scatter if budget is not None else None,
        err_colour=budget.colour if budget is not None else None,
    )


def _not_tried(
    references: Mapping[str, ReferenceCatalogue],
    src_ra: np.ndarray,
    src_dec: np.ndarray,
    target_ra_deg: float,
    target_dec_deg: float,
    first_rank: int,
) -> list[Alternative]:
    """The fetchable known surveys absent from ``references`` because the field's cone (the one the
    calibration asks the catalog-cache for) lies outside their footprint."""
    radius = field_cone_radius_deg(src_ra, src_dec, target_ra_deg, target_dec_deg)
    present = {definition_for(name).name for name in references}
    candidates = [name for name, d in SURVEYS.items() if d.fetchable and name not in present]
    outside = outside_coverage(candidates, target_ra_deg, target_dec_deg, radius)
    return [
        Alternative(
            survey=name,
            band="*",
            rank=first_rank + k,
            score=None,
            scatter=None,
            colour_term=None,
            n_stars=0,
            n_matched=0,
            reason=not_tried_reason(name, fp.description),
        )
        for k, (name, fp) in enumerate(outside.items())
    ]


def _refuse_forced_outside_coverage(
    survey: str,
    band: str,
    references: Mapping[str, ReferenceCatalogue],
    src_ra: np.ndarray,
    src_dec: np.ndarray,
    target_ra_deg: float,
    target_dec_deg: float,
) -> None:
    """A forced survey that cannot cover the field is refused with the reason, not a bare list."""
    definition = definition_for(survey)
    if definition.custom:
        return
    radius = field_cone_radius_deg(src_ra, src_dec, target_ra_deg, target_dec_deg)
    outside = outside_coverage([definition.name], target_ra_deg, target_dec_deg, radius)
    if definition.name in outside:
        available = ", ".join(sorted(references)) or "none"
        raise CalibrationFailed(
            f"the forced band {survey}/{band} cannot calibrate this field: it is outside "
            f"{definition.name} coverage ({outside[definition.name].description}); surveys with stars "
            f"here: {available}. Force another survey or use AUTO.",
            code="forced_band_unavailable",
        )


def _target_colour(
    definition: SurveyDefinition, band: str, same_night_mags: Mapping[str, tuple[float, float]]
) -> tuple[float, float, str | None]:
    """The target's colour in the band's colour index from the same night's other filters, if known."""
    pair = definition.band(band).colour if definition.has_band(band) else None
    if pair is None:
        return math.nan, math.nan, None
    name = f"{pair[0]}-{pair[1]}"
    if pair[0] in same_night_mags and pair[1] in same_night_mags:
        (m1, e1), (m2, e2) = same_night_mags[pair[0]], same_night_mags[pair[1]]
        return m1 - m2, math.hypot(e1, e2), name
    return math.nan, math.nan, name


def calibrate_field(
    ra_deg: ArrayLike,
    dec_deg: ArrayLike,
    mag: ArrayLike,
    magerr: ArrayLike,
    *,
    target_ra_deg: float,
    target_dec_deg: float,
    references: Mapping[str, ReferenceCatalogue],
    match_radius_arcsec: float = 2.0,
    force_filter: str | None = None,
    declared_filter: str | None = None,
    same_night_mags: Mapping[str, tuple[float, float]] | None = None,
    forced_target: ForcedTarget | None = None,
    min_stars: int = MIN_STARS,
    colour_term_priors: Mapping[tuple[str, str], tuple[float, float]] | None = None,
) -> FieldCalibration:
    """Calibrate a source list (instrumental magnitudes) and measure the target.

    Parameters
    ----------
    ra_deg, dec_deg, mag, magerr : array_like
        The observer's sources: positions (deg) and instrumental magnitudes with errors (mag).
    target_ra_deg, target_dec_deg : float
        The alert's position (deg); the nearest source within ``match_radius_arcsec`` is the
        target and takes no part in the fits.
    references : mapping of survey name to ReferenceCatalogue
        Reference stars around the field.
    force_filter : str, optional
        ``"SURVEY/BAND"`` or ``"any/BAND"``; None chooses automatically.
    declared_filter : str, optional
        The observer's filter name; in AUTO mode it fixes the band family (``band_family``: "r"
        -> r or R bands; ``Clear`` fixes none) and the survey is chosen within it.
    same_night_mags : mapping of band to (mag, err), optional
        The target's calibrated magnitudes from the same night, to estimate its colour.
    forced_target : ForcedTarget, optional
        The target measured at the alert's position (images): used instead of the nearest source;
        below S/N 5 the result is the 5-sigma upper limit at that position.
    colour_term_priors : mapping of (survey, band) to (mean, sigma), optional
        Colour terms learned from the instrument's earlier frames
        (:func:`cpcs.science.colour_terms.learn_colour_term`, ``LearnedColourTerm.prior``): the fit
        of that survey/band takes it as a Gaussian prior (``fit.colour_term_prior`` records it).

    Raises
    ------
    CalibrationFailed
        ``too_few_matches`` when no survey has ``min_stars`` matched stars; ``no_calibration`` or
        ``forced_band_unavailable`` when no acceptable fit exists.
    """
    src_ra = np.asarray(ra_deg, dtype=float)
    src_dec = np.asarray(dec_deg, dtype=float)
    src_mag = np.asarray(mag, dtype=float)
    src_err = np.asarray(magerr, dtype=float)
    forced = split_force_filter(force_filter)
    family = band_family(declared_filter)

    x, y = tangent_plane_offsets(src_ra, src_dec, target_ra_deg, target_dec_deg)
    target_index = nearest_source(src_ra, src_dec, target_ra_deg, target_dec_deg, match_radius_arcsec)
    field_stars = np.arange(src_ra.size)
    if target_index is not None:
        field_stars = field_stars[field_stars != target_index]
    # Where the target's calibration is judged (tangent-plane offsets from the alert's position).
    if forced_target is None and target_index is not None:
        target_x, target_y = float(x[target_index]), float(y[target_index])
    else:
        target_x = target_y = 0.0
    night = same_night_mags or {}

    fits = fit_survey_bands(
        src_mag,
        src_err,
        src_ra,
        src_dec,
        x,
        y,
        field_stars,
        references,
        match_radius_arcsec,
        forced=forced,
        min_stars=min_stars,
        colour_term_priors=colour_term_priors,
    )
    definitions: dict[str, SurveyDefinition] = {fitted.survey: fitted.definition for fitted in fits}
    candidates: list[BandCandidate] = []
    for fitted in fits:
        target_colour, target_colour_err, _ = _target_colour(fitted.definition, fitted.band, night)
        candidates.append(
            BandCandidate(
                survey=fitted.survey,
                band=fitted.band,
                fit=fitted.fit,
                n_matched=fitted.n_matched,
                failure=fitted.failure,
                declared_match=_in_family(fitted.band, family),
                target_colour=target_colour,
                target_colour_err=target_colour_err,
                target_x=target_x,
                target_y=target_y,
                star_x=x[fitted.source_index],
                star_y=y[fitted.source_index],
            )
        )

    if forced is not None:
        if forced[0] is not None and not any(c.survey.casefold() == forced[0].casefold() for c in candidates):
            _refuse_forced_outside_coverage(
                forced[0], forced[1], references, src_ra, src_dec, target_ra_deg, target_dec_deg
            )
        candidates = filter_forced(candidates, forced[0], forced[1])
    if not any(c.n_matched >= min_stars for c in candidates):
        best = max((c.n_matched for c in candidates), default=0)
        raise CalibrationFailed(
            f"Failed to match the catalogue to reference stars: at most {best} stars matched within "
            f"{match_radius_arcsec:g} arcsec (at least {min_stars} needed). Increase the matching radius, "
            "or redo the astrometry.",
            code="too_few_matches",
        )
    ranked = rank_candidates(candidates, min_stars=min_stars)
    if not any(entry.good for entry in ranked) and any(c.failure == "scatter_too_large" for c in candidates):
        best_scatter = min(c.fit.scatter for c in candidates if c.fit is not None)
        raise CalibrationFailed(
            "The matched stars do not follow one photometric relation "
            f"(scatter at best {best_scatter:.2f} mag, more than {MAX_SCATTER_MAG} allowed): "
            "the matches are likely chance coincidences. "
            "Check the astrometry of the catalogue and the alert's coordinates.",
            code="poor_calibration",
        )
    chosen = choose_band(ranked)
    survey, band = chosen.candidate.survey, chosen.candidate.band
    fit = chosen.candidate.fit
    assert fit is not None
    definition = definitions[survey]

    colour, colour_err, colour_index = _target_colour(definition, band, night)
    spatial = chosen.budget.unmodelled_spatial if chosen.budget is not None else 0.0
    if not fit.colour_fitted:
        colour_index = None
    limit_inst = limiting_magnitude(src_mag[field_stars], src_err[field_stars])
    target_ra = target_dec = target_inst = None
    if forced_target is not None:
        target_ra, target_dec = target_ra_deg, target_dec_deg
        if forced_target.is_detection:
            target_inst = forced_target.mag_inst
            target = calibrate_target(
                fit,
                forced_target.mag_inst,
                forced_target.magerr_inst,
                colour=colour,
                colour_err=colour_err,
                limit_inst_mag=forced_target.limit_mag_inst,
                unmodelled_spatial=spatial,
            )
        else:
            target = upper_limit(
                fit,
                forced_target.limit_mag_inst,
                colour=colour,
                colour_err=colour_err,
                x=0.0,
                y=0.0,
                unmodelled_spatial=spatial,
            )
    elif target_index is not None:
        target_ra, target_dec = float(src_ra[target_index]), float(src_dec[target_index])
        target_inst = float(src_mag[target_index])
        target = calibrate_target(
            fit,
            target_inst,
            float(src_err[target_index]),
            colour=colour,
            colour_err=colour_err,
            x=float(x[target_index]),
            y=float(y[target_index]),
            limit_inst_mag=limit_inst,
            unmodelled_spatial=spatial,
        )
    else:
        if limit_inst is None:
            # Too few stars to trace signal-to-noise against magnitude: the faintest source is
            # the most that can be said.
            limit_inst = float(np.nanmax(src_mag[field_stars]))
        target = upper_limit(
            fit, limit_inst, colour=colour, colour_err=colour_err, x=0.0, y=0.0, unmodelled_spatial=spatial
        )

    band_definition = definition.band(band) if definition.has_band(band) else None
    offset: float | None = None
    if band_definition is not None and band_definition.system is not None:
        offset = ab_offset_of(definition.name, band, band_definition.system)
    release = definition.title if not definition.custom else survey
    return FieldCalibration(
        mode="FORCED" if forced is not None else "AUTO",
        survey=survey,
        band=band,
        colour_index=colour_index,
        catalogue_release=release,
        fit=fit,
        n_matched=chosen.candidate.n_matched,
        alternatives=(
            *(_alternative(entry) for entry in ranked),
            *_not_tried(references, src_ra, src_dec, target_ra_deg, target_dec_deg, len(ranked) + 1),
        ),
        target=target,
        target_ra_deg=target_ra,
        target_dec_deg=target_dec,
        target_inst_mag=target_inst,
        ab_offset=offset,
    )
