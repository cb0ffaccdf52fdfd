"""Choice of the reference survey and band that calibrate an observation (CPCS "AUTO" mode).

Observers often declare a filter only loosely ("R", "clear", "r'") and their instrumental band is
never exactly a catalogue band. Every survey/band that could calibrate the image is therefore fitted
and the fits are ranked with the rule documented in :func:`rank_candidates`. Forced modes
("SURVEY/BAND" and "any/BAND") restrict the candidates first with :func:`filter_forced`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cpcs.errors import CalibrationFailed
from cpcs.science.zeropoint import ZeroPointFit

__all__ = [
    "COMPARABLE_SCATTER_ABS_MAG",
    "COMPARABLE_SCATTER_RATIO",
    "DECLARED_BAND_BONUS",
    "BandCandidate",
    "RankedCandidate",
    "choose_band",
    "filter_forced",
    "rank_candidates",
]

#: A fit's scatter is comparable with the best one when below ``ratio * best`` ...
COMPARABLE_SCATTER_RATIO = 1.5
#: ... or below ``best + this`` (mag), whichever is larger.
COMPARABLE_SCATTER_ABS_MAG = 0.02
#: Colour-term units (mag/mag) by which a band matching the declared filter is preferred: another
#: band must have a colour term smaller by more than this to win over it.
DECLARED_BAND_BONUS = 0.05


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
        True when this band is the filter the observer declared, or close to it.
    """

    survey: str
    band: str
    fit: ZeroPointFit | None
    n_matched: int
    failure: str | None = None
    declared_match: bool = False

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
    comparable_scatter : bool
        A good fit whose scatter is comparable with the best scatter (the tier that can win).
    declared : bool
        The band matches the declared filter (``declared_match`` or equal to ``declared_band``).
    score : float
        Lower is better: ``|colour_term| - DECLARED_BAND_BONUS * declared`` for good fits, ``inf``
        for failed ones. Scores only order candidates within a tier (see :func:`rank_candidates`).
    reason : str
        Human-readable explanation of the place in the ranking.
    """

    candidate: BandCandidate
    rank: int
    good: bool
    comparable_scatter: bool
    declared: bool
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


def _quality_scatter(fit: ZeroPointFit) -> float:
    """The scatter compared between candidates (the fit's robust residual rms, mag)."""
    return fit.scatter


def _is_good(candidate: BandCandidate, min_stars: int) -> bool:
    fit = candidate.fit
    return (
        candidate.failure is None
        and fit is not None
        and fit.n_used >= min_stars
        and math.isfinite(fit.scatter)
        and math.isfinite(fit.colour_term)
    )


def _describe_fit(fit: ZeroPointFit) -> str:
    text = f"{fit.n_used} stars, scatter {fit.scatter:.3f} mag"
    if fit.colour_fitted:
        text += f", colour term {fit.colour_term:+.3f}±{fit.colour_term_err:.3f}"
    return text


def rank_candidates(
    candidates: Sequence[BandCandidate], *, declared_band: str | None = None, min_stars: int = 5
) -> list[RankedCandidate]:
    """Rank survey/band candidates, best first.

    Rule:

    1. A candidate is *good* when it has a fit with at least ``min_stars`` stars used and no
       failure code. Failed candidates come last (ordered by number of matched stars), with
       their failure code in ``reason``.
    2. Among good fits, let ``best`` be the smallest scatter. A fit's scatter is *comparable* when
       ``scatter <= max(COMPARABLE_SCATTER_RATIO * best, best + COMPARABLE_SCATTER_ABS_MAG)``.
       Comparable fits rank before the other good fits.
    3. Within each tier, candidates are ordered by ``score = |colour_term| - DECLARED_BAND_BONUS``
       if the band matches the declared filter (the candidate's ``declared_match`` flag, or its band
       equal to ``declared_band``), else ``|colour_term|``; ties go to the smaller scatter, then to
       more stars. A wrong band betrays itself by a large colour term even when its scatter is
       small, while the instrumental band is closest to the catalogue band with the smallest
       colour term; the declared filter wins unless another band's colour term is smaller by more
       than ``DECLARED_BAND_BONUS``. (Colour terms are compared as fitted, in each survey's own
       colour: surveys whose colours span similar ranges, e.g. g - r and B - V, compare fairly.)

    Parameters
    ----------
    candidates : sequence of BandCandidate
        Every survey/band tried.
    declared_band : str, optional
        The observer's declared filter; a candidate whose band equals it counts as declared.
    min_stars : int, optional
        Fewest stars for a good fit.

    Returns
    -------
    list of RankedCandidate
        All candidates, best first.
    """
    good = [c for c in candidates if _is_good(c, min_stars)]
    best_scatter = min((_quality_scatter(c.fit) for c in good if c.fit is not None), default=math.nan)
    threshold = max(COMPARABLE_SCATTER_RATIO * best_scatter, best_scatter + COMPARABLE_SCATTER_ABS_MAG)

    entries: list[tuple[tuple[float, ...], BandCandidate, bool, bool, bool, float, str]] = []
    for candidate in candidates:
        declared = candidate.declared_match or (declared_band is not None and candidate.band == declared_band)
        fit = candidate.fit
        if fit is not None and _is_good(candidate, min_stars):
            comparable = _quality_scatter(fit) <= threshold
            score = abs(fit.colour_term) - (DECLARED_BAND_BONUS if declared else 0.0)
            tier = 0 if comparable else 1
            key: tuple[float, ...] = (tier, score, _quality_scatter(fit), -fit.n_used)
            reason = _describe_fit(fit)
            if not comparable:
                reason += f"; scatter above {threshold:.3f} mag (best {best_scatter:.3f})"
            if declared:
                reason += "; matches the declared filter"
            entries.append((key, candidate, True, comparable, declared, score, reason))
        else:
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
            reason = f"failed: {why}{detail}; {candidate.n_matched} matched stars"
            entries.append(
                (
                    (2, math.inf, math.inf, -candidate.n_matched),
                    candidate,
                    False,
                    False,
                    declared,
                    math.inf,
                    reason,
                )
            )

    entries.sort(key=lambda entry: entry[0])
    ranked: list[RankedCandidate] = []
    for position, (_, candidate, is_good, comparable, declared, score, reason) in enumerate(entries, start=1):
        if position == 1 and is_good:
            reason = "chosen: " + reason
        ranked.append(
            RankedCandidate(
                candidate=candidate,
                rank=position,
                good=is_good,
                comparable_scatter=comparable,
                declared=declared,
                score=score,
                reason=reason,
            )
        )
    return ranked


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
