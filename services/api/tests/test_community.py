"""Data out to the community against the embedded system: the AAVSO export and the observer code; TNS
reports, sent to a real local HTTP stand-in of TNS that checks the report's shape, the key and the marker.

Three real uploads by K. Rybicki of a simulated field around Gaia16aye: a Clear frame calibrated to
PS1 r (no AAVSO code: left out), a V frame calibrated to GaiaSP V, and a V frame without the target
(an upper limit).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from cpcs.lightcurve.aavso import FIELDS, check_aavso_report
from cpcs.lightcurve.tns import check_tns_report
from cpcs.settings import Settings
from cpcs.simulation.catalogue_simulator import simulate_field
from cpcs.testing.local_http import LocalServer
from tests.conftest import FIELD_DEC_DEG, FIELD_RA_DEG, System, start_system

ALERT = "ivo://Gaia16aye"
TNS_KEY = "bot-key-0123456789"
TNS_MARKER = 'tns_marker{"tns_id": 1234, "type": "bot", "name": "cpcs_bot"}'


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class TnsStandIn:
    """What a TNS bulk-report endpoint checks: the marker, the key, the report's shape."""

    received: list[dict[str, Any]] = field(default_factory=list)
    available: bool = True

    async def bulk_report(self, request: Request) -> JSONResponse:
        if not self.available:
            return JSONResponse({"id_code": 503, "id_message": "maintenance"}, status_code=503)
        form = await request.form()
        if request.headers.get("user-agent") != TNS_MARKER:
            return JSONResponse({"id_code": 403, "id_message": "Forbidden: no tns_marker"}, status_code=403)
        if form.get("api_key") != TNS_KEY:
            return JSONResponse({"id_code": 401, "id_message": "Unauthorized"}, status_code=401)
        report = json.loads(str(form.get("data")))
        problems = check_tns_report(report)
        if problems:
            return JSONResponse({"id_code": 400, "id_message": "; ".join(problems)}, status_code=400)
        self.received.append(report)
        return JSONResponse(
            {"id_code": 200, "id_message": "OK", "data": {"report_id": 4242 + len(self.received)}}
        )

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/api/set/bulk-report", self.bulk_report, methods=["POST"])])


@dataclass
class Curve:
    system: System
    alert_id: int
    tns: TnsStandIn


@pytest.fixture(scope="module")
def curve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Curve]:
    tmp_path: Path = tmp_path_factory.mktemp("community")
    tns = TnsStandIn()
    server = LocalServer(tns.app()).__enter__()
    settings = Settings(
        data_dir=tmp_path / "data",
        retry_base_s=0.05,
        outbox_poll_s=0.05,
        legacy_wait_s=30,
        tns_url=server.url,
        tns_api_key=TNS_KEY,
        tns_bot_id=1234,
        tns_bot_name="cpcs_bot",
        tns_reporting_group_id=66,
        tns_data_source_id=66,
        tns_instrument_ids={"Ostrowik 0.6m": 321},
    )
    system = start_system(settings)
    try:
        field = simulate_field(7, n_stars=400, ra_deg=FIELD_RA_DEG, dec_deg=FIELD_DEC_DEG, target="bright")
        system.import_field(field, tmp_path / "refs")
        created = system.client.post(
            "/api/v1/alerts",
            json={"name": ALERT, "ra_deg": FIELD_RA_DEG, "dec_deg": FIELD_DEC_DEG},
            headers=_auth(system.observer_token),
        )
        assert created.status_code == 201, created.text
        everything = np.arange(field.ra_deg.size)
        assert field.target is not None and field.target.source_index is not None
        system.calibrate_rows(ALERT, field, everything, mjd="57737.5", filter="Clear", force_filter="PS1/r")
        system.calibrate_rows(
            ALERT, field, everything[::-1], mjd="57738.5", filter="V", force_filter="GaiaSP/V"
        )
        without_target = everything[everything != field.target.source_index]
        system.calibrate_rows(
            ALERT, field, without_target, mjd="57739.5", filter="V", force_filter="GaiaSP/V"
        )
        yield Curve(system, created.json()["id"], tns)
    finally:
        system.client.close()
        system.assembly.stop()
        server.__exit__()


def _aavso(curve: Curve, token: str):  # type: ignore[no-untyped-def]
    return curve.system.client.get(
        f"/api/v1/alerts/{curve.alert_id}/export", params={"format": "aavso"}, headers=_auth(token)
    )


def test_aavso_needs_the_observer_code_and_a_valid_one(curve: Curve) -> None:
    client, token = curve.system.client, curve.system.other_token
    missing = _aavso(curve, token)
    assert missing.status_code == 422 and "PATCH /api/v1/me" in missing.json()["message"], missing.text
    bad = client.patch("/api/v1/me", json={"aavso_obscode": "no code!"}, headers=_auth(token))
    assert bad.status_code in (400, 422) and "observer code" in bad.text
    assert client.get("/api/v1/me", headers=_auth(token)).json()["aavso_obscode"] is None
    assert _aavso(curve, token).status_code == 422  # nothing changed


