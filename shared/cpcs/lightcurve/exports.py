"""An alert's light curve in the formats it leaves CPCS in: pure functions, points in, bytes or dicts out.

Formats
-------
``json``
    ``{"alert": {...}, "units": {...}, "points": [{...}, ...]}``; every point with the columns below and
    the facts of its calibration.
``csv``, ``ecsv``, ``votable``
    One row a point (and a second, ``measurement=difference``, for a point also measured on a
    template-subtracted image), the columns of :data:`COLUMNS` (astropy writes and reads them back: ECSV and
    VOTable keep units (mag, uJy, d), descriptions and masks; CSV leaves missing values empty).
    In CSV, a text cell (filter, comment, observer, observatory...) that a spreadsheet would run as a
    formula, one starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return, is written with
    a leading single quote (OWASP's advice against CSV injection); numbers, negative ones included,
    and text that reads as a number (``-1.5``) are written unchanged. ECSV and VOTable carry text
    as it was sent: they are data formats, read by astropy, TOPCAT and the like, not spreadsheets.
``legacy``
    CPCS's parallel arrays (``/followup/get_alert_lc_data``): ``magerr = -1`` marks an upper limit.
``skyportal-mag``, ``skyportal-flux``
    The body of a SkyPortal ``POST /api/photometry`` in its "flexible" columnar form, one list entry
    a point (:class:`SkyPortalPhotometry` also keeps the one-dict-a-point packets).

Filter names
------------
A point is calibrated to a reference survey's band; ``cpcs.science.bands.export_band`` names it:
sncosmo bandpass (``bessellv``, ``sdssr``, ``ps1::r``, ``gaia::g``...) and magnitude system (``vega``
or ``ab``). Points of a band with no sncosmo name are left out of the SkyPortal exports (and reported
as skipped); the observer's filter (``Clear``, ``Rc``...) travels as ``filter_declared`` and, for
SkyPortal, in ``altdata``.

SkyPortal schema facts relied on
--------------------------------
Read in skyportal/skyportal: ``skyportal/schema.py`` (``PhotBaseFlexible``, ``PhotMagFlexible``,
``PhotFluxFlexible``, ``PhotometryMag``, ``PhotometryFlux``; commits 0074ff5055dd and 37547e103fc9),
``skyportal/enum_types.py`` (commit 03ccbd66f503) and ``skyportal/handlers/api/photometry.py``
(``standardize_photometry_data``, the current asynchronous version):

* both forms require ``obj_id``, ``instrument_id`` (SkyPortal's own instrument id, an integer),
  ``mjd``, ``filter`` and ``magsys``, none of them null; ``filter`` must be one of sncosmo's registered
  bandpass names (``ALLOWED_BANDPASSES`` is built from sncosmo's bandpass registry, plus a
  site's additional bandpasses) and must be among the instrument's filters; ``magsys`` one of
  sncosmo's magnitude systems (``ALLOWED_MAGSYSTEMS``: ``ab``, ``vega``, ...);
* mag form: ``limiting_mag`` is required and never null; ``mag`` and ``magerr`` are both null (a
  non-detection) or both set; ``limiting_mag_nsigma`` (optional) says what the limit means;
* flux form: ``fluxerr`` and ``zp`` are required (``m = -2.5 log10(flux) + zp`` in ``magsys``); ``flux``
  is null for a non-detection, whose limit SkyPortal derives from ``fluxerr`` at its own configured
  n-sigma;
* optional: ``origin`` (part of SkyPortal's duplicate key), ``altdata`` (a dict, or in the columnar
  form a list of dicts, one a point; a dict goes through a pandas DataFrame, so its values must be
  scalars), ``group_ids`` (a list, or ``"all"``; not broadcast), ``ra``, ``dec``, ``assignment_id``;
  unknown keys are refused (marshmallow's default), so nothing else is sent;
* the columnar form: every field a scalar (broadcast) or a list of one length; SkyPortal stores fluxes
  as microjansky AB (``PHOT_ZP = 23.9``, ``PHOT_SYS = "ab"``).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import astropy.units as u
import numpy as np
from astropy.io.votable import from_table, writeto
from astropy.io.votable.tree import Param
from astropy.table import Column, MaskedColumn, Table

from cpcs.schemas import AlertOut, CalibrationOut, DifferenceOut, PointOut
from cpcs.science.bands import describe_calibrated_filter, export_band, is_unfiltered
from cpcs.science.photometric_systems import AB_ZERO_POINT_UJY_MAG
from cpcs.science.target import LIMIT_SNR

__all__ = [
    "COLUMNS",
    "FORMATS",
    "ExportFormat",
    "ExportRow",
    "PointDetails",
    "Rendered",
    "SkippedPoint",
    "SkyPortalOptions",
    "SkyPortalPhotometry",
    "calibration_link",
    "export_rows",
    "legacy_arrays",
    "render",
    "skyportal_obj_id",
    "skyportal_packet",
    "skyportal_photometry",
    "to_csv",
    "to_ecsv",
    "to_json",
    "to_table",
    "to_votable",
]

FormatName = Literal["json", "csv", "ecsv", "votable", "legacy", "skyportal-mag", "skyportal-flux"]

#: Magnitude errors are 1.0857 / (S/N): the S/N of a detection from its measurement error.
_MAG_ERR_TIMES_SNR = 2.5 / math.log(10.0)


@dataclass(frozen=True)
class ExportFormat:
    """One export format: its media type and file name extension."""

    name: str
    media_type: str
    extension: str
    description: str


FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat("json", "application/json", "json", "every point with its calibration facts"),
        ExportFormat(
            "csv",
            "text/csv; charset=utf-8",
            "csv",
            "one row a point; text that would start a formula gets a '",
        ),
        # ECSV has no registered media type; plain text, as the observations' source tables.
        ExportFormat("ecsv", "text/plain; charset=utf-8", "ecsv", "one row a point, with units"),
        # The media type the IVOA VOTable recommendation gives.
        ExportFormat("votable", "application/x-votable+xml", "vot", "one row a point, with units"),
        ExportFormat("legacy", "application/json", "json", "CPCS's parallel arrays"),
        ExportFormat("skyportal-mag", "application/json", "json", "SkyPortal photometry, magnitudes"),
        ExportFormat("skyportal-flux", "application/json", "json", "SkyPortal photometry, fluxes"),
    )
}


@dataclass(frozen=True)
class PointDetails:
    """What a point's :class:`~cpcs.schemas.PointOut` does not carry, looked up by the caller.

    Attributes
    ----------
    filter_declared : str or None
        The observer's filter name (``"Clear"``, ``"Rc"``...), as uploaded.
    calibration : CalibrationOut or None
        The calibration version the point comes from.
    observer_id, alert_ra_deg, alert_dec_deg : optional
        The uploader's account id and the alert's position (the webhook documents carry them).
    """

    filter_declared: str | None = None
    calibration: CalibrationOut | None = None
    observer_id: int | None = None
    alert_ra_deg: float | None = None
    alert_dec_deg: float | None = None


@dataclass(frozen=True)
class ExportRow:
    """One point as every export sees it (the table columns, in order, then the calibration)."""

    point_id: int
    alert_id: int
    alert_name: str
    observation_id: int
    calibration_id: int
    observer: str
    observatory: str
    mjd: float | None
    filter_declared: str | None
    survey: str
    band: str
    sncosmo_filter: str | None
    magsys: str | None
    filter_note: str
    mag: float
    magerr: float
    caliberr: float
    mag_err_total: float
    is_upper_limit: bool
    limit_mag: float | None
    flux_ujy: float | None
    flux_err_ujy: float | None
    calibration_url: str
    created_at: str
    measurement: str = "direct"  # or "difference": measured on the template-subtracted image
    template_id: int | None = None
    observer_id: int | None = None
    alert_ra_deg: float | None = None
    alert_dec_deg: float | None = None
    calibration: CalibrationOut | None = field(default=None, compare=False, repr=False)

    def values(self) -> dict[str, Any]:
        """The column values by name (without the calibration)."""
        return {name: getattr(self, name) for name in COLUMNS}


@dataclass(frozen=True)
class _ColumnSpec:
    kind: Literal["int", "float", "str", "bool"]
    unit: u.UnitBase | None
    description: str
    ucd: str | None = None


#: The table columns: type, unit, description and VOTable UCD.
COLUMNS: dict[str, _ColumnSpec] = {
    "point_id": _ColumnSpec("int", None, "CPCS id of the point", "meta.id;meta.main"),
    "alert_id": _ColumnSpec("int", None, "CPCS id of the alert", "meta.id"),
    "alert_name": _ColumnSpec("str", None, "Name of the alert (ivo://...)", "meta.id"),
    "observation_id": _ColumnSpec("int", None, "CPCS id of the observation (the upload)", "meta.id"),
    "calibration_id": _ColumnSpec("int", None, "CPCS id of the calibration version", "meta.id"),
    "observer": _ColumnSpec("str", None, "Observer who uploaded the data", "meta.curation"),
    "observatory": _ColumnSpec("str", None, "Observatory of the observer", "instr.obsty"),
    "mjd": _ColumnSpec("float", u.d, "Modified Julian Date of the observation", "time.epoch"),
    "filter_declared": _ColumnSpec("str", None, "Filter the observer declared", "instr.filter"),
    "survey": _ColumnSpec("str", None, "Reference survey calibrated to", "meta.ref"),
    "band": _ColumnSpec("str", None, "Band of the reference survey calibrated to", "instr.bandpass"),
    "sncosmo_filter": _ColumnSpec("str", None, "sncosmo bandpass of the calibrated band", "instr.bandpass"),
    "magsys": _ColumnSpec("str", None, "Magnitude system of mag and limit_mag (sncosmo name)"),
    "filter_note": _ColumnSpec("str", None, "Observer's filter and the band it was calibrated to"),
    "mag": _ColumnSpec("float", u.mag, "Calibrated magnitude (the limit for an upper limit)", "phot.mag"),
    "magerr": _ColumnSpec("float", u.mag, "Measurement error of mag", "stat.error;phot.mag"),
    "caliberr": _ColumnSpec(
        "float", u.mag, "Calibration error of mag (zero point, scatter, colour term)", "stat.error;phot.mag"
    ),
    "mag_err_total": _ColumnSpec("float", u.mag, "Total error of mag", "stat.error;phot.mag"),
    "is_upper_limit": _ColumnSpec("bool", None, "True: the target was not detected, mag is a limit"),
    "limit_mag": _ColumnSpec("float", u.mag, "5-sigma limiting magnitude of the image at the target"),
    "flux_ujy": _ColumnSpec("float", u.uJy, "Flux density on the AB scale (empty for upper limits)"),
    "flux_err_ujy": _ColumnSpec(
        "float", u.uJy, "1-sigma error of the flux (the noise for upper limits)", "stat.error"
    ),
    "calibration_url": _ColumnSpec("str", None, "The calibration record of the point", "meta.ref.url"),
    "created_at": _ColumnSpec("str", None, "When the point was calibrated (UTC, ISO 8601)", "time.creation"),
    "measurement": _ColumnSpec(
        "str", None, "direct (the frame) or difference (the frame minus a template of the field)", "meta.code"
    ),
    "template_id": _ColumnSpec("int", None, "CPCS id of the template of a difference measurement", "meta.id"),
}


def calibration_link(observation_id: int, base_url: str = "") -> str:
    """The address of a point's calibration record (its observation, with the calibration)."""
    return f"{base_url.rstrip('/')}/api/v1/observations/{observation_id}"


