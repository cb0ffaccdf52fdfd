"""Recalibration through the embedded system: dry run, real run, history, who may, alert-wide runs."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cpcs.context import Context
from cpcs.db import migrate
from cpcs.db.models import ImageReduction, Observation, OutboxMessage, Upload
from cpcs.domain.accounts import add_user, authenticate
from cpcs.domain.alerts import create_alert
from cpcs.domain.recalibration import RecalibrationOptions, recalibrate_observation
from cpcs.errors import ConflictError
from cpcs.settings import Settings
from cpcs.simulation.catalogue_simulator import SimulatedField, simulate_field, to_sextractor_ascii
from tests.conftest import FIELD_DEC_DEG, FIELD_RA_DEG, System, start_system

ALERT = "ivo://Gaia16aye"
FINAL = ("calibrated", "failed", "error")


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def field() -> SimulatedField:
    return simulate_field(7, n_stars=300, ra_deg=FIELD_RA_DEG, dec_deg=FIELD_DEC_DEG, target="bright")


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    settings = Settings(data_dir=tmp_path / "data", retry_base_s=0.05, outbox_poll_s=0.05)
    started = start_system(settings)
    response = started.client.post(
        "/api/v1/alerts",
        json={"name": ALERT, "ra_deg": FIELD_RA_DEG, "dec_deg": FIELD_DEC_DEG},
        headers=_auth(started.observer_token),
    )
    assert response.status_code == 201, response.text
    try:
        yield started
    finally:
        started.client.close()
        started.assembly.stop()


def _wait(system: System, url: str, token: str, timeout_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        body: dict[str, Any] = system.client.get(url, headers=_auth(token)).json()
        if body["status"] in FINAL or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def _upload(system: System, field: SimulatedField, token: str, *, shift: float = 0.0) -> dict[str, Any]:
    catalogue = to_sextractor_ascii(field.ra_deg, field.dec_deg, field.mag + shift, field.magerr).encode()
    accepted = system.client.post(
        "/api/v1/uploads",
        data={"alert": ALERT, "mjd": "57737.5", "exptime_s": "60"},
        files={"file": ("frame.cat", catalogue)},
        headers=_auth(token),
    )
    assert accepted.status_code == 202, accepted.text
    return _wait(system, accepted.json()["status_url"], token)


def _recalibrate(system: System, path: str, token: str, **body: Any) -> Any:
    return system.client.post(f"/api/v1{path}/recalibrate", json=body, headers=_auth(token))


def _light_curve(system: System, token: str) -> list[dict[str, Any]]:
    alert_id = system.client.get("/api/v1/alerts/by-name", params={"name": ALERT}).json()["id"]
    points: list[dict[str, Any]] = system.client.get(
        f"/api/v1/alerts/{alert_id}/lightcurve", headers=_auth(token)
    ).json()["points"]
    return points


def test_dry_run_then_real_run_moves_the_point(system: System, field: SimulatedField, tmp_path: Path) -> None:
    system.import_field(field, tmp_path / "refs")
    observer = system.observer_token
    observation = _upload(system, field, observer)
    assert observation["status"] == "calibrated", observation
    first = observation["calibration"]
    point = observation["point"]
    forced = "GaiaSP/V" if first["band"] != "V" else "PS1/i"
    survey, band = forced.split("/")

    # A dry run: computed and kept in the history, the point stays where it was.
    dry = _recalibrate(
        system, f"/observations/{observation['id']}", observer, force_filter=forced, dry_run=True
    )
    assert dry.status_code == 202, dry.text
    assert dry.headers["location"] == dry.json()["status_url"]
    assert dry.json()["params"]["force_filter"] == forced and dry.json()["dry_run"] is True
    trial = _wait(system, dry.json()["status_url"], observer)
    assert trial["status"] == "calibrated", trial
    assert trial["dry_run"] and trial["recalibration"] and not trial["current"]
    assert (trial["calibration"]["survey"], trial["calibration"]["band"]) == (survey, band)
    assert trial["calibration"]["version"] == 2
    [unchanged] = _light_curve(system, system.other_token)
    assert unchanged["calibration_id"] == point["calibration_id"] and unchanged["band"] == first["band"]
    shown = system.client.get(f"/api/v1/observations/{observation['id']}", headers=_auth(observer)).json()
    assert shown["calibration"]["version"] == 1 and shown["status"] == "calibrated"
    # The page's plots are those of the version it shows, not of the newer dry run.
    page = system.client.get(f"/observations/{observation['id']}").text
    plotted = json.loads(re.search(r'id="calibration-data">(.*?)</script>', page, re.S).group(1))  # type: ignore[union-attr]
    assert next(b["label"] for b in plotted["bands"] if b["chosen"]) == f"{first['survey']}/{first['band']}"

    # The real run: a new version, the point moves to it, the light curve shows its band.
    real = _recalibrate(system, f"/observations/{observation['id']}", observer, force_filter=forced)
    assert real.status_code == 202, real.text
    done = _wait(system, real.json()["status_url"], observer)
    assert done["status"] == "calibrated" and done["current"] and not done["dry_run"]
    assert done["calibration"]["version"] == 3
    [moved] = _light_curve(system, observer)
    assert moved["id"] == point["id"]  # the same point, moved
    assert moved["calibration_id"] == done["calibration"]["id"]
    assert (moved["survey"], moved["band"]) == (survey, band)
    shown = system.client.get(f"/api/v1/observations/{observation['id']}", headers=_auth(observer)).json()
    assert shown["calibration"]["version"] == 3 and shown["point"]["band"] == band

    # The history keeps every version, the dry run marked as such.
    history = system.client.get(
        f"/api/v1/observations/{observation['id']}/calibrations", headers=_auth(observer)
    ).json()
    assert [c["version"] for c in history] == [1, 2, 3]
    assert [c["params"]["dry_run"] for c in history] == [False, True, False]
    assert [c["dry_run"] for c in history] == [False, True, False]
    assert [c["current"] for c in history] == [False, False, True]
    page = system.client.get(f"/observations/{observation['id']}").text
    states = re.findall(r'<td class="num">(\d)</td>\s*<td>(current|dry run|superseded)</td>', page)
    assert states == [("1", "superseded"), ("2", "dry run"), ("3", "current")], page
    assert [c["band"] for c in history] == [first["band"], band, band]

    # Parameters left out keep the current ones: a plain re-run stays on the forced band.
    again = _recalibrate(system, f"/observations/{observation['id']}", observer)
    assert again.json()["params"]["force_filter"] == forced
    assert _wait(system, again.json()["status_url"], observer)["calibration"]["version"] == 4
    auto = _recalibrate(system, f"/observations/{observation['id']}", observer, force_filter="auto")
    assert auto.json()["params"]["force_filter"] is None
    assert _wait(system, auto.json()["status_url"], observer)["calibration"]["band"] == first["band"]
    assert len(_light_curve(system, observer)) == 1


def test_a_failed_observation_is_rescued_after_the_catalogue_is_imported(
    system: System, field: SimulatedField, tmp_path: Path
) -> None:
    observer = system.observer_token
    observation = _upload(system, field, observer)
    assert observation["status"] == "failed" and observation["error_code"] == "no_reference_stars"
    system.import_field(field, tmp_path / "refs")
    accepted = _recalibrate(system, f"/observations/{observation['id']}", observer)
    assert accepted.status_code == 202, accepted.text
    assert _wait(system, accepted.json()["status_url"], observer)["status"] == "calibrated"
    shown = system.client.get(f"/api/v1/observations/{observation['id']}", headers=_auth(observer)).json()
    assert shown["status"] == "calibrated" and shown["error_code"] is None and shown["point"] is not None
    # The same bytes uploaded again are still recognised as the same upload.
    catalogue = to_sextractor_ascii(field.ra_deg, field.dec_deg, field.mag, field.magerr).encode()
    repeated = system.client.post(
        "/api/v1/uploads",
        data={"alert": ALERT, "mjd": "57737.5", "exptime_s": "60"},
        files={"file": ("frame.cat", catalogue)},
        headers=_auth(observer),
    )
    assert repeated.json()["duplicate"] is True and repeated.json()["observation_id"] == observation["id"]


def test_who_may_recalibrate_and_alert_wide_runs(
    system: System, field: SimulatedField, tmp_path: Path
) -> None:
    system.import_field(field, tmp_path / "refs")
    mine = _upload(system, field, system.observer_token)
    theirs = _upload(system, field, system.other_token, shift=0.002)
    assert mine["status"] == theirs["status"] == "calibrated"

    denied = _recalibrate(system, f"/observations/{mine['id']}", system.other_token)
    assert denied.status_code == 403 and denied.json()["error"] == "not_your_observation"
    assert _recalibrate(system, f"/observations/{mine['id']}", "").status_code == 401
    assert _recalibrate(system, "/observations/999", system.observer_token).status_code == 404
    bad = _recalibrate(system, f"/observations/{mine['id']}", system.observer_token, force_filter="APASS")
    assert bad.status_code == 422 and bad.json()["error"] == "invalid_force_filter"
    assert _recalibrate(system, f"/alerts/{mine['alert_id']}", system.observer_token).status_code == 403
    assert _recalibrate(system, "/alerts/999", system.admin_token).status_code == 404

    # An admin may recalibrate anyone's observation, a whole alert, or one observatory's points.
    assert _recalibrate(system, f"/observations/{theirs['id']}", system.admin_token).status_code == 202
    everything = _recalibrate(system, f"/alerts/{mine['alert_id']}", system.admin_token, dry_run=True)
    assert everything.status_code == 202, everything.text
    body = everything.json()
    assert body["queued"] == 2 and body["skipped"] == [] and body["dry_run"] is True
    assert sorted(r["observation_id"] for r in body["requests"]) == sorted([mine["id"], theirs["id"]])
    for queued in body["requests"]:
        assert _wait(system, queued["status_url"], system.admin_token)["status"] == "calibrated"

    observatories = system.client.get("/api/v1/observatories").json()
    site = next(o for o in observatories if o["name"] == "Ostrowik 0.6m")
    one_site = _recalibrate(system, f"/observatories/{site['id']}", system.admin_token)
    assert one_site.status_code == 202
    assert [r["observation_id"] for r in one_site.json()["requests"]] == [mine["id"]]
    assert _recalibrate(system, "/observatories/999", system.admin_token).status_code == 404

    # A deleted point is not brought back: it is skipped alert-wide and refused one by one.
    deleted = system.client.delete(
        f"/api/v1/points/{theirs['point']['id']}", headers=_auth(system.other_token)
    )
    assert deleted.status_code == 200
    refused = _recalibrate(system, f"/observations/{theirs['id']}", system.other_token)
    assert refused.status_code == 409 and refused.json()["error"] == "point_deleted"
    later = _recalibrate(system, f"/alerts/{mine['alert_id']}", system.admin_token).json()
    assert later["queued"] == 1 and later["skipped"] == [
        {"observation_id": theirs["id"], "reason": "point_deleted"}
    ]
    for queued in later["requests"]:
        assert _wait(system, queued["status_url"], system.admin_token)["status"] == "calibrated"
    assert [p["id"] for p in _light_curve(system, system.observer_token)] == [mine["point"]["id"]]


def test_an_image_is_calibrated_again_from_its_measured_table(tmp_path: Path) -> None:
    """Images are not measured again: calibrate gets ``sources.measured`` with the stored table."""
    settings = Settings(data_dir=tmp_path / "data")
    settings.data_dir.mkdir(parents=True)
    migrate.upgrade(settings.sqlalchemy_url)
    context = Context(settings)  # no consumers: the queued messages stay in the outbox to be read
    try:
        with context.db.transaction() as session:
            user = authenticate(session, add_user(session, "obs", observatory="site").token)
            alert = create_alert(session, ALERT, FIELD_RA_DEG, FIELD_DEC_DEG, None)
            ids = []
            for index, status in enumerate(("reduced", "failed")):
                upload = Upload(sha256=f"{index}" * 64, size_bytes=1, kind="image", stored_path="x")
                session.add(upload)
                session.flush()
                observation = Observation(
                    alert_id=alert.id, user_id=user.id, upload_id=upload.id, status="calibrated"
                )
                session.add(observation)
                session.flush()
                session.add(
                    ImageReduction(
                        observation_id=observation.id,
                        status=status,
                        sources_path=f"products/{observation.id}/sources.fits",
                        pipeline_version="test",
                    )
                )
                ids.append(observation.id)
        with context.db.transaction() as session:
            queued = recalibrate_observation(
                session, user, ids[0], RecalibrationOptions(force_filter="any/V")
            )
            with pytest.raises(ConflictError) as refused:
                recalibrate_observation(session, user, ids[1], RecalibrationOptions())
            assert refused.value.code == "not_reduced"
            [row] = session.scalars(
                select(OutboxMessage).where(OutboxMessage.routing_key == "sources.measured")
            ).all()
            message = json.loads(row.body)
        assert message["calibration_request_id"] == queued.request_id
        assert message["sources_path"] == f"products/{ids[0]}/sources.fits"
        assert message["params"]["force_filter"] == "any/V"
    finally:
        context.close()
