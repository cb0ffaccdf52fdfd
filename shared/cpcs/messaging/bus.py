"""The message bus interface every CPCS service talks to, and the rules both transports share.

A service publishes small facts (``catalogue.received``, ``point.calibrated`` …) as JSON bytes
on one topic exchange, and consumes them from its own durable queue through :meth:`Bus.subscribe`.
Two transports implement :class:`Bus` with *identical* semantics (a shared contract test suite
runs against both):

* :class:`cpcs.messaging.memory.InProcessBus` — threads and deques, for tests and single-process runs;
* :class:`cpcs.messaging.rabbitmq.RabbitMqBus` — RabbitMQ through pika.

Delivery contract
-----------------
* **At least once.** A message is acknowledged only after the handler returned normally, so a
  handler must commit its effects (e.g. to the database) *before* returning, and must be
  idempotent: the same ``message_id`` can arrive more than once (after a crash, a lost
  connection, or because the producer published it twice). The bus never de-duplicates.
* **Retries.** If the handler raises anything but :class:`RejectMessage`, the message comes back
  after ``retry_base_s * 2 ** (attempt - 1)`` seconds (capped at ``retry_max_s``) with
  ``attempt + 1``. After ``max_attempts`` failed attempts it is moved to ``<queue>.dead``.
* **Outages are not attempts.** A failure because a dependency is away (the database unreachable,
  or :class:`cpcs.outage.DependencyUnavailable`) comes back after a back-off of its own with the
  *same* attempt number, for as long as the outage lasts: it never dead-letters.
* **Rejection.** :class:`RejectMessage` (poison, unparseable) sends the message to
  ``<queue>.dead`` at once, without retry.
* **Dead letters** carry the visible headers :data:`HEADER_ERROR` (exception type and message,
  truncated), :data:`HEADER_ATTEMPTS` and :data:`HEADER_FAILED_AT`; they stay until an operator
  replays them with :meth:`Bus.replay_dead_letters` (the attempt counter restarts at 1).
* **Crash.** A message whose handler never finished (process killed, connection lost, or
  :meth:`Bus.stop` timed out) is redelivered *with the same attempt number*: the broker cannot
  know the handler ran, so this does not count as an attempt.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from cpcs import metrics
from cpcs.outage import dependency_unavailable

logger = logging.getLogger(__name__)

#: Internal header: the delivery attempt this copy of the message stands for (absent = 1).
HEADER_ATTEMPT = "x-cpcs-attempt"
#: Internal header: the routing key the message was first published with (retries and dead
#: letters travel through the default exchange, which rewrites the routing key).
HEADER_ROUTING_KEY = "x-cpcs-routing-key"
#: Dead letters: ``"<ExceptionType>: <message>"`` of the last failure, truncated.
HEADER_ERROR = "x-cpcs-error"
#: Dead letters: how many delivery attempts were made.
HEADER_ATTEMPTS = "x-cpcs-attempts"
#: Dead letters: when the message was dead-lettered (ISO 8601, UTC).
HEADER_FAILED_AT = "x-cpcs-failed-at"
#: Internal header: how many times in a row this copy waited out an outage (sets its back-off).
HEADER_OUTAGE_WAITS = "x-cpcs-outage-waits"

#: Every header the bus itself may set. Publishers may not use this prefix.
RESERVED_HEADER_PREFIX = "x-cpcs-"
#: Headers a handler never sees: they are folded into :class:`Envelope` fields.
HIDDEN_HEADERS = frozenset({HEADER_ATTEMPT, HEADER_ROUTING_KEY, HEADER_OUTAGE_WAITS})
#: Headers dropped when a dead letter is replayed (a replay is a fresh start).
DEAD_LETTER_HEADERS = frozenset(
    {HEADER_ERROR, HEADER_ATTEMPTS, HEADER_FAILED_AT, HEADER_ATTEMPT, HEADER_OUTAGE_WAITS}
)
#: Headers RabbitMQ adds when it dead-letters a message (through ``<queue>.retry``); the bus strips
#: them so that both transports show handlers the same headers and they do not pile up.
BROKER_HEADER_PREFIXES = ("x-death", "x-first-death-", "x-last-death-", "x-delivery-count")

#: Longest :data:`HEADER_ERROR` value, in characters.
MAX_ERROR_LENGTH = 1000
#: The topic exchange every CPCS message goes through.
DEFAULT_EXCHANGE = "cpcs"
DEFAULT_RETRY_BASE_S = 0.2
DEFAULT_RETRY_MAX_S = 30.0


@dataclass(frozen=True)
class Envelope:
    """One delivery of a message to a handler.

    ``attempt`` is 1 on the first delivery and grows by one on every retry after a failure.
    ``headers`` are the publisher's headers (plus, on dead letters, the ``x-cpcs-*`` failure
    headers); ``routing_key`` is always the key the message was originally published with.
    """

    message_id: str
    routing_key: str
    body: bytes
    headers: dict[str, str]
    attempt: int
    #: Outages this copy has waited out in a row (0 = none); they do not count as attempts.
    outage_waits: int = 0


Handler = Callable[[Envelope], None]


class MessagingError(Exception):
    """Base class of the errors the bus raises."""


class PublishError(MessagingError):
    """The broker did not confirm the message: it may not have been stored. Keep it and retry."""


class UnroutableError(PublishError):
    """No queue is bound to the routing key, so the message was dropped (``mandatory`` publish)."""


class TransientError(Exception):
    """Raised by a handler for a temporary failure (database down …): retry after a back-off.

    Any other exception except :class:`RejectMessage` is retried the same way; this class only
    documents intent and is logged without a traceback.
    """


class RejectMessage(Exception):
    """Raised by a handler for a message that can never succeed: dead-letter it at once."""


class Bus(abc.ABC):
    """A publish/subscribe message bus with at-least-once delivery (see the module docstring)."""

    @abc.abstractmethod
    def publish(
        self,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Publish a persistent message and return once the broker has confirmed it.

        Raises :class:`UnroutableError` when no queue is bound to ``routing_key`` (the message is
        dropped) and :class:`PublishError` when the broker could not be reached or refused it.
        Safe to call from several threads, with or without :meth:`start`.
        """

    @abc.abstractmethod
    def subscribe(
        self,
        queue: str,
        binding_keys: Sequence[str],
        handler: Handler,
        *,
        prefetch: int = 2,
        max_attempts: int = 5,
        concurrency: int = 1,
    ) -> None:
        """Declare ``queue`` (with ``<queue>.retry`` and ``<queue>.dead``), bind it, and consume it.

        ``binding_keys`` are AMQP topic patterns (``*`` = one word, ``#`` = zero or more words).
        Bindings accumulate: they are never removed by the bus. The queue keeps messages from
        now on even while no handler runs. ``concurrency`` handler threads run at once; at most
        ``max(prefetch, concurrency)`` messages are held unacknowledged. Consumption begins at
        :meth:`start` (immediately if the bus is already started).
        """

    @abc.abstractmethod
    def start(self) -> None:
        """Start consuming all subscriptions in background threads. Idempotent."""

    @abc.abstractmethod
    def stop(self, timeout: float = 10) -> None:
        """Stop consuming, wait up to ``timeout`` s for running handlers, then close.

        Messages whose handler did not finish in time are left unacknowledged and are
        redelivered (same attempt number) to the next subscriber. Subscriptions are forgotten:
        to consume again, call :meth:`subscribe` and :meth:`start` anew.
        """

    @abc.abstractmethod
    def dead_letters(self, queue: str) -> list[Envelope]:
        """Return (without removing them) the messages in ``<queue>.dead``, oldest first."""

    @abc.abstractmethod
    def replay_dead_letters(self, queue: str, message_ids: Sequence[str] | None = None) -> int:
        """Move dead letters back to ``queue`` (all, or those with the given ids); return how many.

        Replayed messages start again at attempt 1 and lose the ``x-cpcs-*`` failure headers.
        """

    @abc.abstractmethod
    def health(self) -> bool:
        """Whether the bus can currently publish (and, once started, consume)."""

    def queue_depth(self, queue: str) -> QueueDepth | None:
        """Messages in ``queue`` and its retry and dead companions; None if it is not declared."""
        return None


