"""An observer's points in the AAVSO Extended File Format, and a checker of that format's rules.

The rules followed (AAVSO Extended File Format, version 1.2, aavso.org/aavso-extended-file-format):

* six parameter lines first, each starting with ``#``: ``#TYPE=EXTENDED``, ``#OBSCODE=`` (the code the
  AAVSO assigned to the observer), ``#SOFTWARE=`` (at most 255 characters), ``#DELIM=`` (one printable
  ASCII character used in no field, never ``#`` or a space), ``#DATE=`` (``JD``, ``HJD`` or ``EXCEL``) and
  ``#OBSTYPE=`` (``CCD``, ``DSLR``, ``PEP``...); more ``#`` lines are comments; no blank lines;
* then one observation a line, the fields ``NAME, DATE, MAG, MERR, FILT, TRANS, MTYPE, CNAME, CMAG,
  KNAME, KMAG, AMASS, GROUP, CHART, NOTES`` in that order, ``na`` where a value is unknown;
* ``DATE`` a Julian Date with its decimals; ``MAG`` with a decimal point, ``<`` in front for a
  fainter-than (the magnitude is then the limit); ``FILT`` one of the AAVSO's filter codes;
  ``TRANS`` ``YES`` or ``NO``; ``MTYPE`` ``STD`` (standardised, as an ensemble gives), ``DIF`` (needs
  ``CMAG``) or ``ABS``; ``CNAME`` ``ENSEMBLE`` when many comparison stars were used (``CMAG`` ``na``);
  the field length limits of :data:`FIELD_LIMITS`.

CPCS calibrates against an ensemble of reference-catalogue stars: ``MTYPE=STD``, ``CNAME=ENSEMBLE``,
``CHART`` the reference survey and release, ``TRANS=YES`` when a colour term was applied. ``FILT`` comes
from the band the point was calibrated to (the filter registry's standard band, :data:`AAVSO_FILTERS`);
an unfiltered frame calibrated to V or R is ``CV`` / ``CR``. Points of a band the AAVSO has no code
for are left out, and said so.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cpcs.lightcurve.exports import ExportRow
from cpcs.science.bands import STANDARD_BANDS, is_unfiltered

__all__ = [
    "AAVSO_FILTERS",
    "FIELDS",
    "FIELD_LIMITS",
    "AavsoReport",
    "aavso_filter",
    "aavso_report",
    "check_aavso_report",
    "valid_obscode",
]

#: The data fields, in their order.
FIELDS = (
    "NAME", "DATE", "MAG", "MERR", "FILT", "TRANS", "MTYPE", "CNAME",
    "CMAG", "KNAME", "KMAG", "AMASS", "GROUP", "CHART", "NOTES",
)  # fmt: skip

#: Longest value of each field (characters).
FIELD_LIMITS = {
    "NAME": 30, "DATE": 16, "MAG": 8, "MERR": 6, "FILT": 5, "TRANS": 3, "MTYPE": 3, "CNAME": 20,
    "CMAG": 8, "KNAME": 20, "KMAG": 8, "AMASS": 7, "GROUP": 5, "CHART": 20, "NOTES": 100,
}  # fmt: skip

#: Our standard bands (cpcs.science.bands) and the AAVSO's filter code for each.
AAVSO_FILTERS: dict[str, str] = {
    "U": "U", "B": "B", "V": "V", "R": "R", "I": "I",
    "u": "SU", "g": "SG", "r": "SR", "i": "SI", "z": "SZ",
    "J": "J", "H": "H", "K": "K",
}  # fmt: skip

#: Codes of unfiltered data calibrated to comparison stars of one band.
_UNFILTERED = {"V": "CV", "R": "CR"}

#: Every code the AAVSO lists (the checker accepts these).
_AAVSO_CODES = frozenset(
    {*AAVSO_FILTERS.values(), "CV", "CR", "CBB", "TG", "TB", "TR", "STU", "STV", "STB", "STY", "STHBW",
     "STHBN", "MA", "MB", "MI", "HA", "HAC"}
)  # fmt: skip

_DATE_TYPES = ("JD", "HJD", "EXCEL")
_OBSTYPES = ("CCD", "DSLR", "PEP", "CMOS", "VISUAL", "PTG", "MIX")
_REQUIRED = ("TYPE", "OBSCODE", "SOFTWARE", "DELIM", "DATE", "OBSTYPE")
_OBSCODE = re.compile(r"^[A-Z0-9]{1,10}$")
_NUMBER = re.compile(r"^-?\d+\.\d+$")
MJD_TO_JD = 2400000.5
DELIMITER = ","


def valid_obscode(code: str) -> bool:
    """An AAVSO observer code: letters and digits (upper case), at most 10."""
    return bool(_OBSCODE.match(code))


def aavso_filter(declared: str | None, band: str) -> str | None:
    """The AAVSO filter code of a point calibrated to ``band``; None where the AAVSO has none."""
    standard = "K" if band == "Ks" else band
    if standard not in STANDARD_BANDS:
        return None
    if is_unfiltered(declared):
        return _UNFILTERED.get(standard)
    return AAVSO_FILTERS.get(standard)


@dataclass(frozen=True)
class AavsoReport:
    """The file's text, and the points left out with the reason."""

    text: str
    n_observations: int
    skipped: tuple[tuple[int, str], ...]


