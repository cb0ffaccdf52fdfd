"""The reference cone of a frame reaches all of it, wherever the target lies on it."""

from __future__ import annotations

import math

import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.units import deg

from cpcs.science.image_reduction import REFERENCE_MARGIN_ARCMIN, reference_radius_deg
from cpcs.science.imaging.header import standardise_header

SCALE_ARCSEC = 0.4
NX, NY = 2048, 1489
CENTRE = (323.342, -0.734)


def _header(with_wcs: bool = True) -> fits.Header:
    cards = {"NAXIS": 2, "NAXIS1": NX, "NAXIS2": NY}
    if with_wcs:
        cards |= {
            "CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": CENTRE[0], "CRVAL2": CENTRE[1],
            "CRPIX1": (NX + 1) / 2, "CRPIX2": (NY + 1) / 2,
            "CD1_1": -SCALE_ARCSEC / 3600, "CD1_2": 0.0, "CD2_1": 0.0, "CD2_2": SCALE_ARCSEC / 3600,
        }  # fmt: skip
    else:
        cards |= {"PIXSCALE": SCALE_ARCSEC}
    return fits.Header(cards)


def test_a_target_near_a_corner_gets_references_out_to_the_far_corner() -> None:
    header = standardise_header(_header())
    assert header.wcs is not None
    half_diagonal = math.hypot(NX, NY) / 2 * SCALE_ARCSEC / 3600
    margin = REFERENCE_MARGIN_ARCMIN / 60
    centred = reference_radius_deg(header, (NY, NX), *CENTRE)
    assert centred == pytest.approx(half_diagonal + margin, rel=1e-3)
    corner = header.wcs.pixel_to_world(20, 20)
    far = header.wcs.pixel_to_world(NX - 1, NY - 1)
    radius = reference_radius_deg(header, (NY, NX), float(corner.ra.deg), float(corner.dec.deg))
    assert radius >= float(corner.separation(far).deg) + margin - 1e-6
    assert radius <= 2 * half_diagonal + margin + 1e-9
    # a target the header places far off the frame: never more than the whole diagonal
    away = SkyCoord(CENTRE[0] * deg, (CENTRE[1] + 1.0) * deg)
    assert reference_radius_deg(header, (NY, NX), away.ra.deg, away.dec.deg) == pytest.approx(
        2 * half_diagonal + margin
    )


def test_without_a_wcs_the_frame_may_lie_anywhere_around_the_target() -> None:
    header = standardise_header(_header(with_wcs=False))
    half_diagonal = math.hypot(NX, NY) / 2 * (header.pixel_scale_arcsec or 1.0) / 3600
    assert reference_radius_deg(header, (NY, NX), *CENTRE) == pytest.approx(
        2 * half_diagonal + REFERENCE_MARGIN_ARCMIN / 60
    )