@dataclass(frozen=True)
class QueueDepth:
    """The messages of one consumer queue: waiting, waiting for a retry, dead-lettered (None: unknown)."""

    ready: int
    retrying: int | None
    dead: int


# --- rules shared by both transports -------------------------------------------------------------


def validate_publish(
    routing_key: str, body: bytes, message_id: str, headers: Mapping[str, str] | None
) -> None:
    """Reject malformed publish arguments early, identically in both transports."""
    if not isinstance(routing_key, str):
        raise TypeError("routing_key must be a str")
    if not isinstance(body, bytes | bytearray | memoryview):
        raise TypeError("body must be bytes")
    if not isinstance(message_id, str) or not message_id:
        raise ValueError("message_id must be a non-empty str")
    for key, value in (headers or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"header {key!r}: names and values must be str")
        if key.startswith(RESERVED_HEADER_PREFIX):
            raise ValueError(f"header {key!r}: the prefix {RESERVED_HEADER_PREFIX!r} is reserved")


def validate_subscription(
    queue: str, binding_keys: Sequence[str], *, prefetch: int, max_attempts: int, concurrency: int
) -> tuple[str, ...]:
    """Check subscribe() arguments; return the binding keys as a tuple."""
    if not isinstance(queue, str) or not queue or queue.startswith("amq."):
        raise ValueError(f"invalid queue name {queue!r}")
    if isinstance(binding_keys, str):
        raise TypeError("binding_keys must be a sequence of str, not a str")
    keys = tuple(binding_keys)
    if not all(isinstance(key, str) for key in keys):
        raise TypeError("binding keys must be str")
    if prefetch < 1 or max_attempts < 1 or concurrency < 1:
        raise ValueError("prefetch, max_attempts and concurrency must be >= 1")
    return keys


