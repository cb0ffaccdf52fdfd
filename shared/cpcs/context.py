"""The wiring of one process: settings, database, bus, file store and outbox relay.

Every service, consumer and CLI command builds its parts from a ``Context``; in the
embedded mode one context is shared by all services running in the process.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace

from sqlalchemy import text

from cpcs import metrics
from cpcs.db.engine import Database
from cpcs.db.outbox import OutboxRelay
from cpcs.db.secret_box import (
    ResolvedKeys,
    SecretBox,
    bind_secret_box,
    has_secret_box,
    keys_from_settings,
)
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
        self._secret_keys: ResolvedKeys | None = None
        self._secret_lock = threading.Lock()
        if not has_secret_box(self.db.engine):
            bind_secret_box(self.db.engine, lambda: self.secret_box)
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
        metrics.watch(self)

    @property
    def secret_keys(self) -> ResolvedKeys:
        """The keys of the encrypted columns and where they came from (resolved once, logged).

        Raises :class:`~cpcs.db.secret_box.SecretKeyError` when they are missing or malformed:
        the api service asks at start, so that a missing key stops it there.
        """
        with self._secret_lock:
            if self._secret_keys is None:
                keys = keys_from_settings(self.settings, self.db.url)
                if keys.generated:
                    log.warning(
                        "generated a secret key (%s): it encrypts webhook secrets and SkyPortal tokens "
                        "in the database; keep it with the data folder (or set CPCS_SECRET_KEY)",
                        keys.source,
                    )
                else:
                    log.info("secret keys from %s (encrypting key %s)", keys.source, keys.box.fingerprint)
                self._secret_keys = keys
            return self._secret_keys

    @property
    def secret_box(self) -> SecretBox:
        return self.secret_keys.box

    def start_relay(self) -> None:
        if not self._relay_started:
            self.relay.start()
            self._relay_started = True

    def committed(self) -> None:
        """Tell the relay that outbox rows were just committed."""
        self.relay.notify()

    def readiness(self) -> dict[str, bool]:
        """Whether the database and the broker answer now (``/readyz``, ``cpcs_dependency_up``)."""
        checks = {"database": False, "broker": False}
        try:
            with self.db.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            checks["database"] = True
        except Exception as exc:
            log.warning("readiness: database: %s", exc)
        checks["broker"] = self.bus.health()
        return checks

    def close(self) -> None:
        metrics.forget(self)
        if self._relay_started:
            self.relay.stop()
        self.bus.stop()
        self.db.dispose()
