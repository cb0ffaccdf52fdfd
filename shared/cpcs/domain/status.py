"""What the admin status page and the scrape-time metrics read: figures from the stored history,
the outbox backlog, the queues and their dead letters."""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from dataclasses import dataclass

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cpcs.context import Context
from cpcs.db.engine import Database
from cpcs.db.models import Calibration, Observation, OutboxMessage, utcnow
from cpcs.messaging.bus import HEADER_ERROR, HEADER_FAILED_AT, MessagingError

log = logging.getLogger(__name__)

#: The windows the page shows, by label.
WINDOWS = (("last hour", dt.timedelta(hours=1)), ("last day", dt.timedelta(days=1)))
_PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class WindowFigures:
    """What happened to the observations uploaded within one window."""

    label: str
    uploads: int
    calibrated: int
    waiting: int
    failures: dict[str, int]  # "failed: code" or "error: code" -> count, most frequent first
    latency_percentiles_s: dict[int, float]  # upload -> first calibration, of those calibrated


@dataclass(frozen=True)
class OutboxBacklog:
    count: int
    oldest_age_s: float


@dataclass(frozen=True)
class QueueRow:
    queue: str
    ready: int | None
    retrying: int | None
    dead: int | None


@dataclass(frozen=True)
class RecentFailure:
    observation_id: int
    status: str
    code: str | None
    message: str | None
    alert: str
    at: dt.datetime


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def window_figures(
    session: Session, label: str, span: dt.timedelta, now: dt.datetime | None = None
) -> WindowFigures:
    since = (now or utcnow()) - span
    rows = session.execute(
        select(Observation.id, Observation.status, Observation.error_code, Observation.created_at).where(
            Observation.created_at >= since, Observation.dry_run.is_(False)
        )
    ).all()
    failures = Counter(
        f"{status}: {code or 'unknown'}" for _, status, code, _ in rows if status in ("failed", "error")
    )
    first_calibrated = (
        select(Calibration.observation_id, func.min(Calibration.created_at).label("at"))
        .where(Calibration.observation_id.in_([row[0] for row in rows] or [-1]))
        .group_by(Calibration.observation_id)
    )
    uploaded = {row[0]: _aware(row[3]) for row in rows}
    waits = [
        (_aware(at) - uploaded[observation_id]).total_seconds()
        for observation_id, at in session.execute(first_calibrated).all()
    ]
    percentiles = (
        {p: float(v) for p, v in zip(_PERCENTILES, np.percentile(waits, _PERCENTILES), strict=True)}
        if waits
        else {}
    )
    return WindowFigures(
        label=label,
        uploads=len(rows),
        calibrated=sum(1 for row in rows if row[1] == "calibrated"),
        waiting=sum(1 for row in rows if row[1] not in ("calibrated", "failed", "error")),
        failures=dict(failures.most_common()),
        latency_percentiles_s=percentiles,
    )


def recent_failures(session: Session, limit: int = 20) -> list[RecentFailure]:
    observations = session.scalars(
        select(Observation)
        .where(Observation.status.in_(("failed", "error")))
        .order_by(Observation.updated_at.desc(), Observation.id.desc())
        .limit(limit)
    ).all()
    return [
        RecentFailure(o.id, o.status, o.error_code, o.error_message, o.alert.name, _aware(o.updated_at))
        for o in observations
    ]


def outbox_backlog(db: Database) -> OutboxBacklog:
    with db.transaction() as session:
        count, oldest = session.execute(
            select(func.count(OutboxMessage.id), func.min(OutboxMessage.created_at)).where(
                OutboxMessage.published_at.is_(None)
            )
        ).one()
    age = 0.0 if oldest is None else max(0.0, (utcnow() - _aware(oldest)).total_seconds())
    return OutboxBacklog(count=int(count), oldest_age_s=age)


@dataclass(frozen=True)
class DeadLetter:
    queue: str
    message_id: str
    routing_key: str
    reason: str
    attempts: int
    failed_at: str | None


def dead_letters(context: Context, limit_per_queue: int = 50) -> list[DeadLetter]:
    """The dead letters of every consumer queue, with the failure that parked them."""
    letters: list[DeadLetter] = []
    for spec in context.relay.topology.queues:
        try:
            envelopes = context.bus.dead_letters(spec.name)
        except MessagingError as exc:
            log.warning("dead letters of %s: %s", spec.name, exc)
            continue
        letters.extend(
            DeadLetter(
                queue=spec.name,
                message_id=envelope.message_id,
                routing_key=envelope.routing_key,
                reason=envelope.headers.get(HEADER_ERROR, ""),
                attempts=envelope.attempt,
                failed_at=envelope.headers.get(HEADER_FAILED_AT),
            )
            for envelope in envelopes[:limit_per_queue]
        )
    return letters


def consumer_queue_names(context: Context) -> tuple[str, ...]:
    return tuple(spec.name for spec in context.relay.topology.queues)


def queue_depths(context: Context) -> list[QueueRow]:
    """Each consumer queue of the topology, counted through the bus (None where it cannot say)."""
    rows = []
    for spec in context.relay.topology.queues:
        try:
            depth = context.bus.queue_depth(spec.name)
        except MessagingError as exc:
            log.warning("queue depth of %s: %s", spec.name, exc)
            depth = None
        if depth is None:
            rows.append(QueueRow(spec.name, None, None, None))
        else:
            rows.append(QueueRow(spec.name, depth.ready, depth.retrying, depth.dead))
    return rows
