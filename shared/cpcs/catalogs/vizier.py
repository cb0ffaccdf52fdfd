"""Online reference stars from Vizier (through astroquery) and the parser of Vizier tables.

:func:`fetch_cone_online` is the only code in the catalogue library that touches the network. It
imports astroquery lazily (never at module import), sets a short timeout, and turns every failure
of the remote side into :class:`cpcs.errors.ServiceUnavailable` with
``code="catalogue_source_unreachable"`` so callers fail fast and can retry later.

:func:`parse_vizier_table` turns a Vizier answer (an astropy ``Table`` with Vizier's column
names) into a :class:`~cpcs.catalogs.model.ReferenceCatalogue`: it picks the survey's position
and magnitude columns, applies the survey's quality rules (SDSS: stars, primary detections;
GaiaSP: validated-range flags, magnitude errors from flux errors), drops rows with no position or
no magnitude, and adds the derived bands (SDSS/PS1 -> B, V, R, I). The catalogue carries the
survey's position epoch and, for surveys with proper motions (Gaia DR3: ``pmRA``/``pmDE``), the
proper motions in mas/yr.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from cpcs.catalogs.model import (
    BoolArray,
    FloatArray,
    ReferenceCatalogue,
    column_to_float,
    parse_coordinates,
    proper_motion_columns,
)
from cpcs.catalogs.surveys import BandDefinition, SurveyDefinition
from cpcs.errors import CpcsError, ServiceUnavailable

if TYPE_CHECKING:
    from astropy.table import Table

__all__ = [
    "DEFAULT_ROW_LIMIT",
    "DEFAULT_TIMEOUT_S",
    "band_values",
    "fetch_cone_online",
    "parse_vizier_table",
    "survey_row_mask",
]

log = logging.getLogger(__name__)

#: Rows asked of Vizier per query; a tile answer that reaches it is stored as incomplete.
DEFAULT_ROW_LIMIT = 200_000
#: Seconds astroquery waits for Vizier.
DEFAULT_TIMEOUT_S = 10.0

_MAG_PER_FLUX_RATIO = 2.5 / math.log(10.0)  # 1.0857: d(mag) = 1.0857 dF/F
# Sane magnitude range: anything outside is a sentinel (99.999, -999...) and means "missing".
_MAG_MIN, _MAG_MAX = -5.0, 40.0


def fetch_cone_online(
    survey_def: SurveyDefinition,
    ra_deg: float,
    dec_deg: float,
    radius_deg: float,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    row_limit: int = DEFAULT_ROW_LIMIT,
) -> ReferenceCatalogue:
    """Fetch the survey's stars within a cone from Vizier.

    Parameters
    ----------
    survey_def : SurveyDefinition
        A fetchable survey (``survey_def.vizier_table`` set).
    ra_deg, dec_deg, radius_deg : float
        Cone, degrees.
    timeout_s : float, optional
        astroquery timeout in seconds.
    row_limit : int, optional
        Maximum rows (``-1``: no limit). Check ``len(result) >= row_limit`` to detect truncation.

    Returns
    -------
    ReferenceCatalogue

    Raises
    ------
    cpcs.errors.ServiceUnavailable
        ``code="catalogue_source_unreachable"`` when astroquery is missing, Vizier cannot be
        reached, times out or answers with an error.
    ValueError
        When the survey cannot be fetched (a custom survey).
    """
    if survey_def.vizier_table is None:
        raise ValueError(f"survey {survey_def.name} has no Vizier table (it is import-only)")
    where = f"{survey_def.name} ({survey_def.vizier_table}) around RA={ra_deg:.5f} Dec={dec_deg:+.5f}"
    try:
        from astropy import units as u
        from astropy.coordinates import SkyCoord
        from astroquery.vizier import Vizier  # lazy: never at module import
    except Exception as exc:
        raise ServiceUnavailable(
            f"cannot query Vizier for {where}: astroquery is not available ({exc})",
            code="catalogue_source_unreachable",
        ) from exc
    try:
        vizier = Vizier(
            columns=survey_def.vizier_columns(),
            column_filters=dict(survey_def.column_filters),
            row_limit=int(row_limit),
            timeout=float(timeout_s),
        )
        answer = vizier.query_region(
            SkyCoord(float(ra_deg), float(dec_deg), unit="deg", frame="icrs"),
            radius=float(radius_deg) * u.deg,
            catalog=survey_def.vizier_table,
            cache=False,
        )
    except CpcsError:
        raise
    except Exception as exc:  # every network, HTTP and parsing failure of the remote side
        raise ServiceUnavailable(
            f"Vizier did not answer for {where}: {type(exc).__name__}: {exc}",
            code="catalogue_source_unreachable",
        ) from exc
    table = _pick_table(answer, survey_def.vizier_table)
    if table is None:
        log.info("vizier: no %s rows for %s", survey_def.name, where)
        return ReferenceCatalogue.empty(
            survey_def.name, survey_def.band_names, epoch=survey_def.position_epoch
        )
    cat = parse_vizier_table(survey_def, table)
    log.info("vizier: %d %s stars for %s (radius %.3f deg)", len(cat), survey_def.name, where, radius_deg)
    return cat


def _pick_table(answer: Any, table_name: str) -> Table | None:
    """The table of ``table_name`` from an astroquery ``TableList`` (or the first one)."""
    if answer is None or len(answer) == 0:
        return None
    keys = list(answer.keys()) if hasattr(answer, "keys") else []
    if table_name in keys:
        return answer[table_name]
    return answer[0]


def _find_column(table: Table, name: str | None) -> str | None:
    """Exact column name, else the only case-insensitive match."""
    if name is None:
        return None
    if name in table.colnames:
        return name
    lowered = [c for c in table.colnames if c.lower() == name.lower()]
    return lowered[0] if len(lowered) == 1 else None


_RA_CANDIDATES = ("RAJ2000", "_RAJ2000", "RA_ICRS", "RAdeg", "ra", "_RA")
_DEC_CANDIDATES = ("DEJ2000", "_DEJ2000", "DE_ICRS", "DEdeg", "dec", "_DE")


def _position_columns(survey_def: SurveyDefinition, table: Table) -> tuple[str, str]:
    ra = _find_column(table, survey_def.ra_column)
    dec = _find_column(table, survey_def.dec_column)
    if ra is None or dec is None:
        for ra_name, dec_name in zip(_RA_CANDIDATES, _DEC_CANDIDATES, strict=True):
            ra, dec = _find_column(table, ra_name), _find_column(table, dec_name)
            if ra is not None and dec is not None:
                break
    if ra is None or dec is None:
        raise ServiceUnavailable(
            f"Vizier answer for {survey_def.name} has no position columns "
            f"({survey_def.ra_column}/{survey_def.dec_column}); columns: {', '.join(table.colnames)}",
            code="catalogue_source_unreachable",
        )
    return ra, dec


def _survey_proper_motions(
    survey_def: SurveyDefinition, table: Table
) -> tuple[FloatArray, FloatArray] | None:
    """The survey's proper motions (mas/yr) read from ``table``; ``None`` when it has none."""
    if not survey_def.has_proper_motions:
        return None
    pmra_name = _find_column(table, survey_def.pmra_column)
    pmdec_name = _find_column(table, survey_def.pmdec_column)
    if pmra_name is None or pmdec_name is None:
        log.warning(
            "vizier: %s answer lacks the proper-motion columns %s/%s",
            survey_def.name,
            survey_def.pmra_column,
            survey_def.pmdec_column,
        )
        return None
    try:
        return proper_motion_columns(table[pmra_name], table[pmdec_name])
    except (TypeError, ValueError) as exc:
        log.warning("vizier: %s proper motions unusable: %s", survey_def.name, exc)
        return None


