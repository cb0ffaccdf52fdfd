"""Import a catalogue file into the tile store (for sites without network access).

Accepted files: VOTable (e.g. a Vizier download), CSV, ECSV and FITS tables, detected from the
file name and, failing that, from the content. The importer looks for

* positions under the usual names, case-insensitively: ``RAJ2000/DEJ2000``,
  ``_RAJ2000/_DEJ2000``, ``RA_ICRS/DE_ICRS``, ``ra/dec``, ``RAdeg/DEdeg``, ``ra_deg/dec_deg``,
  ``ALPHA_J2000/DELTA_J2000``, ``RA/DE`` (or a VOTable column whose UCD is ``pos.eq.ra``), in
  decimal degrees or sexagesimal text (``19:40:01.14``/``+30:07:53.4``, ``19h40m01.14s``);
* magnitudes Vizier-style, ``<band>mag`` with ``e_<band>mag`` (``g'mag`` gives band ``g``), or
  ``<band>_mag``/``mag_<band>``, or, for the bands of a known survey, a column named exactly like
  the band (``V``) with ``e_V``, ``V_err``, ``Verr`` or ``err_V``. Band names are case-sensitive
  (``R`` is Cousins, ``r`` is Sloan);
* proper motions, optionally: ``pmRA``/``pmDE`` (Vizier) or ``pmra``/``pmdec`` (Gaia archive),
  case-insensitively, in mas/yr (``pmRA`` including cos(dec)); a column with another angular-rate
  unit is converted, one with a unit that is not an angle per time is ignored.

Epoch of the positions: for a known survey, its ``position_epoch`` (2016.0 for Gaia and GaiaSP),
and the survey's own position columns (``RA_ICRS``/``DE_ICRS`` for Gaia) are preferred. Positions
read from Vizier's ``RAJ2000``/``_RAJ2000`` columns of a Gaia download are at epoch J2000 and are
moved back to 2016.0 along their proper motions, so that every stored star of a survey shares one
epoch. A site's own survey takes the epoch from a ``ref_epoch``/``Epoch`` column holding a single
year, else it has none.

Missing values (masked cells, NaN, empty strings, sentinels such as 99.999) are allowed.

Survey names: a known survey (``APASS``, ``PS1``, ``SDSS``, ``2MASS``, ``GaiaSP``, ``Gaia``,
``RefCat2``, ``SkyMapper``, ``USNO-B1``, and the import-only ``VST-ATLAS`` and ``OGLE-III``, any
case) keeps its definition: only its bands are imported (other magnitude columns are reported as
ignored) and its derived bands are computed. Any other valid name is accepted as a site's own
survey (e.g. local standard fields): its bands are whatever magnitude columns the file has, and
they are recorded in the survey manifest of the store.

Imported stars are merged into the tiles they fall in, deduplicating by position (0.5 arcsec), and
those tiles are marked incomplete unless they were already complete.
"""

from __future__ import annotations

import io
import logging
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cpcs.catalogs.model import (
    FloatArray,
    ReferenceCatalogue,
    column_to_float,
    parse_coordinates,
    proper_motion_columns,
)
from cpcs.catalogs.surveys import SurveyDefinition, custom_survey, find_survey, validate_survey_name
from cpcs.catalogs.tiles import DEFAULT_MATCH_RADIUS_ARCSEC, TileStore
from cpcs.catalogs.vizier import band_values, survey_row_mask
from cpcs.errors import InputError

if TYPE_CHECKING:
    from astropy.table import Table

__all__ = ["ImportResult", "import_catalogue_file", "read_catalogue_table", "table_to_catalogue"]

log = logging.getLogger(__name__)

_MAG_MIN, _MAG_MAX = -5.0, 40.0
_ERR_MAX = 10.0

