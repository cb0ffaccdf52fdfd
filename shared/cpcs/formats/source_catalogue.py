"""Read the source catalogues observers upload for calibration.

An observer measures every star on an image (usually with SExtractor) and uploads that catalogue.
:func:`read_source_catalogue` accepts

* SExtractor ``CATALOG_TYPE ASCII_HEAD`` text (and other whitespace-separated text with a line of
  column names), space or tab separated, coordinates in decimal degrees or colon-separated
  sexagesimal (right ascension in hours);
* a FITS file whose first table extension holds the sources;
* SExtractor ``FITS_LDAC`` (``LDAC_IMHEAD`` + ``LDAC_OBJECTS``), whose image header is returned too;

any of them optionally gzip-compressed. The size limits (rows, line length, values, decompressed
size) are enforced while the content streams in (:mod:`cpcs.formats._upload_limits`), so a refusal
comes before the file has been expanded or parsed whole. It returns the usable stars (sky position,
magnitude and error) as a :class:`SourceCatalogue`. :func:`check_near_position` then verifies that
the catalogue covers the alert's position.

Every problem with the upload raises :class:`cpcs.errors.InputError` with a message saying what to
fix and one of these codes: ``empty_catalogue``, ``unreadable_catalogue``, ``catalogue_too_large``,
``missing_columns``, ``duplicate_columns``, ``malformed_header``, ``malformed_rows``,
``invalid_aperture_index``, ``coordinates_out_of_range``, ``too_few_stars``, ``too_many_rows``,
``line_too_long``, ``too_many_columns``, ``no_table_in_fits``, ``corrupt_fits`` and, from
:func:`check_near_position`, ``catalogue_not_near_target``.
"""

from __future__ import annotations

import codecs
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cpcs.errors import InputError
from cpcs.formats._column_names import (
    DEC_NAMES,
    FLAGS_NAME,
    MAGNITUDE_PAIRS,
    PIXEL_NAMES,
    RA_NAMES,
    canonical_name,
)
from cpcs.formats._fits_tables import read_fits_catalogue
from cpcs.formats._raw_table import BoolArray, FloatArray, RawColumn, RawTable
from cpcs.formats._sextractor_ascii import read_sextractor_ascii
from cpcs.formats._upload_limits import MAX_DECOMPRESSED_BYTES, is_gzip, read_within_limits

__all__ = ["MAX_DECOMPRESSED_BYTES", "SourceCatalogue", "check_near_position", "read_source_catalogue"]

logger = logging.getLogger(__name__)

#: SExtractor writes 99 for a failed magnitude or error; anything this large is not a measurement.
_BAD_MAGNITUDE = 90.0
_BAD_MAGERR = 9.0

_ACCEPTED_FORMATS = (
    "SExtractor ASCII_HEAD text (space or tab separated), a FITS binary table, or SExtractor "
    "FITS_LDAC, optionally gzip-compressed"
)
_FITS_MAGIC = b"SIMPLE  ="
_FOREIGN_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive; upload the catalogue file itself (gzip compression is fine)"),
    (b"BZh", "a bzip2 archive; upload the catalogue uncompressed or gzip-compressed"),
    (b"\xfd7zXZ\x00", "an xz archive; upload the catalogue uncompressed or gzip-compressed"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive; upload the catalogue uncompressed or gzip-compressed"),
    (b"Rar!", "a RAR archive; upload the catalogue uncompressed or gzip-compressed"),
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image; images are calibrated through the image upload"),
    (b"\xff\xd8\xff", "a JPEG image; images are calibrated through the image upload"),
    (b"II*\x00", "a TIFF image; images are calibrated through the image upload"),
    (b"MM\x00*", "a TIFF image; images are calibrated through the image upload"),
    (b"XTENSION=", "a FITS extension without its primary header (a valid FITS file starts with SIMPLE)"),
)
_CONTROL_BYTES = bytes([*range(0x00, 0x09), *range(0x0E, 0x20), 0x7F])
_NOT_CONTROL_BYTES = bytes(b for b in range(256) if b not in _CONTROL_BYTES)
_MARKUP_START = re.compile(r"\s*<")
_ELEMENT_SUFFIX = re.compile(r"(.+?)\s*\[\s*(\d+)\s*\]")


