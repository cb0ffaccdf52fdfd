"""Fixtures of the messaging tests: one contract suite, run against both transports.

The RabbitMQ variants talk to a real broker at ``$CPCS_TEST_AMQP_URL`` (default: guest/guest on
127.0.0.1:5672). If it is unreachable they fail, never skip.
Every test uses its own exchange and queue names (a random prefix) and deletes them afterwards.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pika
import pika.exceptions
import pytest

from cpcs.messaging.bus import Bus, Envelope
from cpcs.messaging.memory import InProcessBus
from cpcs.messaging.rabbitmq import RabbitMqBus
from cpcs.messaging.topology import dead_letter_exchange_name, dead_queue_name, retry_queue_name

AMQP_URL = os.environ.get("CPCS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
#: Retry back-off base in tests: 20 ms, 40 ms, 80 ms … keeps the suite fast.
FAST_RETRY_S = 0.02


def _broker_problem(url: str) -> str | None:
    """``None`` if an AMQP connection to ``url`` can be opened, else why not."""
    parameters = pika.URLParameters(url)
    parameters.socket_timeout = 3
    parameters.connection_attempts = 1
    try:
        pika.BlockingConnection(parameters).close()
    except Exception as exc:
        return repr(exc)
    return None


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """The broker URL; the test fails when RabbitMQ cannot be reached (``make services`` starts it)."""
    problem = _broker_problem(AMQP_URL)
    if problem is not None:
        where = urlsplit(AMQP_URL).netloc.rpartition("@")[2]
        reason = f"RabbitMQ unreachable at {where}: {problem}"
        pytest.fail(f"{reason}; start it with `make services` or set CPCS_TEST_AMQP_URL")
    return AMQP_URL


class Transport:
    """Makes buses and queue names for one test, and cleans up after it."""

    def __init__(self, kind: str, url: str | None = None) -> None:
        self.kind = kind
        self.url = url
        self.prefix = f"cpcs-test-{uuid.uuid4().hex[:12]}"
        self.exchange = self.prefix if kind == "rabbitmq" else "cpcs"
        self.queues: list[str] = []
        self.buses: list[Bus] = []

    def queue(self, name: str) -> str:
        """A unique queue name for this test."""
        queue = f"{self.prefix}.{name}"
        self.queues.append(queue)
        return queue

    def bus(self, url: str | None = None, **kwargs: object) -> Bus:
        """A new bus of this transport (stopped at the end of the test)."""
        bus: Bus
        if self.kind == "memory":
            bus = InProcessBus(retry_base_s=FAST_RETRY_S, **kwargs)  # type: ignore[arg-type]
        else:
            options: dict[str, object] = {
                "exchange": self.exchange,
                "retry_base_s": FAST_RETRY_S,
                "name": self.prefix,
                "reconnect_delay_s": 0.1,
            }
            options.update(kwargs)
            bus = RabbitMqBus(url or self.url or AMQP_URL, **options)  # type: ignore[arg-type]
        self.buses.append(bus)
        return bus

    @contextlib.contextmanager
    def channel(self) -> Iterator[object]:
        """A raw pika channel on the test broker."""
        connection = pika.BlockingConnection(pika.URLParameters(self.url or AMQP_URL))
        try:
            yield connection.channel()
        finally:
            if connection.is_open:
                connection.close()

    def depth(self, bus: Bus, queue: str) -> int:
        """Messages ready in ``queue`` (neither in flight nor waiting for a retry)."""
        if isinstance(bus, InProcessBus):
            return bus._queue_depth(queue)
        with self.channel() as channel:
            return int(channel.queue_declare(queue, passive=True).method.message_count)  # type: ignore[attr-defined]

    def cleanup(self) -> None:
        for bus in self.buses:
            bus.stop(timeout=2)
        if self.kind != "rabbitmq":
            return
        with self.channel() as channel:
            for queue in self.queues:
                for name in (queue, retry_queue_name(queue), dead_queue_name(queue)):
                    channel.queue_delete(name)  # type: ignore[attr-defined]
            for exchange in (self.exchange, dead_letter_exchange_name(self.exchange)):
                channel.exchange_delete(exchange)  # type: ignore[attr-defined]


@pytest.fixture(params=["memory", "rabbitmq"])
def transport(request: pytest.FixtureRequest) -> Iterator[Transport]:
    """Each contract test runs once per transport."""
    url = request.getfixturevalue("amqp_url") if request.param == "rabbitmq" else None
    created = Transport(request.param, url)
    yield created
    created.cleanup()


@pytest.fixture
def rabbit(amqp_url: str) -> Iterator[Transport]:
    """For the RabbitMQ-only tests."""
    created = Transport("rabbitmq", amqp_url)
    yield created
    created.cleanup()


class Recorder:
    """A handler that records every envelope, then runs an optional behaviour (which may raise)."""

    def __init__(self, behaviour: Callable[[Envelope], None] | None = None) -> None:
        self.envelopes: list[Envelope] = []
        self.behaviour = behaviour
        self._cond = threading.Condition()

    def __call__(self, envelope: Envelope) -> None:
        with self._cond:
            self.envelopes.append(envelope)
            self._cond.notify_all()
        if self.behaviour is not None:
            self.behaviour(envelope)

    def wait(self, count: int, timeout: float = 10) -> list[Envelope]:
        """Wait until at least ``count`` envelopes arrived; return them all."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.envelopes) >= count, timeout):
                pytest.fail(f"expected {count} deliveries within {timeout}s, got {len(self.envelopes)}")
            return list(self.envelopes)

    def quiet(self, seconds: float, count: int) -> list[Envelope]:
        """Wait ``seconds`` and check that exactly ``count`` envelopes arrived in all."""
        time.sleep(seconds)
        with self._cond:
            assert len(self.envelopes) == count, [(e.message_id, e.attempt) for e in self.envelopes]
            return list(self.envelopes)


@pytest.fixture
def recorder() -> type[Recorder]:
    """The :class:`Recorder` class (tests are not importable modules)."""
    return Recorder


def _wait_until(predicate: Callable[[], bool], timeout: float = 10, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def wait_until() -> Callable[..., None]:
    """``wait_until(predicate, timeout=10, what="…")``: poll until true or fail."""
    return _wait_until