def retry_delay(attempt: int, base_s: float, max_s: float) -> float:
    """Back-off before delivery ``attempt + 1`` after delivery ``attempt`` failed."""
    if base_s <= 0:
        return 0.0
    exponent = min(attempt - 1, 64)  # keep 2 ** n finite
    return float(min(base_s * math.pow(2, exponent), max_s))


def describe_error(exc: BaseException) -> str:
    """``"<ExceptionType>: <message>"``, truncated to :data:`MAX_ERROR_LENGTH` characters."""
    kind = type(exc)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    text = f"{name}: {exc}"
    if len(text) > MAX_ERROR_LENGTH:
        text = text[: MAX_ERROR_LENGTH - 1] + "…"
    return text


def utc_now_iso() -> str:
    """The current time for :data:`HEADER_FAILED_AT`."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def is_broker_header(name: str) -> bool:
    """Whether ``name`` is a header RabbitMQ adds itself when dead-lettering."""
    return name.startswith(BROKER_HEADER_PREFIXES)


def header_text(value: Any) -> str | None:
    """A header value as str, or ``None`` for values that are not scalars (tables, lists)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, bool | int | float):
        return str(value)
    return None


def clean_headers(raw: Mapping[str, Any] | None) -> dict[str, str]:
    """Stored headers minus what the broker added, all values as str."""
    result: dict[str, str] = {}
    for key, value in (raw or {}).items():
        if is_broker_header(key):
            continue
        text = header_text(value)
        if text is not None:
            result[key] = text
    return result


def make_envelope(
    message_id: str, delivered_routing_key: str, body: bytes, raw: Mapping[str, Any] | None
) -> Envelope:
    """Build what a handler sees from a stored message and its (cleaned or raw) headers."""
    headers = clean_headers(raw)
    try:
        attempt = max(1, int(headers.get(HEADER_ATTEMPT, "1")))
    except ValueError:
        attempt = 1
    try:
        outage_waits = max(0, int(headers.get(HEADER_OUTAGE_WAITS, "0")))
    except ValueError:
        outage_waits = 0
    routing_key = headers.get(HEADER_ROUTING_KEY, delivered_routing_key)
    visible = {key: value for key, value in headers.items() if key not in HIDDEN_HEADERS}
    return Envelope(
        message_id=message_id,
        routing_key=routing_key,
        body=bytes(body),
        headers=visible,
        attempt=attempt,
        outage_waits=outage_waits,
    )


def retry_headers(
    raw: Mapping[str, Any] | None, envelope: Envelope, *, counts: bool = True
) -> dict[str, str]:
    """Headers of the copy sent back: for the next attempt, or (``counts=False``) the same one again."""
    headers = clean_headers(raw)
    if counts:
        headers[HEADER_ATTEMPT] = str(envelope.attempt + 1)
        headers.pop(HEADER_OUTAGE_WAITS, None)
    else:
        headers[HEADER_ATTEMPT] = str(envelope.attempt)
        headers[HEADER_OUTAGE_WAITS] = str(envelope.outage_waits + 1)
    headers[HEADER_ROUTING_KEY] = envelope.routing_key
    return headers


