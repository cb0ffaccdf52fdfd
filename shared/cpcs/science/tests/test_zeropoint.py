"""Zero-point fitting: injection and recovery with explicit tolerances."""

from __future__ import annotations

import time

import numpy as np
import pytest

from cpcs.errors import CalibrationFailed
from cpcs.science.zeropoint import ZeroPointFit, fit_zero_point, spatial_terms
from cpcs.simulation import MatchedPhotometry, match_field, simulate_field


def _fit(matched: MatchedPhotometry, **options: object) -> ZeroPointFit:
    return fit_zero_point(
        matched.inst_mag,
        matched.inst_err,
        matched.cat_mag,
        matched.cat_err,
        matched.colour,
        matched.x_deg,
        matched.y_deg,
        **options,  # type: ignore[arg-type]
    )


def _synthetic(
    seed: int, n: int, *, zp: float = 25.0, colour_term: float = 0.12, error: float = 0.02
) -> tuple[np.ndarray, ...]:
    """Clean Gaussian data: m_cat = m_inst + zp + ct * colour, errors exactly as quoted."""
    rng = np.random.default_rng(seed)
    colour = rng.uniform(0.2, 1.5, n)
    x, y = rng.uniform(-0.15, 0.15, n), rng.uniform(-0.15, 0.15, n)
    inst = rng.uniform(-12.0, -6.0, n)
    inst_err = np.full(n, error / np.sqrt(2.0))
    cat_err = np.full(n, error / np.sqrt(2.0))
    cat = inst + zp + colour_term * colour + error * rng.normal(size=n)
    return inst, inst_err, cat, cat_err, colour, x, y


def test_recovers_injected_zero_point_and_colour_term_clean_data() -> None:
    inst, inst_err, cat, cat_err, colour, x, y = _synthetic(1, 300)
    fit = fit_zero_point(inst, inst_err, cat, cat_err, colour, x, y)
    assert abs(fit.zp - 25.0) < 0.01
    assert abs(fit.zp - 25.0) < 3.0 * fit.zp_err
    assert abs(fit.colour_term - 0.12) < 3.0 * fit.colour_term_err
    assert 0.002 < fit.zp_err < 0.006  # 0.02 / sqrt(300) inflated by the colour-term correlation
    assert fit.spatial_order == 0
    assert fit.n_used >= 295  # 3-sigma clipping of clean data removes at most a few stars
    assert fit.intrinsic_scatter < 0.01
    assert fit.scatter == pytest.approx(0.02, rel=0.2)
    assert fit.colour_reference == 0.0
    assert fit.parameter_names == ("zp", "colour_term")
    assert fit.covariance.shape == (2, 2)


def test_recovers_injected_zero_point_simulated_field() -> None:
    # Realistic field: about 180 stars pass the error cut; zp at colour 0 is an extrapolation from
    # the stars' colours (median g - r = 0.8), so zp_err is about 0.007 mag.
    field = simulate_field(11, n_stars=300)
    fit = _fit(match_field(field, "PS1", "r"))
    assert fit.n_used > 120
    assert abs(fit.zp - 25.0) < 3.0 * fit.zp_err
    assert fit.zp_err < 0.01
    assert abs(fit.colour_term - 0.12) < 3.0 * fit.colour_term_err + 0.006
    typical = float(fit.predict(0.0, 0.7)) - (25.0 + 0.12 * 0.7)
    assert abs(typical) < 3.0 * fit.transformation_error(0.7) + 0.003
    assert fit.spatial_order == 0
    assert fit.inst_err_cut == pytest.approx(0.1)
    # Calibrated magnitudes at a typical star colour are much better constrained than zp at colour 0.
    assert fit.transformation_error(0.7) < 0.6 * fit.zp_err


def test_large_field_bias_is_small() -> None:
    # With many stars two known small biases show: the reference r noise enters both m_cat and the
    # g - r colour (flattening the colour term), and stars near the error cut are biased bright.
    field = simulate_field(11, n_stars=1500)
    fit = _fit(match_field(field, "PS1", "r"))
    assert fit.n_used > 700
    assert abs(fit.zp - 25.0) < 3.0 * fit.zp_err + 0.006
    assert abs(fit.colour_term - 0.12) < 3.0 * fit.colour_term_err + 0.006
    assert fit.clip_iterations < 10


def test_other_bands_follow_their_true_relations() -> None:
    field = simulate_field(12, n_stars=1000, outlier_fraction=0.0)
    for band in ("g", "i"):
        truth = field.truth.band("PS1", band)
        fit = _fit(match_field(field, "PS1", band))
        assert abs(fit.zp - truth.zp) < 4.0 * fit.zp_err + 0.005
        assert abs(fit.colour_term - truth.colour_term) < 4.0 * fit.colour_term_err + 0.01


