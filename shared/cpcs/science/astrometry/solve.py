"""Astrometric solution of an image from its detected sources and Gaia reference stars.

Two entry modes, one refinement:

``refine``
    The header WCS is roughly right (within ``max_offset_arcmin`` and ``max_rotation_deg``, pixel scale
    within 2 %). The brightest sources are put on the sky with it; a vote over the offsets of all
    source-reference pairs, on a grid of small rotations and scale changes
    (:func:`~cpcs.science.astrometry.matching.vote_rotation_offset`), finds the correction, and the pairs
    of the winning cell give a first linear plate.
``blind-pointing``
    No usable WCS, only a pointing (accurate to a few arcmin) and a pixel scale (to ~2 %). Triangles of
    the brightest sources and references (:func:`~cpcs.science.astrometry.matching.triangle_candidates`)
    give the rotation (any), the parity and the offset; the best candidates are verified by counting
    matches of the brightest stars against chance. A failed ``refine`` falls back to this mode around
    the header's centre and scale (or the given pointing and scale).

Both continue with the same iteration: match every source with its nearest reference within a radius,
fit the plate model by weighted linear least squares in the tangent plane with outlier clipping, shrink
the radius to 5 sigma of the residuals, re-match, until the matches settle. The weights are the inverse
variances of the residuals of the sources grouped by brightness (bright stars have better centroids).
With ``sip_order="auto"`` the model then grows while the Bayesian information criterion improves by
more than 10: a one-parameter radial cubic term (the pincushion or barrel distortion of most optics,
usable from 15 stars), SIP order 2 plus the radial term (from 20 stars), full SIP order 3 (from 40).

The plate model is the FITS ``TAN-SIP`` model itself: with ``u, v`` the pixel offsets from the image
centre (CRPIX), ``(xi, eta) = CD @ (u + A(u, v), v + B(u, v))`` where ``A, B`` hold the terms of total
degree 2 to the SIP order. Written as a polynomial in ``u, v`` this is linear in the unknowns
(``xi0, eta0`` of the centre, CD, and ``CD @ A``, ``CD @ B``), so one least-squares solve fits
everything (the radial term, shared by both axes, is linearised about the current CD); CRVAL then moves
to the fitted centre and the references are re-projected (the change is second order: one extra pass).
The inverse polynomials (AP, BP) are fitted on a grid so that other software can go from sky to pixels
without iterating.

A solution is rejected (``CalibrationFailed``) when its pixel scale is more than 10 % from the expected
one, when fewer than 6 stars match, when the matched stars do not cover the image (standard deviation
along the narrowest direction below 10 % of the smaller side), when the number of matches is not
significant against chance coincidences, or when the residuals fill the matching radius (chance
matches) instead of gathering well inside it.

Conventions: pixel coordinates are 0-based (numpy, ``sep``, ``photutils``; astropy ``origin=0``);
``image_shape`` is the numpy shape ``(ny, nx)``; sky coordinates are ICRS degrees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from astropy.wcs import WCS, Sip
from astropy.wcs.utils import proj_plane_pixel_scales
from numpy.typing import ArrayLike
from scipy.spatial import cKDTree
from scipy.stats import poisson

from cpcs.errors import CalibrationFailed
from cpcs.science.astrometry._geometry import (
    ARCSEC_PER_DEG,
    ARCSEC_PER_RAD,
    MAD_TO_SIGMA,
    BoolArray,
    FloatArray,
    IntArray,
    deproject,
    deproject_vectors,
    polynomial_design,
    polynomial_terms,
    project,
    project_vectors,
    robust_sigma_2d,
    unit_vectors,
    vectors_to_radec,
)
from cpcs.science.astrometry.matching import match_nearest, triangle_candidates, vote_rotation_offset

__all__ = [
    "MIN_MATCHES",
    "MIN_STARS_FOR_SIP_ORDER",
    "AstrometricSolution",
    "propagate_gaia",
    "solve_astrometry",
]

#: Fewest matched stars accepted for any solution.
MIN_MATCHES = 6
#: Fewest matched stars before the one-parameter radial distortion is tried in ``sip_order="auto"``.
MIN_STARS_FOR_RADIAL = 15
#: Fewest matched stars before a SIP order is tried in ``sip_order="auto"`` (or accepted when given).
MIN_STARS_FOR_SIP_ORDER = {2: 20, 3: 40, 4: 100, 5: 150}
#: Largest SIP order accepted when given explicitly.
MAX_SIP_ORDER = 5
#: BIC decrease required to accept a larger model ("strong evidence").
BIC_THRESHOLD = 10.0
#: Largest header offset and rotation searched by the refine vote; larger ones go to the blind mode.
MAX_REFINE_OFFSET_ARCMIN = 10.0
MAX_REFINE_ROTATION_DEG = 10.0
#: Relative error of the header pixel scale searched in refine mode.
REFINE_SCALE_TOLERANCE = 0.02
#: Smallest pointing uncertainty assumed in blind mode, arcmin.
BLIND_POINTING_UNCERTAINTY_ARCMIN = 5.0
#: Residuals beyond this many (per-axis, robust) sigmas of their brightness group are clipped.
CLIP_SIGMA = 3.5
#: Residuals below this (pixels) are never clipped, however small the scatter of the others.
MIN_CLIP_PX = 0.1
#: Matching radius in units of the (per-axis, robust) residual sigma of the noisiest group.
RADIUS_SIGMA = 5.0
#: Matched pairs per brightness group of the weighted fit, and the largest number of groups.
WEIGHT_GROUP_SIZE = 25
MAX_WEIGHT_GROUPS = 6
#: Largest relative difference between the solved and the expected pixel scale.
MAX_SCALE_ERROR = 0.10
#: Smallest spread of the matched stars (standard deviation along the narrowest direction) as a
#: fraction of the smaller image side; uniformly spread stars give 0.29.
MIN_MATCH_SPREAD = 0.10
#: Largest per-axis scatter of the final residuals as a fraction of the matching radius: chance
#: matches spread over the whole radius (0.5), true ones gather well inside it (at most 0.2).
MAX_SCATTER_TO_RADIUS = 0.3
#: Required chance probability (decimal log) of the number of final matches.
MAX_LOG10_CHANCE = -6.0

#: A blind pointing uncertainty above this many image half-diagonals is searched in tiles.
TILE_UNCERTAINTY_RATIO = 1.5

#: Blind-mode passes: number of brightest sources used for triangles, largest number of references.
_BLIND_PASSES = ((30, 100), (50, 160))

_FAILED = "astrometry_failed"
_NO_REFERENCES = "astrometry_no_references"


class _TooFewForOrder(CalibrationFailed):
    """The requested SIP order needs more matches than found (solving blindly would not help)."""


# ----------------------------------------------------------------------------------------------------
# Public results
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class AstrometricSolution:
    """A solved celestial WCS and how well it fits.

    Attributes
    ----------
    wcs : astropy.wcs.WCS
        Celestial WCS, ``RA---TAN`` / ``DEC--TAN`` or ``RA---TAN-SIP`` / ``DEC--TAN-SIP`` (with the
        inverse AP/BP polynomials), ICRS, CRPIX at the image centre, ``pixel_shape`` set. Use it with
        0-based pixels (``origin=0``, ``pixel_to_world``).
    sip_order : int
        Order of the SIP distortion polynomials; 0 when there are none.
    rms_arcsec : float
        Root mean square of the residuals of the final matches, both axes combined per star:
        ``sqrt(mean(dx**2 + dy**2))``, arcsec.
    n_matched : int
        Number of final matches (after outlier clipping).
    n_sources, n_references : int
        Number of usable (finite) sources and reference stars given.
    pixel_scale_arcsec : float
        ``sqrt(|det CD|)`` at the image centre, arcsec per pixel.
    rotation_deg : float
        Position angle of the image +y axis, from North through East, degrees in (-180, 180].
    flipped : bool
        True when the image is mirrored with respect to the sky as seen from inside the sphere with
        North up and East left, i.e. when ``det(CD) > 0``.
    method : str
        ``"refine"`` (from the header WCS) or ``"blind-pointing"`` (pattern match around a pointing).
    match_source_index, match_reference_index : ndarray of int
        The final matches, as indices into the arrays given to :func:`solve_astrometry`.
    """

    wcs: WCS
    sip_order: int
    rms_arcsec: float
    n_matched: int
    n_sources: int
    n_references: int
    pixel_scale_arcsec: float
    rotation_deg: float
    flipped: bool
    method: str
    match_source_index: IntArray
    match_reference_index: IntArray


def propagate_gaia(
    ra_deg: ArrayLike,
    dec_deg: ArrayLike,
    pmra_mas_yr: ArrayLike,
    pmdec_mas_yr: ArrayLike,
    *,
    from_epoch: float = 2016.0,
    to_mjd: ArrayLike,
) -> tuple[FloatArray, FloatArray]:
    """Move reference stars along their proper motion to the epoch of an image.

    The motion is linear on the celestial sphere (parallax and radial velocity ignored, as for a
    catalogue without them): the position vector moves along the local East and North directions by
    the proper motion times the elapsed time and is renormalised. This is exact at any declination,
    including near the poles.

    Parameters
    ----------
    ra_deg, dec_deg : array_like
        Catalogue positions at ``from_epoch``, degrees.
    pmra_mas_yr : array_like
        Proper motion in right ascension times cos(dec) (Gaia ``pmra``), mas/yr. NaN means no motion.
    pmdec_mas_yr : array_like
        Proper motion in declination, mas/yr. NaN means no motion.
    from_epoch : float
        Catalogue epoch, Julian year (2016.0 for Gaia DR3).
    to_mjd : float or array_like
        Epoch of the image, MJD (broadcast against the positions).

    Returns
    -------
    ra_deg, dec_deg : ndarray
        Positions at ``to_mjd``, degrees (RA in [0, 360)).
    """
    ra, dec, pmra, pmdec, mjd = np.broadcast_arrays(
        np.asarray(ra_deg, dtype=np.float64),
        np.asarray(dec_deg, dtype=np.float64),
        np.asarray(pmra_mas_yr, dtype=np.float64),
        np.asarray(pmdec_mas_yr, dtype=np.float64),
        np.asarray(to_mjd, dtype=np.float64),
    )
    shape = ra.shape
    ra, dec, pmra, pmdec, mjd = (a.ravel() for a in (ra, dec, pmra, pmdec, mjd))
    years = 2000.0 + (mjd - 51544.5) / 365.25 - from_epoch
    mas_to_rad = 1.0 / (ARCSEC_PER_RAD * 1000.0)
    d_east = np.where(np.isfinite(pmra), pmra, 0.0) * years * mas_to_rad
    d_north = np.where(np.isfinite(pmdec), pmdec, 0.0) * years * mas_to_rad
    ra_rad, dec_rad = np.radians(ra), np.radians(dec)
    east = np.column_stack((-np.sin(ra_rad), np.cos(ra_rad), np.zeros_like(ra_rad)))
    north = np.column_stack(
        (-np.sin(dec_rad) * np.cos(ra_rad), -np.sin(dec_rad) * np.sin(ra_rad), np.cos(dec_rad))
    )
    vectors = unit_vectors(ra, dec) + d_east[:, None] * east + d_north[:, None] * north
    vectors /= np.linalg.norm(vectors, axis=1)[:, None]
    new_ra = np.degrees(np.arctan2(vectors[:, 1], vectors[:, 0])) % 360.0
    new_dec = np.degrees(np.arcsin(np.clip(vectors[:, 2], -1.0, 1.0)))
    # Keep the input exactly where there is no motion (avoids round-off on RA at the poles).
    still = (d_east == 0.0) & (d_north == 0.0)
    new_ra = np.where(still, ra, new_ra)
    new_dec = np.where(still, dec, new_dec)
    return new_ra.reshape(shape), new_dec.reshape(shape)


# ----------------------------------------------------------------------------------------------------
# The plate model
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Plate:
    """TAN(-SIP) model: pixel -> tangent plane about ``crval``; ``cd`` in arcsec per pixel."""

    centre: FloatArray  # 0-based pixel of CRPIX
    crval: tuple[float, float]
    cd: FloatArray  # (2, 2), arcsec / pixel
    order: int  # 1 = linear (no SIP)
    sip_a: FloatArray  # coefficients of the SIP terms (polynomial_terms(2, order)), pixel units
    sip_b: FloatArray

    @property
    def sip_terms(self) -> list[tuple[int, int]]:
        return polynomial_terms(2, self.order)

    def to_plane(self, x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Pixels to standard coordinates about ``crval``, arcsec."""
        u = x - self.centre[0]
        v = y - self.centre[1]
        if self.order >= 2:
            design = polynomial_design(u, v, self.sip_terms)
            u = u + design @ self.sip_a
            v = v + design @ self.sip_b
        return self.cd[0, 0] * u + self.cd[0, 1] * v, self.cd[1, 0] * u + self.cd[1, 1] * v

    def to_vectors(self, x: FloatArray, y: FloatArray) -> FloatArray:
        """Pixels to unit vectors on the sky, shape (n, 3)."""
        xi, eta = self.to_plane(x, y)
        return deproject_vectors(xi, eta, *self.crval)

    @property
    def scale_arcsec(self) -> float:
        return float(np.sqrt(abs(np.linalg.det(self.cd))))