_POSITION_PAIRS: tuple[tuple[str, str], ...] = (
    ("RAJ2000", "DEJ2000"),
    ("_RAJ2000", "_DEJ2000"),
    ("RA_ICRS", "DE_ICRS"),
    ("RAICRS", "DEICRS"),
    ("RA", "DEC"),
    ("RAdeg", "DEdeg"),
    ("RA_deg", "DEC_deg"),
    ("RAJ2000", "DECJ2000"),
    ("RA_ICRS", "DEC_ICRS"),
    ("ALPHA_J2000", "DELTA_J2000"),
    ("ALPHAWIN_J2000", "DELTAWIN_J2000"),
    ("_RA", "_DE"),
    ("RA", "DE"),
    ("RA_J2000", "DEC_J2000"),
    ("RA_J2000", "DE_J2000"),
)

# "<band>mag", "<band>'mag", "<band>_mag", "<band>MAG"; the band has no underscore, which keeps
# Vizier's o_/e_/u_/f_/q_ prefixed columns out.
_MAG_SUFFIX = re.compile(r"^(?P<band>[A-Za-z][A-Za-z0-9]*?)'?_?(?:mag|MAG|Mag)$")
_MAG_PREFIX = re.compile(r"^(?:mag|MAG|Mag)_(?P<band>[A-Za-z][A-Za-z0-9]*)$")
# Standard band names accepted as bare column names ("V", "g", "J", "BP") for custom surveys.
_STANDARD_BANDS = (
    "U",
    "B",
    "V",
    "R",
    "I",
    "u",
    "g",
    "r",
    "i",
    "z",
    "y",
    "J",
    "H",
    "K",
    "Ks",
    "G",
    "BP",
    "RP",
)
# Proper-motion column pairs (matched case-insensitively): Vizier, Gaia archive.
_PM_PAIRS: tuple[tuple[str, str], ...] = (("pmRA", "pmDE"), ("pmra", "pmdec"), ("pmRA", "pmDEC"))
# Columns holding the epoch of the positions (a single Julian year) in Gaia-like files.
_EPOCH_COLUMNS = ("ref_epoch", "Epoch", "ref_epoch_yr")
_EPOCH_RANGE = (1900.0, 2100.0)
_BAND_ALIASES = {"Ks": "K", "KS": "K", "Kp": "K", "GBP": "BP", "GRP": "RP", "Bp": "BP", "Rp": "RP"}
_FORMATS = ("votable", "fits", "ecsv", "csv")


@dataclass(frozen=True)
class ImportResult:
    """Outcome of an import.

    Attributes
    ----------
    survey : str
        Survey name the stars were stored under.
    n_stars : int
        Stars read from the file and stored (after dropping unusable rows).
    n_tiles : int
        Tiles written.
    bands : tuple of str
        Bands stored (derived bands included).
    n_added, n_updated : int
        Stars appended to tiles / stars that matched a star already stored and updated it.
    n_skipped : int
        Rows dropped: no valid position, no magnitude, or not a star (SDSS ``class``/``mode``).
    custom : bool
        True when the survey is a site's own survey.
    ignored_columns : tuple of str
        Magnitude-like columns that are not bands of the (known) survey.
    epoch : float or None
        Julian epoch of the stored positions (``None``: unknown).
    n_proper_motions : int
        Stored stars that came with a proper motion.
    """

    survey: str
    n_stars: int
    n_tiles: int
    bands: tuple[str, ...]
    n_added: int = 0
    n_updated: int = 0
    n_skipped: int = 0
    custom: bool = False
    ignored_columns: tuple[str, ...] = ()
    epoch: float | None = None
    n_proper_motions: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        d = asdict(self)
        d["bands"] = list(self.bands)
        d["ignored_columns"] = list(self.ignored_columns)
        return d