def test_spatial_gradient_detected_and_removed() -> None:
    gradient = (0.04, -0.03)  # |g| = 0.05 mag/deg over a 1-degree field
    field = simulate_field(21, n_stars=1000, radius_arcmin=30.0, spatial_gradient_mag_per_deg=gradient)
    matched = match_field(field, "PS1", "r")
    fit = _fit(matched)
    assert fit.spatial_order == 1
    assert fit.parameter_names == ("zp", "colour_term", "x", "y")
    # The fitted surface matches the true one everywhere in the field to better than 0.01 mag.
    radius_deg = 0.5
    angle = np.linspace(0.0, 2.0 * np.pi, 73)
    xs = np.concatenate([radius_deg * np.cos(angle), [0.0]])
    ys = np.concatenate([radius_deg * np.sin(angle), [0.0]])
    fitted = np.asarray(fit.predict(np.zeros_like(xs), 0.0, xs, ys)) - fit.zp
    assert np.max(np.abs(fitted - (gradient[0] * xs + gradient[1] * ys))) < 0.01
    assert abs(fit.zp - 25.0) < 3.0 * fit.zp_err
    # Without the spatial term the same data look noisier.
    flat = _fit(matched, spatial_order=0)
    assert flat.intrinsic_scatter > fit.intrinsic_scatter


def test_no_spatial_term_without_a_gradient() -> None:
    field = simulate_field(22, n_stars=600, radius_arcmin=30.0)
    assert _fit(match_field(field, "PS1", "r")).spatial_order == 0


def test_quadratic_term_recovered_and_chosen_automatically() -> None:
    rng = np.random.default_rng(70)  # not the seed of _synthetic: x must not copy the colours
    n = 800
    inst, inst_err, cat, cat_err, colour, x, y = _synthetic(7, n, error=0.02)
    x, y = rng.uniform(-0.5, 0.5, n), rng.uniform(-0.5, 0.5, n)
    truth = {(1, 0): 0.02, (0, 1): -0.01, (2, 0): 0.12, (1, 1): 0.0, (0, 2): 0.08}  # vignetting-like
    cat = cat + sum(c * x**i * y**j for (i, j), c in truth.items())
    forced = fit_zero_point(inst, inst_err, cat, cat_err, colour, x, y, spatial_order=2)
    assert forced.spatial_terms == spatial_terms(2)
    assert forced.parameter_names == ("zp", "colour_term", "x", "y", "x2", "xy", "y2")
    errors = np.sqrt(np.diag(forced.covariance))[2:]
    for (term, expected), value, error in zip(
        truth.items(), forced.spatial_coefficients, errors, strict=True
    ):
        assert abs(value - expected) < 4.0 * error, term
    automatic = fit_zero_point(inst, inst_err, cat, cat_err, colour, x, y)
    assert automatic.spatial_order == 2
    # Too few stars for a quadratic term: "auto" does not try it.
    few = fit_zero_point(inst[:60], inst_err[:60], cat[:60], cat_err[:60], colour[:60], x[:60], y[:60])
    assert few.spatial_order < 2


@pytest.mark.parametrize("outlier_fraction", [0.10, 0.20])
def test_outliers_are_clipped(outlier_fraction: float) -> None:
    field = simulate_field(31, n_stars=600, outlier_fraction=outlier_fraction)
    matched = match_field(field, "PS1", "r")
    fit = _fit(matched)
    usable = np.isfinite(fit.residuals)
    is_outlier = field.is_outlier[matched.source_index]
    true_fraction = is_outlier[usable].mean()
    assert true_fraction > 0.7 * outlier_fraction
    assert abs(fit.outlier_fraction - true_fraction) < 0.03
    clipped = usable & ~fit.used
    assert (clipped & is_outlier).sum() > 0.85 * (usable & is_outlier).sum()
    assert (clipped & ~is_outlier).sum() < 0.03 * (usable & ~is_outlier).sum()
    assert abs(fit.zp - 25.0) < max(3.0 * fit.zp_err, 0.01)
    assert abs(fit.colour_term - 0.12) < 0.02
    # Without clipping the outliers (mostly blends, brighter) bias the zero point.
    unclipped = _fit(matched, clip_sigma=None)
    assert unclipped.n_used == unclipped.n_valid
    assert unclipped.intrinsic_scatter > 3.0 * fit.intrinsic_scatter


