"""The reference catalogue: positions and per-band magnitudes of reference stars of one survey.

A :class:`ReferenceCatalogue` is a set of equal-length float64 columns: ``ra_deg``/``dec_deg``
(ICRS, degrees; see :mod:`cpcs.catalogs.surveys` for the epoch of each survey's positions) and,
for each band, a magnitude and its 1-sigma error. NaN means "no value". It is immutable; every
operation returns a new catalogue.

This module also holds the small column helpers shared by the importer and the Vizier parser
(turning table columns with masks, empty cells or sexagesimal strings into float arrays) and the
wire format used between services (:func:`to_wire`, :func:`from_wire`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from cpcs.errors import InputError

__all__ = [
    "WIRE_VERSION",
    "BoolArray",
    "FloatArray",
    "ReferenceCatalogue",
    "angular_separation_deg",
    "column_to_float",
    "concatenate",
    "cone_mask",
    "from_wire",
    "parse_coordinates",
    "to_wire",
]

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

#: Version of the JSON layout written by :func:`to_wire`.
WIRE_VERSION = 1

# Magnitudes are sent with 0.01 mmag resolution: far below any catalogue's precision.
_WIRE_MAG_DECIMALS = 5


def _as_column(values: ArrayLike, name: str) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"column {name!r} must be one-dimensional, got shape {array.shape}")
    return array


@dataclass(frozen=True, eq=False)
class ReferenceCatalogue:
    """Reference stars of one survey.

    Parameters
    ----------
    survey : str
        Survey name (``"APASS"``, ``"PS1"``, ``"SDSS"``, ``"2MASS"``, ``"GaiaSP"``, ``"Gaia"`` or a
        site's custom survey).
    ra_deg, dec_deg : ndarray of float64
        ICRS right ascension in [0, 360) and declination, degrees.
    mags : dict of str to ndarray
        Band name to magnitude; NaN where the star has no value.
    errs : dict of str to ndarray
        Band name to 1-sigma magnitude error; NaN where unknown. Filled with NaN for any band of
        ``mags`` it lacks; it may not name a band absent from ``mags``.

    Raises
    ------
    ValueError
        When columns have different lengths or are not one-dimensional.
    """

    survey: str
    ra_deg: FloatArray
    dec_deg: FloatArray
    mags: dict[str, FloatArray] = field(default_factory=dict)
    errs: dict[str, FloatArray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ra = _as_column(self.ra_deg, "ra_deg")
        dec = _as_column(self.dec_deg, "dec_deg")
        n = ra.shape[0]
        if dec.shape[0] != n:
            raise ValueError(f"ra_deg has {n} values but dec_deg has {dec.shape[0]}")
        unknown = set(self.errs) - set(self.mags)
        if unknown:
            raise ValueError(f"errors given for bands without magnitudes: {sorted(unknown)}")
        mags: dict[str, FloatArray] = {}
        errs: dict[str, FloatArray] = {}
        for band, values in self.mags.items():
            column = _as_column(values, f"mag {band}")
            if column.shape[0] != n:
                raise ValueError(f"band {band!r} has {column.shape[0]} magnitudes for {n} stars")
            mags[band] = column
            if band in self.errs:
                err = _as_column(self.errs[band], f"err {band}")
                if err.shape[0] != n:
                    raise ValueError(f"band {band!r} has {err.shape[0]} errors for {n} stars")
            else:
                err = np.full(n, np.nan)
            errs[band] = err
        object.__setattr__(self, "ra_deg", ra)
        object.__setattr__(self, "dec_deg", dec)
        object.__setattr__(self, "mags", mags)
        object.__setattr__(self, "errs", errs)

    def __len__(self) -> int:
        return int(self.ra_deg.shape[0])

    def __repr__(self) -> str:
        return f"ReferenceCatalogue(survey={self.survey!r}, n={len(self)}, bands={self.bands})"

    @property
    def bands(self) -> list[str]:
        """Band names, in the catalogue's order."""
        return list(self.mags)

    @classmethod
    def empty(cls, survey: str, bands: Iterable[str] = ()) -> ReferenceCatalogue:
        """Return a catalogue with no stars.

        Parameters
        ----------
        survey : str
            Survey name.
        bands : iterable of str, optional
            Bands the (empty) catalogue declares.

        Returns
        -------
        ReferenceCatalogue
        """
        none = np.empty(0, dtype=np.float64)
        return cls(survey, none, none.copy(), {b: none.copy() for b in bands}, {})

    def select(self, mask_or_index: ArrayLike | slice) -> ReferenceCatalogue:
        """Return the stars picked by a boolean mask, an index array or a slice.

        Parameters
        ----------
        mask_or_index : array_like of bool or int, or slice
            A boolean mask of length ``len(self)`` or integer indices (a copy is returned).

        Returns
        -------
        ReferenceCatalogue
        """
        key: Any
        if isinstance(mask_or_index, slice):
            key = mask_or_index
        else:
            key = np.asarray(mask_or_index)
            if key.dtype == np.bool_:
                if key.shape != (len(self),):
                    raise ValueError(f"mask has shape {key.shape}, catalogue has {len(self)} stars")
            elif key.size == 0:
                key = key.astype(np.intp)
            elif not np.issubdtype(key.dtype, np.integer):
                raise TypeError(f"cannot select with an array of dtype {key.dtype}")
        return ReferenceCatalogue(
            self.survey,
            self.ra_deg[key],
            self.dec_deg[key],
            {b: m[key] for b, m in self.mags.items()},
            {b: e[key] for b, e in self.errs.items()},
        )

    def with_survey(self, survey: str) -> ReferenceCatalogue:
        """Return the same stars labelled with another survey name."""
        return ReferenceCatalogue(survey, self.ra_deg, self.dec_deg, dict(self.mags), dict(self.errs))


def _nans(n: int) -> FloatArray:
    return np.full(n, np.nan)


def concatenate(catalogues: Sequence[ReferenceCatalogue], survey: str | None = None) -> ReferenceCatalogue:
    """Stack catalogues of the same survey; a band missing from one part is NaN there.

    Parameters
    ----------
    catalogues : sequence of ReferenceCatalogue
        Parts to stack, at least one unless ``survey`` is given.
    survey : str, optional
        Survey name of the result (default: that of the first part).

    Returns
    -------
    ReferenceCatalogue
    """
    if not catalogues:
        if survey is None:
            raise ValueError("nothing to concatenate and no survey name given")
        return ReferenceCatalogue.empty(survey)
    name = survey if survey is not None else catalogues[0].survey
    if len(catalogues) == 1:
        only = catalogues[0]
        return only if only.survey == name else only.with_survey(name)
    bands: list[str] = []
    for cat in catalogues:
        bands.extend(b for b in cat.mags if b not in bands)
    ra = np.concatenate([c.ra_deg for c in catalogues])
    dec = np.concatenate([c.dec_deg for c in catalogues])
    mags: dict[str, FloatArray] = {}
    errs: dict[str, FloatArray] = {}
    for band in bands:
        mags[band] = np.concatenate([c.mags[band] if band in c.mags else _nans(len(c)) for c in catalogues])
        errs[band] = np.concatenate([c.errs[band] if band in c.errs else _nans(len(c)) for c in catalogues])
    return ReferenceCatalogue(name, ra, dec, mags, errs)


# --------------------------------------------------------------------------------------------------
# Geometry


def angular_separation_deg(
    ra1_deg: ArrayLike, dec1_deg: ArrayLike, ra2_deg: ArrayLike, dec2_deg: ArrayLike
) -> FloatArray:
    """Great-circle separation in degrees (Vincenty formula: exact at all distances).

    Parameters
    ----------
    ra1_deg, dec1_deg, ra2_deg, dec2_deg : array_like
        Positions in degrees; broadcast against each other.

    Returns
    -------
    ndarray of float64
    """
    ra1 = np.radians(np.asarray(ra1_deg, dtype=np.float64))
    dec1 = np.radians(np.asarray(dec1_deg, dtype=np.float64))
    ra2 = np.radians(np.asarray(ra2_deg, dtype=np.float64))
    dec2 = np.radians(np.asarray(dec2_deg, dtype=np.float64))
    dra = ra2 - ra1
    sin_d1, cos_d1 = np.sin(dec1), np.cos(dec1)
    sin_d2, cos_d2 = np.sin(dec2), np.cos(dec2)
    num1 = cos_d2 * np.sin(dra)
    num2 = cos_d1 * sin_d2 - sin_d1 * cos_d2 * np.cos(dra)
    den = sin_d1 * sin_d2 + cos_d1 * cos_d2 * np.cos(dra)
    return np.asarray(np.degrees(np.arctan2(np.hypot(num1, num2), den)), dtype=np.float64)


def cone_mask(cat: ReferenceCatalogue, ra_deg: float, dec_deg: float, radius_deg: float) -> BoolArray:
    """Boolean mask of the stars of ``cat`` within ``radius_deg`` of a position.

    Parameters
    ----------
    cat : ReferenceCatalogue
        Stars to test.
    ra_deg, dec_deg, radius_deg : float
        Cone centre and radius, degrees.

    Returns
    -------
    ndarray of bool
    """
    if len(cat) == 0:
        return np.zeros(0, dtype=bool)
    sep = angular_separation_deg(ra_deg, dec_deg, cat.ra_deg, cat.dec_deg)
    return np.asarray(sep <= radius_deg)


# --------------------------------------------------------------------------------------------------
# Table columns -> float arrays


def column_to_float(column: Any) -> FloatArray:
    """Convert a table column (masked, numeric or text) to float64 with NaN for missing values.

    Empty strings, masked cells, ``"--"``, ``"nan"`` and text that is not a number all become NaN.

    Parameters
    ----------
    column : array_like
        An astropy ``Column``/``MaskedColumn``, a numpy (masked) array or a list.

    Returns
    -------
    ndarray of float64
    """
    data = column
    mask: Any = None
    if hasattr(data, "mask"):
        mask = np.ma.getmaskarray(data)
    raw = np.ma.getdata(data) if mask is not None else np.asarray(data)
    raw = np.asarray(raw)
    if raw.dtype.kind in "biuf":
        values = raw.astype(np.float64, copy=True)
    elif raw.dtype.kind in "US" or raw.dtype == object:
        values = np.full(raw.shape, np.nan)
        for i, cell in enumerate(raw.ravel()):
            if isinstance(cell, bytes):
                cell = cell.decode("utf-8", "replace")
            if cell is None:
                continue
            try:
                values.flat[i] = float(str(cell).strip())
            except ValueError:
                continue
    else:
        raise TypeError(f"column of dtype {raw.dtype} cannot hold numbers")
    if mask is not None and np.any(mask):
        values[mask] = np.nan
    values[~np.isfinite(values)] = np.nan
    return values


def _looks_sexagesimal(text: str) -> bool:
    stripped = text.strip()
    if not stripped:
        return False
    return any(ch in stripped for ch in ":hmsd°'\"") or len(stripped.split()) == 3


def _text_cells(column: Any) -> list[str | None]:
    mask = np.ma.getmaskarray(column) if hasattr(column, "mask") else None
    raw = np.asarray(np.ma.getdata(column) if mask is not None else column)
    cells: list[str | None] = []
    for i, cell in enumerate(raw.ravel()):
        if mask is not None and mask.flat[i]:
            cells.append(None)
            continue
        if isinstance(cell, bytes):
            cell = cell.decode("utf-8", "replace")
        text = str(cell).strip()
        cells.append(text or None)
    return cells


def _angle_cells(cells: list[str | None], *, is_ra: bool) -> FloatArray:
    from astropy.coordinates import Angle

    out = np.full(len(cells), np.nan)
    for i, text in enumerate(cells):
        if text is None:
            continue
        try:
            if _looks_sexagesimal(text):
                cleaned = text.replace("°", "d")
                has_unit = any(ch in cleaned for ch in "hd")
                unit = None if has_unit else ("hourangle" if is_ra else "deg")
                angle = Angle(cleaned, unit=unit)
                out[i] = float(angle.degree)
            else:
                out[i] = float(text)
        except (ValueError, TypeError, ArithmeticError):
            continue
    return out


def parse_coordinates(
    ra_column: Any, dec_column: Any, *, ra_unit: str | None = None
) -> tuple[FloatArray, FloatArray]:
    """Turn RA/Dec columns into degrees, accepting decimal degrees or sexagesimal text.

    Text such as ``"19:40:01.1"``/``"+30:07:53"`` or ``"19h40m01.1s"`` is read as hours (RA) and
    degrees (Dec); plain numbers are degrees unless ``ra_unit`` says the RA column is in hours.
    Invalid cells (missing, unparsable, |Dec| > 90) become NaN; RA is wrapped into [0, 360).

    Parameters
    ----------
    ra_column, dec_column : array_like
        The two columns (numeric or text, possibly masked).
    ra_unit : str, optional
        Unit of a numeric RA column: ``"deg"`` (default) or ``"h"``/``"hourangle"``.

    Returns
    -------
    ra_deg, dec_deg : ndarray of float64
    """
    ra_raw = np.asarray(np.ma.getdata(ra_column))
    dec_raw = np.asarray(np.ma.getdata(dec_column))
    if ra_raw.dtype.kind in "biuf":
        ra = column_to_float(ra_column)
        if ra_unit is not None and ra_unit.lower() in {"h", "hour", "hours", "hourangle", "hr"}:
            ra = ra * 15.0
    else:
        ra = _angle_cells(_text_cells(ra_column), is_ra=True)
    dec = (
        column_to_float(dec_column)
        if dec_raw.dtype.kind in "biuf"
        else _angle_cells(_text_cells(dec_column), is_ra=False)
    )
    dec = np.where(np.abs(dec) <= 90.0, dec, np.nan)
    ra = np.where(np.isfinite(ra), np.mod(ra, 360.0), np.nan)
    return ra.astype(np.float64), dec.astype(np.float64)


# --------------------------------------------------------------------------------------------------
# Wire format


def _to_json_list(values: FloatArray, decimals: int | None) -> list[float | None]:
    finite = np.isfinite(values)
    rounded = np.round(values, decimals) if decimals is not None else values
    if finite.all():
        return [float(v) for v in rounded.tolist()]
    return [float(v) if ok else None for v, ok in zip(rounded.tolist(), finite.tolist(), strict=True)]


def to_wire(cat: ReferenceCatalogue) -> dict[str, Any]:
    """Encode a catalogue as compact JSON-serialisable columns.

    Layout::

        {"version": 1, "survey": "APASS", "n": 2,
         "ra": [..], "dec": [..],
         "bands": {"V": {"mag": [12.1, null], "err": [0.02, null]}, ...}}

    NaN is sent as ``null``; magnitudes and errors are rounded to 1e-5 mag, positions are exact.

    Parameters
    ----------
    cat : ReferenceCatalogue

    Returns
    -------
    dict
    """
    return {
        "version": WIRE_VERSION,
        "survey": cat.survey,
        "n": len(cat),
        "ra": _to_json_list(cat.ra_deg, None),
        "dec": _to_json_list(cat.dec_deg, None),
        "bands": {
            band: {
                "mag": _to_json_list(cat.mags[band], _WIRE_MAG_DECIMALS),
                "err": _to_json_list(cat.errs[band], _WIRE_MAG_DECIMALS),
            }
            for band in cat.mags
        },
    }


def _invalid(message: str) -> InputError:
    return InputError(f"reference catalogue: {message}", code="invalid_catalogue")


def _from_json_list(values: Any, n: int, what: str) -> FloatArray:
    if not isinstance(values, list) or len(values) != n:
        raise _invalid(f"{what} must be a list of {n} numbers")
    try:
        return np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise _invalid(f"{what} holds a non-number") from exc


def from_wire(d: Mapping[str, Any]) -> ReferenceCatalogue:
    """Decode the output of :func:`to_wire`.

    Parameters
    ----------
    d : mapping
        Decoded JSON object.

    Returns
    -------
    ReferenceCatalogue

    Raises
    ------
    cpcs.errors.InputError
        ``code="invalid_catalogue"`` when the object is not a catalogue of this layout.
    """
    if not isinstance(d, Mapping):
        raise _invalid("must be a JSON object")
    survey = d.get("survey")
    if not isinstance(survey, str) or not survey:
        raise _invalid("has no survey name")
    version = d.get("version", WIRE_VERSION)
    if version != WIRE_VERSION:
        raise _invalid(f"layout version {version!r} is not supported")
    ra_list = d.get("ra")
    if not isinstance(ra_list, list):
        raise _invalid("has no 'ra' list")
    n = len(ra_list)
    if "n" in d and d["n"] != n:
        raise _invalid(f"says n={d['n']} but has {n} positions")
    ra = _from_json_list(ra_list, n, "ra")
    dec = _from_json_list(d.get("dec"), n, "dec")
    bands = d.get("bands", {})
    if not isinstance(bands, Mapping):
        raise _invalid("'bands' must be an object")
    mags: dict[str, FloatArray] = {}
    errs: dict[str, FloatArray] = {}
    for band, cols in bands.items():
        if not isinstance(cols, Mapping):
            raise _invalid(f"band {band!r} must be an object")
        mags[str(band)] = _from_json_list(cols.get("mag"), n, f"band {band} mag")
        err = cols.get("err")
        errs[str(band)] = np.full(n, np.nan) if err is None else _from_json_list(err, n, f"band {band} err")
    return ReferenceCatalogue(survey, ra, dec, mags, errs)
