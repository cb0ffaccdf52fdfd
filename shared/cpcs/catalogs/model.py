"""The reference catalogue: positions and per-band magnitudes of reference stars of one survey.

A :class:`ReferenceCatalogue` is a set of equal-length float64 columns: ``ra_deg``/``dec_deg``
(ICRS, degrees, at the Julian epoch :attr:`~ReferenceCatalogue.epoch`; see
:mod:`cpcs.catalogs.surveys` for the epoch of each survey's positions), optionally the proper
motions ``pmra_mas_yr`` (including cos(dec)) and ``pmdec_mas_yr`` in mas/yr (Gaia), and, for each
band, a magnitude and its 1-sigma error. NaN means "no value". It is immutable; every operation
returns a new catalogue. :meth:`ReferenceCatalogue.at_epoch` moves the stars to another epoch
(e.g. that of an image) along their proper motions.

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
    "proper_motion_columns",
    "to_wire",
]

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

#: Version of the JSON layout written by :func:`to_wire`.
WIRE_VERSION = 1

# Magnitudes are sent with 0.01 mmag resolution: far below any catalogue's precision.
_WIRE_MAG_DECIMALS = 5
# Proper motions are sent with 0.1 micro-arcsec/yr resolution (Gaia DR3 gives 0.001 mas/yr).
_WIRE_PM_DECIMALS = 4

_MAS_TO_RAD = math.pi / (180.0 * 3600.0 * 1000.0)
#: Largest credible proper motion (mas/yr): Barnard's star moves 10.4 arcsec/yr.
_PM_MAX_MAS_YR = 20_000.0


def _as_column(values: ArrayLike, name: str) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"column {name!r} must be one-dimensional, got shape {array.shape}")
    return array


def _as_epoch(value: Any, name: str = "epoch") -> float | None:
    """``None`` or a finite Julian year as float; anything else is a ``ValueError``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be a Julian year (a number) or None, got {value!r}")
    epoch = float(value)
    if not math.isfinite(epoch):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return epoch


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
    pmra_mas_yr, pmdec_mas_yr : ndarray of float64 or None, optional
        Proper motion in right ascension (``mu_alpha* = mu_alpha cos(dec)``, as Gaia's ``pmRA``)
        and in declination, mas/yr; NaN where unknown. Both or neither: ``None`` (the default)
        when the survey has no proper motions.
    epoch : float or None, optional
        Julian year of the positions (2016.0 for Gaia DR3 and GaiaSP); ``None`` when unknown
        (positions taken as roughly J2000).

    Raises
    ------
    ValueError
        When columns have different lengths or are not one-dimensional, when only one of the two
        proper-motion columns is given, or when ``epoch`` is not a finite number.
    """

    survey: str
    ra_deg: FloatArray
    dec_deg: FloatArray
    mags: dict[str, FloatArray] = field(default_factory=dict)
    errs: dict[str, FloatArray] = field(default_factory=dict)
    pmra_mas_yr: FloatArray | None = None
    pmdec_mas_yr: FloatArray | None = None
    epoch: float | None = None

    def __post_init__(self) -> None:
        ra = _as_column(self.ra_deg, "ra_deg")
        dec = _as_column(self.dec_deg, "dec_deg")
        n = ra.shape[0]
        if dec.shape[0] != n:
            raise ValueError(f"ra_deg has {n} values but dec_deg has {dec.shape[0]}")
        if (self.pmra_mas_yr is None) != (self.pmdec_mas_yr is None):
            raise ValueError("give both proper-motion columns (pmra_mas_yr, pmdec_mas_yr) or neither")
        pmra: FloatArray | None = None
        pmdec: FloatArray | None = None
        if self.pmra_mas_yr is not None and self.pmdec_mas_yr is not None:
            pmra = _as_column(self.pmra_mas_yr, "pmra_mas_yr")
            pmdec = _as_column(self.pmdec_mas_yr, "pmdec_mas_yr")
            for name, column in (("pmra_mas_yr", pmra), ("pmdec_mas_yr", pmdec)):
                if column.shape[0] != n:
                    raise ValueError(f"{name} has {column.shape[0]} values for {n} stars")
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
        object.__setattr__(self, "pmra_mas_yr", pmra)
        object.__setattr__(self, "pmdec_mas_yr", pmdec)
        object.__setattr__(self, "epoch", _as_epoch(self.epoch))

    def __len__(self) -> int:
        return int(self.ra_deg.shape[0])

    def __repr__(self) -> str:
        extra = "" if self.epoch is None else f", epoch={self.epoch:g}"
        if self.has_proper_motions:
            extra += ", proper_motions=True"
        return f"ReferenceCatalogue(survey={self.survey!r}, n={len(self)}, bands={self.bands}{extra})"

    @property
    def bands(self) -> list[str]:
        """Band names, in the catalogue's order."""
        return list(self.mags)

    @property
    def has_proper_motions(self) -> bool:
        """True when the catalogue carries proper-motion columns (values may still be NaN)."""
        return self.pmra_mas_yr is not None

    @classmethod
    def empty(
        cls, survey: str, bands: Iterable[str] = (), *, epoch: float | None = None
    ) -> ReferenceCatalogue:
        """Return a catalogue with no stars.

        Parameters
        ----------
        survey : str
            Survey name.
        bands : iterable of str, optional
            Bands the (empty) catalogue declares.
        epoch : float or None, optional
            Julian year of the (absent) positions.

        Returns
        -------
        ReferenceCatalogue
        """
        none = np.empty(0, dtype=np.float64)
        return cls(survey, none, none.copy(), {b: none.copy() for b in bands}, {}, epoch=epoch)

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
            None if self.pmra_mas_yr is None else self.pmra_mas_yr[key],
            None if self.pmdec_mas_yr is None else self.pmdec_mas_yr[key],
            self.epoch,
        )

    def with_survey(self, survey: str) -> ReferenceCatalogue:
        """Return the same stars labelled with another survey name."""
        return ReferenceCatalogue(
            survey,
            self.ra_deg,
            self.dec_deg,
            dict(self.mags),
            dict(self.errs),
            self.pmra_mas_yr,
            self.pmdec_mas_yr,
            self.epoch,
        )

    def positions_at(self, epoch: float) -> tuple[FloatArray, FloatArray]:
        """Positions of the stars at another Julian epoch, moved along their proper motions.

        Each star moves on a straight line in space at constant velocity, with the tangential
        velocity given by its proper motion (``pmra * east + pmdec * north``) and no radial
        velocity: the rigorous propagation of Gaia's astrometry (and of astropy's
        ``SkyCoord.apply_space_motion``) for a distant star. Ignoring parallax and radial velocity
        costs well under a milliarcsecond over decades for all but a handful of nearby stars.
        Stars without a proper motion (NaN in either component, or a catalogue without proper
        motions) keep their position.

        Parameters
        ----------
        epoch : float
            Target Julian year (e.g. ``2000.0 + (mjd - 51544.5) / 365.25`` of an image).

        Returns
        -------
        ra_deg, dec_deg : ndarray of float64
            New arrays; RA in [0, 360).

        Raises
        ------
        ValueError
            When ``epoch`` is not finite, or when some star has a proper motion but the
            catalogue's own epoch is unknown (``self.epoch is None``).
        """
        ra, dec, _, _ = self._propagate(epoch)
        return ra, dec

    def _propagate(self, epoch: float) -> tuple[FloatArray, FloatArray, FloatArray | None, FloatArray | None]:
        """Positions and proper motions at ``epoch`` (new arrays; see :meth:`positions_at`)."""
        target = _as_epoch(epoch)
        if target is None:
            raise ValueError("a target epoch is required")
        ra, dec = self.ra_deg.copy(), self.dec_deg.copy()
        if self.pmra_mas_yr is None or self.pmdec_mas_yr is None:
            return ra, dec, None, None
        pmra, pmdec = self.pmra_mas_yr.copy(), self.pmdec_mas_yr.copy()
        moving = np.isfinite(pmra) & np.isfinite(pmdec) & ((pmra != 0.0) | (pmdec != 0.0))
        if not moving.any() or self.epoch == target:
            return ra, dec, pmra, pmdec
        if self.epoch is None:
            raise ValueError(f"the {self.survey} positions have no epoch: cannot apply their proper motions")
        dt = target - self.epoch
        a = np.radians(ra[moving])
        d = np.radians(dec[moving])
        sin_a, cos_a, sin_d, cos_d = np.sin(a), np.cos(a), np.sin(d), np.cos(d)
        mu_a = pmra[moving] * _MAS_TO_RAD
        mu_d = pmdec[moving] * _MAS_TO_RAD
        # velocity (rad/yr at unit distance) along east (-sin a, cos a, 0) and north
        # (-sin d cos a, -sin d sin a, cos d); position = unit vector + velocity * dt
        vx = -mu_a * sin_a - mu_d * sin_d * cos_a
        vy = mu_a * cos_a - mu_d * sin_d * sin_a
        vz = mu_d * cos_d
        x, y, z = cos_d * cos_a + vx * dt, cos_d * sin_a + vy * dt, sin_d + vz * dt
        new_a = np.arctan2(y, x)
        new_d = np.arctan2(z, np.hypot(x, y))
        ra[moving] = np.degrees(new_a) % 360.0
        dec[moving] = np.degrees(new_d)
        # the same velocity seen from the new position (and distance): the new proper motion
        scale = 1.0 / (np.sqrt(x * x + y * y + z * z) * _MAS_TO_RAD)
        sin_a, cos_a, sin_d, cos_d = np.sin(new_a), np.cos(new_a), np.sin(new_d), np.cos(new_d)
        pmra[moving] = (-vx * sin_a + vy * cos_a) * scale
        pmdec[moving] = (-vx * sin_d * cos_a - vy * sin_d * sin_a + vz * cos_d) * scale
        return ra, dec, pmra, pmdec

    def at_epoch(self, epoch: float) -> ReferenceCatalogue:
        """Return the catalogue with its stars moved to another Julian epoch.

        See :meth:`positions_at` for the propagation; the proper motions are carried along with
        it (their direction turns slightly as the star moves over the sphere), so moving there
        and back returns the original positions. A catalogue without proper motions (or whose
        stars all lack one) keeps its positions and is simply labelled with the new epoch.

        Parameters
        ----------
        epoch : float
            Target Julian year.

        Returns
        -------
        ReferenceCatalogue
            ``self`` when it is already at ``epoch``.

        Raises
        ------
        ValueError
            As :meth:`positions_at`.
        """
        target = _as_epoch(epoch)
        if target is not None and self.epoch == target:
            return self
        ra, dec, pmra, pmdec = self._propagate(epoch)
        return ReferenceCatalogue(self.survey, ra, dec, dict(self.mags), dict(self.errs), pmra, pmdec, target)