@dataclass(frozen=True)
class _Model:
    """A plate model: a polynomial of ``order`` in the pixel offsets from the image centre (1 = linear),
    optionally plus one radial cubic term ``k * (u, v) * (u**2 + v**2)`` (the pincushion or barrel
    distortion of most optics, one parameter where a full cubic needs eight)."""

    order: int
    radial: bool = False

    @property
    def n_parameters(self) -> int:
        return 2 * _n_coefficients(self.order) + int(self.radial)

    @property
    def sip_order(self) -> int:
        """SIP order of the equivalent FITS model (0 = none)."""
        order = max(self.order, 3 if self.radial else 1)
        return order if order >= 2 else 0

    @property
    def min_stars(self) -> int:
        """Fewest matched stars for which ``sip_order="auto"`` tries this model."""
        if self.order >= 2:
            return MIN_STARS_FOR_SIP_ORDER.get(self.order, 3 * _n_coefficients(self.order))
        return MIN_STARS_FOR_RADIAL if self.radial else MIN_MATCHES

    def __str__(self) -> str:
        return f"order {self.order}" + (" + radial" if self.radial else "")


_LINEAR = _Model(1)
#: Models tried in turn by ``sip_order="auto"``, each kept if the BIC improves on the current one.
_AUTO_MODELS = (_Model(1, radial=True), _Model(2, radial=True), _Model(3))


@dataclass(frozen=True, eq=False)
class _Fit:
    plate: _Plate
    model: _Model
    inliers: BoolArray  # over the pairs given to the fit
    dx: FloatArray  # residuals (reference - model) of all pairs, arcsec
    dy: FloatArray
    weights: FloatArray  # least-squares weight of each pair (mean 1 over the inliers)
    sigma: float  # per-axis robust scatter of the noisiest brightness group of inliers, arcsec

    @property
    def rss(self) -> float:
        """Weighted sum of squared residuals of the inliers."""
        keep = self.inliers
        return float(np.sum(self.weights[keep] * (self.dx[keep] ** 2 + self.dy[keep] ** 2)))


def _n_coefficients(order: int) -> int:
    """Unknowns per axis of a polynomial of ``order`` (constant + linear + SIP terms)."""
    return (order + 1) * (order + 2) // 2


