"""The operators' status: admin only, figures from the database, dead letters with their reason and
their replay."""

from __future__ import annotations

import time
from pathlib import Path

from cpcs.simulation.catalogue_simulator import SimulatedField, to_sextractor_ascii
from tests.conftest import FIELD_DEC_DEG, FIELD_RA_DEG, System


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _dead(system: System) -> list[dict]:
    body = system.client.get("/api/v1/admin/status", headers=_auth(system.admin_token)).json()
    return [d for d in body["dead_letters"] if d["queue"] == "calibrate"]


def test_status_is_for_admins_and_counts_uploads_and_dead_letters(
    embedded: System, gaia16aye_field: SimulatedField, tmp_path: Path
) -> None:
    system, field = embedded, gaia16aye_field
    client, observer, admin = system.client, system.observer_token, system.admin_token
    assert client.get("/api/v1/admin/status").status_code == 401
    refused = client.get("/api/v1/admin/status", headers=_auth(observer))
    assert refused.status_code == 403 and refused.json()["error"] == "admin_only"
    assert (
        client.post("/api/v1/admin/dead-letters/calibrate/replay", headers=_auth(observer)).status_code == 403
    )

    system.import_field(field, tmp_path / "refs")
    client.post(
        "/api/v1/alerts",
        json={"name": "ivo://Gaia16aye", "ra_deg": FIELD_RA_DEG, "dec_deg": FIELD_DEC_DEG},
        headers=_auth(observer),
    )
    catalogue = to_sextractor_ascii(field.ra_deg, field.dec_deg, field.mag, field.magerr).encode()
    form = {"alert": "ivo://Gaia16aye", "mjd": "57737.5", "exptime_s": "60", "filter": "r'"}
    accepted = client.post(
        "/api/v1/uploads", data=form, files={"file": ("a.cat", catalogue)}, headers=_auth(observer)
    )
    assert accepted.status_code == 202
    system.context.bus.publish("catalogue.received", b"not json", message_id="poison-1")

    deadline = time.monotonic() + 30
    while True:
        body = client.get("/api/v1/admin/status", headers=_auth(admin)).json()
        hour = body["windows"][0]
        if (hour["calibrated"] == 1 and _dead(system)) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert hour["label"] == "last hour" and hour["uploads"] == 1 and hour["calibrated"] == 1, hour
    assert hour["waiting"] == 0 and hour["failures"] == {}
    assert 0 < hour["latency_percentiles_s"]["50"] < 30
    assert body["windows"][1]["uploads"] == 1
    queues = {q["queue"]: q for q in body["queues"]}
    assert set(queues) == {"calibrate", "reduce", "catalog-cache", "api"}
    assert queues["calibrate"]["dead"] == 1
    (letter,) = _dead(system)
    assert letter["message_id"] == "poison-1" and "unreadable" in letter["reason"]

    unknown = client.post("/api/v1/admin/dead-letters/nowhere/replay", headers=_auth(admin))
    assert unknown.status_code == 404 and "calibrate" in unknown.json()["message"]
    replayed = client.post(
        "/api/v1/admin/dead-letters/calibrate/replay",
        json={"message_ids": ["poison-1"]},
        headers=_auth(admin),
    )
    assert replayed.status_code == 200 and replayed.json() == {"queue": "calibrate", "replayed": 1}
    deadline = time.monotonic() + 10
    while not _dead(system):  # the poison comes back to the dead-letter queue after its replay
        assert time.monotonic() < deadline
        time.sleep(0.05)
