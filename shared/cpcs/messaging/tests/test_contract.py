"""The bus contract: every test here runs against the in-process bus AND a real RabbitMQ."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy.exc

from cpcs.messaging.bus import (
    HEADER_ATTEMPTS,
    HEADER_ERROR,
    HEADER_FAILED_AT,
    Envelope,
    RejectMessage,
    TransientError,
    UnroutableError,
)
from cpcs.messaging.topology import QueueSpec, Topology
from cpcs.outage import DependencyUnavailable


def keys_of(envelopes: list[Envelope]) -> list[str]:
    return sorted(e.routing_key for e in envelopes)


def test_routes_by_binding_keys_with_wildcards(transport, recorder):
    bus = transport.bus()
    one_word, any_prefix, any_suffix, exact = recorder(), recorder(), recorder(), recorder()
    bus.subscribe(transport.queue("one-word"), ["catalogue.*"], one_word)
    bus.subscribe(transport.queue("any-prefix"), ["#.measured"], any_prefix)
    bus.subscribe(transport.queue("any-suffix"), ["point.#"], any_suffix)
    bus.subscribe(transport.queue("exact"), ["field.requested"], exact)
    bus.start()
    for key in [
        "catalogue.received",  # one-word
        "sources.measured",  # any-prefix
        "measured",  # any-prefix: # may stand for zero words
        "point",  # any-suffix: zero words after "point"
        "point.calibrated.v2",  # any-suffix
        "field.requested",  # exact
    ]:
        bus.publish(key, b"{}", message_id=key)
    with pytest.raises(UnroutableError):
        bus.publish("catalogue.received.late", b"{}", message_id="late")  # * is exactly one word
    assert keys_of(one_word.wait(1)) == ["catalogue.received"]
    assert keys_of(any_prefix.wait(2)) == ["measured", "sources.measured"]
    assert keys_of(any_suffix.wait(2)) == ["point", "point.calibrated.v2"]
    assert keys_of(exact.wait(1)) == ["field.requested"]
    for handler, count in ((one_word, 1), (any_prefix, 2), (any_suffix, 2), (exact, 1)):
        handler.quiet(0.1, count)


def test_fans_out_to_every_bound_queue_once(transport, recorder):
    bus = transport.bus()
    calibrate, api = recorder(), recorder()
    # two bindings of one queue match the key: the queue still gets one copy
    bus.subscribe(transport.queue("calibrate"), ["sources.measured", "sources.*"], calibrate)
    bus.subscribe(transport.queue("api"), ["#"], api)
    bus.start()
    bus.publish("sources.measured", b'{"id": 1}', message_id="m-1", headers={"trace": "abc"})
    for handler in (calibrate, api):
        (envelope,) = handler.wait(1)
        assert envelope == Envelope("m-1", "sources.measured", b'{"id": 1}', {"trace": "abc"}, 1)
    calibrate.quiet(0.2, 1)
    api.quiet(0, 1)


def test_unbound_key_is_dropped_but_a_declared_queue_keeps_messages(transport, recorder):
    bus = transport.bus()
    with pytest.raises(UnroutableError):
        bus.publish("image.received", b"early", message_id="early")  # no queue yet: dropped
    handler = recorder()
    queue = transport.queue("reduce")
    bus.subscribe(queue, ["image.received"], handler)  # declares the queue; not consuming yet
    bus.publish("image.received", b"kept", message_id="kept")  # returns once stored (confirmed)
    assert transport.depth(bus, queue) == 1
    time.sleep(0.1)
    assert handler.envelopes == []
    bus.start()
    assert [e.body for e in handler.wait(1)] == [b"kept"]
    handler.quiet(0.2, 1)


def test_a_declared_topology_keeps_messages_before_any_subscriber(transport, recorder):
    queue = transport.queue("calibrate")
    topology = Topology(transport.exchange, (QueueSpec(queue, ("catalogue.*",)),))
    bus = transport.bus(topology=topology)
    bus.publish("catalogue.received", b"c", message_id="c-1")  # no subscriber yet: kept, not unroutable
    assert transport.depth(bus, queue) == 1
    handler = recorder()
    bus.subscribe(queue, ["catalogue.*"], handler)
    bus.start()
    assert [e.message_id for e in handler.wait(1)] == ["c-1"]
    with pytest.raises(ValueError):
        transport.bus(topology=Topology("another-exchange"))


def test_acked_after_success_and_not_redelivered(transport, recorder):
    bus = transport.bus()
    queue = transport.queue("api")
    handler = recorder()
    bus.subscribe(queue, ["point.calibrated"], handler)
    bus.start()
    bus.publish("point.calibrated", b"p", message_id="p-1")
    handler.wait(1)
    bus.stop()
    assert transport.depth(bus, queue) == 0
    again = recorder()
    bus.subscribe(queue, ["point.calibrated"], again)  # a fresh consumer sees nothing
    bus.start()
    again.quiet(0.3, 0)
    assert bus.dead_letters(queue) == []


def test_retry_after_failures_then_success(transport, recorder):
    bus = transport.bus()
    queue = transport.queue("calibrate")

    def flaky(envelope: Envelope) -> None:
        if envelope.attempt == 1:
            raise TransientError("database is down")
        if envelope.attempt == 2:
            raise OSError("still down")

    handler = recorder(flaky)
    bus.subscribe(queue, ["catalogue.received"], handler, max_attempts=5)
    bus.start()
    bus.publish("catalogue.received", b"c", message_id="c-1", headers={"origin": "ingest"})
    envelopes = handler.wait(3)
    assert [e.attempt for e in envelopes] == [1, 2, 3]
    for envelope in envelopes:  # retried copies look exactly like the original to the handler
        assert (envelope.message_id, envelope.routing_key, envelope.body) == (
            "c-1",
            "catalogue.received",
            b"c",
        )
        assert envelope.headers == {"origin": "ingest"}
    handler.quiet(0.3, 3)
    assert bus.dead_letters(queue) == []


def test_dead_letter_after_max_attempts_with_error_headers(transport, recorder):
    bus = transport.bus()
    queue = transport.queue("calibrate")

    def broken(envelope: Envelope) -> None:
        raise ValueError(f"cannot parse attempt {envelope.attempt}")

    handler = recorder(broken)
    bus.subscribe(queue, ["sources.measured"], handler, max_attempts=3)
    bus.start()
    bus.publish("sources.measured", b"bad", message_id="s-1", headers={"origin": "reduce"})
    assert [e.attempt for e in handler.wait(3)] == [1, 2, 3]
    handler.quiet(0.3, 3)
    (dead,) = bus.dead_letters(queue)
    assert (dead.message_id, dead.routing_key, dead.body, dead.attempt) == (
        "s-1",
        "sources.measured",
        b"bad",
        3,
    )
    assert dead.headers[HEADER_ERROR] == "ValueError: cannot parse attempt 3"
    assert dead.headers[HEADER_ATTEMPTS] == "3"
    assert dead.headers["origin"] == "reduce"
    assert HEADER_FAILED_AT in dead.headers
    assert bus.dead_letters(queue) == [dead]  # reading does not remove
    assert transport.depth(bus, queue) == 0


def test_an_outage_longer_than_the_budget_is_waited_out_not_dead_lettered(transport, recorder):
    """Failures because the database is away keep the attempt number; the budget is for real failures."""
    bus = transport.bus()
    queue = transport.queue("calibrate")
    outage_deliveries = 6  # twice the budget of 3 attempts

    calls = iter(range(1_000))

    def during_an_outage(envelope: Envelope) -> None:
        call = next(calls)
        if call < outage_deliveries // 2:
            raise sqlalchemy.exc.OperationalError("SELECT 1", {}, ConnectionRefusedError("refused"))
        if call < outage_deliveries:
            raise DependencyUnavailable("the catalogue mirror is away")
        if call == outage_deliveries:
            raise ValueError("a real failure after the outage counts")

    handler = recorder(during_an_outage)
    bus.subscribe(queue, ["catalogue.received"], handler, max_attempts=3)
    bus.start()
    bus.publish("catalogue.received", b"c", message_id="c-out", headers={"origin": "ingest"})
    envelopes = handler.wait(outage_deliveries + 2, timeout=30)
    assert [(e.attempt, e.outage_waits) for e in envelopes] == [
        *[(1, waits) for waits in range(outage_deliveries + 1)],
        (2, 0),
    ]
    assert all(e.headers == {"origin": "ingest"} for e in envelopes)
    handler.quiet(0.3, outage_deliveries + 2)
    assert bus.dead_letters(queue) == []


def test_reject_message_goes_to_dead_letters_at_once(transport, recorder):
    bus = transport.bus()
    queue = transport.queue("catalog-cache")

    def poison(envelope: Envelope) -> None:
        raise RejectMessage("body is not JSON")

    handler = recorder(poison)
    bus.subscribe(queue, ["field.requested"], handler, max_attempts=5)
    bus.start()
    bus.publish("field.requested", b"not json", message_id="f-1")
    handler.wait(1)
    handler.quiet(0.3, 1)
    (dead,) = bus.dead_letters(queue)
    assert dead.attempt == 1
    assert dead.headers[HEADER_ERROR] == "cpcs.messaging.bus.RejectMessage: body is not JSON"
    assert dead.headers[HEADER_ATTEMPTS] == "1"


def test_replay_dead_letters_after_a_fix(transport, recorder, wait_until):
    bus = transport.bus()
    queue = transport.queue("calibrate")
    fixed = threading.Event()

    def handler_with_bug(envelope: Envelope) -> None:
        if not fixed.is_set():
            raise RejectMessage("bug")

    handler = recorder(handler_with_bug)
    bus.subscribe(queue, ["catalogue.received"], handler)
    bus.start()
    for number in (1, 2, 3):
        bus.publish(
            "catalogue.received", f"c{number}".encode(), message_id=f"c-{number}", headers={"n": str(number)}
        )
    handler.wait(3)
    wait_until(lambda: len(bus.dead_letters(queue)) == 3, what="3 dead letters")
    assert [d.message_id for d in bus.dead_letters(queue)] == ["c-1", "c-2", "c-3"]  # oldest first

    fixed.set()
    assert bus.replay_dead_letters(queue, ["c-2"]) == 1
    replayed = handler.wait(4)[3]
    assert (replayed.message_id, replayed.routing_key, replayed.body) == ("c-2", "catalogue.received", b"c2")
    assert replayed.attempt == 1  # the counter starts over
    assert replayed.headers == {"n": "2"}  # failure headers are gone
    assert [d.message_id for d in bus.dead_letters(queue)] == ["c-1", "c-3"]

    assert bus.replay_dead_letters(queue) == 2
    assert sorted(e.message_id for e in handler.wait(6)[4:]) == ["c-1", "c-3"]
    handler.quiet(0.2, 6)
    assert bus.dead_letters(queue) == []
    assert bus.replay_dead_letters(queue) == 0


def test_unknown_queue_has_no_dead_letters(transport):
    bus = transport.bus()
    queue = transport.queue("never-subscribed")
    assert bus.dead_letters(queue) == []
    assert bus.replay_dead_letters(queue) == 0


def test_duplicate_message_id_is_delivered_twice(transport, recorder):
    """The bus does not de-duplicate: idempotency is the consumer's job (e.g. a unique key in its DB)."""
    bus = transport.bus()
    handler = recorder()
    bus.subscribe(transport.queue("api"), ["point.calibrated"], handler)
    bus.start()
    bus.publish("point.calibrated", b"x", message_id="same")
    bus.publish("point.calibrated", b"x", message_id="same")
    assert [e.message_id for e in handler.wait(2)] == ["same", "same"]
    handler.quiet(0.2, 2)


