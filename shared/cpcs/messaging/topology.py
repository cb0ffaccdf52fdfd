"""The one place that says which exchanges, queues and bindings CPCS uses, and with what arguments.

For every consumer queue ``<q>`` there are three queues:

* ``<q>`` — durable, bound to the topic exchange (``cpcs``) with the consumer's binding keys;
  anything the broker itself dead-letters (a ``basic.reject`` without requeue from some other
  client) goes to the dead-letter exchange ``cpcs.dlx`` with routing key ``<q>``;
* ``<q>.retry`` — durable, bound to nothing: a failed message is published to it (through the
  default exchange) with a per-message ``expiration`` equal to its back-off, and when that
  expires RabbitMQ dead-letters it back to ``<q>`` through the default exchange;
* ``<q>.dead`` — durable, bound to ``cpcs.dlx`` with routing key ``<q>``: final failures.

:class:`cpcs.messaging.rabbitmq.RabbitMqBus` declares exactly this (idempotently) for each
subscription, and ``deploy/rabbitmq/definitions.json`` pre-declares :data:`CPCS_TOPOLOGY` so the
broker routes messages before the consumers have started. Regenerate the file after changing
this module::

    python -m cpcs.messaging.topology deploy/rabbitmq/definitions.json

(other sections of an existing file, e.g. ``users``, are kept; a test checks the rest matches.)
To declare it on a running broker through AMQP (idempotent, e.g. from a deployment job)::

    python -m cpcs.messaging.topology --declare "$CPCS_BROKER_URL"
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cpcs.messaging.bus import DEFAULT_EXCHANGE

#: Keys of a RabbitMQ definitions document that :meth:`Topology.to_definitions` owns.
TOPOLOGY_SECTIONS = ("vhosts", "exchanges", "queues", "bindings")


def dead_letter_exchange_name(exchange: str) -> str:
    """The dead-letter exchange that goes with ``exchange`` (``cpcs`` -> ``cpcs.dlx``)."""
    return f"{exchange}.dlx"


def retry_queue_name(queue: str) -> str:
    """Where failed messages of ``queue`` wait for their back-off."""
    return f"{queue}.retry"


def dead_queue_name(queue: str) -> str:
    """Where messages of ``queue`` that finally failed are parked."""
    return f"{queue}.dead"


@dataclass(frozen=True)
class ExchangeDecl:
    """A durable exchange."""

    name: str
    type: str


@dataclass(frozen=True)
class QueueDecl:
    """A durable classic queue with its ``x-`` arguments."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BindingDecl:
    """A binding of ``queue`` to ``exchange`` with a (topic or direct) ``routing_key``."""

    exchange: str
    queue: str
    routing_key: str


@dataclass(frozen=True)
class QueueSpec:
    """A consumer queue and the topic patterns it is bound with."""

    name: str
    binding_keys: tuple[str, ...]


@dataclass(frozen=True)
class Declarations:
    """Everything to declare, in a safe order (exchanges, then queues, then bindings)."""

    exchanges: tuple[ExchangeDecl, ...]
    queues: tuple[QueueDecl, ...]
    bindings: tuple[BindingDecl, ...]


