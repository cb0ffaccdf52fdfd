"""Tangent-plane helpers and the proper-motion propagation against astropy."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import Distance, SkyCoord
from astropy.time import Time
from astropy.wcs import WCS

from cpcs.science.astrometry import propagate_gaia
from cpcs.science.astrometry._geometry import (
    deproject,
    polynomial_design,
    polynomial_terms,
    project,
)


@pytest.mark.parametrize(
    ("ra0", "dec0"), [(150.0, 30.0), (0.05, -20.0), (359.95, 10.0), (77.0, 89.9), (200.0, -89.5)]
)
def test_projection_matches_astropy_tan_and_round_trips(ra0: float, dec0: float) -> None:
    rng = np.random.default_rng(1)
    xi = rng.uniform(-1200.0, 1200.0, 500)
    eta = rng.uniform(-1200.0, 1200.0, 500)
    ra, dec = deproject(xi, eta, ra0, dec0)
    assert np.all((ra >= 0.0) & (ra < 360.0))
    # A TAN WCS with a unit CD in degrees has intermediate coordinates equal to xi, eta (deg).
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra0, dec0]
    wcs.wcs.crpix = [1.0, 1.0]  # FITS pixel 1 = 0-based pixel 0
    wcs.wcs.cd = np.eye(2)
    ra_ref, dec_ref = wcs.wcs_pix2world(xi / 3600.0, eta / 3600.0, 0)
    d_ra = (ra - ra_ref + 180.0) % 360.0 - 180.0
    np.testing.assert_allclose(d_ra * np.cos(np.radians(dec)) * 3600.0, 0.0, atol=1e-6)
    np.testing.assert_allclose((dec - dec_ref) * 3600.0, 0.0, atol=1e-6)
    back_xi, back_eta = project(ra, dec, ra0, dec0)
    np.testing.assert_allclose(back_xi, xi, atol=1e-7)
    np.testing.assert_allclose(back_eta, eta, atol=1e-7)


def test_projection_of_the_far_hemisphere_is_nan() -> None:
    xi, eta = project(np.array([10.0, 190.0]), np.array([0.0, 0.0]), 10.0, 0.0)
    assert np.isfinite(xi[0]) and np.isnan(xi[1]) and np.isnan(eta[1])


def test_polynomial_terms_and_design() -> None:
    assert polynomial_terms(0, 2) == [(0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (0, 2)]
    assert polynomial_terms(2, 3)[:3] == [(2, 0), (1, 1), (0, 2)]
    u_, v_ = np.array([2.0, -1.0]), np.array([3.0, 0.5])
    design = polynomial_design(u_, v_, polynomial_terms(0, 3))
    expected = np.array(
        [[u**p * v**q for p, q in polynomial_terms(0, 3)] for u, v in zip(u_, v_, strict=True)]
    )
    np.testing.assert_allclose(design, expected)


def test_propagate_gaia_matches_astropy_space_motion() -> None:
    rng = np.random.default_rng(2)
    n = 200
    ra = rng.uniform(0.0, 360.0, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))
    dec[:5] = [89.99, -89.99, 89.9, 0.0, -45.0]
    pmra = rng.normal(0.0, 500.0, n)
    pmdec = rng.normal(0.0, 500.0, n)
    mjd = 60000.0
    new_ra, new_dec = propagate_gaia(ra, dec, pmra, pmdec, to_mjd=mjd)

    start = SkyCoord(
        ra=ra * u.deg,
        dec=dec * u.deg,
        pm_ra_cosdec=pmra * u.mas / u.yr,
        pm_dec=pmdec * u.mas / u.yr,
        distance=Distance(parallax=1e-6 * u.mas),
        radial_velocity=0.0 * u.km / u.s,
        obstime=Time(2016.0, format="jyear", scale="tcb"),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        moved = start.apply_space_motion(new_obstime=Time(mjd, format="mjd", scale="tcb"))
    separation = SkyCoord(new_ra * u.deg, new_dec * u.deg).separation(moved).to_value(u.mas)
    assert np.max(separation) < 0.05  # mas, over ~7 years and up to ~2 arcsec/yr


def test_propagate_gaia_simple_cases() -> None:
    # One Julian year of 1000 mas/yr in declination moves a star 1 arcsec north.
    one_year_later = 51544.5 + (2017.0 - 2000.0) * 365.25
    ra, dec = propagate_gaia([10.0], [20.0], [0.0], [1000.0], to_mjd=one_year_later)
    assert ra[0] == pytest.approx(10.0, abs=1e-12)
    assert (dec[0] - 20.0) * 3600.0 == pytest.approx(1.0, abs=1e-9)
    # Eastward motion of pmra (which includes cos dec) is a true angle on the sky.
    ra, dec = propagate_gaia([10.0], [60.0], [1000.0], [0.0], to_mjd=one_year_later)
    assert (ra[0] - 10.0) * np.cos(np.radians(60.0)) * 3600.0 == pytest.approx(1.0, rel=1e-6)
    # NaN proper motions mean no motion; positions come back exactly.
    ra_in = np.array([1.0, 359.5, 120.0])
    dec_in = np.array([-5.0, 89.999, 3.0])
    ra, dec = propagate_gaia(ra_in, dec_in, [np.nan, 5.0, 0.0], [np.nan, np.nan, 0.0], to_mjd=60000.0)
    assert ra[0] == ra_in[0] and dec[0] == dec_in[0] and ra[2] == ra_in[2]
    assert ra[1] != ra_in[1]  # pmra alone is used when pmdec is NaN
    # Per-star epochs broadcast.
    ra, dec = propagate_gaia(
        [10.0, 10.0], [0.0, 0.0], [0.0, 0.0], [1000.0, 1000.0], to_mjd=[57388.5, one_year_later]
    )
    assert dec[0] == pytest.approx(0.0, abs=1e-9) and dec[1] * 3600.0 == pytest.approx(1.0, abs=1e-6)
