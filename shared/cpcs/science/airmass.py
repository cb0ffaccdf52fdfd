"""Airmass of a pointing seen from an observatory at a time (astropy, no network)."""

from __future__ import annotations

import math

from astropy import units as u
from astropy.coordinates import AltAz, EarthLocation, SkyCoord
from astropy.time import Time


def airmass(
    ra_deg: float, dec_deg: float, mjd: float, *, lon_deg: float, lat_deg: float, elevation_m: float = 0.0
) -> float | None:
    """Airmass (sec z, plane-parallel) of the pointing; None when the target is below the horizon.

    Uses the IERS table bundled with astropy (no download; callers configure astropy offline).
    """
    site = EarthLocation.from_geodetic(lon=lon_deg * u.deg, lat=lat_deg * u.deg, height=elevation_m * u.m)
    frame = AltAz(obstime=Time(mjd, format="mjd", scale="utc"), location=site)
    altitude = SkyCoord(ra_deg * u.deg, dec_deg * u.deg).transform_to(frame).alt.deg
    if altitude <= 0:
        return None
    return 1.0 / math.sin(math.radians(altitude))
