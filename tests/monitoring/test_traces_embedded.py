"""Traces in the embedded system (in-process bus, SQLite): one upload is one trace, request to the
api's outbound consumer, with the observation on every span; with tracing off nothing is traced."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import select

from cpcs import tracing
from cpcs.catalogs.importer import import_catalogue_file
from cpcs.catalogs.tiles import TileStore
from cpcs.db.models import OutboxMessage
from cpcs.simulation.catalogue_simulator import SimulatedField, to_sextractor_ascii
from cpcs.simulation.image_simulator import image_to_fits_bytes, simulate_image
from cpcs.simulation.reference_files import write_reference_tables
from tests.conftest import FIELD_DEC_DEG, FIELD_RA_DEG, System

CLIENT_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN_ID = "00f067aa0ba902b7"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on for the test, each span kept in memory as it ends; off again afterwards."""
    memory = InMemorySpanExporter()
    tracing.install(tracing.new_provider("embedded", memory, batch=False))
    try:
        yield memory
    finally:
        tracing.install(None)


def _alert(system: System) -> int:
    created = system.client.post(
        "/followup/newevent",
        data={
            "ivorn": "ivo://Gaia16aye",
            "ra": FIELD_RA_DEG,
            "dec": FIELD_DEC_DEG,
            "hashtag": system.admin_token,
        },
    )
    assert created.status_code == 201, created.text
    alert_id: int = created.json()["id"]
    return alert_id


def _wait_for(memory: InMemorySpanExporter, name: str, timeout_s: float = 30) -> list[ReadableSpan]:
    deadline = time.monotonic() + timeout_s
    while not any(span.name == name for span in memory.get_finished_spans()):
        assert time.monotonic() < deadline, sorted({span.name for span in memory.get_finished_spans()})
        time.sleep(0.05)
    return list(memory.get_finished_spans())


def _hex(number: int, width: int) -> str:
    return format(number, f"0{width}x")


def _one(trace_spans: list[ReadableSpan], name: str) -> ReadableSpan:
    named = [span for span in trace_spans if span.name == name]
    assert len(named) == 1, (name, [span.name for span in trace_spans])
    return named[0]


def _parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def test_an_upload_is_one_trace_from_the_request_to_the_outbound_consumer(
    spans: InMemorySpanExporter, embedded: System, tmp_path: Path, gaia16aye_field: SimulatedField
) -> None:
    field = gaia16aye_field
    embedded.import_field(field, tmp_path / "refs")
    alert_id = _alert(embedded)
    catalogue = to_sextractor_ascii(field.ra_deg, field.dec_deg, field.mag, field.magerr)
    headers = {
        "Authorization": f"Bearer {embedded.observer_token}",
        "traceparent": f"00-{CLIENT_TRACE_ID}-{CLIENT_SPAN_ID}-01",  # the client's own trace goes on
        "baggage": "client.note=kept-outside",  # but not the client's baggage
    }
    accepted = embedded.client.post(
        "/api/v1/uploads",
        data={"alert": "ivo://Gaia16aye", "exptime_s": "60", "mjd": "57737.8"},
        files={"file": ("frame.cat", catalogue.encode())},
        headers=headers,
    )
    assert accepted.status_code == 202, accepted.text
    observation_id = accepted.json()["observation_id"]
    finished = _wait_for(spans, "process point.calibrated")

    upload_trace = [
        s for s in finished if s.context is not None and _hex(s.context.trace_id, 32) == CLIENT_TRACE_ID
    ]
    request = _one(upload_trace, "POST /api/v1/uploads")
    assert request.kind == trace.SpanKind.SERVER and _hex(_parent_id(request) or 0, 16) == CLIENT_SPAN_ID
    assert request.attributes is not None and request.attributes["http.response.status_code"] == 202
    # request -> publish -> the calibrate consumer -> publish -> the api's outbound consumer
    chain = [
        request,
        _one(upload_trace, "publish catalogue.received"),
        _one(upload_trace, "process catalogue.received"),
        _one(upload_trace, "publish point.calibrated"),
        _one(upload_trace, "process point.calibrated"),
    ]
    with embedded.context.db.transaction() as session:
        carried = [row.trace_context for row in session.scalars(select(OutboxMessage))]
    assert carried and all(c is not None and c["traceparent"][3:35] == CLIENT_TRACE_ID for c in carried)
    assert {c["baggage"] for c in carried if c is not None} == {
        f"{tracing.OBSERVATION_ID}={observation_id},{tracing.ALERT_ID}={alert_id}"
    }
    for parent, child in itertools.pairwise(chain):
        assert parent.context is not None and _parent_id(child) == parent.context.span_id, child.name
    assert [s.kind for s in chain[1:]] == [
        trace.SpanKind.PRODUCER,
        trace.SpanKind.CONSUMER,
        trace.SpanKind.PRODUCER,
        trace.SpanKind.CONSUMER,
    ]
    prefetch = _one(upload_trace, "process field.requested")  # its message names no observation
    assert _parent_id(prefetch) == _one(upload_trace, "publish field.requested").context.span_id  # type: ignore[union-attr]
    for span in upload_trace:
        assert span.attributes is not None
        assert span.attributes.get(tracing.OBSERVATION_ID) == observation_id, span.name
        assert span.attributes.get(tracing.ALERT_ID) == alert_id, span.name
    assert {span.resource.attributes["service.name"] for span in upload_trace} == {"cpcs-embedded"}

    # Polling the status is the client's own request: its span names the observation from the path.
    status = embedded.client.get(
        accepted.json()["status_url"], headers={"Authorization": headers["Authorization"]}
    )
    assert status.status_code == 200
    polled = _wait_for(spans, "GET /api/v1/observations/{observation_id}")
    poll = next(s for s in polled if s.name == "GET /api/v1/observations/{observation_id}")
    assert poll.attributes is not None and poll.attributes[tracing.OBSERVATION_ID] == observation_id
    assert poll.attributes["http.route"] == "/api/v1/observations/{observation_id}"
    (creation,) = [s for s in spans.get_finished_spans() if s.name == "POST /followup/newevent"]
    assert creation.attributes is not None and creation.attributes[tracing.ALERT_ID] == alert_id
    assert embedded.client.get("/healthz").status_code == 200  # probes are not traced
    assert embedded.client.get("/metrics").status_code == 200
    assert not [s for s in spans.get_finished_spans() if s.name.startswith("GET /healthz")]
    assert not [s for s in spans.get_finished_spans() if (s.attributes or {}).get("url.path") == "/metrics"]


