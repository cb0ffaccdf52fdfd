"""Reader for FITS catalogues: plain binary/ASCII table extensions and SExtractor's FITS_LDAC.

FITS_LDAC files hold, per extracted image, a ``LDAC_IMHEAD`` table whose single cell is the image
header (80-character cards, either one long string or an ``(80, n)`` character array) followed by the
``LDAC_OBJECTS`` table of sources. Several pairs (one per chip of a mosaic) are read as one catalogue.
Any other FITS file is read from its first table extension.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from astropy.io import fits

from cpcs.errors import InputError
from cpcs.formats._raw_table import (
    BoolArray,
    FloatArray,
    Loader,
    RawColumn,
    RawTable,
    ValueKind,
    parse_tokens,
)

_TableHDU = fits.BinTableHDU | fits.TableHDU
_AnyHDU = Any  # astropy's HDU classes share no public base class worth naming
_MAX_HDUS = 64
_ACCEPTED = "SExtractor ASCII_HEAD text, a FITS binary table or SExtractor FITS_LDAC"


def read_fits_catalogue(data: bytes, *, max_rows: int) -> RawTable:
    """Parse a FITS file holding a source table.

    Parameters
    ----------
    data : bytes
        The whole file, starting with ``SIMPLE  =``.
    max_rows : int
        Refuse tables with more rows than this (checked from the header, before reading data).

    Returns
    -------
    RawTable
        ``format`` is ``"fits_ldac"`` when an ``LDAC_OBJECTS`` extension exists, else ``"fits_table"``.

    Raises
    ------
    InputError
        ``corrupt_fits`` (truncated or unparsable structure), ``no_table_in_fits``,
        ``too_many_rows``, ``unreadable_catalogue``.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hdus = _open_hdus(data)
        header_trouble = any(
            "Error validating header" in str(w.message) or "truncated" in str(w.message) for w in caught
        )
        try:
            return _read_tables(data, hdus, header_trouble=header_trouble, max_rows=max_rows)
        except InputError:
            raise
        except Exception as exc:
            # astropy parses header values lazily: a damaged card surfaces here, not in fits.open.
            raise _corrupt(f"a header or table cannot be parsed ({_short(exc)})") from exc


def _open_hdus(data: bytes) -> list[_AnyHDU]:
    """Read the headers one by one, refusing sizes that would make astropy loop or over-allocate.

    astropy trusts NAXISn/PCOUNT to find the next header; a negative or absurd value (a damaged
    file) could make it read the same headers again forever. HDUs are therefore loaded lazily and
    their header offsets must strictly increase.
    """
    try:
        hdul = fits.open(io.BytesIO(data), memmap=False, lazy_load_hdus=True)
        hdus: list[_AnyHDU] = []
        last_offset = -1
        for hdu in hdul:
            offset = int(hdu.fileinfo()["hdrLoc"])
            if offset <= last_offset or offset >= len(data):
                raise _corrupt("its header sizes are inconsistent")
            last_offset = offset
            _check_sizes(hdu)
            hdus.append(hdu)
            if len(hdus) > _MAX_HDUS:
                raise _corrupt(f"it has more than {_MAX_HDUS} extensions")
    except InputError:
        raise
    except Exception as exc:
        raise _corrupt(f"its headers cannot be parsed ({_short(exc)})") from exc
    return hdus


def _check_sizes(hdu: _AnyHDU) -> None:
    """Raise ``corrupt_fits`` unless the size keywords are sane non-negative integers."""
    header = hdu.header
    for keyword in (
        "NAXIS",
        *(f"NAXIS{i}" for i in range(1, 1 + int(header.get("NAXIS", 0)))),
        "PCOUNT",
        "GCOUNT",
    ):
        value = header.get(keyword, 0 if keyword != "GCOUNT" else 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _corrupt(f"its header keyword {keyword} = {value!r} is not a non-negative integer")


def _read_tables(data: bytes, hdus: list[_AnyHDU], *, header_trouble: bool, max_rows: int) -> RawTable:
    # (CompImageHDU derives from BinTableHDU in astropy < 7: a tile-compressed image is no table.)
    tables = [hdu for hdu in hdus if isinstance(hdu, _TableHDU) and not isinstance(hdu, fits.CompImageHDU)]
    if not tables:
        if header_trouble:
            raise _corrupt("it ends in the middle of a header or holds a damaged header")
        raise _no_table(hdus)

    ldac_objects = [hdu for hdu in tables if hdu.name == "LDAC_OBJECTS"]
    others = [hdu for hdu in tables if hdu.name != "LDAC_IMHEAD"]
    if not ldac_objects and len(others) < len(tables):
        raise _corrupt("it is a FITS_LDAC file (it has LDAC_IMHEAD) but its LDAC_OBJECTS table is missing")
    chosen = ldac_objects or others[:1]
    fmt = "fits_ldac" if ldac_objects else "fits_table"

    n_rows = sum(int(hdu.header.get("NAXIS2", 0)) for hdu in chosen)
    if n_rows > max_rows:
        raise InputError(
            f"The FITS table has {n_rows} rows; at most {max_rows} are accepted. Keep only the useful "
            "stars (e.g. raise SExtractor's DETECT_THRESH or cut faint sources) and upload again.",
            code="too_many_rows",
        )
    for hdu in chosen:
        _check_complete(hdu, len(data))
    try:
        datas = [hdu.data for hdu in chosen]
    except Exception as exc:
        raise _corrupt(f"its table data cannot be read ({_short(exc)})") from exc

    header: dict[str, str] = {}
    if ldac_objects:
        imhead = next((hdu for hdu in tables if hdu.name == "LDAC_IMHEAD"), None)
        if imhead is not None:
            _check_complete(imhead, len(data))
            header = _ldac_header(imhead)

    columns = _columns(chosen, datas)

    def describe_row(index: int) -> tuple[int, str]:
        return index + 1, f"table row {index + 1}"

    return RawTable(
        format=fmt,
        columns=columns,
        n_rows=n_rows,
        n_loaded=n_rows,
        n_skipped=0,
        first_skipped=None,
        describe_row=describe_row,
        header=header,
    )


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:120]


