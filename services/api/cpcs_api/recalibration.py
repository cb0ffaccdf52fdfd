"""REST v1: recalibration of one observation (its observer), a whole alert or an observatory (admins).

Every run is a calibration request answered 202; ``GET /api/v1/calibration-requests/{id}`` follows it
and ``GET /api/v1/observations/{id}/calibrations`` lists every version. See
:mod:`cpcs.domain.recalibration` for what a run and a dry run change.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from cpcs.domain import recalibration as store
from cpcs.domain.recalibration import CalibrationRequestOut, Queued, RecalibrationOptions
from cpcs.schemas import UNREADABLE_BODY_RESPONSE, ErrorBody, RecordId, Schema
from cpcs.web import ERROR_RESPONSES, AdminDep, ContextDep, SessionDep, UserDep

CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {
        "model": ErrorBody,
        "description": "The observation cannot be recalibrated now (the message says why)",
    }
}


class RecalibrateIn(BaseModel):
    """What to change; a field left out keeps the value of the observation's current calibration."""

    match_radius_arcsec: float | None = Field(None, gt=0, le=60, description="Match radius, arcsec")
    force_filter: str | None = Field(
        None, max_length=60, description="'SURVEY/BAND', 'any/BAND', or 'auto' for the automatic choice"
    )
    dry_run: bool = Field(
        False, description="Compute and keep the version in the history, but leave the point where it is"
    )

    def options(self) -> RecalibrationOptions:
        return RecalibrationOptions(self.match_radius_arcsec, self.force_filter, self.dry_run)


class RecalibrationAccepted(Schema):
    request_id: int
    observation_id: int
    dry_run: bool
    params: dict[str, Any] = Field(description="The parameters the run uses")
    status_url: str = Field(description="GET it to follow the run (calibration-requests/{id})")
    observation_url: str


class SkippedObservation(Schema):
    observation_id: int
    reason: str = Field(
        description="dry_run_observation, observation_busy, point_deleted or not_reduced",
        examples=["point_deleted"],
    )


class BulkRecalibrationAccepted(Schema):
    queued: int = Field(description="How many observations were queued for recalibration")
    dry_run: bool
    requests: list[RecalibrationAccepted]
    skipped: list[SkippedObservation]


def _accepted(base_url: str, queued: Queued) -> RecalibrationAccepted:
    base = f"{base_url}api/v1"
    return RecalibrationAccepted(
        request_id=queued.request_id,
        observation_id=queued.observation_id,
        dry_run=queued.params.dry_run,
        params=queued.params.model_dump(),
        status_url=f"{base}/calibration-requests/{queued.request_id}",
        observation_url=f"{base}/observations/{queued.observation_id}",
    )


def _bulk(base_url: str, result: store.BulkResult, dry_run: bool) -> BulkRecalibrationAccepted:
    return BulkRecalibrationAccepted(
        queued=len(result.queued),
        dry_run=dry_run,
        requests=[_accepted(base_url, q) for q in result.queued],
        skipped=[
            SkippedObservation(observation_id=s.observation_id, reason=s.reason) for s in result.skipped
        ],
    )


def router() -> APIRouter:
    api = APIRouter(
        prefix="/api/v1", tags=["recalibration"], responses={**ERROR_RESPONSES, **UNREADABLE_BODY_RESPONSE}
    )

    @api.post(
        "/observations/{observation_id}/recalibrate",
        status_code=202,
        response_model=RecalibrationAccepted,
        summary="Recalibrate one of your observations (a new calibration version; dry_run leaves the point)",
        responses=CONFLICT,
    )
    def recalibrate_observation(
        observation_id: RecordId,
        response: Response,
        context: ContextDep,
        user: UserDep,
        body: RecalibrateIn | None = None,
    ) -> RecalibrationAccepted:
        options = (body or RecalibrateIn()).options()
        with context.db.transaction() as session:
            queued = store.recalibrate_observation(session, user, observation_id, options)
        context.committed()
        accepted = _accepted(context.settings.public_base_url, queued)
        response.headers["Location"] = accepted.status_url
        return accepted

    @api.post(
        "/alerts/{alert_id}/recalibrate",
        status_code=202,
        response_model=BulkRecalibrationAccepted,
        summary="Recalibrate every stored observation of an alert (admin)",
    )
    def recalibrate_alert(
        alert_id: RecordId,
        context: ContextDep,
        admin: AdminDep,
        body: RecalibrateIn | None = None,
    ) -> BulkRecalibrationAccepted:
        options = (body or RecalibrateIn()).options()
        with context.db.transaction() as session:
            result = store.recalibrate_alert(session, alert_id, options, admin)
        context.committed()
        return _bulk(context.settings.public_base_url, result, options.dry_run)

    @api.post(
        "/observatories/{observatory_id}/recalibrate",
        status_code=202,
        response_model=BulkRecalibrationAccepted,
        summary="Recalibrate every stored observation made at an observatory (admin)",
    )
    def recalibrate_observatory(
        observatory_id: RecordId,
        context: ContextDep,
        admin: AdminDep,
        body: RecalibrateIn | None = None,
    ) -> BulkRecalibrationAccepted:
        options = (body or RecalibrateIn()).options()
        with context.db.transaction() as session:
            result = store.recalibrate_observatory(session, observatory_id, options, admin)
        context.committed()
        return _bulk(context.settings.public_base_url, result, options.dry_run)

    @api.get(
        "/calibration-requests/{request_id}",
        response_model=CalibrationRequestOut,
        summary="A calibration request (an upload's or a recalibration): status and, once run, its result",
    )
    def get_calibration_request(
        session: SessionDep, request_id: RecordId, user: UserDep
    ) -> CalibrationRequestOut:
        del user
        return store.request_view(session, request_id)

    return api
