"""Prefetch reference stars when a field is announced (``field.requested``)."""

from __future__ import annotations

import logging

from cpcs.catalogs.cone import ConeService
from cpcs.consumers import decode_for
from cpcs.context import Context
from cpcs.errors import CpcsError
from cpcs.messages import FieldRequestedV1
from cpcs.messaging.bus import Envelope
from cpcs.messaging.topology import binding_keys

log = logging.getLogger(__name__)

QUEUE = "catalog-cache"
BINDINGS = binding_keys(QUEUE)


class PrefetchWorker:
    def __init__(self, context: Context, cones: ConeService):
        self.context = context
        self.cones = cones

    def subscribe(self) -> None:
        self.context.bus.subscribe(QUEUE, BINDINGS, self.handle, max_attempts=3)

    def handle(self, envelope: Envelope) -> None:
        message = decode_for(envelope, "catalog-cache", FieldRequestedV1)
        try:
            self.cones.prefetch(message.ra_deg, message.dec_deg, message.radius_deg)
        except CpcsError as exc:
            # Offline with nothing cached, or the source unreachable: calibrate will report it.
            log.info("prefetch of %.4f %+.4f skipped: %s", message.ra_deg, message.dec_deg, exc)
