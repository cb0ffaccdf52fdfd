"""From a point's news to HTTP requests: plan deliveries, then send them with retries.

Two parts, joined by the ``delivery`` table (three kinds of target: webhooks, SkyPortal
destinations, and the Hermes topic of the settings, ``CPCS_HERMES_*``, see :mod:`.hermes`):

* :class:`OutboundDispatcher` consumes ``point.calibrated`` and ``point.deleted`` (queue
  ``api``) and writes, in one transaction, one :class:`~cpcs.db.delivery_models.Delivery` per
  target with the exact request body. Each delivery has an *action*:

  - ``calibrated`` — a real point (not a dry run, not deleted, still on the announced
    calibration) for a matching active webhook subscription or SkyPortal destination that has
    not had it: webhook event ``point.calibrated``, SkyPortal ``PUT /api/photometry``;
  - ``updated`` — a new calibration version of a point the target already had (an earlier
    delivery of it there is delivered or still pending): webhook event ``point.updated``, Hermes a
    message titled as the new calibration,
    SkyPortal ``PATCH /api/photometry/{id}`` of the row the first PUT made, so SkyPortal keeps
    one row per point;
  - ``deleted`` — ``point.deleted``, for every target that had the point, whatever its filters
    say now: webhook event ``point.deleted``, SkyPortal ``DELETE /api/photometry/{id}``.

  Hermes messages are published with hop-client (:class:`~cpcs_api.outbound.hermes.HermesPublisher`,
  method ``PUBLISH``) and their outcome recorded like an HTTP attempt (no status; the Kafka error).

  Planning is idempotent: a delivery is unique per ``(kind, target, calibration, action)``, so a
  redelivered message adds nothing.
* :class:`DeliveryWorker` threads send the due deliveries with httpx. A worker takes a delivery
  by moving its ``next_attempt_at`` forward by a lease in one conditional UPDATE (only one worker,
  in any process, can win it), sends it, and records the attempt. A 2xx answer delivers it;
  a network error, a timeout, 408, 425, 429 or a 5xx is retried after the next back-off
  (``backoff_s``; a longer ``Retry-After`` is honoured up to the longest back-off) until
  ``max_attempts`` attempts were made; any other answer (3xx, 4xx) fails it at once, since
  sending the same bytes again cannot succeed. A worker that dies mid-send leaves the delivery to
  be taken again when its lease ends: delivery is at least once, and receivers de-duplicate on
  the delivery id.

Order per point: a point's delivery to a target waits (no attempt counted) while an earlier
delivery of the same point to the same target is pending — until that one is due again, and
at once when it ends — so a target sees calibrated, then each update, then the deletion, in
that order. That is also how a SkyPortal
update or deletion planned before the first PUT was answered gets its row: it waits for the PUT;
the PUT's answer names the row (``remote_url``), and the PATCH or DELETE goes there. If that PUT
failed in the end, SkyPortal holds no row of the point: an update then fails with that reason
(the point's next version is PUT afresh, as the target no longer counts as having it), and so
does a deletion (there is nothing to delete). A row made at an earlier ``base_url`` of the
destination is never addressed with the destination's current token. A DELETE answered "Invalid
Photometry id" counts as done: the row is already gone.

Wiring: one :class:`Outbound` per api process (made by the composition root) holds the dispatcher
and the worker; the dispatcher wakes the worker after commit. Settings: ``CPCS_OUTBOUND_*`` of
:class:`~cpcs.settings.Settings`.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import fnmatch
import json
import logging
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

import httpx
from sqlalchemy import CursorResult, or_, select, update
from sqlalchemy.orm import Session

from cpcs import metrics
from cpcs.consumers import Consumer
from cpcs.context import Context
from cpcs.db.delivery_models import (
    ACTION_CALIBRATED,
    ACTION_DELETED,
    ACTION_UPDATED,
    KIND_HERMES,
    KIND_SKYPORTAL,
    KIND_WEBHOOK,
    STATUS_DELIVERED,
    STATUS_FAILED,
    STATUS_PENDING,
    Delivery,
    DeliveryAttempt,
    SkyPortalDestination,
    WebhookSubscription,
)
from cpcs.db.engine import Database
from cpcs.db.models import Calibration, Point, utcnow
from cpcs.db.secret_box import SecretUnreadable
from cpcs.domain.consent import may_share
from cpcs.domain.points import export_row
from cpcs.lightcurve.exports import ExportRow, skyportal_obj_id
from cpcs.messages import PointCalibratedV1, PointDeletedV1
from cpcs.messaging.bus import RejectMessage
from cpcs.schemas import as_utc
from cpcs.settings import Settings
from cpcs_api.outbound import hermes, skyportal, webhooks
from cpcs_api.outbound.hermes import HERMES_TARGET_ID, HermesPublisher, HopStream, PublishFailed

log = logging.getLogger(__name__)

QUEUE = "api"
#: HTTP statuses worth retrying besides 5xx: timeout, too early, too many requests.
RETRYABLE_STATUSES = frozenset({408, 425, 429})
MAX_ERROR_CHARS = 1000
#: Characters of a remote error message kept (the rest of what a remote says is not ours to show).
MAX_REMOTE_ERROR_CHARS = 300
#: Bytes of an error answer read for ``last_error``.
MAX_BODY_READ = 4096
USER_AGENT = "CPCS-outbound/1"


# --------------------------------------------------------------------------------------------------
# Planning: point.calibrated / point.deleted -> delivery rows.


def _alert_matches(pattern: str | None, alert_name: str) -> bool:
    """A destination's glob against the alert's name, with or without ``ivo://``."""
    if pattern is None:
        return True
    return fnmatch.fnmatchcase(alert_name, pattern) or fnmatch.fnmatchcase(
        skyportal_obj_id(alert_name), pattern
    )


