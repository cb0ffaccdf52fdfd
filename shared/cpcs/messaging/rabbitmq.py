"""RabbitMQ transport (pika ``BlockingConnection``) for the :class:`~cpcs.messaging.bus.Bus` contract.

Connections and threads
-----------------------
* **Publisher connection** — one per bus, guarded by a lock (pika connections are not
  thread-safe), channel in publisher-confirm mode. :meth:`RabbitMqBus.publish` sends a persistent
  (``delivery_mode=2``), ``mandatory`` message and returns after the broker's ``basic.ack``. On
  a connection or channel failure it reconnects and retries ``publish_attempts`` times in all,
  then raises :class:`~cpcs.messaging.bus.PublishError`; an unroutable message raises
  :class:`~cpcs.messaging.bus.UnroutableError` at once. A daemon thread services the idle
  connection about once a second so heartbeats do not time it out. Subscriptions, dead-letter
  inspection and replays use short-lived connections of their own.
* **Consumer connection** — one per bus, owned by one I/O thread that only does pika work: it
  declares each subscription's queues (see :mod:`cpcs.messaging.topology`), sets ``basic_qos``,
  consumes with manual acks and hands deliveries to the subscription's ``concurrency`` worker
  threads. Handlers therefore never block the I/O thread, which keeps answering heartbeats
  however long a handler runs. A worker passes its outcome back with
  ``connection.add_callback_threadsafe``; the I/O thread then acks, or publishes the retry /
  dead-letter copy on a confirm-mode channel and acks the original once that copy is confirmed.
  (The pattern follows pika's ``basic_consumer_threaded.py`` example.)
* **Reconnection** — if the consumer connection is lost, the I/O thread reconnects with
  exponential back-off (``reconnect_delay_s`` … ``reconnect_max_delay_s``) and consumes again. The
  broker requeues whatever was unacknowledged on the lost connection; a handler that finishes
  after the loss has its ack dropped (the delivery tag belongs to a dead channel), so that message
  is handled again: at-least-once, never at-most-once.

Retries go through ``<queue>.retry`` with a per-message ``expiration`` (the back-off); RabbitMQ
dead-letters the expired copy back to ``<queue>``. Known limit of per-message TTL on a classic
queue: a copy expires only when it reaches the head of ``<queue>.retry``, so a short back-off
queued behind a long one waits for it (never shorter than asked, at most ``retry_max_s`` longer).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue as queue_module
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pika
import pika.exceptions

from cpcs.messaging.bus import (
    DEFAULT_EXCHANGE,
    DEFAULT_RETRY_BASE_S,
    DEFAULT_RETRY_MAX_S,
    Bus,
    Envelope,
    Handler,
    MessagingError,
    Outcome,
    PublishError,
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
from cpcs.messaging.topology import (
    QueueSpec,
    Topology,
    dead_letter_exchange_name,
    dead_queue_name,
    retry_queue_name,
)

logger = logging.getLogger(__name__)

PERSISTENT = 2
#: Seconds a connection may stay blocked by a broker alarm before pika gives up on it.
DEFAULT_BLOCKED_CONNECTION_TIMEOUT_S = 30.0
#: How long the I/O thread waits for socket events before looking at its own state again.
_POLL_S = 0.1
#: How often the idle publisher connection is serviced (heartbeats).
_KEEPALIVE_S = 1.0
#: Errors that mean "this connection or channel is gone; make a new one".
_LINK_ERRORS: tuple[type[BaseException], ...] = (pika.exceptions.AMQPError, OSError)

Channel = Any  # pika.adapters.blocking_connection.BlockingChannel (pika ships no type information)
Connection = Any  # pika.BlockingConnection


def declare_topology(channel: Channel, topology: Topology) -> None:
    """Declare ``topology`` on an open pika channel (idempotent; durable everything).

    A queue that already exists with other arguments makes RabbitMQ close the channel with
    ``PRECONDITION_FAILED`` (``pika.exceptions.ChannelClosedByBroker``).
    """
    declarations = topology.declarations()
    for exchange in declarations.exchanges:
        channel.exchange_declare(exchange=exchange.name, exchange_type=exchange.type, durable=True)
    for queue in declarations.queues:
        channel.queue_declare(queue=queue.name, durable=True, arguments=dict(queue.arguments) or None)
    for binding in declarations.bindings:
        channel.queue_bind(queue=binding.queue, exchange=binding.exchange, routing_key=binding.routing_key)


def declare_topology_at(url: str, topology: Topology) -> None:
    """Connect to ``url``, declare ``topology``, disconnect."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        declare_topology(connection.channel(), topology)
    finally:
        if connection.is_open:
            connection.close()
    logger.info(
        "declared exchange %s with %d consumer queue(s)",
        topology.exchange,
        len(topology.queues),
        extra={"exchange": topology.exchange},
    )