def import_catalogue_file(
    store: TileStore,
    survey: str,
    path_or_bytes: str | os.PathLike[str] | bytes,
    filename: str | None = None,
    *,
    match_radius_arcsec: float = DEFAULT_MATCH_RADIUS_ARCSEC,
) -> ImportResult:
    """Read a catalogue file and merge its stars into the tile store.

    Parameters
    ----------
    store : TileStore
        Destination.
    survey : str
        A known survey name or a site's own survey name.
    path_or_bytes : str, path or bytes
        The file, or its content.
    filename : str, optional
        Original file name (format detection, provenance ``"import:<filename>"``); required
        in spirit for bytes, defaults to the path's name.
    match_radius_arcsec : float, optional
        Stars closer than this to a stored star update it instead of being added.

    Returns
    -------
    ImportResult

    Raises
    ------
    cpcs.errors.InputError
        ``invalid_survey_name``, ``unreadable_catalogue_file``, ``no_coordinate_columns``,
        ``no_magnitude_columns`` or ``no_valid_rows``.
    """
    name = validate_survey_name(survey)
    known = find_survey(name)
    if isinstance(path_or_bytes, bytes | bytearray | memoryview):
        data = bytes(path_or_bytes)
        display = filename or "upload"
    else:
        path = Path(path_or_bytes)
        display = filename or path.name
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(
                f"cannot read catalogue file {display}: {exc}", code="unreadable_catalogue_file"
            ) from exc
    table = read_catalogue_table(data, display)
    cat, n_skipped, ignored = table_to_catalogue(table, known.name if known else name, display)
    store_name = known.name if known else name
    pix = store.tile_of(cat.ra_deg, cat.dec_deg)
    order = np.argsort(pix, kind="stable")
    sorted_pix = pix[order]
    boundaries = np.flatnonzero(np.diff(sorted_pix)) + 1
    n_added = n_updated = 0
    tiles = 0
    for chunk in np.split(order, boundaries):
        if len(chunk) == 0:
            continue
        ipix = int(pix[chunk[0]])
        result = store.merge(
            store_name,
            ipix,
            cat.select(chunk),
            source=f"import:{display}",
            complete=False,
            match_radius_arcsec=match_radius_arcsec,
        )
        n_added += result.n_added
        n_updated += result.n_updated
        tiles += 1
    return ImportResult(
        survey=store_name,
        n_stars=len(cat),
        n_tiles=tiles,
        bands=tuple(cat.bands),
        n_added=n_added,
        n_updated=n_updated,
        n_skipped=n_skipped,
        custom=known is None,
        ignored_columns=tuple(ignored),
        epoch=cat.epoch,
        n_proper_motions=_count_proper_motions(cat),
    )


# --------------------------------------------------------------------------------------------------
# Reading


def _guess_format(data: bytes, filename: str) -> str:
    lower = filename.lower()
    for suffix in (".gz", ".bz2", ".xz"):
        if lower.endswith(suffix):
            lower = lower[: -len(suffix)]
    if lower.endswith((".xml", ".vot", ".votable", ".vo")):
        return "votable"
    if lower.endswith((".fits", ".fit", ".fts")):
        return "fits"
    if lower.endswith(".ecsv"):
        return "ecsv"
    if lower.endswith((".csv", ".txt", ".dat")):
        return "ecsv" if data.lstrip()[:7] == b"# %ECSV" else "csv"
    head = data[:2048].lstrip()
    if head.startswith(b"SIMPLE  ="):
        return "fits"
    if head.startswith(b"<?xml") or b"<VOTABLE" in head:
        return "votable"
    if head.startswith(b"# %ECSV"):
        return "ecsv"
    return "csv"


def read_catalogue_table(data: bytes, filename: str) -> Table:
    """Parse a VOTable, FITS, ECSV or CSV file into an astropy table.

    Parameters
    ----------
    data : bytes
        File content (gzip, bzip2 or xz compressed content is accepted too).
    filename : str
        Used to detect the format (content sniffing otherwise).

    Returns
    -------
    astropy.table.Table
        For a VOTable with several tables, the first non-empty one.

    Raises
    ------
    cpcs.errors.InputError
        ``code="unreadable_catalogue_file"``.
    """
    from astropy.table import Table

    data = _decompress(data, filename)
    fmt = _guess_format(data, filename)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if fmt == "votable":
                from astropy.io.votable import parse

                votable = parse(io.BytesIO(data), verify="ignore")
                tables = list(votable.iter_tables())
                if not tables:
                    raise ValueError("the VOTable holds no table")
                chosen = next((t for t in tables if t.nrows), tables[0])
                return chosen.to_table(use_names_over_ids=True)
            if fmt == "fits":
                return Table.read(io.BytesIO(data), format="fits")
            text = data.decode("utf-8-sig")
            if not text.endswith("\n"):
                text += "\n"  # astropy reads a string with a newline as table content, not a file name
            if fmt == "ecsv":
                return Table.read(text, format="ascii.ecsv")
            first = text.lstrip().splitlines()[0] if text.strip() else ""
            delimiter = "\t" if "\t" in first and "," not in first else ("," if "," in first else None)
            if delimiter == ",":
                return Table.read(text, format="ascii.csv")
            return Table.read(text, format="ascii.basic", delimiter=delimiter)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(
            f"cannot read {filename} as a {fmt.upper()} table: {type(exc).__name__}: {exc}",
            code="unreadable_catalogue_file",
        ) from exc


