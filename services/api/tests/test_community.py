"""Data out to the community against the embedded system: the AAVSO export and the observer code.

Three real uploads by K. Rybicki of a simulated field around Gaia16aye: a Clear frame calibrated to
PS1 r (no AAVSO code: left out), a V frame calibrated to GaiaSP V, and a V frame without the target
(an upper limit).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from cpcs.lightcurve.aavso import FIELDS, check_aavso_report
from cpcs.settings import Settings
from cpcs.testing.catalogue_simulator import SimulatedField, simulate_field, to_sextractor_ascii
from tests.conftest import FIELD_DEC_DEG, FIELD_RA_DEG, System, start_system

ALERT = "ivo://Gaia16aye"


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Curve:
    system: System
    alert_id: int


def _upload(system: System, field: SimulatedField, rows: np.ndarray, **form: str) -> None:
    catalogue = to_sextractor_ascii(
        field.ra_deg[rows], field.dec_deg[rows], field.mag[rows], field.magerr[rows]
    )
    accepted = system.client.post(
        "/api/v1/uploads",
        data={"alert": ALERT, "exptime_s": "60", **form},
        files={"file": ("frame.cat", catalogue.encode())},
        headers=_auth(system.observer_token),
    )
    assert accepted.status_code == 202, accepted.text
    deadline = time.monotonic() + 60
    while True:
        status = system.client.get(accepted.json()["status_url"], headers=_auth(system.observer_token)).json()
        if status["status"] in ("calibrated", "failed", "error"):
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    assert status["status"] == "calibrated", status


@pytest.fixture(scope="module")
def curve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Curve]:
    tmp_path: Path = tmp_path_factory.mktemp("community")
    settings = Settings(data_dir=tmp_path / "data", retry_base_s=0.05, outbox_poll_s=0.05, legacy_wait_s=30)
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
        _upload(system, field, everything, mjd="57737.5", filter="Clear", force_filter="PS1/r")
        _upload(system, field, everything[::-1], mjd="57738.5", filter="V", force_filter="GaiaSP/V")
        without_target = everything[everything != field.target.source_index]
        _upload(system, field, without_target, mjd="57739.5", filter="V", force_filter="GaiaSP/V")
        yield Curve(system, created.json()["id"])
    finally:
        system.client.close()
        system.assembly.stop()


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