def _copy_properties(
    properties: Any, headers: Mapping[str, str], expiration: str | None = None
) -> pika.BasicProperties:
    """The properties of a retry / dead-letter / replay copy of a delivered message."""
    return pika.BasicProperties(
        content_type=properties.content_type,
        content_encoding=properties.content_encoding,
        correlation_id=properties.correlation_id,
        timestamp=properties.timestamp,
        type=properties.type,
        app_id=properties.app_id,
        message_id=properties.message_id,
        headers=dict(headers),
        delivery_mode=PERSISTENT,
        expiration=expiration,
    )


@dataclass(eq=False)
class _Subscription:
    queue: str
    binding_keys: tuple[str, ...]
    handler: Handler
    prefetch: int
    max_attempts: int
    concurrency: int
    work: queue_module.Queue[_Delivery | None] = field(default_factory=queue_module.Queue)
    threads: list[threading.Thread] = field(default_factory=list)
    # owned by the I/O thread:
    channel: Channel = None
    generation: int = 0
    consumer_tag: str | None = None

    @property
    def topology_spec(self) -> QueueSpec:
        return QueueSpec(self.queue, self.binding_keys)


@dataclass(eq=False)
class _Delivery:
    subscription: _Subscription
    generation: int
    channel: Channel
    delivery_tag: int
    properties: Any
    body: bytes
    envelope: Envelope
    handler_done: bool = False