def finite(value: float | None) -> float | None:
    """``value`` as a float, or ``None`` when it is missing, NaN or infinite (JSON has no NaN)."""
    return float(value) if value is not None and math.isfinite(value) else None


def export_rows(
    points: Sequence[PointOut],
    details: Mapping[int, PointDetails] | None = None,
    *,
    base_url: str = "",
    with_difference: bool = False,
) -> list[ExportRow]:
    """The rows of the exports, in the order of ``points``.

    With ``with_difference``, a point measured on a difference image too (a template subtracted) is
    followed by a second row, ``measurement="difference"``, on the same calibration.

    Parameters
    ----------
    points : sequence of PointOut
        The alert's points (``cpcs.domain.points.light_curve_points``).
    details : mapping of point id to PointDetails, optional
        The observer's filter and the calibration of each point, when known.
    base_url : str, optional
        Prefix of the calibration links (``"https://cpcs.example.org"``); relative links without.
    """
    rows = []
    for p in points:
        extra = (details or {}).get(p.id, PointDetails())
        named = export_band(p.survey, p.band)
        rows.append(
            ExportRow(
                point_id=p.id,
                alert_id=p.alert_id,
                alert_name=p.alert_name,
                observation_id=p.observation_id,
                calibration_id=p.calibration_id,
                observer=p.observer,
                observatory=p.observatory,
                mjd=finite(p.mjd),
                filter_declared=extra.filter_declared or None,
                survey=p.survey,
                band=p.band,
                sncosmo_filter=named.sncosmo,
                magsys=named.magsys,
                filter_note=describe_calibrated_filter(extra.filter_declared, p.survey, p.band),
                mag=p.mag,
                magerr=p.magerr,
                caliberr=p.caliberr,
                mag_err_total=p.mag_err_total,
                is_upper_limit=p.is_upper_limit,
                limit_mag=finite(p.limit_mag),
                flux_ujy=finite(p.flux_ujy),
                flux_err_ujy=finite(p.flux_err_ujy),
                calibration_url=calibration_link(p.observation_id, base_url),
                created_at=p.created_at.isoformat(),
                observer_id=extra.observer_id,
                alert_ra_deg=extra.alert_ra_deg,
                alert_dec_deg=extra.alert_dec_deg,
                calibration=extra.calibration,
            )
        )
        if with_difference and p.difference is not None and p.difference.mag is not None:
            rows.append(_difference_row(rows[-1], p.difference))
    return rows