def _nans(n: int) -> FloatArray:
    return np.full(n, np.nan)


def concatenate(catalogues: Sequence[ReferenceCatalogue], survey: str | None = None) -> ReferenceCatalogue:
    """Stack catalogues of the same survey; a band missing from one part is NaN there.

    Proper motions are kept when any part has them (NaN for the stars of parts without). The
    result's epoch is the first known epoch of the parts; a part at another known epoch is moved
    to it first (:meth:`ReferenceCatalogue.at_epoch`), and parts of unknown epoch are taken as
    they are.

    Parameters
    ----------
    catalogues : sequence of ReferenceCatalogue
        Parts to stack, at least one unless ``survey`` is given.
    survey : str, optional
        Survey name of the result (default: that of the first part).

    Returns
    -------
    ReferenceCatalogue

    Raises
    ------
    ValueError
        When nothing is given and no survey name either.
    """
    if not catalogues:
        if survey is None:
            raise ValueError("nothing to concatenate and no survey name given")
        return ReferenceCatalogue.empty(survey)
    name = survey if survey is not None else catalogues[0].survey
    if len(catalogues) == 1:
        only = catalogues[0]
        return only if only.survey == name else only.with_survey(name)
    epoch = next((c.epoch for c in catalogues if c.epoch is not None), None)
    if epoch is not None:
        catalogues = [c if c.epoch is None else c.at_epoch(epoch) for c in catalogues]
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
    pmra: FloatArray | None = None
    pmdec: FloatArray | None = None
    if any(c.has_proper_motions for c in catalogues):
        pmra = np.concatenate([_nans(len(c)) if c.pmra_mas_yr is None else c.pmra_mas_yr for c in catalogues])
        pmdec = np.concatenate(
            [_nans(len(c)) if c.pmdec_mas_yr is None else c.pmdec_mas_yr for c in catalogues]
        )
    return ReferenceCatalogue(name, ra, dec, mags, errs, pmra, pmdec, epoch)


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


