"""REST v1: observations (status, calibrations, metadata corrections) and points."""

from __future__ import annotations

from typing import Annotated, Literal

from astropy.table import Table
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from cpcs.domain import observations as observation_store
from cpcs.domain import points as point_store
from cpcs.domain.corrections import correct_observation
from cpcs.domain.revisions import Metadata, revision_history
from cpcs.errors import InputError, NotFoundError
from cpcs.lightcurve.exports import to_csv, to_ecsv
from cpcs.schemas import (
    UNREADABLE_BODY_RESPONSE,
    CalibrationOut,
    ErrorBody,
    ObservationOut,
    ObservationRevisionOut,
    Page,
    PageOffset,
    PointOut,
    RecordId,
    ReductionOut,
    Schema,
)
from cpcs.web import ERROR_RESPONSES, ContextDep, SessionDep, UserDep


class ObservationCorrection(BaseModel):
    """Corrected metadata; a field left out keeps its value, an empty filter or comment clears it."""

    model_config = ConfigDict(extra="forbid")

    mjd: float | None = Field(None, ge=0, description="Mid-exposure MJD")
    exptime_s: float | None = Field(None, ge=0)
    filter: str | None = Field(None, max_length=40, description="Filter used (V, r, Clear...)")
    comment: str | None = Field(None, max_length=2000)

    def metadata(self) -> Metadata:
        return Metadata(self.mjd, self.exptime_s, self.filter, self.comment)


class CorrectionApplied(Schema):
    observation: ObservationOut
    changed: list[str] = Field(description="The fields this correction changed (empty: nothing to change)")
    recalibration_url: str | None = Field(
        description="The recalibration queued because the calibration reads a changed field (MJD, filter)"
    )
    not_recalibrated: str | None = Field(
        description="Why no recalibration was queued although one would be (e.g. point_deleted)"
    )


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

    @api.patch(
        "/observations/{observation_id}",
        response_model=CorrectionApplied,
        tags=["observations"],
        summary="Correct your observation's MJD, exposure, filter or comment (history kept)",
        responses={
            **UNREADABLE_BODY_RESPONSE,
            409: {"model": ErrorBody, "description": "Its first calibration is still running"},
        },
    )
    def correct(
        observation_id: RecordId,
        body: ObservationCorrection,
        request: Request,
        context: ContextDep,
        user: UserDep,
    ) -> CorrectionApplied:
        if not body.model_fields_set:
            raise InputError(
                "Send at least one of mjd, exptime_s, filter, comment.", code="nothing_to_correct"
            )
        with context.db.transaction() as session:
            correction = correct_observation(session, user, observation_id, body.metadata())
            observation = observation_store.get_observation(session, observation_id)
            view = observation_store.observation_view(session, observation)
        context.committed()
        queued = correction.recalibration
        return CorrectionApplied(
            observation=view,
            changed=correction.changed,
            recalibration_url=(
                f"{request.base_url}api/v1/calibration-requests/{queued.request_id}" if queued else None
            ),
            not_recalibrated=correction.not_recalibrated,
        )

    @api.get(
        "/observations/{observation_id}/revisions",
        response_model=list[ObservationRevisionOut],
        tags=["observations"],
        summary="Every version of an observation's metadata, the upload's first",
    )
    def revisions(
        session: SessionDep, observation_id: RecordId, user: UserDep
    ) -> list[ObservationRevisionOut]:
        del user
        observation_store.get_observation(session, observation_id)
        return revision_history(session, observation_id)

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
        table = Table.read(path)
        return Response(to_ecsv(table) if format == "ecsv" else to_csv(table), media_type="text/plain")

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
