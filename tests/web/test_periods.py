"""Periods of a variable target, end to end: real uploads of a sinusoid, the periodogram API, and the
alert page's periodogram and phase-folded plots in Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cpcs.settings import Settings
from cpcs.simulation.catalogue_simulator import simulate_field
from tests.conftest import FIELD_DEC_DEG, FIELD_RA_DEG, System, start_system
from tests.web.conftest import LiveServer, auth, catalogue_bytes, wait_for
from tests.web.test_pages import console_errors, open_page, screenshot

ALERT = "ivo://CPCS-variable"
PERIOD_D, AMPLITUDE_MAG, EPOCH_MJD = 1.733, 0.4, 60000.3
#: Two visits a night on 14 nights of a month, at times that move from night to night, like follow-up.
MJDS = tuple(
    round(60000.0 + night + (0.137 * night) % 0.3 + visit, 5)
    for night in (0, 1, 3, 4, 6, 8, 9, 11, 13, 15, 17, 20, 23, 27)
    for visit in (0.0, 0.2)
)


@dataclass
class Variable:
    system: System
    alert_id: int
    base_url: str


@pytest.fixture(scope="module")
def variable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Variable]:
    folder: Path = tmp_path_factory.mktemp("periods")
    settings = Settings(data_dir=folder / "data", retry_base_s=0.05, outbox_poll_s=0.05, legacy_wait_s=30)
    system = start_system(settings)
    try:
        field = simulate_field(11, n_stars=300, ra_deg=FIELD_RA_DEG, dec_deg=FIELD_DEC_DEG, target="bright")
        system.import_field(field, folder / "refs")
        token = system.observer_token
        created = system.client.post(
            "/api/v1/alerts",
            json={"name": ALERT, "ra_deg": FIELD_RA_DEG, "dec_deg": FIELD_DEC_DEG},
            headers=auth(token),
        )
        assert created.status_code == 201, created.text
        accepted = []
        for number, mjd in enumerate(MJDS):
            delta = -AMPLITUDE_MAG * np.cos(2 * np.pi * (mjd - EPOCH_MJD) / PERIOD_D)
            response = system.client.post(
                "/api/v1/uploads",
                data={
                    "alert": ALERT,
                    "mjd": f"{mjd:.5f}",
                    "exptime_s": "60",
                    "filter": "V",
                    "force_filter": "GaiaSP/V",
                },
                files={"file": (f"frame{number}.cat", catalogue_bytes(field, float(delta)))},
                headers=auth(token),
            )
            assert response.status_code == 202, response.text
            accepted.append(response.json()["observation_id"])
        for observation_id in accepted:
            assert wait_for(system, observation_id, token)["status"] == "calibrated"
        assert system.assembly.app is not None
        with LiveServer(system.assembly.app) as server:
            yield Variable(system, created.json()["id"], server.url)
    finally:
        system.client.close()
        system.assembly.stop()


def test_the_api_recovers_the_injected_period(variable: Variable) -> None:
    response = variable.system.client.get(
        f"/api/v1/alerts/{variable.alert_id}/periodogram",
        params={"band": "V"},
        headers=auth(variable.system.observer_token),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["n_points"] == len(MJDS) and len(body["points"]) == len(MJDS)
    assert abs(body["best_period_d"] - PERIOD_D) < 4 * body["best_period_err_d"], body["best_period_d"]
    assert body["false_alarm_probability"] < 1e-3
    assert body["amplitude_mag"] == pytest.approx(AMPLITUDE_MAG, abs=0.08)
    assert all(0 <= p["phase"] < 1 for p in body["points"])
    assert len(body["frequency_per_day"]) == len(body["power"]) > 100


def test_the_api_says_what_is_wrong(variable: Variable) -> None:
    client, url = variable.system.client, f"/api/v1/alerts/{variable.alert_id}/periodogram"
    assert client.get(url, params={"band": "V"}).status_code == 401
    wrong = client.get(url, params={"band": "K"}, headers=auth(variable.system.observer_token))
    assert wrong.status_code == 422 and "GaiaSP/V" in wrong.json()["message"], wrong.text
    missing = client.get(url, headers=auth(variable.system.observer_token))
    assert missing.status_code == 422


def test_the_alert_page_draws_the_periodogram_and_the_folded_curve(variable: Variable, browser: Any) -> None:
    open_page(
        browser,
        f"{variable.base_url}/alerts/{variable.alert_id}",
        "const p = document.getElementById('periodogram'); return p && p.dataset.ready;",
    )
    facts = browser.find_element("id", "periodogram-facts").text
    assert facts.startswith("Best period 1.7") and "false-alarm probability" in facts, facts
    folded: int = browser.execute_script("return document.getElementById('folded').data[0].x.length;")
    assert folded == 2 * len(MJDS)  # two cycles
    peak: float = browser.execute_script("return document.getElementById('periodogram').layout.shapes[0].x0;")
    assert peak == pytest.approx(PERIOD_D, rel=0.01)
    drawn: int = browser.execute_script(
        "return document.querySelectorAll('#folded .scatterlayer .points path').length;"
    )
    assert drawn == 2 * len(MJDS)
    assert console_errors(browser) == []
    screenshot(browser, "periodogram", full_page=True)