def _difference_row(direct: ExportRow, difference: DifferenceOut) -> ExportRow:
    """The difference measurement of a point as a row of its own (no AB flux: the band's offset is
    the calibration's, kept with the direct row)."""
    return dataclasses.replace(
        direct,
        measurement="difference",
        template_id=difference.template.get("id"),
        mag=float(difference.mag) if difference.mag is not None else direct.mag,
        magerr=finite(difference.magerr) or 0.0,
        caliberr=finite(difference.caliberr) or 0.0,
        mag_err_total=finite(difference.mag_err_total) or 0.0,
        is_upper_limit=difference.is_upper_limit,
        limit_mag=finite(difference.limit_mag),
        flux_ujy=None,
        flux_err_ujy=None,
    )


# --------------------------------------------------------------------------------------------------
# Legacy CPCS arrays


def legacy_arrays(alert_name: str, points: Sequence[PointOut]) -> dict[str, Any]:
    """A light curve as CPCS's parallel arrays (``magerr = -1`` marks an upper limit).

    ``observatory`` is ``"<observatory>, <observer>"`` (just the observer when both are the same
    name), ``catalog`` the reference survey and ``filter`` its band, as CPCS answered.
    """
    return {
        "mjd": [p.mjd for p in points],
        "mag": [p.mag for p in points],
        "magerr": [-1.0 if p.is_upper_limit else p.magerr for p in points],
        "caliberr": [p.caliberr for p in points],
        "observatory": [
            p.observer if p.observer == p.observatory else f"{p.observatory}, {p.observer}" for p in points
        ],
        "catalog": [p.survey for p in points],
        "filter": [p.band for p in points],
        "id": [p.id for p in points],
        "alert_name": alert_name,
    }


