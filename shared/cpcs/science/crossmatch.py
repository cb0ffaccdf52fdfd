"""Positional cross-matching of an uploaded source catalogue with a reference catalogue.

All positions are ICRS-like right ascension / declination in degrees; separations are in arcsec.
Matching uses a KD-tree on unit vectors on the sphere, so it is exact at any declination
(including the poles and across RA = 0/360) and fast (2,000 x 10,000 stars in about a millisecond).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial import cKDTree

from cpcs.science._helpers import BoolArray, FloatArray, IntArray, as_float_array

__all__ = ["CrossMatch", "match_catalogues", "nearest_neighbours", "nearest_source", "tangent_plane_offsets"]

_ARCSEC_PER_RAD = 180.0 / np.pi * 3600.0


@dataclass(frozen=True, eq=False)
class CrossMatch:
    """One-to-one pairs of matched sources and reference stars.

    Attributes
    ----------
    source_index : ndarray of int
        Index into the source (uploaded) catalogue of each pair, sorted ascending.
    reference_index : ndarray of int
        Index into the reference catalogue of each pair; every value appears at most once.
    separation_arcsec : ndarray of float
        Angular separation of each pair, arcsec.
    """

    source_index: IntArray
    reference_index: IntArray
    separation_arcsec: FloatArray

    def __len__(self) -> int:
        return int(self.source_index.size)

    @property
    def n_matched(self) -> int:
        """Number of matched pairs."""
        return int(self.source_index.size)


def _unit_vectors(ra_deg: FloatArray, dec_deg: FloatArray) -> FloatArray:
    ra = np.radians(ra_deg)
    dec = np.radians(dec_deg)
    cos_dec = np.cos(dec)
    return np.column_stack((cos_dec * np.cos(ra), cos_dec * np.sin(ra), np.sin(dec)))


def _chord_for_angle_arcsec(angle_arcsec: float) -> float:
    return float(2.0 * np.sin(np.radians(angle_arcsec / 3600.0) / 2.0))


def _angle_arcsec_for_chord(chord: FloatArray) -> FloatArray:
    return np.asarray(2.0 * np.arcsin(np.clip(chord / 2.0, 0.0, 1.0)) * _ARCSEC_PER_RAD, dtype=np.float64)


def _valid_positions(ra_deg: FloatArray, dec_deg: FloatArray) -> BoolArray:
    return np.isfinite(ra_deg) & np.isfinite(dec_deg) & (np.abs(dec_deg) <= 90.0)


def nearest_neighbours(
    src_ra_deg: ArrayLike,
    src_dec_deg: ArrayLike,
    ref_ra_deg: ArrayLike,
    ref_dec_deg: ArrayLike,
    radius_arcsec: float,
) -> tuple[IntArray, FloatArray]:
    """Each source's nearest reference star within ``radius_arcsec`` (many sources may share one).

    Returns the reference index of each source (-1: none within the radius, or an invalid
    position) and the separation (arcsec; ``inf`` where there is none).
    """
    src_ra = as_float_array(src_ra_deg, "src_ra_deg")
    src_dec = as_float_array(src_dec_deg, "src_dec_deg", size=src_ra.size)
    ref_ra = as_float_array(ref_ra_deg, "ref_ra_deg")
    ref_dec = as_float_array(ref_dec_deg, "ref_dec_deg", size=ref_ra.size)
    index = np.full(src_ra.size, -1, dtype=np.intp)
    separation = np.full(src_ra.size, np.inf)
    src_ok = np.flatnonzero(_valid_positions(src_ra, src_dec))
    ref_ok = np.flatnonzero(_valid_positions(ref_ra, ref_dec))
    if src_ok.size == 0 or ref_ok.size == 0:
        return index, separation
    tree = cKDTree(_unit_vectors(ref_ra[ref_ok], ref_dec[ref_ok]), balanced_tree=False, compact_nodes=False)
    chord, nearest = tree.query(
        _unit_vectors(src_ra[src_ok], src_dec[src_ok]),
        k=1,
        distance_upper_bound=_chord_for_angle_arcsec(radius_arcsec),
    )
    found = np.isfinite(chord)
    index[src_ok[found]] = ref_ok[nearest[found]]
    separation[src_ok[found]] = _angle_arcsec_for_chord(chord[found])
    return index, separation


def match_catalogues(
    src_ra_deg: ArrayLike,
    src_dec_deg: ArrayLike,
    ref_ra_deg: ArrayLike,
    ref_dec_deg: ArrayLike,
    radius_arcsec: float,
) -> CrossMatch:
    """Match every source to its nearest reference star within ``radius_arcsec``, one-to-one.

    Each source is paired with its nearest reference star if that star lies within the radius.
    When several sources claim the same reference star only the closest pair is kept (the other
    sources stay unmatched; they are usually blends or artefacts).

    Parameters
    ----------
    src_ra_deg, src_dec_deg : array_like
        Source positions, degrees. Sources with a NaN coordinate (or ``|dec| > 90``) are never matched.
    ref_ra_deg, ref_dec_deg : array_like
        Reference star positions, degrees. NaN coordinates are never matched.
    radius_arcsec : float
        Maximum separation, arcsec (must be positive).

    Returns
    -------
    CrossMatch
        Pairs sorted by source index. Empty arrays when nothing matches or a catalogue is empty.
    """
    if not np.isfinite(radius_arcsec) or radius_arcsec <= 0.0:
        raise ValueError(f"radius_arcsec must be positive and finite, got {radius_arcsec}")
    src_ra = as_float_array(src_ra_deg, "src_ra_deg")
    src_dec = as_float_array(src_dec_deg, "src_dec_deg", size=src_ra.size)
    ref_ra = as_float_array(ref_ra_deg, "ref_ra_deg")
    ref_dec = as_float_array(ref_dec_deg, "ref_dec_deg", size=ref_ra.size)

    src_ok = np.flatnonzero(_valid_positions(src_ra, src_dec))
    ref_ok = np.flatnonzero(_valid_positions(ref_ra, ref_dec))
    if src_ok.size == 0 or ref_ok.size == 0:
        empty_int = np.empty(0, dtype=np.intp)
        return CrossMatch(empty_int, empty_int.copy(), np.empty(0, dtype=np.float64))

    tree = cKDTree(_unit_vectors(ref_ra[ref_ok], ref_dec[ref_ok]), balanced_tree=False, compact_nodes=False)
    chord, nearest = tree.query(
        _unit_vectors(src_ra[src_ok], src_dec[src_ok]),
        k=1,
        distance_upper_bound=_chord_for_angle_arcsec(radius_arcsec),
    )
    found = np.isfinite(chord)
    src_idx = src_ok[found]
    ref_idx = ref_ok[nearest[found]]
    chord = chord[found]

    # One-to-one: visit pairs closest first and keep the first claim on each reference star.
    order = np.argsort(chord, kind="stable")
    _, first = np.unique(ref_idx[order], return_index=True)
    keep = order[first]
    keep = keep[np.argsort(src_idx[keep], kind="stable")]
    return CrossMatch(
        source_index=src_idx[keep].astype(np.intp),
        reference_index=ref_idx[keep].astype(np.intp),
        separation_arcsec=_angle_arcsec_for_chord(chord[keep]),
    )


def tangent_plane_offsets(
    ra_deg: ArrayLike, dec_deg: ArrayLike, centre_ra_deg: float, centre_dec_deg: float
) -> tuple[FloatArray, FloatArray]:
    """Gnomonic (TAN) standard coordinates of positions about a tangent point.

    Parameters
    ----------
    ra_deg, dec_deg : array_like
        Positions, degrees.
    centre_ra_deg, centre_dec_deg : float
        Tangent point, degrees.

    Returns
    -------
    xi_deg, eta_deg : ndarray
        Standard coordinates in degrees: ``xi`` grows towards the east (increasing RA), ``eta``
        towards the north. NaN for NaN inputs and for points 90 degrees or more from the centre.
    """
    ra = np.radians(as_float_array(ra_deg, "ra_deg"))
    dec = np.radians(as_float_array(dec_deg, "dec_deg", size=ra.size))
    ra0 = np.radians(float(centre_ra_deg))
    dec0 = np.radians(float(centre_dec_deg))
    dra = ra - ra0
    cos_dec = np.cos(dec)
    cos_c = np.sin(dec0) * np.sin(dec) + np.cos(dec0) * cos_dec * np.cos(dra)
    with np.errstate(divide="ignore", invalid="ignore"):
        xi = cos_dec * np.sin(dra) / cos_c
        eta = (np.cos(dec0) * np.sin(dec) - np.sin(dec0) * cos_dec * np.cos(dra)) / cos_c
    behind = ~(cos_c > 0.0)
    xi[behind] = np.nan
    eta[behind] = np.nan
    return np.degrees(xi), np.degrees(eta)


def nearest_source(
    src_ra_deg: ArrayLike,
    src_dec_deg: ArrayLike,
    ra_deg: float,
    dec_deg: float,
    radius_arcsec: float,
) -> int | None:
    """Index of the source nearest to (``ra_deg``, ``dec_deg``) within ``radius_arcsec``.

    Parameters
    ----------
    src_ra_deg, src_dec_deg : array_like
        Source positions, degrees; sources with NaN coordinates are ignored.
    ra_deg, dec_deg : float
        Position looked for (e.g. the target), degrees.
    radius_arcsec : float
        Search radius, arcsec.

    Returns
    -------
    int or None
        Index into the source arrays, or None when no source lies within the radius.
    """
    src_ra = np.radians(as_float_array(src_ra_deg, "src_ra_deg"))
    src_dec = np.radians(as_float_array(src_dec_deg, "src_dec_deg", size=src_ra.size))
    if src_ra.size == 0 or not (np.isfinite(ra_deg) and np.isfinite(dec_deg)):
        return None
    ra0 = np.radians(float(ra_deg))
    dec0 = np.radians(float(dec_deg))
    # Haversine formula: accurate at small separations.
    hav = (
        np.sin((src_dec - dec0) / 2.0) ** 2
        + np.cos(src_dec) * np.cos(dec0) * np.sin((src_ra - ra0) / 2.0) ** 2
    )
    sep_arcsec = 2.0 * np.arcsin(np.sqrt(np.clip(hav, 0.0, 1.0))) * _ARCSEC_PER_RAD
    sep_arcsec = np.where(np.isfinite(sep_arcsec), sep_arcsec, np.inf)
    best = int(np.argmin(sep_arcsec))
    if sep_arcsec[best] <= radius_arcsec:
        return best
    return None


#: The reference cone of a field reaches this far (deg) beyond its farthest source ...
FIELD_CONE_MARGIN_DEG = 1 / 60
#: ... and never beyond this radius (deg).
FIELD_CONE_MAX_DEG = 1.0


def field_cone_radius_deg(ra_deg: ArrayLike, dec_deg: ArrayLike, ra0_deg: float, dec0_deg: float) -> float:
    """Radius (deg) of the reference cone around ``(ra0, dec0)`` (the alert) that holds every source
    plus ``FIELD_CONE_MARGIN_DEG``, at most ``FIELD_CONE_MAX_DEG``: the cone a calibration asks for,
    and the one its plots ask for again."""
    ra = np.radians(np.asarray(ra_deg, dtype=float))
    dec = np.radians(np.asarray(dec_deg, dtype=float))
    r0, d0 = np.radians(ra0_deg), np.radians(dec0_deg)
    cos_d = np.sin(dec) * np.sin(d0) + np.cos(dec) * np.cos(d0) * np.cos(ra - r0)
    extent = float(np.degrees(np.arccos(np.clip(cos_d, -1, 1))).max()) if cos_d.size else 0.0
    return min(extent + FIELD_CONE_MARGIN_DEG, FIELD_CONE_MAX_DEG)
