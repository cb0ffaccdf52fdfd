"""Pick the transport from a URL: ``create_bus(settings.broker_url)``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from cpcs.messaging.bus import DEFAULT_EXCHANGE, DEFAULT_RETRY_BASE_S, DEFAULT_RETRY_MAX_S, Bus

if TYPE_CHECKING:
    from cpcs.messaging.topology import Topology

logger = logging.getLogger(__name__)

MEMORY_URL = "memory://"


def create_bus(
    url: str | None,
    *,
    exchange: str = DEFAULT_EXCHANGE,
    retry_base_s: float = DEFAULT_RETRY_BASE_S,
    retry_max_s: float = DEFAULT_RETRY_MAX_S,
    name: str | None = None,
    topology: Topology | None = None,
) -> Bus:
    """A :class:`~cpcs.messaging.bus.Bus` for ``url``.

    ``None``, ``""`` or ``"memory://"`` give an :class:`~cpcs.messaging.memory.InProcessBus`;
    ``amqp://…`` / ``amqps://…`` give a :class:`~cpcs.messaging.rabbitmq.RabbitMqBus` (``name``
    labels its connections in RabbitMQ). ``exchange`` is configurable for test isolation;
    ``retry_base_s`` / ``retry_max_s`` set the retry back-off. ``topology`` (normally
    :data:`~cpcs.messaging.topology.CPCS_TOPOLOGY`) is declared up front, so messages for consumers
    that have not started yet are kept instead of being unroutable.
    """
    scheme = urlsplit(url).scheme.lower() if url else "memory"
    if not url or scheme == "memory":
        from cpcs.messaging.memory import InProcessBus

        logger.info("using the in-process message bus", extra={"exchange": exchange})
        return InProcessBus(
            exchange=exchange, retry_base_s=retry_base_s, retry_max_s=retry_max_s, topology=topology
        )
    if scheme in ("amqp", "amqps"):
        from cpcs.messaging.rabbitmq import RabbitMqBus

        logger.info(
            "using RabbitMQ at %s", urlsplit(url).hostname, extra={"exchange": exchange}
        )  # never log the URL itself: it holds the password
        return RabbitMqBus(
            url, exchange=exchange, retry_base_s=retry_base_s, retry_max_s=retry_max_s, name=name
        )
    raise ValueError(f"unsupported message bus URL scheme {scheme!r} (use memory:// or amqp://)")