# --------------------------------------------------------------------------------------------------
# JSON and tables


def _calibration_facts(row: ExportRow) -> dict[str, Any]:
    """The calibration of a point in a few scalars (for JSON and SkyPortal's altdata)."""
    facts: dict[str, Any] = {"survey": row.survey, "band": row.band, "magsys": row.magsys}
    cal = row.calibration
    if cal is not None:
        facts.update(
            version=cal.version,
            mode=cal.mode,
            catalogue_release=cal.catalogue_release,
            zp=cal.zp,
            zp_err=cal.zp_err,
            zp_convention="m = m_inst + zp + colour_term * colour",
            colour_index=cal.colour_index,
            colour_term=cal.colour_term,
            colour_term_err=cal.colour_term_err,
            colour_assumed=cal.target.colour_assumed,
            colour_err_assumed=cal.target.colour_err_assumed,
            magerr_zero_point=cal.target.err_zero_point,
            magerr_scatter=cal.target.err_scatter,
            magerr_colour=cal.target.err_colour,
            scatter=cal.scatter,
            n_stars=cal.n_stars,
            pipeline_version=cal.pipeline_version,
        )
    return facts


def _units() -> dict[str, str]:
    return {name: spec.unit.to_string() for name, spec in COLUMNS.items() if spec.unit is not None}


