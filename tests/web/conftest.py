"""The web pages' fixtures: an embedded system with a light curve, served for real, and Chromium."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn

from cpcs.settings import Settings
from cpcs.simulation.catalogue_simulator import SimulatedField, simulate_field, to_sextractor_ascii
from tests.conftest import FIELD_DEC_DEG, FIELD_RA_DEG, System, start_system

ALERT = "ivo://Gaia16aye"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
FINAL = ("calibrated", "failed", "error")


@dataclass(frozen=True)
class Visit:
    """One simulated upload: who, when, how the target changed, and the filter asked for."""

    observer: str  # "observer" or "other"
    mjd: float
    target_delta_mag: float | None  # None: the target is not detected (an upper limit)
    force_filter: str
    filter_declared: str


VISITS = (
    Visit("observer", 57737.81755, 0.0, "any/r", "r"),
    Visit("other", 57738.90210, 0.10, "GaiaSP/V", "V"),
    Visit("observer", 57740.80512, 0.25, "any/r", "r"),
    Visit("other", 57742.91133, 0.40, "GaiaSP/V", "V"),
    Visit("observer", 57745.79870, 0.55, "any/r", "r"),
    Visit("other", 57747.88460, None, "GaiaSP/V", "V"),
)


@dataclass
class WebData:
    system: System
    alert_id: int
    observation_ids: list[int]
    light_curve: list[dict[str, Any]]
    catalogue_path: Path
    base_url: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def bands(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for point in self.light_curve:
            counts[point["band"]] = counts.get(point["band"], 0) + 1
        return counts


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def catalogue_bytes(field: SimulatedField, delta_mag: float | None) -> bytes:
    """The field's catalogue with the target brighter/fainter by ``delta_mag``, or without it."""
    assert field.target is not None and field.target.source_index is not None
    index = field.target.source_index
    ra, dec, mag, err = (
        np.array(a, dtype=float) for a in (field.ra_deg, field.dec_deg, field.mag, field.magerr)
    )
    if delta_mag is None:
        keep = np.arange(ra.size) != index
        ra, dec, mag, err = ra[keep], dec[keep], mag[keep], err[keep]
    else:
        mag[index] += delta_mag
    return to_sextractor_ascii(ra, dec, mag, err).encode()


def wait_for(system: System, observation_id: int, token: str, timeout_s: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        body: dict[str, Any] = system.client.get(
            f"/api/v1/observations/{observation_id}", headers=auth(token)
        ).json()
        if body["status"] in FINAL:
            return body
        assert time.monotonic() < deadline, f"observation {observation_id} still {body['status']}"
        time.sleep(0.05)


def populate(system: System, folder: Path) -> WebData:
    """An alert with points from two observatories in two filters, one of them an upper limit."""
    field = simulate_field(7, n_stars=400, ra_deg=FIELD_RA_DEG, dec_deg=FIELD_DEC_DEG, target="bright")
    system.import_field(field, folder / "refs")
    client = system.client
    created = client.post(
        "/api/v1/alerts",
        json={
            "name": ALERT,
            "ra_deg": FIELD_RA_DEG,
            "dec_deg": FIELD_DEC_DEG,
            "url": "https://example.org/g",
        },
        headers=auth(system.observer_token),
    )
    assert created.status_code == 201, created.text
    alert_id = created.json()["id"]
    client.post(  # a second alert, never observed, for the list's filters
        "/api/v1/alerts",
        json={"name": "ivo://AT2024xyz", "ra_deg": 10.0, "dec_deg": -20.0},
        headers=auth(system.observer_token),
    )
    tokens = {"observer": system.observer_token, "other": system.other_token}
    accepted: list[tuple[int, str]] = []
    for number, visit in enumerate(VISITS):
        form = {
            "alert": ALERT,
            "mjd": str(visit.mjd),
            "exptime_s": "120",
            "filter": visit.filter_declared,
            "force_filter": visit.force_filter,
        }
        files = {"file": (f"frame{number}.cat", catalogue_bytes(field, visit.target_delta_mag))}
        response = client.post(
            "/api/v1/uploads", data=form, files=files, headers=auth(tokens[visit.observer])
        )
        assert response.status_code == 202, response.text
        accepted.append((response.json()["observation_id"], tokens[visit.observer]))
    observation_ids = []
    for observation_id, token in accepted:
        body = wait_for(system, observation_id, token)
        assert body["status"] == "calibrated", body
        observation_ids.append(observation_id)
    curve = client.get(f"/api/v1/alerts/{alert_id}/lightcurve", headers=auth(system.observer_token))
    assert curve.status_code == 200, curve.text
    catalogue_path = folder / "dry_run_frame.cat"
    catalogue_path.write_bytes(catalogue_bytes(field, 0.7))
    return WebData(system, alert_id, observation_ids, curve.json()["points"], catalogue_path)


class LiveServer:
    """The ASGI app served by uvicorn on a free loopback port, in a background thread."""

    def __init__(self, app: Any, port: int = 0):
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", port))
        self.port = self.socket.getsockname()[1]
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.socket.close()


@pytest.fixture(scope="module")
def web_data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebData]:
    folder = tmp_path_factory.mktemp("web")
    settings = Settings(data_dir=folder / "data", retry_base_s=0.05, outbox_poll_s=0.05, legacy_wait_s=30)
    system = start_system(settings)
    try:
        data = populate(system, folder)
        assert system.assembly.app is not None
        with LiveServer(system.assembly.app) as server:
            data.base_url = server.url
            yield data
    finally:
        system.client.close()
        system.assembly.stop()


def chromium_options(profile: Path) -> Any:
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return options


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Debian Chromium through chromedriver. Missing browser: the test fails, never skips."""
    assert CHROMIUM.exists() and CHROMEDRIVER.exists(), (
        "Chromium and chromedriver are needed for the web tests: `make browser` "
        "(apt-get install -y chromium chromium-driver)"
    )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tmp_path_factory.mktemp("chromium-profile")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=chromium_options(profile))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
