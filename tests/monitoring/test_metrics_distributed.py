"""Across processes (real RabbitMQ and PostgreSQL) each service counts its own part of an upload:
ingest the door, the calibrate worker the final status and the latency, the api the outbound side."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx

from cpcs.simulation.catalogue_simulator import SimulatedField, to_sextractor_ascii
from cpcs.simulation.reference_files import write_reference_tables
from cpcs.testing.processes import distributed_processes
from cpcs.testing.servers import temporary_postgres_database, temporary_rabbitmq_vhost
from tests.conftest import FIELD_DEC_DEG, FIELD_RA_DEG


def _scrape(url: str) -> dict[str, float]:
    answer = httpx.get(url, timeout=10)
    assert answer.status_code == 200
    samples = {}
    for line in answer.text.splitlines():
        match = re.fullmatch(r"(cpcs_[^ ]+) ([-+0-9.eEinfa]+)", line)
        if match:
            samples[match.group(1)] = float(match.group(2))
    return samples


def test_each_process_exposes_its_own_part_of_an_upload(
    tmp_path: Path, gaia16aye_field: SimulatedField
) -> None:
    field = gaia16aye_field
    with (
        temporary_rabbitmq_vhost() as broker_url,
        temporary_postgres_database() as database_url,
        distributed_processes(tmp_path / "data", database_url, broker_url) as system,
    ):
        token = system.cli("users", "add", "K. Rybicki", "--observatory", "Ostrowik").strip()
        for survey, path in write_reference_tables(field, tmp_path / "refs").items():
            system.cli("catalog", "import", "--survey", survey, str(path))
        created = httpx.post(
            f"{system.api_url}/followup/newevent",
            data={"ivorn": "ivo://Gaia16aye", "ra": FIELD_RA_DEG, "dec": FIELD_DEC_DEG, "hashtag": token},
        )
        assert created.status_code == 201, created.text
        catalogue = to_sextractor_ascii(field.ra_deg, field.dec_deg, field.mag, field.magerr).encode()
        form = {"MJD": "57737.8", "expTime": "120", "EventID": "ivo://Gaia16aye", "hashtag": token}
        answer = httpx.post(
            f"{system.ingest_url}/followup/cgi/upload",
            data={**form, "outputFormat": "json"},
            files={"sexCat": ("a.cat", catalogue)},
            timeout=120,
        )
        assert answer.status_code == 200, answer.text
        refused = httpx.post(
            f"{system.ingest_url}/followup/cgi/upload",
            data={**form, "hashtag": "wrong"},
            files={"sexCat": ("a.cat", catalogue)},
            timeout=30,
        )
        assert refused.status_code == 401

        ingest = _scrape(f"{system.ingest_url}/metrics")
        assert ingest['cpcs_uploads_accepted_total{door="legacy"}'] == 1
        refusals = {k: v for k, v in ingest.items() if k.startswith("cpcs_uploads_refused_total")}
        assert list(refusals.values()) == [1], refusals
        assert ingest['cpcs_dependency_up{dependency="broker"}'] == 1
        assert ingest['cpcs_queue_messages{part="dead",queue="calibrate"}'] == 0  # passive declare

        calibrate = _scrape(system.worker_metrics_urls["calibrate-0"])
        assert calibrate['cpcs_observations_finished_total{code="",status="calibrated"}'] == 1
        assert calibrate["cpcs_upload_to_point_seconds_count"] == 1
        assert calibrate['cpcs_messages_handled_total{outcome="ack",queue="calibrate"}'] == 1
        assert "cpcs_uploads_accepted_total" not in " ".join(calibrate)  # each process its own registry

        deadline = time.monotonic() + 20
        while True:
            api = _scrape(f"{system.api_url}/metrics")
            if api.get('cpcs_messages_handled_total{outcome="ack",queue="api"}', 0) >= 1:
                break
            assert time.monotonic() < deadline, "the api did not handle point.calibrated"
            time.sleep(0.2)
        assert api["cpcs_outbox_backlog"] == 0
        assert _scrape(system.worker_metrics_urls["reduce"])['cpcs_dependency_up{dependency="database"}'] == 1
