"""REST v1: observations (status and calibrations) and points."""

from __future__ import annotations

import io
from typing import Annotated, Literal

from astropy.table import Table
from fastapi import APIRouter, Query, Response
from fastapi.responses import FileResponse

from cpcs.domain import observations as observation_store
from cpcs.domain import points as point_store
from cpcs.errors import NotFoundError
from cpcs.schemas import CalibrationOut, ObservationOut, Page, PageOffset, PointOut, RecordId, ReductionOut
from cpcs.web import ERROR_RESPONSES, ContextDep, SessionDep, UserDep


def router() -> APIRouter:
    api = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES)

    @api.get(
        "/observations/{observation_id}",
        response_model=ObservationOut,
        tags=["observations"],
        summary="An observation: its status, error, newest calibration and point",
    )
    def get_observation(session: SessionDep, observation_id: RecordId, user: UserDep) -> ObservationOut:
        del user
        observation = observation_store.get_observation(session, observation_id)
        return observation_store.observation_view(session, observation)

    @api.get(
        "/observations/{observation_id}/calibrations",
        response_model=list[CalibrationOut],
        tags=["observations"],
        summary="Every calibration version of an observation, oldest first",
    )
    def calibrations(session: SessionDep, observation_id: RecordId, user: UserDep) -> list[CalibrationOut]:
        del user
        observation_store.get_observation(session, observation_id)
        return observation_store.calibration_history(session, observation_id)

    @api.get(
        "/observations/{observation_id}/reduction",
        response_model=ReductionOut,
        tags=["observations"],
        summary="An image's reduction: header facts, astrometric solution, quality, forced target",
    )
    def reduction(session: SessionDep, observation_id: RecordId, user: UserDep) -> ReductionOut:
        del user
        return ReductionOut.model_validate(observation_store.get_reduction(session, observation_id))

    @api.get(
        "/observations/{observation_id}/sources",
        tags=["observations"],
        summary="The image's measured source table (FITS; format=ecsv or csv for text)",
        response_class=Response,
        responses={
            200: {
                "content": {
                    "application/fits": {"schema": {"type": "string", "format": "binary"}},
                    "text/plain": {"schema": {"type": "string"}},
                }
            }
        },
    )
    def sources(
        context: ContextDep,
        session: SessionDep,
        observation_id: RecordId,
        user: UserDep,
        format: Literal["fits", "ecsv", "csv"] = "fits",
    ) -> Response:
        del user
        reduction = observation_store.get_reduction(session, observation_id)
        if not reduction.sources_path:
            raise NotFoundError("This image has no measured source table.", code="no_sources")
        path = context.settings.data_dir / reduction.sources_path
        if format == "fits":
            return FileResponse(
                path, media_type="application/fits", filename=f"cpcs-{observation_id}-sources.fits"
            )
        buffer = io.StringIO()
        Table.read(path).write(buffer, format="ascii.ecsv" if format == "ecsv" else "ascii.csv")
        return Response(buffer.getvalue(), media_type="text/plain")

    @api.get("/points", response_model=Page[PointOut], tags=["points"], summary="List points with filters")
    def list_points(
        session: SessionDep,
        user: UserDep,
        alert_id: RecordId | None = None,
        observer_id: RecordId | None = None,
        band: Annotated[str | None, Query(max_length=20)] = None,
        mjd_min: float | None = None,
        mjd_max: float | None = None,
        mine: bool = False,
        offset: Annotated[PageOffset, Query()] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Page[PointOut]:
        return point_store.list_points(
            session,
            alert_id=alert_id,
            user_id=user.id if mine else observer_id,
            band=band,
            mjd_min=mjd_min,
            mjd_max=mjd_max,
            offset=offset,
            limit=limit,
        )

    @api.delete(
        "/points/{point_id}",
        response_model=PointOut,
        tags=["points"],
        summary="Delete (hide) one of your points; its records are kept",
    )
    def delete_point(point_id: RecordId, context: ContextDep, user: UserDep) -> PointOut:
        with context.db.transaction() as session:
            deleted = point_store.delete_point(session, user, point_id)
        context.committed()
        return deleted

    return api