def _decompress(data: bytes, filename: str) -> bytes:
    try:
        if data[:2] == b"\x1f\x8b":
            import gzip

            return gzip.decompress(data)
        if data[:3] == b"BZh":
            import bz2

            return bz2.decompress(data)
        if data[:6] == b"\xfd7zXZ\x00":
            import lzma

            return lzma.decompress(data)
    except Exception as exc:
        raise InputError(f"cannot decompress {filename}: {exc}", code="unreadable_catalogue_file") from exc
    return data


# --------------------------------------------------------------------------------------------------
# Columns


def _lookup(colnames: Sequence[str], name: str, *, case_sensitive: bool = False) -> str | None:
    if name in colnames:
        return name
    if case_sensitive:
        return None
    matches = [c for c in colnames if c.lower() == name.lower()]
    return matches[0] if len(matches) == 1 else None


def _count_proper_motions(cat: ReferenceCatalogue) -> int:
    if cat.pmra_mas_yr is None or cat.pmdec_mas_yr is None:
        return 0
    return int(np.count_nonzero(np.isfinite(cat.pmra_mas_yr) & np.isfinite(cat.pmdec_mas_yr)))


def _position_columns(table: Table, survey_def: SurveyDefinition | None = None) -> tuple[str, str]:
    names = list(table.colnames)
    pairs = _POSITION_PAIRS
    if survey_def is not None:  # the survey's own columns first (Gaia: RA_ICRS at 2016, not RAJ2000)
        pairs = ((survey_def.ra_column, survey_def.dec_column), *pairs)
    for ra_name, dec_name in pairs:
        ra, dec = _lookup(names, ra_name), _lookup(names, dec_name)
        if ra is not None and dec is not None:
            return ra, dec
    by_ucd: dict[str, str] = {}
    for name in names:
        ucd = str(table[name].meta.get("ucd", "") or getattr(table[name], "ucd", "") or "").lower()
        for axis in ("ra", "dec"):
            if ucd.startswith(f"pos.eq.{axis}") and (axis not in by_ucd or "meta.main" in ucd):
                by_ucd[axis] = name
    if "ra" in by_ucd and "dec" in by_ucd:
        return by_ucd["ra"], by_ucd["dec"]
    raise InputError(
        "the file has no right ascension / declination columns; expected a pair such as "
        "RAJ2000/DEJ2000, RA_ICRS/DE_ICRS, _RAJ2000/_DEJ2000 or ra/dec "
        f"(columns found: {', '.join(names[:30])})",
        code="no_coordinate_columns",
    )


def _proper_motion_pair(table: Table, survey_def: SurveyDefinition | None) -> tuple[str, str] | None:
    """Names of the proper-motion columns (right ascension, declination), or None."""
    names = list(table.colnames)
    pairs = _PM_PAIRS
    if survey_def is not None and survey_def.pmra_column and survey_def.pmdec_column:
        pairs = ((survey_def.pmra_column, survey_def.pmdec_column), *pairs)
    for ra_name, dec_name in pairs:
        ra, dec = _lookup(names, ra_name), _lookup(names, dec_name)
        if ra is not None and dec is not None:
            return ra, dec
    return None


def _read_proper_motions(
    table: Table, pair: tuple[str, str] | None, filename: str
) -> tuple[FloatArray | None, FloatArray | None]:
    if pair is None:
        return None, None
    try:
        return proper_motion_columns(table[pair[0]], table[pair[1]])
    except (TypeError, ValueError) as exc:
        log.warning("%s: proper motions %s/%s ignored: %s", filename, pair[0], pair[1], exc)
        return None, None


