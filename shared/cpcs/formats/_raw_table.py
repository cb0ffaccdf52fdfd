"""Format-neutral view of an uploaded table, shared by the ASCII and FITS readers.

Each reader turns its input into a :class:`RawTable`: the column names as written in the file
(vectors already grouped), how many values each column holds per row, and a loader that converts
one element of one column to ``float64`` on demand. Only the handful of columns the calibration
needs are ever converted, which keeps wide catalogues cheap.

Nothing in this module raises for bad *values*: unparsable cells come back as NaN with a ``bad``
flag so the caller can count them and decide whether the file as a whole is unusable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: How a cell is interpreted: a plain number, a right ascension (decimal degrees or ``hh:mm:ss``),
#: or a declination (decimal degrees or ``±dd:mm:ss``).
ValueKind = Literal["number", "ra", "dec"]

#: ``load(element, kind) -> (values, bad)``: ``values`` float64 of shape ``(n,)``, ``bad`` flags cells
#: that could not be read as a number at all (as opposed to NaN written in the file).
Loader = Callable[[int, ValueKind], tuple[FloatArray, BoolArray]]


@dataclass(frozen=True)
class RawColumn:
    """One column of the uploaded table.

    Attributes
    ----------
    name : str
        The name as written in the file (original case; for grouped vectors the base name).
    width : int
        Number of values per row (1 for a scalar column, ``k`` for a vector such as ``MAG_APER``).
    load : Loader
        Converts element ``0 <= element < width`` to float64.
    element_names : tuple of str
        For vectors written as one header line per element (``MAG_APER_2`` ...), the original names
        of the elements in order; empty otherwise.
    """

    name: str
    width: int
    load: Loader
    element_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class RawTable:
    """The columns of an upload plus what the reader learnt about its rows.

    Attributes
    ----------
    format : str
        ``"sextractor_ascii"``, ``"fits_table"`` or ``"fits_ldac"``.
    columns : list of RawColumn
        In file order.
    n_rows : int
        Data rows read, including rows the reader had to skip (``n_skipped``).
    n_loaded : int
        Rows the loaders return values for (``n_rows - n_skipped``).
    n_skipped : int
        Rows dropped by the reader itself (e.g. text lines with the wrong number of values).
    first_skipped : tuple of (int, str) or None
        Position (line or row number) and human description of the first skipped row, for messages.
    describe_row : callable
        Maps a loaded-row index to its position (line number for text, row number for FITS) and a
        human description such as ``"line 12: '...'"``.
    header : dict of str to str
        Image header cards (FITS-LDAC), else empty.
    """

    format: str
    columns: list[RawColumn]
    n_rows: int
    n_loaded: int
    n_skipped: int
    first_skipped: tuple[int, str] | None
    describe_row: Callable[[int], tuple[int, str]]
    header: dict[str, str] = field(default_factory=dict)


def parse_tokens(tokens: Sequence[str], kind: ValueKind) -> tuple[FloatArray, BoolArray]:
    """Convert text cells to float64.

    Parameters
    ----------
    tokens : sequence of str
        The cells, one per row, without surrounding whitespace.
    kind : {"number", "ra", "dec"}
        For ``"ra"`` and ``"dec"`` a column in which any cell contains a colon is read as
        sexagesimal: right ascension in hours (``hh:mm:ss.s``, converted to degrees) and
        declination in degrees (``±dd:mm:ss``). Otherwise cells are decimal numbers.

    Returns
    -------
    values : ndarray of float64
        NaN where a cell is not a number.
    bad : ndarray of bool
        True where a cell is not a number (a literal ``nan`` in the file is *not* bad).
    """
    n = len(tokens)
    if kind != "number" and ":" in "".join(tokens):
        return _parse_sexagesimal(tokens, hours=(kind == "ra"))
    try:
        # numpy parses a list of str straight to float64, ~3x faster than astype on a str array.
        return np.array(tokens, dtype=np.float64).reshape(n), np.zeros(n, dtype=bool)
    except ValueError:
        pass
    # Slow path, only when some cell is junk: convert one by one.
    values = np.full(n, np.nan, dtype=np.float64)
    bad = np.zeros(n, dtype=bool)
    for i, token in enumerate(tokens):
        try:
            values[i] = float(token)
        except ValueError:
            bad[i] = True
    return values, bad


def _parse_sexagesimal(tokens: Sequence[str], *, hours: bool) -> tuple[FloatArray, BoolArray]:
    """Read ``[±]a:b[:c]`` cells; ``hours`` scales the result by 15 (right ascension)."""
    n = len(tokens)
    values = np.full(n, np.nan, dtype=np.float64)
    bad = np.zeros(n, dtype=bool)
    for i, token in enumerate(tokens):
        text = token.strip()
        negative = text.startswith("-")
        parts = text.lstrip("+-").split(":")
        try:
            if not 2 <= len(parts) <= 3:
                raise ValueError(token)
            numbers = [float(p) for p in parts]
        except ValueError:
            bad[i] = True
            continue
        whole = numbers[0]
        minutes = numbers[1]
        seconds = numbers[2] if len(numbers) == 3 else 0.0
        if not (whole >= 0 and 0 <= minutes < 60 and 0 <= seconds < 60):
            bad[i] = True
            continue
        value = whole + minutes / 60.0 + seconds / 3600.0
        if negative:
            value = -value
        values[i] = value * 15.0 if hours else value
    return values, bad
