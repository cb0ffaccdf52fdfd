"""The web pages in a real headless Chromium, against the embedded system served by uvicorn.

Every page loads with no console error; the light curve draws one marker per point, its hover names
the observer, magnitude and filter, and its legend hides and shows a filter; the observation page
draws the calibration plots from the recomputed stars; the upload form runs a dry run. Screenshots go
to tests/artifacts/.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cpcs.catalogs.importer import import_catalogue_file
from cpcs.catalogs.tiles import TileStore
from cpcs.domain import alerts as alert_store
from cpcs.simulation.catalogue_simulator import SimulatedField
from cpcs.simulation.image_simulator import image_to_fits_bytes, simulate_image
from cpcs.simulation.reference_files import write_reference_tables
from tests.conftest import FIELD_DEC_DEG, FIELD_RA_DEG, System
from tests.web.conftest import ALERT, ARTIFACTS, WebData, auth, catalogue_bytes, wait_for

POINTS_JS = "return document.querySelectorAll('#lightcurve .scatterlayer .trace .points path.point').length;"


def wait_until(condition: Callable[[], Any], timeout_s: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def console_errors(driver: Any) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def open_page(driver: Any, url: str, ready_js: str | None = None) -> None:
    driver.get(url)
    wait_until(lambda: driver.execute_script("return document.readyState") == "complete", what=url)
    if ready_js:
        wait_until(lambda: driver.execute_script(ready_js), what=f"{url}: {ready_js}")


def screenshot(driver: Any, name: str, full_page: bool = False) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    if full_page:
        height = min(int(driver.execute_script("return document.documentElement.scrollHeight")), 5000)
        driver.set_window_size(1280, max(height, 1000))
        time.sleep(0.3)  # plotly resizes its responsive plots
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))
    if full_page:
        driver.set_window_size(1280, 1000)


def test_every_page_loads_without_console_errors(web_data: WebData, browser: Any) -> None:
    base = web_data.base_url
    pages = {
        "alerts": (f"{base}/alerts", None),
        "alerts-observed": (f"{base}/alerts?observed=true&q=Gaia", None),
        "alert": (
            f"{base}/alerts/{web_data.alert_id}",
            "return document.getElementById('lightcurve').dataset.ready",
        ),
        "observation": (
            f"{base}/observations/{web_data.observation_ids[0]}",
            "return document.body.dataset.plotsReady",
        ),
        "observation-limit": (
            f"{base}/observations/{web_data.observation_ids[-1]}",
            "return document.body.dataset.plotsReady",
        ),
        "upload": (f"{base}/upload?alert={ALERT}", None),
        "observatories": (f"{base}/observatories", None),
    }
    browser.get_log("browser")
    for name, (url, ready) in pages.items():
        open_page(browser, url, ready)
        assert console_errors(browser) == [], name
        nav = browser.execute_script(
            "return Array.from(document.querySelectorAll('header nav a')).map(a => a.textContent.trim());"
        )
        assert nav == ["Alerts", "Observatories", "Upload", "API docs"], name
        # Nothing from another host: every script and style is ours.
        sources = browser.execute_script(
            "return Array.from(document.querySelectorAll('script[src], link[href]'))"
            ".map(e => e.getAttribute('src') || e.getAttribute('href'));"
        )
        assert all(s.startswith("/static/") for s in sources), (name, sources)
        screenshot(browser, f"page-{name}", full_page=name.startswith("observation"))

    open_page(browser, f"{base}/alerts?observed=true")
    rows = browser.execute_script(
        "return Array.from(document.querySelectorAll('#alerts tbody tr td:first-child a'))"
        ".map(a => a.textContent);"
    )
    assert rows == [ALERT]
    open_page(browser, f"{base}/observatories")
    text = browser.find_element("id", "observatories").text
    assert "Ostrowik 0.6m" in text and "pt5m La Palma" in text


def test_light_curve_points_hover_and_legend(web_data: WebData, browser: Any) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    n_points = len(web_data.light_curve)
    per_band = web_data.bands()
    assert n_points == 6 and per_band == {"r": 3, "V": 3}
    open_page(
        browser,
        f"{web_data.base_url}/alerts/{web_data.alert_id}",
        "return document.getElementById('lightcurve').dataset.ready",
    )
    browser.get_log("browser")
    assert browser.execute_script(POINTS_JS) == n_points
    traces = browser.execute_script(
        "return document.getElementById('lightcurve').data.map(t => "
        "({name: t.name, group: t.legendgroup, n: t.x.length,"
        " symbol: t.marker.symbol, colour: t.marker.color}));"
    )
    assert sum(t["n"] for t in traces) == n_points
    limits = [t for t in traces if t["symbol"] == "triangle-down"]
    assert [(t["group"], t["n"]) for t in limits] == [("V", 1)]
    colours = {t["group"]: t["colour"] for t in traces}
    assert len(set(colours.values())) == len(per_band)  # one colour per filter
    assert all(t["colour"] == colours[t["group"]] for t in traces)  # a filter's limits share its colour

    # Hover the second V detection (the pt5m observer's) and read plotly's hover label.
    index = next(i for i, t in enumerate(traces) if t["group"] == "V" and t["symbol"] == "circle")
    expected = browser.execute_script(
        "const t = document.getElementById('lightcurve').data[arguments[0]];"
        "return {observer: t.customdata[1][0], mag: t.y[1], band: t.customdata[1][6]};",
        index,
    )
    point = browser.find_elements(By.CSS_SELECTOR, "#lightcurve .scatterlayer .trace")[index].find_elements(
        By.CSS_SELECTOR, "path.point"
    )[1]
    ActionChains(browser).move_to_element(point).pause(0.2).move_by_offset(1, 0).perform()
    hover = wait_until(
        lambda: browser.execute_script(
            "const h = document.querySelector('#lightcurve .hoverlayer .hovertext');"
            "return h && h.textContent;"
        ),
        what="the hover label",
    )
    assert expected["observer"] == "L. Hardy"
    assert "L. Hardy" in hover and f"{expected['mag']:.3f}" in hover and "V = " in hover, hover
    screenshot(browser, "lightcurve-hover")

    # The legend toggles a filter: its detections and its limits disappear, then come back.
    def legend_entry(name: str) -> Any:
        for item in browser.find_elements(By.CSS_SELECTOR, "#lightcurve .legend .traces"):
            if item.find_element(By.CSS_SELECTOR, "text.legendtext").text == name:
                return item.find_element(By.CSS_SELECTOR, "rect.legendtoggle")
        raise AssertionError(f"no legend entry {name}")

    ActionChains(browser).move_by_offset(0, 400).perform()  # leave the plot area
    legend_entry("V").click()
    wait_until(lambda: browser.execute_script(POINTS_JS) == n_points - per_band["V"], what="V hidden")
    hidden = browser.execute_script(
        "return document.getElementById('lightcurve').data.filter(t => t.visible === 'legendonly')"
        ".map(t => t.legendgroup);"
    )
    assert hidden == ["V", "V"]
    screenshot(browser, "lightcurve-V-hidden")
    legend_entry("V").click()
    wait_until(lambda: browser.execute_script(POINTS_JS) == n_points, what="V shown again")

    # Zoom: a drag on the plot narrows the time axis.
    before = browser.execute_script(
        "return document.getElementById('lightcurve').layout.xaxis.range.slice();"
    )
    drag = browser.find_element(By.CSS_SELECTOR, "#lightcurve .nsewdrag")
    ActionChains(browser).move_to_element_with_offset(drag, -150, 0).click_and_hold().move_by_offset(
        200, 40
    ).release().perform()
    after = wait_until(
        lambda: (
            (
                r := browser.execute_script(
                    "return document.getElementById('lightcurve').layout.xaxis.range.slice();"
                )
            )
            != before
            and r
        ),
        what="the zoom",
    )
    assert after[1] - after[0] < before[1] - before[0]
    assert console_errors(browser) == []
    screenshot(browser, "lightcurve")


def test_observation_page_draws_the_calibration(web_data: WebData, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    system = web_data.system
    observation_id = web_data.observation_ids[0]
    stored = system.client.get(
        f"/api/v1/observations/{observation_id}", headers=auth(system.observer_token)
    ).json()
    calibration = stored["calibration"]
    open_page(
        browser,
        f"{web_data.base_url}/observations/{observation_id}",
        "return document.body.dataset.plotsReady",
    )
    for plot in ("plot-chosen", "plot-colour", "plot-position"):
        assert browser.find_element(By.ID, plot).find_elements(By.CSS_SELECTOR, ".main-svg"), plot
    panels = browser.find_elements(By.CSS_SELECTOR, "#band-panels .plot-panel")
    data = browser.execute_script(
        "return JSON.parse(document.getElementById('calibration-data').textContent);"
    )
    labels = {p.get_attribute("data-label") for p in panels}
    assert len(panels) == len(data["bands"]) >= 8  # PS1 griz (and BVRI from them), GaiaSP BVRI
    tried = [a for a in calibration["alternatives"] if not a["reason"].startswith("not tried")]
    assert {f"{a['survey']}/{a['band']}" for a in tried} <= labels  # surveys outside the sky: no panel
    chosen = browser.find_elements(By.CSS_SELECTOR, "#band-panels .plot-panel.chosen")
    assert [p.get_attribute("data-label") for p in chosen] == [
        f"{calibration['survey']}/{calibration['band']}"
    ]
    # The recomputed fit is the stored one: the same stars used, the same zero point and colour term.
    used = browser.execute_script("return document.getElementById('plot-chosen').data[0].x.length;")
    assert used == calibration["n_stars"]
    chosen_entry = next(b for b in data["bands"] if b["chosen"])
    assert chosen_entry["zp"] == pytest.approx(calibration["zp"], abs=1e-4)
    assert chosen_entry["colour_term"] == pytest.approx(calibration["colour_term"], abs=1e-4)
    rows = browser.find_elements(By.CSS_SELECTOR, "#alternatives tbody tr")
    assert len(rows) == len(calibration["alternatives"])
    chosen_rows = browser.find_elements(By.CSS_SELECTOR, "#alternatives tbody tr.chosen")
    assert len(chosen_rows) == 1 and f"{calibration['survey']}/{calibration['band']}" in chosen_rows[0].text
    assert "=" in browser.find_element(By.ID, "result").text
    assert browser.find_elements(By.ID, "plots-mismatch") == []
    assert console_errors(browser) == []

    open_page(
        browser,
        f"{web_data.base_url}/observations/{web_data.observation_ids[-1]}",
        "return document.body.dataset.plotsReady",
    )
    assert "upper limit" in browser.find_element(By.ID, "result").text
    assert console_errors(browser) == []


def test_upload_form_dry_run(web_data: WebData, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    system = web_data.system
    open_page(browser, f"{web_data.base_url}/upload?alert={ALERT}")
    browser.get_log("browser")
    assert browser.find_element(By.ID, "alert").get_attribute("value") == ALERT
    dry_run = browser.find_element(By.ID, "dry_run")
    assert not dry_run.is_selected()  # an upload is real unless the observer asks for a trial
    dry_run.click()
    token = browser.find_element(By.ID, "token")
    token.clear()  # the page may remember an earlier token for this tab
    token.send_keys(system.other_token)
    browser.find_element(By.ID, "file").send_keys(str(web_data.catalogue_path))
    browser.find_element(By.ID, "mjd").send_keys("57750.5")
    browser.find_element(By.ID, "exptime_s").send_keys("90")
    browser.find_element(By.ID, "filter").send_keys("V")
    browser.find_element(By.ID, "force_filter").send_keys("GaiaSP/V")
    browser.find_element(By.ID, "remember").click()
    browser.find_element(By.ID, "submit").click()
    state = wait_until(
        lambda: browser.execute_script(
            "const s = document.getElementById('upload-result').dataset.state;"
            "return s && s !== 'waiting' ? s : null;"
        ),
        timeout_s=30,
        what="the upload's result",
    )
    status = browser.find_element(By.ID, "upload-status").text
    assert state == "calibrated", status
    assert re.match(r"V = \d+\.\d{3} ± \d\.\d{3} — dry run", status), status
    # "Remember" keeps the token for this tab only, never in the browser's lasting storage.
    kept = browser.execute_script(
        "return [window.sessionStorage.getItem('cpcs-token'), window.localStorage.getItem('cpcs-token')];"
    )
    assert kept == [system.other_token, None]
    link = browser.find_element(By.ID, "observation-link").get_attribute("href")
    observation_id = int(link.rsplit("/", 1)[-1])
    assert observation_id not in web_data.observation_ids
    assert console_errors(browser) == []
    screenshot(browser, "upload-dry-run", full_page=True)

    stored = system.client.get(
        f"/api/v1/observations/{observation_id}", headers=auth(system.other_token)
    ).json()
    assert stored["dry_run"] is True and stored["point"] is None and stored["filter_declared"] == "V"
    curve = system.client.get(
        f"/api/v1/alerts/{web_data.alert_id}/lightcurve", headers=auth(system.other_token)
    ).json()
    assert len(curve["points"]) == len(web_data.light_curve)  # a dry run adds no point

    # Its observation page works too (a dry run's calibration has plots, no point).
    open_page(browser, link, "return document.body.dataset.plotsReady")
    assert "dry run" in browser.find_element(By.TAG_NAME, "h1").text
    assert console_errors(browser) == []


def test_upload_form_says_when_nothing_was_added(
    web_data: WebData, browser: Any, gaia16aye_field: SimulatedField, tmp_path: Path
) -> None:
    """The same file twice (no dry run): added the first time; the second time the page says it was
    uploaded before and nothing was added, and with a corrected time that the point was corrected."""
    from selenium.webdriver.common.by import By

    system = web_data.system
    frame = tmp_path / "twice.cat"
    frame.write_bytes(catalogue_bytes(gaia16aye_field, 0.437))  # bytes nobody sent before

    def send(mjd: str) -> str:
        open_page(browser, f"{web_data.base_url}/upload?alert={ALERT}")
        browser.get_log("browser")
        if browser.find_element(By.ID, "dry_run").is_selected():
            browser.find_element(By.ID, "dry_run").click()
        token = browser.find_element(By.ID, "token")
        token.clear()  # the page may remember an earlier token for this tab
        token.send_keys(system.other_token)
        browser.find_element(By.ID, "file").send_keys(str(frame))
        browser.find_element(By.ID, "mjd").send_keys(mjd)
        browser.find_element(By.ID, "submit").click()
        state = wait_until(
            lambda: browser.execute_script(
                "const s = document.getElementById('upload-result').dataset.state;"
                "return s && s !== 'waiting' ? s : null;"
            ),
            timeout_s=30,
            what="the upload's result",
        )
        status: str = browser.find_element(By.ID, "upload-status").text
        assert state == "calibrated", status
        assert console_errors(browser) == []
        return status

    assert send("57751.5").endswith("— added to the light curve")
    again = send("57751.5")
    assert "you uploaded this file before: nothing was added" in again and "corrected" not in again
    fixed = send("57751.6")
    assert "your existing point was corrected (mjd), nothing was added" in fixed
    screenshot(browser, "upload-corrected", full_page=True)
    points = system.client.get(
        "/api/v1/points",
        params={"alert_id": web_data.alert_id, "mine": True},
        headers=auth(system.other_token),
    ).json()["items"]
    [mine] = [p for p in points if p["mjd"] == 57751.6]
    assert not [p for p in points if p["mjd"] == 57751.5]
    # Leave the light curve as the other tests know it.
    assert (
        system.client.delete(f"/api/v1/points/{mine['id']}", headers=auth(system.other_token)).status_code
        == 200
    )


def test_alert_list_pages_and_search(embedded: System) -> None:
    client = embedded.client
    with embedded.context.db.transaction() as session:
        for number in range(30):
            alert_store.create_alert(session, f"ivo://Test{number:02d}", 10.0 + number, -5.0, None)
        alert_store.create_alert(session, "ivo://Gaia16aye", 295.0, 30.1, None)
    first = client.get("/alerts")
    assert first.status_code == 200 and "Alerts 1–25 of 31" in first.text and 'rel="next"' in first.text
    assert first.text.index("ivo://Gaia16aye") < first.text.index("ivo://Test29")  # newest first
    second = client.get("/alerts?page=2")
    assert (
        "Alerts 26–31 of 31" in second.text and 'rel="prev"' in second.text and "ivo://Test00" in second.text
    )
    found = client.get("/alerts", params={"q": "Test1"})
    assert "of 10" in found.text and "ivo://Test15" in found.text and "ivo://Gaia16aye" not in found.text
    assert "No alerts match" in client.get("/alerts?observed=true").text
    assert client.get("/alerts/999").status_code == 404
    assert client.get("/observations/999").status_code == 404
    home = client.get("/", follow_redirects=False)
    assert home.status_code == 302 and home.headers["location"] == "/alerts"
    # An alert name with markup is shown as text.
    with embedded.context.db.transaction() as session:
        alert_store.create_alert(session, "ivo://<b>x</b>", 1.0, 1.0, None)
    assert "ivo://&lt;b&gt;x&lt;/b&gt;" in client.get("/alerts").text


def test_static_files_are_served_compressed_and_cached(embedded: System) -> None:
    client = embedded.client
    page = client.get("/upload").text
    css_url = re.search(r'href="(/static/cpcs\.css\?v=[0-9a-f]+)"', page)
    assert css_url is not None
    css = client.get(css_url.group(1), headers={"Accept-Encoding": "gzip"})
    assert css.status_code == 200 and css.headers["content-encoding"] == "gzip"
    assert "immutable" in css.headers["cache-control"] and css.text.startswith("/* CPCS")
    again = client.get(css_url.group(1), headers={"If-None-Match": css.headers["etag"]})
    assert again.status_code == 304
    plotly = client.get("/static/plotly.min.js")
    assert plotly.status_code == 200 and plotly.headers["content-type"].startswith("text/javascript")
    assert "plotly.js" in plotly.text[:200]
    assert client.get("/static/../app.py").status_code == 404
    assert client.get("/static/missing.js").status_code == 404


def test_observation_page_of_an_image(embedded: System, tmp_path: Path) -> None:
    """An image's calibration plots come from the source table reduce measured."""
    image = simulate_image(3, shape=(1024, 1024), target="bright")
    client = embedded.client
    created = client.post(
        "/api/v1/alerts",
        json={"name": ALERT, "ra_deg": FIELD_RA_DEG, "dec_deg": FIELD_DEC_DEG},
        headers=auth(embedded.observer_token),
    )
    assert created.status_code == 201
    store = TileStore(embedded.context.settings.catalogs_dir)
    for survey, path in write_reference_tables(image.references.values(), tmp_path).items():
        import_catalogue_file(store, survey, path, path.name)
    accepted = client.post(
        "/api/v1/uploads",
        data={"alert": ALERT, "force_filter": "PS1/r"},
        files={"file": ("frame.fits", image_to_fits_bytes(image))},
        headers=auth(embedded.observer_token),
    )
    assert accepted.status_code == 202, accepted.text
    observation = wait_for(embedded, accepted.json()["observation_id"], embedded.observer_token)
    assert observation["status"] == "calibrated", observation
    page = client.get(f"/observations/{observation['id']}")
    assert page.status_code == 200
    quality = re.search(r'id="image-quality">(.*?)</table>', page.text, re.S)
    assert quality is not None, page.text
    fwhm = re.search(r"<th>FWHM</th><td class=\"num\">([0-9.]+) px", quality.group(1))
    assert fwhm is not None and abs(float(fwhm.group(1)) - 3.5) < 0.5, quality.group(1)
    assert "Astrometric rms" in quality.group(1) and "Airmass" in quality.group(1)
    embedded_json = re.search(r'id="calibration-data">(.*?)</script>', page.text, re.S)
    assert embedded_json is not None, page.text
    data = json.loads(embedded_json.group(1))
    chosen = next(b for b in data["bands"] if b["chosen"])
    assert chosen["label"] == "PS1/r" and chosen["n_used"] == observation["calibration"]["n_stars"]
    assert sum(chosen["used"]) == chosen["n_used"]