class RabbitMqBus(Bus):
    """A :class:`Bus` on RabbitMQ (see the module docstring).

    ``url`` is an AMQP URL as pika's ``URLParameters`` reads it, e.g.
    ``amqp://guest:guest@rabbitmq:5672/%2F?heartbeat=30``. ``name`` shows up as the connection
    name in RabbitMQ's tools (``<name>:publisher``, ``<name>:consumer`` …). ``topology`` (e.g.
    :data:`~cpcs.messaging.topology.CPCS_TOPOLOGY`) is declared each time the publisher connects,
    so the consumer queues exist, and keep messages, before any consumer has started.
    """

    def __init__(
        self,
        url: str,
        *,
        exchange: str = DEFAULT_EXCHANGE,
        retry_base_s: float = DEFAULT_RETRY_BASE_S,
        retry_max_s: float = DEFAULT_RETRY_MAX_S,
        name: str | None = None,
        publish_attempts: int = 3,
        reconnect_delay_s: float = 0.5,
        reconnect_max_delay_s: float = 15.0,
        topology: Topology | None = None,
    ) -> None:
        if publish_attempts < 1:
            raise ValueError("publish_attempts must be >= 1")
        if topology is not None and topology.exchange != exchange:
            raise ValueError(f"topology is for exchange {topology.exchange!r}, not {exchange!r}")
        pika.URLParameters(url)  # fail early on a malformed URL
        self.url = url
        self.exchange = exchange
        self.dead_letter_exchange = dead_letter_exchange_name(exchange)
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.name = name or f"cpcs-{socket.gethostname()}-{os.getpid()}"
        self.publish_attempts = publish_attempts
        self.reconnect_delay_s = reconnect_delay_s
        self.reconnect_max_delay_s = reconnect_max_delay_s
        #: declared (idempotently) whenever the publisher connects: exchanges only by default
        self.topology = topology or Topology(exchange)

        # publisher side
        self._publish_lock = threading.Lock()
        self._publisher: Connection = None
        self._publisher_channel: Channel = None
        self._keepalive_stop: threading.Event | None = None

        # consumer side; everything below is guarded by _state_lock
        self._state_lock = threading.Lock()
        self._subscriptions: list[_Subscription] = []
        self._running = False
        self._stopping = threading.Event()
        self._stop_deadline = 0.0
        self._consumer_thread: threading.Thread | None = None
        self._connection: Connection = None  # the I/O thread's current connection
        self._generation = 0  # bumped at every consumer (re)connection
        self._connected = threading.Event()  # set while the consumer connection is consuming
        self._sessions_consuming = 0  # I/O thread only: sessions that got as far as consuming
        self._unsettled: set[_Delivery] = set()  # handler started, outcome not yet applied
        self._side_channel: Channel = None  # I/O thread only: confirm-mode channel for copies

    # --- connections -----------------------------------------------------------------------------

    def _parameters(self, role: str) -> pika.URLParameters:
        parameters = pika.URLParameters(self.url)
        given = parse_qs(urlsplit(self.url).query)
        if "blocked_connection_timeout" not in given:
            parameters.blocked_connection_timeout = DEFAULT_BLOCKED_CONNECTION_TIMEOUT_S
        properties = dict(parameters.client_properties or {})
        properties["connection_name"] = f"{self.name}:{role}"
        parameters.client_properties = properties
        return parameters

    def _connect(self, role: str) -> Connection:
        return pika.BlockingConnection(self._parameters(role))

    @contextlib.contextmanager
    def _short_lived_channel(self, role: str) -> Iterator[Channel]:
        """A fresh connection and channel, closed afterwards (unacked gets are requeued then)."""
        connection = self._connect(role)
        try:
            yield connection.channel()
        finally:
            with contextlib.suppress(*_LINK_ERRORS):
                if connection.is_open:
                    connection.close()

    # --- publishing ------------------------------------------------------------------------------

    def _open_publisher(self) -> Channel:
        """The publisher's confirm-mode channel, (re)connecting if needed. Hold the publish lock."""
        if (
            self._publisher is not None
            and self._publisher.is_open
            and self._publisher_channel is not None
            and self._publisher_channel.is_open
        ):
            return self._publisher_channel
        self._close_publisher()
        connection = self._connect("publisher")
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            declare_topology(channel, self.topology)  # at least the exchanges, so a publish can land
        except BaseException:
            with contextlib.suppress(*_LINK_ERRORS):
                connection.close()
            raise
        self._publisher, self._publisher_channel = connection, channel
        self._start_keepalive()
        logger.info("publisher connected to %s", self.exchange, extra={"exchange": self.exchange})
        return channel

    def _close_publisher(self) -> None:
        """Drop the publisher connection. Hold the publish lock."""
        connection, self._publisher, self._publisher_channel = self._publisher, None, None
        if connection is not None and connection.is_open:
            with contextlib.suppress(*_LINK_ERRORS):
                connection.close()

    def _start_keepalive(self) -> None:
        if self._keepalive_stop is not None:
            return
        stop = threading.Event()
        self._keepalive_stop = stop
        threading.Thread(target=self._keepalive, args=(stop,), name="cpcs-bus-keepalive", daemon=True).start()

    def _keepalive(self, stop: threading.Event) -> None:
        """Let the idle publisher connection answer heartbeats (it is only used under the lock)."""
        while not stop.wait(_KEEPALIVE_S):
            with self._publish_lock:
                if self._publisher is None or not self._publisher.is_open:
                    continue
                try:
                    self._publisher.process_data_events(0)
                except _LINK_ERRORS as exc:
                    logger.info("publisher connection lost (%r); will reconnect on next use", exc)
                    self._close_publisher()

    def publish(
        self,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Publish a persistent, mandatory message and wait for the broker's confirm."""
        validate_publish(routing_key, body, message_id, headers)
        properties = pika.BasicProperties(
            message_id=message_id, delivery_mode=PERSISTENT, headers=dict(headers or {})
        )
        context = {"message_id": message_id, "routing_key": routing_key, "exchange": self.exchange}
        last_error: BaseException | None = None
        for attempt in range(1, self.publish_attempts + 1):
            with self._publish_lock:
                try:
                    channel = self._open_publisher()
                    channel.basic_publish(self.exchange, routing_key, bytes(body), properties, mandatory=True)
                except pika.exceptions.UnroutableError:  # the publisher reports it
                    raise UnroutableError(
                        f"no queue is bound to routing key {routing_key!r} on {self.exchange!r}"
                    ) from None
                except _LINK_ERRORS as exc:
                    last_error = exc
                    self._close_publisher()
                else:
                    logger.debug("published %s to %s", message_id, routing_key, extra=context)
                    return
            if attempt < self.publish_attempts:
                delay = min(0.2 * 2 ** (attempt - 1), 2.0)
                logger.warning(
                    "publish of %s failed (%r), attempt %d/%d; retrying in %.1fs",
                    message_id,
                    last_error,
                    attempt,
                    self.publish_attempts,
                    delay,
                    extra=context,
                )
                time.sleep(delay)
        logger.error("publish of %s failed: %r", message_id, last_error, extra=context)
        raise PublishError(
            f"message {message_id} to {routing_key!r} not confirmed after "
            f"{self.publish_attempts} attempt(s): {last_error!r}"
        ) from last_error

    # --- subscribing -----------------------------------------------------------------------------

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
        """Declare ``queue`` now (if the broker is reachable) and consume it once started."""
        keys = validate_subscription(
            queue, binding_keys, prefetch=prefetch, max_attempts=max_attempts, concurrency=concurrency
        )
        subscription = _Subscription(queue, keys, handler, prefetch, max_attempts, concurrency)
        self._declare_now(subscription)
        with self._state_lock:
            self._subscriptions.append(subscription)
            connection = self._connection if self._running else None
            if self._running:
                self._start_workers(subscription)
        if connection is not None:
            with contextlib.suppress(pika.exceptions.ConnectionWrongStateError):
                # otherwise the next (re)connection sets it up
                connection.add_callback_threadsafe(partial(self._setup_subscription, subscription))
        logger.info(
            "subscribed %s to %s", queue, list(keys), extra={"queue": queue, "binding_keys": list(keys)}
        )

    def _declare_now(self, subscription: _Subscription) -> None:
        """Declare the subscription's queues so messages published from now on are kept."""
        topology = Topology(self.exchange, (subscription.topology_spec,))
        try:
            with self._short_lived_channel("setup") as channel:
                declare_topology(channel, topology)
        except pika.exceptions.ChannelClosedByBroker as exc:
            raise MessagingError(f"cannot declare queue {subscription.queue!r}: {exc}") from exc
        except _LINK_ERRORS as exc:
            logger.warning(
                "broker unreachable while subscribing %s (%r); it is declared when the consumer connects",
                subscription.queue,
                exc,
                extra={"queue": subscription.queue},
            )

    def start(self) -> None:
        """Start the consumer I/O thread and the handler threads. Idempotent."""
        with self._state_lock:
            if self._running:
                return
            self._running = True
            self._stopping = stopping = threading.Event()  # a fresh one: an old thread keeps its own
            for subscription in self._subscriptions:
                if not subscription.threads:
                    self._start_workers(subscription)
            thread = threading.Thread(
                target=self._consume_forever, args=(stopping,), name="cpcs-bus-consumer", daemon=True
            )
            self._consumer_thread = thread
        thread.start()

    def stop(self, timeout: float = 10) -> None:
        """Stop consuming, let running handlers finish (up to ``timeout`` s), close all connections."""
        deadline = time.monotonic() + timeout
        with self._state_lock:
            self._running = False
            self._stop_deadline = deadline
            self._stopping.set()
            thread, self._consumer_thread = self._consumer_thread, None
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()) + 5.0)
            if thread.is_alive():
                logger.error("consumer thread did not stop in time")
        with self._state_lock:
            subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            for _ in subscription.threads:
                subscription.work.put(None)
        for subscription in subscriptions:
            for worker in subscription.threads:
                if worker is not threading.current_thread():  # stop() called from a handler
                    worker.join(max(0.0, deadline - time.monotonic()))
        with self._state_lock:
            abandoned = sum(1 for delivery in self._unsettled if not delivery.handler_done)
        if abandoned:
            logger.warning(
                "stop(): %d handler(s) still running after %.1fs; their messages will be redelivered",
                abandoned,
                timeout,
            )
        with self._publish_lock:
            if self._keepalive_stop is not None:
                self._keepalive_stop.set()
                self._keepalive_stop = None
            self._close_publisher()

    def _start_workers(self, subscription: _Subscription) -> None:
        for index in range(subscription.concurrency):
            worker = threading.Thread(
                target=self._work,
                args=(subscription,),
                name=f"cpcs-bus-{subscription.queue}-{index}",
                daemon=True,
            )
            subscription.threads.append(worker)
            worker.start()

    # --- the I/O thread --------------------------------------------------------------------------

    def _consume_forever(self, stopping: threading.Event) -> None:
        delay = self.reconnect_delay_s
        while not stopping.is_set():
            sessions_before = self._sessions_consuming
            try:
                self._consume_session(stopping)
            except Exception as exc:
                if stopping.is_set():
                    logger.info("consumer connection ended while stopping: %r", exc)
                    break
                if self._sessions_consuming != sessions_before:
                    delay = self.reconnect_delay_s  # it had worked: start the back-off over
                logger.warning(
                    "consumer connection lost (%r); reconnecting in %.1fs",
                    exc,
                    delay,
                    exc_info=None if isinstance(exc, _LINK_ERRORS) else exc,
                    extra={"delay_s": delay},
                )
                stopping.wait(delay)
                delay = min(delay * 2, self.reconnect_max_delay_s)
        logger.info("consumer stopped")

    def _consume_session(self, stopping: threading.Event) -> None:
        """Connect, consume until told to stop (then drain), or raise when the connection fails."""
        connection = self._connect("consumer")
        try:
            with self._state_lock:
                self._generation += 1
                self._connection = connection
                self._unsettled = {d for d in self._unsettled if not d.handler_done}
                subscriptions = list(self._subscriptions)
            self._side_channel = None
            for subscription in subscriptions:
                self._setup_subscription(subscription)
            self._sessions_consuming += 1
            self._connected.set()
            logger.info(
                "consumer connected (session %d): %s",
                self._generation,
                [s.queue for s in subscriptions],
                extra={"session": self._generation},
            )
            while not stopping.is_set():
                connection.process_data_events(time_limit=_POLL_S)
                self._repair_subscriptions()
            self._drain(connection)
        finally:
            self._connected.clear()
            with self._state_lock:
                self._connection = None
            self._side_channel = None
            if connection.is_open:
                with contextlib.suppress(*_LINK_ERRORS):
                    connection.close()

    def _setup_subscription(self, subscription: _Subscription) -> None:
        """Open the subscription's channel on the current connection and start consuming. I/O thread."""
        with self._state_lock:
            connection, generation = self._connection, self._generation
            wanted = subscription in self._subscriptions and not self._stopping.is_set()
        if connection is None or not wanted or subscription.generation == generation:
            return
        channel = connection.channel()
        declare_topology(channel, Topology(self.exchange, (subscription.topology_spec,)))
        channel.basic_qos(prefetch_count=max(subscription.prefetch, subscription.concurrency))
        subscription.consumer_tag = channel.basic_consume(
            subscription.queue,
            on_message_callback=partial(self._on_message, subscription, generation),
            auto_ack=False,
        )
        subscription.channel, subscription.generation = channel, generation

    def _repair_subscriptions(self) -> None:
        """Re-open a channel the broker closed or a consumer it cancelled (e.g. queue deleted)."""
        with self._state_lock:
            subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            channel = subscription.channel
            if channel is not None and channel.is_open and subscription.consumer_tag in channel.consumer_tags:
                continue
            logger.warning(
                "consumer channel of %s lost; re-subscribing",
                subscription.queue,
                extra={"queue": subscription.queue},
            )
            if channel is not None and channel.is_open:
                with contextlib.suppress(pika.exceptions.AMQPChannelError):
                    channel.close()
            subscription.generation = 0
            self._setup_subscription(subscription)

    def _drain(self, connection: Connection) -> None:
        """Stop deliveries, then wait (until the stop deadline) for running handlers' outcomes."""
        with self._state_lock:
            subscriptions = list(self._subscriptions)
            generation = self._generation
        for subscription in subscriptions:
            channel = subscription.channel
            if channel is not None and channel.is_open and subscription.consumer_tag in channel.consumer_tags:
                with contextlib.suppress(pika.exceptions.AMQPChannelError):
                    channel.basic_cancel(subscription.consumer_tag)
        while time.monotonic() < self._stop_deadline:
            with self._state_lock:
                pending = any(d.generation == generation for d in self._unsettled)
            if not pending:
                break
            connection.process_data_events(time_limit=0.05)

    def _on_message(
        self,
        subscription: _Subscription,
        generation: int,
        channel: Channel,
        method: Any,
        properties: Any,
        body: bytes,
    ) -> None:
        """pika delivery callback (I/O thread): queue the message for a worker."""
        envelope = make_envelope(properties.message_id or "", method.routing_key, body, properties.headers)
        if method.redelivered:
            logger.info(
                "message %s on %s redelivered by the broker (attempt %d)",
                envelope.message_id,
                subscription.queue,
                envelope.attempt,
                extra={"queue": subscription.queue, "message_id": envelope.message_id},
            )
        subscription.work.put(
            _Delivery(subscription, generation, channel, method.delivery_tag, properties, body, envelope)
        )

    # --- the worker threads ----------------------------------------------------------------------

    def _work(self, subscription: _Subscription) -> None:
        while (delivery := subscription.work.get()) is not None:
            with self._state_lock:
                if self._stopping.is_set() or delivery.generation != self._generation:
                    continue  # never started: the broker requeues it when its channel closes
                self._unsettled.add(delivery)
            outcome = run_handler(
                subscription.handler,
                delivery.envelope,
                queue=subscription.queue,
                max_attempts=subscription.max_attempts,
                retry_base_s=self.retry_base_s,
                retry_max_s=self.retry_max_s,
            )
            self._hand_back(delivery, outcome)

    def _hand_back(self, delivery: _Delivery, outcome: Outcome) -> None:
        """Ask the I/O thread to apply ``outcome`` (acks must happen on the connection's thread)."""
        with self._state_lock:
            delivery.handler_done = True
            connection = self._connection if delivery.generation == self._generation else None
        if connection is not None:
            try:
                connection.add_callback_threadsafe(partial(self._settle, delivery, outcome))
                return
            except pika.exceptions.ConnectionWrongStateError:
                pass
        with self._state_lock:
            self._unsettled.discard(delivery)
        self._log_stale(delivery, outcome)

    def _log_stale(self, delivery: _Delivery, outcome: Outcome) -> None:
        logger.warning(
            "message %s on %s: connection lost while it was handled; outcome %s dropped, "
            "the broker redelivers it",
            delivery.envelope.message_id,
            delivery.subscription.queue,
            outcome.action,
            extra={"queue": delivery.subscription.queue, "message_id": delivery.envelope.message_id},
        )

    def _settle(self, delivery: _Delivery, outcome: Outcome) -> None:
        """Ack, or publish the retry / dead-letter copy and then ack. I/O thread."""
        with self._state_lock:
            self._unsettled.discard(delivery)
            current = delivery.generation == self._generation
        subscription, channel = delivery.subscription, delivery.channel
        if not current or channel is not subscription.channel or not channel.is_open:
            self._log_stale(delivery, outcome)
            return
        try:
            if outcome.action == "retry":
                expiration = str(max(0, round(outcome.delay_s * 1000)))
                self._publish_copy(
                    "",
                    retry_queue_name(subscription.queue),
                    delivery,
                    _copy_properties(
                        delivery.properties,
                        retry_headers(delivery.properties.headers, delivery.envelope, counts=outcome.counts),
                        expiration,
                    ),
                )
            elif outcome.action == "dead":
                self._publish_copy(
                    self.dead_letter_exchange,
                    subscription.queue,
                    delivery,
                    _copy_properties(
                        delivery.properties,
                        dead_letter_headers(
                            delivery.properties.headers, delivery.envelope, outcome.error or ""
                        ),
                    ),
                )
        except (pika.exceptions.AMQPChannelError, pika.exceptions.NackError) as exc:
            logger.error(
                "message %s on %s: could not store its %s copy (%r); requeued as is",
                delivery.envelope.message_id,
                subscription.queue,
                outcome.action,
                exc,
                extra={"queue": subscription.queue, "message_id": delivery.envelope.message_id},
            )
            with contextlib.suppress(pika.exceptions.AMQPChannelError):
                channel.basic_nack(delivery.delivery_tag, requeue=True)
            return
        try:
            channel.basic_ack(delivery.delivery_tag)
        except pika.exceptions.AMQPChannelError as exc:
            logger.warning("ack of %s failed (%r)", delivery.envelope.message_id, exc)

    def _publish_copy(self, exchange: str, routing_key: str, delivery: _Delivery, properties: Any) -> None:
        """Publish on the I/O thread's confirm channel and wait for the broker's confirm."""
        channel = self._side_channel
        if channel is None or not channel.is_open:
            with self._state_lock:
                connection = self._connection
            channel = connection.channel()
            channel.confirm_delivery()
            self._side_channel = channel
        channel.basic_publish(exchange, routing_key, delivery.body, properties, mandatory=True)

    # --- dead letters ----------------------------------------------------------------------------

    def _drain_gets(self, channel: Channel, queue: str) -> Iterator[tuple[Any, Any, bytes]]:
        """``basic_get`` everything in ``queue`` without acking (closing the channel requeues it)."""
        while True:
            method, properties, body = channel.basic_get(queue, auto_ack=False)
            if method is None:
                return
            yield method, properties, body

    def _admin(self, what: str, action: Callable[[Channel], Any]) -> Any:
        """Run ``action`` on a short-lived channel; map pika errors to :class:`MessagingError`."""
        try:
            with self._short_lived_channel("admin") as channel:
                return action(channel)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:  # the queue does not exist
                return None
            raise MessagingError(f"{what} failed: {exc!r}") from exc
        except _LINK_ERRORS as exc:
            raise MessagingError(f"{what} failed: {exc!r}") from exc

    def queue_depth(self, queue: str) -> QueueDepth | None:
        """Passive declarations of the three queues (a message being handled is not counted)."""

        def count(channel: Channel) -> QueueDepth:
            ready, retrying, dead = (
                int(channel.queue_declare(name, passive=True).method.message_count)
                for name in (queue, retry_queue_name(queue), dead_queue_name(queue))
            )
            return QueueDepth(ready=ready, retrying=retrying, dead=dead)

        depth: QueueDepth | None = self._admin(f"counting {queue}", count)
        return depth

    def dead_letters(self, queue: str) -> list[Envelope]:
        """Read ``<queue>.dead`` without removing anything (messages are requeued in order)."""
        dead = dead_queue_name(queue)

        def read(channel: Channel) -> list[Envelope]:
            channel.queue_declare(dead, passive=True)
            return [
                dead_letter_envelope(
                    properties.message_id or "", method.routing_key, body, properties.headers
                )
                for method, properties, body in self._drain_gets(channel, dead)
            ]

        return self._admin(f"reading {dead}", read) or []

    def replay_dead_letters(self, queue: str, message_ids: Sequence[str] | None = None) -> int:
        """Republish dead letters straight to ``queue`` (attempt 1), acking each once confirmed."""
        dead = dead_queue_name(queue)
        wanted = None if message_ids is None else set(message_ids)

        def replay(channel: Channel) -> int:
            channel.queue_declare(dead, passive=True)
            channel.confirm_delivery()
            moved = 0
            for method, properties, body in self._drain_gets(channel, dead):
                if wanted is not None and properties.message_id not in wanted:
                    continue
                channel.basic_publish(
                    "",
                    queue,
                    body,
                    _copy_properties(properties, replay_headers(properties.headers)),
                    mandatory=True,
                )
                channel.basic_ack(method.delivery_tag)
                moved += 1
            return moved

        moved = int(self._admin(f"replaying {dead}", replay) or 0)
        logger.info("replayed %d dead letter(s) to %s", moved, queue, extra={"queue": queue, "count": moved})
        return moved

    # --- health ----------------------------------------------------------------------------------

    def health(self) -> bool:
        """True if the publisher can reach the broker and, once started, the consumer is connected."""
        if not self._publish_lock.acquire(timeout=5):
            return False
        try:
            self._open_publisher()
            publisher_ok = True
        except _LINK_ERRORS as exc:
            logger.warning("health: broker unreachable (%r)", exc)
            self._close_publisher()
            publisher_ok = False
        finally:
            self._publish_lock.release()
        with self._state_lock:
            running = self._running
        return publisher_ok and (not running or self._connected.is_set())

    # --- test hooks ------------------------------------------------------------------------------

    @staticmethod
    def _cut(connection: Connection) -> None:
        """Shut the connection's socket down under pika's feet, as a network failure would."""
        if connection is None:
            raise RuntimeError("not connected")
        connection._impl._transport._sock.shutdown(socket.SHUT_RDWR)

    def _sever_consumer_connection(self) -> None:
        """Cut the consumer connection (tests only)."""
        with self._state_lock:
            connection = self._connection
        self._cut(connection)

    def _sever_publisher_connection(self) -> None:
        """Cut the publisher connection (tests only)."""
        with self._publish_lock:
            self._cut(self._publisher)

    @property
    def _sessions(self) -> int:
        """How many consumer connections were opened so far (tests)."""
        return self._generation