@dataclass(frozen=True, eq=False)
class SourceCatalogue:
    """The usable stars of an uploaded catalogue.

    Attributes
    ----------
    ra_deg, dec_deg : ndarray of float64
        ICRS/J2000 position of each usable star in degrees, RA in [0, 360), Dec in [-90, 90].
    mag, magerr : ndarray of float64
        Instrumental magnitude and its error, from the column named by ``magnitude_column``.
    flags : ndarray of int64 or None
        SExtractor ``FLAGS`` of each usable star if the upload had that column. Rows are not
        rejected because of their flags; the calibration decides what to do with them.
    format : str
        ``"sextractor_ascii"``, ``"fits_table"`` or ``"fits_ldac"``.
    magnitude_column : str
        The magnitude used, e.g. ``"MAG_AUTO"`` or ``"MAG_APER[0]"`` (0-based aperture).
    n_rows : int
        Data rows read from the file.
    n_rejected : int
        Rows dropped: unreadable lines, NaN or infinite values, SExtractor's 99 for failed
        measurements, errors <= 0, coordinates out of range. ``n_rows - n_rejected`` equals
        ``len(mag)``.
    header : dict of str to str
        For FITS_LDAC, the cards of the image header (DATE-OBS, EXPTIME, FILTER... when present);
        empty otherwise.
    """

    ra_deg: FloatArray
    dec_deg: FloatArray
    mag: FloatArray
    magerr: FloatArray
    flags: np.ndarray | None
    format: str
    magnitude_column: str
    n_rows: int
    n_rejected: int
    header: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.mag.shape[0])


def read_source_catalogue(
    data: bytes | Path,
    *,
    filename: str | None = None,
    magnitude_column: str | None = None,
    aperture_index: int = 0,
    min_stars: int = 5,
    max_rows: int = 200_000,
) -> SourceCatalogue:
    """Read an uploaded source catalogue and keep its usable stars.

    Parameters
    ----------
    data : bytes or Path
        The uploaded file (or the path of the file holding it), possibly gzip-compressed. The
        format is recognised from the content. A file is read in chunks as the limits are checked.
    filename : str, optional
        The name the file was uploaded under; only used to make error messages more helpful.
    magnitude_column : str, optional
        The magnitude to use, e.g. ``"MAG_PSF"``, ``"MAG_APER"`` or ``"MAG_APER[2]"`` (0-based
        aperture). Its error column is found by name (``MAG_X`` -> ``MAGERR_X``). By default
        ``MAG_AUTO`` is used if present (with ``MAGERR_AUTO``), else ``MAG_APER``.
    aperture_index : int, default 0
        Which aperture of a ``MAG_APER`` vector to use (0 = first). A non-zero value names an
        aperture explicitly, so ``MAG_APER`` is then used even if ``MAG_AUTO`` exists.
    min_stars : int, default 5
        Fewest usable stars accepted.
    max_rows : int, default 200000
        Most data rows accepted.

    Returns
    -------
    SourceCatalogue

    Raises
    ------
    cpcs.errors.InputError
        For anything wrong with the upload; see the module docstring for the codes. No other
        exception escapes for any content of ``data``.
    """
    try:
        return _read(
            data if isinstance(data, Path) else bytes(data),
            filename=filename,
            magnitude_column=magnitude_column,
            aperture_index=aperture_index,
            min_stars=min_stars,
            max_rows=max_rows,
        )
    except InputError:
        raise
    except MemoryError:
        raise
    except Exception as exc:
        # A reader bug or an input no check anticipated: log it for us, report it to the user.
        logger.warning("unexpected error reading catalogue %r", filename, exc_info=True)
        raise InputError(
            f"The catalogue{_named(filename)} could not be read. Accepted formats: {_ACCEPTED_FORMATS}.",
            code="unreadable_catalogue",
        ) from exc


