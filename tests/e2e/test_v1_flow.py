"""REST v1: alerts, an upload answered 202, its status and calibration, points, the light curve."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from cpcs.simulation.catalogue_simulator import SimulatedField, to_sextractor_ascii
from tests.conftest import FIELD_DEC_DEG, FIELD_RA_DEG, System


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _wait(system: System, url: str, token: str, timeout_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        body = system.client.get(url, headers=_auth(token)).json()
        if body["status"] in ("calibrated", "failed", "error") or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def test_alerts_crud_and_search(embedded: System) -> None:
    client, observer, admin = embedded.client, embedded.observer_token, embedded.admin_token
    body = {
        "name": "Gaia16aye",
        "ra_deg": FIELD_RA_DEG,
        "dec_deg": FIELD_DEC_DEG,
        "url": "http://example.org/a",
    }
    assert client.post("/api/v1/alerts", json=body).status_code == 401
    created = client.post("/api/v1/alerts", json=body, headers=_auth(observer))
    assert created.status_code == 201 and created.json()["name"] == "ivo://Gaia16aye"
    alert_id = created.json()["id"]
    assert client.post("/api/v1/alerts", json=body, headers=_auth(observer)).status_code == 409
    bad = client.post("/api/v1/alerts", json={**body, "name": "x", "dec_deg": 95}, headers=_auth(observer))
    assert bad.status_code == 422 and "dec_deg" in bad.json()["message"]

    assert client.get("/api/v1/alerts/by-name", params={"name": "ivo://Gaia16aye"}).json()["id"] == alert_id
    assert client.get(f"/api/v1/alerts/{alert_id}").json()["ra_deg"] == FIELD_RA_DEG
    assert client.get("/api/v1/alerts/999").status_code == 404
    cone = client.get("/api/v1/alerts/cone", params={"ra_deg": 295.0, "dec_deg": 30.13, "radius_deg": 0.1})
    assert [a["id"] for a in cone.json()] == [alert_id]
    far = client.get("/api/v1/alerts/cone", params={"ra_deg": 100.0, "dec_deg": 30.13, "radius_deg": 0.1})
    assert far.json() == []
    page = client.get("/api/v1/alerts", params={"limit": 1, "observed_only": True}).json()
    assert page["total"] == 0 and page["items"] == []

    moved = {"ra_deg": 295.0048, "dec_deg": 30.1315}
    assert client.patch(f"/api/v1/alerts/{alert_id}", json=moved, headers=_auth(observer)).status_code == 403
    updated = client.patch(f"/api/v1/alerts/{alert_id}", json=moved, headers=_auth(admin))
    assert updated.status_code == 200 and updated.json()["ra_deg"] == 295.0048


def test_upload_status_lightcurve_and_delete(
    embedded: System, gaia16aye_field: SimulatedField, tmp_path: Path
) -> None:
    system, field = embedded, gaia16aye_field
    client, observer = system.client, system.observer_token
    system.import_field(field, tmp_path / "refs")
    alert_id = client.post(
        "/api/v1/alerts",
        json={"name": "ivo://Gaia16aye", "ra_deg": FIELD_RA_DEG, "dec_deg": FIELD_DEC_DEG},
        headers=_auth(observer),
    ).json()["id"]
    catalogue = to_sextractor_ascii(field.ra_deg, field.dec_deg, field.mag, field.magerr).encode()
    form = {"alert": "ivo://Gaia16aye", "mjd": "57737.5", "exptime_s": "60", "filter": "r'"}
    accepted = client.post(
        "/api/v1/uploads", data=form, files={"file": ("a.cat", catalogue)}, headers=_auth(observer)
    )
    assert accepted.status_code == 202, accepted.text
    status_url = accepted.json()["status_url"]
    assert accepted.headers["location"] == status_url

    observation = _wait(system, status_url, observer)
    assert observation["status"] == "calibrated", observation
    calibration = observation["calibration"]
    assert calibration["mode"] == "AUTO" and calibration["version"] == 1
    assert calibration["n_stars"] >= 50 and 0 <= calibration["outlier_fraction"] < 0.3
    alternatives = calibration["alternatives"]
    assert len(alternatives) >= 6 and alternatives[0]["rank"] == 1
    assert (alternatives[0]["survey"], alternatives[0]["band"]) == (
        calibration["survey"],
        calibration["band"],
    )
    target = calibration["target"]
    assert (
        abs(
            target["err_total"] ** 2
            - (
                target["err_measurement"] ** 2
                + target["err_zero_point"] ** 2
                + target["err_scatter"] ** 2
                + target["err_colour"] ** 2
            )
        )
        < 1e-9
    )
    assert target["colour_assumed"] == 0.0 and target["colour_err_assumed"] > 0
    point = observation["point"]
    assert point["flux_ujy"] > 0 and point["observer"] == "K. Rybicki"
    assert observation["source_summary"]["format"] == "sextractor_ascii"

    lc = client.get(f"/api/v1/alerts/{alert_id}/lightcurve", headers=_auth(system.other_token))
    assert [p["id"] for p in lc.json()["points"]] == [point["id"]]
    assert client.get(f"/api/v1/alerts/{alert_id}/lightcurve").status_code == 401

    listed = client.get(
        "/api/v1/points", params={"alert_id": alert_id, "mine": True}, headers=_auth(observer)
    )
    assert listed.json()["total"] == 1
    assert (
        client.get("/api/v1/points", params={"mine": True}, headers=_auth(system.other_token)).json()["total"]
        == 0
    )

    # Same bytes with another match radius: a second calibration version of the same observation.
    again = client.post(
        "/api/v1/uploads",
        data={**form, "match_radius_arcsec": "4"},
        files={"file": ("a.cat", catalogue)},
        headers=_auth(observer),
    )
    assert again.json()["observation_id"] == observation["id"]
    deadline = time.monotonic() + 30
    history: list[dict[str, Any]] = []
    while time.monotonic() < deadline and len(history) < 2:
        history = client.get(f"{status_url}/calibrations", headers=_auth(observer)).json()
        time.sleep(0.05)
    assert [c["version"] for c in history] == [1, 2]
    assert history[1]["params"]["match_radius_arcsec"] == 4
    assert (
        client.get("/api/v1/points", params={"alert_id": alert_id}, headers=_auth(observer)).json()["total"]
        == 1
    )

    assert (
        client.delete(f"/api/v1/points/{point['id']}", headers=_auth(system.other_token)).status_code == 403
    )
    assert client.delete(f"/api/v1/points/{point['id']}", headers=_auth(observer)).status_code == 200
    assert client.delete(f"/api/v1/points/{point['id']}", headers=_auth(observer)).status_code == 404
    assert client.get(f"/api/v1/alerts/{alert_id}/lightcurve", headers=_auth(observer)).json()["points"] == []
    # The record stays: the observation still shows its calibrations.
    assert len(client.get(f"{status_url}/calibrations", headers=_auth(observer)).json()) == 2


def test_calibration_failure_is_shown_on_the_observation(
    embedded: System, gaia16aye_field: SimulatedField
) -> None:
    """No reference stars cached (offline): the upload was accepted, the observation ends failed."""
    system, field = embedded, gaia16aye_field
    client, observer = system.client, system.observer_token
    client.post(
        "/api/v1/alerts",
        json={"name": "ivo://Gaia16aye", "ra_deg": FIELD_RA_DEG, "dec_deg": FIELD_DEC_DEG},
        headers=_auth(observer),
    )
    catalogue = to_sextractor_ascii(field.ra_deg, field.dec_deg, field.mag, field.magerr).encode()
    accepted = client.post(
        "/api/v1/uploads",
        data={"alert": "Gaia16aye", "mjd": "57737.8"},
        files={"file": ("a.cat", catalogue)},
        headers=_auth(observer),
    )
    assert accepted.status_code == 202
    observation = _wait(system, accepted.json()["status_url"], observer)
    assert observation["status"] == "failed"
    assert observation["error_code"] == "no_reference_stars"
    assert "cpcs catalog import" in observation["error_message"]


def test_users_and_observatories(embedded: System) -> None:
    client = embedded.client
    body = {"name": "A. Observer", "observatory": "Bialkow 0.6m", "lon_deg": 16.68, "lat_deg": 51.48}
    assert client.post("/api/v1/users", json=body, headers=_auth(embedded.observer_token)).status_code == 403
    created = client.post("/api/v1/users", json=body, headers=_auth(embedded.admin_token))
    assert created.status_code == 201
    token = created.json()["token"]
    me = client.get("/api/v1/me", headers=_auth(token)).json()
    assert me["name"] == "A. Observer" and me["observatory"]["name"] == "Bialkow 0.6m"
    assert client.post("/api/v1/users", json=body, headers=_auth(embedded.admin_token)).status_code == 409
    names = [o["name"] for o in client.get("/api/v1/observatories").json()]
    assert "Bialkow 0.6m" in names
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200


def test_openapi_document_is_complete(embedded: System) -> None:
    document = embedded.client.get("/openapi.json").json()
    paths = document["paths"]
    for path in (
        "/api/v1/uploads",
        "/api/v1/alerts",
        "/api/v1/observations/{observation_id}",
        "/followup/cgi/upload",
    ):
        assert path in paths
    assert "HTTPBearer" in document["components"]["securitySchemes"]
    assert "ErrorBody" in document["components"]["schemas"]
    upload = paths["/api/v1/uploads"]["post"]
    assert {"202", "401", "422"} <= set(upload["responses"])
    assert upload["responses"]["202"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "UploadAccepted"
    )
