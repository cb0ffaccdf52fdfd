"""The upload page when ingest has its own origin (no gateway): Chromium posts the form there.

The api (pages) and ingest (uploads) are two origins, as two ports of one host are to a browser: the
page is served on one port with ``CPCS_PUBLIC_URL`` naming it, uploads go to ``CPCS_INGEST_PUBLIC_URL``
on the other; the page's CSP must let the request out and ingest's CORS must let it in.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cpcs.settings import Settings
from cpcs.simulation.catalogue_simulator import simulate_field
from cpcs.testing.processes import free_port
from tests.conftest import FIELD_DEC_DEG, FIELD_RA_DEG, System, start_system
from tests.web.conftest import ALERT, LiveServer, auth, catalogue_bytes
from tests.web.test_pages import console_errors, open_page, wait_until


@pytest.fixture
def two_origins(tmp_path: Path) -> Iterator[tuple[System, str, str, Path]]:
    """The embedded app served on two ports: the pages' origin and ingest's."""
    page_port, ingest_port = free_port(), free_port()
    page_url, ingest_url = f"http://127.0.0.1:{page_port}", f"http://127.0.0.1:{ingest_port}"
    settings = Settings(
        data_dir=tmp_path / "data",
        retry_base_s=0.05,
        outbox_poll_s=0.05,
        public_url=f"{page_url}/",
        ingest_public_url=f"{ingest_url}/",
    )
    system = start_system(settings)
    field = simulate_field(7, n_stars=400, ra_deg=FIELD_RA_DEG, dec_deg=FIELD_DEC_DEG, target="bright")
    system.import_field(field, tmp_path / "refs")
    created = system.client.post(
        "/api/v1/alerts",
        json={"name": ALERT, "ra_deg": FIELD_RA_DEG, "dec_deg": FIELD_DEC_DEG},
        headers=auth(system.observer_token),
    )
    assert created.status_code == 201, created.text
    catalogue = tmp_path / "frame.cat"
    catalogue.write_bytes(catalogue_bytes(field, 0.0))
    assert system.assembly.app is not None
    try:
        with LiveServer(system.assembly.app, page_port), LiveServer(system.assembly.app, ingest_port):
            yield system, page_url, ingest_url, catalogue
    finally:
        system.client.close()
        system.assembly.stop()


def test_the_upload_page_posts_to_ingest_on_its_own_origin(
    two_origins: tuple[System, str, str, Path], browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    system, page_url, ingest_url, catalogue = two_origins
    open_page(browser, f"{page_url}/upload?alert={ALERT}")
    browser.get_log("browser")
    form = browser.find_element(By.ID, "upload-form")
    assert form.get_attribute("action") == f"{ingest_url}/api/v1/uploads"
    browser.find_element(By.ID, "token").send_keys(system.observer_token)
    browser.find_element(By.ID, "file").send_keys(str(catalogue))
    browser.find_element(By.ID, "mjd").send_keys("57750.5")
    browser.find_element(By.ID, "submit").click()
    state = wait_until(
        lambda: browser.execute_script(
            "const s = document.getElementById('upload-result').dataset.state;"
            "return s && s !== 'waiting' ? s : null;"
        ),
        timeout_s=60,
        what="the upload's result",
    )
    status = browser.find_element(By.ID, "upload-status").text
    assert state == "calibrated", status
    assert "added to the light curve" in status
    assert console_errors(browser) == []
    link = browser.find_element(By.ID, "observation-link").get_attribute("href")
    assert link.startswith(f"{page_url}/observations/")
    observation = system.client.get(
        f"/api/v1/observations/{int(link.rsplit('/', 1)[-1])}", headers=auth(system.observer_token)
    ).json()
    assert observation["status"] == "calibrated" and observation["point"] is not None
