"""Where spans go (CPCS_OTEL_EXPORTER and the standard OTLP variables), and the hooks' rules."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from cpcs import tracing
from cpcs.messages import FieldRequestedV1
from cpcs.messaging.bus import UnroutableError
from cpcs.messaging.memory import InProcessBus
from cpcs.settings import Settings
from cpcs_system.cli import main


@pytest.fixture(autouse=True)
def _tracing_off_afterwards() -> Iterator[None]:
    try:
        yield
    finally:
        tracing.install(None)


def test_off_unless_configured_and_an_otlp_endpoint_switches_it_on() -> None:
    assert tracing.exporter_choice(Settings(), {}) == "none"
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}
    assert tracing.exporter_choice(Settings(), endpoint) == "otlp"
    assert (
        tracing.exporter_choice(Settings(), {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c/v1"}) == "otlp"
    )
    assert tracing.exporter_choice(Settings(otel_exporter="none"), endpoint) == "none"
    assert tracing.configure(Settings(otel_exporter="none"), "api") is None and not tracing.active()


@pytest.mark.parametrize("value", ["jaeger", "file:", "file:/tmp/{host}.jsonl", "stdout"])
def test_an_unknown_exporter_is_refused_saying_what_is_allowed(value: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(otel_exporter=value)
    assert "otel_exporter" in str(refused.value)
    assert "none, otlp, console or file:PATH" in str(refused.value) or "{service}" in str(refused.value)


def test_file_exporter_writes_one_json_span_a_line_per_process(tmp_path: Path) -> None:
    settings = Settings(otel_exporter=f"file:{tmp_path}/spans/{{service}}-{{pid}}.jsonl")
    provider = tracing.configure(settings, "calibrate")
    assert provider is not None and tracing.provider() is provider
    with tracing.consuming("calibrate", "catalogue.received", "m1", 1, {}):
        tracing.annotate(observation_id=12, alert_id=3)
        carrier = tracing.message_carrier(FieldRequestedV1(ra_deg=10.0, dec_deg=20.0, radius_deg=0.5))
    with tracing.publishing(carrier, "field.requested", "m2") as headers:
        assert headers is not None and set(headers) == {"traceparent", "baggage"}
    tracing.shutdown()  # flushes and closes the file
    written = tmp_path / "spans" / f"calibrate-{os.getpid()}.jsonl"
    lines = written.read_text().splitlines()
    spans = [json.loads(line) for line in lines]
    assert [span["name"] for span in spans] == ["process catalogue.received", "publish field.requested"]
    consumer, producer = spans
    assert producer["parent_id"] == consumer["context"]["span_id"]
    assert producer["context"]["trace_id"] == consumer["context"]["trace_id"]
    assert producer["kind"] == "SpanKind.PRODUCER"
    # The field.requested message names no observation: the row's baggage carried the writer's.
    assert producer["attributes"][tracing.OBSERVATION_ID] == 12
    assert producer["attributes"][tracing.ALERT_ID] == 3
    assert {span["resource"]["attributes"]["service.name"] for span in spans} == {"cpcs-calibrate"}


@contextmanager
def otlp_receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A collector's OTLP/HTTP endpoint on 127.0.0.1: its base URL and every request it got."""
    received: list[dict[str, Any]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            received.append({"path": self.path, "type": self.headers.get("Content-Type"), "body": body})
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            del format, args

    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, name="test-otlp", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def test_the_standard_otlp_endpoint_receives_the_spans(monkeypatch: pytest.MonkeyPatch) -> None:
    with otlp_receiver() as (endpoint, received):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        assert tracing.configure(Settings(), "ingest") is not None  # unset setting + endpoint: otlp
        with tracing.consuming("calibrate", "catalogue.received", "m1", 2, {}):
            tracing.annotate(observation_id=7)
        tracing.shutdown()
    assert [r["path"] for r in received] == ["/v1/traces"]
    assert received[0]["type"] == "application/x-protobuf"
    request = ExportTraceServiceRequest.FromString(received[0]["body"])
    (resource_spans,) = request.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}["service.name"]
    assert service == "cpcs-ingest"
    (span,) = [s for scope in resource_spans.scope_spans for s in scope.spans]
    attributes = {a.key: a.value for a in span.attributes}
    assert span.name == "process catalogue.received"
    assert attributes[tracing.OBSERVATION_ID].int_value == 7 and attributes["cpcs.attempt"].int_value == 2


def test_a_failed_consumer_span_keeps_the_error_and_unroutable_is_no_failure() -> None:
    memory = InMemorySpanExporter()
    tracing.install(tracing.new_provider("test", memory, batch=False))
    with pytest.raises(ValueError), tracing.consuming("calibrate", "catalogue.received", "m1", 1, {}):
        raise ValueError("no such field")
    with tracing.consuming("calibrate", "catalogue.received", "m2", 1, {}):
        carrier = tracing.message_carrier(FieldRequestedV1(ra_deg=1.0, dec_deg=2.0, radius_deg=0.1))
    bus = InProcessBus()  # no queue bound: the publish is refused as unroutable
    with pytest.raises(UnroutableError), tracing.publishing(carrier, "field.requested", "m3") as headers:
        bus.publish("field.requested", b"{}", message_id="m3", headers=headers)
    failed, _, unroutable = memory.get_finished_spans()
    assert failed.status.status_code == StatusCode.ERROR and "no such field" in (
        failed.status.description or ""
    )
    assert [event.name for event in failed.events] == ["exception"]
    assert unroutable.kind == SpanKind.PRODUCER and unroutable.status.status_code == StatusCode.UNSET
    assert unroutable.attributes is not None and unroutable.attributes["cpcs.outcome"] == "UnroutableError"


def test_with_tracing_off_a_traced_row_keeps_its_context_and_an_untraced_one_has_none() -> None:
    carrier = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
    with tracing.publishing(carrier, "catalogue.received", "m1") as headers:
        assert headers == carrier
    with tracing.publishing(None, "catalogue.received", "m2") as headers:
        assert headers is None
    assert tracing.message_carrier(FieldRequestedV1(ra_deg=1.0, dec_deg=2.0, radius_deg=0.1)) is None
    assert tracing.outgoing_headers() == {}


def test_a_span_file_that_cannot_be_written_stops_the_service_saying_so(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    env = {"CPCS_DATA_DIR": str(tmp_path / "data"), "CPCS_OTEL_EXPORTER": f"file:{blocker}/spans.jsonl"}
    result = CliRunner().invoke(main, ["service", "run", "calibrate"], env=env)
    assert result.exit_code == 2, result.output
    assert "error (otel_exporter_unwritable): CPCS_OTEL_EXPORTER: spans cannot be written to" in result.output
    assert not tracing.active()


def test_an_http_service_exports_its_buffered_spans_when_it_shuts_down(tmp_path: Path) -> None:
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    memory = InMemorySpanExporter()
    tracing.install(tracing.new_provider("ingest", memory))  # batched, as in a service
    app = tracing.TracingMiddleware(Starlette(routes=[Route("/observations/{observation_id}", hello)]))
    with TestClient(app) as client:  # the lifespan: startup, then shutdown on leaving
        assert client.get("/observations/5").text == "hello"
        assert memory.get_finished_spans() == ()  # still in the batch
    (span,) = memory.get_finished_spans()
    assert span.name == "GET /observations/{observation_id}"
    assert span.attributes is not None and span.attributes[tracing.OBSERVATION_ID] == 5
