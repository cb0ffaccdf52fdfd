"""Which reference survey covers which part of the sky.

The footprints live in ``footprints.json`` beside this module: per survey, a union of regions
(declination bands, RA/Dec boxes, circles, galactic boxes), each an envelope drawn generously
around the published footprint (the file says where each comes from). A survey the file does not
list is all-sky. Real MOCs of these surveys cannot be fetched offline, and an envelope errs on the
safe side: a field the survey has is never skipped.

:func:`covers` answers "may this survey have stars in this cone?". The cone service skips the
online fetch of a survey that cannot (``ConeService``), and the band choice records it as "not
tried: outside <survey> coverage" (:func:`cpcs.science.selection.not_tried_reason`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Footprint", "covers", "footprint", "outside_coverage"]

_FILE = Path(__file__).resolve().parent / "footprints.json"

# ICRS -> galactic rotation (the rows are the galactic x, y, z axes in ICRS), as astropy's
# Galactic frame defines it; checked against astropy in the tests.
_ICRS_TO_GALACTIC = np.array(
    [
        [-0.0548756577125917, -0.8734370519556163, -0.4838350736167155],
        [0.4941094371927275, -0.4448297212232952, 0.7469821839866676],
        [-0.8676661375596587, -0.1980763372730008, 0.4559838136873016],
    ]
)


def galactic(ra_deg: float, dec_deg: float) -> tuple[float, float]:
    """Galactic longitude in [-180, 180) and latitude (deg) of an ICRS position."""
    a, d = math.radians(ra_deg), math.radians(dec_deg)
    unit = np.array([math.cos(d) * math.cos(a), math.cos(d) * math.sin(a), math.sin(d)])
    x, y, z = _ICRS_TO_GALACTIC @ unit
    lon = math.degrees(math.atan2(y, x))
    lat = math.degrees(math.asin(max(-1.0, min(1.0, z))))
    return (lon + 180.0) % 360.0 - 180.0, lat


def _separation_deg(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    a1, d1, a2, d2 = map(math.radians, (ra1, dec1, ra2, dec2))
    cos_sep = math.sin(d1) * math.sin(d2) + math.cos(d1) * math.cos(d2) * math.cos(a1 - a2)
    return math.degrees(math.acos(max(-1.0, min(1.0, cos_sep))))


def _in_range(value: float, low: float, high: float, margin: float, period: float | None) -> bool:
    """``value`` within ``[low - margin, high + margin]``; on a circle of ``period`` a range with
    ``low > high`` wraps (RA 322.5 -> 60)."""
    if period is None:
        return low - margin <= value <= high + margin
    if high - low + 2 * margin >= period or (low > high and low - high <= 2 * margin):
        return True
    start = (low - margin) % period
    width = ((high - low) % period) + 2 * margin
    return (value - start) % period <= width


def _box_overlaps(
    lon: float, lat: float, radius: float, lon_range: tuple[float, float], lat_range: tuple[float, float]
) -> bool:
    """A cone touches a box of longitude x latitude (conservatively: the cone's bounding box)."""
    if not _in_range(lat, lat_range[0], lat_range[1], radius, None):
        return False
    extreme = min(89.999, abs(lat) + radius)
    if extreme >= 89.0:
        return True  # near a pole every longitude is within reach
    lon_margin = radius / math.cos(math.radians(extreme))
    return _in_range(lon, lon_range[0], lon_range[1], lon_margin, 360.0)


def _region_overlaps(region: dict[str, Any], ra: float, dec: float, radius: float) -> bool:
    kind = region["kind"]
    if kind == "dec_band":
        return _in_range(dec, float(region["dec_min"]), float(region["dec_max"]), radius, None)
    if kind == "box":
        return _box_overlaps(
            ra, dec, radius, (float(region["ra_min"]), float(region["ra_max"])),
            (float(region["dec_min"]), float(region["dec_max"])),
        )  # fmt: skip
    if kind == "circle":
        centre_distance = _separation_deg(ra, dec, float(region["ra"]), float(region["dec"]))
        return centre_distance <= float(region["radius"]) + radius
    if kind == "galactic_box":
        lon, lat = galactic(ra, dec)
        return _box_overlaps(
            lon, lat, radius, (float(region["l_min"]), float(region["l_max"])),
            (float(region["b_min"]), float(region["b_max"])),
        )  # fmt: skip
    raise ValueError(f"unknown footprint region kind {kind!r} in {_FILE.name}")


@dataclass(frozen=True)
class Footprint:
    """The sky a survey covers: a union of regions, with a one-line description and its source."""

    survey: str
    description: str
    source: str
    regions: tuple[dict[str, Any], ...]

    def overlaps(self, ra_deg: float, dec_deg: float, radius_deg: float) -> bool:
        """True when the cone may hold stars of the survey."""
        ra, dec, radius = float(ra_deg), float(dec_deg), float(radius_deg)
        return any(_region_overlaps(region, ra, dec, radius) for region in self.regions)


@lru_cache(maxsize=1)
def _footprints() -> dict[str, Footprint]:
    data = json.loads(_FILE.read_text(encoding="utf-8"))
    return {
        name: Footprint(name, entry["description"], entry["source"], tuple(entry["regions"]))
        for name, entry in data["surveys"].items()
    }


def footprint(survey: str) -> Footprint | None:
    """The footprint of a known survey (canonical name); ``None`` for an all-sky or unknown one."""
    return _footprints().get(survey)


def covers(survey: str, ra_deg: float, dec_deg: float, radius_deg: float) -> bool:
    """True when ``survey`` may have stars within the cone (always for an all-sky or site survey)."""
    fp = footprint(survey)
    return fp is None or fp.overlaps(ra_deg, dec_deg, radius_deg)


def outside_coverage(
    surveys: Iterable[str], ra_deg: float, dec_deg: float, radius_deg: float
) -> dict[str, Footprint]:
    """The surveys among ``surveys`` whose footprint the cone does not touch, with that footprint."""
    out: dict[str, Footprint] = {}
    for name in surveys:
        fp = footprint(name)
        if fp is not None and not fp.overlaps(ra_deg, dec_deg, radius_deg):
            out[name] = fp
    return out
