"""The outbox relay publishes as soon as the broker is back, not when its back-off runs out."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import select

from cpcs.db.engine import Database
from cpcs.db.migrate import upgrade
from cpcs.db.models import OutboxMessage
from cpcs.db.outbox import OutboxRelay
from cpcs.messaging.rabbitmq import RabbitMqBus
from cpcs.messaging.topology import CPCS_TOPOLOGY
from cpcs.testing.faults import private_rabbitmq
from tests.reliability.harness import wait_for

PROBE_S = 1.0
# poll_s * 2 is the first back-off: far longer than the broker takes to start again, so only the
# relay's probing of the broker can explain a prompt publish.
POLL_S = 15.0


def _published(db: Database) -> list[str]:
    with db.transaction() as session:
        return list(
            session.scalars(select(OutboxMessage.message_id).where(OutboxMessage.published_at.is_not(None)))
        )


def test_relay_publishes_within_a_probe_of_the_broker_coming_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cpcs.db'}"
    upgrade(url)
    db = Database(url)
    with private_rabbitmq(tmp_path / "rabbitmq") as broker:
        bus = RabbitMqBus(broker.url, publish_attempts=1, topology=CPCS_TOPOLOGY, name="relay-test")
        relay = OutboxRelay(db, bus, poll_s=POLL_S, broker_probe_s=PROBE_S)
        relay.start()
        try:
            broker.stop()
            with db.transaction() as session:
                session.add(OutboxMessage(message_id="held-1", routing_key="catalogue.received", body="{}"))
            relay.notify()
            wait_for(lambda: _row_failed(db), 30, "the relay's failed publish while the broker is away")
            assert _published(db) == []
            broker.start()
            back_at = time.monotonic()
            wait_for(lambda: _published(db) == ["held-1"], 2 * POLL_S, "the held row published")
            waited_s = time.monotonic() - back_at
            assert broker.ready("calibrate") == 1
        finally:
            relay.stop()
            bus.stop()
    print(f"outbox relay: published {waited_s:.1f} s after the broker was back (back-off {2 * POLL_S:.0f} s)")
    assert waited_s < PROBE_S + 3.0, waited_s


def _row_failed(db: Database) -> bool:
    with db.transaction() as session:
        row = session.scalars(select(OutboxMessage)).one()
        return row.attempts >= 1 and row.last_error is not None