def dead_letter_headers(raw: Mapping[str, Any] | None, envelope: Envelope, error: str) -> dict[str, str]:
    """Headers of the copy parked in ``<queue>.dead``."""
    headers = clean_headers(raw)
    headers[HEADER_ATTEMPT] = str(envelope.attempt)
    headers[HEADER_ROUTING_KEY] = envelope.routing_key
    headers[HEADER_ERROR] = error
    headers[HEADER_ATTEMPTS] = str(envelope.attempt)
    headers[HEADER_FAILED_AT] = utc_now_iso()
    return headers


def dead_letter_envelope(
    message_id: str, delivered_routing_key: str, body: bytes, raw: Mapping[str, Any] | None
) -> Envelope:
    """A dead letter as :meth:`Bus.dead_letters` returns it (``attempt`` = attempts made)."""
    envelope = make_envelope(message_id, delivered_routing_key, body, raw)
    try:
        attempts = int(envelope.headers.get(HEADER_ATTEMPTS, str(envelope.attempt)))
    except ValueError:
        attempts = envelope.attempt
    return dataclasses.replace(envelope, attempt=attempts)


def replay_headers(raw: Mapping[str, Any] | None) -> dict[str, str]:
    """Headers of a replayed dead letter: failure bookkeeping removed, original key kept."""
    return {key: value for key, value in clean_headers(raw).items() if key not in DEAD_LETTER_HEADERS}


@dataclass(frozen=True)
class Outcome:
    """What to do with a delivery once its handler has run."""

    action: Literal["ack", "retry", "dead"]
    delay_s: float = 0.0
    error: str | None = None
    #: False for a retry after an outage: the attempt number stays.
    counts: bool = True


def run_handler(
    handler: Handler,
    envelope: Envelope,
    *,
    queue: str,
    max_attempts: int,
    retry_base_s: float,
    retry_max_s: float,
) -> Outcome:
    """Run ``handler`` on ``envelope`` and decide ack / retry / dead-letter; never raises."""
    started = time.monotonic()
    outcome = _handle(
        handler,
        envelope,
        queue=queue,
        max_attempts=max_attempts,
        retry_base_s=retry_base_s,
        retry_max_s=retry_max_s,
    )
    metrics.message_handled(queue, outcome.action, time.monotonic() - started)
    return outcome


def _handle(
    handler: Handler,
    envelope: Envelope,
    *,
    queue: str,
    max_attempts: int,
    retry_base_s: float,
    retry_max_s: float,
) -> Outcome:
    """Run ``handler`` on ``envelope`` and decide ack / retry / dead-letter; never raises."""
    context = {
        "queue": queue,
        "message_id": envelope.message_id,
        "routing_key": envelope.routing_key,
        "attempt": envelope.attempt,
    }
    started = time.monotonic()
    try:
        handler(envelope)
    except RejectMessage as exc:
        error = describe_error(exc)
        logger.error(
            "message %s on %s rejected by handler: dead-lettered (%s)",
            envelope.message_id,
            queue,
            error,
            extra={**context, "error": error},
        )
        return Outcome("dead", error=error)
    except BaseException as exc:  # a handler bug must not kill the worker thread
        error = describe_error(exc)
        if dependency_unavailable(exc):
            delay = retry_delay(envelope.outage_waits + 1, retry_base_s, retry_max_s)
            logger.warning(
                "message %s on %s: a dependency is unavailable (%s); attempt %d/%d not counted, "
                "waiting %.2fs",
                envelope.message_id,
                queue,
                error,
                envelope.attempt,
                max_attempts,
                delay,
                extra={**context, "error": error, "delay_s": delay},
            )
            return Outcome("retry", delay_s=delay, error=error, counts=False)
        transient = isinstance(exc, TransientError)
        if envelope.attempt >= max_attempts:
            logger.error(
                "message %s on %s failed attempt %d/%d: dead-lettered (%s)",
                envelope.message_id,
                queue,
                envelope.attempt,
                max_attempts,
                error,
                exc_info=None if transient else exc,
                extra={**context, "error": error},
            )
            return Outcome("dead", error=error)
        delay = retry_delay(envelope.attempt, retry_base_s, retry_max_s)
        logger.warning(
            "message %s on %s failed attempt %d/%d, retrying in %.2fs (%s)",
            envelope.message_id,
            queue,
            envelope.attempt,
            max_attempts,
            delay,
            error,
            exc_info=None if transient else exc,
            extra={**context, "error": error, "delay_s": delay},
        )
        return Outcome("retry", delay_s=delay, error=error)
    logger.debug(
        "message %s on %s handled in %.3fs",
        envelope.message_id,
        queue,
        time.monotonic() - started,
        extra=context,
    )
    return Outcome("ack")