def check_near_position(
    catalogue: SourceCatalogue, ra_deg: float, dec_deg: float, *, margin_arcmin: float = 5.0
) -> None:
    """Check that the catalogue covers the target position.

    The target passes if it lies within ``margin_arcmin`` of at least one catalogued star and
    inside the cone that holds all the stars (centred on their mean direction, radius reaching the
    farthest star) widened by the margin. The first condition implies the second (triangle
    inequality); the cone is kept explicit as the definition of the footprint.

    Parameters
    ----------
    catalogue : SourceCatalogue
        A catalogue from :func:`read_source_catalogue`.
    ra_deg, dec_deg : float
        Target (alert) position in degrees.
    margin_arcmin : float, default 5.0
        Tolerance in arcminutes.

    Raises
    ------
    cpcs.errors.InputError
        Code ``catalogue_not_near_target`` if the target is outside the catalogue's footprint.
    ValueError
        If the target position itself is not finite (a caller bug, not a user error).
    """
    if not (math.isfinite(ra_deg) and math.isfinite(dec_deg)):
        raise ValueError(f"target position must be finite, got ({ra_deg}, {dec_deg})")
    if catalogue.ra_deg.size == 0:
        raise InputError(
            "The catalogue has no usable stars, so it cannot cover the alert position. Check the "
            "EventID and the astrometry of your image.",
            code="catalogue_not_near_target",
        )
    sources = _unit_vectors(catalogue.ra_deg, catalogue.dec_deg)
    target = _unit_vectors(np.array([ra_deg], dtype=np.float64), np.array([dec_deg], dtype=np.float64))[0]
    nearest_deg = float(np.degrees(_angle(sources, target)).min())

    centre = sources.mean(axis=0)
    norm = float(np.linalg.norm(centre))
    if norm < 1e-12:  # sources all over the sky: the cone is the whole sphere
        cone_ok = True
    else:
        centre /= norm
        radius_deg = float(np.degrees(_angle(sources, centre)).max())
        cone_ok = (
            float(np.degrees(_angle(target[np.newaxis, :], centre))[0]) <= radius_deg + margin_arcmin / 60
        )

    if nearest_deg * 60 <= margin_arcmin and cone_ok:
        return
    distance = f"{nearest_deg * 60:.1f} arcmin" if nearest_deg < 2 else f"{nearest_deg:.2f} degrees"
    raise InputError(
        f"The catalogue is {distance} from the alert position (RA {ra_deg:.5f}, Dec {dec_deg:+.5f}); "
        f"its nearest star must be within {margin_arcmin:g} arcmin. Check that you chose the right "
        "EventID and that the image's astrometry (WCS) is correct.",
        code="catalogue_not_near_target",
    )


# --------------------------------------------------------------------------------------------------
# Bytes -> table


def _named(filename: str | None) -> str:
    return f" '{filename}'" if filename else ""


def _read(
    data: bytes | Path,
    *,
    filename: str | None,
    magnitude_column: str | None,
    aperture_index: int,
    min_stars: int,
    max_rows: int,
) -> SourceCatalogue:
    compressed = is_gzip(data)
    data = read_within_limits(data, max_rows=max_rows)
    if not data or data.isspace():
        raise InputError(
            "The gzip file decompresses to nothing. Compress the catalogue file itself and upload again."
            if compressed
            else f"The uploaded catalogue{_named(filename)} is empty. Upload the catalogue file written by "
            f"SExtractor (or another tool): {_ACCEPTED_FORMATS}.",
            code="empty_catalogue",
        )

    if data.startswith(_FITS_MAGIC):
        table = read_fits_catalogue(data, max_rows=max_rows)
    else:
        table = read_sextractor_ascii(_decode_text(data, filename), max_rows=max_rows)
    return _assemble(
        table, magnitude_column=magnitude_column, aperture_index=aperture_index, min_stars=min_stars
    )


