"""Target calibration, error budget, limiting magnitude and upper limits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cpcs.errors import CalibrationFailed
from cpcs.science.crossmatch import nearest_source, tangent_plane_offsets
from cpcs.science.target import (
    DEFAULT_COLOUR_ERR_MAG,
    calibrate_target,
    calibration_budget,
    limiting_magnitude,
    upper_limit,
)
from cpcs.science.zeropoint import ZeroPointFit, fit_zero_point
from cpcs.simulation import SimulatedField, match_field, simulate_field


def _calibrate_field(field: SimulatedField) -> ZeroPointFit:
    m = match_field(field, "PS1", "r")
    return fit_zero_point(m.inst_mag, m.inst_err, m.cat_mag, m.cat_err, m.colour, m.x_deg, m.y_deg)


def _find_target(field: SimulatedField) -> int | None:
    assert field.target is not None
    return nearest_source(field.ra_deg, field.dec_deg, field.target.ra_deg, field.target.dec_deg, 1.5)


@pytest.mark.parametrize(("kind", "seed"), [("bright", 1), ("faint", 2)])
def test_detected_target_is_calibrated_within_its_errors(kind: str, seed: int) -> None:
    field = simulate_field(seed, n_stars=400, target=kind)  # type: ignore[arg-type]
    fit = _calibrate_field(field)
    index = _find_target(field)
    assert field.target is not None and index == field.target.source_index
    x, y = tangent_plane_offsets(
        field.ra_deg[[index]], field.dec_deg[[index]], field.centre_ra_deg, field.centre_dec_deg
    )
    result = calibrate_target(
        fit, float(field.mag[index]), float(field.magerr[index]), x=float(x[0]), y=float(y[0])
    )
    truth = field.target.true_mag
    assert not result.is_upper_limit
    assert abs(result.mag - truth) < 3.0 * result.err_total
    # At the assumed colour 0 the calibration misses colour_term * true colour, covered by err_colour
    # (the colour term's own uncertainty counts too).
    expected_colour = math.hypot(fit.colour_term, fit.colour_term_err) * DEFAULT_COLOUR_ERR_MAG
    assert result.err_colour == pytest.approx(expected_colour)
    assert result.err_colour > abs(0.12 * field.target.true_colour)
    if kind == "bright":
        assert result.snr > 100.0
        assert abs(result.mag - truth) < 0.1
    else:
        assert 5.0 < result.snr < 20.0
        assert result.err_measurement > result.err_zero_point


def test_error_budget_adds_in_quadrature() -> None:
    field = simulate_field(3, n_stars=400, extra_scatter_mag=0.03)
    fit = _calibrate_field(field)
    result = calibrate_target(fit, -8.0, 0.05, colour=0.9, colour_err=0.1, x=0.01, y=-0.02)
    parts = (result.err_measurement, result.err_zero_point, result.err_scatter, result.err_colour)
    assert result.err_total == pytest.approx(math.sqrt(sum(p**2 for p in parts)), rel=1e-12)
    assert result.err_measurement == 0.05
    assert result.err_zero_point == pytest.approx(fit.transformation_error(0.9, 0.01, -0.02), rel=1e-12)
    assert result.err_scatter == fit.intrinsic_scatter > 0.0
    assert result.err_colour == pytest.approx(
        math.hypot(fit.colour_term, fit.colour_term_err) * 0.1, rel=1e-12
    )
    assert result.colour_assumed == 0.9 and result.colour_err_assumed == 0.1
    assert result.mag == pytest.approx(float(fit.predict(-8.0, 0.9, 0.01, -0.02)), abs=1e-12)
    assert result.snr == pytest.approx(1.0857362 / 0.05, rel=1e-6)
    # The zero-point error is smallest near the stars' colours and grows towards colour 0.
    at_zero = calibrate_target(fit, -8.0, 0.05, colour=0.0, colour_err=0.1)
    assert at_zero.err_zero_point > result.err_zero_point
    # An unknown (NaN) colour falls back to colour 0 with the default colour uncertainty.
    unknown = calibrate_target(fit, -8.0, 0.05, colour=float("nan"))
    assert unknown.colour_assumed == 0.0 and unknown.colour_err_assumed == DEFAULT_COLOUR_ERR_MAG


def test_invalid_target_photometry_raises() -> None:
    fit = _calibrate_field(simulate_field(4, n_stars=200))
    for mag, err in ((float("nan"), 0.1), (-8.0, float("nan")), (-8.0, 0.0), (-8.0, -0.1)):
        with pytest.raises(CalibrationFailed) as excinfo:
            calibrate_target(fit, mag, err)
        assert excinfo.value.code == "invalid_target_photometry"


def test_undetected_target_gives_an_upper_limit_near_the_true_limit() -> None:
    field = simulate_field(5, n_stars=400, target="undetected")
    assert _find_target(field) is None
    fit = _calibrate_field(field)
    limit_inst = limiting_magnitude(field.mag, field.magerr)
    assert limit_inst is not None
    assert abs(limit_inst - field.truth.limit_inst_mag_5sigma) < 0.1
    # Not simply the faintest source: the catalogue goes well below S/N = 5.
    assert np.max(field.mag) - limit_inst > 0.3
    result = upper_limit(fit, limit_inst)
    assert result.is_upper_limit
    assert result.mag == result.limit_mag
    assert abs(result.mag - field.truth.limit_mag_5sigma) < 0.2
    assert result.err_measurement == 0.0
    assert result.snr == 5.0
    assert result.err_total == pytest.approx(
        math.sqrt(result.err_zero_point**2 + result.err_scatter**2 + result.err_colour**2)
    )


def test_limit_is_also_filled_for_detections() -> None:
    field = simulate_field(6, n_stars=300, target="faint")
    fit = _calibrate_field(field)
    limit_inst = limiting_magnitude(field.mag, field.magerr)
    assert limit_inst is not None
    index = _find_target(field)
    assert index is not None
    result = calibrate_target(
        fit, float(field.mag[index]), float(field.magerr[index]), limit_inst_mag=limit_inst
    )
    assert result.limit_mag is not None
    assert abs(result.limit_mag - field.truth.limit_mag_5sigma) < 0.2
    assert result.limit_mag > result.mag  # a 10-sigma detection is brighter than the 5-sigma limit
    assert calibrate_target(fit, -8.0, 0.01).limit_mag is None


@pytest.mark.parametrize("sky_variance_e", [1.0e3, 4.0e4, 1.0e6])
def test_limit_extrapolates_from_a_shallow_catalogue(sky_variance_e: float) -> None:
    # Only sources with S/N > 11 uploaded: the limit is extrapolated by about 0.8 mag, whether the
    # faint sources are sky- or photon-noise dominated.
    field = simulate_field(7, n_stars=400, sky_variance_e=sky_variance_e)
    shallow = field.magerr < 0.1
    limit_inst = limiting_magnitude(field.mag[shallow], field.magerr[shallow])
    assert limit_inst is not None
    assert limit_inst > np.max(field.mag[shallow]) + 0.3
    assert abs(limit_inst - field.truth.limit_inst_mag_5sigma) < 0.2


def test_limit_not_estimated_without_enough_faint_sources() -> None:
    field = simulate_field(8, n_stars=400)
    # Sources with S/N > 25 only: more than 1.5 mag of extrapolation would be needed.
    bright = field.magerr < 0.04
    assert limiting_magnitude(field.mag[bright], field.magerr[bright]) is None
    assert limiting_magnitude(field.mag[:5], field.magerr[:5]) is None
    assert limiting_magnitude(np.array([]), np.array([])) is None
    # NaN and non-positive errors are ignored.
    mag = field.mag.copy()
    err = field.magerr.copy()
    err[::10] = np.nan
    err[1::10] = 0.0
    limit_inst = limiting_magnitude(mag, err)
    assert limit_inst is not None
    assert abs(limit_inst - field.truth.limit_inst_mag_5sigma) < 0.1


def test_upper_limit_needs_a_finite_limit() -> None:
    fit = _calibrate_field(simulate_field(9, n_stars=200))
    with pytest.raises(CalibrationFailed) as excinfo:
        upper_limit(fit, float("nan"))
    assert excinfo.value.code == "no_limiting_magnitude"


def test_a_genuine_intrinsic_scatter_counts_and_a_chance_excess_does_not() -> None:
    """25 stars with 0.01 mag errors: with a real star-to-star scatter of 0.03 mag it is found and
    counted in the target's error; with none, the fitted scatter is often a chance excess of the
    chi-square, which the target's error leaves out (in about 1 frame of 100 it would count)."""
    rng = np.random.default_rng(31)
    n, error = 25, 0.01
    real_scatter, chance, counted = [], [], []
    for _ in range(200):
        inst = rng.uniform(-8.0, -4.0, n)
        errors = np.full(n, error)
        exact = fit_zero_point(
            inst, errors, inst + 25.0 + rng.normal(0.0, error, n), np.zeros(n), fit_colour_term=False
        )
        chance.append(exact.intrinsic_scatter > 0)
        counted.append(calibration_budget(exact).scatter > 0)
        scattered = fit_zero_point(
            inst,
            errors,
            inst + 25.0 + rng.normal(0.0, math.hypot(error, 0.03), n),
            np.zeros(n),
            fit_colour_term=False,
        )
        real_scatter.append(calibration_budget(scattered).scatter)
    assert np.mean(chance) > 0.3  # a chance excess is common ...
    assert np.mean(counted) < 0.05  # ... and rarely counted
    assert np.median(real_scatter) == pytest.approx(0.03, abs=0.006)  # a real one is counted
    assert np.mean(np.asarray(real_scatter) > 0) > 0.95