def _normalised(
    x: FloatArray, y: FloatArray, centre: FloatArray, norm: float
) -> tuple[FloatArray, FloatArray]:
    return (x - centre[0]) / norm, (y - centre[1]) / norm


def _radial_columns(s: FloatArray, t: FloatArray, linear: FloatArray) -> FloatArray:
    """Standard-coordinate change (arcsec, shape (n, 2)) per unit radial coefficient: the linear part
    ``linear`` (arcsec per normalised offset) applied to ``(s, t) * (s**2 + t**2)``."""
    rho2 = s * s + t * t
    return np.column_stack((s * rho2, t * rho2)) @ linear.T


def _least_squares(
    design: FloatArray,
    ref_vectors: FloatArray,
    crval: tuple[float, float],
    weights: FloatArray,
    radial: FloatArray | None = None,
) -> tuple[FloatArray, float, tuple[float, float]]:
    """Weighted fit of the standard coordinates of the references with the design matrix (and the radial
    columns, one coefficient shared by both axes), moving CRVAL to the fitted image centre (the constant
    terms) and re-projecting until the move is negligible.

    Returns the coefficients (n_terms, 2) in arcsec, about the returned CRVAL (constant terms zero), the
    radial coefficient (0 without radial columns) and CRVAL.
    """
    weighted = design * weights[:, None]
    gram = weighted.T @ design
    m = design.shape[1]
    normal = gram
    if radial is not None:
        # Both axes in one system: [xi terms | eta terms | radial].
        normal = np.zeros((2 * m + 1, 2 * m + 1))
        normal[:m, :m] = gram
        normal[m : 2 * m, m : 2 * m] = gram
        cross = weighted.T @ radial  # (m, 2)
        normal[:m, 2 * m] = normal[2 * m, :m] = cross[:, 0]
        normal[m : 2 * m, 2 * m] = normal[2 * m, m : 2 * m] = cross[:, 1]
        normal[2 * m, 2 * m] = float(np.sum(weights * (radial[:, 0] ** 2 + radial[:, 1] ** 2)))
    coefficients: FloatArray = np.zeros((m, 2))
    k = 0.0
    for _ in range(4):
        xi, eta = project_vectors(ref_vectors, *crval)
        if radial is None:
            coefficients = np.asarray(
                np.linalg.solve(normal, weighted.T @ np.column_stack((xi, eta))), dtype=np.float64
            )
        else:
            rhs = np.concatenate(
                (
                    weighted.T @ xi,
                    weighted.T @ eta,
                    [np.sum(weights * (radial[:, 0] * xi + radial[:, 1] * eta))],
                )
            )
            solution = np.linalg.solve(normal, rhs)
            coefficients = np.column_stack((solution[:m], solution[m : 2 * m]))
            k = float(solution[2 * m])
        shift = coefficients[0]
        centre_ra, centre_dec = vectors_to_radec(deproject_vectors(shift[:1], shift[1:], *crval))
        crval = (float(centre_ra[0]), float(centre_dec[0]))
        # The projections about the old and new tangent points differ by the shift plus terms of order
        # shift * (field radius in radians)**2: below 1e-6 arcsec once the shift is under 0.01 arcsec.
        if np.hypot(*shift) < 0.01:
            break
    coefficients[0] = 0.0
    return coefficients, k, crval


def _linear_part(coefficients: FloatArray) -> FloatArray:
    """The 2 x 2 linear part (arcsec per normalised offset) of polynomial coefficients."""
    return np.array([[coefficients[1, 0], coefficients[2, 0]], [coefficients[1, 1], coefficients[2, 1]]])


