"""Survey/band selection (AUTO mode) and forced modes."""

from __future__ import annotations

import numpy as np
import pytest

from cpcs.errors import CalibrationFailed, InputError
from cpcs.science.selection import (
    ERROR_TIE_MAG,
    BandCandidate,
    RankedCandidate,
    choose_band,
    filter_forced,
    parse_force_filter,
    rank_candidates,
    split_force_filter,
)
from cpcs.science.target import DEFAULT_COLOUR_ERR_MAG, UNFITTED_COLOUR_TERM, calibration_budget
from cpcs.science.zeropoint import ZeroPointFit, fit_zero_point
from cpcs.simulation import match_field, simulate_field


def _synthetic_fit(
    seed: int,
    *,
    colour_term: float,
    scatter: float,
    n: int = 200,
    extra_scatter: float = 0.0,
    colour_term_noise: float = 0.0,
) -> ZeroPointFit:
    """A fit of clean data with a given colour term and per-star scatter explained by the errors (mag).

    ``extra_scatter`` adds scatter the errors do not explain; ``colour_term_noise`` shifts the data's
    colour term (a chance departure of a small sample).
    """
    rng = np.random.default_rng(seed)
    colour = rng.uniform(0.2, 1.5, n)
    inst = rng.uniform(-12.0, -6.0, n)
    err = np.full(n, scatter / np.sqrt(2.0))
    noise = scatter * rng.normal(size=n) + extra_scatter * rng.normal(size=n)
    cat = inst + 25.0 + (colour_term + colour_term_noise) * colour + noise
    return fit_zero_point(inst, err, cat, err, colour, clip_sigma=None)


def _candidate(survey: str, band: str, fit: ZeroPointFit | None, **kw: object) -> BandCandidate:
    n = fit.n_input if fit is not None else 0
    return BandCandidate(survey=survey, band=band, fit=fit, n_matched=n, **kw)  # type: ignore[arg-type]


def test_simulated_field_picks_the_instrumental_band() -> None:
    field = simulate_field(8, n_stars=500)
    candidates = []
    for band in ("g", "r", "i", "z"):
        m = match_field(field, "PS1", band)
        fit = fit_zero_point(m.inst_mag, m.inst_err, m.cat_mag, m.cat_err, m.colour, m.x_deg, m.y_deg)
        candidates.append(BandCandidate("PS1", band, fit, n_matched=m.inst_mag.size))
    ranked = rank_candidates(candidates)
    assert ranked[0].band == "r"
    assert choose_band(ranked).band == "r"
    assert ranked[0].reason.startswith("chosen: ")
    assert [r.rank for r in ranked] == [1, 2, 3, 4]
    # The worst colour term (g: 1.12 vs g - r) comes last among these good fits.
    assert ranked[-1].band == "g"


def test_wrong_band_with_similar_scatter_but_large_colour_term_loses() -> None:
    right = _synthetic_fit(1, colour_term=0.05, scatter=0.030)
    wrong = _synthetic_fit(2, colour_term=0.60, scatter=0.027)  # even a slightly smaller scatter
    assert wrong.scatter < right.scatter
    ranked = rank_candidates([_candidate("PS1", "i", wrong), _candidate("PS1", "r", right)])
    assert choose_band(ranked).band == "r"
    # The score is the target's calibration error: zero point at colour 0, scatter, colour part.
    assert ranked[0].score == pytest.approx(calibration_budget(right).total)
    assert ranked[1].budget is not None and ranked[1].budget.colour == pytest.approx(
        np.hypot(wrong.colour_term, wrong.colour_term_err) * DEFAULT_COLOUR_ERR_MAG
    )
    assert (
        "calibration error" in ranked[0].reason
        and f"colour term {right.colour_term:+.3f}" in ranked[0].reason
    )


def test_unexplained_scatter_loses_even_with_a_small_colour_term() -> None:
    precise = _synthetic_fit(3, colour_term=0.10, scatter=0.02)
    noisy = _synthetic_fit(4, colour_term=0.01, scatter=0.02, extra_scatter=0.10)
    assert noisy.intrinsic_scatter > 0.08
    ranked = rank_candidates([_candidate("APASS", "r", noisy), _candidate("PS1", "r", precise)])
    assert choose_band(ranked).survey == "PS1"
    assert ranked[1].budget is not None and ranked[1].budget.scatter == noisy.intrinsic_scatter