def test_missing_values_are_ignored() -> None:
    field = simulate_field(41, n_stars=600, missing_fraction=0.2)
    matched = match_field(field, "PS1", "r")
    inst = matched.inst_mag.copy()
    inst[::17] = np.nan
    fit = fit_zero_point(
        inst, matched.inst_err, matched.cat_mag, matched.cat_err, matched.colour, matched.x_deg, matched.y_deg
    )
    finite = (
        np.isfinite(inst)
        & np.isfinite(matched.cat_mag)
        & np.isfinite(matched.cat_err)
        & np.isfinite(matched.colour)
        & (matched.inst_err <= 0.1)
    )
    assert finite.sum() < 0.8 * inst.size  # the gaps are real
    assert fit.n_input == inst.size
    assert fit.n_valid == finite.sum()
    assert not np.any(fit.used & ~finite)
    assert np.all(np.isnan(fit.residuals[~finite]))
    assert np.all(np.isfinite(fit.residuals[finite]))
    # Identical to fitting the complete rows only.
    subset = fit_zero_point(
        inst[finite],
        matched.inst_err[finite],
        matched.cat_mag[finite],
        matched.cat_err[finite],
        matched.colour[finite],
        matched.x_deg[finite],
        matched.y_deg[finite],
    )
    assert fit.zp == pytest.approx(subset.zp, abs=1e-12)
    assert fit.n_used == subset.n_used
    assert abs(fit.zp - 25.0) < max(3.0 * fit.zp_err, 0.01)
    # A NaN colour does not remove a star when no colour term is fitted.
    no_colour = fit_zero_point(
        inst, matched.inst_err, matched.cat_mag, matched.cat_err, matched.colour, fit_colour_term=False
    )
    assert no_colour.n_valid > fit.n_valid
    assert not no_colour.colour_fitted
    assert no_colour.colour_term == 0.0 and no_colour.colour_term_err == 0.0
    assert no_colour.parameter_names == ("zp",)


def test_too_few_stars_raise() -> None:
    inst, inst_err, cat, cat_err, colour, _, _ = _synthetic(3, 4)
    with pytest.raises(CalibrationFailed) as excinfo:
        fit_zero_point(inst, inst_err, cat, cat_err, colour)
    assert excinfo.value.code == "too_few_stars"
    inst, inst_err, cat, cat_err, colour, _, _ = _synthetic(3, 50)
    with pytest.raises(CalibrationFailed) as excinfo:
        fit_zero_point(inst, inst_err, cat, cat_err, np.full(50, np.nan))
    assert excinfo.value.code == "too_few_stars"
    with pytest.raises(CalibrationFailed) as excinfo:
        fit_zero_point(inst, inst_err, cat, cat_err, colour, min_stars=60)
    assert excinfo.value.code == "too_few_stars"


def test_degenerate_colour_raises() -> None:
    inst, inst_err, cat, cat_err, _, _, _ = _synthetic(4, 50)
    with pytest.raises(CalibrationFailed) as excinfo:
        fit_zero_point(inst, inst_err, cat, cat_err, np.full(50, 0.6))
    assert excinfo.value.code == "degenerate_fit"


def test_faint_stars_beyond_the_error_cut_are_not_used() -> None:
    inst, inst_err, cat, cat_err, colour, _, _ = _synthetic(5, 200)
    inst_err[:50] = 0.3
    cat[:50] += 0.5  # biased faint stars would pull the zero point if used
    fit = fit_zero_point(inst, inst_err, cat, cat_err, colour, clip_sigma=None)
    assert not fit.used[:50].any()
    assert abs(fit.zp - 25.0) < 0.01
    # The cut is relaxed rather than failing when few stars pass it.
    relaxed = fit_zero_point(inst[:54], inst_err[:54], cat[:54], cat_err[:54], colour[:54], clip_sigma=None)
    assert relaxed.inst_err_cut == pytest.approx(0.3)
    assert relaxed.n_used == 54


def test_intrinsic_scatter_is_measured() -> None:
    field = simulate_field(51, n_stars=800, extra_scatter_mag=0.05, outlier_fraction=0.0)
    fit = _fit(match_field(field, "PS1", "r"))
    assert fit.intrinsic_scatter == pytest.approx(0.05, abs=0.01)
    assert fit.chi2_reduced == pytest.approx(1.0, abs=0.01)
    clean = _fit(match_field(simulate_field(51, n_stars=800, outlier_fraction=0.0), "PS1", "r"))
    assert clean.intrinsic_scatter < 0.02


