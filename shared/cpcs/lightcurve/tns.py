"""An alert's points as a TNS bulk report (photometry), and a checker of the report's shape.

TNS (the IAU Transient Name Server) takes photometry in its bulk report: ``POST <TNS>/api/set/bulk-report``
with the form fields ``api_key`` (the bot's key) and ``data`` (the report as JSON), and the header
``User-Agent: tns_marker{"tns_id": <bot id>, "type": "bot", "name": "<bot name>"}``. The report is

``{"at_report": {"0": {ra, dec, reporting_group_id, discovery_data_source_id, reporter,
discovery_datetime, at_type, internal_name, non_detection, photometry: {"photometry_group": {"0": ...}}}}}``

with one ``photometry_group`` entry a point: ``obsdate`` (UTC, ``YYYY-MM-DD HH:MM:SS.sss``), ``flux``
and ``flux_error`` (magnitudes here; empty for a non-detection), ``limiting_flux``, ``flux_units``,
``filter_value``, ``instrument_value``, ``observer`` and ``comments``. ``non_detection`` is the last
upper limit before the first detection (or, with none, an archival remark). TNS names filters,
instruments and units by its own numeric ids (its ``/api/values`` lists); the tables below are the ones
CPCS needs, taken from that list:

* :data:`TNS_FILTER_IDS`, by the sncosmo bandpass of the band a point is calibrated to
  (``cpcs.science.bands.export_band``): Johnson-Cousins U B V R I = 10-14, Sloan u g r i z = 20-24,
  PS1 g r i z = 56-59 and y = 25, Gaia G = 75. A band TNS has no id for (2MASS) is left out, said so.
  Checked against published copies of TNS's list: 1 (Clear), 10-14, 20-24 and 25 (y-P1); the PS1
  g-z and Gaia G ids were not found in a public copy here and should be checked against the live
  ``/api/values`` before a bot reports those bands.
  An unfiltered frame is reported in the band it was calibrated to, its filter in the comments.
* :data:`TNS_FLUX_UNITS`: AB magnitudes = 1, Vega magnitudes = 3.
* instruments: CPCS's observers' telescopes are mostly not in TNS's list; the site maps observatory
  names to TNS instrument ids (``CPCS_TNS_INSTRUMENT_IDS``), others are 0, "Other", with the
  observatory named in the comments.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from astropy.time import Time

from cpcs.lightcurve.exports import ExportRow

__all__ = [
    "TNS_FILTER_IDS",
    "TNS_FLUX_UNITS",
    "TnsBot",
    "TnsReport",
    "check_tns_report",
    "tns_marker",
    "tns_report",
]

#: sncosmo bandpass -> TNS filter id.
TNS_FILTER_IDS: dict[str, int] = {
    "bessellux": 10, "bessellb": 11, "bessellv": 12, "bessellr": 13, "besselli": 14,
    "sdssu": 20, "sdssg": 21, "sdssr": 22, "sdssi": 23, "sdssz": 24,
    "ps1::g": 56, "ps1::r": 57, "ps1::i": 58, "ps1::z": 59, "ps1::y": 25,
    "gaia::g": 75,
}  # fmt: skip

#: sncosmo magnitude system -> TNS flux unit id.
TNS_FLUX_UNITS: dict[str, int] = {"ab": 1, "vega": 3}

#: TNS's "Other" (instrument, archive).
TNS_OTHER = 0
#: TNS's AT type of a plain transient (PSN).
AT_TYPE_PSN = 1

_ENTRY_KEYS = frozenset(
    {"obsdate", "flux", "flux_error", "limiting_flux", "flux_units", "filter_value", "instrument_value",
     "observer", "comments"}
)  # fmt: skip
_REPORT_KEYS = frozenset(
    {"ra", "dec", "reporting_group_id", "discovery_data_source_id", "reporter", "discovery_datetime",
     "at_type", "internal_name", "non_detection", "photometry"}
)  # fmt: skip


@dataclass(frozen=True)
class TnsBot:
    """Who reports: the bot and its group at TNS, and the site's instrument ids."""

    bot_id: int
    bot_name: str
    reporting_group_id: int
    data_source_id: int
    instrument_ids: Mapping[str, int] = field(default_factory=dict)


