"""Points keep their truth: a file sent again with corrected metadata corrects it (history kept), a
duplicate answers with its ids at both doors, and the owner (or an admin) corrects through the API."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from cpcs.db.models import Observation
from cpcs.simulation.catalogue_simulator import SimulatedField, to_sextractor_ascii
from tests.conftest import FIELD_DEC_DEG, FIELD_RA_DEG, System

ALERT = "ivo://Gaia16aye"
FINAL = ("calibrated", "failed", "error")


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def system(embedded: System, gaia16aye_field: SimulatedField, tmp_path: Path) -> System:
    created = embedded.client.post(
        "/api/v1/alerts",
        json={"name": ALERT, "ra_deg": FIELD_RA_DEG, "dec_deg": FIELD_DEC_DEG},
        headers=_auth(embedded.observer_token),
    )
    assert created.status_code == 201, created.text
    embedded.import_field(gaia16aye_field, tmp_path / "refs")
    return embedded


def _legacy(system: System, frame: bytes, output: str = "json", **fields: str) -> Any:
    form = {
        "EventID": ALERT,
        "MJD": "57737.8",
        "expTime": "120",
        "comment": "first night",
        "hashtag": system.observer_token,
        "outputFormat": output,
        **fields,
    }
    return system.client.post("/followup/cgi/upload", data=form, files={"sexCat": ("frame.cat", frame)})


def _get(system: System, path: str, token: str | None = None) -> Any:
    response = system.client.get(f"/api/v1{path}", headers=_auth(token or system.observer_token))
    assert response.status_code == 200, response.text
    return response.json()


def _wait(system: System, url: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        body: dict[str, Any] = system.client.get(url, headers=_auth(system.observer_token)).json()
        if body["status"] in FINAL:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def test_a_file_sent_again_with_corrected_metadata(system: System, gaia16aye_field: SimulatedField) -> None:
    field = gaia16aye_field
    frame = to_sextractor_ascii(field.ra_deg, field.dec_deg, field.mag, field.magerr).encode()
    first = _legacy(system, frame)
    assert first.status_code == 200, first.text
    point_id, observation_id = first.json()["followup_id"], first.json()["observation_id"]
    assert point_id is not None and first.json()["duplicate"] is False

    # The same file and form again: nothing added, and the answer names the existing point.
    again = _legacy(system, frame)
    assert again.status_code == 200, again.text
    assert again.json()["duplicate"] is True and again.json()["corrected"] == []
    assert (again.json()["followup_id"], again.json()["observation_id"]) == (point_id, observation_id)
    assert again.json()["mag"] == first.json()["mag"]
    assert len(_get(system, f"/observations/{observation_id}/calibrations")) == 1
    page = _legacy(system, frame, output="html")
    assert page.status_code == 200 and "nothing was added, this is your existing point" in page.text
    assert f"<td>{point_id}</td>" in page.text

    # A corrected MJD and comment: the observation and its point take them, calibrated again with the
    # new time (a new version), and the history keeps both.
    fixed = _legacy(system, frame, MJD="57737.9", comment="the time was wrong")
    assert fixed.status_code == 200, fixed.text
    assert fixed.json()["duplicate"] is True and fixed.json()["corrected"] == ["mjd", "comment"]
    assert fixed.json()["followup_id"] == point_id
    observation = _get(system, f"/observations/{observation_id}")
    assert observation["mjd"] == 57737.9 and observation["comment"] == "the time was wrong"
    assert observation["revision"] == 2 and observation["point"]["mjd"] == 57737.9
    versions = _get(system, f"/observations/{observation_id}/calibrations")
    assert [v["version"] for v in versions] == [1, 2]
    assert observation["point"]["calibration_id"] == versions[-1]["id"]
    [curve_point] = _get(system, f"/alerts/{observation['alert_id']}/lightcurve")["points"]
    assert (curve_point["id"], curve_point["mjd"]) == (point_id, 57737.9)

    # The corrected form once more: the point (on the new version) is the answer, not the first version.
    repeated = _legacy(system, frame, MJD="57737.9", comment="the time was wrong")
    assert repeated.json()["duplicate"] is True and repeated.json()["corrected"] == []
    assert repeated.json()["followup_id"] == point_id and repeated.json()["mag"] == fixed.json()["mag"]

    # Through v1: a new exposure time is a correction that needs no recalibration.
    v1 = system.client.post(
        "/api/v1/uploads",
        data={"alert": ALERT, "mjd": "57737.9", "exptime_s": "90"},
        files={"file": ("frame.cat", frame)},
        headers=_auth(system.observer_token),
    )
    assert v1.status_code == 202, v1.text
    body = v1.json()
    assert body["duplicate"] is True and body["corrected"] == ["exptime_s"]
    assert (body["observation_id"], body["point_id"]) == (observation_id, point_id)
    assert _get(system, f"/calibration-requests/{body['calibration_request_id']}")["observation_id"] == (
        observation_id
    )
    assert len(_get(system, f"/observations/{observation_id}/calibrations")) == 2

    revisions = _get(system, f"/observations/{observation_id}/revisions")
    me = _get(system, "/me")["name"]
    assert [(r["revision"], r["reason"], r["changed"], r["made_by"]) for r in revisions] == [
        (1, "upload", [], me),
        (2, "re-upload", ["mjd", "comment"], me),
        (3, "re-upload", ["exptime_s"], me),
    ]
    assert (revisions[0]["mjd"], revisions[0]["comment"], revisions[0]["exptime_s"]) == (
        57737.8,
        "first night",
        120.0,
    )
    assert (revisions[2]["mjd"], revisions[2]["exptime_s"]) == (57737.9, 90.0)


def test_the_owner_corrects_through_the_api(system: System, gaia16aye_field: SimulatedField) -> None:
    field = gaia16aye_field
    frame = to_sextractor_ascii(field.ra_deg, field.dec_deg, field.mag, field.magerr).encode()
    accepted = system.client.post(
        "/api/v1/uploads",
        data={"alert": ALERT, "mjd": "57737.8", "exptime_s": "60", "filter": "V", "comment": "note"},
        files={"file": ("frame.cat", frame)},
        headers=_auth(system.observer_token),
    )
    assert accepted.status_code == 202, accepted.text
    observation = _wait(system, accepted.json()["status_url"])
    assert observation["status"] == "calibrated", observation
    url = f"/api/v1/observations/{observation['id']}"

    def patch(token: str, **body: Any) -> Any:
        return system.client.patch(url, json=body, headers=_auth(token))

    # A new filter: the calibration reads it, so a recalibration is queued and the point moves to it.
    response = patch(system.observer_token, filter="R", mjd=57737.8)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["changed"] == ["filter_declared"] and body["observation"]["filter_declared"] == "R"
    assert body["recalibration_url"] is not None and body["not_recalibrated"] is None
    run = _wait(system, body["recalibration_url"])
    assert (
        run["status"] == "calibrated"
        and run["current"]
        and run["requested_by"] == _get(system, "/me")["name"]
    )
    assert _get(system, url[len("/api/v1") :])["calibration"]["version"] == 2

    # A comment only: a new revision, no recalibration; an empty comment clears it.
    cleared = patch(system.observer_token, comment="")
    assert cleared.json()["changed"] == ["comment"] and cleared.json()["recalibration_url"] is None
    assert cleared.json()["observation"]["comment"] is None
    unchanged = patch(system.observer_token, exptime_s=60)
    assert unchanged.status_code == 200 and unchanged.json()["changed"] == []

    # What is refused, and nothing changes: no field, a Julian Date, someone else, no token.
    for token, request, status, code in [
        (system.observer_token, {}, 422, "nothing_to_correct"),
        (system.observer_token, {"filter_declared": "R"}, 422, "invalid_request"),
        (system.observer_token, {"mjd": 2457737.9}, 422, "invalid_mjd"),
        (system.observer_token, {"mjd": -1}, 422, "invalid_request"),
        (system.observer_token, {"filter": "V" * 41}, 422, "invalid_request"),
        (system.other_token, {"comment": "mine now"}, 403, "not_your_observation"),
        ("", {"comment": "anyone"}, 401, "not_authenticated"),
    ]:
        refused = patch(token, **request)
        assert (refused.status_code, refused.json()["error"]) == (status, code), (request, refused.text)
    assert (
        system.client.patch(
            "/api/v1/observations/987654", json={"comment": "x"}, headers=_auth(system.observer_token)
        ).status_code
        == 404
    )

    # An admin may correct anyone's observation; the revision says who did.
    by_admin = patch(system.admin_token, comment="checked by the admin")
    assert by_admin.status_code == 200 and by_admin.json()["changed"] == ["comment"]
    revisions = _get(system, url[len("/api/v1") :] + "/revisions")
    admin_name = _get(system, "/me", system.admin_token)["name"]
    assert [(r["reason"], r["made_by"] == admin_name) for r in revisions] == [
        ("upload", False),
        ("correction", False),
        ("correction", False),
        ("correction", True),
    ]
    assert [r["filter_declared"] for r in revisions] == ["V", "R", "R", "R"]

    # While a calibration is running, a correction would race with it: refused, nothing changed.
    with system.context.db.transaction() as session:
        session.get(Observation, observation["id"]).status = "processing"
    busy = patch(system.observer_token, mjd=57737.81)
    assert busy.status_code == 409 and busy.json()["error"] == "observation_busy"
    with system.context.db.transaction() as session:
        stored = session.get(Observation, observation["id"])
        assert stored.mjd == 57737.8
        stored.status = "calibrated"

    # A deleted point's observation is corrected but not recalibrated, and says why.
    point_id = _get(system, url[len("/api/v1") :])["point"]["id"]
    deleted = system.client.delete(f"/api/v1/points/{point_id}", headers=_auth(system.observer_token))
    assert deleted.status_code == 200
    late = patch(system.observer_token, mjd=57737.85)
    assert late.json()["changed"] == ["mjd"] and late.json()["not_recalibrated"] == "point_deleted"