def _decode_text(data: bytes, filename: str | None) -> str:
    """Decode a text catalogue, refusing binary files with an explanation of what was received."""
    for signature, what in _FOREIGN_SIGNATURES:
        if data.startswith(signature):
            raise InputError(
                f"The uploaded file{_named(filename)} is {what}. Accepted catalogue formats: "
                f"{_ACCEPTED_FORMATS}.",
                code="unreadable_catalogue",
            )
    fits_name = bool(filename) and str(filename).lower().removesuffix(".gz").endswith(
        (".fits", ".fit", ".fts", ".ldac")
    )
    not_fits_hint = (
        " Its name ends like a FITS file, but it does not start with 'SIMPLE  =' as FITS files must."
        if fits_name
        else ""
    )
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise InputError(
            f"The catalogue{_named(filename)} is UTF-16 text. Save it as plain ASCII or UTF-8 text and "
            "upload again.",
            code="unreadable_catalogue",
        )
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    if b"\x00" in data[:65536]:
        raise InputError(
            f"The uploaded file{_named(filename)} is binary data, not a recognised catalogue.{not_fits_hint} "
            f"Accepted formats: {_ACCEPTED_FORMATS}.",
            code="unreadable_catalogue",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(
            f"The catalogue{_named(filename)} is not UTF-8 text: byte 0x{data[exc.start]:02x} on line {line} "
            f"cannot be decoded.{not_fits_hint} Save it as plain ASCII/UTF-8 text. Accepted formats: "
            f"{_ACCEPTED_FORMATS}.",
            code="unreadable_catalogue",
        ) from exc
    if data.translate(None, _NOT_CONTROL_BYTES):  # fast: keeps only control bytes
        position = min(i for i in (data.find(bytes([b])) for b in _CONTROL_BYTES) if i >= 0)
        line = data.count(b"\n", 0, position) + 1
        raise InputError(
            f"The catalogue{_named(filename)} contains binary control characters (line {line}); it is not "
            f"a text catalogue.{not_fits_hint} Accepted formats: {_ACCEPTED_FORMATS}.",
            code="unreadable_catalogue",
        )
    if _MARKUP_START.match(text):
        raise InputError(
            f"The catalogue{_named(filename)} looks like XML or HTML (a VOTable or a web page?), which is "
            f"not accepted. Accepted formats: {_ACCEPTED_FORMATS}.",
            code="unreadable_catalogue",
        )
    return text


# --------------------------------------------------------------------------------------------------
# Table -> catalogue


class _Columns:
    """Case-insensitive lookup of a table's columns by canonical name, exact spellings preferred."""

    def __init__(self, table: RawTable) -> None:
        self.table = table
        self.by_name: dict[str, list[tuple[str, RawColumn]]] = {}
        for column in table.columns:
            exact = column.name.strip().upper()
            self.by_name.setdefault(canonical_name(column.name), []).append((exact, column))

    def get(self, name: str) -> RawColumn | None:
        """The column called ``name`` (or an accepted alias of it); ``None`` if absent."""
        matches = self.by_name.get(canonical_name(name), [])
        if len(matches) > 1:
            exact = [column for spelling, column in matches if spelling == canonical_name(name)]
            if len(exact) == 1:
                return exact[0]
            spellings = ", ".join(column.name for _, column in matches)
            raise InputError(
                f"The catalogue has more than one column called {canonical_name(name)} ({spellings}), so "
                "it is ambiguous which to use. Give each column a distinct name (check the SExtractor "
                ".param file for a parameter listed twice).",
                code="duplicate_columns",
            )
        return matches[0][1] if matches else None

    def element(self, name: str) -> tuple[RawColumn, int] | None:
        """Find ``name`` among the per-element names of grouped vectors (``MAG_APER_2``)."""
        wanted = name.strip().upper()
        for column in self.table.columns:
            for index, element_name in enumerate(column.element_names):
                if element_name.upper() == wanted:
                    return column, index
        return None

    def names(self) -> str:
        shown = [c.name for c in self.table.columns[:40]]
        more = len(self.table.columns) - len(shown)
        return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


@dataclass(frozen=True)
class _Magnitude:
    mag: RawColumn
    err: RawColumn
    element: int
    label: str


def _assemble(
    table: RawTable, *, magnitude_column: str | None, aperture_index: int, min_stars: int
) -> SourceCatalogue:
    columns = _Columns(table)
    ra_column, dec_column = _coordinate_columns(columns)
    magnitude = _magnitude_columns(columns, magnitude_column, aperture_index)
    flags_column = columns.get(FLAGS_NAME)
    if flags_column is not None and flags_column.width != 1:
        flags_column = None
    for role, column in (("right ascension", ra_column), ("declination", dec_column)):
        if column.width != 1:
            raise InputError(
                f"The {role} column {column.name} holds {column.width} values per row instead of one. "
                "Sexagesimal coordinates must be written with colons (12:34:56.7 +12:34:56), not spaces; "
                "otherwise check that the header numbering matches the data.",
                code="malformed_rows",
            )

    ra, ra_bad = ra_column.load(0, "ra")
    dec, dec_bad = dec_column.load(0, "dec")
    mag, mag_bad = magnitude.mag.load(magnitude.element, "number")
    err_element = magnitude.element if magnitude.err.width > 1 else 0
    magerr, err_bad = magnitude.err.load(err_element, "number")
    junk = ra_bad | dec_bad | mag_bad | err_bad
    flags: np.ndarray | None = None
    if flags_column is not None:
        flag_values, flags_bad = flags_column.load(0, "number")
        with np.errstate(invalid="ignore"):
            flags_bad |= ~np.isfinite(flag_values) | (flag_values != np.round(flag_values))
        junk |= flags_bad
        flags = np.where(flags_bad, 0, flag_values).astype(np.int64)

    n_rows = table.n_rows
    n_junk = table.n_skipped + int(junk.sum())
    if n_junk * 2 > n_rows:
        raise InputError(
            f"{n_junk} of {n_rows} data rows could not be read ({_first_bad(table, junk)}). Every data row "
            "must hold the same number of whitespace-separated numeric values as the header declares; "
            "sexagesimal coordinates must use colons and decimals a point, not a comma.",
            code="malformed_rows",
        )

    finite = np.isfinite(ra) & np.isfinite(dec)
    with np.errstate(invalid="ignore"):
        outside = finite & ((ra < 0) | (ra >= 360) | (dec < -90) | (dec > 90))
    n_located = int((finite & ~junk).sum())
    n_outside = int((outside & ~junk).sum())
    if n_outside and n_outside * 2 > n_located:
        raise _out_of_range(ra_column, dec_column, ra, dec, outside & ~junk, n_outside, n_located)

    all_finite = finite & np.isfinite(mag) & np.isfinite(magerr)
    with np.errstate(invalid="ignore"):
        failed = all_finite & (np.abs(mag) >= _BAD_MAGNITUDE)
        bad_error = all_finite & ~failed & ((magerr <= 0) | (magerr >= _BAD_MAGERR))
    usable = all_finite & ~junk & ~outside & ~failed & ~bad_error
    n_usable = int(usable.sum())
    if n_usable < min_stars:
        reasons = {
            "unreadable rows": n_junk,
            "rows with NaN or infinite values": int((~all_finite & ~junk).sum()),
            "rows with coordinates out of range": int((outside & ~junk).sum()),
            "failed measurements (magnitude 99 written by SExtractor)": int(
                (failed & ~junk & ~outside).sum()
            ),
            "magnitude errors <= 0 or >= 9": int((bad_error & ~junk & ~outside).sum()),
        }
        detail = ", ".join(f"{count} {reason}" for reason, count in reasons.items() if count)
        raise InputError(
            f"Only {n_usable} usable star{'s' if n_usable != 1 else ''} found in {n_rows} rows"
            + (f" (rejected: {detail})" if detail else "")
            + f"; at least {min_stars} are needed. Upload the catalogue of all stars measured on the image, "
            f"with valid {magnitude.label} values and errors.",
            code="too_few_stars",
        )

    def take(values: np.ndarray) -> np.ndarray:
        kept = np.ascontiguousarray(values[usable])
        kept.setflags(write=False)
        return kept

    return SourceCatalogue(
        ra_deg=take(ra),
        dec_deg=take(dec),
        mag=take(mag),
        magerr=take(magerr),
        flags=None if flags is None else take(flags),
        format=table.format,
        magnitude_column=magnitude.label,
        n_rows=n_rows,
        n_rejected=n_rows - n_usable,
        header=dict(table.header),
    )


def _first_bad(table: RawTable, junk: BoolArray) -> str:
    candidates: list[tuple[int, str]] = []
    if table.first_skipped is not None:
        candidates.append(table.first_skipped)
    if junk.any():
        position, description = table.describe_row(int(np.argmax(junk)))
        candidates.append((position, f"first unreadable value at {description}"))
    return min(candidates)[1] if candidates else "no detail available"


def _coordinate_columns(columns: _Columns) -> tuple[RawColumn, RawColumn]:
    # Matching pairs first, in order of preference, looking no further than needed (so that a
    # duplicated column of a lower preference does not matter).
    for ra_name, dec_name in zip(RA_NAMES, DEC_NAMES, strict=True):
        ra, dec = columns.get(ra_name), columns.get(dec_name)
        if ra is not None and dec is not None:
            return ra, dec
    found_ra = [columns.get(name) for name in RA_NAMES]
    found_dec = [columns.get(name) for name in DEC_NAMES]
    ra = next((c for c in found_ra if c is not None), None)
    dec = next((c for c in found_dec if c is not None), None)
    if ra is not None and dec is not None:
        return ra, dec

    missing = []
    if ra is None:
        missing.append(f"right ascension (accepted names: {', '.join(RA_NAMES)})")
    if dec is None:
        missing.append(f"declination (accepted names: {', '.join(DEC_NAMES)})")
    pixel = [name for name in PIXEL_NAMES if columns.get(name) is not None]
    hint = (
        f" {'/'.join(pixel)} are pixel positions; CPCS needs sky coordinates: add ALPHA_J2000 and "
        "DELTA_J2000 to the SExtractor .param file (the image needs an astrometric solution, WCS)."
        if pixel
        else " Add ALPHA_J2000 and DELTA_J2000 to the SExtractor .param file."
    )
    raise InputError(
        f"The catalogue has no {' and no '.join(missing)} column. Columns found: {columns.names()}.{hint}",
        code="missing_columns",
    )


def _magnitude_columns(columns: _Columns, requested: str | None, aperture_index: int) -> _Magnitude:
    if isinstance(aperture_index, bool) or not isinstance(aperture_index, int) or aperture_index < 0:
        raise InputError(
            "The aperture_index must be a whole number >= 0 (0 = first MAG_APER aperture), "
            f"got {aperture_index!r}.",
            code="invalid_aperture_index",
        )
    if requested is not None and requested.strip():
        return _requested_magnitude(columns, requested.strip(), aperture_index)

    pairs = MAGNITUDE_PAIRS
    if aperture_index:
        pairs = tuple(pair for pair in MAGNITUDE_PAIRS if pair[0] == "MAG_APER")
        if columns.get("MAG_APER") is None:
            raise InputError(
                f"Aperture {aperture_index} was requested (aperture_index) but the catalogue has no "
                f"MAG_APER column (columns found: {columns.names()}). Add MAG_APER and MAGERR_APER to "
                "the SExtractor .param file, or leave the aperture unset to use MAG_AUTO.",
                code="invalid_aperture_index",
            )
    for mag_name, err_name in pairs:
        mag = columns.get(mag_name)
        err = columns.get(err_name)
        if mag is not None and err is not None:
            return _pick_element(mag, err, mag_name, aperture_index, explicit=False)

    wanted = " or ".join(f"{m} with {e}" for m, e in pairs)
    present = [name for pair in pairs for name in pair if columns.get(name) is not None]
    partial = f" Found {', '.join(present)} but not its error column." if present else ""
    raise InputError(
        f"The catalogue has no usable magnitude: it needs {wanted}.{partial} Columns found: "
        f"{columns.names()}. Add these parameters to the SExtractor .param file, or name the magnitude "
        "column to use in the upload form.",
        code="missing_columns",
    )


def _requested_magnitude(columns: _Columns, requested: str, aperture_index: int) -> _Magnitude:
    element: int | None = None
    name = requested
    match = _ELEMENT_SUFFIX.fullmatch(requested)
    if match:
        name, element = match.group(1), int(match.group(2))
    mag = columns.get(name)
    if mag is None:
        found = columns.element(name)
        if found is not None and element is None:
            mag, element = found
    if mag is None:
        raise InputError(
            f"The requested magnitude column {requested!r} is not in the catalogue. Columns found: "
            f"{columns.names()}. Choose one of them (e.g. MAG_AUTO or MAG_APER[0]).",
            code="missing_columns",
        )
    base = canonical_name(mag.name)
    candidates = _error_names(base)
    err = next((c for c in (columns.get(n) for n in candidates) if c is not None), None)
    if err is None:
        raise InputError(
            f"No error column found for the magnitude {mag.name}: expected one of {', '.join(candidates)}. "
            f"Columns found: {columns.names()}.",
            code="missing_columns",
        )
    if element is not None:
        return _pick_element(mag, err, base, element, explicit=True)
    return _pick_element(mag, err, base, aperture_index, explicit=False)


def _error_names(mag_name: str) -> list[str]:
    """Names the error of magnitude column ``mag_name`` may have, most likely first."""
    names = []
    if mag_name.startswith("MAG_"):
        names.append("MAGERR_" + mag_name[4:])
    if mag_name == "MAG":
        names.append("MAGERR")
    names += [f"{mag_name}ERR", f"{mag_name}_ERR", f"{mag_name}_ERROR", f"E_{mag_name}", f"ERR_{mag_name}"]
    return names


def _pick_element(mag: RawColumn, err: RawColumn, base: str, index: int, *, explicit: bool) -> _Magnitude:
    """Choose element ``index`` of ``mag``; ``explicit`` if the user wrote it as ``NAME[index]``."""
    if mag.width == 1:
        if index and not explicit and base != "MAG_APER":
            index = 0  # aperture_index only concerns aperture vectors
        elif index:
            raise InputError(
                f"Aperture {index} was requested but {mag.name} holds a single aperture (index 0). "
                "Use aperture 0 or write all apertures (PHOT_APERTURES) to the catalogue.",
                code="invalid_aperture_index",
            )
    elif index >= mag.width:
        raise InputError(
            f"Aperture {index} was requested but {mag.name} holds {mag.width} apertures (indices 0 to "
            f"{mag.width - 1}). Choose one of those.",
            code="invalid_aperture_index",
        )
    if err.width != mag.width and err.width != 1:
        raise InputError(
            f"{mag.name} holds {mag.width} values per row but its error column {err.name} holds "
            f"{err.width}; they must match aperture by aperture.",
            code="malformed_rows",
        )
    if err.width == 1 and mag.width > 1:
        raise InputError(
            f"{mag.name} holds {mag.width} apertures but its error column {err.name} only one, so the "
            "errors cannot be paired with the apertures. Write MAGERR_APER for every aperture too.",
            code="missing_columns",
        )
    label = f"{base}[{index}]" if (mag.width > 1 or base == "MAG_APER") else base
    return _Magnitude(mag=mag, err=err, element=index, label=label)


def _out_of_range(
    ra_column: RawColumn,
    dec_column: RawColumn,
    ra: FloatArray,
    dec: FloatArray,
    outside: BoolArray,
    n_outside: int,
    n_located: int,
) -> InputError:
    example = int(np.argmax(outside))
    ra_values, dec_values = ra[outside], dec[outside]
    largest = max(float(np.max(np.abs(ra_values))), float(np.max(np.abs(dec_values))))
    hints = []
    if largest > 360:
        hints.append(
            "values beyond 360 look like pixel positions (X_IMAGE/Y_IMAGE), to be replaced by the "
            "ALPHA_J2000/DELTA_J2000 sky coordinates, or like a sexagesimal RA written in degrees "
            "instead of hours"
        )
    elif float(np.max(np.abs(dec_values))) > 90:
        hints.append(
            "Dec beyond +/-90 degrees: check that RA and Dec are not swapped and that both are sky "
            "coordinates in degrees"
        )
    if float(np.min(ra_values)) < 0:
        hints.append("RA must be given in [0, 360) degrees, not as negative angles")
    if not hints:
        hints.append("check that the columns are sky coordinates in degrees, not pixels or radians")
    return InputError(
        f"{n_outside} of {n_located} rows have coordinates outside RA [0, 360) / Dec [-90, 90] degrees "
        f"(e.g. {ra_column.name}={ra[example]:g}, {dec_column.name}={dec[example]:g}); "
        + "; ".join(hints)
        + ". Coordinates must be decimal degrees or colon-separated sexagesimal (RA in hours).",
        code="coordinates_out_of_range",
    )


def _unit_vectors(ra_deg: FloatArray, dec_deg: FloatArray) -> FloatArray:
    ra = np.radians(ra_deg)
    dec = np.radians(dec_deg)
    cos_dec = np.cos(dec)
    return np.stack([cos_dec * np.cos(ra), cos_dec * np.sin(ra), np.sin(dec)], axis=-1)


def _angle(vectors: FloatArray, direction: FloatArray) -> FloatArray:
    """Angle in radians between each row of ``vectors`` and ``direction`` (all unit vectors)."""
    cross = np.linalg.norm(np.cross(vectors, direction), axis=-1)
    dot = vectors @ direction
    return np.arctan2(cross, dot)
