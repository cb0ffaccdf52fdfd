"""Legacy CPCS read and manage endpoints under ``/followup/``, answering as CPCS did."""

from __future__ import annotations

import html
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from cpcs.context import Context
from cpcs.domain import alerts as alert_store
from cpcs.domain.accounts import authenticate, list_observatories
from cpcs.domain.points import delete_point, light_curve_points
from cpcs.errors import InputError
from cpcs.lightcurve.exports import legacy_arrays
from cpcs.schemas import MAX_RECORD_ID, AlertOut, ErrorBody, ObservatoryOut
from cpcs.web import ERROR_RESPONSES, ContextDep, token_from_request

PAGE_SIZE = 20


class LegacyLightCurve(BaseModel):
    """A light curve as CPCS's parallel arrays, one entry per point."""

    mjd: list[float | None]
    mag: list[float]
    magerr: list[float] = Field(description="Measurement error; -1 marks an upper limit")
    caliberr: list[float]
    observatory: list[str]
    catalog: list[str] = Field(description="Reference survey")
    filter: list[str] = Field(description="Band of the reference survey")
    id: list[int] = Field(description="Point ids (followupid)")
    alert_name: str


class LegacyAlertRow(BaseModel):
    id: int
    ivorn: str
    published: str
    ra: float
    dec: float
    nfollowup: int


class LegacyAlertList(BaseModel):
    alerts: list[LegacyAlertRow]
    total: int
    offset: int


class LegacyNewEvent(BaseModel):
    id: int
    ivorn: str
    ra: float
    dec: float


class LegacyDeleted(BaseModel):
    deleted: int
    alert_name: str


async def _fields(request: Request) -> dict[str, str]:
    """Query and form fields together (CPCS scripts send either)."""
    fields = {k: v for k, v in request.query_params.items()}
    content_type = request.headers.get("content-type", "")
    if request.method == "POST" and (
        content_type.startswith("multipart/form-data") or content_type.startswith("application/x-www-form")
    ):
        try:
            form = await request.form()
        except Exception:
            raise InputError("The form could not be read.", code="invalid_form") from None
        for key, value in form.items():
            if isinstance(value, str):
                fields[key] = value
    return fields


def _int_field(fields: dict[str, str], name: str) -> int | None:
    value = fields.get(name, "").strip()
    if not value:
        return None
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_RECORD_ID:
        raise InputError(
            f"{name} must be a whole number from 1 to {MAX_RECORD_ID}.", code=f"invalid_{name.lower()}"
        )
    return int(value)


def _float_field(fields: dict[str, str], name: str) -> float:
    value = fields.get(name, "").strip()
    try:
        return float(value)
    except ValueError:
        raise InputError(f"{name} must be a number in decimal degrees.", code=f"invalid_{name}") from None


def lightcurve_arrays(context: Context, alert_id: int) -> dict[str, Any]:
    """A light curve as CPCS's parallel arrays (``magerr = -1`` marks an upper limit)."""
    with context.db.transaction() as session:
        alert = alert_store.get_alert(session, alert_id)
        points = light_curve_points(session, alert_id)
    return legacy_arrays(alert.name, points)


def _light_curve_of(context: Context, token: str | None, alert_id: int | None, name: str | None) -> Any:
    """The legacy light curve of the alert named by id or name, for a valid token."""
    with context.db.transaction() as session:
        authenticate(session, token)
        if alert_id is not None:
            resolved = alert_store.get_alert(session, alert_id).id
        elif name:
            resolved = alert_store.find_alert(session, name).id
        else:
            raise InputError("Give alert_id or alert_name.", code="missing_alert")
    return lightcurve_arrays(context, resolved)


_ALERT_COLUMNS = ("id", "ivorn", "published", "ra", "dec", "nfollowup")


def _legacy_alert_row(alert: AlertOut) -> dict[str, Any]:
    """An alert as the legacy list shows it."""
    values = (
        alert.id,
        alert.name,
        alert.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        alert.ra_deg,
        alert.dec_deg,
        alert.n_points,
    )
    return dict(zip(_ALERT_COLUMNS, values, strict=True))