def _alert_dict(alert: AlertOut) -> dict[str, Any]:
    return {
        "id": alert.id,
        "name": alert.name,
        "ra_deg": alert.ra_deg,
        "dec_deg": alert.dec_deg,
        "url": alert.url,
    }


def to_json(alert: AlertOut, rows: Sequence[ExportRow]) -> dict[str, Any]:
    """The JSON export: the alert, the units of the columns, and every point with its calibration."""
    return {
        "alert": _alert_dict(alert),
        "units": _units(),
        "flux_system": f"AB: {AB_ZERO_POINT_UJY_MAG} mag = 1 uJy",
        "upper_limit_nsigma": LIMIT_SNR,
        "points": [{**row.values(), "calibration": _calibration_facts(row)} for row in rows],
    }


_DTYPES = {"int": np.int64, "float": np.float64, "bool": np.bool_, "str": np.str_}
_FILL = {"int": 0, "float": np.nan, "bool": False, "str": ""}


def to_table(alert: AlertOut, rows: Sequence[ExportRow]) -> Table:
    """The points as an astropy Table: one row a point, units, descriptions, masks for missing values."""
    table = Table(
        meta={
            "name": f"CPCS light curve of {alert.name}",
            "alert_id": alert.id,
            "alert_name": alert.name,
            "ra_deg": alert.ra_deg,
            "dec_deg": alert.dec_deg,
            "flux_system": f"AB: {AB_ZERO_POINT_UJY_MAG} mag = 1 uJy",
            "upper_limit_nsigma": LIMIT_SNR,
        }
    )
    for name, spec in COLUMNS.items():
        raw = [getattr(row, name) for row in rows]
        missing = [value is None for value in raw]
        filled = [_FILL[spec.kind] if value is None else value for value in raw]
        data: np.ndarray[Any, Any] = np.array(filled, dtype=_DTYPES[spec.kind])
        meta = {"ucd": spec.ucd} if spec.ucd else {}
        column: Column
        if any(missing):
            column = MaskedColumn(
                data, name=name, mask=missing, unit=spec.unit, description=spec.description, meta=meta
            )
        else:
            column = Column(data, name=name, unit=spec.unit, description=spec.description, meta=meta)
        table.add_column(column)
    return table


#: What makes a spreadsheet read a cell as a formula (OWASP, "CSV Injection").
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def neutralise_formula(text: str) -> str:
    """``text`` made safe for a spreadsheet: a cell that would start a formula gets a leading ``'``.

    Text starting (after any spaces) with ``=``, ``+``, ``-`` or ``@``, or starting with a tab or a
    carriage return, is prefixed with a single quote, as OWASP recommends; text that reads as a
    number (``-1.5``, ``+3e2``) is left alone, so that it stays a number.
    """
    stripped = text.lstrip(" ")
    if (text.startswith(("\t", "\r")) or stripped.startswith(_FORMULA_STARTS)) and not _is_number(text):
        return "'" + text
    return text


def to_csv(table: Table) -> str:
    """CSV text with a header line of column names; missing values are empty fields.

    Text cells that a spreadsheet would run as a formula are neutralised (:func:`neutralise_formula`);
    numeric columns and numeric text are written as they are.
    """
    safe = table.copy(copy_data=False)
    for name in safe.colnames:
        column = safe[name]
        if column.dtype.kind != "U":
            continue
        values = [neutralise_formula(str(value)) for value in np.asarray(column)]
        data = np.array(values, dtype=str) if values else np.asarray(column)
        if isinstance(column, MaskedColumn):
            safe[name] = MaskedColumn(data, name=name, mask=column.mask)
        else:
            safe[name] = Column(data, name=name)
    buffer = io.StringIO()
    safe.write(buffer, format="ascii.csv")
    return buffer.getvalue()


def to_ecsv(table: Table) -> str:
    """ECSV text: the columns with their types, units, descriptions and the table's metadata."""
    buffer = io.StringIO()
    table.write(buffer, format="ascii.ecsv")
    return buffer.getvalue()