def _clean_mag(values: FloatArray) -> FloatArray:
    return np.where((values > _MAG_MIN) & (values < _MAG_MAX), values, np.nan)


def band_values(band: BandDefinition, table: Table, n: int) -> tuple[FloatArray, FloatArray] | None:
    """Magnitudes and errors of one band read from a table with the survey's Vizier columns.

    Sentinel magnitudes become NaN; the error comes from the error column, else from the flux
    and flux-error columns (``1.0857 * e_F / F``), else from the band's documented accuracy
    (``fixed_error``); a per-band flag other than 1 rejects the value.

    Parameters
    ----------
    band : BandDefinition
    table : astropy.table.Table
    n : int
        Number of rows.

    Returns
    -------
    (mag, err) : tuple of ndarray, or None when the table lacks the band's magnitude column
    """
    mag_col = _find_column(table, band.mag_column)
    if mag_col is None:
        return None
    mag = _clean_mag(column_to_float(table[mag_col]))
    err_col = _find_column(table, band.err_column)
    if err_col is None and band.mag_column is not None:
        err_col = _find_column(table, f"e_{band.mag_column}")
    if err_col is not None:
        err = column_to_float(table[err_col])
    else:
        flux_col = _find_column(table, band.flux_column)
        flux_err_col = _find_column(table, band.flux_err_column)
        if flux_col is not None and flux_err_col is not None:
            flux = column_to_float(table[flux_col])
            flux_err = column_to_float(table[flux_err_col])
            with np.errstate(divide="ignore", invalid="ignore"):
                err = _MAG_PER_FLUX_RATIO * flux_err / flux
        elif band.fixed_error is not None:
            err = np.full(n, float(band.fixed_error))
        else:
            err = np.full(n, np.nan)
    err = np.where(np.isfinite(err) & (err > 0.0), err, np.nan)
    flag_col = _find_column(table, band.flag_column)
    if flag_col is not None:
        flag = column_to_float(table[flag_col])
        bad = flag != 1.0
        mag = np.where(bad, np.nan, mag)
        err = np.where(bad, np.nan, err)
    err = np.where(np.isfinite(mag), err, np.nan)
    return mag.astype(np.float64), err.astype(np.float64)


