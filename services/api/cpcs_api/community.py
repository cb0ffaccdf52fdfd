"""REST v1: data out to the community: the AAVSO export and the observer code it needs; TNS reports.

``PATCH /api/v1/me`` sets the caller's AAVSO observer code. ``GET /api/v1/alerts/{id}/export?format=aavso``
(chosen with the other formats in ``cpcs_api.exports``) answers the caller's own points of the alert in
the AAVSO Extended File Format (``cpcs.lightcurve.aavso``): they are reported under the caller's code,
so other observers' points are never in it. Points the AAVSO has no filter code for are left out and
listed in ``X-CPCS-Skipped-Points``.

``GET /api/v1/alerts/{id}/tns-report`` is the TNS bulk report (``cpcs.lightcurve.tns``) of the caller's
points of the alert (an admin's: every point), with its SHA-256 ``digest``; ``POST .../tns-report/send``
with that digest sends exactly the report reviewed (a report that changed since is a 409) to
``CPCS_TNS_URL`` with the bot's key and ``tns_marker``. Sending is off (409) unless TNS is configured.
Someone with no points of the alert gets 403 (admins excepted). Points whose observer keeps them from
TNS (``cpcs.domain.consent``) are in nobody's report.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
from fastapi import APIRouter, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from cpcs import __version__
from cpcs.db.models import User
from cpcs.domain import accounts as account_store
from cpcs.domain import alerts as alert_store
from cpcs.domain.consent import may_share
from cpcs.domain.points import light_curve_for_export
from cpcs.errors import ConflictError, CpcsError, InputError, PermissionDeniedError
from cpcs.lightcurve.aavso import aavso_report
from cpcs.lightcurve.exports import ExportRow, export_rows, skyportal_obj_id
from cpcs.lightcurve.tns import TnsBot, tns_marker, tns_report
from cpcs.schemas import UNREADABLE_BODY_RESPONSE, RecordId, UserOut
from cpcs.settings import Settings
from cpcs.web import ERROR_RESPONSES, ContextDep, SessionDep, UserDep

AAVSO_MEDIA_TYPE = "text/plain; charset=utf-8"


class AccountUpdate(BaseModel):
    aavso_obscode: str | None = Field(
        None,
        description="The observer code the AAVSO assigned to you (letters and digits); null removes it",
        max_length=10,
    )
    sharing: dict[str, bool] | None = Field(
        None,
        description='Where your points may go, e.g. {"tns": false}: skyportal, webhooks, tns, hermes',
    )


def alert_rows(
    session: Session,
    alert_id: int,
    base_url: str,
    user_id: int | None = None,
    destination: str | None = None,
) -> list[ExportRow]:
    """The export rows of an alert's visible points (only ``user_id``'s when given; only those whose
    observer lets them go to ``destination`` when given)."""
    alert_store.get_alert(session, alert_id)
    points, details = light_curve_for_export(session, alert_id, user_id=user_id, destination=destination)
    return export_rows(points, details, base_url=base_url)


def aavso_export(session: Session, alert_id: int, user: User, base_url: str) -> Response:
    """The caller's points of the alert as an AAVSO Extended File."""
    alert = alert_store.alert_view(session, alert_store.get_alert(session, alert_id))
    if not user.aavso_obscode:
        raise InputError(
            "The AAVSO export reports your points under your AAVSO observer code, and your account has none: "
            'set it with PATCH /api/v1/me {"aavso_obscode": "<your code>"}.',
            code="missing_aavso_obscode",
        )
    rows = alert_rows(session, alert_id, base_url, user_id=user.id)
    report = aavso_report(rows, user.aavso_obscode, f"CPCS {__version__}")
    headers = {"Content-Disposition": f'attachment; filename="cpcs-{skyportal_obj_id(alert.name)}-aavso.txt"'}
    if report.skipped:
        headers["X-CPCS-Skipped-Points"] = ",".join(f"{point}:{reason}" for point, reason in report.skipped)
    return Response(content=report.text.encode(), media_type=AAVSO_MEDIA_TYPE, headers=headers)


class TnsReportOut(BaseModel):
    report: dict[str, Any] = Field(description="The bulk report, exactly as it would be sent")
    digest: str = Field(description="SHA-256 of the report; send it back to send this report")
    skipped_points: dict[int, str] = Field(description="Points left out, and why")
    sending_configured: bool = Field(description="Whether this server may send to TNS (CPCS_TNS_URL)")


class TnsSendIn(BaseModel):
    digest: str = Field(min_length=64, max_length=64, description="The digest of the report reviewed")


class TnsSentOut(BaseModel):
    report_id: str | None = Field(description="TNS's id of the report, to follow it at TNS")
    tns_reply: dict[str, Any]


def _bot(settings: Settings) -> TnsBot:
    return TnsBot(
        bot_id=settings.tns_bot_id or 0,
        bot_name=settings.tns_bot_name,
        reporting_group_id=settings.tns_reporting_group_id,
        data_source_id=settings.tns_data_source_id,
        instrument_ids=settings.tns_instrument_ids,
    )


