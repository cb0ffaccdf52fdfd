"""In-process transport: the :class:`~cpcs.messaging.bus.Bus` contract with threads and deques.

Meant for tests and single-process runs. It mirrors the RabbitMQ transport rule for rule (the
same contract suite runs against both):

* topic routing with AMQP ``*`` / ``#`` wildcards (:func:`topic_matches`); a message matching
  several bindings of one queue is stored once in that queue;
* a queue exists from the first :meth:`InProcessBus.subscribe` on; it keeps messages while no
  handler runs (before :meth:`~InProcessBus.start`, after :meth:`~InProcessBus.stop`); publishing
  a key no queue is bound to raises :class:`~cpcs.messaging.bus.UnroutableError` and drops it;
* per subscription, ``concurrency`` worker threads take one message each; ``prefetch`` has no
  effect here (there is no network to hide);
* retries wait in a per-queue delay heap (the analogue of ``<queue>.retry``), final failures in
  a per-queue list (``<queue>.dead``);
* :meth:`~InProcessBus.stop` waits for running handlers up to its timeout; a message whose handler
  is still running then is put back at the head of its queue, unacknowledged, exactly as RabbitMQ
  requeues the unacknowledged messages of a closed channel. A new subscriber on the *same*
  ``InProcessBus`` instance receives it again (same attempt number); whatever the late handler
  eventually returns is ignored. Nothing survives the process: this transport is not durable.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING

from cpcs.messaging.bus import (
    DEFAULT_EXCHANGE,
    DEFAULT_RETRY_BASE_S,
    DEFAULT_RETRY_MAX_S,
    Bus,
    Envelope,
    Handler,
    QueueDepth,
    UnroutableError,
    dead_letter_envelope,
    dead_letter_headers,
    make_envelope,
    replay_headers,
    retry_headers,
    run_handler,
    validate_publish,
    validate_subscription,
)

if TYPE_CHECKING:
    from cpcs.messaging.topology import Topology

logger = logging.getLogger(__name__)

#: Longest a worker sleeps without re-checking its queue (a safety net; normally it is notified).
_MAX_WAIT_S = 1.0


def _words(key: str) -> tuple[str, ...]:
    """Split a routing or binding key into words the way RabbitMQ does (``""`` has no words)."""
    return tuple(key.split(".")) if key else ()


def topic_matches(binding_key: str, routing_key: str) -> bool:
    """Whether ``routing_key`` matches the AMQP topic pattern ``binding_key``.

    ``*`` stands for exactly one word, ``#`` for zero or more words; words are separated by dots.
    """
    pattern, words = _words(binding_key), _words(routing_key)

    @cache
    def match(i: int, j: int) -> bool:
        if i == len(pattern):
            return j == len(words)
        if pattern[i] == "#":
            return match(i + 1, j) or (j < len(words) and match(i, j + 1))
        if j == len(words):
            return False
        return (pattern[i] == "*" or pattern[i] == words[j]) and match(i + 1, j + 1)

    return match(0, 0)


@dataclass
class _Message:
    """A message as stored in a queue (``headers`` include the bus's hidden headers)."""

    seq: int
    message_id: str
    routing_key: str
    body: bytes
    headers: dict[str, str]


@dataclass
class _Queue:
    name: str
    bindings: list[str] = field(default_factory=list)
    ready: deque[_Message] = field(default_factory=deque)
    delayed: list[tuple[float, int, _Message]] = field(default_factory=list)  # heap: (due, seq, msg)
    dead: list[_Message] = field(default_factory=list)


@dataclass(eq=False)
class _Delivery:
    message: _Message
    stale: bool = False  # set when stop() gave up on the handler and requeued the message


@dataclass(eq=False)
class _Subscription:
    queue: _Queue
    handler: Handler
    max_attempts: int
    concurrency: int
    stopping: bool = False
    threads: list[threading.Thread] = field(default_factory=list)
    in_flight: set[_Delivery] = field(default_factory=set)


class InProcessBus(Bus):
    """A :class:`Bus` living inside one process (see the module docstring)."""

    def __init__(
        self,
        *,
        exchange: str = DEFAULT_EXCHANGE,
        retry_base_s: float = DEFAULT_RETRY_BASE_S,
        retry_max_s: float = DEFAULT_RETRY_MAX_S,
        topology: Topology | None = None,
    ) -> None:
        """``topology``, if given, is declared at once: its queues keep messages from the start."""
        if topology is not None and topology.exchange != exchange:
            raise ValueError(f"topology is for exchange {topology.exchange!r}, not {exchange!r}")
        self.exchange = exchange
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self._cond = threading.Condition()
        self._queues: dict[str, _Queue] = {}
        self._subscriptions: list[_Subscription] = []
        self._running = False
        self._seq = itertools.count()
        for spec in topology.queues if topology else ():
            self._declare(spec.name, spec.binding_keys)

    # --- publishing ------------------------------------------------------------------------------

    def publish(
        self,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Store the message in every queue bound to ``routing_key`` (see :meth:`Bus.publish`)."""
        validate_publish(routing_key, body, message_id, headers)
        with self._cond:
            targets = [
                queue
                for queue in self._queues.values()
                if any(topic_matches(binding, routing_key) for binding in queue.bindings)
            ]
            if not targets:  # the publisher reports it (it knows whether that was expected)
                raise UnroutableError(
                    f"no queue is bound to routing key {routing_key!r} on {self.exchange!r}"
                )
            for queue in targets:
                queue.ready.append(
                    _Message(next(self._seq), message_id, routing_key, bytes(body), dict(headers or {}))
                )
            self._cond.notify_all()
        logger.debug(
            "published %s to %s",
            message_id,
            routing_key,
            extra={"message_id": message_id, "routing_key": routing_key},
        )

    # --- consuming -------------------------------------------------------------------------------

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
        """Declare and bind ``queue`` now; consume it from :meth:`start` on (see :meth:`Bus.subscribe`)."""
        keys = validate_subscription(
            queue, binding_keys, prefetch=prefetch, max_attempts=max_attempts, concurrency=concurrency
        )
        with self._cond:
            stored = self._declare(queue, keys)
            subscription = _Subscription(stored, handler, max_attempts, concurrency)
            self._subscriptions.append(subscription)
            if self._running:
                self._start_workers(subscription)
        logger.info(
            "subscribed %s to %s", queue, list(keys), extra={"queue": queue, "binding_keys": list(keys)}
        )

    def _declare(self, queue: str, binding_keys: Sequence[str]) -> _Queue:
        """Create ``queue`` if needed and add the bindings it lacks."""
        with self._cond:
            stored = self._queues.setdefault(queue, _Queue(queue))
            for key in binding_keys:
                if key not in stored.bindings:
                    stored.bindings.append(key)
            return stored

    def start(self) -> None:
        """Start the worker threads of every subscription."""
        with self._cond:
            self._running = True
            for subscription in self._subscriptions:
                if not subscription.threads:
                    self._start_workers(subscription)

    def stop(self, timeout: float = 10) -> None:
        """Stop the workers; requeue what is still being handled after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            subscriptions, self._subscriptions = self._subscriptions, []
            self._running = False
            for subscription in subscriptions:
                subscription.stopping = True
            self._cond.notify_all()
        for subscription in subscriptions:
            for thread in subscription.threads:
                if thread is not threading.current_thread():  # stop() called from a handler
                    thread.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            for subscription in subscriptions:
                abandoned = sorted(subscription.in_flight, key=lambda d: d.message.seq, reverse=True)
                for delivery in abandoned:
                    delivery.stale = True
                    subscription.queue.ready.appendleft(delivery.message)
                subscription.in_flight.clear()
                if abandoned:
                    logger.warning(
                        "stop(): %d handler(s) on %s still running after %.1fs; their messages are requeued",
                        len(abandoned),
                        subscription.queue.name,
                        timeout,
                        extra={"queue": subscription.queue.name, "count": len(abandoned)},
                    )
            self._cond.notify_all()

    def _start_workers(self, subscription: _Subscription) -> None:
        for index in range(subscription.concurrency):
            thread = threading.Thread(
                target=self._work,
                args=(subscription,),
                name=f"cpcs-bus-{subscription.queue.name}-{index}",
                daemon=True,
            )
            subscription.threads.append(thread)
            thread.start()

    def _next_delivery(self, subscription: _Subscription) -> _Delivery | None:
        """Wait for a message of the subscription's queue; ``None`` once the subscription stops."""
        queue = subscription.queue
        with self._cond:
            while not subscription.stopping:
                now = time.monotonic()
                while queue.delayed and queue.delayed[0][0] <= now:
                    queue.ready.append(heapq.heappop(queue.delayed)[2])
                if queue.ready:
                    delivery = _Delivery(queue.ready.popleft())
                    subscription.in_flight.add(delivery)
                    return delivery
                wait = _MAX_WAIT_S
                if queue.delayed:
                    wait = min(wait, max(0.0, queue.delayed[0][0] - now))
                self._cond.wait(wait)
        return None

    def _work(self, subscription: _Subscription) -> None:
        queue = subscription.queue
        while (delivery := self._next_delivery(subscription)) is not None:
            message = delivery.message
            envelope = make_envelope(message.message_id, message.routing_key, message.body, message.headers)
            outcome = run_handler(
                subscription.handler,
                envelope,
                queue=queue.name,
                max_attempts=subscription.max_attempts,
                retry_base_s=self.retry_base_s,
                retry_max_s=self.retry_max_s,
            )
            with self._cond:
                if delivery.stale:
                    logger.warning(
                        "message %s on %s: handler finished after stop(); outcome %s ignored, "
                        "the message was requeued",
                        message.message_id,
                        queue.name,
                        outcome.action,
                        extra={"queue": queue.name, "message_id": message.message_id},
                    )
                    continue
                subscription.in_flight.discard(delivery)
                if outcome.action == "retry":
                    copy = _Message(
                        next(self._seq),
                        message.message_id,
                        message.routing_key,
                        message.body,
                        retry_headers(message.headers, envelope, counts=outcome.counts),
                    )
                    heapq.heappush(queue.delayed, (time.monotonic() + outcome.delay_s, copy.seq, copy))
                elif outcome.action == "dead":
                    queue.dead.append(
                        _Message(
                            next(self._seq),
                            message.message_id,
                            message.routing_key,
                            message.body,
                            dead_letter_headers(message.headers, envelope, outcome.error or ""),
                        )
                    )
                self._cond.notify_all()

    # --- dead letters ----------------------------------------------------------------------------

    def dead_letters(self, queue: str) -> list[Envelope]:
        """The messages parked for ``queue``, oldest first (they stay parked)."""
        with self._cond:
            stored = self._queues.get(queue)
            dead = list(stored.dead) if stored else []
        return [dead_letter_envelope(m.message_id, m.routing_key, m.body, m.headers) for m in dead]

    def replay_dead_letters(self, queue: str, message_ids: Sequence[str] | None = None) -> int:
        """Move dead letters back to the tail of ``queue``; return how many moved."""
        wanted = None if message_ids is None else set(message_ids)
        with self._cond:
            stored = self._queues.get(queue)
            if stored is None:
                return 0
            keep: list[_Message] = []
            moved = 0
            for message in stored.dead:
                if wanted is None or message.message_id in wanted:
                    stored.ready.append(
                        _Message(
                            next(self._seq),
                            message.message_id,
                            message.routing_key,
                            message.body,
                            replay_headers(message.headers),
                        )
                    )
                    moved += 1
                else:
                    keep.append(message)
            stored.dead = keep
            self._cond.notify_all()
        logger.info("replayed %d dead letter(s) to %s", moved, queue, extra={"queue": queue, "count": moved})
        return moved

    def health(self) -> bool:
        """Always true: there is nothing to lose contact with."""
        return True

    def queue_depth(self, queue: str) -> QueueDepth | None:
        with self._cond:
            stored = self._queues.get(queue)
            if stored is None:
                return None
            return QueueDepth(ready=len(stored.ready), retrying=len(stored.delayed), dead=len(stored.dead))

    def _queue_depth(self, queue: str) -> int:
        """Messages ready in ``queue`` (not in flight, not waiting for a retry); for tests."""
        with self._cond:
            stored = self._queues.get(queue)
            return len(stored.ready) if stored else 0
