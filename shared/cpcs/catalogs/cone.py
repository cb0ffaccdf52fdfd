"""Cone searches over the local tile store, filled from Vizier when the network is enabled.

:class:`ConeService` answers "which reference stars lie within this cone?" per survey:

1. the cone's HEALPix tiles are looked up once;
2. for each survey, the stored tiles are read (warm: from the in-memory LRU) and cut to the cone;
3. when ``online`` is True, tiles that are missing or only partially filled (by imports) are fetched
   from Vizier in one query covering them, split into tiles and stored as complete, then cut; a
   survey whose footprint the cone does not touch (:mod:`cpcs.catalogs.coverage`: PS1 south of
   -30, SkyMapper in the north...) is never fetched, only its stored stars are read;
4. surveys without stars in the cone are left out of the answer; when no survey has any, the
   service fails fast: offline with :class:`cpcs.errors.CalibrationFailed`
   (``code="no_reference_stars"``, telling how to import the field), online with
   :class:`cpcs.errors.ServiceUnavailable` if Vizier could not be reached, else
   ``no_reference_stars``.

Offline is the default of every caller: ``online`` must be passed explicitly. The fetcher is
injectable (tests give a fake one; nothing else is mocked).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from cpcs import metrics
from cpcs.catalogs.coverage import covers
from cpcs.catalogs.model import ReferenceCatalogue
from cpcs.catalogs.surveys import SURVEYS, SurveyDefinition, find_survey, validate_survey_name
from cpcs.catalogs.tiles import ONLINE_SOURCE, TileInfo, TileStore, check_cone
from cpcs.catalogs.vizier import DEFAULT_ROW_LIMIT, DEFAULT_TIMEOUT_S, fetch_cone_online
from cpcs.errors import CalibrationFailed, InputError, ServiceUnavailable

__all__ = ["IMPORT_HINT", "MAX_CONE_RADIUS_DEG", "ConeService", "Fetcher", "PrefetchReport", "RefreshReport"]

log = logging.getLogger(__name__)

#: Largest cone the service accepts (degrees).
MAX_CONE_RADIUS_DEG = 5.0
#: A single Vizier query covers all missing tiles while its radius stays below this (degrees).
_MAX_COMBINED_QUERY_RADIUS_DEG = 3.0

#: How an operator fills the cache for a field without network access.
IMPORT_HINT = "cpcs catalog import --survey NAME FILE"


class Fetcher(Protocol):
    """Signature of :func:`cpcs.catalogs.vizier.fetch_cone_online` (and of test fakes)."""

    def __call__(
        self,
        survey_def: SurveyDefinition,
        ra_deg: float,
        dec_deg: float,
        radius_deg: float,
        *,
        timeout_s: float = ...,
        row_limit: int = ...,
    ) -> ReferenceCatalogue: ...


@dataclass(frozen=True)
class PrefetchReport:
    """Outcome of :meth:`ConeService.prefetch`.

    Attributes
    ----------
    counts : dict of str to int
        Stars within the cone per survey (0 included).
    fetched_tiles : dict of str to int
        Tiles fetched from Vizier and stored, per survey.
    missing_tiles : dict of str to list of int
        Tiles of the cone still not stored, per survey (offline, or after a failed fetch).
    errors : dict of str to str
        Vizier failures per survey.
    outside : list of str
        Surveys not fetched because the cone lies outside their footprint.
    """

    counts: dict[str, int] = field(default_factory=dict)
    fetched_tiles: dict[str, int] = field(default_factory=dict)
    missing_tiles: dict[str, list[int]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    outside: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "counts": dict(self.counts),
            "fetched_tiles": dict(self.fetched_tiles),
            "missing_tiles": {k: list(v) for k, v in self.missing_tiles.items()},
            "errors": dict(self.errors),
            "outside": list(self.outside),
        }


@dataclass(frozen=True)
class RefreshReport:
    """Outcome of :meth:`ConeService.refresh`.

    Attributes
    ----------
    stale : dict of str to int
        Fetched tiles older than the age limit (or of unknown fetch date), per survey.
    refreshed : dict of str to int
        Those fetched again and stored, per survey.
    errors : dict of str to str
        Fetch failures per survey (the old tiles are kept).
    """

    stale: dict[str, int] = field(default_factory=dict)
    refreshed: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {"stale": dict(self.stale), "refreshed": dict(self.refreshed), "errors": dict(self.errors)}


def tile_provenance(info: TileInfo) -> dict[str, Any]:
    """What a cone answer says about one tile it used: when it was fetched, from which release."""
    return {
        "ipix": info.ipix,
        "fetched": info.fetched or None,
        "release": info.release or None,
        "source": info.source,
        "complete": info.complete,
    }


@dataclass
class _SurveyCone:
    stars: ReferenceCatalogue | None = None
    fetched_tiles: int = 0
    missing: list[int] = field(default_factory=list)
    error: ServiceUnavailable | None = None
    outside: bool = False  # the cone is outside the survey's footprint: never fetched


class ConeService:
    """Reference stars per survey within a cone, from the tile store (and Vizier when online).

    Parameters
    ----------
    store : TileStore
        The local tile store.
    online : bool
        Whether misses may be fetched from Vizier (keyword-only, no default: callers decide).
    fetcher : Fetcher, optional
        Function fetching a cone of a survey; :func:`~cpcs.catalogs.vizier.fetch_cone_online`
        by default.
    surveys : sequence of str, optional
        Surveys consulted when a request names none, in order of preference (default: every
        known survey, then any site survey found in the store).
    timeout_s : float, optional
        Vizier timeout per query.
    row_limit : int, optional
        Rows asked of Vizier per query; a tile answer that reaches it is stored as incomplete.
    max_radius_deg : float, optional
        Largest cone radius accepted.
    """

    def __init__(
        self,
        store: TileStore,
        *,
        online: bool,
        fetcher: Fetcher = fetch_cone_online,
        surveys: Sequence[str] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        row_limit: int = DEFAULT_ROW_LIMIT,
        max_radius_deg: float = MAX_CONE_RADIUS_DEG,
    ):
        self.store = store
        self.online = bool(online)
        self.fetcher = fetcher
        self.default_surveys = [self._canonical(s) for s in surveys] if surveys is not None else None
        self.timeout_s = float(timeout_s)
        self.row_limit = int(row_limit)
        self.max_radius_deg = float(max_radius_deg)
        self._fill_locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    # ------------------------------------------------------------------ public API

    def get_cone(
        self, ra_deg: float, dec_deg: float, radius_deg: float, surveys: list[str] | None = None
    ) -> dict[str, ReferenceCatalogue]:
        """Reference stars within a cone, per survey.

        Parameters
        ----------
        ra_deg, dec_deg : float
            Cone centre (ICRS), degrees.
        radius_deg : float
            Cone radius, degrees.
        surveys : list of str, optional
            Surveys to consult, in order of preference (default: the service's list).

        Returns
        -------
        dict of str to ReferenceCatalogue
            One entry per survey with at least one star in the cone, in the order asked.

        Raises
        ------
        cpcs.errors.InputError
            ``invalid_cone`` or ``unknown_survey``.
        cpcs.errors.CalibrationFailed
            ``code="no_reference_stars"`` when no survey has a star in the cone.
        cpcs.errors.ServiceUnavailable
            ``code="catalogue_source_unreachable"`` when online, nothing is cached and Vizier
            could not be reached.
        """
        started = time.perf_counter()
        ra, dec, radius = self._check(ra_deg, dec_deg, radius_deg)
        names = self._resolve(surveys)
        results = self._collect(ra, dec, radius, names)
        found = {name: r.stars for name, r in results.items() if r.stars is not None and len(r.stars)}
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        log.debug(
            "cone ra=%.5f dec=%+.5f r=%.4f: %s in %.2f ms",
            ra,
            dec,
            radius,
            {k: len(v) for k, v in found.items()},
            elapsed_ms,
        )
        if found:
            return found
        errors = {name: r.error for name, r in results.items() if r.error is not None}
        where = f"RA={ra:.5f} Dec={dec:+.5f} within {radius * 60.0:.2f} arcmin"
        if errors:
            detail = "; ".join(f"{name}: {err.message}" for name, err in errors.items())
            raise ServiceUnavailable(
                f"no reference stars cached at {where} and the catalogue source could not be reached "
                f"({detail})",
                code="catalogue_source_unreachable",
            )
        if not self.online:
            raise CalibrationFailed(
                f"no reference stars at {where}: the field is not in the local catalogue cache "
                f"(surveys consulted: {', '.join(names)}) and online catalogue access is disabled. "
                f"Import a reference catalogue covering the field with `{IMPORT_HINT}` "
                "(e.g. an APASS or PS1 VOTable downloaded from Vizier), or enable online access.",
                code="no_reference_stars",
            )
        raise CalibrationFailed(
            f"no reference stars at {where} in any of the surveys {', '.join(names)}",
            code="no_reference_stars",
        )

    def prefetch(
        self, ra_deg: float, dec_deg: float, radius_deg: float, surveys: list[str] | None = None
    ) -> PrefetchReport:
        """Make sure a cone is in the store (fetching misses when online) and count its stars.

        Parameters
        ----------
        ra_deg, dec_deg, radius_deg : float
            Cone, degrees.
        surveys : list of str, optional
            Surveys to fill (default: the service's list).

        Returns
        -------
        PrefetchReport
            Never raises for an empty field or an unreachable Vizier; both are reported.
        """
        ra, dec, radius = self._check(ra_deg, dec_deg, radius_deg)
        names = self._resolve(surveys)
        results = self._collect(ra, dec, radius, names)
        report = PrefetchReport()
        for name, r in results.items():
            report.counts[name] = 0 if r.stars is None else len(r.stars)
            report.fetched_tiles[name] = r.fetched_tiles
            if r.missing:
                report.missing_tiles[name] = list(r.missing)
            if r.error is not None:
                report.errors[name] = r.error.message
            if r.outside:
                report.outside.append(name)
        return report

    def provenance(
        self, ra_deg: float, dec_deg: float, radius_deg: float, surveys: Sequence[str]
    ) -> dict[str, list[dict[str, Any]]]:
        """Per survey, the stored tiles under a cone with their fetch date and release."""
        ra, dec, radius = self._check(ra_deg, dec_deg, radius_deg)
        tiles = self.store.tiles_for_cone(ra, dec, radius)
        return {name: [tile_provenance(i) for i in self.store.infos(name, tiles)] for name in surveys}

    def refresh(self, max_age_days: float, surveys: list[str] | None = None) -> RefreshReport:
        """Fetch again every fetched tile older than ``max_age_days`` (or of unknown fetch date).

        Only tiles that came from an online fetch are refreshed (imported stars stay as imported).
        Offline, nothing is fetched: :class:`cpcs.errors.ServiceUnavailable`
        (``code="catalogue_offline"``) says how many tiles are stale and how to enable access.
        """
        if max_age_days < 0:
            raise InputError(f"max_age_days must be >= 0, got {max_age_days}", code="invalid_age")
        cutoff = (datetime.now(UTC) - timedelta(days=max_age_days)).isoformat(timespec="seconds")
        stale: dict[str, list[int]] = {}
        for name in self._resolve(surveys):
            definition = find_survey(name)
            if definition is None or not definition.fetchable:
                continue
            old = [
                info.ipix
                for info in self.store.infos(name, self.store.stored_tiles(name))
                if ONLINE_SOURCE in info.sources and (not info.fetched or info.fetched < cutoff)
            ]
            if old:
                stale[name] = old
        if not self.online:
            counts = ", ".join(f"{name}: {len(tiles)}" for name, tiles in stale.items()) or "none"
            raise ServiceUnavailable(
                f"online catalogue access is disabled, so no tile was refreshed (stale tiles older "
                f"than {max_age_days:g} days: {counts}). Set CPCS_CATALOG_ONLINE=true on a machine "
                "that can reach Vizier and run the refresh again.",
                code="catalogue_offline",
            )
        report = RefreshReport(stale={name: len(tiles) for name, tiles in stale.items()})
        for name, tiles in stale.items():
            definition = find_survey(name)
            assert definition is not None
            done = 0
            try:
                with self._fill_lock(name):
                    for ipix in tiles:
                        self._refetch(definition, ipix)
                        done += 1
            except ServiceUnavailable as exc:
                log.warning("catalogue refresh failed for %s: %s", name, exc.message)
                report.errors[name] = exc.message
            report.refreshed[name] = done
        return report

    # ------------------------------------------------------------------ internals

    def _refetch(self, definition: SurveyDefinition, ipix: int) -> None:
        """Replace one tile by a fresh fetch of the whole tile."""
        q_ra, q_dec, q_radius = self.store.enclosing_cone([ipix])
        fetched = self.fetcher(
            definition, q_ra, q_dec, q_radius, timeout_s=self.timeout_s, row_limit=self.row_limit
        )
        truncated = 0 < self.row_limit <= len(fetched)
        part = (
            fetched.select(self.store.tile_of(fetched.ra_deg, fetched.dec_deg) == ipix)
            if len(fetched)
            else fetched
        )
        self.store.write(definition.name, ipix, part, ONLINE_SOURCE, complete=not truncated)

    def _check(self, ra_deg: float, dec_deg: float, radius_deg: float) -> tuple[float, float, float]:
        ra, dec, radius = check_cone(ra_deg, dec_deg, radius_deg)
        if radius > self.max_radius_deg:
            raise InputError(
                f"cone radius {radius} deg exceeds the maximum of {self.max_radius_deg} deg",
                code="invalid_cone",
            )
        return ra, dec, radius

    @staticmethod
    def _canonical(name: str) -> str:
        known = find_survey(name)
        return known.name if known is not None else validate_survey_name(name)

    def _stored_custom_surveys(self) -> list[str]:
        root = self.store.root
        if not root.is_dir():
            return []
        names = []
        for child in sorted(root.iterdir()):
            if child.is_dir() and (child / "survey.json").is_file() and find_survey(child.name) is None:
                names.append(child.name)
        return names

    def _resolve(self, surveys: Sequence[str] | None) -> list[str]:
        if surveys is None:
            if self.default_surveys is not None:
                return list(self.default_surveys)
            return list(SURVEYS) + self._stored_custom_surveys()
        if isinstance(surveys, str):
            surveys = [surveys]
        names: list[str] = []
        for requested in surveys:
            name = self._canonical(requested)
            if find_survey(name) is None and not (self.store.root / name).is_dir():
                raise InputError(
                    f"unknown survey {requested!r}: not a known survey ({', '.join(SURVEYS)}) "
                    "and not imported into the local catalogue cache",
                    code="unknown_survey",
                )
            if name not in names:
                names.append(name)
        if not names:
            raise InputError("no survey requested", code="unknown_survey")
        return names

    def _collect(self, ra: float, dec: float, radius: float, names: list[str]) -> dict[str, _SurveyCone]:
        tiles = self.store.tiles_for_cone(ra, dec, radius)
        results: dict[str, _SurveyCone] = {}
        for name in names:
            result = _SurveyCone()
            stars: ReferenceCatalogue | None = None
            missing: list[int] = list(tiles)
            partial: list[int] = []
            if (self.store.root / name).is_dir():
                stars, missing, partial = self.store.cone(name, ra, dec, radius, tiles)
            definition = find_survey(name)
            metrics.cone_looked_up(name, cached=stars is not None and len(stars) > 0 and not missing)
            result.outside = definition is not None and not covers(definition.name, ra, dec, radius)
            if (
                self.online
                and definition is not None
                and definition.fetchable
                and not result.outside
                and (missing or partial)
            ):
                try:
                    with metrics.catalogue_fetch(name):
                        result.fetched_tiles = self._fill(definition, missing, partial, ra, dec, radius)
                    stars, missing, partial = self.store.cone(name, ra, dec, radius, tiles)
                except ServiceUnavailable as exc:
                    log.warning("catalogue fetch failed for %s: %s", name, exc.message)
                    result.error = exc
            result.stars = stars
            result.missing = missing
            results[name] = result
        return results

    def _fill_lock(self, survey: str) -> threading.Lock:
        with self._locks_guard:
            return self._fill_locks.setdefault(survey, threading.Lock())

    def _fill(
        self,
        definition: SurveyDefinition,
        missing: list[int],
        partial: list[int],
        ra: float,
        dec: float,
        radius: float,
    ) -> int:
        """Fetch the missing/partial tiles of one survey and store them; returns tiles written."""
        name = definition.name
        with self._fill_lock(name):
            # another thread may have filled some of them while we waited
            todo = [
                t
                for t in dict.fromkeys([*missing, *partial])
                if (info := self.store.info(name, t)) is None or not info.complete
            ]
            if not todo:
                return 0
            partial_set = {t for t in todo if self.store.info(name, t) is not None}
            q_ra, q_dec, q_radius = self.store.enclosing_cone(todo)
            groups = [todo] if q_radius <= _MAX_COMBINED_QUERY_RADIUS_DEG else [[t] for t in todo]
            written = 0
            truncated_any = False
            for group in groups:
                if len(groups) > 1:
                    q_ra, q_dec, q_radius = self.store.enclosing_cone(group)
                fetched = self.fetcher(
                    definition, q_ra, q_dec, q_radius, timeout_s=self.timeout_s, row_limit=self.row_limit
                )
                truncated = 0 < self.row_limit <= len(fetched)
                truncated_any |= truncated
                if truncated:
                    log.warning(
                        "%s: Vizier answer for %d tile(s) reached the row limit %d; stored as incomplete",
                        name,
                        len(group),
                        self.row_limit,
                    )
                pix = self.store.tile_of(fetched.ra_deg, fetched.dec_deg) if len(fetched) else None
                for ipix in group:
                    part = fetched.select(pix == ipix) if pix is not None else fetched
                    if truncated or ipix in partial_set:
                        self.store.merge(name, ipix, part, ONLINE_SOURCE, complete=not truncated)
                    else:
                        self.store.write(name, ipix, part, ONLINE_SOURCE, complete=True)
                    written += 1
            if truncated_any:
                # the tiles are incomplete: make sure at least the requested cone itself is stored
                cone = self.fetcher(
                    definition, ra, dec, radius * 1.05, timeout_s=self.timeout_s, row_limit=self.row_limit
                )
                if len(cone):
                    pix = self.store.tile_of(cone.ra_deg, cone.dec_deg)
                    for ipix in sorted(set(pix.tolist())):
                        self.store.merge(
                            name, int(ipix), cone.select(pix == ipix), ONLINE_SOURCE, complete=False
                        )
            return written