#: Actions that give a target the point's values.
_CARRIES_POINT = (ACTION_CALIBRATED, ACTION_UPDATED)
_Earlier = dict[tuple[str, int], list[Delivery]]


def _earlier_deliveries(session: Session, point_id: int) -> _Earlier:
    """Every delivery of the point so far, by target, oldest first."""
    earlier: _Earlier = {}
    for delivery in session.scalars(
        select(Delivery).where(Delivery.point_id == point_id).order_by(Delivery.id)
    ).all():
        earlier.setdefault((delivery.kind, delivery.target_id), []).append(delivery)
    return earlier


def _has_point(deliveries: list[Delivery]) -> bool:
    """Whether a target has (or is about to have) the point: a delivery of it not failed."""
    return any(d.action in _CARRIES_POINT and d.status != STATUS_FAILED for d in deliveries)


def _action_for(deliveries: list[Delivery], calibration_id: int) -> str | None:
    """What a new calibration of the point is to a target; ``None`` when it has nothing to get."""
    if any(d.action == ACTION_DELETED for d in deliveries):
        return None
    if any(d.action in _CARRIES_POINT and d.calibration_id == calibration_id for d in deliveries):
        return None  # planned already (a redelivered message)
    return ACTION_UPDATED if _has_point(deliveries) else ACTION_CALIBRATED


