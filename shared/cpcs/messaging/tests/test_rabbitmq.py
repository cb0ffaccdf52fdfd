"""RabbitMQ-only behaviour: persistence, crashes, lost connections, heartbeats (real broker)."""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from cpcs.messaging.bus import Envelope, PublishError
from cpcs.messaging.factory import create_bus
from cpcs.messaging.rabbitmq import RabbitMqBus


def test_publish_returns_after_a_persistent_message_is_stored(rabbit):
    bus = rabbit.bus()
    queue_name = rabbit.queue("api")
    bus.subscribe(queue_name, ["point.calibrated"], lambda envelope: None)  # declared, not consumed
    bus.publish("point.calibrated", b'{"id": 7}', message_id="p-7", headers={"trace": "t"})
    with rabbit.channel() as channel:
        method, properties, body = channel.basic_get(queue_name, auto_ack=True)
    assert method is not None, "publish returned before the broker had the message"
    assert body == b'{"id": 7}'
    assert properties.delivery_mode == 2
    assert properties.message_id == "p-7"
    assert properties.headers == {"trace": "t"}


def test_publish_gives_up_with_publish_error_when_the_broker_is_unreachable(rabbit):
    bus = rabbit.bus("amqp://guest:guest@127.0.0.1:1/%2F?connection_attempts=1&socket_timeout=1")
    began = time.monotonic()
    with pytest.raises(PublishError):
        bus.publish("point.calibrated", b"", message_id="lost")
    assert time.monotonic() - began < 5  # bounded: the caller's outbox keeps the message
    assert not bus.health()


def test_publish_reconnects_after_its_connection_is_cut(rabbit, recorder):
    bus = rabbit.bus()
    handler = recorder()
    bus.subscribe(rabbit.queue("api"), ["point.calibrated"], handler)
    bus.publish("point.calibrated", b"", message_id="before")
    bus._sever_publisher_connection()
    bus.publish("point.calibrated", b"", message_id="after")  # reconnects by itself
    bus.start()
    assert sorted(e.message_id for e in handler.wait(2)) == ["after", "before"]


def test_message_is_redelivered_when_the_consumer_process_dies_mid_handler(rabbit, amqp_url, recorder):
    queue_name = rabbit.queue("calibrate")
    child_code = textwrap.dedent(
        """
        import sys, time
        from cpcs.messaging.rabbitmq import RabbitMqBus
        url, exchange, queue = sys.argv[1:4]
        bus = RabbitMqBus(url, exchange=exchange)
        def handler(envelope):
            print("STARTED", envelope.message_id, envelope.attempt, flush=True)
            time.sleep(60)
        bus.subscribe(queue, ["catalogue.received"], handler)
        bus.start()
        print("READY", flush=True)
        time.sleep(60)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", child_code, amqp_url, rabbit.exchange, queue_name],
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line.strip()) for line in child.stdout], daemon=True).start()
    try:
        assert lines.get(timeout=15) == "READY"
        rabbit.bus().publish("catalogue.received", b"c", message_id="c-1")
        assert lines.get(timeout=15) == "STARTED c-1 1"
    finally:
        child.kill()  # SIGKILL: no ack, no clean close
        child.wait(10)
    survivor = rabbit.bus()
    handler = recorder()
    survivor.subscribe(queue_name, ["catalogue.received"], handler)
    survivor.start()
    (envelope,) = handler.wait(1)
    assert (envelope.message_id, envelope.attempt) == ("c-1", 1)  # a crash is not a counted attempt
    handler.quiet(0.2, 1)
    survivor.stop()
    assert rabbit.depth(survivor, queue_name) == 0


def test_consumer_reconnects_after_its_connection_is_cut(rabbit, recorder, wait_until):
    bus = rabbit.bus()
    queue_name = rabbit.queue("reduce")
    in_handler, release = threading.Event(), threading.Event()

    def behaviour(envelope: Envelope) -> None:
        if envelope.message_id == "slow" and not in_handler.is_set():
            in_handler.set()
            release.wait(10)

    handler = recorder(behaviour)
    bus.subscribe(queue_name, ["image.received"], handler)
    bus.start()
    bus.publish("image.received", b"", message_id="before")
    handler.wait(1)
    bus.publish("image.received", b"", message_id="slow")
    assert in_handler.wait(10)

    bus._sever_consumer_connection()  # like a network failure, while "slow" is being handled
    wait_until(lambda: bus._sessions == 2 and bus.health(), what="the consumer to reconnect")
    release.set()  # the first run finishes after the loss: its ack is dropped, the broker redelivers
    bus.publish("image.received", b"", message_id="after")
    ids = [e.message_id for e in handler.wait(4)]
    assert sorted(ids) == ["after", "before", "slow", "slow"]
    handler.quiet(0.3, 4)
    bus.stop()
    assert rabbit.depth(bus, queue_name) == 0


def _rabbitmqctl() -> str:
    path = shutil.which("rabbitmqctl")
    if path is None or os.geteuid() != 0:
        pytest.fail("needs rabbitmqctl as root on the broker host (the machine's RabbitMQ server package)")
    return path


def test_consumer_reconnects_after_the_broker_closes_its_connection(rabbit, recorder, wait_until):
    rabbitmqctl = _rabbitmqctl()
    bus = rabbit.bus()
    handler = recorder()
    bus.subscribe(rabbit.queue("api"), ["point.calibrated"], handler)
    bus.start()
    bus.publish("point.calibrated", b"", message_id="before")
    handler.wait(1)
    listing = subprocess.run(
        [rabbitmqctl, "list_connections", "-q", "--no-table-headers", "pid", "client_properties"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    pids = [line.split("\t")[0] for line in listing.splitlines() if f'"{rabbit.prefix}:consumer"' in line]
    assert len(pids) == 1, listing
    subprocess.run(
        [rabbitmqctl, "close_connection", pids[0], "test"], check=True, timeout=30, capture_output=True
    )
    wait_until(lambda: bus._sessions == 2 and bus.health(), what="the consumer to reconnect")
    bus.publish("point.calibrated", b"", message_id="after")
    assert [e.message_id for e in handler.wait(2)] == ["before", "after"]


def test_long_handler_does_not_starve_heartbeats(rabbit, amqp_url, recorder):
    """Heartbeat 2 s, handler 6 s: the broker would drop a connection whose thread is blocked."""
    separator = "&" if "?" in amqp_url else "?"
    bus = create_bus(f"{amqp_url}{separator}heartbeat=2", exchange=rabbit.exchange, name=rabbit.prefix)
    assert isinstance(bus, RabbitMqBus)
    rabbit.buses.append(bus)
    queue_name = rabbit.queue("calibrate")
    handler = recorder(lambda envelope: time.sleep(6))
    bus.subscribe(queue_name, ["catalogue.received"], handler)
    bus.start()
    bus.publish("catalogue.received", b"", message_id="long")
    handler.wait(1)
    time.sleep(7)  # handler done, ack sent
    handler.quiet(0, 1)
    assert bus._sessions == 1  # never reconnected
    assert bus.health()  # the publisher connection, idle for 7 s, survived too
    bus.stop()
    assert rabbit.depth(bus, queue_name) == 0
