"""The catalog-cache HTTP service: cones of reference stars for the other services."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query

from cpcs.catalogs.cone import ConeService
from cpcs.catalogs.coverage import covers, footprint
from cpcs.catalogs.model import to_wire
from cpcs.catalogs.surveys import SURVEYS
from cpcs.catalogs.tiles import TileStore
from cpcs.context import Context
from cpcs.web import ERROR_RESPONSES, make_app


def cone_service(context: Context) -> ConeService:
    settings = context.settings
    return ConeService(
        TileStore(settings.catalogs_dir), online=settings.catalog_online, timeout_s=settings.catalog_timeout_s
    )


def router(cones: ConeService) -> APIRouter:
    api = APIRouter(prefix="/api/v1", tags=["reference catalogues"], responses=ERROR_RESPONSES)

    @api.get(
        "/cone", summary="Reference stars of every cached survey within a cone", operation_id="reference_cone"
    )
    def cone(
        ra_deg: Annotated[float, Query(ge=0, lt=360)],
        dec_deg: Annotated[float, Query(ge=-90, le=90)],
        radius_deg: Annotated[float, Query(gt=0, le=2)],
        survey: Annotated[list[str] | None, Query(description="Limit to these surveys")] = None,
    ) -> dict[str, Any]:
        catalogues = cones.get_cone(ra_deg, dec_deg, radius_deg, surveys=survey)
        return {
            "catalogues": {name: to_wire(cat) for name, cat in catalogues.items()},
            # per survey, the tiles the stars came from: when each was fetched, from which release
            "tiles": cones.provenance(ra_deg, dec_deg, radius_deg, list(catalogues)),
        }

    @api.get("/coverage", summary="Which known surveys cover a cone (their sky footprints)")
    def coverage(
        ra_deg: Annotated[float, Query(ge=0, lt=360)],
        dec_deg: Annotated[float, Query(ge=-90, le=90)],
        radius_deg: Annotated[float, Query(gt=0, le=2)],
    ) -> dict[str, Any]:
        # a survey outside its footprint is never fetched for this cone, and AUTO says so
        return {
            "surveys": {
                name: {
                    "covered": covers(name, ra_deg, dec_deg, radius_deg),
                    "footprint": fp.description if (fp := footprint(name)) is not None else "all-sky",
                    "fetchable": definition.fetchable,
                }
                for name, definition in SURVEYS.items()
            }
        }

    @api.get("/surveys", summary="Surveys with cached stars")
    def surveys() -> dict[str, list[str]]:
        return {"surveys": cones.store.surveys()}

    return api


def create_app(context: Context, cones: ConeService | None = None) -> FastAPI:
    return make_app(context, title="CPCS catalog-cache", routers=[router(cones or cone_service(context))])
