"""The catalog-cache client: reference stars from the service over HTTP, or from its store in-process.

Every consumer of reference stars (calibrate, reduce, the web plots) takes a :class:`ReferenceSource`;
the launcher chooses which one a process gets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import httpx

from cpcs import tracing
from cpcs.catalogs.cone import ConeService
from cpcs.catalogs.model import ReferenceCatalogue, from_wire
from cpcs.errors import CalibrationFailed, ServiceUnavailable


class ReferenceSource(Protocol):
    def cone(
        self, ra_deg: float, dec_deg: float, radius_deg: float, surveys: Sequence[str] | None = None
    ) -> Mapping[str, ReferenceCatalogue]: ...


class LocalReferences:
    """The embedded mode: read the catalog-cache tile store in this process."""

    def __init__(self, cones: ConeService):
        self.cones = cones

    def cone(
        self, ra_deg: float, dec_deg: float, radius_deg: float, surveys: Sequence[str] | None = None
    ) -> Mapping[str, ReferenceCatalogue]:
        return self.cones.get_cone(ra_deg, dec_deg, radius_deg, surveys=list(surveys) if surveys else None)


class HttpReferences:
    """The distributed mode: ask the catalog-cache service."""

    def __init__(self, base_url: str, *, timeout_s: float = 30.0):
        self.client = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s)

    def cone(
        self, ra_deg: float, dec_deg: float, radius_deg: float, surveys: Sequence[str] | None = None
    ) -> Mapping[str, ReferenceCatalogue]:
        params: dict[str, object] = {"ra_deg": ra_deg, "dec_deg": dec_deg, "radius_deg": radius_deg}
        if surveys:
            params["survey"] = list(surveys)
        try:
            response = self.client.get(
                "/api/v1/cone",
                params=params,  # type: ignore[arg-type]
                headers=tracing.outgoing_headers(),  # catalog-cache's span joins the trace
            )
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(
                f"catalog-cache unreachable: {exc}", code="catalog_cache_unreachable"
            ) from exc
        if response.status_code == 422:
            body = response.json()
            raise CalibrationFailed(
                body.get("message", "no reference stars"), code=body.get("error", "no_reference_stars")
            )
        if response.status_code != 200:
            raise ServiceUnavailable(
                f"catalog-cache answered {response.status_code}", code="catalog_cache_unavailable"
            )
        return {survey: from_wire(wire) for survey, wire in response.json()["catalogues"].items()}