def test_zero_point_errors_are_honest() -> None:
    """Pulls (fit - truth) / error over 200 simulated fields have a unit spread."""
    pulls_zp, pulls_ct, pulls_typical = [], [], []
    for seed in range(200):
        field = simulate_field(1000 + seed, n_stars=300)
        fit = _fit(match_field(field, "PS1", "r"), spatial_order=0)
        pulls_zp.append((fit.zp - 25.0) / fit.zp_err)
        pulls_ct.append((fit.colour_term - 0.12) / fit.colour_term_err)
        typical = float(fit.predict(0.0, 0.7)) - (25.0 + 0.12 * 0.7)
        pulls_typical.append(typical / fit.transformation_error(0.7))
    for pulls in (pulls_zp, pulls_ct, pulls_typical):
        assert 0.8 < np.std(pulls) < 1.25
        # Known small biases (about 0.7 sigma here): the reference r-band noise enters both sides
        # through the g - r colour, and stars near the error cut are slightly biased bright.
        assert abs(np.mean(pulls)) < 1.0


def test_predict_and_calibration_error() -> None:
    inst, inst_err, cat, cat_err, colour, x, y = _synthetic(6, 400)
    cat = cat + 0.3 * x - 0.2 * y
    fit = fit_zero_point(inst, inst_err, cat, cat_err, colour, x, y, spatial_order=1)
    model = np.asarray(fit.predict(inst, colour, x, y))
    np.testing.assert_allclose(cat - model, fit.residuals, atol=1e-12)
    assert isinstance(fit.predict(-10.0, 0.5, 0.1, 0.1), float)
    g = np.array([1.0, 0.5, 0.1, -0.05])
    expected = float(np.sqrt(g @ fit.covariance @ g))
    assert fit.transformation_error(0.5, 0.1, -0.05) == pytest.approx(expected, rel=1e-12)
    assert fit.calibration_error(0.5, 0.0, 0.1, -0.05) == pytest.approx(expected, rel=1e-12)
    with_colour = fit.calibration_error(0.5, 0.3, 0.1, -0.05)
    assert with_colour == pytest.approx(np.hypot(expected, 0.3 * fit.colour_term), rel=1e-12)
    # Pixel-like coordinates give the same physics as degrees (internal scaling).
    pixels = fit_zero_point(inst, inst_err, cat, cat_err, colour, x * 3600.0, y * 3600.0, spatial_order=1)
    assert pixels.zp == pytest.approx(fit.zp, abs=1e-9)
    assert pixels.spatial_coefficients[0] * 3600.0 == pytest.approx(fit.spatial_coefficients[0], rel=1e-6)


def test_invalid_arguments_and_immutability() -> None:
    inst, inst_err, cat, cat_err, colour, x, y = _synthetic(8, 100)
    with pytest.raises(ValueError):
        fit_zero_point(inst, inst_err, cat, cat_err, colour, x, y, spatial_order=5)
    with pytest.raises(ValueError):
        fit_zero_point(inst, inst_err, cat, cat_err, colour, spatial_order=1)  # no positions
    with pytest.raises(ValueError):
        fit_zero_point(inst, inst_err, cat[:-1], cat_err, colour)
    fit = fit_zero_point(inst, inst_err, cat, cat_err)  # no colour: zero point only
    assert not fit.colour_fitted
    assert fit.predict(-10.0, float("nan")) == pytest.approx(-10.0 + fit.zp)  # colour ignored
    with pytest.raises(ValueError):
        fit.residuals[0] = 0.0
    # NaN positions do not matter when no spatial term is fitted.
    x_nan = x.copy()
    x_nan[:10] = np.nan
    assert fit_zero_point(inst, inst_err, cat, cat_err, colour, x_nan, y, spatial_order=0).n_valid == 100
    assert fit_zero_point(inst, inst_err, cat, cat_err, colour, x_nan, y, spatial_order=1).n_valid == 90


def test_fit_is_fast_on_2000_stars() -> None:
    field = simulate_field(61, n_stars=4000, radius_arcmin=20.0)
    matched = match_field(field, "PS1", "r")
    keep = np.flatnonzero(matched.inst_err <= 0.1)[:2000]
    assert keep.size == 2000
    arrays = [
        a[keep]
        for a in (
            matched.inst_mag,
            matched.inst_err,
            matched.cat_mag,
            matched.cat_err,
            matched.colour,
            matched.x_deg,
            matched.y_deg,
        )
    ]
    fit_zero_point(*arrays)
    timings = []
    for _ in range(7):
        start = time.perf_counter()
        fit_zero_point(*arrays)
        timings.append(time.perf_counter() - start)
    # About 1.5-2 ms on a small machine; generous bound for loaded CI runners.
    assert float(np.median(timings)) < 0.010
