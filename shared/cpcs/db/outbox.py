"""Transactional outbox: a message row commits with the data; a relay thread publishes it."""

from __future__ import annotations

import logging
import threading
import time
import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from cpcs import tracing
from cpcs.db.engine import Database
from cpcs.db.models import OutboxMessage, utcnow
from cpcs.messages import Message, encode
from cpcs.messaging.bus import Bus, UnroutableError
from cpcs.messaging.topology import CPCS_TOPOLOGY, Topology

log = logging.getLogger(__name__)


def add_to_outbox(session: Session, message: Message) -> str:
    """Queue ``message`` in the caller's transaction; returns its message id.

    The row keeps the trace context of the current span (the request or the consumer's work), so
    that the message continues the trace wherever it is published.
    """
    routing_key, body = encode(message)
    message_id = uuid.uuid4().hex
    session.add(
        OutboxMessage(
            message_id=message_id,
            routing_key=routing_key,
            body=body.decode(),
            trace_context=tracing.message_carrier(message),
        )
    )
    return message_id


class OutboxRelay:
    """Publishes committed outbox rows in order and marks them sent.

    Several relays (one per process) may run against one PostgreSQL database: rows are
    claimed with ``FOR UPDATE SKIP LOCKED``. A publish that fails leaves the row for the next
    round, so nothing is lost while the broker is away (the relay backs off, asking the broker
    every ``broker_probe_s`` whether it is back, and publishes as soon as it is); consumers are
    idempotent, so the rare double publish after a crash between publish and commit is harmless.
    A message no queue is bound to counts as sent: quietly for the topology's
    ``unconsumed_events`` (events nobody consumes by design), with a warning for any other key
    (a consumer queue is missing). Every consumer queue is declared before anything is
    published (see ``Context``), so commands route.
    """

    def __init__(
        self,
        db: Database,
        bus: Bus,
        *,
        poll_s: float = 0.5,
        batch: int = 100,
        broker_probe_s: float = 2.0,
        topology: Topology = CPCS_TOPOLOGY,
    ):
        self.db = db
        self.bus = bus
        self.topology = topology
        self.poll_s = poll_s
        self.batch = batch
        self.broker_probe_s = broker_probe_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def notify(self) -> None:
        """Something was committed: publish now rather than at the next poll."""
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="outbox-relay", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            self._wake.clear()
            try:
                sent = self.publish_pending()
                failures = 0
            except Exception as exc:  # broker or database away: back off, keep the rows
                failures += 1
                delay = min(self.poll_s * 2**failures, 30.0)
                log.warning("outbox relay: %s; retrying in %.1f s", exc, delay)
                self._back_off(delay)
                continue
            if sent < self.batch:
                self._wake.wait(self.poll_s)

    def _back_off(self, delay: float) -> None:
        """Wait ``delay`` seconds, but if the broker is what is away, only until it answers again."""
        deadline = time.monotonic() + delay
        if self.bus.health():
            self._stop.wait(delay)  # the database, or a single failed publish: the full back-off
            return
        while not self._stop.is_set() and (left := deadline - time.monotonic()) > 0:
            if self._stop.wait(min(self.broker_probe_s, left)):
                return
            if self.bus.health():
                log.info("outbox relay: the broker is back; publishing")
                return

    def publish_pending(self) -> int:
        """Publish one batch of unsent rows; returns how many were sent."""
        with self.db.transaction() as session:
            query = (
                select(OutboxMessage)
                .where(OutboxMessage.published_at.is_(None))
                .order_by(OutboxMessage.id)
                .limit(self.batch)
            )
            if not self.db.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            rows = session.scalars(query).all()
            failure: Exception | None = None
            sent = 0
            for row in rows:
                row.attempts += 1
                try:
                    with tracing.publishing(row.trace_context, row.routing_key, row.message_id) as headers:
                        self.bus.publish(
                            row.routing_key, row.body.encode(), message_id=row.message_id, headers=headers
                        )
                except UnroutableError:
                    extra = {"message_id": row.message_id, "routing_key": row.routing_key}
                    if self.topology.expects_unroutable(row.routing_key):
                        log.debug("no subscriber for %s (none by design)", row.routing_key, extra=extra)
                    else:
                        log.warning(
                            "message %s dropped: no queue bound to %r",
                            row.message_id,
                            row.routing_key,
                            extra=extra,
                        )
                    row.last_error = "unroutable: no queue bound"
                except Exception as exc:
                    row.last_error = str(exc)[:1000]
                    failure = exc
                    break
                row.published_at = utcnow()
                sent += 1
        if failure is not None:
            raise failure
        return sent
