"""REST v1: data out to the community: the AAVSO export and the observer code it needs.

``PATCH /api/v1/me`` sets the caller's AAVSO observer code. ``GET /api/v1/alerts/{id}/export?format=aavso``
(chosen with the other formats in ``cpcs_api.exports``) answers the caller's own points of the alert in
the AAVSO Extended File Format (``cpcs.lightcurve.aavso``): they are reported under the caller's code,
so other observers' points are never in it. Points the AAVSO has no filter code for are left out and
listed in ``X-CPCS-Skipped-Points``.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from cpcs import __version__
from cpcs.db.models import Point, User
from cpcs.domain import accounts as account_store
from cpcs.domain import alerts as alert_store
from cpcs.domain.points import calibration_view, light_curve_points
from cpcs.errors import InputError
from cpcs.lightcurve.aavso import aavso_report, valid_obscode
from cpcs.lightcurve.exports import ExportRow, PointDetails, export_rows, skyportal_obj_id
from cpcs.schemas import UNREADABLE_BODY_RESPONSE, UserOut
from cpcs.web import ERROR_RESPONSES, ContextDep, UserDep

AAVSO_MEDIA_TYPE = "text/plain; charset=utf-8"


class AccountUpdate(BaseModel):
    aavso_obscode: str | None = Field(
        description="The observer code the AAVSO assigned to you (letters and digits); null removes it",
        max_length=10,
    )


def alert_rows(session: Session, alert_id: int, base_url: str, user_id: int | None = None) -> list[ExportRow]:
    """The export rows of an alert's visible points (only ``user_id``'s when given)."""
    alert_store.get_alert(session, alert_id)
    query = select(Point).where(Point.alert_id == alert_id, Point.deleted_at.is_(None))
    rows = session.scalars(query).all()
    details = {
        row.id: PointDetails(row.observation.filter_declared, calibration_view(row.calibration))
        for row in rows
    }
    owners = {row.id: row.observation.user_id for row in rows}
    points = [
        p for p in light_curve_points(session, alert_id) if user_id is None or owners.get(p.id) == user_id
    ]
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


def router() -> APIRouter:
    api = APIRouter(prefix="/api/v1", responses={**ERROR_RESPONSES, **UNREADABLE_BODY_RESPONSE})

    @api.patch("/me", response_model=UserOut, tags=["accounts"], summary="Set your AAVSO observer code")
    def update_me(body: AccountUpdate, context: ContextDep, user: UserDep) -> UserOut:
        code = body.aavso_obscode.strip().upper() if body.aavso_obscode else None
        if code is not None and not valid_obscode(code):
            raise InputError(
                f"{body.aavso_obscode!r} is not an AAVSO observer code: letters and digits, at most 10.",
                code="invalid_aavso_obscode",
            )
        with context.db.transaction() as session:
            account = session.get(User, user.id)
            assert account is not None
            account.aavso_obscode = code
            session.flush()
            return account_store.user_view(account)

    return api