def test_raw_scatter_explained_by_the_errors_does_not_lose() -> None:
    """The old rule's weakness: a deep catalogue has a large raw scatter (faint stars), yet the
    better calibration; the shallow one's colour term, from few stars, is off (as in issue 8)."""
    shallow = _synthetic_fit(11, colour_term=0.12, scatter=0.03, n=38, colour_term_noise=0.04)
    deep = _synthetic_fit(12, colour_term=0.12, scatter=0.08, n=400)
    assert shallow.scatter < deep.scatter
    ranked = rank_candidates([_candidate("APASS", "r", shallow), _candidate("GaiaSP", "r", deep)])
    assert choose_band(ranked).survey == "GaiaSP"


def test_ties_go_to_the_fit_with_more_stars() -> None:
    few = _synthetic_fit(13, colour_term=0.12, scatter=0.03, n=40)
    many = _synthetic_fit(14, colour_term=0.12, scatter=0.03, n=400)
    ranked = rank_candidates([_candidate("APASS", "r", few), _candidate("PS1", "r", many)])
    assert abs(ranked[0].score - ranked[1].score) <= max(
        ERROR_TIE_MAG, few.colour_term_err * DEFAULT_COLOUR_ERR_MAG
    )
    assert choose_band(ranked).survey == "PS1"
    assert "more stars win" in ranked[0].reason


def test_unfitted_colour_term_counts_as_unknown_not_zero() -> None:
    with_colour = _synthetic_fit(15, colour_term=0.12, scatter=0.02)
    rng = np.random.default_rng(16)
    inst = rng.uniform(-12.0, -6.0, 300)
    err = np.full(300, 0.01)
    no_colour = fit_zero_point(inst, err, inst + 25.0 + 0.01 * rng.normal(size=300), err, clip_sigma=None)
    assert not no_colour.colour_fitted and no_colour.colour_term == 0.0
    ranked = rank_candidates([_candidate("Gaia", "G", no_colour), _candidate("PS1", "r", with_colour)])
    assert choose_band(ranked).band == "r"
    assert ranked[1].budget is not None
    assert ranked[1].budget.colour == pytest.approx(UNFITTED_COLOUR_TERM * DEFAULT_COLOUR_ERR_MAG)
    assert "not fitted" in ranked[1].reason


def test_the_declared_family_is_binding_when_it_has_a_good_fit() -> None:
    a = _synthetic_fit(5, colour_term=0.10, scatter=0.03)
    b = _synthetic_fit(6, colour_term=0.13, scatter=0.03)
    close_call = [_candidate("PS1", "r", a), _candidate("GaiaSP", "V", b)]
    assert choose_band(rank_candidates(close_call)).band == "r"
    ranked = rank_candidates(close_call, declared_band="V")
    assert choose_band(ranked).band == "V"
    assert ranked[0].declared and "declared" in ranked[0].reason
    assert not ranked[1].eligible and "outside the declared" in ranked[1].reason
    # The flag set by the caller (the band is in the declared filter's family) works the same way.
    flagged = [_candidate("PS1", "r", a), _candidate("GaiaSP", "V", b, declared_match=True)]
    assert choose_band(rank_candidates(flagged)).band == "V"
    # Even a declared band with a much larger colour term: the observer's filter fixes the family.
    c = _synthetic_fit(7, colour_term=0.40, scatter=0.03)
    ranked = rank_candidates([_candidate("PS1", "r", a), _candidate("PS1", "i", c)], declared_band="i")
    assert choose_band(ranked).band == "i"
    # A declared band without a good fit: every good fit competes again.
    failed = BandCandidate("PS1", "i", None, n_matched=2, failure="too_few_stars", declared_match=True)
    ranked = rank_candidates([_candidate("PS1", "r", a), failed])
    assert choose_band(ranked).band == "r" and "no band of the declared family" in ranked[0].reason