class OutboundDispatcher(Consumer[PointCalibratedV1 | PointDeletedV1]):
    """The consumer of ``point.calibrated`` and ``point.deleted``: deliveries per target (idempotent)."""

    queue = QUEUE
    kinds = (PointCalibratedV1, PointDeletedV1)

    def __init__(self, context: Context, *, on_planned: Callable[[], None] | None = None):
        super().__init__(context)
        self.on_planned = on_planned

    def work(self, message: PointCalibratedV1 | PointDeletedV1) -> None:
        """Plan the deliveries, then wake the sender."""
        added = self.plan_deletion(message) if isinstance(message, PointDeletedV1) else self.plan(message)
        if added and self.on_planned is not None:
            self.on_planned()

    def plan(self, message: PointCalibratedV1) -> int:
        """Write the deliveries a new calibration calls for; returns how many were added."""
        if message.dry_run or message.point_id is None:
            return 0
        with self.context.db.transaction() as session:
            point = session.get(Point, message.point_id)
            if point is None or point.deleted_at is not None:
                return 0
            if point.calibration_id != message.calibration_id:
                log.info(
                    "point %d moved on from calibration %d; its own announcement will follow",
                    point.id,
                    message.calibration_id,
                )
                return 0
            calibration = session.get(Calibration, message.calibration_id)
            if calibration is None:
                raise RejectMessage(f"no calibration {message.calibration_id}")
            row = export_row(point, calibration, self.context.settings.public_base_url)
            earlier = _earlier_deliveries(session, point.id)
            observer = point.observation.user
            added = 0
            for subscription in session.scalars(
                select(WebhookSubscription).where(
                    WebhookSubscription.active.is_(True),
                    or_(
                        WebhookSubscription.alert_id.is_(None), WebhookSubscription.alert_id == row.alert_id
                    ),
                )
            ).all():
                had = earlier.get((KIND_WEBHOOK, subscription.id), [])
                if not had and not may_share(observer, "webhooks"):
                    continue  # the observer keeps new points from webhooks (cpcs.domain.consent)
                action = _action_for(had, calibration.id)
                if action is not None:
                    self._add_webhook(session, subscription, row, action)
                    added += 1
            for destination in session.scalars(
                select(SkyPortalDestination).where(SkyPortalDestination.active.is_(True))
            ).all():
                had = earlier.get((KIND_SKYPORTAL, destination.id), [])
                if not had and not may_share(observer, "skyportal"):
                    continue  # the observer keeps new points from SkyPortal (cpcs.domain.consent)
                action = _action_for(had, calibration.id)
                if action is not None and _alert_matches(destination.alert_filter, row.alert_name):
                    self._add_skyportal(session, destination, row, action)
                    added += 1
            settings = self.context.settings
            if settings.hermes_enabled and _alert_matches(settings.hermes_alert_filter, row.alert_name):
                had = earlier.get((KIND_HERMES, HERMES_TARGET_ID), [])
                action = _action_for(had, calibration.id)
                # the observer may keep new points from Hermes (cpcs.domain.consent)
                if action is not None and (had or may_share(observer, "hermes")):
                    self._add_hermes(session, point, calibration, action)
                    added += 1
        if added:
            log.info(
                "point %d, calibration %d: %d deliveries planned", row.point_id, row.calibration_id, added
            )
        return added

    def plan_deletion(self, message: PointDeletedV1) -> int:
        """Tell every target that had the point that it is gone; returns how many deliveries were added."""
        with self.context.db.transaction() as session:
            point = session.get(Point, message.point_id)
            if point is None:
                raise RejectMessage(f"no point {message.point_id}")
            if point.deleted_at is None:
                raise RejectMessage(f"point {point.id} is not deleted")
            calibration = session.get(Calibration, message.calibration_id)
            if calibration is None:
                raise RejectMessage(f"no calibration {message.calibration_id}")
            row = export_row(point, calibration, self.context.settings.public_base_url)
            added = 0
            for (kind, target_id), deliveries in _earlier_deliveries(session, point.id).items():
                if any(d.action == ACTION_DELETED for d in deliveries) or not _has_point(deliveries):
                    continue
                if kind == KIND_WEBHOOK:
                    subscription = session.get(WebhookSubscription, target_id)
                    if subscription is not None:
                        self._add_webhook(session, subscription, row, ACTION_DELETED, point.deleted_at)
                        added += 1
                elif kind == KIND_HERMES:
                    topic = self.context.settings.hermes_topic or _topic_of(deliveries[-1])
                    self._add_hermes(session, point, calibration, ACTION_DELETED, topic)
                    added += 1
                elif kind == KIND_SKYPORTAL and session.get(SkyPortalDestination, target_id) is not None:
                    delivery = self._new_delivery(
                        session, KIND_SKYPORTAL, target_id, point.id, calibration.id, ACTION_DELETED
                    )
                    delivery.request_body = ""  # a DELETE has no body
                    added += 1
        if added:
            log.info("point %d deleted: %d deliveries planned", message.point_id, added)
        return added

    def _new_delivery(
        self, session: Session, kind: str, target_id: int, point_id: int, calibration_id: int, action: str
    ) -> Delivery:
        now = utcnow()
        delivery = Delivery(
            kind=kind,
            target_id=target_id,
            point_id=point_id,
            calibration_id=calibration_id,
            action=action,
            attempts=0,
            status=STATUS_PENDING,
            next_attempt_at=now,
            request_body="",
            created_at=now,
        )
        session.add(delivery)
        session.flush()  # the id goes into the webhook body
        return delivery

    def _add_webhook(
        self,
        session: Session,
        subscription: WebhookSubscription,
        row: ExportRow,
        action: str,
        deleted_at: dt.datetime | None = None,
    ) -> None:
        delivery = self._new_delivery(
            session, KIND_WEBHOOK, subscription.id, row.point_id, row.calibration_id, action
        )
        document = webhooks.payload(
            row,
            delivery_id=delivery.id,
            created_at=delivery.created_at,
            event=webhooks.EVENTS[action],
            deleted_at=deleted_at,
        )
        delivery.request_body = webhooks.encode_payload(document).decode()

    def _add_skyportal(
        self,
        session: Session,
        destination: SkyPortalDestination,
        row: ExportRow,
        action: str,
    ) -> None:
        delivery = self._new_delivery(
            session, KIND_SKYPORTAL, destination.id, row.point_id, row.calibration_id, action
        )
        try:
            body = skyportal.photometry_body(
                row, instrument_id=destination.instrument_id, group_ids=list(destination.group_ids or [])
            )
        except skyportal.NotSendable as exc:
            delivery.status = STATUS_FAILED
            delivery.next_attempt_at = None
            delivery.last_error = f"not sendable to SkyPortal: {exc}"
            log.info("point %d not sent to SkyPortal %s: %s", row.point_id, destination.name, exc)
            return
        if action == ACTION_UPDATED:
            body = skyportal.update_body(body)
        delivery.request_body = skyportal.encode_body(body).decode()

    def _add_hermes(
        self, session: Session, point: Point, calibration: Calibration, action: str, topic: str | None = None
    ) -> None:
        """A Hermes message of the point on ``topic``, by default the configured one (see :mod:`.hermes`)."""
        settings = self.context.settings
        row = export_row(point, calibration, settings.public_base_url)
        alert = point.observation.alert
        delivery = self._new_delivery(
            session, KIND_HERMES, HERMES_TARGET_ID, point.id, calibration.id, action
        )
        try:
            document = hermes.message(
                row,
                action=action,
                topic=str(topic or settings.hermes_topic),
                submitter=settings.hermes_submitter,
                ra_deg=alert.ra_deg,
                dec_deg=alert.dec_deg,
            )
        except hermes.NotSendable as exc:
            delivery.status = STATUS_FAILED
            delivery.next_attempt_at = None
            delivery.last_error = f"not sendable to Hermes: {exc}"
            log.info("point %d not published to Hermes: %s", point.id, exc)
            return
        delivery.request_body = hermes.encode_message(document).decode()


