"""An image observation's pictures: the PNG endpoints and the observation page in a real Chromium.

One simulated supernova on its host (template uploaded for the alert, so the frame is subtracted) and
the same frame for a second alert without a template. The endpoints are checked for their PNGs (type,
size, where the marks and the light are), their 4xx answers and their token rule; the page for its
thumbnail, the three cutouts side by side and the candidate list with its cutouts, as the browser
loads them.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cpcs.catalogs.importer import import_catalogue_file
from cpcs.catalogs.tiles import TileStore
from cpcs.science.subtraction.align import align_template
from cpcs.simulation.image_simulator import image_to_fits_bytes
from cpcs.simulation.reference_files import write_reference_tables
from cpcs.simulation.transient_simulator import EpochPair, simulate_epoch_pair
from cpcs_api.image_views import frame_facts
from cpcs_api.web.png import cutout, grey_levels
from tests.web.conftest import WebData, auth, wait_for
from tests.web.test_pages import console_errors, open_page, screenshot, wait_until

SN_ALERT = "ivo://CPCS-web-sn-on-host"
BARE_ALERT = "ivo://CPCS-web-no-template"
SHAPE = (512, 512)


@dataclass(frozen=True)
class ImageCase:
    pair: EpochPair
    subtracted_id: int
    bare_id: int
    candidates: list[dict[str, Any]]
    #: Index (in /candidates) of the accepted candidate at the transient.
    transient_index: int


def _alert(data: WebData, name: str, pair: EpochPair) -> int:
    where = pair.science.true_wcs.pixel_to_world(pair.transient_x[0], pair.transient_y[0])
    created = data.system.client.post(
        "/api/v1/alerts",
        json={"name": name, "ra_deg": float(where.ra.deg), "dec_deg": float(where.dec.deg)},
        headers=auth(data.system.observer_token),
    )
    assert created.status_code == 201, created.text
    return int(created.json()["id"])


def _upload(data: WebData, alert: str, pair: EpochPair) -> int:
    accepted = data.system.client.post(
        "/api/v1/uploads",
        data={"alert": alert, "force_filter": "PS1/r"},
        files={"file": ("science.fits", image_to_fits_bytes(pair.science))},
        headers=auth(data.system.observer_token),
    )
    assert accepted.status_code == 202, accepted.text
    return int(accepted.json()["observation_id"])


@pytest.fixture(scope="module")
def case(web_data: WebData, tmp_path_factory: pytest.TempPathFactory) -> ImageCase:
    pair = simulate_epoch_pair(1, shape=SHAPE, star_density=3.0, transient_snr=30.0)
    system = web_data.system
    store = TileStore(system.context.settings.catalogs_dir)
    refs = tmp_path_factory.mktemp("image-refs")
    for survey, path in write_reference_tables(pair.science.references.values(), refs).items():
        import_catalogue_file(store, survey, path, path.name)
    alert_id = _alert(web_data, SN_ALERT, pair)
    _alert(web_data, BARE_ALERT, pair)
    template = system.client.post(
        f"/api/v1/alerts/{alert_id}/templates",
        data={"filter": "r"},
        files={"file": ("template.fits", image_to_fits_bytes(pair.template))},
        headers=auth(system.observer_token),
    )
    assert template.status_code == 201, template.text
    subtracted_id = _upload(web_data, SN_ALERT, pair)
    bare_id = _upload(web_data, BARE_ALERT, pair)
    for observation_id in (subtracted_id, bare_id):
        assert wait_for(system, observation_id, system.observer_token, 300)["status"] == "calibrated"
    listed = system.client.get(
        f"/api/v1/observations/{subtracted_id}/candidates", headers=auth(system.observer_token)
    ).json()
    assert listed["status"] == "subtracted", listed
    candidates = listed["candidates"]
    distance = [
        np.hypot(c["x"] - pair.transient_x[0], c["y"] - pair.transient_y[0]) if c["accepted"] else np.inf
        for c in candidates
    ]
    assert candidates and min(distance) < 2.0, candidates
    return ImageCase(pair, subtracted_id, bare_id, candidates, int(np.argmin(distance)))


def _get(data: WebData, url: str, token: str | None = "observer", **params: Any) -> Any:
    tokens = {"observer": data.system.observer_token, "other": data.system.other_token}
    headers = {} if token is None else auth(tokens.get(token, token))
    return data.system.client.get(url, params=params, headers=headers)


def _png(response: Any) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))


def _url(observation_id: int, name: str) -> str:
    return f"/api/v1/observations/{observation_id}/{name}"


def test_the_thumbnail_marks_the_target_and_the_calibration_stars(web_data: WebData, case: ImageCase) -> None:
    url = _url(case.subtracted_id, "thumbnail.png")
    full = _png(_get(web_data, url))
    assert full.shape == (*SHAPE, 3)  # 512 px fits in 600: not reduced
    small = _png(_get(web_data, url, size=200))
    assert small.shape == (128, 128, 3)  # 512 / 200 -> a factor of 3, made even: 4

    def colour(picture: np.ndarray, rgb: tuple[int, int, int]) -> np.ndarray:
        return np.all(picture == np.array(rgb, dtype=np.uint8), axis=2)

    # The target's red cross sits around the transient (y flipped: row 0 is the frame's top).
    red_rows, red_cols = np.nonzero(colour(full, (255, 60, 60)))
    assert red_rows.size > 20
    tx, ty = case.pair.transient_x[0] + 0.5, SHAPE[0] - (case.pair.transient_y[0] + 0.5)
    assert abs(np.median(red_cols) - tx) < 2 and abs(np.median(red_rows) - ty) < 2
    # Calibration stars circled: many green rings, spread over the frame.
    green_rows, green_cols = np.nonzero(colour(full, (60, 220, 90)))
    assert green_rows.size > 200
    assert np.ptp(green_cols) > SHAPE[1] / 2 and np.ptp(green_rows) > SHAPE[0] / 2
    # Accepted candidates boxed in cyan, the transient's among them.
    cyan_rows, cyan_cols = np.nonzero(colour(full, (0, 200, 255)))
    assert np.min(np.hypot(cyan_cols - tx, cyan_rows - ty)) < 12

    # Drawn once, kept beside the products, read back the same.
    folder = web_data.system.context.settings.data_dir / "products" / str(case.subtracted_id)
    kept = sorted(p.name for p in folder.glob("view-thumbnail-*.png"))
    assert len(kept) == 2
    again = _get(web_data, url)
    assert again.content == _get(web_data, url).content and _png(again).shape == full.shape


def _centre(picture: np.ndarray, half: int = 1) -> float:
    ny, nx = picture.shape[:2]
    return float(picture[ny // 2 - half : ny // 2 + half + 1, nx // 2 - half : nx // 2 + half + 1, 0].mean())


def _border(picture: np.ndarray, width: int = 3) -> float:
    grey = picture[:, :, 0].astype(float)
    edge = np.concatenate(
        [grey[:width].ravel(), grey[-width:].ravel(), grey[:, :width].ravel(), grey[:, -width:].ravel()]
    )
    return float(np.median(edge))


def test_cutouts_of_the_target_science_template_difference(web_data: WebData, case: ImageCase) -> None:
    url = _url(case.subtracted_id, "cutout.png")
    science = _png(_get(web_data, url, image="science", size=48))
    template = _png(_get(web_data, url, image="template", size=48))
    difference = _png(_get(web_data, url, image="difference", size=48))
    for picture in (science, template, difference):
        assert picture.shape == (48, 48, 3)
    # Host and transient light the science cutout's centre; the difference keeps the transient only
    # (bright centre on a mid-grey, zero-level background).
    assert _centre(science) > _border(science) + 60
    assert _centre(difference) > 200 and abs(_border(difference) - 128) < 30
    # The cutouts are of the right pixels: the science one is the frame's, the template one the
    # template resampled with the simulator's true WCS (its noise included, so a shift would show).
    target = _get(web_data, _url(case.subtracted_id, "reduction")).json()["target"]
    x, y = target["x"], target["y"]
    science_levels = np.round(255 * grey_levels(cutout(case.pair.science.data, x, y, 128)))
    served = _png(_get(web_data, url, image="science", size=128))[::-1, :, 0]
    assert np.array_equal(served, science_levels)
    template = case.pair.template
    aligned = align_template(
        template.data,
        template.true_wcs.celestial,
        case.pair.science.true_wcs.celestial,
        SHAPE,
        template_noise=np.zeros(template.data.shape, np.float32),
    )
    expected = np.round(255 * grey_levels(cutout(aligned.data, x, y, 128)))
    served = _png(_get(web_data, url, image="template", size=128))[::-1, :, 0].astype(float)
    correlation = np.corrcoef(served.ravel(), expected.ravel())[0, 1]
    shifted = np.corrcoef(served[:, 2:].ravel(), expected[:, :-2].ravel())[0, 1]
    print(f"template cutout against the truth: correlation {correlation:.3f} (2 px off: {shifted:.3f})")
    assert correlation > 0.9 and shifted < correlation - 0.2

    # Around a candidate: the transient's cutouts, centred on it.
    around = _png(_get(web_data, url, image="difference", candidate=case.transient_index, size=32))
    assert around.shape == (32, 32, 3) and _centre(around) > 200


def test_bad_parameters_are_4xx_saying_what_to_fix(web_data: WebData, case: ImageCase) -> None:
    cutout, thumbnail = _url(case.subtracted_id, "cutout.png"), _url(case.subtracted_id, "thumbnail.png")
    for url, params in (
        (cutout, {"size": 8}),
        (cutout, {"size": 1000}),
        (cutout, {"size": "big"}),
        (cutout, {"image": "raw"}),
        (cutout, {"candidate": -1}),
        (thumbnail, {"size": 10}),
        (thumbnail, {"size": 601}),
    ):
        answer = _get(web_data, url, **params)
        assert answer.status_code == 422, (url, params, answer.text)
        assert answer.headers["content-type"].startswith("application/json")
    beyond = _get(web_data, cutout, candidate=len(case.candidates))
    assert beyond.status_code == 422 and beyond.json()["error"] == "candidate_out_of_range"
    assert f"has {len(case.candidates)} candidate(s)" in beyond.json()["message"]

    # No subtraction: the science cutout exists, the template and the difference do not.
    bare = _url(case.bare_id, "cutout.png")
    assert _png(_get(web_data, bare, image="science")).shape == (64, 64, 3)
    for image in ("template", "difference"):
        missing = _get(web_data, bare, image=image)
        assert missing.status_code == 404 and missing.json()["error"] == "no_difference_image"
    assert _get(web_data, bare, image="science", candidate=0).json()["error"] == "candidate_out_of_range"
    # A catalogue has no pixels; an observation that does not exist is 404 too.
    catalogue = _get(web_data, _url(web_data.observation_ids[0], "thumbnail.png"))
    assert catalogue.status_code == 404 and catalogue.json()["error"] == "not_an_image"
    assert _get(web_data, _url(987654, "cutout.png")).status_code == 404


def test_pixels_need_a_valid_token(web_data: WebData, case: ImageCase) -> None:
    for name in ("thumbnail.png", "cutout.png"):
        url = _url(case.subtracted_id, name)
        for token in (None, "not-a-token-of-this-server-0123456789"):
            refused = _get(web_data, url, token=token)
            assert refused.status_code == 401, refused.text
            assert not refused.content.startswith(b"\x89PNG")
        # Any observer's token, as for the difference image and the measured sources (TOKEN rule).
        assert _png(_get(web_data, url, token="other")).size > 0


def _loaded(browser: Any, selector: str) -> list[int]:
    return list(
        browser.execute_script(
            "return Array.from(document.querySelectorAll(arguments[0]))"
            ".map(i => i.complete && i.dataset.state === 'loaded' ? i.naturalWidth : 0);",
            selector,
        )
    )


def test_the_observation_page_shows_the_frame_cutouts_and_candidates(
    web_data: WebData, case: ImageCase, browser: Any
) -> None:
    browser.get_log("browser")
    open_page(browser, f"{web_data.base_url}/observations/{case.subtracted_id}")
    # Without a token nothing is fetched; with one every visible picture loads.
    assert _loaded(browser, "#thumbnail") == [0]
    field = browser.find_element("id", "pixels-token")
    field.clear()
    field.send_keys(web_data.system.observer_token)
    browser.find_element("id", "pixels-remember").click()  # kept for this tab: the next page loads alone
    browser.find_element("id", "pixels-show").click()
    wait_until(lambda: _loaded(browser, "#thumbnail") == [512], what="the thumbnail")
    wait_until(lambda: _loaded(browser, "#target-cutouts img") == [64, 64, 64], what="the three cutouts")
    captions = [e.text for e in browser.find_elements("css selector", "#target-cutouts figcaption")]
    assert captions == ["Science", "Template (aligned)", "Difference"]
    # Side by side: one row, left to right.
    boxes = browser.execute_script(
        "return Array.from(document.querySelectorAll('#target-cutouts img'))"
        ".map(i => [i.getBoundingClientRect().top, i.getBoundingClientRect().left]);"
    )
    tops, lefts = [b[0] for b in boxes], [b[1] for b in boxes]
    assert max(tops) - min(tops) < 1 and lefts == sorted(lefts)

    rows = browser.find_elements("css selector", "#candidates tbody tr")
    assert len(rows) == len(case.candidates)
    transient = case.candidates[case.transient_index]
    row = browser.find_element("css selector", f"#candidates tr[data-candidate='{case.transient_index}']")
    cells = [td.text for td in row.find_elements("tag name", "td")]
    assert f"{transient['snr']:.1f}" in cells and f"{transient['mag']:.2f}" in cells and "yes" in cells
    browser.execute_script("arguments[0].scrollIntoView();", row)
    selector = f"#candidates tr[data-candidate='{case.transient_index}'] img"
    wait_until(lambda: _loaded(browser, selector) == [32, 32, 32], what="the candidate's cutouts")
    rejected = [c for c in case.candidates if not c["accepted"]]
    assert rejected  # the simulator's cosmic rays and hot pixels give some; each says why
    reasons = browser.find_elements("css selector", "#candidates tr.rejected td:last-child")
    assert len(reasons) == len(rejected) and all(r.text and r.text != "—" for r in reasons)
    for candidate, shown in zip(rejected, reasons, strict=True):
        assert all(reason in shown.text for reason in candidate["reasons"])
    browser.execute_script("window.scrollTo(0, 0);")
    screenshot(browser, "page-observation-image", full_page=True)
    assert console_errors(browser) == []

    # The same frame with no template: the science cutout and a note, no template or difference.
    open_page(browser, f"{web_data.base_url}/observations/{case.bare_id}")
    wait_until(lambda: _loaded(browser, "#target-cutouts img") == [64], what="the science cutout")
    note = browser.find_element("id", "no-subtraction").text
    assert "no template" in note
    assert not browser.find_elements("id", "candidates")
    assert console_errors(browser) == []


def test_a_thumbnail_whose_stars_cannot_be_had_is_drawn_but_not_kept(
    web_data: WebData, case: ImageCase
) -> None:
    folder = web_data.system.context.settings.data_dir / "products" / str(case.bare_id)
    sources, away = folder / "sources.fits", folder / "sources.fits.away"
    url = _url(case.bare_id, "thumbnail.png")
    green, red = np.array((60, 220, 90), dtype=np.uint8), np.array((255, 60, 60), dtype=np.uint8)
    with web_data.system.context.db.transaction() as session:
        facts = frame_facts(session, case.bare_id)
    kept = folder / f"view-thumbnail-{facts.cache_key('thumbnail', facts.calibration_id, 300)}.png"
    sources.rename(away)  # the measured table the stars are recomputed from is missing
    try:
        picture = _png(_get(web_data, url, size=300))
        assert picture.shape == (256, 256, 3)  # 512 / 300 -> 2
        assert not np.all(picture == green, axis=2).any() and np.all(picture == red, axis=2).any()
        assert not kept.exists()
    finally:
        away.rename(sources)
    picture = _png(_get(web_data, url, size=300))
    assert np.all(picture == green, axis=2).sum() > 50  # drawn again, with the stars this time
    assert kept.exists() and kept.read_bytes() == _get(web_data, url, size=300).content


def test_a_frame_whose_file_is_gone_answers_404_not_500(web_data: WebData, case: ImageCase) -> None:
    sha256 = _get(web_data, f"/api/v1/observations/{case.bare_id}").json()["upload_sha256"]
    stored = web_data.system.context.files.path_for(sha256)
    away = stored.with_name(stored.name + ".away")
    stored.rename(away)
    try:
        gone = _get(web_data, _url(case.bare_id, "cutout.png"), image="science", size=20)  # never drawn
        assert gone.status_code == 404 and gone.json()["error"] == "pixels_gone"
    finally:
        away.rename(stored)
    assert _png(_get(web_data, _url(case.bare_id, "cutout.png"), image="science", size=20)).shape == (
        20,
        20,
        3,
    )
