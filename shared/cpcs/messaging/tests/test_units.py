"""Pure functions and the factory (no broker needed)."""

from __future__ import annotations

import pytest

from cpcs.messaging import create_bus
from cpcs.messaging.bus import (
    HEADER_ATTEMPT,
    HEADER_ROUTING_KEY,
    MAX_ERROR_LENGTH,
    describe_error,
    make_envelope,
    retry_delay,
)
from cpcs.messaging.memory import InProcessBus, topic_matches
from cpcs.messaging.rabbitmq import RabbitMqBus


@pytest.mark.parametrize(
    ("binding", "key", "expected"),
    [
        ("catalogue.received", "catalogue.received", True),
        ("catalogue.received", "catalogue.receive", False),
        ("catalogue.*", "catalogue.received", True),
        ("catalogue.*", "catalogue", False),
        ("catalogue.*", "catalogue.received.x", False),
        ("*.measured", "sources.measured", True),
        ("*", "", False),
        ("#", "", True),
        ("#", "a.b.c", True),
        ("a.#", "a", True),
        ("a.#", "a.b.c", True),
        ("a.#", "ab", False),
        ("#.c", "c", True),
        ("#.c", "a.b.c", True),
        ("a.#.c", "a.c", True),
        ("a.#.c", "a.x.y.c", True),
        ("a.#.c", "a.x.y", False),
        ("a.*.#", "a", False),
        ("a.*.#", "a.b", True),
        ("#.#", "a", True),
        ("", "", True),
        ("", "a", False),
    ],
)
def test_topic_matches_like_amqp(binding, key, expected):
    assert topic_matches(binding, key) is expected


def test_retry_delay_doubles_and_is_capped():
    assert [retry_delay(n, 0.2, 30) for n in (1, 2, 3, 4)] == [0.2, 0.4, 0.8, 1.6]
    assert retry_delay(20, 0.2, 30) == 30
    assert retry_delay(10_000, 0.2, 30) == 30
    assert retry_delay(3, 0, 30) == 0


def test_describe_error_names_the_type_and_truncates():
    assert describe_error(KeyError("k")) == "KeyError: 'k'"
    long = describe_error(ValueError("x" * 5000))
    assert len(long) == MAX_ERROR_LENGTH and long.startswith("ValueError: xxx")


def test_envelope_hides_bus_headers_and_strips_broker_ones():
    envelope = make_envelope(
        "m",
        "calibrate",  # as delivered from the retry queue
        b"",
        {
            HEADER_ATTEMPT: 3,
            HEADER_ROUTING_KEY: b"sources.measured",
            "x-death": [{"count": 1}],
            "x-first-death-queue": "calibrate.retry",
            "trace": "t",
        },
    )
    assert (envelope.attempt, envelope.routing_key, envelope.headers) == (
        3,
        "sources.measured",
        {"trace": "t"},
    )


def test_create_bus_picks_the_transport():
    assert isinstance(create_bus(None), InProcessBus)
    assert isinstance(create_bus("memory://"), InProcessBus)
    bus = create_bus("amqp://guest:guest@127.0.0.1:5672/%2F", exchange="x", retry_base_s=0.01)
    assert isinstance(bus, RabbitMqBus)  # lazy: nothing connects until used
    assert (bus.exchange, bus.dead_letter_exchange, bus.retry_base_s) == ("x", "x.dlx", 0.01)
    with pytest.raises(ValueError, match="scheme"):
        create_bus("kafka://broker")