def _topic_of(delivery: Delivery) -> str | None:
    """The Hopskotch topic an earlier Hermes delivery was for (its body names it)."""
    try:
        topic = json.loads(delivery.request_body).get("topic") if delivery.request_body else None
    except ValueError:
        return None
    return topic if isinstance(topic, str) else None


# --------------------------------------------------------------------------------------------------
# Sending.


@dataclass(frozen=True)
class _Job:
    """A taken delivery, with everything needed to send it outside any transaction."""

    delivery_id: int
    kind: str
    method: Literal["POST", "PUT", "PATCH", "DELETE", "PUBLISH"]  # PUBLISH: to Kafka (Hermes)
    url: str
    headers: dict[str, str]
    body: bytes
    #: The SkyPortal instance whose answer names the new row (a PUT), else empty.
    names_row_at: str = ""


@dataclass(frozen=True)
class _Outcome:
    started_at: dt.datetime
    duration_ms: float
    http_status: int | None
    error: str | None
    delivered: bool
    retryable: bool
    retry_after_s: float | None = None
    remote_url: str | None = None


def _same_stream(delivery: Delivery) -> tuple[Any, ...]:
    """Conditions of the deliveries of ``delivery``'s point to its target (sent in id order)."""
    return (
        Delivery.kind == delivery.kind,
        Delivery.target_id == delivery.target_id,
        Delivery.point_id == delivery.point_id,
    )


def _release_successors(session: Session, delivery: Delivery) -> None:
    """``delivery`` ended: the later deliveries of its point to its target that wait for it are due now."""
    session.execute(
        update(Delivery)
        .where(
            *_same_stream(delivery),
            Delivery.id > delivery.id,
            Delivery.status == STATUS_PENDING,
            Delivery.next_attempt_at > utcnow(),
        )
        .values(next_attempt_at=utcnow())
        .execution_options(synchronize_session=False)
    )