def test_concurrency_runs_handlers_in_parallel(transport, recorder):
    bus = transport.bus()
    barrier = threading.Barrier(3, timeout=10)  # breaks unless 3 handlers run at the same time
    handler = recorder(lambda envelope: barrier.wait() and None)
    bus.subscribe(transport.queue("reduce"), ["image.received"], handler, concurrency=3, prefetch=1)
    bus.start()
    for number in range(3):
        bus.publish("image.received", b"i", message_id=f"i-{number}")
    handler.wait(3)
    handler.quiet(0.3, 3)  # nobody failed (a broken barrier would have caused retries)
    assert not barrier.broken


def test_publish_is_thread_safe(transport, recorder):
    bus = transport.bus()
    handler = recorder()
    bus.subscribe(transport.queue("api"), ["point.calibrated"], handler)
    errors: list[BaseException] = []

    def publish_many(thread: int) -> None:
        try:
            for number in range(20):
                bus.publish("point.calibrated", b"p", message_id=f"{thread}-{number}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=publish_many, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    bus.start()
    assert len({e.message_id for e in handler.wait(80)}) == 80


def test_stop_waits_for_running_handlers(transport, recorder):
    bus = transport.bus()
    queue = transport.queue("calibrate")
    started, finished = threading.Event(), threading.Event()

    def slow(envelope: Envelope) -> None:
        started.set()
        time.sleep(0.5)
        finished.set()

    bus.subscribe(queue, ["catalogue.received"], recorder(slow))
    bus.start()
    bus.publish("catalogue.received", b"c", message_id="c-1")
    assert started.wait(10)
    bus.stop(timeout=10)
    assert finished.is_set()
    assert transport.depth(bus, queue) == 0  # it was acked before the connection closed
    again = recorder()
    bus.subscribe(queue, ["catalogue.received"], again)
    bus.start()
    again.quiet(0.3, 0)


def test_stop_timeout_leaves_an_unfinished_message_for_the_next_subscriber(transport, recorder):
    """A handler that outlives stop() is treated as a crash: no ack, the message is redelivered."""
    bus = transport.bus()
    queue = transport.queue("calibrate")
    started, release = threading.Event(), threading.Event()

    def stuck(envelope: Envelope) -> None:
        started.set()
        release.wait(10)

    bus.subscribe(queue, ["catalogue.received"], recorder(stuck))
    bus.start()
    bus.publish("catalogue.received", b"c", message_id="c-1", headers={"k": "v"})
    assert started.wait(10)
    began = time.monotonic()
    bus.stop(timeout=0.3)
    assert time.monotonic() - began < 3
    try:
        successor = recorder()
        bus.subscribe(queue, ["catalogue.received"], successor)
        bus.start()
        (envelope,) = successor.wait(1)
        assert (envelope.message_id, envelope.attempt, envelope.headers) == ("c-1", 1, {"k": "v"})
    finally:
        release.set()  # the late handler's outcome is ignored …
    successor.quiet(0.3, 1)  # … so nothing is redelivered or retried
    assert bus.dead_letters(queue) == []


def test_publish_rejects_reserved_or_malformed_headers(transport):
    bus = transport.bus()
    bus.subscribe(transport.queue("api"), ["point.calibrated"], lambda envelope: None)
    with pytest.raises(ValueError, match="reserved"):
        bus.publish("point.calibrated", b"", message_id="m", headers={"x-cpcs-error": "forged"})
    with pytest.raises(TypeError):
        bus.publish("point.calibrated", b"", message_id="m", headers={"n": 1})  # type: ignore[dict-item]
    with pytest.raises(ValueError):
        bus.publish("point.calibrated", b"", message_id="")


def test_subscribe_validates_arguments(transport):
    bus = transport.bus()
    with pytest.raises(ValueError):
        bus.subscribe(transport.queue("api"), ["point.calibrated"], lambda envelope: None, max_attempts=0)
    with pytest.raises(TypeError):
        bus.subscribe(transport.queue("api"), "point.calibrated", lambda envelope: None)


def test_health(transport):
    bus = transport.bus()
    assert bus.health()
    bus.subscribe(transport.queue("api"), ["point.calibrated"], lambda envelope: None)
    bus.start()
    deadline = time.monotonic() + 5
    while not bus.health() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert bus.health()
