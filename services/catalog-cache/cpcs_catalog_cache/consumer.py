"""Prefetch reference stars when a field is announced (``field.requested``)."""

from __future__ import annotations

import logging

from cpcs.catalogs.cone import ConeService
from cpcs.consumers import Consumer
from cpcs.context import Context
from cpcs.errors import CpcsError
from cpcs.messages import FieldRequestedV1

log = logging.getLogger(__name__)

QUEUE = "catalog-cache"


class PrefetchWorker(Consumer[FieldRequestedV1]):
    queue = QUEUE
    kinds = (FieldRequestedV1,)
    max_attempts = 3

    def __init__(self, context: Context, cones: ConeService):
        super().__init__(context)
        self.cones = cones

    def work(self, message: FieldRequestedV1) -> None:
        try:
            self.cones.prefetch(message.ra_deg, message.dec_deg, message.radius_deg)
        except CpcsError as exc:
            # Offline with nothing cached, or the source unreachable: calibrate will report it.
            log.info("prefetch of %.4f %+.4f skipped: %s", message.ra_deg, message.dec_deg, exc)