@dataclass(frozen=True)
class Topology:
    """Consumer queues on one topic exchange, with their retry and dead-letter companions.

    ``unconsumed_events`` are routing keys published for whoever binds a queue to them (an operator's
    monitoring, an extension) that no queue of this topology consumes: an unroutable publish of one
    of them is expected, any other one means a consumer is missing.
    """

    exchange: str = DEFAULT_EXCHANGE
    queues: tuple[QueueSpec, ...] = ()
    unconsumed_events: tuple[str, ...] = ()

    def expects_unroutable(self, routing_key: str) -> bool:
        """Whether nobody consuming ``routing_key`` is by design (see ``unconsumed_events``)."""
        return routing_key in self.unconsumed_events

    @property
    def dead_letter_exchange(self) -> str:
        """Name of the dead-letter exchange (``<exchange>.dlx``)."""
        return dead_letter_exchange_name(self.exchange)

    def exchanges(self) -> tuple[ExchangeDecl, ...]:
        """The topic exchange and the direct dead-letter exchange."""
        return (ExchangeDecl(self.exchange, "topic"), ExchangeDecl(self.dead_letter_exchange, "direct"))

    def queue_declarations(self, spec: QueueSpec) -> tuple[tuple[QueueDecl, ...], tuple[BindingDecl, ...]]:
        """The three queues of one consumer and their bindings."""
        queue = spec.name
        queues = (
            QueueDecl(
                queue,
                {"x-dead-letter-exchange": self.dead_letter_exchange, "x-dead-letter-routing-key": queue},
            ),
            QueueDecl(
                retry_queue_name(queue),
                # expired retries go back to the consumer queue through the default exchange
                {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": queue},
            ),
            QueueDecl(dead_queue_name(queue)),
        )
        bindings = (
            *(BindingDecl(self.exchange, queue, key) for key in spec.binding_keys),
            BindingDecl(self.dead_letter_exchange, dead_queue_name(queue), queue),
        )
        return queues, bindings

    def declarations(self) -> Declarations:
        """Everything this topology declares."""
        queues: list[QueueDecl] = []
        bindings: list[BindingDecl] = []
        for spec in self.queues:
            spec_queues, spec_bindings = self.queue_declarations(spec)
            queues.extend(spec_queues)
            bindings.extend(spec_bindings)
        return Declarations(self.exchanges(), tuple(queues), tuple(bindings))

    def to_definitions(self, vhost: str = "/") -> dict[str, Any]:
        """The topology as the sections of a RabbitMQ definitions document."""
        decl = self.declarations()
        return {
            "vhosts": [{"name": vhost}],
            "exchanges": [
                {
                    "name": exchange.name,
                    "vhost": vhost,
                    "type": exchange.type,
                    "durable": True,
                    "auto_delete": False,
                    "internal": False,
                    "arguments": {},
                }
                for exchange in decl.exchanges
            ],
            "queues": [
                {
                    "name": queue.name,
                    "vhost": vhost,
                    "durable": True,
                    "auto_delete": False,
                    "arguments": dict(queue.arguments),
                }
                for queue in decl.queues
            ],
            "bindings": [
                {
                    "source": binding.exchange,
                    "vhost": vhost,
                    "destination": binding.queue,
                    "destination_type": "queue",
                    "routing_key": binding.routing_key,
                    "arguments": {},
                }
                for binding in decl.bindings
            ],
        }


#: The CPCS deployment: who consumes what.
CPCS_TOPOLOGY = Topology(
    exchange=DEFAULT_EXCHANGE,
    queues=(
        QueueSpec("calibrate", ("catalogue.received", "sources.measured")),
        QueueSpec("reduce", ("image.received",)),
        QueueSpec("catalog-cache", ("field.requested",)),
        QueueSpec("api", ("point.calibrated", "point.deleted")),
    ),
    # The observation's status already says it failed; the event is there for anyone who listens.
    unconsumed_events=("observation.failed",),
)


def binding_keys(queue: str, topology: Topology = CPCS_TOPOLOGY) -> tuple[str, ...]:
    """The routing keys a consumer queue of ``topology`` is bound with."""
    for spec in topology.queues:
        if spec.name == queue:
            return spec.binding_keys
    raise KeyError(f"no queue {queue!r} in the topology")


def render_definitions(topology: Topology, existing: dict[str, Any] | None = None, vhost: str = "/") -> str:
    """A definitions document for ``topology``, keeping any other sections of ``existing``."""
    document: dict[str, Any] = dict(existing or {})
    document.update(topology.to_definitions(vhost))
    return json.dumps(document, indent=2) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write (or print) the definitions file for :data:`CPCS_TOPOLOGY`, or declare it on a broker."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("path", nargs="?", help="definitions.json to rewrite (default: print it)")
    parser.add_argument(
        "--declare", metavar="AMQP_URL", help="declare the topology on this broker instead (idempotent)"
    )
    args = parser.parse_args(argv)
    if args.declare:
        from cpcs.messaging.rabbitmq import declare_topology_at

        declare_topology_at(args.declare, CPCS_TOPOLOGY)
        return 0
    if args.path is None:
        sys.stdout.write(render_definitions(CPCS_TOPOLOGY))
        return 0
    path = Path(args.path)
    existing = json.loads(path.read_text()) if path.exists() else None
    path.write_text(render_definitions(CPCS_TOPOLOGY, existing))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