def _report_json(report: dict[str, Any]) -> str:
    return json.dumps(report, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _tns_review(session: Session, alert_id: int, user: User, settings: Settings) -> TnsReportOut:
    alert = alert_store.get_alert(session, alert_id)
    owner = None if user.role == "admin" else user.id
    if not may_share(user, "tns") and owner is not None:
        raise PermissionDeniedError(
            'Your sharing settings keep your points from TNS: PATCH /api/v1/me {"sharing": {"tns": true}}.',
            code="tns_not_shared",
        )
    rows = alert_rows(session, alert_id, settings.public_base_url, user_id=owner, destination="tns")
    if owner is not None and not rows:
        raise PermissionDeniedError(
            f"You have no points of alert {alert_id}: a TNS report is of your own points (or an admin's).",
            code="not_your_points",
        )
    try:
        built = tns_report(alert.name, alert.ra_deg, alert.dec_deg, rows, _bot(settings))
    except ValueError as exc:
        raise InputError(
            f"No TNS report for alert {alert_id}: {exc} among your points ({len(rows)}).",
            code="nothing_to_report",
        ) from exc
    body = _report_json(built.report)
    return TnsReportOut(
        report=built.report,
        digest=hashlib.sha256(body.encode()).hexdigest(),
        skipped_points=dict(built.skipped),
        sending_configured=_tns_configured(settings),
    )


def _tns_configured(settings: Settings) -> bool:
    return bool(settings.tns_url and settings.tns_api_key and settings.tns_bot_id and settings.tns_bot_name)


def _send_to_tns(settings: Settings, report: dict[str, Any]) -> TnsSentOut:
    assert settings.tns_url and settings.tns_api_key
    url = settings.tns_url.rstrip("/") + "/api/set/bulk-report"
    form = {"api_key": settings.tns_api_key.get_secret_value(), "data": _report_json(report)}
    headers = {"User-Agent": tns_marker(_bot(settings))}
    try:
        with httpx.Client(timeout=settings.tns_timeout_s, follow_redirects=False) as client:
            answer = client.post(url, data=form, headers=headers)
    except httpx.HTTPError as exc:
        raise CpcsError(f"TNS could not be reached: {exc}", code="tns_unreachable", http_status=502) from exc
    try:
        reply = answer.json()
    except ValueError:
        reply = {"id_message": answer.text[:500]}
    if not isinstance(reply, dict):
        reply = {"id_message": str(reply)[:500]}
    if answer.status_code != 200 or reply.get("id_code", 200) != 200:
        raise CpcsError(
            f"TNS refused the report (HTTP {answer.status_code}): {reply.get('id_message', '')}",
            code="tns_refused",
            http_status=502,
        )
    data = reply.get("data")
    report_id = data.get("report_id") if isinstance(data, dict) else None
    return TnsSentOut(report_id=None if report_id is None else str(report_id), tns_reply=reply)


def _send_reviewed(
    session: Session, alert_id: int, user: User, settings: Settings, digest: str
) -> TnsSentOut:
    """Send the report of ``alert_id`` the caller reviewed (its ``digest``), if sending is on."""
    review = _tns_review(session, alert_id, user, settings)
    if not _tns_configured(settings):
        raise ConflictError(
            "Sending to TNS is off on this server: its operator sets CPCS_TNS_URL, CPCS_TNS_API_KEY, "
            "CPCS_TNS_BOT_ID and CPCS_TNS_BOT_NAME. The report can still be reviewed.",
            code="tns_not_configured",
        )
    if digest != review.digest:
        raise ConflictError(
            "The report changed since it was reviewed (points were added, corrected or deleted): "
            "review it again (GET .../tns-report) and send its new digest.",
            code="tns_report_changed",
        )
    return _send_to_tns(settings, review.report)


def router() -> APIRouter:
    api = APIRouter(prefix="/api/v1", responses={**ERROR_RESPONSES, **UNREADABLE_BODY_RESPONSE})

    @api.patch(
        "/me", response_model=UserOut, tags=["accounts"], summary="Set your AAVSO observer code and sharing"
    )
    def update_me(body: AccountUpdate, context: ContextDep, user: UserDep) -> UserOut:
        code = body.aavso_obscode if "aavso_obscode" in body.model_fields_set else account_store.UNCHANGED
        with context.db.transaction() as session:
            return account_store.update_account(
                session, user.id, aavso_obscode=code, sharing_changes=body.sharing
            )

    @api.get(
        "/alerts/{alert_id}/tns-report",
        response_model=TnsReportOut,
        tags=["alerts"],
        summary="Review the TNS photometry report of your points of an alert (an admin's: all points)",
    )
    def review_tns_report(
        alert_id: RecordId, context: ContextDep, session: SessionDep, user: UserDep
    ) -> TnsReportOut:
        return _tns_review(session, alert_id, user, context.settings)

    @api.post(
        "/alerts/{alert_id}/tns-report/send",
        response_model=TnsSentOut,
        tags=["alerts"],
        summary="Send the reviewed TNS photometry report (its digest) to TNS",
    )
    def send_tns_report(
        alert_id: RecordId, body: TnsSendIn, context: ContextDep, session: SessionDep, user: UserDep
    ) -> TnsSentOut:
        return _send_reviewed(session, alert_id, user, context.settings, body.digest)

    return api