#: The table's metadata written as VOTable PARAMs: datatype, unit, UCD.
_VOTABLE_PARAMS: dict[str, tuple[str, str | None, str | None]] = {
    "alert_id": ("long", None, "meta.id"),
    "alert_name": ("unicodeChar", None, "meta.id;src"),
    "ra_deg": ("double", "deg", "pos.eq.ra;meta.main"),
    "dec_deg": ("double", "deg", "pos.eq.dec;meta.main"),
    "flux_system": ("unicodeChar", None, None),
    "upper_limit_nsigma": ("double", None, "stat.snr"),
}


def to_votable(table: Table) -> bytes:
    """A VOTable document (XML, tabledata): fields with units, descriptions, UCDs; the alert as PARAMs."""
    plain = table.copy(copy_data=False)
    plain.meta = {"ID": "cpcs_lightcurve", "name": str(table.meta.get("name", "CPCS light curve"))}
    votable = from_table(plain)
    target = votable.get_first_table()
    for key, (datatype, unit, ucd) in _VOTABLE_PARAMS.items():
        if table.meta.get(key) is None:
            continue
        value = table.meta[key]
        target.params.append(
            Param(
                votable,
                ID=key,
                name=key,
                value=str(value) if datatype == "unicodeChar" else value,
                datatype=datatype,
                arraysize="*" if datatype == "unicodeChar" else None,
                unit=unit,
                ucd=ucd,
            )
        )
    buffer = io.BytesIO()
    writeto(votable, buffer)
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------------
# SkyPortal


@dataclass(frozen=True)
class SkippedPoint:
    """A point left out of an export, and why."""

    point_id: int
    reason: Literal["no_sncosmo_bandpass", "no_mjd", "no_flux", "no_magnitude"]


@dataclass(frozen=True)
class SkyPortalOptions:
    """What the destination SkyPortal decides.

    Attributes
    ----------
    instrument_id : int
        SkyPortal's id of the instrument the points are attached to (its filters must include the
        sncosmo names exported).
    obj_id : str or None
        SkyPortal's id of the object; None derives it from the alert name (:func:`skyportal_obj_id`).
    origin : str
        Provenance recorded with every point; part of SkyPortal's duplicate key, so the default is
        the value CPCS's own SkyPortal delivery (``cpcs_api.outbound.skyportal``) uses.
    group_ids : list of int or None
        Groups to share the points with; None lets SkyPortal choose.
    """

    instrument_id: int
    obj_id: str | None = None
    origin: str = "cpcs"
    group_ids: list[int] | None = None


@dataclass(frozen=True)
class SkyPortalPhotometry:
    """Points as SkyPortal photometry: one dict a point, and the points left out.

    Attributes
    ----------
    kind : {"mag", "flux"}
        Which of SkyPortal's two input forms.
    packets : list of dict
        One SkyPortal photometry dict a point (``PhotometryMag`` or ``PhotometryFlux`` fields).
    skipped : list of SkippedPoint
        Points SkyPortal cannot take, with the reason.
    group_ids : list of int or None
        The groups to share with (a field of the body, not a column of the columnar form).
    """

    kind: Literal["mag", "flux"]
    packets: list[dict[str, Any]]
    skipped: list[SkippedPoint]
    group_ids: list[int] | None = None

    def flexible(self) -> dict[str, Any]:
        """The columnar body of ``POST /api/photometry``: every field a list, one entry a point.

        ``altdata`` is the list of the points' dicts; ``group_ids`` (when given) is not a column.
        """
        keys = _MAG_KEYS if self.kind == "mag" else _FLUX_KEYS
        body: dict[str, Any] = {key: [packet[key] for packet in self.packets] for key in keys}
        if self.group_ids is not None:
            body["group_ids"] = list(self.group_ids)
        return body


_COMMON_KEYS = ("obj_id", "instrument_id", "mjd", "filter", "magsys", "origin")
_MAG_KEYS = (*_COMMON_KEYS, "mag", "magerr", "limiting_mag", "limiting_mag_nsigma", "altdata")
_FLUX_KEYS = (*_COMMON_KEYS, "flux", "fluxerr", "zp", "altdata")