def test_reduce_stages_are_spans_of_the_image_consumer(
    spans: InMemorySpanExporter, embedded: System, tmp_path: Path
) -> None:
    image = simulate_image(9, shape=(768, 768), zp=27.5, ra_deg=150.1, dec_deg=2.2, target="bright")
    store = TileStore(embedded.context.settings.catalogs_dir)
    for survey, path in write_reference_tables(image.references.values(), tmp_path / "refs").items():
        import_catalogue_file(store, survey, path, path.name)
    created = embedded.client.post(
        "/followup/newevent",
        data={"ivorn": "ivo://Gaia17img", "ra": 150.1, "dec": 2.2, "hashtag": embedded.admin_token},
    )
    assert created.status_code == 201, created.text
    form = {"EventID": "ivo://Gaia17img", "MJD": "57737.8", "forceFilter": "PS1/r", "outputFormat": "json"}
    response = embedded.client.post(
        "/followup/cgi/upload",
        data={**form, "hashtag": embedded.observer_token},
        files={"fitsFile": ("frame.fits", image_to_fits_bytes(image))},
    )
    assert response.status_code == 200, response.text
    observation_id = response.json()["observation_id"]
    finished = _wait_for(spans, "process point.calibrated")
    consumer = next(s for s in finished if s.name == "process image.received")
    assert consumer.context is not None
    (door,) = [s for s in finished if s.name == "POST /followup/cgi/upload"]
    assert door.context is not None and door.context.trace_id == consumer.context.trace_id
    assert door.attributes is not None and door.attributes["http.response.status_code"] == 200
    stages = [s for s in finished if s.name.startswith("reduce.")]
    names = {s.name.removeprefix("reduce.") for s in stages}
    assert {"background", "psf_model"} <= names, names
    reduction = embedded.client.get(
        f"/api/v1/observations/{observation_id}/reduction",
        headers={"Authorization": f"Bearer {embedded.observer_token}"},
    ).json()
    for stage in stages:  # children of the consumer, inside it, as long as the record says
        assert _parent_id(stage) == consumer.context.span_id
        assert stage.attributes is not None and stage.attributes[tracing.OBSERVATION_ID] == observation_id
        assert stage.start_time is not None and stage.end_time is not None
        assert consumer.start_time is not None and consumer.end_time is not None
        assert consumer.start_time <= stage.start_time <= stage.end_time <= consumer.end_time
        recorded_ms = reduction["timings_ms"][stage.name.removeprefix("reduce.")]
        assert abs((stage.end_time - stage.start_time) / 1e6 - recorded_ms) < 0.01
    # The sources.measured message continues the trace into calibrate.
    calibrate = next(s for s in finished if s.name == "process sources.measured")
    assert calibrate.context is not None and calibrate.context.trace_id == consumer.context.trace_id


def test_tracing_off_installs_no_provider_and_messages_still_flow(
    embedded: System, tmp_path: Path, gaia16aye_field: SimulatedField
) -> None:
    assert tracing.provider() is None and not tracing.active()
    # Nothing was set on OpenTelemetry's global provider either: it is still the API's proxy.
    assert not isinstance(trace.get_tracer_provider(), SdkTracerProvider)
    embedded.import_field(gaia16aye_field, tmp_path / "refs")
    _alert(embedded)
    rows = np.arange(len(gaia16aye_field.ra_deg))
    status = embedded.calibrate_rows("ivo://Gaia16aye", gaia16aye_field, rows, mjd="57737.8")
    assert status["status"] == "calibrated"
    deadline = time.monotonic() + 30
    while True:
        with embedded.context.db.transaction() as session:
            outbox = session.scalars(select(OutboxMessage)).all()
            published = [row.published_at is not None for row in outbox]
            contexts = [row.trace_context for row in outbox]
            keys = {row.routing_key for row in outbox}
        if all(published):
            break
        assert time.monotonic() < deadline, published
        time.sleep(0.05)
    assert {"catalogue.received", "field.requested", "point.calibrated"} <= keys
    assert contexts == [None] * len(contexts)  # untraced rows, published without trace headers
