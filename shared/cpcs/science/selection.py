"""Choice of the reference survey and band that calibrate an observation (CPCS "AUTO" mode).

Observers often declare a filter only loosely ("R", "clear", "r'") and their instrumental band is
never exactly a catalogue band. Every survey/band that could calibrate the image is therefore fitted
and the fits are ranked by what matters for the target: **the calibration error it would carry**
(:func:`cpcs.science.target.calibration_budget`), the quadrature sum of

* the error of the fitted transformation at the target's colour and position (from the fit's full
  covariance: zero point, colour term, spatial terms), plus the frame's zero-point pattern where the
  fit has no spatial term for it (:func:`unmodelled_spatial_error`),
* the fit's intrinsic scatter (the part of the residuals the measurement errors do not explain),
* the colour term times the target's colour uncertainty, the colour term's own uncertainty
  included (``hypot(colour_term, colour_term_err) * colour_err``; the target's colour is 0 +- 0.5
  mag unless the same night's other filters give it). A band whose colour term could not be fitted
  has an *unknown* colour term, not a zero one: ``UNFITTED_COLOUR_TERM`` (0.25) stands in for it.

Raw residual scatter is *not* compared: it rewards shallow catalogues of bright stars and bands fitted
without a colour term. The full rule is in :func:`rank_candidates`. Forced modes ("SURVEY/BAND" and
"any/BAND") restrict the candidates first with :func:`filter_forced`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import ArrayLike

from cpcs.errors import CalibrationFailed, InputError
from cpcs.science.target import CalibrationBudget, calibration_budget
from cpcs.science.zeropoint import ZeroPointFit

__all__ = [
    "AUTO_WORDS",
    "ERROR_TIE_FRACTION",
    "ERROR_TIE_MAG",
    "ERROR_TIE_SIGMAS",
    "BandCandidate",
    "RankedCandidate",
    "choose_band",
    "filter_forced",
    "not_tried_reason",
    "parse_force_filter",
    "rank_candidates",
    "split_force_filter",
    "unmodelled_spatial_error",
]

#: Calibration errors closer than this (mag), than this fraction of the best one, or than the
#: resolution of the colour part (see :func:`rank_candidates`), are a tie: the fit with more stars
#: wins it. (An error estimated from a fit is itself uncertain by several per cent.)
ERROR_TIE_MAG = 0.002
ERROR_TIE_FRACTION = 0.05
#: ... or than this many standard deviations of the difference of their colour parts: a fit from
#: fewer stars must be significantly better to beat one from more.
ERROR_TIE_SIGMAS = 2.0


@dataclass(frozen=True)
class BandCandidate:
    """One survey/band tried for the calibration.

    Attributes
    ----------
    survey, band : str
        Reference survey and band (bands are case-sensitive: "I" is not "i").
    fit : ZeroPointFit or None
        The zero-point fit, or None when it could not be made.
    n_matched : int
        Number of cross-matched stars with a magnitude in this band.
    failure : str or None
        Machine-readable code of why there is no usable fit (e.g. ``"too_few_stars"``).
    declared_match : bool
        True when this band belongs to the family of the filter the observer declared
        (:func:`cpcs.science.bands.band_family`).
    target_colour, target_colour_err : float
        The target's colour in this band's colour index and its uncertainty (mag); NaN when
        unknown (then 0 +- ``DEFAULT_COLOUR_ERR_MAG``).
    target_x, target_y : float
        The target's position in the fit's spatial coordinates.
    star_x, star_y : ndarray or None
        Positions of the stars given to the fit (aligned with ``fit.used``), in the same
        coordinates; needed to judge a spatial pattern the fit does not model.
    """

    survey: str
    band: str
    fit: ZeroPointFit | None
    n_matched: int
    failure: str | None = None
    declared_match: bool = False
    target_colour: float = math.nan
    target_colour_err: float = math.nan
    target_x: float = 0.0
    target_y: float = 0.0
    star_x: ArrayLike | None = field(default=None, compare=False, repr=False)
    star_y: ArrayLike | None = field(default=None, compare=False, repr=False)

    @property
    def label(self) -> str:
        """``"SURVEY/BAND"``."""
        return f"{self.survey}/{self.band}"


@dataclass(frozen=True)
class RankedCandidate:
    """A candidate with its place in the ranking.

    Attributes
    ----------
    candidate : BandCandidate
        The ranked candidate.
    rank : int
        1 for the best.
    good : bool
        The fit is usable (a fit with at least ``min_stars`` stars used).
    declared : bool
        The band belongs to the declared filter's family (``declared_match`` or a band equal to
        ``declared_band``).
    eligible : bool
        A good fit that may be chosen: in the declared family, or any good fit when no family is
        declared or none of its bands gave a good fit.
    budget : CalibrationBudget or None
        The target's calibration error with this fit (None for failed candidates).
    score : float
        The target's calibration error ``budget.total`` (mag, lower is better); ``inf`` for failed
        candidates.
    reason : str
        Human-readable explanation of the place in the ranking.
    """

    candidate: BandCandidate
    rank: int
    good: bool
    declared: bool
    eligible: bool
    budget: CalibrationBudget | None
    score: float
    reason: str

    @property
    def survey(self) -> str:
        return self.candidate.survey

    @property
    def band(self) -> str:
        return self.candidate.band

    @property
    def fit(self) -> ZeroPointFit | None:
        return self.candidate.fit


def _is_good(candidate: BandCandidate, min_stars: int) -> bool:
    fit = candidate.fit
    return (
        candidate.failure is None
        and fit is not None
        and fit.n_used >= min_stars
        and math.isfinite(fit.scatter)
        and math.isfinite(fit.colour_term)
    )


def unmodelled_spatial_error(
    pattern: ZeroPointFit, fit: ZeroPointFit, star_x: ArrayLike, star_y: ArrayLike, x: float, y: float
) -> float:
    """The error at ``(x, y)`` of ``fit`` from a zero-point pattern it does not model (mag).

    A fit with a lower spatial order than ``pattern`` (the frame's best-constrained zero-point
    pattern, e.g. the deep catalogue's quadratic) absorbs the pattern's mean over its stars into its
    zero point, and misses the rest: at ``(x, y)`` it is off by ``P(x, y) - mean(P(stars used))``,
    with ``P`` the part of ``pattern``'s spatial polynomial of order above ``fit``'s.

    Parameters
    ----------
    pattern : ZeroPointFit
        The fit whose spatial terms describe the frame's zero-point pattern.
    fit : ZeroPointFit
        The fit judged.
    star_x, star_y : array_like
        Positions of the stars given to ``fit`` (aligned with ``fit.used``).
    x, y : float
        Where the calibration is needed (the target).

    Returns
    -------
    float
        The absolute error, mag; 0 when ``fit`` models at least ``pattern``'s order.
    """
    if fit.spatial_order >= pattern.spatial_order:
        return 0.0
    terms = [
        (term, coefficient)
        for term, coefficient in zip(pattern.spatial_terms, pattern.spatial_coefficients, strict=True)
        if sum(term) > fit.spatial_order
    ]
    sx = np.asarray(star_x, dtype=np.float64)[fit.used]
    sy = np.asarray(star_y, dtype=np.float64)[fit.used]
    if sx.size == 0:
        return 0.0

    def surface(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        total = np.zeros_like(u)
        for (i, j), coefficient in terms:
            total = total + coefficient * u**i * v**j
        return total

    at_target = float(surface(np.array([x], dtype=np.float64), np.array([y], dtype=np.float64))[0])
    return abs(at_target - float(np.mean(surface(sx, sy))))


def _spatial_pattern(candidates: Sequence[BandCandidate], min_stars: int) -> ZeroPointFit | None:
    """The good fit that constrains the frame's zero-point pattern best: a spatial term, most stars."""
    with_pattern = [
        c.fit for c in candidates if c.fit is not None and _is_good(c, min_stars) and c.fit.spatial_order > 0
    ]
    return max(with_pattern, key=lambda f: (f.n_used, f.spatial_order), default=None)


def _budget(candidate: BandCandidate, pattern: ZeroPointFit | None) -> CalibrationBudget:
    fit = candidate.fit
    assert fit is not None
    spatial = 0.0
    if pattern is not None and candidate.star_x is not None and candidate.star_y is not None:
        spatial = unmodelled_spatial_error(
            pattern, fit, candidate.star_x, candidate.star_y, candidate.target_x, candidate.target_y
        )
    return calibration_budget(
        fit,
        colour=candidate.target_colour,
        colour_err=candidate.target_colour_err,
        x=candidate.target_x,
        y=candidate.target_y,
        unmodelled_spatial=spatial,
    )


def _resolution(fit: ZeroPointFit, budget: CalibrationBudget) -> float:
    """How well the colour part of the error is known: ``colour_term_err * colour_err`` (mag)."""
    return fit.colour_term_err * budget.colour_err_assumed if fit.colour_fitted else 0.0


def _describe(fit: ZeroPointFit, budget: CalibrationBudget) -> str:
    if fit.colour_fitted:
        colour = f"colour term {fit.colour_term:+.3f}±{fit.colour_term_err:.3f}"
    else:
        colour = "colour term not fitted (unknown)"
    spatial = (
        f" with {budget.unmodelled_spatial:.3f} of unmodelled spatial pattern"
        if budget.unmodelled_spatial > 0.0005
        else ""
    )
    return (
        f"calibration error {budget.total:.3f} mag (zero point {budget.zero_point:.3f}{spatial}, "
        f"scatter {budget.scatter:.3f}, colour {budget.colour:.3f}: {colour} "
        f"× colour uncertainty {budget.colour_err_assumed:.2f}); {fit.n_used} stars, "
        f"residual rms {fit.scatter:.3f} mag"
    )


@dataclass(frozen=True)
class _Entry:
    candidate: BandCandidate
    good: bool
    declared: bool
    eligible: bool
    budget: CalibrationBudget | None
    reason: str

    @property
    def score(self) -> float:
        return self.budget.total if self.budget is not None else math.inf


def _failed_reason(candidate: BandCandidate, min_stars: int) -> str:
    fit = candidate.fit
    if candidate.failure is not None:
        why = candidate.failure
    elif fit is None:
        why = "no_fit"
    else:
        why = "too_few_stars"
    detail = (
        f" ({fit.n_used} stars used, {min_stars} needed)"
        if fit is not None and why == "too_few_stars"
        else ""
    )
    return f"failed: {why}{detail}; {candidate.n_matched} matched stars"


def _order_tier(entries: list[_Entry]) -> list[_Entry]:
    """Best calibration error first; within a tie with the best, the fit with more stars first."""
    if not entries:
        return []
    entries = sorted(entries, key=lambda e: e.score)
    best = entries[0]
    assert best.budget is not None and best.candidate.fit is not None
    best_resolution = _resolution(best.candidate.fit, best.budget)

    def tied(entry: _Entry) -> bool:
        assert entry.budget is not None and entry.candidate.fit is not None
        resolution = math.hypot(best_resolution, _resolution(entry.candidate.fit, entry.budget))
        margin = max(ERROR_TIE_MAG, ERROR_TIE_FRACTION * best.score, ERROR_TIE_SIGMAS * resolution)
        return entry.score - best.score <= margin

    tie = [e for e in entries if tied(e)]
    rest = [e for e in entries if not tied(e)]
    tie.sort(key=lambda e: (-(e.candidate.fit.n_used if e.candidate.fit else 0), e.score))
    if len(tie) > 1:
        tie = [replace(e, reason=e.reason + "; tied on error: more stars win") for e in tie]
    return tie + rest


def rank_candidates(
    candidates: Sequence[BandCandidate], *, declared_band: str | None = None, min_stars: int = 5
) -> list[RankedCandidate]:
    """Rank survey/band candidates, best first.

    Rule:

    1. A candidate is *good* when it has a fit with at least ``min_stars`` stars used and no
       failure code. Failed candidates come last (ordered by number of matched stars), with their
       failure code in ``reason``.
    2. **The declared filter fixes the band family** when it names one (``declared_match``, set by
       the caller from :func:`cpcs.science.bands.band_family`, or a band equal to
       ``declared_band``): an "r" or "R" filter is calibrated to an r or an R band, and AUTO
       chooses the survey. Good fits of other bands rank after them ("outside the declared
       filter's family"). When no band of the family has a good fit, or the filter fixes no
       family (``Clear``, unknown or none), every good fit competes: the band closest to the
       instrument then wins by the same error, through its small colour term.
    3. Eligible fits are ordered by the target's **calibration error** (module docstring). A
       wrong band betrays itself by its colour term (a target of unknown colour is uncertain by
       ``|colour_term| * 0.5 mag`` in it); a shallow catalogue by the error of its zero point and
       colour term; an unmodelled gradient or an unsuitable catalogue by its intrinsic scatter; a
       band without colours by its unknown colour term.
       The zero-point part includes the frame's zero-point pattern where a fit cannot model
       it: the good fit with a spatial term and the most stars describes the pattern, and a fit
       of lower spatial order (a shallow catalogue's few stars) is charged
       :func:`unmodelled_spatial_error` at the target's position.
    4. **Ties go to the deeper reference**: fits whose error is within ``max(ERROR_TIE_MAG,
       ERROR_TIE_FRACTION * best, ERROR_TIE_SIGMAS * hypot(r_best, r))`` of the best, with
       ``r = colour_term_err * colour_err`` how well each colour part is known (an error estimate
       is itself that uncertain), are ordered by the number of stars used, most first.

    Parameters
    ----------
    candidates : sequence of BandCandidate
        Every survey/band tried.
    declared_band : str, optional
        A standard band name; a candidate whose band equals it counts as in the declared family.
    min_stars : int, optional
        Fewest stars for a good fit.

    Returns
    -------
    list of RankedCandidate
        All candidates, best first.
    """
    pattern = _spatial_pattern(candidates, min_stars)
    good: list[_Entry] = []
    failed: list[_Entry] = []
    for candidate in candidates:
        declared = candidate.declared_match or (declared_band is not None and candidate.band == declared_band)
        if candidate.fit is not None and _is_good(candidate, min_stars):
            budget = _budget(candidate, pattern)
            good.append(_Entry(candidate, True, declared, True, budget, _describe(candidate.fit, budget)))
        else:
            failed.append(
                _Entry(candidate, False, declared, False, None, _failed_reason(candidate, min_stars))
            )

    family_declared = any(e.declared for e in good)
    eligible: list[_Entry] = []
    outside: list[_Entry] = []
    for entry in good:
        if not family_declared or entry.declared:
            note = "; in the declared filter's family" if entry.declared else ""
            eligible.append(replace(entry, reason=entry.reason + note))
        else:
            outside.append(
                replace(entry, eligible=False, reason=entry.reason + "; outside the declared filter's family")
            )
    if not family_declared and any(e.declared for e in failed):
        eligible = [replace(e, reason=e.reason + "; no band of the declared family fits") for e in eligible]

    ordered = (
        _order_tier(eligible) + _order_tier(outside) + sorted(failed, key=lambda e: -e.candidate.n_matched)
    )
    ranked: list[RankedCandidate] = []
    for position, entry in enumerate(ordered, start=1):
        reason = "chosen: " + entry.reason if position == 1 and entry.good else entry.reason
        ranked.append(
            RankedCandidate(
                candidate=entry.candidate,
                rank=position,
                good=entry.good,
                declared=entry.declared,
                eligible=entry.eligible,
                budget=entry.budget,
                score=entry.score,
                reason=reason,
            )
        )
    return ranked


def not_tried_reason(survey: str, footprint: str) -> str:
    """Why a survey is absent from a ranking: the field lies outside its sky coverage.

    ``footprint`` says what the survey covers (``cpcs.catalogs.coverage.Footprint.description``).
    """
    return f"not tried: outside {survey} coverage ({footprint})"


def choose_band(ranked: Sequence[RankedCandidate]) -> RankedCandidate:
    """The best candidate of a ranking from :func:`rank_candidates`.

    Raises
    ------
    CalibrationFailed
        ``no_calibration`` when no candidate has a good fit; the message lists why each failed.
    """
    if ranked and ranked[0].good:
        return ranked[0]
    if not ranked:
        raise CalibrationFailed("no reference catalogue band could be tried", code="no_calibration")
    details = "; ".join(f"{r.candidate.label}: {r.reason}" for r in ranked)
    raise CalibrationFailed(f"no survey/band gives a usable calibration ({details})", code="no_calibration")


#: What observers write for the automatic band choice (the old CPCS form sent ``no``).
AUTO_WORDS = frozenset({"", "no", "none", "auto", "automatic", "0"})


def parse_force_filter(value: str | None, field: str = "forceFilter") -> str | None:
    """A forced-band request as written by an observer: None for AUTO, else ``"SURVEY/BAND"``
    (``"any/BAND"`` for any survey), spaces trimmed.

    Raises
    ------
    InputError
        ``invalid_force_filter`` for anything else; the message names ``field``.
    """
    text = (value or "").strip()
    if text.lower() in AUTO_WORDS:
        return None
    survey, sep, band = text.partition("/")
    if not sep or not survey.strip() or not band.strip() or "/" in band:
        raise InputError(
            f"{field} {text[:40]!r} is not understood: use 'auto' (or 'no'), 'SURVEY/BAND' "
            "(e.g. APASS/V) or 'any/BAND'.",
            code="invalid_force_filter",
        )
    return f"{survey.strip()}/{band.strip()}"


def split_force_filter(force_filter: str | None) -> tuple[str | None, str] | None:
    """``"APASS/V"`` -> ("APASS", "V"); ``"any/r"`` -> (None, "r"); AUTO -> None."""
    canonical = parse_force_filter(force_filter)
    if canonical is None:
        return None
    survey, _, band = canonical.partition("/")
    return (None if survey.lower() == "any" else survey), band


def _available(candidates: Iterable[BandCandidate]) -> str:
    labels = sorted({c.label for c in candidates})
    return ", ".join(labels) if labels else "none"


def filter_forced(candidates: Sequence[BandCandidate], survey: str | None, band: str) -> list[BandCandidate]:
    """Candidates allowed by a forced mode: "SURVEY/BAND", or "any/BAND" when ``survey`` is None.

    The band is matched case-sensitively (CPCS has both "I" and "i"); the survey name
    case-insensitively. The result keeps failed candidates (ranking then reports why they failed).

    Raises
    ------
    CalibrationFailed
        ``forced_band_unavailable`` when no candidate matches; the message lists the available
        survey/bands.
    """
    wanted_survey = None if survey is None else survey.casefold()
    selected = [
        c
        for c in candidates
        if c.band == band and (wanted_survey is None or c.survey.casefold() == wanted_survey)
    ]
    if not selected:
        forced = f"{survey if survey is not None else 'any'}/{band}"
        raise CalibrationFailed(
            f"the forced band {forced} is not available for this field; available: {_available(candidates)}",
            code="forced_band_unavailable",
        )
    return selected