def _corrupt(reason: str) -> InputError:
    return InputError(
        f"The FITS file is damaged: {reason}. It was probably truncated during upload or export; "
        "write the catalogue again and re-upload the complete file.",
        code="corrupt_fits",
    )


def _no_table(hdus: Sequence[object]) -> InputError:
    shapes = [tuple(getattr(hdu, "shape", ()) or ()) for hdu in hdus if getattr(hdu, "is_image", False)]
    shape = next((s for s in shapes if s), None)
    if shape is not None:
        found = f"an image ({' x '.join(str(n) for n in reversed(shape))} pixels) and no table"
    else:
        found = "no table"
    return InputError(
        f"This FITS file contains {found}. Images are calibrated through the image upload; here upload "
        f"the source catalogue measured on it ({_ACCEPTED}).",
        code="no_table_in_fits",
    )


def _check_complete(hdu: fits.BinTableHDU | fits.TableHDU, file_size: int) -> None:
    """Raise ``corrupt_fits`` if the table's data run past the end of the file."""
    info = hdu.fileinfo()
    if not info:
        return
    header = hdu.header
    needed = (
        int(info["datLoc"])
        + int(header.get("NAXIS1", 0)) * int(header.get("NAXIS2", 0))
        + int(header.get("PCOUNT", 0))
    )
    if needed > file_size:
        raise _corrupt(
            f"the table '{hdu.name or 'extension'}' needs {needed} bytes but the file has only {file_size}"
        )


def _columns(hdus: list[fits.BinTableHDU | fits.TableHDU], datas: list[fits.FITS_rec]) -> list[RawColumn]:
    names = [list(hdu.columns.names) for hdu in hdus]
    if any(other != names[0] for other in names[1:]):
        raise InputError(
            "The FITS_LDAC file holds several LDAC_OBJECTS tables with different columns. Upload one "
            "catalogue per image, or write all tables with the same SExtractor parameter file.",
            code="unreadable_catalogue",
        )
    columns = []
    for index, name in enumerate(names[0]):
        try:
            fields = [np.asarray(data.field(index)) for data in datas]
        except Exception as exc:
            # astropy converts a column as a whole (e.g. a FITS ASCII-table cell that is not a number):
            # harmless unless the column is needed, then it is reported.
            columns.append(RawColumn(name=name, width=1, load=_broken_loader(name, exc)))
            continue
        first = fields[0]
        width = int(np.prod(first.shape[1:])) if first.ndim > 1 else 1
        columns.append(RawColumn(name=name, width=max(width, 1), load=_loader(fields)))
    return columns


def _broken_loader(name: str, exc: Exception) -> Loader:
    def load(element: int, kind: ValueKind) -> tuple[FloatArray, BoolArray]:
        raise _corrupt(f"its column {name} cannot be read ({_short(exc)})") from exc

    return load


def _loader(fields: list[np.ndarray]) -> Loader:
    def load(element: int, kind: ValueKind) -> tuple[FloatArray, BoolArray]:
        parts = []
        for field in fields:
            values = field.reshape(field.shape[0], -1)[:, element] if field.ndim > 1 else field
            parts.append(values)
        values = np.concatenate(parts) if len(parts) > 1 else parts[0]
        n = values.shape[0]
        if values.dtype.kind == "S":
            values = np.char.decode(values, "ascii", errors="replace")
        if values.dtype.kind == "U":
            return parse_tokens(np.char.strip(values).tolist(), kind)
        if values.dtype.kind in "biuf":
            return values.astype(np.float64), np.zeros(n, dtype=bool)
        return np.full(n, np.nan), np.ones(n, dtype=bool)

    return load


def _ldac_header(imhead: fits.BinTableHDU | fits.TableHDU) -> dict[str, str]:
    """The image header stored in an ``LDAC_IMHEAD`` cell, as keyword -> value text."""
    try:
        cell = np.asarray(imhead.data.field(0)[0])
    except Exception:
        return {}
    items = [cell.item()] if cell.ndim == 0 else cell.ravel().tolist()
    texts = [item.decode("ascii", "replace") if isinstance(item, bytes) else str(item) for item in items]
    if len(texts) == 1:
        text = texts[0]
        text = text.ljust(-(-len(text) // 80) * 80)
    else:
        text = "".join(t.ljust(80) for t in texts)

    header: dict[str, str] = {}
    for start in range(0, len(text), 80):
        image = text[start : start + 80]
        if image.rstrip() == "END":
            break
        try:
            card = fits.Card.fromstring(image)
            keyword = card.keyword
            value = card.value
        except Exception:
            continue
        if not keyword or keyword in ("COMMENT", "HISTORY", "CONTINUE") or keyword in header:
            continue
        if isinstance(value, bool):
            header[keyword] = "T" if value else "F"
        elif isinstance(value, fits.card.Undefined):
            header[keyword] = ""
        else:
            header[keyword] = str(value)
    return header
