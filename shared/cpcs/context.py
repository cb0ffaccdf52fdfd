"""The wiring of one process: settings, database, bus, file store and outbox relay.

Every service, consumer and CLI command builds its parts from a ``Context``; in the
embedded mode one context is shared by all services running in the process.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from cpcs.db.engine import Database
from cpcs.db.outbox import OutboxRelay
from cpcs.messaging.bus import Bus
from cpcs.messaging.factory import create_bus
from cpcs.messaging.topology import CPCS_TOPOLOGY
from cpcs.settings import Settings
from cpcs.storage import FileStore

log = logging.getLogger(__name__)


class Context:
    def __init__(self, settings: Settings, *, bus: Bus | None = None, db: Database | None = None):
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = db or Database(settings.sqlalchemy_url)
        # Every consumer queue is declared before anything is published, so a command sent
        # before its consumer first starts waits in its queue instead of being unroutable.
        topology = replace(CPCS_TOPOLOGY, exchange=settings.exchange)
        self.bus = bus or create_bus(
            settings.broker_url,
            exchange=settings.exchange,
            retry_base_s=settings.retry_base_s,
            topology=topology,
        )
        self.files = FileStore(settings.uploads_dir)
        self.relay = OutboxRelay(self.db, self.bus, poll_s=settings.outbox_poll_s, topology=topology)
        self._relay_started = False

    def start_relay(self) -> None:
        if not self._relay_started:
            self.relay.start()
            self._relay_started = True

    def committed(self) -> None:
        """Tell the relay that outbox rows were just committed."""
        self.relay.notify()

    def close(self) -> None:
        if self._relay_started:
            self.relay.stop()
        self.bus.stop()
        self.db.dispose()