def _file_epoch(table: Table) -> float | None:
    """The single Julian year of a ``ref_epoch``/``Epoch`` column, else None."""
    for candidate in _EPOCH_COLUMNS:
        name = _lookup(list(table.colnames), candidate)
        if name is None:
            continue
        try:
            values = column_to_float(table[name])
        except TypeError:
            continue
        years = np.unique(values[np.isfinite(values)])
        if len(years) == 1 and _EPOCH_RANGE[0] <= years[0] <= _EPOCH_RANGE[1]:
            return float(years[0])
    return None


def _error_column(colnames: Sequence[str], mag_column: str, band: str) -> str | None:
    stem = mag_column[:-3] if mag_column.lower().endswith("mag") else mag_column
    candidates = [
        f"e_{mag_column}",
        f"{mag_column}err",
        f"{mag_column}_err",
        f"err_{mag_column}",
        f"{mag_column}_error",
        f"e_{band}mag",
        f"{stem}magerr",
        f"{stem}_magerr",
        f"e_{band}",
        f"{band}_err",
        f"{band}err",
        f"err_{band}",
        f"{band}_error",
        f"sig_{band}",
        f"sigma_{band}",
    ]
    for candidate in dict.fromkeys(candidates):
        found = _lookup(colnames, candidate, case_sensitive=True)
        if found is not None:
            return found
    for candidate in dict.fromkeys(candidates):
        if len(band) > 1:  # single-letter bands: case carries meaning (R vs r)
            found = _lookup(colnames, candidate)
            if found is not None:
                return found
    return None


def _canonical_band(raw: str, survey_def: SurveyDefinition | None) -> str | None:
    """Map the band part of a column name onto a band of the survey (None: not one of its bands)."""
    candidates = [raw, _BAND_ALIASES.get(raw, raw)]
    if survey_def is None:
        return _BAND_ALIASES.get(raw, raw)
    names = survey_def.band_names
    for c in candidates:
        if c in names:
            return c
    if len(raw) > 1:  # BPmag vs bpmag: only multi-letter bands match without case
        lowered = [n for n in names if n.lower() == raw.lower()]
        if len(lowered) == 1:
            return lowered[0]
    return None


def _magnitude_columns(
    table: Table, survey_def: SurveyDefinition | None, skip: set[str]
) -> tuple[dict[str, tuple[str, str | None]], list[str]]:
    """Band -> (magnitude column, error column or None), and the magnitude columns ignored."""
    names = [c for c in table.colnames if c not in skip]
    found: dict[str, tuple[str, str | None]] = {}
    ignored: list[str] = []
    if survey_def is not None:  # exact Vizier names of the survey first (e.g. "g'mag")
        for bdef in survey_def.catalogue_bands:
            if bdef.mag_column is not None and bdef.mag_column in names:
                err = bdef.err_column if bdef.err_column in names else None
                found[bdef.name] = (bdef.mag_column, err or _error_column(names, bdef.mag_column, bdef.name))
    for column in names:
        if column.lower().startswith(("e_", "err", "sig")):
            continue
        match = _MAG_SUFFIX.match(column) or _MAG_PREFIX.match(column)
        if match is None:
            continue
        band = _canonical_band(match.group("band"), survey_def)
        if band is None:
            ignored.append(column)
            continue
        if band in found:
            continue
        found[band] = (column, _error_column(names, column, band))
    bare_bands = survey_def.band_names if survey_def is not None else list(_STANDARD_BANDS)
    for band in bare_bands:
        if band in found or band not in names:
            continue
        found[band] = (band, _error_column(names, band, band))
    if survey_def is not None:  # the survey's band order; a site survey keeps the file's order
        rank = {b: k for k, b in enumerate(survey_def.band_names)}
        ordered = sorted(found, key=lambda b: rank[b])
    else:
        ordered = sorted(found, key=lambda b: names.index(found[b][0]))
    return {b: found[b] for b in ordered}, ignored