def test_aavso_export_is_the_observers_own_points_under_their_code(curve: Curve) -> None:
    client, token = curve.system.client, curve.system.observer_token
    set_code = client.patch("/api/v1/me", json={"aavso_obscode": "rka01"}, headers=_auth(token))
    assert set_code.status_code == 200 and set_code.json()["aavso_obscode"] == "RKA01", set_code.text
    response = _aavso(curve, token)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert 'filename="cpcs-Gaia16aye-aavso.txt"' in response.headers["content-disposition"]
    assert check_aavso_report(response.text) == []
    assert "#OBSCODE=RKA01" in response.text.splitlines()
    lines = [dict(zip(FIELDS, line.split(","), strict=True)) for line in response.text.splitlines()[7:]]
    assert [(line["FILT"], line["MAG"].startswith("<")) for line in lines] == [("V", False), ("V", True)]
    assert all(line["CHART"].startswith("GaiaSP") and line["CNAME"] == "ENSEMBLE" for line in lines)
    assert response.headers["x-cpcs-skipped-points"].endswith(":no AAVSO filter code for PS1 r")
    # Someone else with a code gets their own points: none of these.
    other = curve.system.other_token
    assert client.patch("/api/v1/me", json={"aavso_obscode": "HLA"}, headers=_auth(other)).status_code == 200
    assert len(_aavso(curve, other).text.splitlines()) == 7


def _review(curve: Curve, token: str):  # type: ignore[no-untyped-def]
    return curve.system.client.get(f"/api/v1/alerts/{curve.alert_id}/tns-report", headers=_auth(token))


def _send(curve: Curve, token: str, digest: str):  # type: ignore[no-untyped-def]
    return curve.system.client.post(
        f"/api/v1/alerts/{curve.alert_id}/tns-report/send", json={"digest": digest}, headers=_auth(token)
    )


def test_the_tns_report_is_the_observers_points_with_ids_and_non_detections(curve: Curve) -> None:
    review = _review(curve, curve.system.observer_token)
    assert review.status_code == 200, review.text
    body = review.json()
    assert body["sending_configured"] is True and body["skipped_points"] == {}
    assert check_tns_report(body["report"]) == []
    at = body["report"]["at_report"]["0"]
    assert at["internal_name"] == "Gaia16aye" and at["reporter"] == "K. Rybicki (via CPCS)"
    assert at["discovery_datetime"].startswith("2016-12-15 12:00:00")  # MJD 57737.5, the first detection
    group = at["photometry"]["photometry_group"]
    entries = [group[str(k)] for k in range(len(group))]
    assert [(e["filter_value"], e["flux_units"], e["flux"] == "") for e in entries] == [
        (57, 1, False),  # Clear calibrated to PS1 r: ps1::r, AB
        (12, 3, False),  # V calibrated to GaiaSP V: Johnson V, Vega
        (12, 3, True),  # the upper limit: no flux, its limit
    ]
    assert all(e["instrument_value"] == 321 and e["observer"] == "K. Rybicki" for e in entries)
    assert float(entries[2]["limiting_flux"]) > float(entries[1]["flux"])
    assert "unfiltered (Clear)" in entries[0]["comments"]
    assert at["non_detection"]["archiveid"] == 0  # no limit before the first detection


def test_someone_without_points_has_nothing_to_report(curve: Curve) -> None:
    review = _review(curve, curve.system.other_token)
    assert review.status_code == 403 and review.json()["error"] == "not_your_points", review.text
    admin = _review(curve, curve.system.admin_token)  # an admin reviews every point
    assert (
        admin.status_code == 200
        and len(admin.json()["report"]["at_report"]["0"]["photometry"]["photometry_group"]) == 3
    )


def test_the_reviewed_report_is_sent_with_the_key_and_marker(curve: Curve) -> None:
    token = curve.system.observer_token
    review = _review(curve, token).json()
    stale = _send(curve, token, "0" * 64)
    assert stale.status_code == 409 and stale.json()["error"] == "tns_report_changed"
    assert curve.tns.received == []
    sent = _send(curve, token, review["digest"])
    assert sent.status_code == 200, sent.text
    assert sent.json()["report_id"] == "4243" and curve.tns.received == [review["report"]]


def test_a_tns_refusal_is_a_clear_502(curve: Curve) -> None:
    token = curve.system.observer_token
    digest = _review(curve, token).json()["digest"]
    curve.tns.available = False
    try:
        refused = _send(curve, token, digest)
    finally:
        curve.tns.available = True
    assert refused.status_code == 502 and "maintenance" in refused.json()["message"], refused.text


def test_sending_is_off_unless_configured(curve: Curve) -> None:
    token = curve.system.observer_token
    digest = _review(curve, token).json()["digest"]
    settings = curve.system.context.settings
    saved, settings.tns_url = settings.tns_url, None
    try:
        off = _send(curve, token, digest)
        reviewed = _review(curve, token).json()
    finally:
        settings.tns_url = saved
    assert off.status_code == 409 and off.json()["error"] == "tns_not_configured", off.text
    assert reviewed["sending_configured"] is False and reviewed["digest"] == digest


def test_points_kept_from_tns_are_in_nobodys_report(curve: Curve) -> None:
    client, me = curve.system.client, _auth(curve.system.observer_token)
    code = client.get("/api/v1/me", headers=me).json()["aavso_obscode"]
    assert client.patch("/api/v1/me", json={"sharing": {"tns": False}}, headers=me).status_code == 200
    try:
        own = _review(curve, curve.system.observer_token)
        admin = _review(curve, curve.system.admin_token)
    finally:
        restored = client.patch("/api/v1/me", json={"sharing": {"tns": True}}, headers=me)
    assert own.status_code == 403 and own.json()["error"] == "tns_not_shared", own.text
    assert admin.status_code == 422 and admin.json()["error"] == "nothing_to_report", admin.text
    assert restored.json()["sharing"]["tns"] is True and restored.json()["aavso_obscode"] == code