#: What a delivery whose target's secret no key decrypts says (the stored value is not ours to guess).
SECRET_UNREADABLE_HINT = (
    "it was stored with another CPCS_SECRET_KEY; give the api that key (after the current one), or "
    "give the secret again (a new token for the destination; a new webhook)"
)


def _stored_secret(target: WebhookSubscription | SkyPortalDestination) -> str | None:
    """A target's stored secret (signing key, token), or ``None`` when no configured key decrypts it."""
    try:
        return target.secret if isinstance(target, WebhookSubscription) else target.token
    except SecretUnreadable as exc:
        log.error("outbound: %s", exc.message)
        return None


def _truncate(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def remote_error_summary(head: bytes) -> str:
    """What a remote error answer says, fit to store and show: SkyPortal's or a JSON ``message``
    when there is one, else the text; control and format characters (newlines, bidi, zero-width)
    dropped, whitespace collapsed, at most ``MAX_REMOTE_ERROR_CHARS``."""
    text = head.decode("utf-8", errors="replace")
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, dict):
        message = document.get("message", document.get("error", document.get("detail")))
        if isinstance(message, str):
            text = message
    printable = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)
    summary = " ".join(printable.split())
    if len(summary) > MAX_REMOTE_ERROR_CHARS:
        summary = summary[: MAX_REMOTE_ERROR_CHARS - 1] + "…"
    return summary or "(no message)"


def _read_head(response: httpx.Response) -> bytes:
    """The start of an answer's body (enough for an error message; a huge answer is not read)."""
    head = b""
    for chunk in response.iter_bytes():
        head += chunk
        if len(head) >= MAX_BODY_READ:
            break
    return head[:MAX_BODY_READ]


