"""Periodic chores of a service process: expiring dry runs."""

from __future__ import annotations

import logging
import threading

from cpcs.context import Context
from cpcs.domain.observations import purge_expired_dry_runs

log = logging.getLogger(__name__)


class Housekeeper:
    """A daemon thread that removes expired dry runs every ``interval_s`` seconds."""

    def __init__(self, context: Context, *, interval_s: float = 600.0):
        self.context = context
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        with self.context.db.transaction() as session:
            removed = purge_expired_dry_runs(session)
        if removed:
            log.info("removed %d expired dry runs", removed)
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
