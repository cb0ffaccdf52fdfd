"""The recomputed stars of a calibration agree with the calibration itself."""

from __future__ import annotations

import numpy as np
import pytest

from cpcs.catalogs.model import ReferenceCatalogue
from cpcs.science.calibration_diagnostics import diagnose_calibration
from cpcs.science.crossmatch import tangent_plane_offsets
from cpcs.science.field_calibration import calibrate_field
from cpcs.simulation.catalogue_simulator import SimulatedField, simulate_field

RA, DEC = 210.0, -12.0


def _references(field: SimulatedField) -> dict[str, ReferenceCatalogue]:
    return {
        ref.survey: ReferenceCatalogue(
            survey=ref.survey,
            ra_deg=ref.ra_deg,
            dec_deg=ref.dec_deg,
            mags=dict(ref.mags),
            errs=dict(ref.magerrs),
        )
        for ref in field.references
    }


@pytest.fixture(scope="module")
def field() -> SimulatedField:
    return simulate_field(5, n_stars=400, ra_deg=RA, dec_deg=DEC, target="bright", outlier_fraction=0.05)


@pytest.mark.parametrize("force_filter", [None, "PS1/r"])
def test_every_candidate_matches_the_calibration(field: SimulatedField, force_filter: str | None) -> None:
    references = _references(field)
    result = calibrate_field(
        field.ra_deg,
        field.dec_deg,
        field.mag,
        field.magerr,
        target_ra_deg=RA,
        target_dec_deg=DEC,
        references=references,
        match_radius_arcsec=2.0,
        force_filter=force_filter,
    )
    diagnostics = diagnose_calibration(
        field.ra_deg,
        field.dec_deg,
        field.mag,
        field.magerr,
        target_ra_deg=RA,
        target_dec_deg=DEC,
        references=references,
        match_radius_arcsec=2.0,
        chosen=(result.survey, result.band),
    )
    assert {(b.survey, b.band) for b in diagnostics.bands} == {
        (name, band) for name, ref in references.items() for band in ref.bands
    }
    chosen = diagnostics.chosen
    assert chosen is not None and (chosen.survey, chosen.band) == (result.survey, result.band)
    assert sum(b.chosen for b in diagnostics.bands) == 1
    assert chosen.fit is not None
    assert chosen.fit.zp == pytest.approx(result.fit.zp, abs=1e-12)
    assert chosen.fit.colour_term == pytest.approx(result.fit.colour_term, abs=1e-12)
    assert int(chosen.stars.used.sum()) == result.fit.n_used
    assert chosen.n_matched == result.n_matched
    for alternative in result.alternatives:
        entry = diagnostics.band(alternative.survey, alternative.band)
        assert entry is not None and entry.fit is not None
        assert entry.fit.n_used == alternative.n_stars
        assert entry.fit.scatter == pytest.approx(alternative.scatter, abs=1e-12)

    # The target is left out of every fit, as in the calibration.
    assert field.target is not None and diagnostics.target_index == field.target.source_index
    target_mag = field.mag[field.target.source_index]
    assert not np.any(np.isclose(chosen.stars.inst_mag, target_mag, atol=0, rtol=0))