def tns_marker(bot: TnsBot) -> str:
    """The ``User-Agent`` TNS wants from a bot."""
    return "tns_marker" + json.dumps({"tns_id": bot.bot_id, "type": "bot", "name": bot.bot_name})


@dataclass(frozen=True)
class TnsReport:
    """The bulk report, and the points left out with the reason."""

    report: dict[str, Any]
    n_points: int
    skipped: tuple[tuple[int, str], ...]


def _obsdate(mjd: float) -> str:
    return str(Time(mjd, format="mjd", scale="utc").iso)


def _mag(value: float) -> str:
    return f"{value:.3f}"


def _entry(row: ExportRow, bot: TnsBot) -> dict[str, Any]:
    assert row.mjd is not None and row.sncosmo_filter is not None and row.magsys is not None
    instrument = bot.instrument_ids.get(row.observatory, TNS_OTHER)
    limit = row.limit_mag if row.limit_mag is not None else (row.mag if row.is_upper_limit else None)
    comments = f"{row.filter_note}; {row.observatory}; CPCS point {row.point_id}, {row.calibration_url}"
    return {
        "obsdate": _obsdate(row.mjd),
        "flux": "" if row.is_upper_limit else _mag(row.mag),
        "flux_error": "" if row.is_upper_limit else _mag(row.mag_err_total),
        "limiting_flux": "" if limit is None else _mag(limit),
        "flux_units": TNS_FLUX_UNITS[row.magsys],
        "filter_value": TNS_FILTER_IDS[row.sncosmo_filter],
        "instrument_value": instrument,
        "observer": row.observer,
        "comments": comments,
    }


def tns_report(
    alert_name: str, ra_deg: float, dec_deg: float, rows: Sequence[ExportRow], bot: TnsBot
) -> TnsReport:
    """The TNS bulk report of ``rows`` (in time order), detections and non-detections.

    Raises
    ------
    ValueError
        No row can be reported (no detection with a TNS filter and a date).
    """
    skipped: list[tuple[int, str]] = []
    usable: list[ExportRow] = []
    for row in rows:
        if row.mjd is None:
            skipped.append((row.point_id, "no date"))
        elif row.sncosmo_filter not in TNS_FILTER_IDS or row.magsys not in TNS_FLUX_UNITS:
            skipped.append((row.point_id, f"no TNS filter id for {row.survey} {row.band}"))
        elif not math.isfinite(row.mag):
            skipped.append((row.point_id, "no magnitude"))
        else:
            usable.append(row)
    usable.sort(key=lambda row: (row.mjd, row.point_id))
    detections = [row for row in usable if not row.is_upper_limit]
    if not detections:
        raise ValueError("TNS takes photometry with at least one detection; these points have none")
    first = detections[0]
    before = [row for row in usable if row.is_upper_limit and row.mjd is not None and first.mjd is not None
              and row.mjd < first.mjd]  # fmt: skip
    non_detection: dict[str, Any]
    if before:
        non_detection = _entry(before[-1], bot)
        del non_detection["flux"], non_detection["flux_error"]
        reported = [row for row in usable if row is not before[-1]]
    else:
        non_detection = {
            "archiveid": TNS_OTHER,
            "archival_remarks": "no CPCS non-detection before these points",
        }
        reported = usable
    observers = sorted({row.observer for row in usable})
    assert first.mjd is not None
    report = {
        "ra": {"value": ra_deg},
        "dec": {"value": dec_deg},
        "reporting_group_id": bot.reporting_group_id,
        "discovery_data_source_id": bot.data_source_id,
        "reporter": f"{', '.join(observers)} (via CPCS)",
        "discovery_datetime": _obsdate(first.mjd),
        "at_type": AT_TYPE_PSN,
        "internal_name": alert_name.removeprefix("ivo://"),
        "non_detection": non_detection,
        "photometry": {"photometry_group": {str(k): _entry(row, bot) for k, row in enumerate(reported)}},
    }
    return TnsReport({"at_report": {"0": report}}, len(usable), tuple(skipped))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _magnitude_text(value: Any) -> bool:
    try:
        return isinstance(value, str) and math.isfinite(float(value))
    except ValueError:
        return False


