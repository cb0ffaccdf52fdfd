"""REST v1 of the outbound flow: a user's webhooks, an admin's SkyPortal destinations, their deliveries.

* ``POST/GET /api/v1/webhooks``, ``DELETE /api/v1/webhooks/{id}`` — the caller's own subscriptions;
  the secret is in the creation answer only. Removing a subscription removes its history.
* ``GET /api/v1/webhooks/{id}/deliveries`` — the subscriber's delivery history; anyone else,
  admins included, gets 404 (the subscription's existence is not disclosed). Each delivery names
  its ``action``: ``calibrated``, ``updated`` or ``deleted`` (the events of :mod:`.webhooks`).
* ``POST/GET /api/v1/skyportal/destinations``, ``PATCH …/{id}``, ``GET …/{id}/deliveries`` —
  admins only; the token is write-only (answers show its last four characters). A delivery
  shows the SkyPortal row the point is kept in (``remote_url``) once the first PUT is answered.
* ``GET /api/v1/hermes`` — whether points are published to Hermes and where (never the password);
  ``GET /api/v1/hermes/deliveries`` — the messages published: an admin sees all, an observer those
  of their own points; ``remote_url`` is ``kafka://broker/topic#<hop message id>`` once published.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from cpcs.context import Context
from cpcs.db.delivery_models import (
    DELIVERY_STATUSES,
    KIND_HERMES,
    KIND_SKYPORTAL,
    KIND_WEBHOOK,
    Delivery,
    DeliveryAttempt,
    SkyPortalDestination,
    WebhookSubscription,
)
from cpcs.db.models import Alert, Point, User
from cpcs.db.secret_box import SecretUnreadable
from cpcs.errors import ConflictError, InputError, NotFoundError
from cpcs.schemas import MAX_RECORD_ID, UNREADABLE_BODY_RESPONSE, Page, PageOffset, RecordId, Schema, as_utc
from cpcs.web import ERROR_RESPONSES, AdminDep, ContextDep, SessionDep, UserDep
from cpcs_api.outbound.hermes import HERMES_TARGET_ID, stream_url
from cpcs_api.outbound.webhooks import TargetNotAllowed, check_literal_host, check_url_form, new_secret

#: The token hint of a destination whose stored token no configured key decrypts.
UNREADABLE_TOKEN_HINT = "(unreadable with this server's CPCS_SECRET_KEY: send a new token)"

#: Subscriptions one user may hold (a guard against runaway scripts).
MAX_WEBHOOKS_PER_USER = 50


class WebhookIn(BaseModel):
    url: str = Field(min_length=1, max_length=2000, description="http(s) URL that receives the POSTs")
    alert_id: RecordId | None = Field(None, description="Only this alert's points; omit for all alerts")


class WebhookOut(Schema):
    id: int
    url: str
    alert_id: int | None
    active: bool
    created_at: dt.datetime


class NewWebhookOut(WebhookOut):
    secret: str = Field(description="HMAC-SHA256 key of X-CPCS-Signature; shown only in this answer")


class AttemptOut(Schema):
    number: int
    started_at: dt.datetime
    duration_ms: float
    http_status: int | None
    error: str | None


class DeliveryOut(Schema):
    id: int
    kind: str
    target_id: int
    point_id: int
    calibration_id: int
    action: str = Field(
        description="calibrated (the target's first version of the point), updated (a new version: "
        "webhook point.updated, SkyPortal PATCH) or deleted (webhook point.deleted, SkyPortal DELETE)"
    )
    remote_url: str | None = Field(
        None,
        description="SkyPortal: the photometry row the point is kept in (from the PUT's answer); "
        "Hermes: kafka://broker/topic#<hop message id> of the published message",
    )
    status: str
    attempts: int
    last_http_status: int | None
    last_error: str | None
    next_attempt_at: dt.datetime | None
    created_at: dt.datetime
    delivered_at: dt.datetime | None
    body: Any = Field(None, description="The JSON document sent (the same bytes on every attempt)")
    attempt_log: list[AttemptOut] = Field(default_factory=list)


def _check_http_url(value: str) -> str:
    try:
        check_url_form(value)
    except TargetNotAllowed as exc:
        raise ValueError(str(exc)) from exc
    return value


class DestinationIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    base_url: str = Field(min_length=1, max_length=1000, description="e.g. https://fritz.science")
    token: str = Field(min_length=1, max_length=500, description="SkyPortal API token (write-only)")
    instrument_id: int = Field(
        ge=1, le=MAX_RECORD_ID, description="SkyPortal's id of the instrument the points are filed under"
    )
    group_ids: list[int] = Field(default_factory=list, description="SkyPortal groups that see the points")
    alert_filter: str | None = Field(
        None, max_length=300, description="Glob on alert names (with or without ivo://); omit for all"
    )
    active: bool = True

    _url = field_validator("base_url")(_check_http_url)


class DestinationPatch(BaseModel):
    base_url: str | None = Field(None, min_length=1, max_length=1000)
    token: str | None = Field(None, min_length=1, max_length=500)
    instrument_id: int | None = Field(None, ge=1, le=MAX_RECORD_ID)
    group_ids: list[int] | None = None
    alert_filter: str | None = Field(None, max_length=300, description="Empty string: all alerts")
    active: bool | None = None

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _check_http_url(value)


class DestinationOut(Schema):
    id: int
    name: str
    base_url: str
    instrument_id: int
    group_ids: list[int]
    alert_filter: str | None
    active: bool
    created_at: dt.datetime
    token_hint: str = Field(
        description="The token's last four characters (none of a token shorter than 16 characters); "
        "a note instead when the stored token cannot be decrypted with the server's key"
    )


class HermesOut(Schema):
    enabled: bool = Field(description="Whether new points are published (CPCS_HERMES_TOPIC and a credential)")
    stream: str | None = Field(description="kafka://broker/topic the messages go to")
    username: str | None = Field(description="The hop credential's user name (the password is never shown)")
    submitter: str
    alert_filter: str | None


def _webhook_view(row: WebhookSubscription) -> WebhookOut:
    return WebhookOut(
        id=row.id, url=row.url, alert_id=row.alert_id, active=row.active, created_at=as_utc(row.created_at)
    )


def _destination_view(row: SkyPortalDestination) -> DestinationOut:
    return DestinationOut(
        id=row.id,
        name=row.name,
        base_url=row.base_url,
        instrument_id=row.instrument_id,
        group_ids=[int(g) for g in row.group_ids or []],
        alert_filter=row.alert_filter,
        active=row.active,
        created_at=as_utc(row.created_at),
        token_hint=_stored_token_hint(row),
    )


def token_hint(token: str) -> str:
    """Enough of a token to tell it from another, never enough to use it: its last 4 of 16 or more."""
    return "…" + token[-4:] if len(token) >= 16 else "…"


def _stored_token_hint(row: SkyPortalDestination) -> str:
    """The hint of the stored token; a token no configured key decrypts says so (PATCH a new one)."""
    try:
        return token_hint(row.token)
    except SecretUnreadable:
        return UNREADABLE_TOKEN_HINT


def _optional_utc(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else as_utc(value)


def _deliveries(
    session: Session,
    kind: str,
    target_id: int,
    status: str | None,
    offset: int,
    limit: int,
    *,
    observer_id: int | None = None,
) -> Page[DeliveryOut]:
    query = select(Delivery).where(Delivery.kind == kind, Delivery.target_id == target_id)
    if observer_id is not None:  # only the deliveries of this observer's points
        query = query.where(Delivery.point_id.in_(select(Point.id).where(Point.user_id == observer_id)))
    if status is not None:
        query = query.where(Delivery.status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Delivery.id.desc()).offset(offset).limit(limit)).all()
    attempts: dict[int, list[AttemptOut]] = {row.id: [] for row in rows}
    if rows:
        for attempt in session.scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.delivery_id.in_(list(attempts)))
            .order_by(DeliveryAttempt.delivery_id, DeliveryAttempt.number)
        ).all():
            attempts[attempt.delivery_id].append(
                AttemptOut(
                    number=attempt.number,
                    started_at=as_utc(attempt.started_at),
                    duration_ms=attempt.duration_ms,
                    http_status=attempt.http_status,
                    error=attempt.error,
                )
            )
    items = [
        DeliveryOut(
            id=row.id,
            kind=row.kind,
            target_id=row.target_id,
            point_id=row.point_id,
            calibration_id=row.calibration_id,
            action=row.action,
            remote_url=row.remote_url,
            status=row.status,
            attempts=row.attempts,
            last_http_status=row.last_http_status,
            last_error=row.last_error,
            next_attempt_at=_optional_utc(row.next_attempt_at),
            created_at=as_utc(row.created_at),
            delivered_at=_optional_utc(row.delivered_at),
            body=json.loads(row.request_body) if row.request_body else None,
            attempt_log=attempts[row.id],
        )
        for row in rows
    ]
    return Page[DeliveryOut](items=items, total=total, offset=offset, limit=limit)


def _own_subscription(session: Session, user: User, webhook_id: int) -> WebhookSubscription:
    row = session.get(WebhookSubscription, webhook_id)
    if row is None or row.user_id != user.id:
        raise NotFoundError(f"You have no webhook {webhook_id}.", code="unknown_webhook")
    return row


def _destination(session: Session, destination_id: int) -> SkyPortalDestination:
    row = session.get(SkyPortalDestination, destination_id)
    if row is None:
        raise NotFoundError(f"No SkyPortal destination {destination_id}.", code="unknown_destination")
    return row


StatusQuery = Annotated[str | None, Query(description=f"One of {', '.join(DELIVERY_STATUSES)}")]
OffsetQuery = Annotated[PageOffset, Query()]
LimitQuery = Annotated[int, Query(ge=1, le=500)]


def _check_target(context: Context, field: str, url: str, *, code: str) -> None:
    """Refuse an outbound URL to this server's network unless the operator allows it."""
    try:
        check_literal_host(url, allow_private=context.settings.outbound_allow_private_targets)
    except TargetNotAllowed as exc:
        raise InputError(f"{field}: {exc}.", code=code) from exc


