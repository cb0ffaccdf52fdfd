"""deploy/rabbitmq/definitions.json must describe exactly what the code declares."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pika
import pika.exceptions
import pytest

from cpcs.messaging.rabbitmq import declare_topology
from cpcs.messaging.topology import CPCS_TOPOLOGY, TOPOLOGY_SECTIONS, QueueSpec, Topology, main

DEFINITIONS = Path(__file__).resolve().parents[4] / "deploy" / "rabbitmq" / "definitions.json"


def _canonical(document: dict, sections=TOPOLOGY_SECTIONS) -> dict:
    """The topology sections, each as a sorted list (order in the file does not matter)."""
    return {
        section: sorted(json.dumps(item, sort_keys=True) for item in document.get(section, []))
        for section in sections
    }


def test_definitions_file_matches_the_code():
    on_disk = json.loads(DEFINITIONS.read_text())
    assert _canonical(on_disk) == _canonical(CPCS_TOPOLOGY.to_definitions()), (
        "deploy/rabbitmq/definitions.json is stale: run "
        "`python -m cpcs.messaging.topology deploy/rabbitmq/definitions.json`"
    )
    assert "users" not in on_disk, "keep credentials out of the repository"


def test_cpcs_topology_has_the_agreed_queues_and_dead_letter_arguments():
    definitions = CPCS_TOPOLOGY.to_definitions()
    bindings = {(b["source"], b["destination"], b["routing_key"]) for b in definitions["bindings"]}
    assert bindings == {
        ("cpcs", "calibrate", "catalogue.received"),
        ("cpcs", "calibrate", "sources.measured"),
        ("cpcs", "reduce", "image.received"),
        ("cpcs", "catalog-cache", "field.requested"),
        ("cpcs", "api", "point.calibrated"),
        ("cpcs", "api", "point.deleted"),
        ("cpcs.dlx", "calibrate.dead", "calibrate"),
        ("cpcs.dlx", "reduce.dead", "reduce"),
        ("cpcs.dlx", "catalog-cache.dead", "catalog-cache"),
        ("cpcs.dlx", "api.dead", "api"),
    }
    queues = {q["name"]: q for q in definitions["queues"]}
    assert all(q["durable"] and not q["auto_delete"] for q in queues.values())
    assert queues["calibrate"]["arguments"] == {
        "x-dead-letter-exchange": "cpcs.dlx",
        "x-dead-letter-routing-key": "calibrate",
    }
    assert queues["calibrate.retry"]["arguments"] == {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "calibrate",
    }
    assert queues["calibrate.dead"]["arguments"] == {}
    exchanges = {e["name"]: e["type"] for e in definitions["exchanges"]}
    assert exchanges == {"cpcs": "topic", "cpcs.dlx": "direct"}


def test_generator_keeps_other_sections(tmp_path, capsys):
    target = tmp_path / "definitions.json"
    target.write_text(json.dumps({"users": [{"name": "ops"}], "queues": [{"name": "stale"}]}))
    assert main([str(target)]) == 0
    written = json.loads(target.read_text())
    assert written["users"] == [{"name": "ops"}]
    assert _canonical(written) == _canonical(CPCS_TOPOLOGY.to_definitions())
    assert main([]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(render_default())


def render_default() -> str:
    return json.dumps(CPCS_TOPOLOGY.to_definitions())


def test_topology_follows_a_custom_exchange_name():
    topology = Topology("test-x", (QueueSpec("q", ("a.*",)),))
    declarations = topology.declarations()
    assert [e.name for e in declarations.exchanges] == ["test-x", "test-x.dlx"]
    assert declarations.queues[0].arguments["x-dead-letter-exchange"] == "test-x.dlx"


def _vhost_url(amqp_url: str, vhost: str) -> str:
    parts = urlsplit(amqp_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + quote(vhost, safe=""), parts.query, ""))


def test_rabbitmq_loads_the_definitions_and_the_code_declares_the_same(amqp_url):
    """Import the file into a scratch vhost, then let the code declare over it.

    RabbitMQ refuses (PRECONDITION_FAILED) a declaration whose type or arguments differ from an
    existing exchange or queue, so this proves the broker sees both as the same topology.
    """
    rabbitmqctl = shutil.which("rabbitmqctl")
    if rabbitmqctl is None or os.geteuid() != 0:
        pytest.fail("needs rabbitmqctl as root on the broker host (the machine's RabbitMQ server package)")
    vhost = f"cpcs-test-{uuid.uuid4().hex[:12]}"
    user = urlsplit(amqp_url).username or "guest"
    document = json.loads(DEFINITIONS.read_text())
    document["vhosts"] = [{"name": vhost}]
    for section in ("exchanges", "queues", "bindings"):
        for item in document[section]:
            item["vhost"] = vhost
    document["permissions"] = [{"user": user, "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"}]
    subprocess.run(
        [rabbitmqctl, "import_definitions", "--format", "json"],
        input=json.dumps(document),
        text=True,
        check=True,
        capture_output=True,
        timeout=60,
    )
    try:
        parameters = pika.URLParameters(_vhost_url(amqp_url, vhost))
        deadline = time.monotonic() + 20
        while True:  # the import is asynchronous
            try:
                connection = pika.BlockingConnection(parameters)
                connection.channel().queue_declare("api.dead", passive=True)
                break
            except (pika.exceptions.AMQPError, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        try:
            channel = connection.channel()
            declare_topology(channel, CPCS_TOPOLOGY)  # raises ChannelClosedByBroker on any mismatch
            channel.confirm_delivery()
            channel.basic_publish("cpcs", "sources.measured", b"{}", mandatory=True)
            assert channel.queue_declare("calibrate", passive=True).method.message_count == 1
        finally:
            connection.close()
    finally:
        subprocess.run([rabbitmqctl, "delete_vhost", vhost], check=True, capture_output=True, timeout=60)
