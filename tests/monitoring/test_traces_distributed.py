"""Across processes (real RabbitMQ and PostgreSQL), each service writing its spans to its own file:
one image upload is one trace from ingest through reduce, catalog-cache and calibrate to the api."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from cpcs import tracing
from cpcs.simulation.image_simulator import image_to_fits_bytes, simulate_image
from cpcs.simulation.reference_files import write_reference_tables
from cpcs.testing.processes import distributed_processes
from cpcs.testing.servers import temporary_postgres_database, temporary_rabbitmq_vhost

Span = dict[str, Any]


def _read_spans(folder: Path) -> list[Span]:
    """Every span the processes have written so far (a line being written is left for later)."""
    spans = []
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                spans.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return spans


def _handled_by_the_api(api_url: str) -> float:
    answer = httpx.get(f"{api_url}/metrics", timeout=10)
    for line in answer.text.splitlines():
        match = re.fullmatch(r"cpcs_messages_handled_total\{(.*)\} (\S+)", line)
        if match and set(match.group(1).split(",")) == {'outcome="ack"', 'queue="api"'}:
            return float(match.group(2))
    return 0.0


def _service(span: Span) -> str:
    name: str = span["resource"]["attributes"]["service.name"]
    return name


def _trace_of_upload(spans: list[Span], observation_id: int) -> list[Span]:
    doors = [
        s
        for s in spans
        if s["name"] == "POST /followup/cgi/upload"
        and s["attributes"].get(tracing.OBSERVATION_ID) == observation_id
    ]
    assert len(doors) == 1, [s["name"] for s in spans]
    trace_id = doors[0]["context"]["trace_id"]
    return [s for s in spans if s["context"]["trace_id"] == trace_id]


def _one(spans: list[Span], name: str, service: str) -> Span:
    found = [s for s in spans if s["name"] == name and _service(s) == service]
    assert len(found) == 1, (name, service, sorted((s["name"], _service(s)) for s in spans))
    return found[0]


def _child_of(child: Span, parent: Span) -> bool:
    return bool(child["parent_id"] == parent["context"]["span_id"])


def test_a_trace_links_an_uploads_spans_across_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    span_folder = tmp_path / "spans"
    monkeypatch.setenv("CPCS_OTEL_EXPORTER", f"file:{span_folder}/{{service}}-{{pid}}.jsonl")
    # Ten minutes (in ms): the spans reach the files only when each process exports what it holds as
    # it stops (SIGTERM), which is what this checks.
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")
    image = simulate_image(9, shape=(768, 768), zp=27.5, ra_deg=150.1, dec_deg=2.2, target="bright")
    with (
        temporary_rabbitmq_vhost() as broker_url,
        temporary_postgres_database() as database_url,
        distributed_processes(tmp_path / "data", database_url, broker_url) as system,
    ):
        token = system.cli("users", "add", "K. Rybicki", "--observatory", "Ostrowik").strip()
        for survey, path in write_reference_tables(image.references.values(), tmp_path / "refs").items():
            system.cli("catalog", "import", "--survey", survey, str(path))
        created = httpx.post(
            f"{system.api_url}/followup/newevent",
            data={"ivorn": "ivo://Gaia17img", "ra": 150.1, "dec": 2.2, "hashtag": token},
        )
        assert created.status_code == 201, created.text
        alert_id = created.json()["id"]
        form = {
            "EventID": "ivo://Gaia17img",
            "MJD": "57737.8",
            "forceFilter": "PS1/r",
            "hashtag": token,
            "outputFormat": "json",
        }
        response = httpx.post(
            f"{system.ingest_url}/followup/cgi/upload",
            data=form,
            files={"fitsFile": ("frame.fits", image_to_fits_bytes(image))},
            timeout=120,
        )
        assert response.status_code == 200, response.text
        observation_id = response.json()["observation_id"]

        # The api's outbound consumer is the last step: wait until it has handled the point.
        deadline = time.monotonic() + 60
        while _handled_by_the_api(system.api_url) < 1:
            assert time.monotonic() < deadline, "the api never handled point.calibrated"
            time.sleep(0.2)
        assert _read_spans(span_folder) == []  # nothing exported before the processes stop
    written_by = {path.name.split("-")[0] for path in span_folder.glob("*.jsonl") if path.stat().st_size}
    spans = _read_spans(span_folder)  # every process exported what it held as it stopped
    assert {"ingest", "reduce", "calibrate", "api"} <= written_by, written_by

    upload = _trace_of_upload(spans, observation_id)
    services = {_service(s) for s in upload}
    assert {"cpcs-ingest", "cpcs-reduce", "cpcs-catalog-cache", "cpcs-calibrate", "cpcs-api"} <= services

    door = _one(upload, "POST /followup/cgi/upload", "cpcs-ingest")
    reduce = _one(upload, "process image.received", "cpcs-reduce")
    calibrate = _one(upload, "process sources.measured", "cpcs-calibrate")
    outbound = _one(upload, "process point.calibrated", "cpcs-api")
    # Each consumer's parent is the publish of its message (by whichever process's relay sent the
    # row), and that publish is the child of the span that wrote the row, in another process.
    for writer, consumer, key in (
        (door, reduce, "image.received"),
        (reduce, calibrate, "sources.measured"),
        (calibrate, outbound, "point.calibrated"),
    ):
        (publish,) = [s for s in upload if s["name"] == f"publish {key}" and _child_of(consumer, s)]
        assert publish["kind"] == "SpanKind.PRODUCER" and consumer["kind"] == "SpanKind.CONSUMER"
        assert _child_of(publish, writer), (key, publish, writer)
        assert _service(writer) != _service(consumer)
    # reduce and calibrate ask catalog-cache over HTTP: its server spans are their children.
    cones = [s for s in upload if s["name"] == "GET /api/v1/cone"]
    assert cones and {_service(s) for s in cones} == {"cpcs-catalog-cache"}
    assert {c["parent_id"] for c in cones} <= {reduce["context"]["span_id"], calibrate["context"]["span_id"]}
    # The recorded reduction steps are spans inside the reduce consumer.
    stages = [s for s in upload if s["name"].startswith("reduce.")]
    assert stages and all(_child_of(s, reduce) for s in stages)

    # One tree: a single root (the upload's request), every other span's parent in the trace.
    ids = {s["context"]["span_id"] for s in upload}
    roots = [s for s in upload if s["parent_id"] is None]
    assert roots == [door]
    assert all(s["parent_id"] in ids for s in upload if s is not door)
    for span in upload:
        assert span["attributes"].get(tracing.OBSERVATION_ID) == observation_id, span["name"]
        assert span["attributes"].get(tracing.ALERT_ID) == alert_id, span["name"]
