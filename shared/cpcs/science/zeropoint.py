"""Photometric zero point, colour term and spatial term fitting.

Model, for every matched star::

    m_cat = m_inst + zp + colour_term * colour + P(x, y)

where ``m_cat`` is the reference-catalogue magnitude, ``m_inst`` the instrumental magnitude from the
uploaded catalogue, ``colour`` a catalogue colour (e.g. g - r, in mag) and ``P`` a 2-D polynomial in
the tangent-plane offsets ``x, y`` (degrees, from :func:`cpcs.science.crossmatch.tangent_plane_offsets`,
or any other linear coordinate) of order 0 (absent), 1 (``a x + b y``) or 2 (adds ``x**2, x*y, y**2``),
with no constant term, so that ``zp`` is the zero point at colour 0 at ``x = y = 0``.

The fit is a weighted linear least-squares fit with per-star variance
``inst_err**2 + cat_err**2 + ERROR_FLOOR_MAG**2 + intrinsic_scatter**2``. The intrinsic scatter is
solved for so that the reduced chi-square of the kept stars is 1 (it is 0 when the catalogue errors
already explain the residuals). Outliers are rejected by iterative sigma clipping of the residuals
normalised by the total per-star error, with a robust (median absolute deviation) scale; clipped
stars may come back in a later iteration. Everything is vectorised: a complete fit of 2,000 stars
(clipping, intrinsic scatter, automatic spatial order) takes about 1 ms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import chi2 as chi2_distribution

from cpcs.errors import CalibrationFailed
from cpcs.science._helpers import (
    MAD_TO_SIGMA,
    BoolArray,
    FloatArray,
    as_float_array,
    fast_median,
    robust_sigma,
)

__all__ = [
    "AUTO_MIN_STARS_LINEAR",
    "AUTO_MIN_STARS_QUADRATIC",
    "DEFAULT_MAX_INST_ERR_MAG",
    "ERROR_FLOOR_MAG",
    "MAX_SPATIAL_ORDER",
    "ZeroPointFit",
    "fit_zero_point",
    "spatial_terms",
]

#: Added in quadrature to every star's error (mag) so that a star with zero quoted error cannot
#: take all the weight.
ERROR_FLOOR_MAG = 0.001
#: Stars with a larger instrumental error (mag; S/N below about 11) are left out of the fit by
#: default: near the detection threshold the measured magnitudes are biased bright (Eddington /
#: Malmquist bias, about 0.7 * magerr**2 for rising number counts and much worse within a magnitude
#: of the threshold), and faint stars are numerous enough to pull the zero point.
DEFAULT_MAX_INST_ERR_MAG = 0.1
#: ``spatial_order="auto"`` tries a linear spatial term only with at least this many kept stars.
AUTO_MIN_STARS_LINEAR = 30
#: ``spatial_order="auto"`` tries a quadratic spatial term only with at least this many kept stars.
AUTO_MIN_STARS_QUADRATIC = 100
#: Highest spatial polynomial order accepted.
MAX_SPATIAL_ORDER = 3
#: A normal matrix whose correlation form has a larger condition number is treated as degenerate.
_MAX_CONDITION = 1e12

SpatialOrder = int | Literal["auto"]


def spatial_terms(order: int) -> tuple[tuple[int, int], ...]:
    """Exponents ``(i, j)`` of the monomials ``x**i * y**j`` of a spatial polynomial of ``order``.

    Ordered by total degree, then by decreasing power of x: order 2 gives
    ``((1, 0), (0, 1), (2, 0), (1, 1), (0, 2))``. There is no constant term.
    """
    return tuple((degree - j, j) for degree in range(1, order + 1) for j in range(degree + 1))


def _term_name(i: int, j: int) -> str:
    return ("x" if i == 1 else f"x{i}" if i else "") + ("y" if j == 1 else f"y{j}" if j else "")


@dataclass(frozen=True, eq=False)
class ZeroPointFit:
    """Result of :func:`fit_zero_point`.

    Attributes
    ----------
    zp, zp_err : float
        Zero point (mag) at colour 0 and ``x = y = 0``, and its 1-sigma error.
    colour_term, colour_term_err : float
        Colour term (mag per mag of colour) and its error; both 0 when not fitted.
    colour_reference : float
        The colour at which ``zp`` applies: always 0.0 (zp is reported at colour = 0).
    colour_fitted : bool
        Whether a colour term was fitted.
    spatial_order : int
        Order of the spatial polynomial actually used (0 = none).
    spatial_coefficients : tuple of float
        Coefficients of the monomials listed in ``spatial_terms`` (mag / deg**(i+j) when x, y are
        in degrees).
    spatial_terms : tuple of (int, int)
        Exponents ``(i, j)`` of the monomials ``x**i * y**j`` (see :func:`spatial_terms`).
    parameter_names : tuple of str
        Names of the fitted parameters in covariance order: ``"zp"``, then ``"colour_term"`` if
        fitted, then the spatial terms (``"x"``, ``"y"``, ``"x2"``, ``"xy"``, ``"y2"``, ...).
    covariance : ndarray, shape (n_parameters, n_parameters)
        Covariance matrix of the parameters in ``parameter_names`` order (mag**2 etc.), including
        the intrinsic scatter in the weights.
    scatter : float
        Robust rms (1.4826 x MAD) of the residuals of the kept stars, mag.
    intrinsic_scatter : float
        Scatter (mag) added in quadrature to the per-star errors to make the reduced chi-square of
        the kept stars equal to 1; 0 if the quoted errors already explain the residuals.
    n_input : int
        Number of stars given.
    n_valid : int
        Stars with every needed value finite and within the instrumental-error cut (the others are
        ignored).
    n_used : int
        Stars kept after sigma clipping.
    outlier_fraction : float
        Fraction of the valid stars rejected by sigma clipping.
    used : ndarray of bool
        Mask over the input: True for the stars used in the final fit.
    residuals : ndarray
        ``m_cat - model`` for every valid star (used or clipped), mag; NaN for invalid stars.
    chi2_reduced : float
        Chi-square per degree of freedom of the kept stars with the total errors (including the
        intrinsic scatter): 1 by construction when ``intrinsic_scatter > 0``, below 1 when the
        catalogue errors are overestimated. NaN with no degree of freedom.
    clip_iterations : int
        Number of clipping passes that changed the set of kept stars.
    inst_err_cut : float or None
        Largest instrumental error (mag) admitted (``max_inst_err``, or larger when relaxed), or None
        when the cut is disabled.
    colour_term_prior : (float, float) or None
        ``(mean, sigma)`` of the prior the colour term was fitted with, or None (the frame's own).
    scatter_p_value : float
        Probability that the kept stars' chi-square with the quoted errors alone (no intrinsic
        scatter) is at least as large as found, were those errors the whole story: small when the
        intrinsic scatter is real, near uniform when it is a chance excess. 1 with no degree of
        freedom.
    """

    zp: float
    zp_err: float
    colour_term: float
    colour_term_err: float
    colour_reference: float
    colour_fitted: bool
    spatial_order: int
    spatial_coefficients: tuple[float, ...]
    spatial_terms: tuple[tuple[int, int], ...]
    parameter_names: tuple[str, ...]
    covariance: FloatArray
    scatter: float
    intrinsic_scatter: float
    n_input: int
    n_valid: int
    n_used: int
    outlier_fraction: float
    used: BoolArray
    residuals: FloatArray
    chi2_reduced: float
    clip_iterations: int
    inst_err_cut: float | None
    colour_term_prior: tuple[float, float] | None = None
    scatter_p_value: float = 1.0

    def _gradient(self, colour: FloatArray, x: FloatArray, y: FloatArray) -> list[FloatArray]:
        """Partial derivatives of the model with respect to each parameter (covariance order)."""
        columns: list[FloatArray] = [np.ones_like(colour)]
        if self.colour_fitted:
            columns.append(colour)
        columns.extend(x**i * y**j for i, j in self.spatial_terms)
        return columns

    def predict(
        self, inst_mag: ArrayLike, colour: ArrayLike = 0.0, x: ArrayLike = 0.0, y: ArrayLike = 0.0
    ) -> float | FloatArray:
        """Calibrated magnitude ``inst_mag + zp + colour_term * colour + P(x, y)``.

        Parameters
        ----------
        inst_mag : array_like
            Instrumental magnitude(s), mag.
        colour : array_like, optional
            Colour(s) in the fit's colour system, mag (ignored when no colour term was fitted).
        x, y : array_like, optional
            Position(s) in the fit's spatial coordinates (ignored when ``spatial_order == 0``).

        Returns
        -------
        float or ndarray
            Calibrated magnitude(s), broadcast over the inputs (a float for scalar inputs). NaN
            where a used input is NaN.
        """
        m = np.asarray(inst_mag, dtype=np.float64) + self.zp
        if self.colour_fitted:
            m = m + self.colour_term * np.asarray(colour, dtype=np.float64)
        if self.spatial_order > 0:
            xa = np.asarray(x, dtype=np.float64)
            ya = np.asarray(y, dtype=np.float64)
            for (i, j), coefficient in zip(self.spatial_terms, self.spatial_coefficients, strict=True):
                m = m + coefficient * xa**i * ya**j
        return float(m) if np.ndim(m) == 0 else m

    def transformation_error(self, colour: float = 0.0, x: float = 0.0, y: float = 0.0) -> float:
        """1-sigma error (mag) of the fitted transformation at one colour and position.

        Propagates the full parameter covariance (zero point, colour term, spatial terms); does not
        include the colour's own uncertainty nor the intrinsic scatter. NaN for NaN inputs that the
        model uses.
        """
        g = np.array(
            self._gradient(
                np.array([colour], dtype=np.float64),
                np.array([x], dtype=np.float64),
                np.array([y], dtype=np.float64),
            ),
            dtype=np.float64,
        )[:, 0]
        variance = float(g @ self.covariance @ g)
        return float(np.sqrt(max(variance, 0.0)))

    def calibration_error(
        self, colour: float = 0.0, colour_err: float = 0.0, x: float = 0.0, y: float = 0.0
    ) -> float:
        """1-sigma error (mag) of the calibration of a source of given colour at a given position.

        Quadrature sum of :meth:`transformation_error` and ``colour_term * colour_err`` (the effect
        of the source's colour uncertainty, mag). Does not include the intrinsic scatter nor the
        source's own measurement error.
        """
        colour_part = self.colour_term * colour_err if self.colour_fitted else 0.0
        return float(np.hypot(self.transformation_error(colour, x, y), colour_part))


@dataclass(frozen=True)
class _Solution:
    beta: FloatArray
    covariance: FloatArray
    intrinsic_variance: float
    chi2: float


@dataclass(frozen=True)
class _Prior:
    """A Gaussian prior on the colour term (row 1 of the design): mean and precision (1 / sigma**2)."""

    mean: float
    precision: float


def _solve_weighted(
    design: FloatArray, delta: FloatArray, weight: FloatArray, prior: _Prior | None = None
) -> tuple[FloatArray, FloatArray]:
    """Weighted least squares through the normal equations, with a conditioning check.

    ``design`` is stored transposed, shape (n_parameters, n_stars), for fast products. A ``prior``
    on the colour term adds its precision to the normal matrix (a Gaussian prior, the maximum of the
    posterior).
    """
    weighted = design * weight
    normal = weighted @ design.T
    rhs = weighted @ delta
    if prior is not None:
        normal[1, 1] += prior.precision
        rhs[1] += prior.precision * prior.mean
    diagonal = np.sqrt(np.diag(normal))
    if not np.all(diagonal > 0.0):
        raise CalibrationFailed(
            "the zero-point fit is degenerate (a fitted term is zero for every star)", code="degenerate_fit"
        )
    correlation = normal / np.outer(diagonal, diagonal)
    if not np.isfinite(correlation).all():
        raise CalibrationFailed(
            "the zero-point fit is degenerate (non-finite normal matrix)", code="degenerate_fit"
        )
    eigenvalues, eigenvectors = np.linalg.eigh(correlation)
    if eigenvalues[0] <= eigenvalues[-1] / _MAX_CONDITION:
        raise CalibrationFailed(
            "the zero-point fit is degenerate (e.g. all stars have the same colour or position)",
            code="degenerate_fit",
        )
    inverse_correlation = (eigenvectors / eigenvalues) @ eigenvectors.T
    covariance = inverse_correlation / np.outer(diagonal, diagonal)
    beta = covariance @ rhs
    return beta, covariance


def _intrinsic_variance(residual2: FloatArray, variance: FloatArray, dof: int, start: float) -> float:
    """Solve ``sum(r**2 / (var + s2)) = dof`` for ``s2 >= 0`` (0 if already below at ``s2 = 0``).

    The left-hand side is convex and decreasing in ``s2``, so Newton's method converges monotonically
    once it is left of the root (the first step from the right always lands left of it).
    """
    if dof <= 0 or float(residual2 @ (1.0 / variance)) <= dof:
        return 0.0
    s2 = max(start, float(np.mean(residual2 - variance)), 0.0)
    for _ in range(60):
        inverse = 1.0 / (variance + s2)
        terms = residual2 * inverse
        updated = max(s2 + (float(terms.sum()) - dof) / float(terms @ inverse), 0.0)
        if abs(updated - s2) <= 1e-10 + 1e-4 * updated:
            return updated
        s2 = updated
    return s2


def _fit_with_scatter(
    design: FloatArray, delta: FloatArray, variance: FloatArray, start: float, prior: _Prior | None = None
) -> _Solution:
    """Weighted fit alternating with the intrinsic-scatter solution until they agree."""
    dof = delta.size - design.shape[0]
    s2 = start
    for _ in range(10):
        beta, covariance = _solve_weighted(design, delta, 1.0 / (variance + s2), prior)
        residual2 = (delta - beta @ design) ** 2
        updated = _intrinsic_variance(residual2, variance, dof, s2)
        if abs(updated - s2) <= 1e-8 + 1e-2 * updated:
            break
        s2 = updated
    # beta, covariance and the chi-square all refer to the same s2 (the last one used as weight).
    chi2 = float(np.sum(residual2 / (variance + s2)))
    return _Solution(beta=beta, covariance=covariance, intrinsic_variance=s2, chi2=chi2)


@dataclass(frozen=True)
class _ClippedFit:
    order: int
    design: FloatArray
    solution: _Solution
    kept: BoolArray
    passes: int


def _build_design(colour: FloatArray | None, u: FloatArray, v: FloatArray, order: int) -> FloatArray:
    """Transposed design matrix, shape (n_parameters, n_stars), rows in covariance order."""
    rows = [np.ones_like(u)]
    if colour is not None:
        rows.append(colour)
    rows.extend(u**i * v**j for i, j in spatial_terms(order))
    return np.vstack(rows)


def _clipped_fit(
    design: FloatArray,
    delta: FloatArray,
    variance: FloatArray,
    order: int,
    *,
    clip_sigma: float | None,
    max_iterations: int,
    min_kept: int,
    prior: _Prior | None = None,
) -> _ClippedFit:
    """Iteratively sigma-clipped fit; ``kept`` always matches the returned solution."""
    kept = np.ones(delta.size, dtype=bool)
    solution = _fit_with_scatter(design[:, kept], delta[kept], variance[kept], 0.0, prior)
    passes = 0
    if clip_sigma is None or not np.isfinite(clip_sigma):
        return _ClippedFit(order, design, solution, kept, passes)
    previous: BoolArray | None = None
    for _ in range(max_iterations):
        normalised = (delta - solution.beta @ design) / np.sqrt(variance + solution.intrinsic_variance)
        centre = fast_median(normalised[kept])
        scale = MAD_TO_SIGMA * fast_median(np.abs(normalised[kept] - centre))
        if not scale > 0.0:
            break
        new_kept = np.abs(normalised - centre) <= clip_sigma * scale
        if np.count_nonzero(new_kept) < min_kept or np.array_equal(new_kept, kept):
            break
        if previous is not None and np.array_equal(new_kept, previous):
            break  # a star sits on the threshold and flips in and out: keep the current set
        previous, kept = kept, new_kept
        solution = _fit_with_scatter(
            design[:, kept], delta[kept], variance[kept], solution.intrinsic_variance, prior
        )
        passes += 1
    return _ClippedFit(order, design, solution, kept, passes)


def _improves(
    base: _ClippedFit,
    candidate_design: FloatArray,
    delta: FloatArray,
    variance: FloatArray,
    prior: _Prior | None = None,
) -> bool:
    """BIC test of a richer model refitted on the base model's kept stars.

    Both models are compared by their Gaussian likelihood with their own intrinsic scatter
    (``-2 ln L = sum(r**2 / (var + s2) + ln(var + s2))``): a spatial pattern the base model
    absorbed into its intrinsic scatter counts for the richer model, which explains it.
    """
    kept = base.kept
    design = candidate_design[:, kept]
    star_variance = variance[kept]
    base_s2 = base.solution.intrinsic_variance
    try:
        # One solve with the base weights, then the candidate's own scatter (cheap, and close to
        # the fully iterated solution for the question asked).
        beta, _ = _solve_weighted(design, delta[kept], 1.0 / (star_variance + base_s2), prior)
    except CalibrationFailed:
        return False
    residual2 = (delta[kept] - beta @ design) ** 2
    dof = residual2.size - design.shape[0]
    candidate_s2 = _intrinsic_variance(residual2, star_variance, dof, base_s2)

    def deviance(chi2: float, s2: float) -> float:
        return chi2 + float(np.sum(np.log(star_variance + s2)))

    base_deviance = deviance(base.solution.chi2, base_s2)
    candidate_deviance = deviance(float(np.sum(residual2 / (star_variance + candidate_s2))), candidate_s2)
    extra_parameters = candidate_design.shape[0] - base.design.shape[0]
    n = int(np.count_nonzero(kept))
    return base_deviance - candidate_deviance > extra_parameters * np.log(n)


def _optional_array(values: ArrayLike | None, name: str, size: int) -> FloatArray | None:
    return None if values is None else as_float_array(values, name, size=size)


def fit_zero_point(
    inst_mag: ArrayLike,
    inst_err: ArrayLike,
    cat_mag: ArrayLike,
    cat_err: ArrayLike,
    colour: ArrayLike | None = None,
    x: ArrayLike | None = None,
    y: ArrayLike | None = None,
    *,
    fit_colour_term: bool = True,
    spatial_order: SpatialOrder = "auto",
    clip_sigma: float | None = 3.0,
    max_iterations: int = 10,
    min_stars: int = 5,
    max_inst_err: float | None = DEFAULT_MAX_INST_ERR_MAG,
    colour_term_prior: tuple[float, float] | None = None,
) -> ZeroPointFit:
    """Fit ``m_cat = m_inst + zp + colour_term * colour + P(x, y)`` robustly to matched stars.

    Parameters
    ----------
    inst_mag, inst_err : array_like
        Instrumental magnitudes and their 1-sigma errors (mag) of the matched sources.
    cat_mag, cat_err : array_like
        Reference-catalogue magnitudes and errors (mag) of the same stars, same order.
    colour : array_like, optional
        Catalogue colour of each star (mag). Needed to fit a colour term; stars with a NaN colour
        are dropped when the colour term is fitted.
    x, y : array_like, optional
        Star positions for the spatial term, e.g. tangent-plane offsets in degrees. When given and
        ``spatial_order`` is not 0, stars with a NaN position are dropped.
    fit_colour_term : bool, optional
        Fit a colour term (only possible when ``colour`` is given).
    spatial_order : int or "auto", optional
        Order of the spatial polynomial (0, 1, 2 or 3), or ``"auto"``: order 0, then order 1 if at
        least ``AUTO_MIN_STARS_LINEAR`` stars are kept and the linear terms lower the deviance
        ``-2 ln L`` by more than the BIC penalty (``n_extra * ln(n)``), then order 2 under the same
        rule against the best model so far with at least ``AUTO_MIN_STARS_QUADRATIC`` stars. Each
        model's deviance is taken with its own intrinsic scatter, so a pattern that a simpler model
        hides in its scatter (a radial vignetting-like drop) counts for the model that explains it.
        Without ``x``/``y`` "auto" means 0.
    clip_sigma : float or None, optional
        Clipping threshold in robust sigmas of the normalised residuals; None disables clipping.
    max_iterations : int, optional
        Maximum number of clipping passes.
    min_stars : int, optional
        Minimum number of stars needed (never fewer than the number of parameters + 1).
    max_inst_err : float or None, optional
        Stars with ``inst_err`` above this (mag) are not used (see ``DEFAULT_MAX_INST_ERR_MAG``).
        When fewer than ``2 * max(min_stars, n_parameters + 1)`` stars pass, the cut is relaxed to
        keep that many stars with the smallest errors. None disables it.
    colour_term_prior : (float, float), optional
        ``(mean, sigma)`` of a Gaussian prior on the colour term, e.g. the colour term learned from
        the instrument's earlier frames (:mod:`cpcs.science.colour_terms`): the fitted colour term
        is the posterior's, pulled towards the prior as much as the frame's own stars leave it
        free, and its error the posterior's. A small sigma all but fixes it. Ignored when no colour
        term is fitted.

    Returns
    -------
    ZeroPointFit

    Raises
    ------
    CalibrationFailed
        ``too_few_stars`` when fewer than ``min_stars`` usable stars are available;
        ``degenerate_fit`` when a parameter cannot be constrained (e.g. all colours identical).
    ValueError
        On inconsistent array lengths or an invalid ``spatial_order`` (programming errors).

    Notes
    -----
    A star is usable when ``inst_mag``, ``inst_err``, ``cat_mag`` and ``cat_err`` are finite and the
    errors non-negative, plus the colour / position when those enter the model, and ``inst_err`` is
    within the ``max_inst_err`` cut. Unusable stars are ignored and reported with ``used = False``
    and a NaN residual.
    """
    inst = as_float_array(inst_mag, "inst_mag")
    n_input = inst.size
    ierr = as_float_array(inst_err, "inst_err", size=n_input)
    cat = as_float_array(cat_mag, "cat_mag", size=n_input)
    cerr = as_float_array(cat_err, "cat_err", size=n_input)
    col = _optional_array(colour, "colour", n_input)
    xa = _optional_array(x, "x", n_input)
    ya = _optional_array(y, "y", n_input)
    if (xa is None) != (ya is None):
        raise ValueError("x and y must be given together")
    if spatial_order != "auto" and (
        isinstance(spatial_order, bool)
        or not isinstance(spatial_order, int | np.integer)
        or not 0 <= spatial_order <= MAX_SPATIAL_ORDER
    ):
        raise ValueError(
            f"spatial_order must be 'auto' or an int in 0..{MAX_SPATIAL_ORDER}, got {spatial_order!r}"
        )
    if spatial_order != "auto" and spatial_order > 0 and xa is None:
        raise ValueError("a spatial term needs x and y")

    use_colour = fit_colour_term and col is not None
    use_space = xa is not None and spatial_order != 0
    with np.errstate(invalid="ignore"):
        valid = (
            np.isfinite(inst)
            & np.isfinite(ierr)
            & np.isfinite(cat)
            & np.isfinite(cerr)
            & (ierr >= 0)
            & (cerr >= 0)
        )
    if use_colour:
        assert col is not None
        valid &= np.isfinite(col)
    if use_space:
        assert xa is not None and ya is not None
        valid &= np.isfinite(xa) & np.isfinite(ya)

    forced_order = None if spatial_order == "auto" else int(spatial_order)
    n_parameters = 1 + int(use_colour) + len(spatial_terms(forced_order or 0))
    needed = max(int(min_stars), n_parameters + 1)
    n_valid = int(np.count_nonzero(valid))
    inst_err_cut = None
    if max_inst_err is not None and n_valid > 0:
        # Relax the cut when it leaves fewer than 2 * needed stars: keep the 2 * needed best.
        kth = min(n_valid, 2 * needed) - 1
        fallback = float(np.partition(ierr[valid], kth)[kth])
        inst_err_cut = max(float(max_inst_err), fallback)
        valid = valid & (ierr <= inst_err_cut)
        n_valid = int(np.count_nonzero(valid))
    if n_valid < needed:
        raise CalibrationFailed(
            f"only {n_valid} usable matched stars (of {n_input}); at least {needed} are needed "
            "for the zero-point fit",
            code="too_few_stars",
        )

    delta = (cat - inst)[valid]
    variance = (ierr**2 + cerr**2)[valid] + ERROR_FLOOR_MAG**2
    colour_valid = col[valid] if use_colour and col is not None else None
    if use_space and xa is not None and ya is not None:
        x_valid, y_valid = xa[valid], ya[valid]
        scale = float(max(np.max(np.abs(x_valid)), np.max(np.abs(y_valid))))
        if not (np.isfinite(scale) and scale > 0.0):
            scale = 1.0
    else:
        x_valid = y_valid = np.zeros(n_valid)
        scale = 1.0
    u, v = x_valid / scale, y_valid / scale

    prior = None
    if use_colour and colour_term_prior is not None:
        prior_mean, prior_sigma = (float(v) for v in colour_term_prior)
        if not (np.isfinite(prior_mean) and np.isfinite(prior_sigma) and prior_sigma > 0.0):
            raise ValueError(
                f"colour_term_prior must be a finite (mean, sigma > 0), got {colour_term_prior!r}"
            )
        prior = _Prior(prior_mean, 1.0 / prior_sigma**2)
    clip_options: dict[str, Any] = {
        "clip_sigma": clip_sigma,
        "max_iterations": max_iterations,
        "prior": prior,
    }

    def run(order: int) -> _ClippedFit:
        design = _build_design(colour_valid, u, v, order)
        minimum = max(int(min_stars), design.shape[0] + 1)
        return _clipped_fit(design, delta, variance, order, min_kept=minimum, **clip_options)

    if forced_order is not None:
        best = run(forced_order if use_space else 0)
    else:
        best = run(0)
        if use_space:
            for order, minimum in ((1, AUTO_MIN_STARS_LINEAR), (2, AUTO_MIN_STARS_QUADRATIC)):
                if np.count_nonzero(best.kept) < minimum:
                    break
                if _improves(best, _build_design(colour_valid, u, v, order), delta, variance, prior):
                    best = run(order)

    return _assemble(
        best,
        delta=delta,
        variance=variance,
        valid=valid,
        use_colour=use_colour,
        scale=scale,
        n_input=n_input,
        inst_err_cut=inst_err_cut,
        colour_term_prior=None if prior is None else colour_term_prior,
    )


def _assemble(
    best: _ClippedFit,
    *,
    delta: FloatArray,
    variance: FloatArray,
    valid: BoolArray,
    use_colour: bool,
    scale: float,
    n_input: int,
    inst_err_cut: float | None,
    colour_term_prior: tuple[float, float] | None = None,
) -> ZeroPointFit:
    terms = spatial_terms(best.order)
    # Undo the internal scaling of x and y: coefficient of u**i v**j = c * scale**(i+j).
    unscale = np.array([1.0] * (1 + int(use_colour)) + [scale ** -(i + j) for i, j in terms])
    beta = best.solution.beta * unscale
    covariance = best.solution.covariance * np.outer(unscale, unscale)
    errors = np.sqrt(np.clip(np.diag(covariance), 0.0, None))

    n_valid = int(np.count_nonzero(valid))
    n_used = int(np.count_nonzero(best.kept))
    residual_valid = delta - best.solution.beta @ best.design
    residuals = np.full(n_input, np.nan)
    residuals[valid] = residual_valid
    used = np.zeros(n_input, dtype=bool)
    used[np.flatnonzero(valid)[best.kept]] = True
    dof = n_used - beta.size
    chi2_reduced = best.solution.chi2 / dof if dof > 0 else float("nan")
    chi2_quoted = float(np.sum(residual_valid[best.kept] ** 2 / variance[best.kept]))
    scatter_p_value = float(chi2_distribution.sf(chi2_quoted, dof)) if dof > 0 else 1.0
    for array in (covariance, residuals, used):
        array.flags.writeable = False  # the result is immutable
    names = ("zp", *(("colour_term",) if use_colour else ()), *(_term_name(i, j) for i, j in terms))
    first_spatial = 1 + int(use_colour)
    return ZeroPointFit(
        zp=float(beta[0]),
        zp_err=float(errors[0]),
        colour_term=float(beta[1]) if use_colour else 0.0,
        colour_term_err=float(errors[1]) if use_colour else 0.0,
        colour_reference=0.0,
        colour_fitted=use_colour,
        spatial_order=best.order,
        spatial_coefficients=tuple(float(c) for c in beta[first_spatial:]),
        spatial_terms=terms,
        parameter_names=names,
        covariance=covariance,
        scatter=robust_sigma(residual_valid[best.kept]),
        intrinsic_scatter=float(np.sqrt(best.solution.intrinsic_variance)),
        n_input=n_input,
        n_valid=n_valid,
        n_used=n_used,
        outlier_fraction=1.0 - n_used / n_valid if n_valid else 0.0,
        used=used,
        residuals=residuals,
        chi2_reduced=float(chi2_reduced),
        clip_iterations=best.passes,
        scatter_p_value=scatter_p_value,
        inst_err_cut=inst_err_cut,
        colour_term_prior=colour_term_prior,
    )
