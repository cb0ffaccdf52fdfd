"""File-based HEALPix tile store of reference stars.

Layout under the store root::

    store.json                      {"format": 1, "nside": 32, "order": "nested"}
    <survey>/survey.json            survey manifest: bands, custom or known, dates
    <survey>/<ipix:05d>.npz         the tile's stars (uncompressed numpy columns, sorted by Dec)
    <survey>/<ipix:05d>.json        tile manifest: n_stars, source(s), complete, created, updated,
                                    fetched and release (of the last online fetch)
                                    (and epoch, proper_motions when the tile has them)
    <survey>/.locks/<ipix>.lock     advisory locks serialising writers of a tile

Tiling: HEALPix NESTED, ``nside=32`` (12,288 tiles of 3.36 deg^2, about 1.8 deg across). A typical
follow-up field (10-30 arcmin) falls in one to four tiles, a tile holds a few thousand stars for
APASS/2MASS and tens of thousands for PS1/Gaia (hence the magnitude limits of the online fetch),
and a whole-tile Vizier query stays a single request of a few MB.

Format: uncompressed ``.npz`` (a zip of ``.npy`` columns) is read in well under a millisecond for a
few thousand stars and needs no pickle; the manifest is also embedded in the ``.npz`` so a tile
and its metadata are always replaced together. Every file is written to a temporary file in the
same folder and moved into place with :func:`os.replace`, so a concurrent reader sees either the
old or the new tile, never half of one.

Columns of a tile: ``ra``, ``dec``, ``mag_<k>``/``err_<k>`` for the k-th band of the manifest's
``bands`` and, for surveys with proper motions (Gaia), ``pmra``/``pmdec`` in mas/yr (``pmra``
including cos(dec)); the manifest's optional ``epoch`` is the Julian year of the positions.
Tiles written before proper motions existed (no ``pmra``, no ``epoch``) load as catalogues
without proper motions and of unknown epoch; readers that predate them ignore the extra columns
and key, so the layout version stays 1.

Decoded tiles are kept in an in-memory LRU keyed by ``(survey, ipix)`` and validated against the
file's ``(mtime_ns, size, inode)`` on every read, so a tile rewritten by another process is
re-read, while a warm cone costs one ``stat`` per tile plus a binary search on Dec.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
from astropy import units as u
from astropy_healpix import HEALPix

from cpcs.catalogs.model import FloatArray, ReferenceCatalogue, angular_separation_deg, concatenate
from cpcs.catalogs.surveys import find_survey, validate_survey_name
from cpcs.errors import InputError
from cpcs.storage import write_atomically

try:  # POSIX advisory locks serialise writers across processes; threads fall back to a lock.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_CACHE_ROWS",
    "DEFAULT_MATCH_RADIUS_ARCSEC",
    "NSIDE",
    "ONLINE_SOURCE",
    "STORE_FORMAT",
    "MergeResult",
    "SurveyCoverage",
    "TileInfo",
    "TileStore",
    "check_cone",
]

#: HEALPix resolution of the tiles (NESTED ordering).
NSIDE = 32
#: Version of the on-disk layout.
STORE_FORMAT = 1
#: Two stars closer than this are the same star when merging an import into a tile.
DEFAULT_MATCH_RADIUS_ARCSEC = 0.5
#: Budget of the decoded-tile LRU, in stars (about 100 bytes per star and band pair).
DEFAULT_CACHE_ROWS = 4_000_000

_MAX_SOURCES = 20
#: The ``source`` of tiles written from an online fetch.
ONLINE_SOURCE = "vizier"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class TileInfo:
    """Manifest of one tile.

    Attributes
    ----------
    survey : str
    ipix : int
        HEALPix NESTED index at the store's nside.
    n_stars : int
    source : str
        Latest writer: ``"vizier"`` or ``"import:<filename>"``.
    sources : tuple of str
        Every source that contributed, oldest first (capped at 20).
    complete : bool
        True when the whole tile was fetched from the survey (to its magnitude limit); False for
        tiles holding only what imports or partial fetches supplied.
    created, updated : str
        ISO-8601 UTC times.
    bands : tuple of str
    fetched : str
        ISO-8601 UTC time of the last online fetch of the tile; ``""`` when it never was (imports
        only, or a tile written before fetch dates were kept).
    release : str
        The catalogue release the fetched stars come from (the Vizier table, e.g.
        ``I/355/gaiadr3``); ``""`` when never fetched.
    """

    survey: str
    ipix: int
    n_stars: int
    source: str
    sources: tuple[str, ...]
    complete: bool
    created: str
    updated: str
    bands: tuple[str, ...] = ()
    fetched: str = ""
    release: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        d = asdict(self)
        d["sources"] = list(self.sources)
        d["bands"] = list(self.bands)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TileInfo:
        """Inverse of :meth:`to_dict`."""
        return cls(
            survey=str(d["survey"]),
            ipix=int(d["ipix"]),
            n_stars=int(d["n_stars"]),
            source=str(d.get("source", "")),
            sources=tuple(d.get("sources", ())),
            complete=bool(d.get("complete", False)),
            created=str(d.get("created", "")),
            updated=str(d.get("updated", d.get("created", ""))),
            bands=tuple(d.get("bands", ())),
            fetched=str(d.get("fetched", "")),
            release=str(d.get("release", "")),
        )


@dataclass(frozen=True)
class SurveyCoverage:
    """What the store holds for one survey.

    Attributes
    ----------
    survey : str
    nside : int
    n_tiles, n_complete, n_stars : int
    area_deg2 : float
        Sky area of the stored tiles.
    bands : tuple of str
    custom : bool
        True for a site's own survey (created by an import).
    tiles : tuple of TileInfo
    """

    survey: str
    nside: int
    n_tiles: int
    n_complete: int
    n_stars: int
    area_deg2: float
    bands: tuple[str, ...]
    custom: bool
    tiles: tuple[TileInfo, ...] = field(default=())

    def to_dict(self, *, with_tiles: bool = True) -> dict[str, Any]:
        """JSON-serialisable form, optionally without the per-tile list."""
        d: dict[str, Any] = {
            "survey": self.survey,
            "nside": self.nside,
            "order": "nested",
            "n_tiles": self.n_tiles,
            "n_complete": self.n_complete,
            "n_stars": self.n_stars,
            "area_deg2": round(self.area_deg2, 3),
            "bands": list(self.bands),
            "custom": self.custom,
        }
        if with_tiles:
            d["tiles"] = [t.to_dict() for t in self.tiles]
        return d


@dataclass(frozen=True)
class MergeResult:
    """Outcome of :meth:`TileStore.merge`.

    Attributes
    ----------
    info : TileInfo
        Manifest of the tile after the merge.
    n_added : int
        New stars appended to the tile.
    n_updated : int
        Incoming stars that matched a star already in the tile (within the match radius) and
        updated its magnitudes.
    """

    info: TileInfo
    n_added: int
    n_updated: int


@dataclass
class _Cached:
    stamp: tuple[int, int, int]
    cat: ReferenceCatalogue
    info: TileInfo


def _unit_vectors(ra_deg: FloatArray, dec_deg: FloatArray) -> FloatArray:
    ra = np.radians(ra_deg)
    dec = np.radians(dec_deg)
    cos_dec = np.cos(dec)
    return np.column_stack([cos_dec * np.cos(ra), cos_dec * np.sin(ra), np.sin(dec)])


def _chord(radius_deg: float) -> float:
    return float(2.0 * np.sin(np.radians(radius_deg) / 2.0))


def _sort_by_dec(cat: ReferenceCatalogue) -> ReferenceCatalogue:
    if len(cat) < 2 or bool(np.all(cat.dec_deg[1:] >= cat.dec_deg[:-1])):
        return cat
    return cat.select(np.argsort(cat.dec_deg, kind="stable"))


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    data = json.dumps(payload, indent=1, sort_keys=True).encode("utf-8")
    write_atomically(path, lambda fh: fh.write(data))


def _dedupe_within(cat: ReferenceCatalogue, radius_deg: float) -> ReferenceCatalogue:
    """Drop later stars lying within ``radius_deg`` of an earlier star of the same catalogue."""
    if len(cat) < 2:
        return cat
    from scipy.spatial import cKDTree

    tree = cKDTree(_unit_vectors(cat.ra_deg, cat.dec_deg))
    pairs = tree.query_pairs(_chord(radius_deg), output_type="ndarray")
    if len(pairs) == 0:
        return cat
    drop = np.zeros(len(cat), dtype=bool)
    drop[np.maximum(pairs[:, 0], pairs[:, 1])] = True
    return cat.select(~drop)


class TileStore:
    """HEALPix-tiled store of reference stars in a folder.

    Parameters
    ----------
    root : str or path
        Store folder (created on first write).
    nside : int, optional
        HEALPix nside of the tiles; must match an existing store's.
    cache_rows : int, optional
        Budget of the decoded-tile LRU, in stars.

    Raises
    ------
    ValueError
        When ``root`` holds a store of another nside or layout version.
    """

    def __init__(
        self, root: str | os.PathLike[str], *, nside: int = NSIDE, cache_rows: int = DEFAULT_CACHE_ROWS
    ):
        self.root = Path(root)
        self.nside = int(nside)
        self.healpix = HEALPix(nside=self.nside, order="nested")
        self.cache_rows = int(cache_rows)
        self._cache: OrderedDict[tuple[str, int], _Cached] = OrderedDict()
        self._cached_rows = 0
        self._lock = threading.RLock()
        self._thread_locks: dict[tuple[str, str], threading.Lock] = {}
        manifest = self.root / "store.json"
        if manifest.exists():
            meta = json.loads(manifest.read_text("utf-8"))
            if int(meta.get("nside", -1)) != self.nside or meta.get("order") != "nested":
                raise ValueError(
                    f"tile store {self.root} has nside={meta.get('nside')} order={meta.get('order')}, "
                    f"not nside={self.nside} nested"
                )
            if int(meta.get("format", STORE_FORMAT)) != STORE_FORMAT:
                raise ValueError(f"tile store {self.root} has layout version {meta.get('format')}")

    # ------------------------------------------------------------------ geometry

    @property
    def npix(self) -> int:
        """Number of tiles on the sky."""
        return int(self.healpix.npix)

    @property
    def tile_area_deg2(self) -> float:
        """Area of one tile in square degrees."""
        return float(self.healpix.pixel_area.to_value(u.deg**2))

    def tiles_for_cone(self, ra_deg: float, dec_deg: float, radius_deg: float) -> list[int]:
        """Tiles overlapping (even partially) a cone, sorted.

        Parameters
        ----------
        ra_deg, dec_deg : float
            Cone centre, degrees.
        radius_deg : float
            Cone radius, degrees (> 0).

        Returns
        -------
        list of int

        Raises
        ------
        cpcs.errors.InputError
            ``code="invalid_cone"`` for a non-finite centre, ``|dec| > 90`` or a radius outside
            (0, 180].
        """
        ra, dec, radius = check_cone(ra_deg, dec_deg, radius_deg)
        pix = self.healpix.cone_search_lonlat(ra * u.deg, dec * u.deg, radius * u.deg)
        return sorted(int(p) for p in np.unique(pix))

    def tile_of(self, ra_deg: Any, dec_deg: Any) -> np.ndarray:
        """Tile index of each position (array in, array out)."""
        ra = np.asarray(ra_deg, dtype=np.float64)
        dec = np.asarray(dec_deg, dtype=np.float64)
        return np.asarray(self.healpix.lonlat_to_healpix(ra * u.deg, dec * u.deg), dtype=np.int64)

    def tile_center(self, ipix: int) -> tuple[float, float]:
        """Centre of a tile as ``(ra_deg, dec_deg)``."""
        lon, lat = self.healpix.healpix_to_lonlat(self._check_ipix(ipix))
        return float(lon.to_value(u.deg)), float(lat.to_value(u.deg))

    def tile_corners(self, ipix: int) -> tuple[FloatArray, FloatArray]:
        """Corners of a tile: arrays of 4 RA and 4 Dec, degrees."""
        lon, lat = self.healpix.boundaries_lonlat(self._check_ipix(ipix), step=1)
        return (
            np.asarray(lon.to_value(u.deg), dtype=np.float64).ravel(),
            np.asarray(lat.to_value(u.deg), dtype=np.float64).ravel(),
        )

    def enclosing_cone(self, tiles: Sequence[int], margin_deg: float = 0.02) -> tuple[float, float, float]:
        """A cone ``(ra, dec, radius)`` containing every given tile (for one Vizier query).

        The radius reaches the farthest tile corner plus ``margin_deg`` (tile edges bulge a little
        beyond the straight line between corners).
        """
        if not tiles:
            raise ValueError("no tiles")
        centres = np.array([self.tile_center(int(t)) for t in tiles])
        vec = _unit_vectors(centres[:, 0], centres[:, 1]).sum(axis=0)
        norm = float(np.linalg.norm(vec))
        if norm < 1e-9:  # tiles all around the sky: any centre works with a 180 deg radius
            return float(centres[0, 0]), float(centres[0, 1]), 180.0
        vec /= norm
        ra_c = float(np.degrees(np.arctan2(vec[1], vec[0])) % 360.0)
        dec_c = float(np.degrees(np.arcsin(np.clip(vec[2], -1.0, 1.0))))
        corners_ra: list[FloatArray] = []
        corners_dec: list[FloatArray] = []
        for t in tiles:
            c_ra, c_dec = self.tile_corners(int(t))
            corners_ra.append(c_ra)
            corners_dec.append(c_dec)
        sep = angular_separation_deg(ra_c, dec_c, np.concatenate(corners_ra), np.concatenate(corners_dec))
        return ra_c, dec_c, float(min(180.0, sep.max() + margin_deg))

    def _check_ipix(self, ipix: int) -> int:
        value = int(ipix)
        if not 0 <= value < self.npix:
            raise ValueError(f"tile index {ipix} outside 0..{self.npix - 1}")
        return value

    # ------------------------------------------------------------------ paths and locks

    def _survey_dir(self, survey: str) -> Path:
        return self.root / validate_survey_name(survey)

    def _tile_path(self, survey: str, ipix: int) -> Path:
        return self._survey_dir(survey) / f"{self._check_ipix(ipix):05d}.npz"

    def _info_path(self, survey: str, ipix: int) -> Path:
        return self._survey_dir(survey) / f"{self._check_ipix(ipix):05d}.json"

    @contextlib.contextmanager
    def _locked(self, survey: str, name: str) -> Iterator[None]:
        """Exclusive lock on ``<survey>/.locks/<name>.lock`` (threads and processes)."""
        lock_dir = self._survey_dir(survey) / ".locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            tlock = self._thread_locks.setdefault((survey, name), threading.Lock())
        with tlock:
            if fcntl is None:  # pragma: no cover - Windows
                yield
                return
            with open(lock_dir / f"{name}.lock", "a+b") as fh:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _ensure_store_manifest(self) -> None:
        manifest = self.root / "store.json"
        if manifest.exists():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        _write_json(
            manifest, {"format": STORE_FORMAT, "nside": self.nside, "order": "nested", "created": _now()}
        )

    # ------------------------------------------------------------------ reading

    def read(self, survey: str, ipix: int) -> ReferenceCatalogue | None:
        """Stars of a tile, or ``None`` when the tile is not stored.

        Parameters
        ----------
        survey : str
        ipix : int

        Returns
        -------
        ReferenceCatalogue or None
            Sorted by declination.
        """
        entry = self._load(survey, ipix)
        return None if entry is None else entry.cat

    def info(self, survey: str, ipix: int) -> TileInfo | None:
        """Manifest of a stored tile, or ``None``."""
        entry = self._load(survey, ipix)
        return None if entry is None else entry.info

    def read_with_info(self, survey: str, ipix: int) -> tuple[ReferenceCatalogue, TileInfo] | None:
        """Stars and manifest of a tile (one consistent version), or ``None``."""
        entry = self._load(survey, ipix)
        return None if entry is None else (entry.cat, entry.info)

    def _load(self, survey: str, ipix: int) -> _Cached | None:
        path = self._tile_path(survey, ipix)
        key = (survey, int(ipix))
        try:
            st = os.stat(path)
        except FileNotFoundError:
            with self._lock:
                self._evict(key)
            return None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._lock:
            entry = self._cache.get(key)
            if entry is not None and entry.stamp == stamp:
                self._cache.move_to_end(key)
                return entry
        try:
            cat, info = self._decode(path, survey, int(ipix))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            # a damaged tile (disk trouble, manual edits) is treated as absent: it gets rewritten
            log.error("tile %s is unreadable, treated as missing: %s: %s", path, type(exc).__name__, exc)
            return None
        entry = _Cached(stamp, cat, info)
        with self._lock:
            self._remember(key, entry)
        return entry

    def _decode(self, path: Path, survey: str, ipix: int) -> tuple[ReferenceCatalogue, TileInfo]:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            ra = npz["ra"]
            dec = npz["dec"]
            bands = list(meta.get("bands", []))
            mags = {b: npz[f"mag_{k}"] for k, b in enumerate(bands)}
            errs = {b: npz[f"err_{k}"] for k, b in enumerate(bands)}
            has_pm = "pmra" in npz.files and "pmdec" in npz.files  # absent from older tiles
            pmra = npz["pmra"] if has_pm else None
            pmdec = npz["pmdec"] if has_pm else None
        epoch = meta.get("epoch")
        cat = _sort_by_dec(ReferenceCatalogue(survey, ra, dec, mags, errs, pmra, pmdec, epoch))
        info = TileInfo.from_dict({**meta, "survey": survey, "ipix": ipix, "n_stars": len(cat)})
        return cat, info

    def _remember(self, key: tuple[str, int], entry: _Cached) -> None:
        self._evict(key)
        self._cache[key] = entry
        self._cached_rows += len(entry.cat)
        while self._cached_rows > self.cache_rows and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cached_rows -= len(old.cat)

    def _evict(self, key: tuple[str, int]) -> None:
        old = self._cache.pop(key, None)
        if old is not None:
            self._cached_rows -= len(old.cat)

    def clear_cache(self) -> None:
        """Forget every decoded tile (the next reads go to disk)."""
        with self._lock:
            self._cache.clear()
            self._cached_rows = 0

    def cone(
        self,
        survey: str,
        ra_deg: float,
        dec_deg: float,
        radius_deg: float,
        tiles: Sequence[int] | None = None,
    ) -> tuple[ReferenceCatalogue | None, list[int], list[int]]:
        """Stored stars of ``survey`` within a cone.

        Parameters
        ----------
        survey : str
        ra_deg, dec_deg, radius_deg : float
            The cone, degrees.
        tiles : sequence of int, optional
            The tiles overlapping the cone when already known (saves the HEALPix search).

        Returns
        -------
        stars : ReferenceCatalogue or None
            Stars within the cone from the stored tiles; ``None`` when no overlapping tile is
            stored at all.
        missing : list of int
            Overlapping tiles not stored.
        partial : list of int
            Overlapping tiles stored but not complete.
        """
        ra, dec, radius = check_cone(ra_deg, dec_deg, radius_deg)
        tile_list = list(tiles) if tiles is not None else self.tiles_for_cone(ra, dec, radius)
        parts: list[ReferenceCatalogue] = []
        missing: list[int] = []
        partial: list[int] = []
        for ipix in tile_list:
            entry = self._load(survey, ipix)
            if entry is None:
                missing.append(int(ipix))
                continue
            if not entry.info.complete:
                partial.append(int(ipix))
            parts.append(_cone_in_sorted(entry.cat, ra, dec, radius))
        if not parts:
            return None, missing, partial
        return concatenate(parts, survey), missing, partial

    def infos(self, survey: str, tiles: Sequence[int]) -> list[TileInfo]:
        """Manifests of the stored ones among ``tiles``, in the order given."""
        return [info for ipix in tiles if (info := self.info(survey, int(ipix))) is not None]

    def stored_tiles(self, survey: str) -> list[int]:
        """Indices of every stored tile of ``survey``, sorted."""
        folder = self._survey_dir(survey)
        if not folder.is_dir():
            return []
        return sorted(int(path.stem) for path in folder.glob("*.npz") if path.stem.isdigit())

    # ------------------------------------------------------------------ writing

    def write(self, survey: str, ipix: int, cat: ReferenceCatalogue, source: str, complete: bool) -> TileInfo:
        """Replace a tile with ``cat`` (atomically).

        Parameters
        ----------
        survey : str
            Survey name (also the folder name).
        ipix : int
            Tile index; every star of ``cat`` must lie in this tile.
        cat : ReferenceCatalogue
            The tile's stars (may be empty: "this tile has no stars").
        source : str
            ``"vizier"`` or ``"import:<filename>"``.
        complete : bool
            Whether ``cat`` is the survey's whole content of the tile.

        Returns
        -------
        TileInfo

        Raises
        ------
        ValueError
            When a star lies outside the tile.
        """
        with self._locked(survey, f"{int(ipix):05d}"):
            previous = self._load(survey, ipix)
            return self._write_unlocked(
                survey, ipix, cat, source, complete, previous.info if previous else None
            )

    def _write_unlocked(
        self,
        survey: str,
        ipix: int,
        cat: ReferenceCatalogue,
        source: str,
        complete: bool,
        previous: TileInfo | None,
        extra_sources: Sequence[str] = (),
    ) -> TileInfo:
        ipix = self._check_ipix(ipix)
        if len(cat):
            finite = np.isfinite(cat.ra_deg) & np.isfinite(cat.dec_deg)
            if not finite.all():
                raise ValueError("tile stars must have finite positions")
            outside = self.tile_of(cat.ra_deg, cat.dec_deg) != ipix
            if outside.any():
                raise ValueError(f"{int(outside.sum())} of {len(cat)} stars do not lie in tile {ipix}")
        self._ensure_store_manifest()
        survey_dir = self._survey_dir(survey)
        survey_dir.mkdir(parents=True, exist_ok=True)
        cat = _sort_by_dec(cat.with_survey(survey) if cat.survey != survey else cat)
        now = _now()
        sources = list(previous.sources) if previous else []
        for s in (*extra_sources, source):
            if s in sources:
                sources.remove(s)
            sources.append(s)
        fetched, release = (previous.fetched, previous.release) if previous else ("", "")
        if source == ONLINE_SOURCE:
            definition = find_survey(survey)
            fetched, release = now, (definition.vizier_table or "") if definition else ""
        info = TileInfo(
            survey=survey,
            ipix=ipix,
            n_stars=len(cat),
            source=source,
            sources=tuple(sources[-_MAX_SOURCES:]),
            complete=bool(complete),
            created=previous.created if previous else now,
            updated=now,
            bands=tuple(cat.bands),
            fetched=fetched,
            release=release,
        )
        meta = info.to_dict()
        if cat.epoch is not None:
            meta["epoch"] = cat.epoch
        arrays: dict[str, np.ndarray] = {"ra": cat.ra_deg, "dec": cat.dec_deg}
        for k, band in enumerate(cat.bands):
            arrays[f"mag_{k}"] = cat.mags[band]
            arrays[f"err_{k}"] = cat.errs[band]
        if cat.pmra_mas_yr is not None and cat.pmdec_mas_yr is not None:
            meta["proper_motions"] = True
            arrays["pmra"] = cat.pmra_mas_yr
            arrays["pmdec"] = cat.pmdec_mas_yr
        arrays["meta"] = np.array(json.dumps(meta))

        def dump(fh: IO[bytes]) -> None:
            buffer = io.BytesIO()
            np.savez(buffer, **arrays)  # type: ignore[arg-type]
            fh.write(buffer.getbuffer())

        tile_path = self._tile_path(survey, ipix)
        write_atomically(tile_path, dump)
        _write_json(self._info_path(survey, ipix), meta)
        self._update_survey_manifest(survey, cat.bands)
        st = os.stat(tile_path)
        with self._lock:
            self._remember((survey, ipix), _Cached((st.st_mtime_ns, st.st_size, st.st_ino), cat, info))
        return info

    def merge(
        self,
        survey: str,
        ipix: int,
        cat: ReferenceCatalogue,
        source: str,
        complete: bool = False,
        *,
        match_radius_arcsec: float = DEFAULT_MATCH_RADIUS_ARCSEC,
    ) -> MergeResult:
        """Add stars to a tile, deduplicating by position.

        An incoming star within ``match_radius_arcsec`` of a stored star is the same star: its
        non-missing magnitudes and proper motion replace the stored ones (bands the file lacks
        are kept). Other incoming stars are appended; duplicates inside ``cat`` itself are dropped
        first. Incoming positions at another known epoch than the tile's are first moved to the
        tile's epoch along their proper motions; a tile of unknown epoch takes the incoming one.
        The tile stays (or becomes) complete when it was complete or ``complete`` is True.

        Parameters
        ----------
        survey : str
        ipix : int
        cat : ReferenceCatalogue
            Stars lying in tile ``ipix``.
        source : str
            ``"import:<filename>"`` or ``"vizier"``.
        complete : bool, optional
            True when ``cat`` is the survey's whole content of the tile.
        match_radius_arcsec : float, optional

        Returns
        -------
        MergeResult
        """
        radius_deg = match_radius_arcsec / 3600.0
        with self._locked(survey, f"{int(ipix):05d}"):
            previous = self._load(survey, ipix)
            incoming = _dedupe_within(cat, radius_deg)
            if previous is None or len(previous.cat) == 0:
                bands = list(incoming.bands)
                if previous is not None:
                    bands += [b for b in previous.cat.bands if b not in bands]
                    incoming = concatenate([incoming, ReferenceCatalogue.empty(survey, bands)], survey)
                info = self._write_unlocked(
                    survey,
                    ipix,
                    incoming,
                    source,
                    complete or bool(previous and previous.info.complete),
                    previous.info if previous else None,
                )
                return MergeResult(info, n_added=len(incoming), n_updated=0)
            merged, n_updated = _merge_catalogues(previous.cat, incoming, radius_deg)
            info = self._write_unlocked(
                survey, ipix, merged, source, complete or previous.info.complete, previous.info
            )
            return MergeResult(info, n_added=len(merged) - len(previous.cat), n_updated=n_updated)

    def _update_survey_manifest(self, survey: str, bands: Sequence[str]) -> None:
        path = self._survey_dir(survey) / "survey.json"
        with self._locked(survey, "_survey"):
            meta: dict[str, Any]
            try:
                meta = json.loads(path.read_text("utf-8"))
            except (FileNotFoundError, ValueError):
                meta = {}
            known = list(meta.get("bands", []))
            new = [b for b in bands if b not in known]
            if meta and not new:
                return
            now = _now()
            meta.setdefault("name", survey)
            meta.setdefault("created", now)
            meta["custom"] = find_survey(survey) is None
            meta["nside"] = self.nside
            meta["bands"] = known + new
            meta["updated"] = now
            _write_json(path, meta)

    # ------------------------------------------------------------------ inventory

    def surveys(self) -> list[str]:
        """Names of the surveys holding at least one tile, sorted."""
        if not self.root.is_dir():
            return []
        names = []
        for child in sorted(self.root.iterdir()):
            if child.is_dir() and not child.name.startswith(".") and any(child.glob("*.npz")):
                names.append(child.name)
        return names

    def remove_survey(self, survey: str) -> int:
        """Delete every tile of a survey (e.g. demo data); returns how many tiles were removed."""
        folder = self._survey_dir(survey)
        if not folder.is_dir():
            return 0
        n_tiles = len(list(folder.glob("*.npz")))
        shutil.rmtree(folder)
        for key in [key for key in self._cache if key[0] == folder.name]:
            self._cached_rows -= len(self._cache.pop(key).cat)
        return n_tiles

    def survey_bands(self, survey: str) -> list[str]:
        """Bands recorded in the survey manifest (empty when the survey is not stored)."""
        try:
            meta = json.loads((self._survey_dir(survey) / "survey.json").read_text("utf-8"))
        except (FileNotFoundError, ValueError):
            return []
        return [str(b) for b in meta.get("bands", [])]

    def has_survey(self, survey: str) -> bool:
        """True when the store holds at least one tile of ``survey``."""
        directory = self._survey_dir(survey)
        return directory.is_dir() and any(directory.glob("*.npz"))

    def coverage(self, survey: str) -> SurveyCoverage:
        """Tiles stored for ``survey`` with their manifests.

        Parameters
        ----------
        survey : str

        Returns
        -------
        SurveyCoverage
            Empty (no tiles) when the survey is not stored.
        """
        directory = self._survey_dir(survey)
        tiles: list[TileInfo] = []
        if directory.is_dir():
            for path in sorted(directory.glob("*.npz")):
                try:
                    ipix = int(path.stem)
                except ValueError:
                    continue
                info = self._read_sidecar(survey, ipix)
                if info is None:
                    info = self.info(survey, ipix)
                if info is not None:
                    tiles.append(info)
        return SurveyCoverage(
            survey=survey,
            nside=self.nside,
            n_tiles=len(tiles),
            n_complete=sum(t.complete for t in tiles),
            n_stars=sum(t.n_stars for t in tiles),
            area_deg2=len(tiles) * self.tile_area_deg2,
            bands=tuple(self.survey_bands(survey)),
            custom=find_survey(survey) is None,
            tiles=tuple(tiles),
        )

    def _read_sidecar(self, survey: str, ipix: int) -> TileInfo | None:
        try:
            meta = json.loads(self._info_path(survey, ipix).read_text("utf-8"))
            return TileInfo.from_dict({**meta, "survey": survey, "ipix": ipix})
        except (FileNotFoundError, ValueError, KeyError):
            return None


def check_cone(ra_deg: float, dec_deg: float, radius_deg: float) -> tuple[float, float, float]:
    """Validate a cone; returns ``(ra in [0, 360), dec, radius)``.

    Raises
    ------
    cpcs.errors.InputError
        ``code="invalid_cone"``.
    """
    try:
        ra, dec, radius = float(ra_deg), float(dec_deg), float(radius_deg)
    except (TypeError, ValueError) as exc:
        raise InputError("cone centre and radius must be numbers", code="invalid_cone") from exc
    if not (np.isfinite(ra) and np.isfinite(dec) and np.isfinite(radius)):
        raise InputError("cone centre and radius must be finite", code="invalid_cone")
    if abs(dec) > 90.0:
        raise InputError(f"declination {dec} is outside [-90, 90]", code="invalid_cone")
    if not 0.0 < radius <= 180.0:
        raise InputError(f"cone radius {radius} deg must be in (0, 180]", code="invalid_cone")
    return ra % 360.0, dec, radius


def _cone_in_sorted(cat: ReferenceCatalogue, ra: float, dec: float, radius: float) -> ReferenceCatalogue:
    """Stars of a Dec-sorted catalogue within a cone (binary search on Dec, then exact test)."""
    if len(cat) == 0:
        return cat
    lo = int(np.searchsorted(cat.dec_deg, dec - radius, side="left"))
    hi = int(np.searchsorted(cat.dec_deg, dec + radius, side="right"))
    if hi <= lo:
        return cat.select(slice(0, 0))
    candidates = np.arange(lo, hi)
    max_abs_dec = min(90.0, abs(dec) + radius)
    if max_abs_dec < 89.0:  # cheap RA window first (no trigonometry per star)
        half_width = min(180.0, radius / np.cos(np.radians(max_abs_dec)) + 1e-9)
        dra = np.abs((cat.ra_deg[lo:hi] - ra + 180.0) % 360.0 - 180.0)
        candidates = candidates[dra <= half_width]
    sep = angular_separation_deg(ra, dec, cat.ra_deg[candidates], cat.dec_deg[candidates])
    inside = candidates[sep <= radius]
    if len(inside) == hi - lo:
        return cat.select(slice(lo, hi))
    return cat.select(inside)


def _merge_catalogues(
    stored: ReferenceCatalogue, incoming: ReferenceCatalogue, radius_deg: float
) -> tuple[ReferenceCatalogue, int]:
    from scipy.spatial import cKDTree

    if stored.epoch is not None and incoming.epoch is not None and incoming.epoch != stored.epoch:
        incoming = incoming.at_epoch(stored.epoch)
    tree = cKDTree(_unit_vectors(stored.ra_deg, stored.dec_deg))
    dist, idx = tree.query(
        _unit_vectors(incoming.ra_deg, incoming.dec_deg), k=1, distance_upper_bound=_chord(radius_deg)
    )
    matched = np.isfinite(dist)
    bands = list(stored.bands) + [b for b in incoming.bands if b not in stored.mags]
    n_old = len(stored)
    mags: dict[str, FloatArray] = {}
    errs: dict[str, FloatArray] = {}
    target = idx[matched]
    for band in bands:
        m = stored.mags[band].copy() if band in stored.mags else np.full(n_old, np.nan)
        e = stored.errs[band].copy() if band in stored.errs else np.full(n_old, np.nan)
        if band in incoming.mags:
            new_m = incoming.mags[band][matched]
            new_e = incoming.errs[band][matched]
            has = np.isfinite(new_m)
            m[target[has]] = new_m[has]
            e[target[has]] = new_e[has]
        mags[band] = m
        errs[band] = e
    pmra: FloatArray | None = None
    pmdec: FloatArray | None = None
    if stored.has_proper_motions or incoming.has_proper_motions:
        pmra = np.full(n_old, np.nan) if stored.pmra_mas_yr is None else stored.pmra_mas_yr.copy()
        pmdec = np.full(n_old, np.nan) if stored.pmdec_mas_yr is None else stored.pmdec_mas_yr.copy()
        if incoming.pmra_mas_yr is not None and incoming.pmdec_mas_yr is not None:
            new_ra = incoming.pmra_mas_yr[matched]
            new_dec = incoming.pmdec_mas_yr[matched]
            has = np.isfinite(new_ra) & np.isfinite(new_dec)
            pmra[target[has]] = new_ra[has]
            pmdec[target[has]] = new_dec[has]
    updated = ReferenceCatalogue(
        stored.survey, stored.ra_deg, stored.dec_deg, mags, errs, pmra, pmdec, stored.epoch
    )
    merged = concatenate([updated, incoming.select(~matched)], stored.survey)
    return merged, int(matched.sum())