def _clean(values: FloatArray, lo: float, hi: float) -> FloatArray:
    return np.where((values > lo) & (values < hi), values, np.nan)


def table_to_catalogue(
    table: Table, survey: str, filename: str = "file"
) -> tuple[ReferenceCatalogue, int, list[str]]:
    """Turn an imported table into a reference catalogue of ``survey``.

    Parameters
    ----------
    table : astropy.table.Table
    survey : str
        Known or custom survey name.
    filename : str, optional
        For messages.

    Returns
    -------
    catalogue : ReferenceCatalogue
        Stars with a valid position and at least one magnitude (derived bands added), with
        proper motions when the table has them, at the survey's position epoch (known surveys)
        or at the epoch the file states (site surveys, else ``None``).
    n_skipped : int
        Rows dropped.
    ignored_columns : list of str
        Magnitude-like columns that are not bands of the known survey.

    Raises
    ------
    cpcs.errors.InputError
        ``no_coordinate_columns``, ``no_magnitude_columns`` or ``no_valid_rows``.
    """
    survey_def = find_survey(survey)
    ra_col, dec_col = _position_columns(table, survey_def)
    pm_pair = _proper_motion_pair(table, survey_def)
    skip = {ra_col, dec_col, *(pm_pair or ())}
    columns, ignored = _magnitude_columns(table, survey_def, skip)
    if not columns:
        expected = (
            ", ".join(b.mag_column or b.name for b in survey_def.catalogue_bands)
            if survey_def is not None
            else "<band>mag with e_<band>mag, e.g. Vmag/e_Vmag"
        )
        raise InputError(
            f"{filename} has no magnitude columns usable for survey {survey}; expected {expected}",
            code="no_magnitude_columns",
        )
    n = len(table)
    if n == 0:
        raise InputError(f"{filename} holds no rows", code="no_valid_rows")
    ra_unit = str(table[ra_col].unit) if getattr(table[ra_col], "unit", None) is not None else None
    ra, dec = parse_coordinates(table[ra_col], table[dec_col], ra_unit=ra_unit)
    mags: dict[str, FloatArray] = {}
    errs: dict[str, FloatArray] = {}
    for band, (mag_col, err_col) in columns.items():
        try:
            mag = _clean(column_to_float(table[mag_col]), _MAG_MIN, _MAG_MAX)
            err = (
                _clean(column_to_float(table[err_col]), 0.0, _ERR_MAX)
                if err_col is not None
                else np.full(n, np.nan)
            )
            if survey_def is not None and survey_def.has_band(band):
                bdef = survey_def.band(band)
                if mag_col == bdef.mag_column and err_col is None:
                    # a Vizier download of the survey: its flags and flux errors apply too
                    values = band_values(bdef, table, n)
                    if values is not None:
                        mag, err = values
        except TypeError as exc:
            raise InputError(
                f"{filename}: column {mag_col} is not numeric", code="no_magnitude_columns"
            ) from exc
        mags[band] = mag
        errs[band] = np.where(np.isfinite(mag), err, np.nan)
    keep = np.isfinite(ra) & np.isfinite(dec)
    keep &= np.any(np.isfinite(np.vstack(list(mags.values()))), axis=0)
    if survey_def is not None:
        keep &= survey_row_mask(survey_def, table, equalities_only=True)
        mags, errs = survey_def.add_derived_bands(mags, errs)
    else:
        custom_survey(survey, mags)  # validates the name; bands recorded by the store
    if not keep.any():
        raise InputError(
            f"{filename}: none of its {n} rows has a valid position and a magnitude", code="no_valid_rows"
        )
    name = survey_def.name if survey_def is not None else survey
    pmra, pmdec = _read_proper_motions(table, pm_pair, filename)
    if survey_def is not None:
        read_epoch: float | None = survey_def.epoch_of_columns(ra_col)
    else:
        read_epoch = _file_epoch(table)
    cat = ReferenceCatalogue(name, ra, dec, mags, errs, pmra, pmdec, read_epoch)
    if survey_def is not None:
        cat = cat.at_epoch(survey_def.position_epoch)
    return (cat if keep.all() else cat.select(keep)), int(n - keep.sum()), ignored
