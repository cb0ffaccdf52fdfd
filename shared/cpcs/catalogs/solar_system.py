"""Known Solar System bodies in a frame: IMCCE's SkyBoT cone search at the frame's epoch.

Online only (``CPCS_CATALOG_ONLINE``): the request astroquery's ``Skybot`` builds (imported when
first used), sent with a short time limit. Offline, on a timeout or on any failure of the service,
the answer is a :class:`SolarSystemCheck` whose ``status`` and ``note`` say why nothing was
checked; it never waits longer than ``timeout_s`` and never raises. Candidates within ``match_radius`` of a
body's predicted position (at least ``MATCH_ARCSEC``, more for a body whose ephemeris is uncertain)
are known objects, not transients.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "MATCH_ARCSEC",
    "SKYBOT_URL",
    "KnownBody",
    "SolarSystemCheck",
    "check_candidates",
    "frame_cone",
    "known_bodies",
    "nearest_body",
    "tag_known_bodies",
]

#: IMCCE's SkyBoT cone-search endpoint (astroquery's default).
SKYBOT_URL = "https://ssp.imcce.fr/webservices/skybot/api/conesearch.php"
#: The least distance (arcsec) at which a candidate is taken for a known body.
MATCH_ARCSEC = 5.0
#: At most this many arcsec of the ephemeris' own uncertainty widen the match.
MAX_UNCERTAINTY_ARCSEC = 60.0
#: The most SkyBoT is asked for (its cone's largest radius is 10 degrees).
MAX_RADIUS_DEG = 10.0


@dataclass(frozen=True)
class KnownBody:
    name: str
    number: int | None
    kind: str  # SkyBoT's class: "MB>Inner", "NEA>Apollo", "Comet", "Planet"...
    ra_deg: float
    dec_deg: float
    v_mag: float | None
    position_error_arcsec: float | None

    @property
    def match_radius_arcsec(self) -> float:
        spread = 3.0 * (self.position_error_arcsec or 0.0)
        return max(MATCH_ARCSEC, min(spread, MAX_UNCERTAINTY_ARCSEC))


@dataclass(frozen=True)
class SolarSystemCheck:
    status: Literal["checked", "offline", "unavailable"]
    bodies: tuple[KnownBody, ...]
    note: str | None

    def record(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "note": self.note,
            "bodies": [
                {
                    "name": b.name,
                    "number": b.number,
                    "kind": b.kind,
                    "ra_deg": round(b.ra_deg, 7),
                    "dec_deg": round(b.dec_deg, 7),
                    "v_mag": b.v_mag,
                    "position_error_arcsec": b.position_error_arcsec,
                }
                for b in self.bodies
            ],
        }


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return round(number, 4) if math.isfinite(number) else None


def known_bodies(
    ra_deg: float,
    dec_deg: float,
    radius_deg: float,
    epoch_mjd: float | None,
    *,
    online: bool,
    timeout_s: float,
    url: str = SKYBOT_URL,
) -> SolarSystemCheck:
    """The Solar System bodies SkyBoT predicts within the cone at the epoch (UTC MJD)."""
    if not online:
        return SolarSystemCheck(
            "offline",
            (),
            "Known Solar System objects were not checked: this server is offline "
            "(CPCS_CATALOG_ONLINE=false).",
        )
    if epoch_mjd is None or not math.isfinite(epoch_mjd):
        return SolarSystemCheck(
            "unavailable", (), "Known Solar System objects were not checked: the frame has no time."
        )
    try:
        table = _skybot_cone(ra_deg, dec_deg, radius_deg, epoch_mjd, timeout_s=timeout_s, url=url)
    except Exception as error:  # timeouts, refused connections, HTTP errors, unreadable answers
        text = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        timed_out = "timed out" in text.lower() or "timeout" in type(error).__name__.lower()
        detail = "timed out" if timed_out else text
        return SolarSystemCheck(
            "unavailable",
            (),
            f"Known Solar System objects were not checked: SkyBoT did not answer ({type(error).__name__}"
            f"{': ' + detail if detail else ''}).",
        )
    bodies = []
    for row in table:
        number = str(row["num"]).strip()
        bodies.append(
            KnownBody(
                name=str(row["name"]).strip(),
                number=int(number) if number.isdigit() else None,
                kind=str(row["class"]).strip(),
                ra_deg=float(row["_raj2000"]),
                dec_deg=float(row["_decj2000"]),
                v_mag=_number(row["magV"]),
                position_error_arcsec=_number(row["errpos"]),
            )
        )
    return SolarSystemCheck("checked", tuple(bodies), None)


def _skybot_cone(
    ra_deg: float, dec_deg: float, radius_deg: float, epoch_mjd: float, *, timeout_s: float, url: str
) -> Any:
    """SkyBoT's VOTable rows for the cone: the request astroquery's ``Skybot`` builds, sent here with
    our time limit and URL (astroquery's own request would wait its 300 s default, and its server
    setting accepts only the public URL)."""
    import io

    import requests
    from astropy import units as u
    from astropy.io.votable import parse_single_table
    from astropy.time import Time
    from astroquery.imcce import Skybot

    payload = Skybot.cone_search(
        (ra_deg, dec_deg),
        min(radius_deg, MAX_RADIUS_DEG) * u.deg,
        Time(epoch_mjd, format="mjd", scale="utc"),
        get_query_payload=True,
    )
    response = requests.get(url, params=payload, timeout=timeout_s)
    response.raise_for_status()
    if b"<TR>" not in response.content.upper().replace(b"VOT:TR>", b"TR>"):
        return []  # SkyBoT answers "no solar system object was found" without a table
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = parse_single_table(io.BytesIO(response.content)).to_table(use_names_over_ids=False)
    return table


def nearest_body(
    bodies: tuple[KnownBody, ...], ra_deg: float, dec_deg: float
) -> tuple[KnownBody, float] | None:
    """The body nearest to a position, with its distance (arcsec), if within its match radius."""
    best: tuple[KnownBody, float] | None = None
    for body in bodies:
        d_ra = (body.ra_deg - ra_deg + 180.0) % 360.0 - 180.0
        d_ra *= math.cos(math.radians(dec_deg))
        distance = 3600.0 * math.hypot(d_ra, body.dec_deg - dec_deg)
        if distance <= body.match_radius_arcsec and (best is None or distance < best[1]):
            best = (body, distance)
    return best


def tag_known_bodies(candidates: list[dict[str, Any]], check: SolarSystemCheck) -> None:
    """Mark the candidates (records with ``ra_deg``/``dec_deg``) that are known bodies: the reason
    ``known_solar_system_object``, ``known_object`` (name, number, class, distance), not accepted."""
    for candidate in candidates:
        match = nearest_body(check.bodies, float(candidate["ra_deg"]), float(candidate["dec_deg"]))
        if match is None:
            continue
        body, distance = match
        candidate["reasons"] = [*candidate.get("reasons", []), "known_solar_system_object"]
        candidate["accepted"] = False
        candidate["known_object"] = {
            "name": body.name,
            "number": body.number,
            "kind": body.kind,
            "distance_arcsec": round(distance, 2),
            "v_mag": body.v_mag,
        }


def frame_cone(wcs: Any, shape: tuple[int, ...]) -> tuple[float, float, float]:
    """(ra, dec, radius) in degrees of the cone around a frame: its centre to its farthest corner."""
    ny, nx = shape[:2]
    centre = wcs.pixel_to_world((nx - 1) / 2.0, (ny - 1) / 2.0)
    corners = wcs.pixel_to_world([0, nx - 1, 0, nx - 1], [0, 0, ny - 1, ny - 1])
    radius = float(max(centre.separation(corners).deg))
    return float(centre.ra.deg), float(centre.dec.deg), radius


def check_candidates(
    candidates: list[dict[str, Any]],
    cone: tuple[float, float, float],
    epoch_mjd: float | None,
    *,
    online: bool,
    timeout_s: float,
    url: str = SKYBOT_URL,
) -> dict[str, Any] | None:
    """Ask SkyBoT about the cone (ra, dec, radius in degrees) and mark the candidates that are known
    bodies; the check's record (status, note, bodies), or None when there is nothing to check."""
    if not candidates:
        return None
    ra, dec, radius = cone
    check = known_bodies(ra, dec, radius, epoch_mjd, online=online, timeout_s=timeout_s, url=url)
    tag_known_bodies(candidates, check)
    return check.record()
