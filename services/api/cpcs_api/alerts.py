"""REST v1: alerts and their light curves."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from cpcs.domain import alerts as alert_store
from cpcs.domain.points import light_curve_points
from cpcs.schemas import UNREADABLE_BODY_RESPONSE, AlertOut, LightCurve, Page, PageOffset, RecordId
from cpcs.web import CONFLICT_RESPONSE, ERROR_RESPONSES, AdminDep, ContextDep, SessionDep, UserDep


class AlertIn(BaseModel):
    name: str = Field(max_length=300, examples=["ivo://Gaia16aye"])
    ra_deg: float = Field(ge=0, lt=360)
    dec_deg: float = Field(ge=-90, le=90)
    url: str | None = Field(None, max_length=1000)


class AlertUpdate(BaseModel):
    ra_deg: float | None = Field(None, ge=0, lt=360)
    dec_deg: float | None = Field(None, ge=-90, le=90)
    url: str | None = Field(None, max_length=1000)


def router() -> APIRouter:
    api = APIRouter(
        prefix="/api/v1/alerts", tags=["alerts"], responses={**ERROR_RESPONSES, **UNREADABLE_BODY_RESPONSE}
    )

    @api.get("", response_model=Page[AlertOut], summary="List alerts, newest first")
    def list_alerts(
        session: SessionDep,
        offset: Annotated[PageOffset, Query()] = 0,
        limit: Annotated[int, Query(ge=1, le=500)] = 20,
        observed_only: bool = False,
        name: Annotated[str | None, Query(max_length=300, description="Part of the name")] = None,
    ) -> Page[AlertOut]:
        return alert_store.list_alerts(
            session, offset=offset, limit=limit, observed_only=observed_only, search=name
        )

    @api.post(
        "", response_model=AlertOut, status_code=201, summary="Create an alert", responses=CONFLICT_RESPONSE
    )
    def create_alert(body: AlertIn, context: ContextDep, user: UserDep) -> AlertOut:
        del user  # any observer may add a target, as in CPCS
        with context.db.transaction() as session:
            return alert_store.create_alert(session, body.name, body.ra_deg, body.dec_deg, body.url)

    @api.get("/cone", response_model=list[AlertOut], summary="Alerts within a radius of a position")
    def cone(
        session: SessionDep,
        ra_deg: Annotated[float, Query(ge=0, lt=360)],
        dec_deg: Annotated[float, Query(ge=-90, le=90)],
        radius_deg: Annotated[float, Query(gt=0, le=10)] = 0.01,
    ) -> list[AlertOut]:
        return alert_store.cone_search(session, ra_deg, dec_deg, radius_deg)

    @api.get("/by-name", response_model=AlertOut, summary="An alert by its name (ivo://...)")
    def by_name(session: SessionDep, name: Annotated[str, Query(max_length=300)]) -> AlertOut:
        return alert_store.alert_view(session, alert_store.find_alert(session, name))

    @api.get("/{alert_id}", response_model=AlertOut, summary="An alert by id")
    def get_alert(session: SessionDep, alert_id: RecordId) -> AlertOut:
        return alert_store.alert_view(session, alert_store.get_alert(session, alert_id))

    @api.patch("/{alert_id}", response_model=AlertOut, summary="Update an alert's coordinates (admin)")
    def update_alert(alert_id: RecordId, body: AlertUpdate, context: ContextDep, admin: AdminDep) -> AlertOut:
        del admin
        with context.db.transaction() as session:
            return alert_store.update_alert(
                session, alert_id, ra_deg=body.ra_deg, dec_deg=body.dec_deg, url=body.url
            )

    @api.get("/{alert_id}/lightcurve", response_model=LightCurve, summary="Every visible point of an alert")
    def light_curve(session: SessionDep, alert_id: RecordId, user: UserDep) -> LightCurve:
        del user  # downloading data needs a token, as in CPCS
        alert = alert_store.get_alert(session, alert_id)
        return LightCurve(
            alert=alert_store.alert_view(session, alert), points=light_curve_points(session, alert_id)
        )

    return api