def test_residuals_and_positions_are_consistent(field: SimulatedField) -> None:
    diagnostics = diagnose_calibration(
        field.ra_deg,
        field.dec_deg,
        field.mag,
        field.magerr,
        target_ra_deg=RA,
        target_dec_deg=DEC,
        references=_references(field),
        match_radius_arcsec=2.0,
        chosen=("PS1", "r"),
    )
    entry = diagnostics.band("PS1", "r")
    assert entry is not None and entry.fit is not None and entry.chosen
    stars, fit = entry.stars, entry.fit
    n = len(stars)
    for column in (stars.cat_mag, stars.colour, stars.x_arcmin, stars.residual, stars.used):
        assert len(column) == n
    assert np.isfinite(stars.cat_mag).all()  # stars without a magnitude in the band are left out
    # residual = m_cat - (m_inst + zp + colour term x colour + spatial terms)
    used = stars.used
    model = fit.predict(
        stars.inst_mag[used], stars.colour[used], stars.x_arcmin[used] / 60, stars.y_arcmin[used] / 60
    )
    np.testing.assert_allclose(stars.residual[used], stars.cat_mag[used] - model, atol=1e-9)
    np.testing.assert_allclose(
        stars.colour_residual[used] - fit.colour_term * stars.colour[used], stars.residual[used], atol=1e-12
    )
    assert 0.5 * fit.scatter < np.std(stars.residual[used]) < 2 * fit.scatter
    # Offsets are arcmin from the alert, within the simulated field's radius.
    assert np.hypot(stars.x_arcmin, stars.y_arcmin).max() <= field.radius_arcmin * 1.05
    assert (stars.separation_arcsec <= 2.0).all()
    # Each star's position is its upload source's (the thumbnail circles it there).
    x_deg, y_deg = tangent_plane_offsets(stars.ra_deg, stars.dec_deg, RA, DEC)
    np.testing.assert_allclose(x_deg * 60, stars.x_arcmin, atol=1e-9)
    np.testing.assert_allclose(y_deg * 60, stars.y_arcmin, atol=1e-9)
    uploaded = set(zip(np.round(field.ra_deg, 9), np.round(field.dec_deg, 9), strict=True))
    assert set(zip(np.round(stars.ra_deg, 9), np.round(stars.dec_deg, 9), strict=True)) <= uploaded


def test_a_band_without_enough_stars_has_no_fit(field: SimulatedField) -> None:
    few = field.references[0]
    keep = slice(0, 3)
    references = {
        few.survey: ReferenceCatalogue(
            survey=few.survey,
            ra_deg=few.ra_deg[keep],
            dec_deg=few.dec_deg[keep],
            mags={b: v[keep] for b, v in few.mags.items()},
            errs={b: v[keep] for b, v in few.magerrs.items()},
        )
    }
    diagnostics = diagnose_calibration(
        field.ra_deg,
        field.dec_deg,
        field.mag,
        field.magerr,
        target_ra_deg=RA,
        target_dec_deg=DEC,
        references=references,
        match_radius_arcsec=2.0,
    )
    assert diagnostics.chosen is None
    for entry in diagnostics.bands:
        assert entry.fit is None and entry.failure == "too_few_stars"
        assert not entry.stars.used.any() and np.isnan(entry.stars.residual).all()


def test_the_plots_show_the_fit_a_colour_term_prior_made(field: SimulatedField) -> None:
    """A calibration that took a learned colour term as a prior is drawn with that prior: the plotted
    colour term is the stored one, not the frame's own fit."""
    references = _references(field)
    common = dict(target_ra_deg=RA, target_dec_deg=DEC, references=references, match_radius_arcsec=2.0)
    args = (field.ra_deg, field.dec_deg, field.mag, field.magerr)
    result = calibrate_field(
        *args, force_filter="PS1/r", colour_term_priors={("PS1", "r"): (0.4, 0.001)}, **common
    )
    assert result.fit.colour_term == pytest.approx(0.4, abs=0.01)  # the tight prior wins
    with_prior = diagnose_calibration(
        *args, chosen=("PS1", "r"), colour_term_priors={("PS1", "r"): (0.4, 0.001)}, **common
    ).band("PS1", "r")
    without = diagnose_calibration(*args, chosen=("PS1", "r"), **common).band("PS1", "r")
    assert with_prior is not None and with_prior.fit is not None
    assert with_prior.fit.colour_term == pytest.approx(result.fit.colour_term, abs=1e-12)
    assert with_prior.fit.zp == pytest.approx(result.fit.zp, abs=1e-12)
    assert without is not None and without.fit is not None
    assert abs(without.fit.colour_term - result.fit.colour_term) > 0.05
