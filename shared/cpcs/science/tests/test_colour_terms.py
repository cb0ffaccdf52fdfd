"""A colour term learned from earlier frames, used as a prior: light curves as precise as the data allow."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cpcs.catalogs.model import ReferenceCatalogue
from cpcs.errors import CalibrationFailed
from cpcs.science.colour_terms import learn_colour_term
from cpcs.science.field_calibration import calibrate_field
from cpcs.science.target import calibrate_target
from cpcs.science.zeropoint import ZeroPointFit, fit_zero_point
from cpcs.simulation import SimulatedField, match_field, simulate_field

TRUE_COLOUR_TERM = 0.12  # instrument against PS1 r, on g - r
STAR_MAG, STAR_COLOUR = 15.0, 1.3  # a constant, red comparison star (its colour from the catalogue)


def _frame(seed: int) -> SimulatedField:
    """One frame of the series: about 25 usable reference stars, a zero point that changes."""
    zp = 25.0 + 0.3 * np.random.default_rng(seed).uniform()
    return simulate_field(
        seed,
        n_stars=45,
        radius_arcmin=6.0,
        zp=zp,
        colour_term=TRUE_COLOUR_TERM,
        target_mag=STAR_MAG,
        target_colour=STAR_COLOUR,
    )


def _fit(field: SimulatedField, prior: tuple[float, float] | None = None) -> ZeroPointFit:
    m = match_field(field, "PS1", "r")
    return fit_zero_point(m.inst_mag, m.inst_err, m.cat_mag, m.cat_err, m.colour, colour_term_prior=prior)


def _star(field: SimulatedField, fit: ZeroPointFit) -> tuple[float, float, float]:
    """The comparison star calibrated at its catalogue colour: (error, total error, photon error)."""
    target = field.target
    assert target is not None and target.source_index is not None
    i = target.source_index
    result = calibrate_target(
        fit, float(field.mag[i]), float(field.magerr[i]), colour=STAR_COLOUR, colour_err=0.02
    )
    return result.mag - STAR_MAG, result.err_total, result.err_measurement


@pytest.fixture(scope="module")
def series() -> list[SimulatedField]:
    return [_frame(1000 + k) for k in range(30)]


def test_learned_colour_term_is_robust_and_has_an_honest_error(series: list[SimulatedField]) -> None:
    fits = [_fit(f) for f in series]
    values = np.array([f.colour_term for f in fits])
    errors = np.array([f.colour_term_err for f in fits])
    assert np.median(errors) > 0.02, "the frames' own colour terms are poorly constrained"
    # Two bad frames (a wrong band, a broken fit) do not move it.
    learned = learn_colour_term(np.append(values, [0.9, -0.7]), np.append(errors, [0.02, 0.02]))
    assert learned.n_frames == 32 and learned.n_used == 30
    assert abs(learned.value - TRUE_COLOUR_TERM) < 3 * learned.value_err
    assert learned.value_err < 0.5 * np.median(errors)
    mean, sigma = learned.prior
    assert mean == learned.value and sigma == pytest.approx(math.hypot(learned.value_err, learned.spread))
    with pytest.raises(CalibrationFailed) as error:
        learn_colour_term(values[:3], errors[:3])
    assert error.value.code == "too_few_frames"


def test_prior_pulls_a_poorly_constrained_colour_term_and_is_recorded(series: list[SimulatedField]) -> None:
    free = _fit(series[0])
    prior = _fit(series[0], prior=(TRUE_COLOUR_TERM, 0.005))
    assert prior.colour_term_prior == (TRUE_COLOUR_TERM, 0.005) and free.colour_term_prior is None
    assert abs(prior.colour_term - TRUE_COLOUR_TERM) < 0.01 < abs(free.colour_term - TRUE_COLOUR_TERM) + 0.01
    assert prior.colour_term_err < 0.005 < free.colour_term_err
    with pytest.raises(ValueError, match="colour_term_prior"):
        _fit(series[0], prior=(0.1, 0.0))


def test_light_curve_of_a_constant_star_reaches_the_floor(series: list[SimulatedField]) -> None:
    """30 frames of about 25 stars: with the learned prior, rms within 1.2 x the floor."""
    learned = learn_colour_term(
        [_fit(f).colour_term for f in series], [_fit(f).colour_term_err for f in series]
    )
    free_errors, prior_errors, floor2 = [], [], []
    for field in series:
        free_errors.append(_star(field, _fit(field))[0])
        prior_errors.append(_star(field, _fit(field, prior=learned.prior))[0])
        # The floor: photon noise and the zero point from these N stars, colour term known exactly.
        exact = _fit(field, prior=(TRUE_COLOUR_TERM, 1e-5))
        _, _, photon = _star(field, exact)
        floor2.append(photon**2 + exact.transformation_error(STAR_COLOUR) ** 2)
    floor = math.sqrt(float(np.mean(floor2)))
    rms_free = float(np.sqrt(np.mean(np.square(free_errors))))
    rms_prior = float(np.sqrt(np.mean(np.square(prior_errors))))
    assert rms_prior <= 1.2 * floor, (rms_prior, floor)
    assert rms_free > 1.5 * floor, "the free colour term should add noise on this series"


def test_pulls_of_the_error_budget() -> None:
    """Pulls over a long series (300 frames: the width of 30 pulls is itself uncertain by 13 %).

    With the prior, photon noise, zero point and colour parts describe the errors, and so does the
    total: the intrinsic scatter of a frame enters it only when significant (on 25 stars the fitted
    scatter is a chance chi-square excess in about half the frames; counted always, it gave a pull
    width of 0.78).
    """
    frames = [_frame(2000 + k) for k in range(300)]
    first = [_fit(f) for f in frames[:30]]
    learned = learn_colour_term([f.colour_term for f in first], [f.colour_term_err for f in first])
    pulls, pulls_without_scatter = [], []
    for field in frames:
        fit = _fit(field, prior=learned.prior)
        target = field.target
        assert target is not None and target.source_index is not None
        i = target.source_index
        result = calibrate_target(
            fit, float(field.mag[i]), float(field.magerr[i]), colour=STAR_COLOUR, colour_err=0.02
        )
        error = result.mag - STAR_MAG
        pulls.append(error / result.err_total)
        parts = math.sqrt(result.err_measurement**2 + result.err_zero_point**2 + result.err_colour**2)
        pulls_without_scatter.append(error / parts)
    assert 0.9 <= float(np.std(pulls_without_scatter)) <= 1.1, float(np.std(pulls_without_scatter))
    assert 0.9 <= float(np.std(pulls)) <= 1.1, float(np.std(pulls))


def test_calibrate_field_applies_a_learned_prior_to_its_survey_band(series: list[SimulatedField]) -> None:
    field = series[3]
    references = {
        ref.survey: ReferenceCatalogue(ref.survey, ref.ra_deg, ref.dec_deg, dict(ref.mags), dict(ref.magerrs))
        for ref in field.references
        if ref.survey == "PS1"
    }
    assert field.target is not None
    position = {"target_ra_deg": field.target.ra_deg, "target_dec_deg": field.target.dec_deg}
    args = (field.ra_deg, field.dec_deg, field.mag, field.magerr)
    own = calibrate_field(*args, **position, references=references, force_filter="PS1/r")
    learned = calibrate_field(
        *args,
        **position,
        references=references,
        force_filter="PS1/r",
        colour_term_priors={("PS1", "r"): (0.12, 0.004)},
    )
    assert own.fit.colour_term_prior is None and learned.fit.colour_term_prior == (0.12, 0.004)
    assert learned.fit.colour_term_err < 0.004 < own.fit.colour_term_err
    assert abs(learned.fit.colour_term - TRUE_COLOUR_TERM) < 0.01
