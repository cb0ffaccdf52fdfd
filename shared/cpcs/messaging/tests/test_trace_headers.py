"""Both transports carry a message's trace context in its headers, retries and replays included."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cpcs import tracing
from cpcs.messaging.bus import Envelope


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    tracing.install(tracing.new_provider("test", memory, batch=False))
    try:
        yield memory
    finally:
        tracing.install(None)


def test_the_consumer_span_of_every_attempt_is_the_child_of_the_publish(
    transport, recorder, wait_until, spans: InMemorySpanExporter
):
    queue = transport.queue("traced")
    bus = transport.bus()

    calls: list[int] = []

    def fail_three_times(envelope: Envelope) -> None:
        calls.append(envelope.attempt)
        with tracing.consuming(
            queue, envelope.routing_key, envelope.message_id, envelope.attempt, envelope.headers
        ):
            if len(calls) <= 3:
                raise RuntimeError(f"call {len(calls)} fails")

    handler = recorder(fail_three_times)
    bus.subscribe(queue, ["traced.#"], handler, max_attempts=2)
    bus.start()
    origin = {
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "baggage": "cpcs.observation_id=41",
    }
    with tracing.publishing(origin, "traced.one", "m-1") as headers:
        bus.publish("traced.one", b"{}", message_id="m-1", headers=headers)
    wait_until(lambda: len(bus.dead_letters(queue)) == 1, what="the dead letter")
    assert bus.replay_dead_letters(queue) == 1  # the replay (attempt 1 again) fails, its retry works
    envelopes = handler.wait(4)
    assert [e.attempt for e in envelopes] == [1, 2, 1, 2]
    assert {e.headers["traceparent"] for e in envelopes} == {headers["traceparent"]}
    wait_until(lambda: len([s for s in spans.get_finished_spans() if s.name == "process traced.one"]) == 4)

    finished = spans.get_finished_spans()
    (publish,) = [s for s in finished if s.name == "publish traced.one"]
    consumers = [s for s in finished if s.name == "process traced.one"]
    assert (
        publish.context is not None
        and format(publish.context.trace_id, "032x") == origin["traceparent"][3:35]
    )
    assert format(publish.parent.span_id, "016x") == "00f067aa0ba902b7"  # type: ignore[union-attr]
    for consumer in consumers:
        assert consumer.parent is not None and consumer.parent.span_id == publish.context.span_id
        assert consumer.attributes is not None and consumer.attributes[tracing.OBSERVATION_ID] == 41
    assert sorted(c.attributes["cpcs.attempt"] for c in consumers) == [1, 1, 2, 2]  # type: ignore[index]
    assert sum(c.status.is_ok is False for c in consumers) == 3
