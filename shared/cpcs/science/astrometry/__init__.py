"""Astrometric solution of uploaded images against Gaia reference stars.

Pure functions (arrays in, typed results out; no I/O): :func:`solve_astrometry` refines a header WCS
or solves blindly around a pointing, returning an :class:`AstrometricSolution` with a TAN or TAN-SIP
:class:`astropy.wcs.WCS`; :func:`propagate_gaia` moves Gaia positions to the image epoch first.
"""

from cpcs.science.astrometry.solve import (
    MIN_MATCHES,
    MIN_STARS_FOR_SIP_ORDER,
    AstrometricSolution,
    propagate_gaia,
    solve_astrometry,
)

__all__ = [
    "MIN_MATCHES",
    "MIN_STARS_FOR_SIP_ORDER",
    "AstrometricSolution",
    "propagate_gaia",
    "solve_astrometry",
]