def skyportal_obj_id(alert_name: str) -> str:
    """A SkyPortal object id from an alert name: ``ivo://Gaia16aye`` gives ``Gaia16aye``.

    The last part of the name after the scheme, with characters other than letters, digits, ``_``,
    ``-`` and ``.`` replaced by ``_``.
    """
    name = re.sub(r"^[A-Za-z][A-Za-z0-9+.-]*://", "", alert_name.strip())
    tail = re.split(r"[/#]", name.rstrip("/#"))[-1] or name
    return re.sub(r"[^A-Za-z0-9_.-]", "_", tail) or "alert"


def _detection_limit(row: ExportRow) -> tuple[float, str]:
    """SkyPortal's required limiting magnitude for a detection, and where it comes from.

    The image's 5-sigma limit when CPCS estimated one; otherwise the 5-sigma limit implied by the
    target's own noise (its S/N from the measurement error), which is conservative (brighter).
    """
    if row.limit_mag is not None:
        return row.limit_mag, "image"
    if row.magerr > 0 and math.isfinite(row.magerr):
        snr = _MAG_ERR_TIMES_SNR / row.magerr
        return row.mag + 2.5 * math.log10(snr / LIMIT_SNR), "target_noise"
    return row.mag, "target_magnitude"


def _altdata(row: ExportRow, limiting_mag: float, limit_source: str) -> dict[str, Any]:
    """SkyPortal ``altdata`` of a point: flat, scalar values only.

    SkyPortal turns a dict ``altdata`` into records through a pandas DataFrame, where a nested dict
    or a list would become several rows; so the calibration facts are prefixed, not nested.
    """
    return {
        "cpcs_point_id": row.point_id,
        "cpcs_observation_id": row.observation_id,
        "cpcs_calibration_id": row.calibration_id,
        "calibration_url": row.calibration_url,
        "observer": row.observer,
        "observatory": row.observatory,
        "instrument_filter": row.filter_declared,
        "unfiltered": is_unfiltered(row.filter_declared),
        "filter_note": row.filter_note,
        "mag": row.mag,
        "magerr_measurement": row.magerr,
        "magerr_calibration": row.caliberr,
        "magerr_total": row.mag_err_total,
        "is_upper_limit": row.is_upper_limit,
        "limiting_mag": limiting_mag,
        "limiting_mag_nsigma": LIMIT_SNR,
        "limiting_mag_source": limit_source,
        **{f"calibration_{key}": value for key, value in _calibration_facts(row).items()},
    }


def skyportal_packet(
    row: ExportRow, kind: Literal["mag", "flux"], options: SkyPortalOptions
) -> dict[str, Any] | SkippedPoint:
    """One point as a SkyPortal photometry dict, or why SkyPortal cannot take it.

    The one SkyPortal payload of CPCS: the exports and the SkyPortal delivery
    (``cpcs_api.outbound.skyportal``) both build their bodies here.

    Mag form: ``mag``/``magerr`` (the total error) in the band's own system (``vega`` for
    Johnson-Cousins, 2MASS and Gaia, ``ab`` for SDSS and PS1), ``limiting_mag`` always (the 5-sigma
    limit), ``mag = magerr = None`` for an upper limit. Flux form: microjansky on the AB scale
    (``zp = 23.9``, ``magsys = "ab"``), ``flux = None`` and ``fluxerr`` the 1-sigma noise for an upper
    limit. ``altdata`` carries the calibration facts and the link to the calibration record.
    """
    if row.sncosmo_filter is None or row.magsys is None:
        return SkippedPoint(row.point_id, "no_sncosmo_bandpass")
    if row.mjd is None:
        return SkippedPoint(row.point_id, "no_mjd")
    if not math.isfinite(row.mag) or (not row.is_upper_limit and not math.isfinite(row.mag_err_total)):
        return SkippedPoint(row.point_id, "no_magnitude")
    if row.is_upper_limit:
        limiting_mag, source = (row.limit_mag if row.limit_mag is not None else row.mag), "image"
    else:
        limiting_mag, source = _detection_limit(row)
    packet: dict[str, Any] = {
        "obj_id": options.obj_id or skyportal_obj_id(row.alert_name),
        "instrument_id": options.instrument_id,
        "mjd": row.mjd,
        "filter": row.sncosmo_filter,
        "origin": options.origin,
        "altdata": _altdata(row, limiting_mag, source),
    }
    if kind == "mag":
        packet.update(
            magsys=row.magsys,
            mag=None if row.is_upper_limit else row.mag,
            magerr=None if row.is_upper_limit else row.mag_err_total,
            limiting_mag=limiting_mag,
            limiting_mag_nsigma=LIMIT_SNR,
        )
    else:
        if row.flux_err_ujy is None or (row.flux_ujy is None and not row.is_upper_limit):
            return SkippedPoint(row.point_id, "no_flux")
        packet.update(
            magsys="ab",
            flux=None if row.is_upper_limit else row.flux_ujy,
            fluxerr=row.flux_err_ujy,
            zp=AB_ZERO_POINT_UJY_MAG,
        )
    if options.group_ids is not None:
        packet["group_ids"] = list(options.group_ids)
    return packet