def test_failed_observation_and_unsafe_links(embedded: System, gaia16aye_field: SimulatedField) -> None:
    client = embedded.client
    embedded.import_field(gaia16aye_field, embedded.context.settings.data_dir / "refs")
    created = client.post(
        "/api/v1/alerts",
        json={"name": ALERT, "ra_deg": FIELD_RA_DEG, "dec_deg": FIELD_DEC_DEG, "url": "javascript:alert(1)"},
        headers=auth(embedded.observer_token),
    )
    assert created.status_code == 201
    alert_page = client.get(f"/alerts/{created.json()['id']}")
    assert "javascript:alert(1)" in alert_page.text and 'href="javascript' not in alert_page.text
    assert "No calibrated points yet" in alert_page.text and "plotly" not in alert_page.text
    accepted = client.post(
        "/api/v1/uploads",
        data={"alert": ALERT, "mjd": "57737.8", "force_filter": "SDSS/u"},
        files={"file": ("frame.cat", catalogue_bytes(gaia16aye_field, 0.0))},
        headers=auth(embedded.observer_token),
    )
    assert accepted.status_code == 202, accepted.text
    observation = wait_for(embedded, accepted.json()["observation_id"], embedded.observer_token)
    assert observation["status"] == "failed"
    page = client.get(f"/observations/{observation['id']}")
    assert page.status_code == 200
    assert 'id="observation-error"' in page.text and "forced_band_unavailable" in page.text
    assert "calibration-data" not in page.text
