"""Periodic chores of a service process: expiring dry runs, trimming old deliveries and dry-run versions."""

from __future__ import annotations

import datetime as dt
import logging
import threading

from cpcs.context import Context
from cpcs.db.models import utcnow
from cpcs.domain.observations import purge_expired_dry_runs
from cpcs.domain.retention import trim_dry_run_versions, trim_finished_deliveries

log = logging.getLogger(__name__)


class Housekeeper:
    """A daemon thread doing :meth:`run_once` every ``interval_s`` seconds."""

    def __init__(self, context: Context, *, interval_s: float = 600.0):
        self.context = context
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        """One round of chores; returns how many rows were removed in all."""
        settings = self.context.settings
        now = utcnow()
        with self.context.db.transaction() as session:
            removed = purge_expired_dry_runs(session, now)
            if removed:
                log.info("removed %d expired dry runs", removed)
            if settings.delivery_retention_days > 0:
                cutoff = now - dt.timedelta(days=settings.delivery_retention_days)
                if deliveries := trim_finished_deliveries(session, cutoff):
                    log.info("removed %d deliveries finished before %s", deliveries, cutoff.date())
                removed += deliveries
            if settings.dry_run_version_retention_days > 0:
                cutoff = now - dt.timedelta(days=settings.dry_run_version_retention_days)
                if versions := trim_dry_run_versions(session, cutoff):
                    log.info(
                        "removed %d dry-run calibration versions made before %s", versions, cutoff.date()
                    )
                removed += versions
        return removed

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="housekeeping", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.run_once()
            except Exception:  # the database may be away; try again next round
                log.exception("housekeeping failed")
