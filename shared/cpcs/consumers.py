"""The shell every consumer shares: subscribe, decode, work, and what to do when the last try fails.

A worker says only what it does::

    class ReduceWorker(Consumer[ImageReceivedV1]):
        queue = "reduce"
        kinds = (ImageReceivedV1,)

        def work(self, message: ImageReceivedV1) -> None: ...
        def on_last_failure(self, message: ImageReceivedV1, error: Exception) -> None: ...

The bus retries a failing handler with back-off and dead-letters it after ``max_attempts``; a failure
because the database or broker is away is waited out and never counts (:mod:`cpcs.outage`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar, cast

from pydantic import ValidationError

from cpcs import tracing
from cpcs.logs import observation_context
from cpcs.messages import Message, decode
from cpcs.messaging.bus import Envelope, RejectMessage
from cpcs.messaging.topology import binding_keys
from cpcs.outage import dependency_unavailable

if TYPE_CHECKING:
    from cpcs.context import Context

M = TypeVar("M", bound=Message)


def decode_for(envelope: Envelope, consumer: str, *kinds: type[M]) -> M:
    """The envelope's message if it is one of ``kinds``; else ``RejectMessage`` (dead-lettered at once)."""
    try:
        message = decode(envelope.routing_key, envelope.body)
    except (KeyError, ValidationError) as exc:
        raise RejectMessage(f"unreadable {envelope.routing_key} message: {exc}") from exc
    if not isinstance(message, kinds):
        raise RejectMessage(f"{consumer} does not handle {envelope.routing_key}")
    return message


class Consumer(Generic[M]):
    """The consumer of one queue (named in ``cpcs.messaging.topology``) for messages of ``kinds``."""

    #: The queue consumed; its bindings come from the topology.
    queue: ClassVar[str]
    #: The message classes handled; any other is dead-lettered at once.
    kinds: ClassVar[tuple[type[Message], ...]]
    #: Attempts before a message is dead-lettered; None: the settings' ``max_delivery_attempts``.
    max_attempts: ClassVar[int | None] = None

    def __init__(self, context: Context):
        self.context = context

    def _attempts(self) -> int:
        return self.max_attempts or self.context.settings.max_delivery_attempts

    def subscribe(self) -> None:
        """Consume the queue on the context's bus (before the bus starts)."""
        bindings = binding_keys(self.queue)
        self.context.bus.subscribe(self.queue, bindings, self.handle, max_attempts=self._attempts())

    def handle(self, envelope: Envelope) -> None:
        """Bus handler: decode, work (in the observation's log context and in a span continuing the
        trace the message headers carry), note the final failure."""
        with tracing.consuming(
            self.queue, envelope.routing_key, envelope.message_id, envelope.attempt, envelope.headers
        ):
            message = cast(M, decode_for(envelope, f"the {self.queue} consumer", *self.kinds))
            observation_id = getattr(message, "observation_id", None)
            tracing.annotate(observation_id=observation_id, alert_id=getattr(message, "alert_id", None))
            with observation_context(observation_id):
                try:
                    self.work(message)
                except Exception as exc:
                    last = envelope.attempt >= self._attempts()
                    if last and not dependency_unavailable(exc):  # an outage is waited out, not final
                        self.on_last_failure(message, exc)
                    raise

    def work(self, message: M) -> None:
        """Do what the message asks (commit before returning; raise to retry)."""
        raise NotImplementedError

    def on_last_failure(self, message: M, error: Exception) -> None:
        """The last attempt failed and the message goes to the dead letters; by default nothing."""