def _retry_after_s(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (delta or HTTP date); ``None`` when absent or unreadable."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (as_utc(when) - utcnow()).total_seconds())


class DeliveryWorker:
    """Threads that send due deliveries and record every attempt (see the module docstring)."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        client: httpx.Client | None = None,
        hermes_publisher: HermesPublisher | None = None,
    ):
        self.db = db
        self.settings = settings
        self.hermes = hermes_publisher
        self._client = client
        self._own_client = client is None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    @property
    def client(self) -> httpx.Client:
        """The HTTP client (created on first use; redirects are not followed)."""
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    timeout=self.settings.outbound_timeout_s,
                    follow_redirects=False,
                    trust_env=self.settings.outbound_trust_env,
                    headers={"User-Agent": USER_AGENT},
                )
            return self._client

    def notify(self) -> None:
        """New deliveries were committed: look now rather than at the next poll."""
        self._wake.set()

    def start(self) -> None:
        """Start the sending threads (idempotent)."""
        with self._lock:
            if self._threads:
                return
            self._stop.clear()
            for index in range(self.settings.outbound_workers):
                thread = threading.Thread(target=self._loop, name=f"outbound-delivery-{index}", daemon=True)
                self._threads.append(thread)
                thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the threads (an attempt under way finishes, up to the HTTP timeout) and close the client."""
        self._stop.set()
        self._wake.set()
        wait = timeout if timeout is not None else self.settings.outbound_timeout_s + 5
        with self._lock:
            threads, self._threads = self._threads, []
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(wait)
        with self._lock:
            if self._own_client and self._client is not None:
                self._client.close()
                self._client = None

    def _loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            self._wake.clear()  # before looking, so a notify during the look is not lost
            try:
                worked = self.run_once()
                failures = 0
            except Exception:  # the database may be away: back off and try again
                failures += 1
                log.exception("outbound delivery worker failed")
                self._stop.wait(min(self.settings.outbound_poll_s * 2**failures, 60.0))
                continue
            if not worked:
                self._wake.wait(self.settings.outbound_poll_s)

    def run_once(self) -> bool:
        """Take, send and record one due delivery; ``False`` when none was due."""
        job = self._take()
        if job is None:
            return False
        outcome = self._send(job)
        self._record(job, outcome)
        return True

    def _take(self) -> _Job | None:
        """Win one due delivery with a conditional UPDATE, and read what to send."""
        now = utcnow()
        with self.db.transaction() as session:
            due = session.scalars(
                select(Delivery.id)
                .where(Delivery.status == STATUS_PENDING, Delivery.next_attempt_at <= now)
                .order_by(Delivery.next_attempt_at, Delivery.id)
                .limit(20)
            ).all()
        lease_until = now + dt.timedelta(seconds=self.settings.outbound_lease_s)
        for delivery_id in due:
            with self.db.transaction() as session:
                taken = cast(
                    CursorResult[Any],
                    session.execute(
                        update(Delivery)
                        .where(
                            Delivery.id == delivery_id,
                            Delivery.status == STATUS_PENDING,
                            Delivery.next_attempt_at <= now,
                        )
                        .values(next_attempt_at=lease_until)
                        .execution_options(synchronize_session=False)
                    ),
                )
                if taken.rowcount != 1:
                    continue  # another worker won it
                delivery = session.get(Delivery, delivery_id)
                assert delivery is not None
                job = self._job(session, delivery)
                if job is not None:
                    return job
        return None

    def _job(self, session: Session, delivery: Delivery) -> _Job | None:
        """What to send for ``delivery``; ``None`` when it must wait for an earlier delivery of its
        point, or when it cannot be sent (its target is gone, SkyPortal has no row): then it ends failed."""
        if self._waits(session, delivery):
            return None
        body = delivery.request_body.encode()
        if delivery.kind == KIND_WEBHOOK:
            subscription = session.get(WebhookSubscription, delivery.target_id)
            if subscription is None or not subscription.active:
                reason = "the webhook subscription was removed or deactivated"
            elif (secret := _stored_secret(subscription)) is None:
                reason = f"the webhook's signing secret cannot be decrypted: {SECRET_UNREADABLE_HINT}"
            else:
                headers = webhooks.request_headers(secret, body, delivery.id, utcnow())
                headers[webhooks.EVENT_HEADER] = webhooks.EVENTS[delivery.action]
                return _Job(delivery.id, delivery.kind, "POST", subscription.url, headers, body)
        elif delivery.kind == KIND_SKYPORTAL:
            destination = session.get(SkyPortalDestination, delivery.target_id)
            if destination is not None and destination.active:
                token = _stored_secret(destination)
                if token is None:
                    reason = f"the destination's token cannot be decrypted: {SECRET_UNREADABLE_HINT}"
                    return self._fail(session, delivery, reason)
                headers = skyportal.request_headers(token)
                if delivery.action == ACTION_CALIBRATED:
                    url = skyportal.photometry_url(destination.base_url)
                    return _Job(
                        delivery.id,
                        delivery.kind,
                        "PUT",
                        url,
                        headers,
                        body,
                        names_row_at=destination.base_url,
                    )
                row, reason = self._skyportal_row(session, delivery, destination.base_url)
                if row is not None:
                    delivery.remote_url = row
                    method: Literal["PATCH", "DELETE"] = (
                        "PATCH" if delivery.action == ACTION_UPDATED else "DELETE"
                    )
                    return _Job(delivery.id, delivery.kind, method, row, headers, body)
            else:
                reason = "the SkyPortal destination was removed or deactivated"
        elif delivery.kind == KIND_HERMES:
            if self.hermes is None:
                reason = "Hermes is not configured in this process (CPCS_HERMES_TOPIC, _USERNAME, _PASSWORD)"
            else:
                topic = str(json.loads(body).get("topic") or self.hermes.topic)
                event = webhooks.EVENTS[delivery.action]
                headers = {
                    key: value.decode()
                    for key, value in hermes.message_headers(delivery.id, delivery.point_id, event)
                }
                return _Job(delivery.id, delivery.kind, "PUBLISH", topic, headers, body)
        else:
            reason = f"unknown delivery kind {delivery.kind!r}"
        return self._fail(session, delivery, reason)

    @staticmethod
    def _fail(session: Session, delivery: Delivery, reason: str) -> None:
        """End ``delivery`` failed, unsent, with ``reason``."""
        delivery.status = STATUS_FAILED
        delivery.next_attempt_at = None
        delivery.last_error = reason
        _release_successors(session, delivery)

    def _waits(self, session: Session, delivery: Delivery) -> bool:
        """Hold ``delivery`` back (no attempt counted) while an earlier delivery of its point to its
        target is pending: until that one is due again, at least ``poll_s``; its end releases it."""
        earlier = session.execute(
            select(Delivery.id, Delivery.next_attempt_at)
            .where(*_same_stream(delivery), Delivery.id < delivery.id, Delivery.status == STATUS_PENDING)
            .order_by(Delivery.id)
            .limit(1)
        ).first()
        if earlier is None:
            return False
        now = utcnow()
        soonest = now + dt.timedelta(seconds=self.settings.outbound_poll_s)
        due = as_utc(earlier.next_attempt_at) if earlier.next_attempt_at is not None else soonest
        delivery.next_attempt_at = max(due, soonest)
        return True

    @staticmethod
    def _skyportal_row(session: Session, delivery: Delivery, base_url: str) -> tuple[str | None, str]:
        """The URL of the SkyPortal row of the delivery's point (the newest delivered PUT's), or why none."""
        row = session.scalar(
            select(Delivery.remote_url)
            .where(
                Delivery.kind == KIND_SKYPORTAL,
                Delivery.target_id == delivery.target_id,
                Delivery.point_id == delivery.point_id,
                Delivery.action == ACTION_CALIBRATED,
                Delivery.status == STATUS_DELIVERED,
                Delivery.remote_url.is_not(None),
            )
            .order_by(Delivery.id.desc())
            .limit(1)
        )
        if row is None:
            return None, (
                "SkyPortal holds no row of this point that we know of: no PUT of it there succeeded "
                "with a photometry id in the answer"
            )
        if not skyportal.is_row_of(row, base_url):
            return None, (
                f"the point's SkyPortal row {row} belongs to an earlier base_url of this destination; "
                "it is not sent there with this destination's token"
            )
        return row, ""

    def _send(self, job: _Job) -> _Outcome:
        """One HTTP attempt; never raises."""
        started_at = utcnow()
        clock = time.perf_counter()

        def outcome(
            status: int | None,
            error: str | None,
            *,
            delivered: bool = False,
            retryable: bool = False,
            **kw: Any,
        ) -> _Outcome:
            elapsed = round(1e3 * (time.perf_counter() - clock), 1)
            return _Outcome(started_at, elapsed, status, error, delivered, retryable, **kw)

        if job.method == "PUBLISH":
            return self._publish(job, outcome)
        try:
            # Every target, webhook or SkyPortal, must resolve to a public address (unless allowed).
            webhooks.check_resolved_host(job.url, allow_private=self.settings.outbound_allow_private_targets)
            with self.client.stream(job.method, job.url, content=job.body, headers=job.headers) as response:
                status = response.status_code
                retry_after_s = _retry_after_s(response)
                location = response.headers.get("location")
                wanted = not 200 <= status < 400 or (job.names_row_at and status < 300)
                head = _read_head(response) if wanted else b""
        except webhooks.TargetNotAllowed as exc:
            return outcome(None, f"target not allowed: {exc}")
        except (httpx.HTTPError, OSError) as exc:
            return outcome(None, _truncate(f"{type(exc).__name__}: {exc}"), retryable=True)
        except Exception as exc:  # our bug: record it, retry like a transient failure
            log.exception("delivery %d: unexpected error", job.delivery_id)
            return outcome(None, _truncate(f"{type(exc).__name__}: {exc}"), retryable=True)
        if 200 <= status < 300:
            if not job.names_row_at:
                return outcome(status, None, delivered=True)
            row = skyportal.photometry_id(head)
            if row is None:
                log.warning("delivery %d: SkyPortal's answer names no photometry id", job.delivery_id)
                return outcome(status, None, delivered=True)
            return outcome(status, None, delivered=True, remote_url=skyportal.row_url(job.names_row_at, row))
        if 300 <= status < 400:
            error = f"HTTP {status}: redirects are not followed (Location: {location})"
        else:
            summary = remote_error_summary(head)
            error = f"HTTP {status}: {summary}"
            if (
                job.method == "DELETE"
                and job.kind == KIND_SKYPORTAL
                and skyportal.already_deleted(status, summary)
            ):
                return outcome(status, _truncate(f"already gone at SkyPortal ({error})"), delivered=True)
        retryable = status >= 500 or status in RETRYABLE_STATUSES
        return outcome(status, _truncate(error), retryable=retryable, retry_after_s=retry_after_s)

    def _publish(self, job: _Job, outcome: Callable[..., _Outcome]) -> _Outcome:
        """One publication of a Hermes message on its topic (``job.url``); never raises."""
        assert self.hermes is not None
        headers = [(key, value.encode()) for key, value in job.headers.items()]
        try:
            published = self.hermes.publish(job.url, json.loads(job.body), headers)
        except PublishFailed as exc:
            return outcome(None, _truncate(str(exc)), retryable=exc.retryable)
        except Exception as exc:  # our bug: record it, retry like a transient failure
            log.exception("delivery %d: unexpected error", job.delivery_id)
            return outcome(None, _truncate(f"{type(exc).__name__}: {exc}"), retryable=True)
        return outcome(None, None, delivered=True, remote_url=f"{published.url}#{published.message_id}")

    def _record(self, job: _Job, outcome: _Outcome) -> None:
        """Store the attempt and move the delivery on: delivered, due again later, or failed."""
        with self.db.transaction() as session:
            delivery = session.get(Delivery, job.delivery_id, with_for_update=True)
            if delivery is None or delivery.status != STATUS_PENDING:
                return  # removed with its subscription, or finished by a worker whose lease we outlived
            delivery.attempts += 1
            session.add(
                DeliveryAttempt(
                    delivery_id=delivery.id,
                    number=delivery.attempts,
                    started_at=outcome.started_at,
                    duration_ms=outcome.duration_ms,
                    http_status=outcome.http_status,
                    error=outcome.error,
                )
            )
            delivery.last_http_status = outcome.http_status
            delivery.last_error = outcome.error
            if outcome.delivered:
                delivery.status = STATUS_DELIVERED
                delivery.delivered_at = utcnow()
                delivery.next_attempt_at = None
                if outcome.remote_url is not None:
                    delivery.remote_url = outcome.remote_url
            elif outcome.retryable and delivery.attempts < self.settings.outbound_max_attempts:
                delay = self.settings.outbound_backoff(delivery.attempts)
                if outcome.retry_after_s is not None:
                    delay = max(delay, min(outcome.retry_after_s, max(self.settings.outbound_backoff_s)))
                delivery.next_attempt_at = utcnow() + dt.timedelta(seconds=delay)
            else:
                delivery.status = STATUS_FAILED
                delivery.next_attempt_at = None
            if delivery.status != STATUS_PENDING:
                _release_successors(session, delivery)
            status, attempts = delivery.status, delivery.attempts
        metrics.delivery_attempted(job.kind, status)
        log.info(
            "delivery %d (%s) attempt %d: %s",
            job.delivery_id,
            job.kind,
            attempts,
            outcome.http_status if outcome.error is None else outcome.error,
            extra={
                "status": outcome.http_status,
                "duration_ms": outcome.duration_ms,
                "delivery_status": status,
            },
        )


# --------------------------------------------------------------------------------------------------
# Wiring.


class Outbound:
    """The outbound flow of one api process: the consumer of queue ``api`` and the senders.

    The composition root (``cpcs_system.launcher``) makes one per process and runs its parts like
    every other consumer's; its settings are the process's (``CPCS_OUTBOUND_*``, ``CPCS_HERMES_*``).
    ``hermes_stream`` stands in for hop's ``Stream`` (tests).
    """

    def __init__(
        self, context: Context, *, client: httpx.Client | None = None, hermes_stream: HopStream | None = None
    ):
        self.context = context
        publisher = None
        if context.settings.hermes_enabled:
            publisher = HermesPublisher(context.settings, hermes_stream)
            log.info("outbound: points are published to Hermes on %s", publisher.topic)
        self.worker = DeliveryWorker(context.db, context.settings, client=client, hermes_publisher=publisher)
        self.dispatcher = OutboundDispatcher(context, on_planned=self.worker.notify)

    def consumers(self) -> list[Callable[[], None]]:
        """The subscribe functions to run before the bus starts."""
        return [self.dispatcher.subscribe]

    def start(self) -> None:
        """Start sending deliveries."""
        self.worker.start()

    def stop(self) -> None:
        """Stop sending (pending deliveries stay in the database for the next start)."""
        self.worker.stop()