def _check_status(status: str | None) -> None:
    if status is not None and status not in DELIVERY_STATUSES:
        raise InputError(f"status must be one of {', '.join(DELIVERY_STATUSES)}.", code="invalid_status")


def router() -> APIRouter:
    """The outbound endpoints (webhooks for every user, SkyPortal destinations for admins)."""
    api = APIRouter(prefix="/api/v1", responses={**ERROR_RESPONSES, **UNREADABLE_BODY_RESPONSE})

    @api.post(
        "/webhooks",
        response_model=NewWebhookOut,
        status_code=201,
        tags=["webhooks"],
        summary="Subscribe a URL to points (calibrated, updated, deleted); the answer shows the secret once",
    )
    def add_webhook(body: WebhookIn, context: ContextDep, user: UserDep) -> NewWebhookOut:
        _check_target(context, "url", body.url, code="invalid_webhook_url")
        with context.db.transaction() as session:
            if body.alert_id is not None and session.get(Alert, body.alert_id) is None:
                raise InputError(f"There is no alert {body.alert_id}.", code="unknown_alert")
            held = session.scalar(
                select(func.count(WebhookSubscription.id)).where(WebhookSubscription.user_id == user.id)
            )
            if (held or 0) >= MAX_WEBHOOKS_PER_USER:
                raise ConflictError(
                    f"You already have {MAX_WEBHOOKS_PER_USER} webhooks; remove one first.",
                    code="too_many_webhooks",
                )
            row = WebhookSubscription(
                user_id=user.id, url=body.url, alert_id=body.alert_id, secret=new_secret(), active=True
            )
            session.add(row)
            session.flush()
            return NewWebhookOut(**_webhook_view(row).model_dump(), secret=row.secret)

    @api.get("/webhooks", response_model=list[WebhookOut], tags=["webhooks"], summary="Your webhooks")
    def list_webhooks(session: SessionDep, user: UserDep) -> list[WebhookOut]:
        rows = session.scalars(
            select(WebhookSubscription)
            .where(WebhookSubscription.user_id == user.id)
            .order_by(WebhookSubscription.id)
        ).all()
        return [_webhook_view(row) for row in rows]

    @api.delete(
        "/webhooks/{webhook_id}",
        status_code=204,
        response_class=Response,
        tags=["webhooks"],
        summary="Remove one of your webhooks with its delivery history",
    )
    def delete_webhook(webhook_id: RecordId, context: ContextDep, user: UserDep) -> Response:
        with context.db.transaction() as session:
            row = _own_subscription(session, user, webhook_id)
            ids = select(Delivery.id).where(Delivery.kind == KIND_WEBHOOK, Delivery.target_id == row.id)
            session.execute(delete(DeliveryAttempt).where(DeliveryAttempt.delivery_id.in_(ids)))
            session.execute(
                delete(Delivery).where(Delivery.kind == KIND_WEBHOOK, Delivery.target_id == row.id)
            )
            session.delete(row)
        return Response(status_code=204)

    @api.get(
        "/webhooks/{webhook_id}/deliveries",
        response_model=Page[DeliveryOut],
        tags=["webhooks"],
        summary="Delivery history of one of your webhooks, newest first",
    )
    def webhook_deliveries(
        webhook_id: RecordId,
        session: SessionDep,
        user: UserDep,
        status: StatusQuery = None,
        offset: OffsetQuery = 0,
        limit: LimitQuery = 100,
    ) -> Page[DeliveryOut]:
        _check_status(status)
        row = _own_subscription(session, user, webhook_id)
        return _deliveries(session, KIND_WEBHOOK, row.id, status, offset, limit)

    @api.post(
        "/skyportal/destinations",
        response_model=DestinationOut,
        status_code=201,
        tags=["skyportal"],
        summary="Add a SkyPortal instance that receives calibrated points (admin)",
    )
    def add_destination(body: DestinationIn, context: ContextDep, admin: AdminDep) -> DestinationOut:
        del admin
        _check_target(context, "base_url", body.base_url, code="invalid_destination_url")
        with context.db.transaction() as session:
            if session.scalar(select(SkyPortalDestination.id).where(SkyPortalDestination.name == body.name)):
                raise ConflictError(
                    f"A destination is already called {body.name!r}.", code="destination_exists"
                )
            row = SkyPortalDestination(**body.model_dump())
            session.add(row)
            session.flush()
            return _destination_view(row)

    @api.get(
        "/skyportal/destinations",
        response_model=list[DestinationOut],
        tags=["skyportal"],
        summary="SkyPortal destinations (admin)",
    )
    def list_destinations(session: SessionDep, admin: AdminDep) -> list[DestinationOut]:
        del admin
        rows = session.scalars(select(SkyPortalDestination).order_by(SkyPortalDestination.id)).all()
        return [_destination_view(row) for row in rows]

    @api.patch(
        "/skyportal/destinations/{destination_id}",
        response_model=DestinationOut,
        tags=["skyportal"],
        summary="Change a destination: token, instrument, groups, alert filter, active (admin)",
    )
    def patch_destination(
        destination_id: RecordId, body: DestinationPatch, context: ContextDep, admin: AdminDep
    ) -> DestinationOut:
        del admin
        changes = body.model_dump(exclude_unset=True)
        for key in ("base_url", "token", "instrument_id", "group_ids", "active"):
            if key in changes and changes[key] is None:
                raise InputError(f"{key} cannot be null.", code="invalid_request")
        if changes.get("alert_filter") == "":
            changes["alert_filter"] = None
        if "base_url" in changes:
            _check_target(context, "base_url", changes["base_url"], code="invalid_destination_url")
        with context.db.transaction() as session:
            row = _destination(session, destination_id)
            if changes.get("base_url", row.base_url) != row.base_url and "token" not in changes:
                # The stored token belongs to the old host: never hand it to a new one.
                raise InputError(
                    "A new base_url needs its token: send token (that instance's API token) in the "
                    "same request.",
                    code="token_required",
                )
            for key, value in changes.items():
                setattr(row, key, value)
            session.flush()
            return _destination_view(row)

    @api.get(
        "/skyportal/destinations/{destination_id}/deliveries",
        response_model=Page[DeliveryOut],
        tags=["skyportal"],
        summary="Delivery history of a SkyPortal destination, newest first (admin)",
    )
    def destination_deliveries(
        destination_id: RecordId,
        session: SessionDep,
        admin: AdminDep,
        status: StatusQuery = None,
        offset: OffsetQuery = 0,
        limit: LimitQuery = 100,
    ) -> Page[DeliveryOut]:
        del admin
        _check_status(status)
        row = _destination(session, destination_id)
        return _deliveries(session, KIND_SKYPORTAL, row.id, status, offset, limit)

    @api.get(
        "/hermes",
        response_model=HermesOut,
        tags=["hermes"],
        summary="Whether points are published to Hermes (SCiMMA Hopskotch) and where",
    )
    def hermes_settings(context: ContextDep, user: UserDep) -> HermesOut:
        del user
        settings = context.settings
        return HermesOut(
            enabled=settings.hermes_enabled,
            stream=stream_url(settings.hermes_broker_url, settings.hermes_topic)
            if settings.hermes_topic
            else None,
            username=settings.hermes_username,
            submitter=settings.hermes_submitter,
            alert_filter=settings.hermes_alert_filter,
        )

    @api.get(
        "/hermes/deliveries",
        response_model=Page[DeliveryOut],
        tags=["hermes"],
        summary="Hermes messages of points, newest first (an admin's: all; else your own points')",
    )
    def hermes_deliveries(
        session: SessionDep,
        user: UserDep,
        status: StatusQuery = None,
        offset: OffsetQuery = 0,
        limit: LimitQuery = 100,
    ) -> Page[DeliveryOut]:
        _check_status(status)
        observer = None if user.role == "admin" else user.id
        return _deliveries(
            session, KIND_HERMES, HERMES_TARGET_ID, status, offset, limit, observer_id=observer
        )

    return api
