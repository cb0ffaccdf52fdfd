"""Survey/band selection (AUTO mode) and forced modes."""

from __future__ import annotations

import numpy as np
import pytest

from cpcs.errors import CalibrationFailed
from cpcs.science.selection import (
    BandCandidate,
    RankedCandidate,
    choose_band,
    filter_forced,
    rank_candidates,
)
from cpcs.science.zeropoint import ZeroPointFit, fit_zero_point
from cpcs.testing import match_field, simulate_field


def _synthetic_fit(seed: int, *, colour_term: float, scatter: float, n: int = 200) -> ZeroPointFit:
    """A fit of clean data with a given colour term and per-star scatter (mag)."""
    rng = np.random.default_rng(seed)
    colour = rng.uniform(0.2, 1.5, n)
    inst = rng.uniform(-12.0, -6.0, n)
    err = np.full(n, scatter / np.sqrt(2.0))
    cat = inst + 25.0 + colour_term * colour + scatter * rng.normal(size=n)
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
    assert ranked[0].comparable_scatter and ranked[1].comparable_scatter
    assert ranked[0].score == pytest.approx(abs(right.colour_term))


def test_much_worse_scatter_loses_even_with_a_small_colour_term() -> None:
    precise = _synthetic_fit(3, colour_term=0.30, scatter=0.02)
    noisy = _synthetic_fit(4, colour_term=0.01, scatter=0.10)  # 0.10 > max(1.5 * 0.02, 0.02 + 0.02)
    ranked = rank_candidates([_candidate("APASS", "r", noisy), _candidate("PS1", "r", precise)])
    assert choose_band(ranked).survey == "PS1"
    assert ranked[1].good and not ranked[1].comparable_scatter
    assert "scatter above" in ranked[1].reason


def test_declared_band_is_preferred_unless_clearly_worse() -> None:
    a = _synthetic_fit(5, colour_term=0.10, scatter=0.03)
    b = _synthetic_fit(6, colour_term=0.13, scatter=0.03)
    close_call = [_candidate("PS1", "r", a), _candidate("GaiaSP", "R", b)]
    assert choose_band(rank_candidates(close_call)).band == "r"
    ranked = rank_candidates(close_call, declared_band="R")
    assert choose_band(ranked).band == "R"
    assert ranked[0].declared and "declared" in ranked[0].reason
    # The flag set by the caller ("close to" the declared filter) works the same way.
    flagged = [_candidate("PS1", "r", a), _candidate("GaiaSP", "R", b, declared_match=True)]
    assert choose_band(rank_candidates(flagged)).band == "R"
    # A declared band whose colour term is larger by more than the bonus loses.
    c = _synthetic_fit(7, colour_term=0.40, scatter=0.03)
    ranked = rank_candidates([_candidate("PS1", "r", a), _candidate("PS1", "i", c)], declared_band="i")
    assert choose_band(ranked).band == "r"


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