def _field(text: str, name: str) -> str:
    """``text`` fit for one field: no delimiter, no ``#`` at the start, within the length limit."""
    cleaned = re.sub(r"[,#\r\n\t]", " ", text).strip() or "na"
    return cleaned[: FIELD_LIMITS[name]]


def _star_name(alert_name: str) -> str:
    return alert_name.removeprefix("ivo://")


def _chart(row: ExportRow) -> str:
    release = row.calibration.catalogue_release if row.calibration is not None else None
    return f"{row.survey} {release}" if release else row.survey


def aavso_report(rows: Sequence[ExportRow], obscode: str, software: str) -> AavsoReport:
    """The AAVSO Extended File of ``rows`` (one observer's points) under ``obscode``.

    Raises
    ------
    ValueError
        ``obscode`` is not an AAVSO observer code.
    """
    if not valid_obscode(obscode):
        raise ValueError(f"not an AAVSO observer code: {obscode!r}")
    lines = [
        "#TYPE=EXTENDED",
        f"#OBSCODE={obscode}",
        f"#SOFTWARE={software[:255]}",
        f"#DELIM={DELIMITER}",
        "#DATE=JD",
        "#OBSTYPE=CCD",
        "#" + DELIMITER.join(FIELDS),
    ]
    skipped: list[tuple[int, str]] = []
    for row in rows:
        code = aavso_filter(row.filter_declared, row.band)
        if code is None:
            skipped.append((row.point_id, f"no AAVSO filter code for {row.survey} {row.band}"))
            continue
        if row.mjd is None:
            skipped.append((row.point_id, "no date"))
            continue
        magnitude = row.limit_mag if row.is_upper_limit and row.limit_mag is not None else row.mag
        if not math.isfinite(magnitude):
            skipped.append((row.point_id, "no magnitude"))
            continue
        cal = row.calibration
        transformed = cal is not None and cal.colour_term is not None
        notes = f"CPCS point {row.point_id}; {row.filter_note}"
        if cal is not None:
            notes += f"; ensemble of {cal.n_stars} {row.survey} stars"
        values = {
            "NAME": _field(_star_name(row.alert_name), "NAME"),
            "DATE": f"{row.mjd + MJD_TO_JD:.5f}",
            "MAG": ("<" if row.is_upper_limit else "") + f"{magnitude:.3f}",
            "MERR": "na" if row.is_upper_limit else f"{min(row.mag_err_total, 9.999):.3f}",
            "FILT": code,
            "TRANS": "YES" if transformed else "NO",
            "MTYPE": "STD",
            "CNAME": "ENSEMBLE",
            "CMAG": "na",
            "KNAME": "na",
            "KMAG": "na",
            "AMASS": "na",
            "GROUP": "na",
            "CHART": _field(_chart(row), "CHART"),
            "NOTES": _field(notes, "NOTES"),
        }
        lines.append(DELIMITER.join(values[name] for name in FIELDS))
    return AavsoReport("\n".join(lines) + "\n", len(lines) - 7, tuple(skipped))


