"""Small geometric helpers of the astrometric solver (private).

Conventions used throughout the package:

* pixel coordinates are 0-based (numpy, ``sep`` and ``photutils`` convention; astropy ``origin=0``);
* sky coordinates are ICRS right ascension / declination in degrees;
* standard (gnomonic, tangent-plane) coordinates ``xi`` (towards East, increasing RA) and ``eta``
  (towards North) are in arcsec unless the name says otherwise. They equal the intermediate world
  coordinates of a FITS ``TAN`` projection (times 3600).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
BoolArray = NDArray[np.bool_]

ARCSEC_PER_DEG = 3600.0
ARCSEC_PER_RAD = 180.0 / np.pi * 3600.0
#: Factor turning a median absolute deviation into a Gaussian standard deviation.
MAD_TO_SIGMA = 1.482602218505602


def unit_vectors(ra_deg: FloatArray, dec_deg: FloatArray) -> FloatArray:
    """Unit vectors (n, 3) of the directions ``ra_deg``, ``dec_deg`` (degrees)."""
    ra = np.radians(ra_deg)
    dec = np.radians(dec_deg)
    cos_dec = np.cos(dec)
    return np.column_stack((cos_dec * np.cos(ra), cos_dec * np.sin(ra), np.sin(dec)))


def _tangent_basis(ra0_deg: float, dec0_deg: float) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Unit vectors of the tangent point and of the local East and North directions there."""
    ra0, dec0 = np.radians(ra0_deg), np.radians(dec0_deg)
    centre = np.array([np.cos(dec0) * np.cos(ra0), np.cos(dec0) * np.sin(ra0), np.sin(dec0)])
    east = np.array([-np.sin(ra0), np.cos(ra0), 0.0])
    north = np.array([-np.sin(dec0) * np.cos(ra0), -np.sin(dec0) * np.sin(ra0), np.cos(dec0)])
    return centre, east, north


def project_vectors(vectors: FloatArray, ra0_deg: float, dec0_deg: float) -> tuple[FloatArray, FloatArray]:
    """Gnomonic projection of unit vectors (n, 3) about (``ra0_deg``, ``dec0_deg``); see :func:`project`."""
    centre, east, north = _tangent_basis(ra0_deg, dec0_deg)
    along = vectors @ centre
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = np.where(along > 1e-8, ARCSEC_PER_RAD / along, np.nan)
    return (vectors @ east) * inverse, (vectors @ north) * inverse


def project(
    ra_deg: FloatArray, dec_deg: FloatArray, ra0_deg: float, dec0_deg: float
) -> tuple[FloatArray, FloatArray]:
    """Gnomonic projection about the tangent point (``ra0_deg``, ``dec0_deg``).

    Parameters
    ----------
    ra_deg, dec_deg : ndarray
        Positions to project, degrees.
    ra0_deg, dec0_deg : float
        Tangent point, degrees.

    Returns
    -------
    xi, eta : ndarray
        Standard coordinates, arcsec (``xi`` towards East, ``eta`` towards North). Points 90 degrees or
        more from the tangent point have no gnomonic image and come back as NaN.
    """
    return project_vectors(unit_vectors(ra_deg, dec_deg), ra0_deg, dec0_deg)


def deproject_vectors(
    xi_arcsec: FloatArray, eta_arcsec: FloatArray, ra0_deg: float, dec0_deg: float
) -> FloatArray:
    """Unit vectors (n, 3) of the standard coordinates ``xi``, ``eta`` (arcsec) about the tangent point."""
    centre, east, north = _tangent_basis(ra0_deg, dec0_deg)
    xi = np.asarray(xi_arcsec, dtype=np.float64)[:, None] / ARCSEC_PER_RAD
    eta = np.asarray(eta_arcsec, dtype=np.float64)[:, None] / ARCSEC_PER_RAD
    vectors = centre[None, :] + xi * east[None, :] + eta * north[None, :]
    vectors /= np.linalg.norm(vectors, axis=1)[:, None]
    return vectors


def vectors_to_radec(vectors: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Right ascension in [0, 360) and declination (degrees) of unit vectors (n, 3)."""
    ra = np.degrees(np.arctan2(vectors[:, 1], vectors[:, 0])) % 360.0
    dec = np.degrees(np.arcsin(np.clip(vectors[:, 2], -1.0, 1.0)))
    return ra, dec


def deproject(
    xi_arcsec: FloatArray, eta_arcsec: FloatArray, ra0_deg: float, dec0_deg: float
) -> tuple[FloatArray, FloatArray]:
    """Inverse of :func:`project`: standard coordinates (arcsec) to right ascension and declination (deg).

    Returns
    -------
    ra_deg, dec_deg : ndarray
        Right ascension in [0, 360) and declination, degrees.
    """
    return vectors_to_radec(deproject_vectors(xi_arcsec, eta_arcsec, ra0_deg, dec0_deg))


def polynomial_terms(min_order: int, max_order: int) -> list[tuple[int, int]]:
    """Exponents ``(p, q)`` of the monomials ``u**p * v**q`` with ``min_order <= p + q <= max_order``.

    The order is by total degree, then by decreasing power of ``u``.
    """
    return [(total - q, q) for total in range(min_order, max_order + 1) for q in range(total + 1)]


def polynomial_design(u: FloatArray, v: FloatArray, terms: list[tuple[int, int]]) -> FloatArray:
    """Design matrix (n, len(terms)) whose columns are ``u**p * v**q`` for each ``(p, q)`` in ``terms``."""
    max_power = max((max(p, q) for p, q in terms), default=0)
    u_powers = [np.ones_like(u)]
    v_powers = [np.ones_like(v)]
    for _ in range(max_power):
        u_powers.append(u_powers[-1] * u)
        v_powers.append(v_powers[-1] * v)
    design = np.empty((u.size, len(terms)), dtype=np.float64)
    for column, (p, q) in enumerate(terms):
        design[:, column] = u_powers[p] * v_powers[q]
    return design


def rotation_matrix(angle_rad: float) -> FloatArray:
    """Counter-clockwise rotation matrix (2, 2) by ``angle_rad`` (radians)."""
    cos_a, sin_a = np.cos(angle_rad), np.sin(angle_rad)
    return np.array([[cos_a, -sin_a], [sin_a, cos_a]])


def robust_sigma_2d(dx: FloatArray, dy: FloatArray) -> float:
    """Per-axis Gaussian-equivalent scatter of 2-D residuals about zero, from their median absolute value.

    Both axes are pooled; the residuals are assumed to be centred (they come from a least-squares fit).
    """
    pooled = np.abs(np.concatenate((dx, dy)))
    if pooled.size == 0:
        return float("nan")
    return float(MAD_TO_SIGMA * np.median(pooled))