def _brightness_groups(brightness: IntArray | None, n: int) -> IntArray:
    """Split pairs into up to ``MAX_WEIGHT_GROUPS`` groups of equal size by source brightness rank."""
    n_groups = int(np.clip(n // WEIGHT_GROUP_SIZE, 1, MAX_WEIGHT_GROUPS))
    groups = np.zeros(n, dtype=np.intp)
    if brightness is None or n_groups == 1:
        return groups
    groups[np.argsort(brightness, kind="stable")] = np.arange(n) * n_groups // n
    return groups


def _group_sigmas(dx: FloatArray, dy: FloatArray, keep: BoolArray, groups: IntArray) -> FloatArray:
    """Per-pair robust per-axis scatter of the inliers of its brightness group (arcsec).

    The scatter of a group is ``MAD_TO_SIGMA`` times the median absolute residual of its inliers, both
    axes pooled (one sort for all groups); groups with too few inliers take the overall value.
    """
    n_groups = int(groups.max()) + 1
    overall = robust_sigma_2d(dx[keep], dy[keep])
    sigma = np.full(n_groups, overall)
    if n_groups > 1:
        member_groups = np.concatenate((groups[keep], groups[keep]))
        values = np.concatenate((np.abs(dx[keep]), np.abs(dy[keep])))
        # Sort by group, then by value: the values are non-negative and below the offset.
        offset = 2.0 * float(values.max(initial=0.0)) + 1.0
        ordered = np.sort(member_groups * offset + values)
        starts = np.searchsorted(ordered, np.arange(n_groups) * offset)
        ends = np.append(starts[1:], ordered.size)
        counts = ends - starts
        enough = counts >= WEIGHT_GROUP_SIZE  # both axes: at least half a nominal group of pairs
        lower = ordered[starts + (counts - 1) // 2] - np.arange(n_groups) * offset
        upper = ordered[np.minimum(starts + counts // 2, ordered.size - 1)] - np.arange(n_groups) * offset
        sigma = np.where(enough, MAD_TO_SIGMA * 0.5 * (lower + upper), sigma)
    # Guard against a degenerate group (e.g. exact coordinates): no group counts more than 100 times
    # another, and nothing is below a micro-arcsec.
    sigma = np.maximum(sigma, max(0.1 * float(np.max(sigma)), 1e-6))
    return np.asarray(sigma[groups], dtype=np.float64)


def _plate_from_coefficients(
    coefficients: FloatArray,
    radial: float,
    *,
    model: _Model,
    centre: FloatArray,
    norm: float,
    crval: tuple[float, float],
) -> _Plate:
    """Turn polynomial coefficients (normalised offsets -> arcsec) into CD and SIP (pixel units)."""
    cd = _linear_part(coefficients) / norm
    sip_order = model.sip_order
    sip_a = sip_b = np.zeros(0)
    if sip_order >= 2:
        terms = polynomial_terms(2, sip_order)
        sip_a, sip_b = np.zeros(len(terms)), np.zeros(len(terms))
        if model.order >= 2:
            # The polynomial's terms are a prefix of the SIP terms (both ordered by total degree).
            poly_terms = polynomial_terms(2, model.order)
            powers = np.array([p + q for p, q in poly_terms], dtype=np.float64)
            high = coefficients[3:] / norm ** powers[:, None]  # (n_terms, 2): xi and eta parts, pixels
            sip = np.linalg.solve(cd, high.T)  # (2, n_terms)
            sip_a[: len(poly_terms)] += sip[0]
            sip_b[: len(poly_terms)] += sip[1]
        if model.radial:
            k = radial / norm**2
            sip_a[terms.index((3, 0))] += k
            sip_a[terms.index((1, 2))] += k
            sip_b[terms.index((2, 1))] += k
            sip_b[terms.index((0, 3))] += k
    return _Plate(centre=centre, crval=crval, cd=cd, order=max(sip_order, 1), sip_a=sip_a, sip_b=sip_b)


def _model_residuals(
    model: _Model,
    s: FloatArray,
    t: FloatArray,
    ref_vectors: FloatArray,
    *,
    crval: tuple[float, float],
    weights: FloatArray,
    linear: FloatArray,
) -> tuple[FloatArray, float, tuple[float, float], FloatArray, FloatArray, FloatArray]:
    """One weighted solve of ``model`` (no clipping).

    Returns the coefficients, the radial coefficient, CRVAL, the residuals (arcsec) and the fitted
    linear part (the guess for the radial columns of a next solve).
    """
    design = polynomial_design(s, t, polynomial_terms(0, model.order))
    radial = _radial_columns(s, t, linear) if model.radial else None
    coefficients, k, crval = _least_squares(design, ref_vectors, crval, weights, radial)
    xi, eta = project_vectors(ref_vectors, *crval)
    fitted = design @ coefficients
    if radial is not None:
        fitted += k * radial
    return coefficients, k, crval, xi - fitted[:, 0], eta - fitted[:, 1], _linear_part(coefficients)


def _fit_clipped(
    x: FloatArray,
    y: FloatArray,
    ref_vectors: FloatArray,
    *,
    model: _Model,
    centre: FloatArray,
    crval: tuple[float, float],
    norm: float,
    min_clip_arcsec: float,
    linear_guess: FloatArray | None = None,
    brightness: IntArray | None = None,
    max_iterations: int = 10,
) -> _Fit:
    """Weighted plate fit with iterative clipping (clipped pairs may return).

    Pairs are grouped by the brightness rank of their source (``brightness``, 0 = brightest); each
    group's weight is the inverse variance of its residuals, so well-measured bright stars count more
    than faint ones with noisy centroids. Pairs beyond ``CLIP_SIGMA`` times their group's robust sigma
    (and beyond ``min_clip_arcsec``) are clipped. ``linear_guess`` (arcsec per normalised offset, e.g.
    from a previous fit) is needed by a radial model, whose term is linearised about it and refined with
    each pass. Raises CalibrationFailed when too few pairs survive.
    """
    n_needed = max(MIN_MATCHES, model.n_parameters // 2 + 2)
    s, t = _normalised(x, y, centre, norm)
    groups = _brightness_groups(brightness, x.size)
    keep = np.ones(x.size, dtype=bool)
    weights = np.ones(x.size)
    linear = linear_guess if linear_guess is not None else np.eye(2)
    if model.radial and linear_guess is None:
        raise ValueError("a radial model needs a linear guess")
    design = polynomial_design(s, t, polynomial_terms(0, model.order))
    coefficients = np.zeros((design.shape[1], 2))
    k = 0.0
    dx = dy = sigma_star = np.empty(0)
    for iteration in range(max_iterations):
        if keep.sum() < n_needed:
            raise CalibrationFailed(
                f"only {int(keep.sum())} consistent matches for a plate model of {model} (need {n_needed})",
                code=_FAILED,
            )
        radial = _radial_columns(s, t, linear) if model.radial else None
        coefficients, k, crval = _least_squares(
            design[keep], ref_vectors[keep], crval, weights[keep], None if radial is None else radial[keep]
        )
        linear = _linear_part(coefficients)
        xi, eta = project_vectors(ref_vectors, *crval)
        fitted = design @ coefficients
        if radial is not None:
            fitted += k * radial
        dx, dy = xi - fitted[:, 0], eta - fitted[:, 1]
        sigma_star = _group_sigmas(dx, dy, keep, groups)
        distance = np.hypot(dx, dy)
        new_keep = (distance <= CLIP_SIGMA * sigma_star) | (distance <= min_clip_arcsec)
        # Settled when the inliers no longer change (after at least one weighted pass); borderline pairs
        # may flip back and forth with the weights, so a few changes are tolerated after three passes.
        changes = int(np.count_nonzero(new_keep != keep))
        settled = iteration > 0 and (changes == 0 or (iteration >= 2 and changes <= max(1, x.size // 200)))
        keep = new_keep
        weights = 1.0 / sigma_star**2
        weights /= np.mean(weights[keep]) if keep.any() else 1.0
        if settled:
            break
    if keep.sum() < n_needed:
        raise CalibrationFailed(
            f"only {int(keep.sum())} consistent matches for a plate model of {model}", code=_FAILED
        )
    plate = _plate_from_coefficients(coefficients, k, model=model, centre=centre, norm=norm, crval=crval)
    return _Fit(
        plate=plate,
        model=model,
        inliers=keep,
        dx=dx,
        dy=dy,
        weights=weights,
        sigma=float(np.max(sigma_star[keep])),
    )


# ----------------------------------------------------------------------------------------------------
# Inputs and the matching frame
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Problem:
    x: FloatArray
    y: FloatArray
    source_rank: IntArray  # usable sources, brightest first (indices into x, y)
    source_brightness: IntArray  # rank of each usable source by flux (0 = brightest)
    source_index: IntArray  # index of each usable source in the caller's arrays
    ref_ra: FloatArray
    ref_dec: FloatArray
    ref_vectors: FloatArray  # (n_ref, 3) unit vectors
    ref_rank: IntArray  # usable references, brightest first
    reference_index: IntArray
    shape: tuple[int, int]  # (ny, nx)

    @property
    def centre(self) -> FloatArray:
        return np.array([(self.shape[1] - 1) / 2.0, (self.shape[0] - 1) / 2.0])

    @property
    def norm(self) -> float:
        return max(self.shape) / 2.0

    @property
    def half_diagonal_px(self) -> float:
        return float(np.hypot(*self.shape) / 2.0)


@dataclass(frozen=True, eq=False)
class _Frame:
    """References projected once about a fixed tangent point, with a KD-tree, for matching."""

    tangent: tuple[float, float]
    xy: FloatArray  # (n_ref, 2), arcsec
    tree: cKDTree

    @classmethod
    def build(cls, problem: _Problem, tangent: tuple[float, float]) -> _Frame:
        xi, eta = project_vectors(problem.ref_vectors, *tangent)
        xy = np.column_stack((xi, eta))
        xy[~np.isfinite(xy)] = 1e12  # the far side of the sky never matches
        return cls(tangent=tangent, xy=xy, tree=cKDTree(xy))

    def sources(self, plate: _Plate, problem: _Problem) -> FloatArray:
        xi, eta = project_vectors(plate.to_vectors(problem.x, problem.y), *self.tangent)
        return np.column_stack((xi, eta))


def _prepare(
    x_px: ArrayLike,
    y_px: ArrayLike,
    flux: ArrayLike,
    ref_ra_deg: ArrayLike,
    ref_dec_deg: ArrayLike,
    ref_mag: ArrayLike,
    image_shape: tuple[int, int],
) -> _Problem:
    x = np.asarray(x_px, dtype=np.float64).ravel()
    y = np.asarray(y_px, dtype=np.float64).ravel()
    f = np.asarray(flux, dtype=np.float64).ravel()
    ra = np.asarray(ref_ra_deg, dtype=np.float64).ravel()
    dec = np.asarray(ref_dec_deg, dtype=np.float64).ravel()
    mag = np.asarray(ref_mag, dtype=np.float64).ravel()
    if not (x.size == y.size == f.size):
        raise ValueError(f"x_px, y_px and flux differ in length: {x.size}, {y.size}, {f.size}")
    if not (ra.size == dec.size == mag.size):
        raise ValueError(
            f"ref_ra_deg, ref_dec_deg and ref_mag differ in length: {ra.size}, {dec.size}, {mag.size}"
        )
    if len(image_shape) != 2 or min(image_shape) < 8:
        raise ValueError(f"image_shape must be (ny, nx) of a real image, got {image_shape}")
    good_src = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
    good_ref = np.flatnonzero(np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90.0))
    f_good = np.where(np.isfinite(f[good_src]), f[good_src], -np.inf)
    mag_good = np.where(np.isfinite(mag[good_ref]), mag[good_ref], np.inf)
    rank = np.argsort(-f_good, kind="stable").astype(np.intp)
    return _Problem(
        x=x[good_src],
        y=y[good_src],
        source_rank=rank,
        source_brightness=np.argsort(rank).astype(np.intp),
        source_index=good_src.astype(np.intp),
        ref_ra=ra[good_ref],
        ref_dec=dec[good_ref],
        ref_vectors=unit_vectors(ra[good_ref], dec[good_ref]),
        ref_rank=np.argsort(mag_good, kind="stable").astype(np.intp),
        reference_index=good_ref.astype(np.intp),
        shape=(int(image_shape[0]), int(image_shape[1])),
    )


# ----------------------------------------------------------------------------------------------------
# Iterative matching and fitting
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Matched:
    fit: _Fit
    source: IntArray  # problem-level indices of the pairs given to the fit
    reference: IntArray
    radius_arcsec: float


def _bic(rss: float, n_pairs: int, model: _Model) -> float:
    n_obs = 2 * n_pairs
    return float(n_obs * np.log(max(rss, 1e-300) / n_obs) + model.n_parameters * np.log(n_obs))


class _Refiner:
    """Shrinking-radius matching and plate fitting shared by both modes."""

    def __init__(
        self,
        problem: _Problem,
        frame: _Frame,
        *,
        floor_arcsec: float,
        min_clip_arcsec: float,
        final_arcsec: float | None,
    ):
        self.problem = problem
        self.frame = frame
        self.floor = floor_arcsec
        self.min_clip = min_clip_arcsec
        self.final = final_arcsec

    def fit(self, source: IntArray, reference: IntArray, plate: _Plate, model: _Model) -> _Fit:
        """Weighted, clipped fit of ``model`` to the given pairs (problem-level indices), starting from
        ``plate``."""
        p = self.problem
        return _fit_clipped(
            p.x[source],
            p.y[source],
            p.ref_vectors[reference],
            model=model,
            centre=p.centre,
            crval=plate.crval,
            norm=p.norm,
            min_clip_arcsec=self.min_clip,
            linear_guess=plate.cd * p.norm,
            brightness=p.source_brightness[source],
        )

    def match_and_fit(self, plate: _Plate, radius: float, model: _Model) -> _Matched:
        s_idx, r_idx, _ = match_nearest(self.frame.sources(plate, self.problem), self.frame.tree, radius)
        if s_idx.size < MIN_MATCHES:
            raise CalibrationFailed(
                f"only {s_idx.size} sources match a reference star within {radius:.2f} arcsec", code=_FAILED
            )
        fit = self.fit(s_idx, r_idx, plate, model)
        return _Matched(fit=fit, source=s_idx, reference=r_idx, radius_arcsec=radius)

    def converge(self, plate: _Plate, radius: float, model: _Model, *, fixed: bool = False) -> _Matched:
        """Match, fit, shrink the radius towards ``RADIUS_SIGMA`` sigma (unless ``fixed``); repeat until
        the matches no longer change."""
        matched = self.match_and_fit(plate, radius, model)
        for _ in range(8):
            new_radius = radius if fixed else min(radius, max(RADIUS_SIGMA * matched.fit.sigma, self.floor))
            again = self.match_and_fit(matched.fit.plate, new_radius, model)
            settled = np.array_equal(again.source, matched.source) and np.array_equal(
                again.reference, matched.reference
            )
            matched, radius = again, new_radius
            if settled:
                break
        return matched

    def finish(self, matched: _Matched) -> _Matched:
        """Check that the residuals gather well inside the matching radius (chance matches spread over
        all of it), then match a last time at the caller's radius, when one is given."""
        fit = matched.fit
        scatter = robust_sigma_2d(fit.dx[fit.inliers], fit.dy[fit.inliers])
        if scatter > MAX_SCATTER_TO_RADIUS * matched.radius_arcsec:
            raise CalibrationFailed(
                f"the residuals ({scatter:.2f} arcsec per axis) fill the matching radius "
                f"({matched.radius_arcsec:.2f} arcsec): the matches are not a consistent solution",
                code=_FAILED,
            )
        if self.final is None:
            return matched
        return self.converge(matched.fit.plate, self.final, matched.fit.model, fixed=True)

    def select_model(self, matched: _Matched, sip_order: int | Literal["auto"]) -> _Matched:
        """Fit the requested SIP order, or (auto) try the models of ``_AUTO_MODELS`` in turn and keep each
        that lowers the Bayesian information criterion by ``BIC_THRESHOLD`` on the same stars."""
        if sip_order != "auto":
            target = max(int(sip_order), 1)
            if target == 1:
                return matched
            n = int(matched.fit.inliers.sum())
            needed = max(MIN_STARS_FOR_SIP_ORDER.get(target, 0), 3 * _n_coefficients(target))
            if n < needed:
                raise _TooFewForOrder(
                    f"SIP order {target} needs at least {needed} matched stars, found {n}", code=_FAILED
                )
            fit = self.fit(matched.source, matched.reference, matched.fit.plate, _Model(target))
            return self.converge(fit.plate, matched.radius_arcsec, _Model(target))

        p = self.problem
        current = matched.fit.model
        for candidate in _AUTO_MODELS:
            if int(matched.fit.inliers.sum()) < candidate.min_stars:
                break
            try:
                higher = self.fit(matched.source, matched.reference, matched.fit.plate, candidate)
            except CalibrationFailed:
                break
            # Compare with the current model on the same stars (the inliers of the candidate) and with
            # the same weights.
            common = higher.inliers
            source, reference = matched.source[common], matched.reference[common]
            s, t = _normalised(p.x[source], p.y[source], p.centre, p.norm)
            *_, dx, dy, _ = _model_residuals(
                current,
                s,
                t,
                p.ref_vectors[reference],
                crval=higher.plate.crval,
                weights=higher.weights[common],
                linear=higher.plate.cd * p.norm,
            )
            low_rss = float(np.sum(higher.weights[common] * (dx**2 + dy**2)))
            n_common = int(common.sum())
            if _bic(higher.rss, n_common, candidate) > _bic(low_rss, n_common, current) - BIC_THRESHOLD:
                continue
            current = candidate
            matched = self.converge(higher.plate, matched.radius_arcsec, current)
        return matched


# ----------------------------------------------------------------------------------------------------
# Building the result
# ----------------------------------------------------------------------------------------------------


def _sip_matrix(terms: list[tuple[int, int]], values: FloatArray, order: int) -> FloatArray:
    matrix = np.zeros((order + 1, order + 1))
    for (p, q), value in zip(terms, values, strict=True):
        matrix[p, q] = value
    return matrix


def _build_wcs(plate: _Plate, shape: tuple[int, int]) -> WCS:
    ny, nx = shape
    wcs = WCS(naxis=2)
    wcs.wcs.crpix = plate.centre + 1.0
    wcs.wcs.crval = list(plate.crval)
    wcs.wcs.cd = plate.cd / ARCSEC_PER_DEG
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.radesys = "ICRS"
    if plate.order >= 2:
        wcs.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
        # Inverse polynomials (one order higher) fitted on a grid slightly larger than the image.
        gx, gy = np.meshgrid(np.linspace(-0.05 * nx, 1.05 * nx, 40), np.linspace(-0.05 * ny, 1.05 * ny, 40))
        u = gx.ravel() - plate.centre[0]
        v = gy.ravel() - plate.centre[1]
        design = polynomial_design(u, v, plate.sip_terms)
        big_u = u + design @ plate.sip_a
        big_v = v + design @ plate.sip_b
        inverse_order = plate.order + 1
        inverse_terms = polynomial_terms(1, inverse_order)
        norm = max(shape) / 2.0
        inverse_design = polynomial_design(big_u / norm, big_v / norm, inverse_terms)
        # Normal equations: the design is well conditioned (normalised offsets, order <= 6).
        coefficients = np.linalg.solve(
            inverse_design.T @ inverse_design, inverse_design.T @ np.column_stack((u - big_u, v - big_v))
        )
        powers = np.array([p + q for p, q in inverse_terms], dtype=np.float64)
        coefficients = coefficients / norm ** powers[:, None]
        wcs.sip = Sip(
            _sip_matrix(plate.sip_terms, plate.sip_a, plate.order),
            _sip_matrix(plate.sip_terms, plate.sip_b, plate.order),
            _sip_matrix(inverse_terms, coefficients[:, 0], inverse_order),
            _sip_matrix(inverse_terms, coefficients[:, 1], inverse_order),
            wcs.wcs.crpix,
        )
    else:
        wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.pixel_shape = (nx, ny)
    wcs.wcs.set()
    return wcs


def _finish(
    problem: _Problem,
    matched: _Matched,
    *,
    method: str,
    expected_scale: float | None,
) -> AstrometricSolution:
    """Validate the final matches and build the result (raises CalibrationFailed, see the module)."""
    fit = matched.fit
    plate = fit.plate
    keep = fit.inliers
    source = matched.source[keep]
    reference = matched.reference[keep]
    n = int(source.size)
    scale = plate.scale_arcsec
    if expected_scale is not None and abs(scale / expected_scale - 1.0) > MAX_SCALE_ERROR:
        raise CalibrationFailed(
            f"solved pixel scale {scale:.4f} arcsec differs from the expected {expected_scale:.4f} "
            f"by more than {MAX_SCALE_ERROR:.0%}",
            code=_FAILED,
        )
    if n < MIN_MATCHES:
        raise CalibrationFailed(f"only {n} confident matches (need {MIN_MATCHES})", code=_FAILED)
    # Spread: standard deviation of the matched pixels along their narrowest direction.
    positions = np.column_stack((problem.x[source], problem.y[source]))
    eigen = np.linalg.eigvalsh(np.cov(positions.T))
    spread = float(np.sqrt(max(eigen[0], 0.0)))
    if spread < MIN_MATCH_SPREAD * min(problem.shape):
        raise CalibrationFailed(
            f"the {n} matched stars cover too little of the image (spread {spread:.0f} px along the "
            f"narrowest direction)",
            code=_FAILED,
        )
    # Chance: matches expected from sources falling on unrelated references within the radius.
    ny, nx = problem.shape
    on_image = _references_on_image(problem, plate, margin_px=0.0)
    density = on_image.sum() / (nx * ny * scale**2)
    expected = problem.x.size * density * np.pi * matched.radius_arcsec**2
    log_chance = float(np.log10(max(float(poisson.sf(n - 1, max(expected, 1e-9))), 1e-300)))
    if log_chance > MAX_LOG10_CHANCE:
        raise CalibrationFailed(
            f"{n} matches are not significant ({expected:.1f} expected by chance)", code=_FAILED
        )
    rms = float(np.sqrt(np.mean(fit.dx[keep] ** 2 + fit.dy[keep] ** 2)))
    cd = plate.cd
    return AstrometricSolution(
        wcs=_build_wcs(plate, problem.shape),
        sip_order=plate.order if plate.order >= 2 else 0,
        rms_arcsec=rms,
        n_matched=n,
        n_sources=int(problem.x.size),
        n_references=int(problem.ref_ra.size),
        pixel_scale_arcsec=scale,
        rotation_deg=float(np.degrees(np.arctan2(cd[0, 1], cd[1, 1]))),
        flipped=bool(np.linalg.det(cd) > 0.0),
        method=method,
        match_source_index=problem.source_index[source],
        match_reference_index=problem.reference_index[reference],
    )


def _references_on_image(problem: _Problem, plate: _Plate, *, margin_px: float) -> BoolArray:
    """References whose linear-model pixel position lies on the image (plus a margin)."""
    xi, eta = project_vectors(problem.ref_vectors, *plate.crval)
    uv = np.linalg.solve(plate.cd, np.vstack((np.nan_to_num(xi, nan=1e12), np.nan_to_num(eta, nan=1e12))))
    x = uv[0] + plate.centre[0]
    y = uv[1] + plate.centre[1]
    ny, nx = problem.shape
    return np.asarray(
        (x >= -0.5 - margin_px)
        & (x <= nx - 0.5 + margin_px)
        & (y >= -0.5 - margin_px)
        & (y <= ny - 0.5 + margin_px)
    )


# ----------------------------------------------------------------------------------------------------
# The two modes
# ----------------------------------------------------------------------------------------------------


def _linear_plate_from_pairs(
    problem: _Problem, source: IntArray, reference: IntArray, crval: tuple[float, float], floor: float
) -> _Plate:
    """Clipped linear fit through tentative pairs (duplicates allowed): a starting plate."""
    fit = _fit_clipped(
        problem.x[source],
        problem.y[source],
        problem.ref_vectors[reference],
        model=_LINEAR,
        centre=problem.centre,
        crval=crval,
        norm=problem.norm,
        min_clip_arcsec=floor,
    )
    return fit.plate


def _solve_refine(
    problem: _Problem,
    wcs: WCS,
    *,
    tangent: tuple[float, float],
    scale: float,
    max_offset_arcsec: float,
    max_rotation_deg: float,
    sip_order: int | Literal["auto"],
    match_radius_arcsec: float | None,
    expected_scale: float,
) -> AstrometricSolution:
    """Refine the header ``wcs`` (centre ``tangent``, pixel scale ``scale`` in arcsec)."""
    centre = problem.centre
    frame = _Frame.build(problem, tangent)

    # Sources on the sky through the header WCS.
    src_ra, src_dec = wcs.all_pix2world(problem.x, problem.y, 0)
    src_xi, src_eta = project(
        np.asarray(src_ra, dtype=np.float64), np.asarray(src_dec, dtype=np.float64), *tangent
    )
    if not np.all(np.isfinite(src_xi) & np.isfinite(src_eta)):
        raise CalibrationFailed("the header WCS gives no sky position for some sources", code=_FAILED)

    # References over the footprint plus the largest offset: a linear approximation of the header WCS.
    corners_x = np.array([0.0, problem.shape[1] - 1.0, 0.0, problem.shape[1] - 1.0, centre[0]])
    corners_y = np.array([0.0, 0.0, problem.shape[0] - 1.0, problem.shape[0] - 1.0, centre[1]])
    c_ra, c_dec = wcs.all_pix2world(corners_x, corners_y, 0)
    c_xi, c_eta = project(np.asarray(c_ra, dtype=np.float64), np.asarray(c_dec, dtype=np.float64), *tangent)
    design = np.column_stack((corners_x - centre[0], corners_y - centre[1], np.ones(5)))
    affine, *_ = np.linalg.lstsq(design, np.column_stack((c_xi, c_eta)), rcond=None)
    header_plate = _Plate(
        centre=centre, crval=tangent, cd=affine[:2].T.copy(), order=1, sip_a=np.zeros(0), sip_b=np.zeros(0)
    )
    margin_px = (
        max_offset_arcsec / scale
        + (np.radians(max_rotation_deg) + REFINE_SCALE_TOLERANCE) * problem.half_diagonal_px
    )
    in_area = _references_on_image(problem, header_plate, margin_px=margin_px)
    n_in_area = int(in_area.sum())
    if n_in_area < MIN_MATCHES:
        raise CalibrationFailed(
            f"only {n_in_area} reference stars fall on the image according to the header WCS",
            code=_NO_REFERENCES,
        )

    # Vote with the brightest sources and a similar density of the brightest references.
    n_vote = min(problem.x.size, 150)
    bright_src = problem.source_rank[:n_vote]
    area_ratio = (
        (problem.shape[0] + 2 * margin_px)
        * (problem.shape[1] + 2 * margin_px)
        / (problem.shape[0] * problem.shape[1])
    )
    n_ref_vote = int(min(n_in_area, max(2 * n_vote, 1.5 * n_vote * area_ratio), 600))
    ranked_in_area = problem.ref_rank[in_area[problem.ref_rank]]
    bright_ref = ranked_in_area[:n_ref_vote]
    bright_xy = np.column_stack((src_xi[bright_src], src_eta[bright_src]))
    # Cells of 4 pixels, or wider in large fields (so the rotation and scale grids stay small).
    bin_size = max(4.0 * scale, 1.0, 0.004 * float(np.max(np.hypot(*bright_xy.T))))
    vote = vote_rotation_offset(
        bright_xy,
        frame.xy[bright_ref],
        max_offset=max_offset_arcsec,
        max_rotation_rad=np.radians(max_rotation_deg),
        bin_size=bin_size,
        max_scale_error=REFINE_SCALE_TOLERANCE,
    )
    if vote is None:
        raise CalibrationFailed(
            f"no consistent offset within {max_offset_arcsec / 60:.1f} arcmin and rotation within "
            f"{max_rotation_deg:.1f} deg of the header WCS",
            code=_FAILED,
        )
    # A first plate through the pairs of the winning cell, then all sources.
    floor = max(0.5, 1.0 * scale)
    start = _linear_plate_from_pairs(
        problem, bright_src[vote.source_index], bright_ref[vote.reference_index], tangent, floor
    )
    radius0 = 2.5 * bin_size
    refiner = _Refiner(
        problem,
        frame,
        floor_arcsec=floor,
        min_clip_arcsec=MIN_CLIP_PX * scale,
        final_arcsec=match_radius_arcsec,
    )
    matched = refiner.converge(start, radius0, _LINEAR)
    matched = refiner.finish(refiner.select_model(matched, sip_order))
    return _finish(problem, matched, method="refine", expected_scale=expected_scale)


def _solve_blind(
    problem: _Problem,
    pointing: tuple[float, float],
    scale: float,
    *,
    pointing_uncertainty_arcsec: float,
    sip_order: int | Literal["auto"],
    match_radius_arcsec: float | None,
    passes: tuple[tuple[int, int], ...] = _BLIND_PASSES,
) -> AstrometricSolution:
    tangent = (float(pointing[0]) % 360.0, float(pointing[1]))
    frame = _Frame.build(problem, tangent)
    ref_px = frame.xy / scale  # nominal pixels
    search_px = problem.half_diagonal_px + pointing_uncertainty_arcsec / scale
    in_area = np.hypot(ref_px[:, 0], ref_px[:, 1]) <= search_px
    n_in_area = int(in_area.sum())
    if n_in_area < MIN_MATCHES:
        raise CalibrationFailed(
            f"only {n_in_area} reference stars within {search_px * scale / 60:.1f} arcmin of the pointing",
            code=_NO_REFERENCES,
        )
    ranked_in_area = problem.ref_rank[in_area[problem.ref_rank]]
    ny, nx = problem.shape
    area_ratio = np.pi * search_px**2 / (nx * ny)
    src_xy_all = np.column_stack((problem.x - problem.centre[0], problem.y - problem.centre[1]))

    # Verification set: the brightest sources and the brightest references of the search area, at three
    # times the source density (magnitudes follow fluxes loosely), so chance matches stay few even in
    # crowded fields.
    n_verify = min(problem.x.size, 150)
    verify_src = problem.source_rank[:n_verify]
    verify_ref = ranked_in_area[: int(min(n_in_area, max(round(3.0 * n_verify * area_ratio), MIN_MATCHES)))]
    verify_tree = cKDTree(ref_px[verify_ref])
    verify_radius = max(8.0, 4.0 / scale)
    expected = n_verify * verify_ref.size / (np.pi * search_px**2) * np.pi * verify_radius**2

    best: tuple[int, IntArray, IntArray] | None = None
    for n_src, max_ref in passes:
        n_src_used = min(n_src, problem.x.size)
        n_ref_used = int(min(n_in_area, max(round(1.3 * n_src_used * area_ratio), n_src_used), max_ref))
        candidates = triangle_candidates(
            src_xy_all[problem.source_rank[:n_src_used]],
            ref_px[ranked_in_area[:n_ref_used]],
            min_side=0.08 * min(nx, ny),
            max_side=min(float(np.hypot(nx, ny)), 0.75 * max(nx, ny)),
            cluster_radius=max(10.0, 0.015 * np.hypot(nx, ny)),
        )
        for candidate in candidates:
            moved = candidate.transform.apply(src_xy_all[verify_src])
            s_idx, r_idx, _ = match_nearest(moved, verify_tree, verify_radius)
            n = int(s_idx.size)
            log_chance = float(np.log10(max(float(poisson.sf(n - 1, max(expected, 1e-9))), 1e-300)))
            if n >= MIN_MATCHES and log_chance < MAX_LOG10_CHANCE and (best is None or n > best[0]):
                best = (n, verify_src[s_idx], verify_ref[r_idx])
        if best is not None:
            break
        if problem.x.size <= n_src:
            break
    if best is None:
        raise CalibrationFailed(
            "no pattern of the brightest sources matches the reference stars around the pointing "
            f"(RA {tangent[0]:.4f}, Dec {tangent[1]:.4f}) at {scale:.3f} arcsec/pixel",
            code=_FAILED,
        )
    _, s_idx, r_idx = best
    floor = max(0.5, 1.0 * scale)
    start = _linear_plate_from_pairs(problem, s_idx, r_idx, tangent, floor)
    refiner = _Refiner(
        problem,
        frame,
        floor_arcsec=floor,
        min_clip_arcsec=MIN_CLIP_PX * scale,
        final_arcsec=match_radius_arcsec,
    )
    matched = refiner.converge(start, verify_radius * scale, _LINEAR)
    matched = refiner.finish(refiner.select_model(matched, sip_order))
    return _finish(problem, matched, method="blind-pointing", expected_scale=scale)


def _solve_blind_tiled(
    problem: _Problem,
    pointing: tuple[float, float],
    scale: float,
    *,
    pointing_uncertainty_arcsec: float,
    sip_order: int | Literal["auto"],
    match_radius_arcsec: float | None,
) -> AstrometricSolution:
    """Blind solution; a large pointing uncertainty is searched in tiles (see the module docstring)."""
    half_diagonal = problem.half_diagonal_px * scale
    if pointing_uncertainty_arcsec <= TILE_UNCERTAINTY_RATIO * half_diagonal:
        return _solve_blind(
            problem,
            pointing,
            scale,
            pointing_uncertainty_arcsec=pointing_uncertainty_arcsec,
            sip_order=sip_order,
            match_radius_arcsec=match_radius_arcsec,
        )
    # A square grid of spacing s leaves every point within s / sqrt(2) of a node: tiles of radius
    # 0.75 s (plus the half-diagonal) cover the whole circle.
    spacing = half_diagonal
    reach = pointing_uncertainty_arcsec + 0.71 * spacing
    steps = np.arange(-np.ceil(reach / spacing), np.ceil(reach / spacing) + 1) * spacing
    gx, gy = np.meshgrid(steps, steps)
    distance = np.hypot(gx, gy).ravel()
    order = np.argsort(distance, kind="stable")
    order = order[distance[order] <= reach]
    ra, dec = deproject(gx.ravel()[order], gy.ravel()[order], pointing[0] % 360.0, pointing[1])
    codes: set[str] = set()
    # every tile with the quick pass first, then with the deeper one
    for blind_pass in _BLIND_PASSES:
        for tile_ra, tile_dec in zip(ra, dec, strict=True):
            try:
                return _solve_blind(
                    problem,
                    (float(tile_ra), float(tile_dec)),
                    scale,
                    pointing_uncertainty_arcsec=0.75 * spacing,
                    sip_order=sip_order,
                    match_radius_arcsec=match_radius_arcsec,
                    passes=(blind_pass,),
                )
            except _TooFewForOrder:
                raise
            except CalibrationFailed as error:
                codes.add(error.code)
    raise CalibrationFailed(
        f"no pattern of the brightest sources matches the reference stars within "
        f"{pointing_uncertainty_arcsec / 3600:.2f} deg of the pointing (RA {pointing[0]:.4f}, "
        f"Dec {pointing[1]:.4f}; {order.size} tiles searched) at {scale:.3f} arcsec/pixel",
        code=_NO_REFERENCES if codes == {_NO_REFERENCES} else _FAILED,
    )


# ----------------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------------


def solve_astrometry(
    x_px: ArrayLike,
    y_px: ArrayLike,
    flux: ArrayLike,
    ref_ra_deg: ArrayLike,
    ref_dec_deg: ArrayLike,
    ref_mag: ArrayLike,
    *,
    image_shape: tuple[int, int],
    initial_wcs: WCS | None = None,
    pointing: tuple[float, float] | None = None,
    pixel_scale_arcsec: float | None = None,
    max_offset_arcmin: float = 2.0,
    max_rotation_deg: float = 3.0,
    sip_order: int | Literal["auto"] = "auto",
    match_radius_arcsec: float | None = None,
) -> AstrometricSolution:
    """Solve the WCS of an image from its detected sources and reference stars.

    With an ``initial_wcs`` the header solution is refined (offset up to ``max_offset_arcmin``, rotation
    up to ``max_rotation_deg``); if that fails, or without a WCS, the field is solved blindly around the
    ``pointing`` (or the header's centre) at the known pixel scale, for any rotation and either parity.

    Parameters
    ----------
    x_px, y_px : array_like
        Source centroids, 0-based pixels. Non-finite entries are ignored.
    flux : array_like
        Source fluxes (any linear unit); only their order matters (brightest sources drive the pattern
        matching). NaN counts as faintest.
    ref_ra_deg, ref_dec_deg : array_like
        Reference star positions at the image epoch (see :func:`propagate_gaia`), ICRS degrees.
    ref_mag : array_like
        Reference magnitudes (e.g. Gaia G); NaN counts as faintest.
    image_shape : tuple of int
        ``(ny, nx)`` of the image, pixels.
    initial_wcs : astropy.wcs.WCS, optional
        Header WCS to refine (celestial axes are taken; a WCS without them is ignored).
    pointing : tuple of float, optional
        (RA, Dec) of the image centre, degrees, for the blind mode (default: the header WCS centre).
    pixel_scale_arcsec : float, optional
        Expected pixel scale, arcsec/pixel (default: from the header WCS). Required for the blind mode;
        solutions more than 10 % away are rejected.
    max_offset_arcmin : float
        Largest header offset searched in refine mode, arcmin. In blind mode the pointing uncertainty
        is the larger of this and ``BLIND_POINTING_UNCERTAINTY_ARCMIN`` (5 arcmin). Above
        ``MAX_REFINE_OFFSET_ARCMIN`` (10) the header is only used for its centre and scale (blind).
    max_rotation_deg : float
        Largest header rotation error searched in refine mode, degrees. Above
        ``MAX_REFINE_ROTATION_DEG`` (10) the header is only used for its centre and scale (blind).
    sip_order : int or "auto"
        SIP order of the result (0 or 1 = none, 2 to 5; it needs ``MIN_STARS_FOR_SIP_ORDER`` matches),
        or "auto": grow the model (radial cubic term, SIP order 2 + radial, full SIP order 3) while the
        Bayesian information criterion drops by more than ``BIC_THRESHOLD`` and enough stars match;
        the radial models come out as SIP order 3 with only the radial terms (plus order 2).
    match_radius_arcsec : float, optional
        Final matching radius, arcsec. Default: 5 sigma of the residuals of the faintest stars, at
        least max(0.5 arcsec, 1 pixel); when given, the solution is refitted once with exactly this
        radius after the automatic iteration.

    Returns
    -------
    AstrometricSolution

    Raises
    ------
    CalibrationFailed
        ``code="astrometry_no_references"`` when fewer than ``MIN_MATCHES`` reference stars are given
        (or fall in the searched area); ``code="astrometry_failed"`` when no consistent solution is
        found or the solution fails validation (too few matches, matches not spread over the image,
        pixel scale more than 10 % off, matches not significant against chance coincidences, residuals
        filling the matching radius), or when a requested SIP order needs more matches than found.
    ValueError
        On inconsistent array lengths or a bad ``image_shape`` or ``sip_order`` (programming errors).
    """
    if sip_order != "auto" and (
        not isinstance(sip_order, int | np.integer) or not 0 <= sip_order <= MAX_SIP_ORDER
    ):
        raise ValueError(f"sip_order must be 'auto' or an integer 0..{MAX_SIP_ORDER}, got {sip_order!r}")
    problem = _prepare(x_px, y_px, flux, ref_ra_deg, ref_dec_deg, ref_mag, image_shape)
    if problem.ref_ra.size < MIN_MATCHES:
        raise CalibrationFailed(
            f"only {problem.ref_ra.size} reference stars given (need at least {MIN_MATCHES})",
            code=_NO_REFERENCES,
        )
    if problem.x.size < MIN_MATCHES:
        raise CalibrationFailed(
            f"only {problem.x.size} sources detected (need at least {MIN_MATCHES})", code=_FAILED
        )
    if pixel_scale_arcsec is not None and not (np.isfinite(pixel_scale_arcsec) and pixel_scale_arcsec > 0):
        raise ValueError(f"pixel_scale_arcsec must be positive, got {pixel_scale_arcsec}")

    wcs = initial_wcs.celestial if initial_wcs is not None and initial_wcs.has_celestial else None
    header_scale: float | None = None
    header_centre: tuple[float, float] | None = None
    if wcs is not None:
        scales = proj_plane_pixel_scales(wcs) * ARCSEC_PER_DEG
        if np.all(np.isfinite(scales)) and np.all(scales > 0):
            header_scale = float(np.sqrt(scales[0] * scales[1]))
        c = problem.centre
        world = wcs.all_pix2world(np.array([c[0]]), np.array([c[1]]), 0)
        if np.isfinite(world[0][0]) and np.isfinite(world[1][0]):
            header_centre = (float(world[0][0]), float(world[1][0]))
    expected_scale = pixel_scale_arcsec if pixel_scale_arcsec is not None else header_scale

    refine_error: CalibrationFailed | None = None
    refine_possible = (
        max_offset_arcmin <= MAX_REFINE_OFFSET_ARCMIN and max_rotation_deg <= MAX_REFINE_ROTATION_DEG
    )
    if wcs is not None and header_scale is not None and header_centre is not None and refine_possible:
        try:
            return _solve_refine(
                problem,
                wcs,
                tangent=(header_centre[0] % 360.0, header_centre[1]),
                scale=header_scale,
                max_offset_arcsec=60.0 * max_offset_arcmin,
                max_rotation_deg=max_rotation_deg,
                sip_order=sip_order,
                match_radius_arcsec=match_radius_arcsec,
                expected_scale=expected_scale if expected_scale is not None else header_scale,
            )
        except _TooFewForOrder as error:
            raise CalibrationFailed(error.message, code=error.code) from None
        except CalibrationFailed as error:
            refine_error = error

    centre = pointing if pointing is not None else header_centre
    if centre is None or expected_scale is None:
        missing = "a pointing" if centre is None else "a pixel scale"
        raise CalibrationFailed(f"no usable header WCS, and a blind solution needs {missing}", code=_FAILED)
    try:
        return _solve_blind_tiled(
            problem,
            centre,
            expected_scale,
            pointing_uncertainty_arcsec=60.0 * max(max_offset_arcmin, BLIND_POINTING_UNCERTAINTY_ARCMIN),
            sip_order=sip_order,
            match_radius_arcsec=match_radius_arcsec,
        )
    except CalibrationFailed as error:
        if refine_error is None:
            raise CalibrationFailed(error.message, code=error.code) from None
        raise CalibrationFailed(
            f"refining the header WCS failed ({refine_error.message}); solving blindly around "
            f"RA {centre[0]:.4f}, Dec {centre[1]:.4f} failed too ({error.message})",
            code=refine_error.code if refine_error.code == error.code else _FAILED,
        ) from None