def _mas_per_year_factor(column: Any, name: str) -> float:
    """Factor turning the values of ``column`` into mas/yr (1.0 when it declares no unit)."""
    unit = getattr(column, "unit", None)
    if unit is None:
        return 1.0
    from astropy import units as u

    try:
        parsed = u.Unit(unit) if isinstance(unit, str) else unit
        if not str(parsed).strip() or parsed == u.dimensionless_unscaled:
            return 1.0
        return float(parsed.to(u.mas / u.yr))
    except Exception as exc:  # unrecognised or non-angular-rate units
        raise ValueError(f"proper-motion column {name!r} has unit {unit!s}, not an angle per time") from exc


def proper_motion_columns(pmra_column: Any, pmdec_column: Any) -> tuple[FloatArray, FloatArray]:
    """Turn proper-motion columns into mas/yr, NaN where unknown.

    A column with an astropy unit (``mas/yr``, ``arcsec/yr``...) is converted; a column without
    one is taken to be in mas/yr. A star whose two components are not both finite, or whose
    motion exceeds 20 arcsec/yr (a sentinel, not a star), gets NaN in both.

    Parameters
    ----------
    pmra_column : array_like
        Proper motion in right ascension including cos(dec) (Vizier ``pmRA``, Gaia ``pmra``).
    pmdec_column : array_like
        Proper motion in declination (Vizier ``pmDE``, Gaia ``pmdec``).

    Returns
    -------
    pmra_mas_yr, pmdec_mas_yr : ndarray of float64

    Raises
    ------
    ValueError
        When a column's unit is not an angle per unit of time, or the columns differ in length.
    TypeError
        When a column cannot hold numbers.
    """
    pmra = column_to_float(pmra_column) * _mas_per_year_factor(pmra_column, "pmra")
    pmdec = column_to_float(pmdec_column) * _mas_per_year_factor(pmdec_column, "pmdec")
    if pmra.shape != pmdec.shape:
        raise ValueError(f"proper-motion columns have {pmra.shape[0]} and {pmdec.shape[0]} values")
    with np.errstate(invalid="ignore"):
        good = np.isfinite(pmra) & np.isfinite(pmdec) & (np.hypot(pmra, pmdec) <= _PM_MAX_MAS_YR)
    return (
        np.where(good, pmra, np.nan).astype(np.float64),
        np.where(good, pmdec, np.nan).astype(np.float64),
    )


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

        {"version": 1, "survey": "Gaia", "n": 2,
         "ra": [..], "dec": [..],
         "bands": {"G": {"mag": [12.1, null], "err": [0.02, null]}, ...},
         "epoch": 2016.0,                           # only when known
         "pmra": [-3.1, null], "pmdec": [-5.2, null]}   # only with proper motions

    NaN is sent as ``null``; magnitudes and errors are rounded to 1e-5 mag, proper motions
    (mas/yr, ``pmra`` including cos(dec)) to 1e-4 mas/yr, positions and the epoch are exact. The
    optional keys are additions to layout version 1: readers that predate them ignore them.

    Parameters
    ----------
    cat : ReferenceCatalogue

    Returns
    -------
    dict
    """
    wire: dict[str, Any] = {
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
    if cat.epoch is not None:
        wire["epoch"] = cat.epoch
    if cat.pmra_mas_yr is not None and cat.pmdec_mas_yr is not None:
        wire["pmra"] = _to_json_list(cat.pmra_mas_yr, _WIRE_PM_DECIMALS)
        wire["pmdec"] = _to_json_list(cat.pmdec_mas_yr, _WIRE_PM_DECIMALS)
    return wire


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

    Payloads without ``epoch``/``pmra``/``pmdec`` (older writers) give ``epoch=None`` and no
    proper motions.

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
    raw_epoch = d.get("epoch")
    try:
        epoch = _as_epoch(raw_epoch)
    except ValueError as exc:
        raise _invalid(f"'epoch' must be a finite Julian year or null, got {raw_epoch!r}") from exc
    pm_lists = d.get("pmra"), d.get("pmdec")
    pmra: FloatArray | None = None
    pmdec: FloatArray | None = None
    if (pm_lists[0] is None) != (pm_lists[1] is None):
        raise _invalid("has only one of 'pmra' and 'pmdec'")
    if pm_lists[0] is not None:
        pmra = _from_json_list(pm_lists[0], n, "pmra")
        pmdec = _from_json_list(pm_lists[1], n, "pmdec")
    return ReferenceCatalogue(survey, ra, dec, mags, errs, pmra, pmdec, epoch)
