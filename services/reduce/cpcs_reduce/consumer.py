"""The reduce consumer of ``image.received``.

Image uploads are not accepted by ingest yet, so no ``image.received`` is published; a message
that arrives anyway is dead-lettered with a clear reason rather than silently dropped.
"""

from __future__ import annotations

from cpcs.context import Context
from cpcs.messaging.bus import Envelope, RejectMessage
from cpcs.messaging.topology import binding_keys

QUEUE = "reduce"
BINDINGS = binding_keys(QUEUE)


class ReduceWorker:
    def __init__(self, context: Context):
        self.context = context

    def subscribe(self) -> None:
        self.context.bus.subscribe(QUEUE, BINDINGS, self.handle, max_attempts=3)

    def handle(self, envelope: Envelope) -> None:
        raise RejectMessage(f"image reduction is not available in this version ({envelope.message_id})")