def skyportal_photometry(
    rows: Sequence[ExportRow], kind: Literal["mag", "flux"], options: SkyPortalOptions
) -> SkyPortalPhotometry:
    """The points as SkyPortal photometry in its mag or flux form (:func:`skyportal_packet` each).

    Points without an sncosmo bandpass, an MJD, or (flux form) an AB flux are skipped.
    """
    if options.obj_id is None and rows:
        options = replace(options, obj_id=skyportal_obj_id(rows[0].alert_name))
    packets: list[dict[str, Any]] = []
    skipped: list[SkippedPoint] = []
    for row in rows:
        packet = skyportal_packet(row, kind, options)
        if isinstance(packet, SkippedPoint):
            skipped.append(packet)
        else:
            packets.append(packet)
    return SkyPortalPhotometry(kind, packets, skipped, options.group_ids)


# --------------------------------------------------------------------------------------------------
# One entry point


@dataclass(frozen=True)
class Rendered:
    """An export ready to send: bytes, media type, download file name, extra headers."""

    body: bytes
    media_type: str
    filename: str
    headers: dict[str, str]


def _jsonable(value: Any) -> Any:
    """``value`` with non-finite floats as None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


def _json_bytes(value: Any) -> bytes:
    return json.dumps(_jsonable(value), allow_nan=False, ensure_ascii=False).encode()


def render(
    fmt: str,
    alert: AlertOut,
    points: Sequence[PointOut],
    details: Mapping[int, PointDetails] | None = None,
    *,
    base_url: str = "",
    skyportal: SkyPortalOptions | None = None,
) -> Rendered:
    """Render an alert's points in one of :data:`FORMATS`.

    Raises
    ------
    ValueError
        An unknown format, or a SkyPortal format without ``skyportal`` options.
    """
    spec = FORMATS.get(fmt)
    if spec is None:
        raise ValueError(f"unknown export format {fmt!r}; formats: {', '.join(FORMATS)}")
    slug = skyportal_obj_id(alert.name)
    suffix = {"legacy": "-legacy", "skyportal-mag": "-skyportal-mag", "skyportal-flux": "-skyportal-flux"}
    filename = f"cpcs-{slug}-lightcurve{suffix.get(fmt, '')}.{spec.extension}"
    headers: dict[str, str] = {}
    if fmt == "legacy":
        body = _json_bytes(legacy_arrays(alert.name, points))
    else:
        tables = fmt in ("json", "csv", "ecsv", "votable")  # SkyPortal gets the direct points only
        rows = export_rows(points, details, base_url=base_url, with_difference=tables)
        if fmt == "json":
            body = _json_bytes(to_json(alert, rows))
        elif fmt in ("csv", "ecsv", "votable"):
            table = to_table(alert, rows)
            body = (
                to_votable(table)
                if fmt == "votable"
                else (to_csv(table) if fmt == "csv" else to_ecsv(table)).encode()
            )
        else:
            if skyportal is None:
                raise ValueError(f"{fmt} needs the destination's instrument id")
            options = skyportal
            if options.obj_id is None:
                options = SkyPortalOptions(
                    options.instrument_id, skyportal_obj_id(alert.name), options.origin, options.group_ids
                )
            photometry = skyportal_photometry(rows, "mag" if fmt == "skyportal-mag" else "flux", options)
            body = _json_bytes(photometry.flexible())
            if photometry.skipped:
                headers["X-CPCS-Skipped-Points"] = ",".join(
                    f"{s.point_id}:{s.reason}" for s in photometry.skipped
                )
    return Rendered(body, spec.media_type, filename, headers)
