"""Tables of the outbound data flow: webhook subscriptions, SkyPortal destinations, deliveries.

A point is pushed to every matching target as one :class:`Delivery` per
``(kind, target, calibration, action)``; each try of it is kept as a :class:`DeliveryAttempt`.
The action says what the delivery tells the target: the point's first calibration it gets
(``calibrated``), a new calibration version of a point it already has (``updated``), or that
the point was deleted (``deleted``). A target
is named by ``(kind, target_id)`` and has no foreign key, so the history of a removed target can
outlive it when an operator wants that (the API removes a webhook's deliveries with it).

Two secrets must be *used*, not only checked, so they cannot be kept as digests; they are stored
encrypted (:class:`~cpcs.db.secret_box.EncryptedString`, keys from ``CPCS_SECRET_KEY``) and
mapped ``deferred``, so that only the code that uses them decrypts them:

* ``WebhookSubscription.secret`` is the key of the HMAC that signs every webhook body; we create
  it and show it to the subscriber once (the API never returns it again);
* ``SkyPortalDestination.token`` is the SkyPortal API token an admin configured; it is sent in
  ``Authorization: token …`` and never returned by the API.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from cpcs.db.models import Base, utcnow
from cpcs.db.secret_box import EncryptedString

#: ``Delivery.kind`` values.
KIND_WEBHOOK = "webhook"
KIND_SKYPORTAL = "skyportal"
KIND_HERMES = "hermes"  # the Hopskotch topic of the settings (CPCS_HERMES_*), target_id 1
DELIVERY_KINDS = (KIND_WEBHOOK, KIND_SKYPORTAL, KIND_HERMES)

#: ``Delivery.status`` values.
STATUS_PENDING = "pending"
STATUS_DELIVERED = "delivered"
STATUS_FAILED = "failed"
DELIVERY_STATUSES = (STATUS_PENDING, STATUS_DELIVERED, STATUS_FAILED)

#: ``Delivery.action`` values: what the delivery tells its target about the point.
ACTION_CALIBRATED = "calibrated"  # the target's first version of the point
ACTION_UPDATED = "updated"  # a new calibration version of a point the target already has
ACTION_DELETED = "deleted"  # the point was deleted
DELIVERY_ACTIONS = (ACTION_CALIBRATED, ACTION_UPDATED, ACTION_DELETED)


class WebhookSubscription(Base):
    """A user's URL that receives every calibrated point of one alert (or of all alerts)."""

    __tablename__ = "webhook_subscription"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alert.id"), index=True)  # None: all alerts
    secret: Mapped[str] = mapped_column(EncryptedString(), deferred=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SkyPortalDestination(Base):
    """A SkyPortal instance (configured by an admin) that receives calibrated points as photometry."""

    __tablename__ = "skyportal_destination"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    base_url: Mapped[str] = mapped_column(String(1000))
    token: Mapped[str] = mapped_column(EncryptedString(), deferred=True)
    instrument_id: Mapped[int] = mapped_column(Integer)  # SkyPortal's id of the instrument
    group_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)  # SkyPortal group ids (int)
    alert_filter: Mapped[str | None] = mapped_column(String(300))  # glob on alert names; None: all
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Delivery(Base):
    """One calibration (or the deletion) of one point to send to one target, and where it stands.

    ``request_body`` is built once, when the point is announced, and sent byte for byte on every
    attempt (webhook signatures are computed over exactly these bytes). A pending delivery is due
    when ``next_attempt_at`` has passed; a worker that takes it moves ``next_attempt_at`` forward
    by a lease, so a crashed worker's delivery is tried again once the lease expires.
    ``remote_url`` is where the target keeps the point, when it says: the URL of SkyPortal's
    photometry row, built from the id its answer to the first PUT names; the point's later
    updates (PATCH) and its deletion (DELETE) go there.
    """

    __tablename__ = "delivery"
    __table_args__ = (
        UniqueConstraint("kind", "target_id", "calibration_id", "action", name="uq_delivery_once"),
        Index("ix_delivery_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_delivery_kind_target_id", "kind", "target_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # one of DELIVERY_KINDS
    target_id: Mapped[int] = mapped_column(Integer)  # WebhookSubscription.id or SkyPortalDestination.id
    point_id: Mapped[int] = mapped_column(ForeignKey("point.id"), index=True)
    calibration_id: Mapped[int] = mapped_column(ForeignKey("calibration.id"))
    action: Mapped[str] = mapped_column(
        String(20), default=ACTION_CALIBRATED, server_default=ACTION_CALIBRATED
    )  # one of DELIVERY_ACTIONS
    # SkyPortal: …/api/photometry/{id}; Hermes: kafka://broker/topic#<hop message id>
    remote_url: Mapped[str | None] = mapped_column(String(1100))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(20), default=STATUS_PENDING)
    last_http_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    request_body: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class DeliveryAttempt(Base):
    """One HTTP try of a delivery: when, how long, and what came back (status or error)."""

    __tablename__ = "delivery_attempt"
    __table_args__ = (UniqueConstraint("delivery_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("delivery.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)  # 1 for the first try
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    duration_ms: Mapped[float] = mapped_column(Float)
    http_status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)


#: The tables of this module, e.g. to create them in a test database before the migration exists.
OUTBOUND_TABLES: tuple[Table, ...] = tuple(
    Base.metadata.tables[model.__tablename__]
    for model in (WebhookSubscription, SkyPortalDestination, Delivery, DeliveryAttempt)
)