def _alerts_html(rows: list[dict[str, Any]]) -> str:
    cells = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(r[k]))}</td>" for k in _ALERT_COLUMNS) + "</tr>" for r in rows
    )
    head = "".join(f"<th>{k}</th>" for k in _ALERT_COLUMNS)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>List of alerts</title></head><body>"
        f"<h1>List of alerts</h1><table><tr>{head}</tr>{cells}</table></body></html>"
    )


def router() -> APIRouter:
    api = APIRouter(prefix="/followup", tags=["legacy CPCS"], responses=ERROR_RESPONSES)

    @api.get(
        "/get_alert_lc_data",
        summary="Light curve as parallel arrays",
        operation_id="get_alert_lc_data",
        responses={200: {"model": LegacyLightCurve}},
    )
    @api.post(
        "/get_alert_lc_data",
        summary="Light curve as parallel arrays",
        operation_id="post_alert_lc_data",
        responses={200: {"model": LegacyLightCurve}},
    )
    async def get_alert_lc_data(request: Request, context: ContextDep) -> JSONResponse:
        fields = await _fields(request)
        token = token_from_request(request, fields.get("hashtag"))
        alert_id, name = _int_field(fields, "alert_id"), fields.get("alert_name")
        return JSONResponse(await run_in_threadpool(_light_curve_of, context, token, alert_id, name))

    @api.get(
        "/list_of_alerts",
        summary="Alerts, 20 a page (format=json for JSON)",
        responses={200: {"model": LegacyAlertList, "content": {"text/html": {}}}},
    )
    def list_of_alerts(
        context: ContextDep, offset: int = 0, observed_only: int = 0, format: str = "html"
    ) -> Any:
        if not 0 <= offset <= MAX_RECORD_ID:
            raise InputError(f"offset must be from 0 to {MAX_RECORD_ID}.", code="invalid_offset")
        with context.db.transaction() as session:
            page = alert_store.list_alerts(
                session, offset=offset, limit=PAGE_SIZE, observed_only=bool(observed_only)
            )
        rows = [_legacy_alert_row(alert) for alert in page.items]
        if format == "json":
            return JSONResponse({"alerts": rows, "total": page.total, "offset": offset})
        return HTMLResponse(_alerts_html(rows))

    @api.post(
        "/newevent",
        status_code=201,
        summary="Add an alert (ivorn, ra, dec, url)",
        responses={201: {"model": LegacyNewEvent}, 409: {"model": ErrorBody, "description": "It exists"}},
    )
    async def newevent(request: Request, context: ContextDep) -> JSONResponse:
        fields = await _fields(request)
        token = token_from_request(request, fields.get("hashtag"))
        ra_deg, dec_deg = _float_field(fields, "ra"), _float_field(fields, "dec")

        def work() -> dict[str, Any]:
            with context.db.transaction() as session:
                authenticate(session, token)
                alert = alert_store.create_alert(
                    session, fields.get("ivorn", ""), ra_deg, dec_deg, fields.get("url")
                )
            return {"id": alert.id, "ivorn": alert.name, "ra": alert.ra_deg, "dec": alert.dec_deg}

        return JSONResponse(await run_in_threadpool(work), status_code=201)

    @api.get(
        "/cgi/delpoint",
        summary="Delete one of your points",
        operation_id="delpoint_get",
        responses={200: {"model": LegacyDeleted}},
    )
    @api.post(
        "/cgi/delpoint",
        summary="Delete one of your points",
        operation_id="delpoint",
        responses={200: {"model": LegacyDeleted}},
    )
    async def delpoint(request: Request, context: ContextDep) -> JSONResponse:
        fields = await _fields(request)
        token = token_from_request(request, fields.get("hashtag"))
        point_id = _int_field(fields, "followupid")
        if point_id is None:
            raise InputError("Give followupid, the id of the point to delete.", code="missing_followupid")

        def work() -> dict[str, Any]:
            with context.db.transaction() as session:
                user = authenticate(session, token)
                point = delete_point(session, user, point_id)
            context.committed()
            return {"deleted": point.id, "alert_name": point.alert_name}

        return JSONResponse(await run_in_threadpool(work))

    @api.get(
        "/observatories",
        summary="Registered observatories and their number of points",
        operation_id="legacy_observatories",
        response_model=list[ObservatoryOut],
    )
    def observatories(context: ContextDep) -> JSONResponse:
        with context.db.transaction() as session:
            sites = list_observatories(session)
        return JSONResponse([s.model_dump() for s in sites])

    return api