def test_failed_candidates_rank_last_and_no_good_fit_raises() -> None:
    good = _synthetic_fit(8, colour_term=0.1, scatter=0.03)
    tiny = _synthetic_fit(9, colour_term=0.1, scatter=0.01, n=6)  # fewer stars than min_stars=10
    candidates = [
        BandCandidate("GaiaSP", "I", None, n_matched=3, failure="too_few_matches"),
        _candidate("PS1", "z", tiny),
        _candidate("PS1", "r", good),
    ]
    ranked = rank_candidates(candidates, min_stars=10)
    assert [r.band for r in ranked] == ["r", "z", "I"]
    assert ranked[0].good and not ranked[1].good and not ranked[2].good
    assert "too_few_stars" in ranked[1].reason
    assert "too_few_matches" in ranked[2].reason
    assert ranked[2].score == float("inf")

    only_failed = rank_candidates(candidates[:2], min_stars=10)
    with pytest.raises(CalibrationFailed) as excinfo:
        choose_band(only_failed)
    assert excinfo.value.code == "no_calibration"
    assert "GaiaSP/I" in excinfo.value.message
    with pytest.raises(CalibrationFailed):
        choose_band([])


def _forced_candidates() -> list[BandCandidate]:
    fit = _synthetic_fit(10, colour_term=0.1, scatter=0.03)
    return [
        BandCandidate("PS1", "r", fit, n_matched=200),
        BandCandidate("PS1", "i", fit, n_matched=200),
        BandCandidate("GaiaSP", "I", fit, n_matched=40),
        BandCandidate("GaiaSP", "R", None, n_matched=2, failure="too_few_matches"),
    ]


def test_forced_survey_and_band() -> None:
    candidates = _forced_candidates()
    selected = filter_forced(candidates, "PS1", "r")
    assert [(c.survey, c.band) for c in selected] == [("PS1", "r")]
    assert [c.label for c in filter_forced(candidates, "ps1", "i")] == ["PS1/i"]  # survey: any case


def test_forced_any_survey_band_is_case_sensitive() -> None:
    candidates = _forced_candidates()
    assert [c.label for c in filter_forced(candidates, None, "I")] == ["GaiaSP/I"]
    assert [c.label for c in filter_forced(candidates, None, "i")] == ["PS1/i"]


def test_forced_band_unavailable() -> None:
    candidates = _forced_candidates()
    with pytest.raises(CalibrationFailed) as excinfo:
        filter_forced(candidates, "PS1", "R")
    assert excinfo.value.code == "forced_band_unavailable"
    for label in ("PS1/r", "PS1/i", "GaiaSP/I", "GaiaSP/R"):
        assert label in excinfo.value.message
    with pytest.raises(CalibrationFailed) as excinfo:
        filter_forced(candidates, None, "V")
    assert excinfo.value.code == "forced_band_unavailable"
    assert "any/V" in excinfo.value.message


def test_forced_band_that_failed_reports_no_calibration() -> None:
    selected = filter_forced(_forced_candidates(), "GaiaSP", "R")
    ranked: list[RankedCandidate] = rank_candidates(selected)
    with pytest.raises(CalibrationFailed) as excinfo:
        choose_band(ranked)
    assert excinfo.value.code == "no_calibration"
    assert "too_few_matches" in excinfo.value.message


def test_one_parser_for_every_spelling_of_a_forced_band() -> None:
    for auto in (None, "", "  ", "no", "No", "none", "auto", "AUTO", "automatic", "0"):
        assert parse_force_filter(auto) is None and split_force_filter(auto) is None
    assert parse_force_filter(" APASS / V ") == "APASS/V"
    assert split_force_filter("APASS/V") == ("APASS", "V")
    assert split_force_filter("any/r") == (None, "r") and split_force_filter("ANY/I") == (None, "I")
    for bad in ("V", "APASS/", "/V", "a/b/c"):
        with pytest.raises(InputError) as caught:
            parse_force_filter(bad, "force_filter")
        assert caught.value.code == "invalid_force_filter" and "force_filter" in str(caught.value)