def _check_line(values: dict[str, str], where: str) -> list[str]:
    problems = [
        f"{where}: {name} longer than {limit} characters"
        for name, limit in FIELD_LIMITS.items()
        if len(values[name]) > limit
    ]
    if not values["NAME"] or values["NAME"] == "na":
        problems.append(f"{where}: NAME is required")
    date = values["DATE"]
    if not _NUMBER.match(date) or not 2_000_000 < float(date) < 3_000_000:
        problems.append(f"{where}: DATE {date!r} is not a Julian Date with decimals")
    magnitude = values["MAG"].removeprefix("<")
    if not _NUMBER.match(magnitude):
        problems.append(f"{where}: MAG {values['MAG']!r} needs a decimal point ('<' only in front)")
    if values["MERR"] != "na" and not _NUMBER.match(values["MERR"]):
        problems.append(f"{where}: MERR {values['MERR']!r} is neither a number nor na")
    if values["FILT"] not in _AAVSO_CODES:
        problems.append(f"{where}: FILT {values['FILT']!r} is not an AAVSO filter code")
    if values["TRANS"] not in ("YES", "NO"):
        problems.append(f"{where}: TRANS must be YES or NO")
    if values["MTYPE"] not in ("STD", "DIF", "ABS"):
        problems.append(f"{where}: MTYPE must be STD, DIF or ABS")
    if values["MTYPE"] == "DIF" and values["CMAG"] == "na":
        problems.append(f"{where}: a differential magnitude needs CMAG")
    if values["CNAME"] == "ENSEMBLE" and values["CMAG"] != "na":
        problems.append(f"{where}: an ENSEMBLE comparison has CMAG na")
    for name in ("CMAG", "KMAG", "AMASS"):
        if values[name] != "na" and not _NUMBER.match(values[name]):
            problems.append(f"{where}: {name} {values[name]!r} is neither a number nor na")
    return problems


def check_aavso_report(text: str) -> list[str]:
    """What in ``text`` breaks the AAVSO Extended File Format's rules (empty: none)."""
    problems: list[str] = []
    parameters: dict[str, str] = {}
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines = lines[:-1]
    data_started = False
    delimiter = None
    for number, line in enumerate(lines, start=1):
        where = f"line {number}"
        if not line.strip():
            problems.append(f"{where}: blank lines must be commented out with #")
            continue
        if line.startswith("#"):
            key, sep, value = line[1:].partition("=")
            if sep and key.strip().upper() in _REQUIRED:
                if data_started and key.strip().upper() not in ("OBSCODE", "DATE"):
                    problems.append(f"{where}: {key} may not change after the data start")
                parameters[key.strip().upper()] = value
            continue
        if not data_started:
            data_started = True
            missing = [name for name in _REQUIRED if name not in parameters]
            if missing:
                problems.append(f"{where}: missing parameters before the data: {', '.join(missing)}")
            delimiter = parameters.get("DELIM", "")
            if len(delimiter) != 1 or delimiter in "# " or not 32 <= ord(delimiter) <= 126:
                problems.append(f"DELIM {delimiter!r} must be one printable character, not # or space")
                return problems
            if parameters.get("TYPE", "").upper() != "EXTENDED":
                problems.append("TYPE must be EXTENDED")
            if parameters.get("DATE", "").upper() not in _DATE_TYPES:
                problems.append(f"DATE must be one of {', '.join(_DATE_TYPES)}")
            if parameters.get("OBSTYPE", "").upper() not in _OBSTYPES:
                problems.append(f"OBSTYPE must be one of {', '.join(_OBSTYPES)}")
            if not valid_obscode(parameters.get("OBSCODE", "")):
                problems.append("OBSCODE must be the observer's AAVSO code")
            if len(parameters.get("SOFTWARE", "")) > 255:
                problems.append("SOFTWARE longer than 255 characters")
        assert delimiter is not None
        fields = line.split(delimiter)
        if len(fields) != len(FIELDS):
            problems.append(f"{where}: {len(fields)} fields, not {len(FIELDS)} (a delimiter inside a field?)")
            continue
        problems.extend(_check_line(dict(zip(FIELDS, fields, strict=True)), where))
    if not data_started:
        problems.append("no observations")
    return problems
