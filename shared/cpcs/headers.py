"""Observation facts from FITS header cards (the LDAC image header of a catalogue, later images)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from astropy.time import Time

JD_TO_MJD = 2400000.5


@dataclass(frozen=True)
class HeaderFacts:
    mjd_mid: float | None  # mid-exposure
    exptime_s: float | None
    filter_name: str | None


def _number(value: object) -> float | None:
    try:
        number = float(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def header_facts(cards: Mapping[str, object]) -> HeaderFacts:
    """Mid-exposure MJD, exposure time and filter from common header keywords (None when absent).

    Start times come from MJD-OBS, JD, or DATE-OBS (with TIME-OBS when DATE-OBS has no time); the
    mid-exposure time adds half of EXPTIME/EXPOSURE. MJD-MID, when given, is used as it is.
    """
    upper = {key.upper(): value for key, value in cards.items()}
    exptime = next((_number(upper[k]) for k in ("EXPTIME", "EXPOSURE", "EXP_TIME") if k in upper), None)
    filter_name = next(
        (str(upper[k]).strip() for k in ("FILTER", "FILTNAM", "FILTER1") if str(upper.get(k, "")).strip()),
        None,
    )
    mid = _number(upper.get("MJD-MID"))
    if mid is not None:
        return HeaderFacts(mid, exptime, filter_name)
    start = _number(upper.get("MJD-OBS"))
    if start is None and (jd := _number(upper.get("JD"))) is not None:
        start = jd - JD_TO_MJD
    if start is None and (date := str(upper.get("DATE-OBS", "")).strip()):
        if "T" not in date and (clock := str(upper.get("TIME-OBS", "")).strip()):
            date = f"{date}T{clock}"
        try:
            start = float(Time(date, format="isot" if "T" in date else None, scale="utc").mjd)
        except ValueError:
            start = None
    if start is None:
        return HeaderFacts(None, exptime, filter_name)
    return HeaderFacts(start + (exptime or 0.0) / 2 / 86400, exptime, filter_name)