def survey_row_mask(
    survey_def: SurveyDefinition, table: Table, *, equalities_only: bool = False
) -> BoolArray:
    """Rows of ``table`` passing the survey's Vizier constraints, re-applied locally.

    Parameters
    ----------
    survey_def : SurveyDefinition
    table : astropy.table.Table
    equalities_only : bool, optional
        Apply only ``=value`` constraints (object class, primary detection), not magnitude
        limits: what an imported file is checked against.

    Returns
    -------
    ndarray of bool
        Constraints on columns the table lacks are ignored; a missing magnitude passes a limit.
        The survey's ``keep_values`` (local quality rules) always apply; an empty cell passes.
    """
    keep = np.ones(len(table), dtype=bool)
    for column, allowed in survey_def.keep_values.items():
        name = _find_column(table, column)
        if name is None:
            continue
        values = column_to_float(table[name])
        keep &= ~np.isfinite(values) | np.isin(values, np.asarray(allowed, dtype=np.float64))
    for column, constraint in survey_def.column_filters.items():
        name = _find_column(table, column)
        text = constraint.strip()
        if name is None or (equalities_only and not text.startswith("=")):
            continue
        values = column_to_float(table[name])
        try:
            if text.startswith("="):
                keep &= values == float(text[1:])
            elif text.startswith("<"):
                keep &= ~(values >= float(text[1:]))  # NaN magnitudes pass: other bands may be set
            elif text.startswith(">"):
                keep &= ~(values <= float(text[1:]))
        except ValueError:
            continue
    return keep


def parse_vizier_table(survey_def: SurveyDefinition, table: Table) -> ReferenceCatalogue:
    """Convert a Vizier answer for ``survey_def`` into a reference catalogue.

    Parameters
    ----------
    survey_def : SurveyDefinition
        The survey the table belongs to.
    table : astropy.table.Table
        Vizier's table (as returned by astroquery or read from a Vizier VOTable).

    Returns
    -------
    ReferenceCatalogue
        Stars with a valid position and at least one catalogue magnitude; derived bands added;
        ``epoch`` is the survey's ``position_epoch``; proper motions (mas/yr, NaN where unknown)
        for a survey that has them when the table holds its proper-motion columns.

    Raises
    ------
    cpcs.errors.ServiceUnavailable
        ``code="catalogue_source_unreachable"`` when the table lacks the position columns (Vizier
        answered something else than the catalogue).
    """
    n = len(table)
    epoch = survey_def.position_epoch
    if n == 0:
        return ReferenceCatalogue.empty(survey_def.name, survey_def.band_names, epoch=epoch)
    ra_name, dec_name = _position_columns(survey_def, table)
    ra_unit = str(table[ra_name].unit) if table[ra_name].unit is not None else None
    ra, dec = parse_coordinates(table[ra_name], table[dec_name], ra_unit=ra_unit)
    mags: dict[str, FloatArray] = {}
    errs: dict[str, FloatArray] = {}
    for band in survey_def.catalogue_bands:
        values = band_values(band, table, n)
        if values is not None:
            mags[band.name], errs[band.name] = values
    if not mags:
        log.warning("vizier: %s answer has none of the magnitude columns", survey_def.name)
        return ReferenceCatalogue.empty(survey_def.name, survey_def.band_names, epoch=epoch)
    keep = np.isfinite(ra) & np.isfinite(dec) & survey_row_mask(survey_def, table)
    keep &= np.any(np.isfinite(np.vstack(list(mags.values()))), axis=0)
    mags, errs = survey_def.add_derived_bands(mags, errs)
    pm = _survey_proper_motions(survey_def, table)
    pmra, pmdec = pm if pm is not None else (None, None)
    read_epoch = survey_def.epoch_of_columns(ra_name)  # J2000 columns of a Gaia answer: back to 2016
    cat = ReferenceCatalogue(survey_def.name, ra, dec, mags, errs, pmra, pmdec, read_epoch).at_epoch(epoch)
    return cat if keep.all() else cat.select(keep)