def _check_entry(entry: Any, where: str, *, detection: bool | None) -> list[str]:
    if not isinstance(entry, dict):
        return [f"{where}: not an object"]
    problems = [f"{where}: unknown key {key!r}" for key in entry if key not in _ENTRY_KEYS]
    required = {"obsdate", "limiting_flux", "flux_units", "filter_value", "instrument_value"}
    problems += [f"{where}: {key} missing" for key in sorted(required - entry.keys())]
    if entry.get("filter_value") not in TNS_FILTER_IDS.values():
        problems.append(f"{where}: filter_value {entry.get('filter_value')!r} is no TNS filter id")
    if entry.get("flux_units") not in TNS_FLUX_UNITS.values():
        problems.append(f"{where}: flux_units {entry.get('flux_units')!r} is no magnitude unit id")
    if not isinstance(entry.get("instrument_value"), int):
        problems.append(f"{where}: instrument_value must be a TNS instrument id")
    try:
        Time(entry.get("obsdate"), format="iso", scale="utc")
    except ValueError:
        problems.append(f"{where}: obsdate {entry.get('obsdate')!r} is not YYYY-MM-DD HH:MM:SS")
    flux = entry.get("flux", "")
    if detection is None:
        detection = flux != ""
    if detection and not (_magnitude_text(flux) and _magnitude_text(entry.get("flux_error"))):
        problems.append(f"{where}: a detection needs flux and flux_error")
    if not detection and not _magnitude_text(entry.get("limiting_flux")):
        problems.append(f"{where}: a non-detection needs limiting_flux")
    return problems


def check_tns_report(report: Any) -> list[str]:
    """What in ``report`` breaks the bulk report's photometry shape (empty: none)."""
    if (
        not isinstance(report, dict)
        or set(report) != {"at_report"}
        or not isinstance(report["at_report"], dict)
    ):
        return ['the report is {"at_report": {"0": {...}}}']
    problems: list[str] = []
    for key, at in report["at_report"].items():
        where = f"at_report[{key}]"
        if not isinstance(at, dict):
            problems.append(f"{where}: not an object")
            continue
        problems += [f"{where}: {name} missing" for name in sorted(_REPORT_KEYS - at.keys())]
        problems += [f"{where}: unknown key {name!r}" for name in sorted(at.keys() - _REPORT_KEYS)]
        for axis, low, high in (("ra", 0.0, 360.0), ("dec", -90.0, 90.0)):
            value = at.get(axis, {}).get("value") if isinstance(at.get(axis), dict) else None
            if not _number(value) or not low <= float(value or 0.0) <= high:
                problems.append(f"{where}: {axis}.value must be degrees in [{low}, {high}]")
        for name in ("reporting_group_id", "discovery_data_source_id", "at_type"):
            if not isinstance(at.get(name), int):
                problems.append(f"{where}: {name} must be a TNS id")
        if not isinstance(at.get("reporter"), str) or not at.get("reporter"):
            problems.append(f"{where}: reporter must be named")
        non_detection = at.get("non_detection")
        if isinstance(non_detection, dict) and "archiveid" in non_detection:
            if not non_detection.get("archival_remarks"):
                problems.append(f"{where}: an archival non-detection needs archival_remarks")
        else:
            problems += _check_entry(non_detection, f"{where}.non_detection", detection=False)
        group = (
            at.get("photometry", {}).get("photometry_group")
            if isinstance(at.get("photometry"), dict)
            else None
        )
        if not isinstance(group, dict) or not group:
            problems.append(f"{where}: photometry.photometry_group must hold the points")
            continue
        for index, entry in group.items():
            problems += _check_entry(entry, f"{where}.photometry[{index}]", detection=None)
    return problems
