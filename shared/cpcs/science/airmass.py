"""Airmass of a pointing seen from an observatory at a time (astropy, no network).

The airmass is Kasten & Young's (1989) formula, which stays finite down to the horizon (38 at
0 degrees, where sec z would be infinite) and equals sec z within 1 % above 20 degrees altitude. A
target below the horizon has no airmass: the value is None and the note says why, which is usually
a wrong time (a DATE-OBS without its time of day) or a wrong observatory position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from astropy import units as u
from astropy.coordinates import AltAz, EarthLocation, SkyCoord
from astropy.time import Time
from numpy.typing import ArrayLike, NDArray

__all__ = ["LOW_ALTITUDE_DEG", "Airmass", "airmass_at", "airmasses"]

#: Below this altitude (airmass > ~5.6) the frame is unusual enough that a note asks to check.
LOW_ALTITUDE_DEG = 10.0


@dataclass(frozen=True)
class Airmass:
    """Airmass of a target and how high it was.

    Attributes
    ----------
    value : float or None
        Airmass (≥ 1); None when the target is below the horizon.
    altitude_deg : float
        Altitude of the target, degrees (negative below the horizon).
    note : str or None
        Why the value is missing, or a warning for a target very low in the sky.
    """

    value: float | None
    altitude_deg: float
    note: str | None = None


def _kasten_young(altitude_deg: float) -> float:
    return 1.0 / (math.sin(math.radians(altitude_deg)) + 0.50572 * (altitude_deg + 6.07995) ** -1.6364)


def airmass_at(
    ra_deg: float, dec_deg: float, mjd: float, *, lon_deg: float, lat_deg: float, elevation_m: float = 0.0
) -> Airmass:
    """Airmass, altitude and a note for a target seen from a site at a time (MJD, UTC).

    Uses the IERS table bundled with astropy (no download; callers configure astropy offline).
    """
    site = EarthLocation.from_geodetic(lon=lon_deg * u.deg, lat=lat_deg * u.deg, height=elevation_m * u.m)
    frame = AltAz(obstime=Time(mjd, format="mjd", scale="utc"), location=site)
    altitude = float(SkyCoord(ra_deg * u.deg, dec_deg * u.deg).transform_to(frame).alt.deg)
    if altitude <= 0:
        return Airmass(
            None,
            altitude,
            f"the target was {-altitude:.1f} deg below the observatory's horizon at the frame's time: "
            "check the time of the exposure and the observatory's position",
        )
    value = _kasten_young(altitude)
    note = None
    if altitude < LOW_ALTITUDE_DEG:
        note = (
            f"the target was only {altitude:.1f} deg above the horizon: check the time of the exposure "
            "and the observatory's position"
        )
    return Airmass(value, altitude, note)


def airmasses(
    ra_deg: ArrayLike,
    dec_deg: ArrayLike,
    mjd: ArrayLike,
    *,
    lon_deg: float,
    lat_deg: float,
    elevation_m: float = 0.0,
) -> NDArray[np.float64]:
    """:func:`airmass_at` for many frames in one transformation (NaN below the horizon)."""
    times = np.asarray(mjd, dtype=np.float64)
    if times.size == 0:
        return np.zeros(0)
    site = EarthLocation.from_geodetic(lon=lon_deg * u.deg, lat=lat_deg * u.deg, height=elevation_m * u.m)
    frame = AltAz(obstime=Time(times, format="mjd", scale="utc"), location=site)
    coords = SkyCoord(
        np.asarray(ra_deg, dtype=np.float64) * u.deg, np.asarray(dec_deg, dtype=np.float64) * u.deg
    )
    altitude = np.asarray(coords.transform_to(frame).alt.deg, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = 1.0 / (np.sin(np.radians(altitude)) + 0.50572 * (altitude + 6.07995) ** -1.6364)
    return np.where(altitude > 0, value, np.nan)
