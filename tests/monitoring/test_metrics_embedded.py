"""/metrics of the embedded process moves as a real upload flows through it: accepted and refused
uploads, the final status, the latency and stage histograms, the scrape-time gauges."""

from __future__ import annotations

import re
import time
from pathlib import Path

from cpcs.settings import Settings
from cpcs.simulation.catalogue_simulator import SimulatedField, to_sextractor_ascii
from tests.conftest import FIELD_DEC_DEG, FIELD_RA_DEG, System, start_system


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _scrape(system: System) -> dict[str, float]:
    answer = system.client.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    samples: dict[str, float] = {}
    for line in answer.text.splitlines():
        match = re.fullmatch(r"(cpcs_[^ ]+) ([-+0-9.eEinfa]+)", line)
        if match:
            samples[match.group(1)] = float(match.group(2))
    return samples


def _delta(after: dict[str, float], before: dict[str, float], sample: str) -> float:
    return after.get(sample, 0.0) - before.get(sample, 0.0)


def _wait_final(system: System, url: str, token: str, timeout_s: float = 30) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        status = str(system.client.get(url, headers=_auth(token)).json()["status"])
        if status in ("calibrated", "failed", "error") or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def test_metrics_follow_a_good_and_a_refused_upload(
    embedded: System, gaia16aye_field: SimulatedField, tmp_path: Path
) -> None:
    system, field, observer = embedded, gaia16aye_field, embedded.observer_token
    system.import_field(field, tmp_path / "refs")
    system.client.post(
        "/api/v1/alerts",
        json={"name": "ivo://Gaia16aye", "ra_deg": FIELD_RA_DEG, "dec_deg": FIELD_DEC_DEG},
        headers=_auth(observer),
    )
    before = _scrape(system)
    catalogue = to_sextractor_ascii(field.ra_deg, field.dec_deg, field.mag, field.magerr).encode()
    form = {"alert": "ivo://Gaia16aye", "mjd": "57737.5", "exptime_s": "60", "filter": "r'"}
    accepted = system.client.post(
        "/api/v1/uploads", data=form, files={"file": ("a.cat", catalogue)}, headers=_auth(observer)
    )
    assert accepted.status_code == 202, accepted.text
    assert _wait_final(system, accepted.json()["status_url"], observer) == "calibrated"
    refused = system.client.post(
        "/api/v1/uploads", data=form, files={"file": ("e.cat", b"")}, headers=_auth(observer)
    )
    assert refused.status_code == 422 and refused.json()["error"] == "empty_file"
    unauthenticated = system.client.post("/api/v1/uploads", data=form, files={"file": ("a.cat", catalogue)})
    assert unauthenticated.status_code == 401

    deadline = time.monotonic() + 10
    while True:  # the point.calibrated message is handled (and counted) after the status is final
        after = _scrape(system)
        if _delta(after, before, 'cpcs_messages_handled_total{outcome="ack",queue="api"}') >= 1:
            break
        assert time.monotonic() < deadline, "the api queue's message was not counted"
        time.sleep(0.05)
    assert _delta(after, before, 'cpcs_uploads_accepted_total{door="v1"}') == 1
    assert _delta(after, before, 'cpcs_uploads_refused_total{code="empty_file",door="v1"}') == 1
    refused_codes = {
        k
        for k in after
        if k.startswith("cpcs_uploads_refused_total") and 'door="v1"' in k and _delta(after, before, k) > 0
    }  # the registry is the process's: other tests in it have counted their own refusals before
    assert len(refused_codes) == 2, refused_codes  # empty_file and the missing token's code
    assert _delta(after, before, 'cpcs_observations_finished_total{code="",status="calibrated"}') == 1
    assert _delta(after, before, "cpcs_upload_to_point_seconds_count") == 1
    assert 0 < _delta(after, before, "cpcs_upload_to_point_seconds_sum") < 30
    assert _delta(after, before, 'cpcs_message_handling_seconds_count{queue="calibrate"}') >= 1
    assert _delta(after, before, 'cpcs_messages_handled_total{outcome="ack",queue="calibrate"}') >= 1
    hits = [k for k in after if k.startswith("cpcs_catalogue_cone_lookups_total") and 'result="hit"' in k]
    assert sum(_delta(after, before, k) for k in hits) >= 1, hits  # the imported tables serve the cone
    assert after["cpcs_outbox_backlog"] >= 0 and after["cpcs_outbox_oldest_age_seconds"] >= 0
    assert after['cpcs_dependency_up{dependency="database"}'] == 1
    assert after['cpcs_dependency_up{dependency="broker"}'] == 1
    assert after['cpcs_queue_messages{part="dead",queue="calibrate"}'] == 0


def test_uploads_the_outer_limits_refuse_are_counted_under_their_door(tmp_path: Path) -> None:
    """A body over the limit is answered 413 before the route runs; it still counts as a refused
    upload of its door (and a large request elsewhere counts as no upload)."""
    settings = Settings(
        data_dir=tmp_path / "data", max_upload_bytes=2000, max_form_overhead_bytes=1000, legacy_wait_s=1
    )
    system = start_system(settings)
    try:
        big = b"x" * 10_000
        before = _scrape(system)
        for path in ("/api/v1/uploads", "/followup/cgi/upload"):
            answer = system.client.post(
                path, data={"alert": "ivo://X"}, files={"file": ("a.cat", big)}, headers=_auth("t")
            )
            assert answer.status_code == 413 and answer.json()["error"] == "request_too_large", path
        answer = system.client.post("/api/v1/alerts", content=b"{" + b" " * 2_000_000 + b"}")
        assert answer.status_code == 413  # not an upload: not counted as one
        after = _scrape(system)
        for door in ("v1", "legacy"):
            sample = f'cpcs_uploads_refused_total{{code="request_too_large",door="{door}"}}'
            assert _delta(after, before, sample) == 1, door
        refused = sum(
            _delta(after, before, k) for k in after if k.startswith("cpcs_uploads_refused_total")
        )
        assert refused == 2
    finally:
        system.client.close()
        system.assembly.stop()
