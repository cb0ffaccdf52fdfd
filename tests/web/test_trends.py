"""An instrument's trends, end to end: real uploads dimmed by an injected extinction, the trends API,
and the instrument page's plots in Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cpcs.science.airmass import airmasses
from cpcs.settings import Settings
from cpcs.simulation.catalogue_simulator import simulate_field, to_sextractor_ascii
from tests.conftest import FIELD_DEC_DEG, FIELD_RA_DEG, System, start_system
from tests.web.conftest import LiveServer, auth, wait_for
from tests.web.test_pages import console_errors, open_page, screenshot

ALERT = "ivo://CPCS-trends"
OSTROWIK = {"lon_deg": 21.4, "lat_deg": 52.1}  # the observer's observatory in tests.conftest
K_TRUE = 0.20
#: Night (integer MJD) -> how much dimmer than the first night the whole frame is (dust on the mirror).
NIGHTS = {60150: 0.0, 60152: 0.12}
FRAMES_PER_NIGHT = 6


def _frame_times(night: int) -> tuple[np.ndarray, np.ndarray]:
    """Six times of the night with the alert at airmass 1.1 to 2.2 from Ostrowik."""
    grid = night + 0.5 + np.arange(0, 0.5, 0.005)
    x = airmasses(np.full(grid.size, FIELD_RA_DEG), np.full(grid.size, FIELD_DEC_DEG), grid, **OSTROWIK)
    up = np.isfinite(x) & (x < 2.2)
    assert up.sum() > FRAMES_PER_NIGHT
    picks = np.linspace(0, up.sum() - 1, FRAMES_PER_NIGHT).astype(int)
    return grid[up][picks], x[up][picks]


@dataclass
class Instrumented:
    system: System
    instrument_id: int
    base_url: str
    airmass: list[float]


@pytest.fixture(scope="module")
def instrumented(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instrumented]:
    folder: Path = tmp_path_factory.mktemp("trends")
    settings = Settings(data_dir=folder / "data", retry_base_s=0.05, outbox_poll_s=0.05, legacy_wait_s=30)
    system = start_system(settings)
    try:
        field = simulate_field(5, n_stars=300, ra_deg=FIELD_RA_DEG, dec_deg=FIELD_DEC_DEG, target="bright")
        system.import_field(field, folder / "refs")
        token = system.observer_token
        made = system.client.post(
            "/api/v1/instruments",
            json={"observatory": "Ostrowik 0.6m", "name": "Andor iKon", "pixel_scale_arcsec": 0.6},
            headers=auth(system.admin_token),
        )
        assert made.status_code == 201, made.text
        created = system.client.post(
            "/api/v1/alerts",
            json={"name": ALERT, "ra_deg": FIELD_RA_DEG, "dec_deg": FIELD_DEC_DEG},
            headers=auth(token),
        )
        assert created.status_code == 201, created.text
        accepted, used_airmass = [], []
        for night, dimmer in NIGHTS.items():
            for number, (mjd, x) in enumerate(zip(*_frame_times(night), strict=True)):
                # the atmosphere (k X) and the night's extra loss make every star fainter
                mags = np.asarray(field.mag, dtype=float) + K_TRUE * x + dimmer
                catalogue = to_sextractor_ascii(field.ra_deg, field.dec_deg, mags, field.magerr).encode()
                response = system.client.post(
                    "/api/v1/uploads",
                    data={
                        "alert": ALERT,
                        "mjd": f"{mjd:.5f}",
                        "exptime_s": "60",
                        "filter": "V",
                        "force_filter": "GaiaSP/V",
                    },
                    files={"file": (f"n{night}-{number}.cat", catalogue)},
                    headers=auth(token),
                )
                assert response.status_code == 202, response.text
                accepted.append(response.json()["observation_id"])
                used_airmass.append(float(x))
        for observation_id in accepted:
            assert wait_for(system, observation_id, token)["status"] == "calibrated"
        assert system.assembly.app is not None
        with LiveServer(system.assembly.app) as server:
            yield Instrumented(system, made.json()["id"], server.url, used_airmass)
    finally:
        system.client.close()
        system.assembly.stop()


def test_the_api_recovers_the_injected_extinction_and_its_change(instrumented: Instrumented) -> None:
    client = instrumented.system.client
    answer = client.get(
        f"/api/v1/instruments/{instrumented.instrument_id}/trends", params={"exptime_s": [60, 600]}
    )
    assert answer.status_code == 200, answer.text  # public, as the instruments are
    body = answer.json()
    assert body["instrument"]["name"] == "Andor iKon" and body["n_frames"] == 12
    [series] = body["series"]
    assert (series["filter"], series["survey"], series["band"]) == ("V", "GaiaSP", "V")
    frames = body["frames"]
    assert [f["airmass_source"] for f in frames] == ["computed"] * 12  # catalogues: from time and site
    np.testing.assert_allclose([f["airmass"] for f in frames], instrumented.airmass, rtol=1e-6)
    assert [n["night"] for n in series["nights"]] == list(NIGHTS)
    for night in series["nights"]:
        assert night["n_frames"] == FRAMES_PER_NIGHT and night["k"] is not None
        assert night["k"] == pytest.approx(K_TRUE, abs=0.01)
    assert series["k_mean"] == pytest.approx(K_TRUE, abs=0.01)
    [change] = series["zp0_changes"]
    assert change["night"] == 60152 and change["delta_zp0"] == pytest.approx(-0.12, abs=0.015)
    assert series["colour_term"] is not None and series["colour_term"]["n_frames"] >= 5
    limits = series["expected_limits"]
    assert [e["exptime_s"] for e in limits] == [60.0, 600.0]
    assert limits[1]["limit_mag"] - limits[0]["limit_mag"] == pytest.approx(1.25, abs=0.002)
    assert "1.25 log10" in body["limit_model"]


def test_the_api_says_what_is_wrong(instrumented: Instrumented) -> None:
    client = instrumented.system.client
    url = f"/api/v1/instruments/{instrumented.instrument_id}/trends"
    bad = client.get(url, params={"exptime_s": -5})
    assert bad.status_code == 422 and bad.json()["error"] == "invalid_exptime", bad.text
    assert client.get(url, params={"airmass": 0.5}).status_code == 422
    missing = client.get("/api/v1/instruments/999/trends")
    assert missing.status_code == 404 and missing.json()["error"] == "unknown_instrument"


def test_the_instrument_page_draws_the_trends(instrumented: Instrumented, browser: Any) -> None:
    open_page(
        browser,
        f"{instrumented.base_url}/observatories",
    )
    link = browser.find_element("css selector", "#instruments a")
    assert link.text == "Andor iKon"
    link.click()
    open_page(
        browser,
        browser.current_url,
        "const p = document.getElementById('zp-time'); return p && p.dataset.ready;",
    )
    assert browser.current_url.endswith(f"/instruments/{instrumented.instrument_id}")
    drawn: int = browser.execute_script("return document.getElementById('zp-airmass').data[0].x.length;")
    assert drawn == 12
    fits: int = browser.execute_script("return document.getElementById('zp-airmass').data.length;")
    assert fits == 1 + len(NIGHTS)  # the frames and one fitted line per night
    nights: list[float] = browser.execute_script("return document.getElementById('k-night').data[0].y;")
    assert nights == pytest.approx([K_TRUE, K_TRUE], abs=0.01)
    rows = browser.find_elements("css selector", "#expected-limits tbody tr")
    assert len(rows) == 1 and "GaiaSP/V" in rows[0].text
    assert len(browser.find_elements("css selector", "#nights tbody tr")) == len(NIGHTS)
    # the planning figure follows the model: 600 s at airmass 1.5
    body = instrumented.system.client.get(f"/api/v1/instruments/{instrumented.instrument_id}/trends").json()
    [series] = body["series"]
    model = series["limit_model"]
    expected = (
        model["limit_at_reference"]
        + 1.25 * np.log10(600 / model["reference_exptime_s"])
        - series["k_mean"] * 0.5
    )
    for field_id, value in (("plan-exptime", "600"), ("plan-airmass", "1.5")):
        box = browser.find_element("id", field_id)
        box.clear()
        box.send_keys(value)
    [line] = browser.find_elements("css selector", "#plan-result li")
    assert line.text.startswith(f"V (GaiaSP/V): 5σ limit {expected:.2f} mag"), line.text
    box = browser.find_element("id", "plan-exptime")
    box.clear()
    box.send_keys("0")
    assert "Give an exposure time" in browser.find_element("id", "plan-result").text
    assert console_errors(browser) == []
    screenshot(browser, "instrument-trends", full_page=True)
