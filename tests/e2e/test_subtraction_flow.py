"""Image subtraction end to end: a template uploaded for the alert, then the science frame through
the v1 and the legacy uploads; the transient on its bright host measured on the difference."""

from __future__ import annotations

import dataclasses
import io
import time

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from cpcs.catalogs.importer import import_catalogue_file
from cpcs.catalogs.tiles import TileStore
from cpcs.simulation.image_simulator import image_to_fits_bytes
from cpcs.simulation.reference_files import write_reference_tables
from cpcs.simulation.transient_simulator import EpochPair, add_point_sources, simulate_epoch_pair
from tests.conftest import System

ALERT = "ivo://CPCS-sn-on-host"


@pytest.fixture(scope="module")
def pair() -> EpochPair:
    return simulate_epoch_pair(1, shape=(512, 512), star_density=3.0, transient_snr=30.0)


def _bearer(system: System) -> dict[str, str]:
    return {"Authorization": f"Bearer {system.observer_token}"}


def _prepare(system: System, pair: EpochPair, tmp_path) -> int:
    where = pair.science.true_wcs.pixel_to_world(pair.transient_x[0], pair.transient_y[0])
    created = system.client.post(
        "/api/v1/alerts",
        json={"name": ALERT, "ra_deg": float(where.ra.deg), "dec_deg": float(where.dec.deg)},
        headers=_bearer(system),
    )
    assert created.status_code == 201, created.text
    store = TileStore(system.context.settings.catalogs_dir)
    for survey, path in write_reference_tables(pair.science.references.values(), tmp_path / "refs").items():
        import_catalogue_file(store, survey, path, path.name)
    alert_id = int(created.json()["id"])
    template = system.client.post(
        f"/api/v1/alerts/{alert_id}/templates",
        data={"filter": "r"},
        files={"file": ("template.fits", image_to_fits_bytes(pair.template))},
        headers=_bearer(system),
    )
    assert template.status_code == 201, template.text
    return int(template.json()["id"])


def _wait(system: System, url: str) -> dict:
    deadline = time.monotonic() + 300
    while (observation := system.client.get(url, headers=_bearer(system)).json())["status"] == "received":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert observation["status"] == "calibrated", observation
    return observation


def _check_subtraction(system: System, url: str, pair: EpochPair, template_id: int) -> None:
    reduction = system.client.get(f"{url}/reduction", headers=_bearer(system)).json()
    step = reduction["subtraction"]
    assert step["status"] == "subtracted", step
    assert step["template"]["id"] == template_id and step["template"]["source"] == "upload"
    assert step["coverage"] > 0.9
    assert {"align", "subtract", "target", "candidates", "total"} <= set(step["timings_ms"])
    assert reduction["timings_ms"]["subtraction"] == step["timings_ms"]["total"]
    print(f"subtraction step timings (ms): {step['timings_ms']}")

    calibrations = system.client.get(f"{url}/calibrations", headers=_bearer(system)).json()
    current = calibrations[-1]
    difference = current["difference"]
    assert difference["measurement"] == "difference" and difference["template"]["id"] == template_id
    assert difference["zp"] == pytest.approx(current["zp"])
    observation = system.client.get(url, headers=_bearer(system)).json()
    direct_mag = observation["point"]["mag"]
    truth = float(pair.transient_mag[0])
    print(f"difference {difference['mag']:.4f}, direct {direct_mag:.4f}, truth {truth:.4f}")
    # S/N 30 on a 13th-magnitude host: the difference within 0.06 mag of the truth (measured: -0.047),
    # the direct measurement far too bright (the host's light in it).
    assert abs(difference["mag"] - truth) < 0.06
    assert difference["snr"] > 20 and not difference["is_upper_limit"]
    assert direct_mag < truth - 0.3

    # The light curve's point is the direct one and carries the difference; exports give both rows.
    curve = system.client.get(f"/api/v1/alerts/{observation['alert_id']}/lightcurve", headers=_bearer(system))
    (point,) = curve.json()["points"]
    assert point["measurement"] == "direct" and point["difference"]["mag"] == difference["mag"]
    exported = system.client.get(
        f"/api/v1/alerts/{observation['alert_id']}/export", params={"format": "ecsv"}, headers=_bearer(system)
    )
    table = Table.read(exported.text, format="ascii.ecsv")
    assert list(table["measurement"]) == ["direct", "difference"]
    assert table["mag"][0] == pytest.approx(direct_mag) and table["mag"][1] == pytest.approx(
        difference["mag"]
    )
    assert table["template_id"][1] == template_id and bool(table["template_id"].mask[0])

    for product in ("difference", "noise"):
        download = system.client.get(
            f"{url}/difference", params={"product": product}, headers=_bearer(system)
        )
        assert download.status_code == 200
        image = fits.getdata(io.BytesIO(download.content))
        assert image.shape == pair.science.data.shape
    candidates = system.client.get(f"{url}/candidates", headers=_bearer(system)).json()
    assert candidates["status"] == "subtracted" and candidates["template_id"] == template_id
    accepted = [c for c in candidates["candidates"] if c["accepted"]]
    near = [c for c in accepted if np.hypot(c["x"] - pair.transient_x[0], c["y"] - pair.transient_y[0]) < 2.0]
    assert near, accepted
    assert near[0]["mag"] is not None and abs(near[0]["mag"] - truth) < 0.5  # one-FWHM aperture flux
    assert near[0]["shape_outlier"] is False and near[0]["shape_score"] > 0
    assert set(near[0]["shape"]) == {
        "size_ratio",
        "elongation",
        "sharpness",
        "negative_fraction",
        "concentration",
    }
    assert all(c["reasons"] for c in candidates["candidates"] if not c["accepted"] and c["snr"] >= 5)


def test_transient_on_its_host_through_the_v1_upload(embedded: System, pair: EpochPair, tmp_path) -> None:
    template_id = _prepare(embedded, pair, tmp_path)
    accepted = embedded.client.post(
        "/api/v1/uploads",
        data={"alert": ALERT, "force_filter": "PS1/r"},
        files={"file": ("science.fits", image_to_fits_bytes(pair.science))},
        headers=_bearer(embedded),
    )
    assert accepted.status_code == 202, accepted.text
    url = accepted.json()["status_url"]
    _wait(embedded, url)
    _check_subtraction(embedded, url, pair, template_id)

    # A recalibration (another match radius) calibrates the difference again, on its own zero point.
    again = embedded.client.post(
        f"{url}/recalibrate", json={"match_radius_arcsec": 1.5}, headers=_bearer(embedded)
    )
    assert again.status_code == 202, again.text
    deadline = time.monotonic() + 120
    while len(versions := embedded.client.get(f"{url}/calibrations", headers=_bearer(embedded)).json()) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    newest = versions[-1]
    assert newest["params"]["match_radius_arcsec"] == 1.5
    assert newest["difference"]["zp"] == pytest.approx(newest["zp"])
    assert abs(newest["difference"]["mag"] - float(pair.transient_mag[0])) < 0.06
    point = embedded.client.get(url, headers=_bearer(embedded)).json()["point"]
    assert point["calibration_id"] == newest["id"] and point["difference"] == newest["difference"]


def test_transient_on_its_host_through_the_legacy_upload(embedded: System, pair: EpochPair, tmp_path) -> None:
    template_id = _prepare(embedded, pair, tmp_path)
    response = embedded.client.post(
        "/followup/cgi/upload",
        data={
            "EventID": ALERT,
            "hashtag": embedded.observer_token,
            "outputFormat": "json",
            "forceFilter": "PS1/r",
        },
        files={"fitsFile": ("science.fits", image_to_fits_bytes(pair.science))},
    )
    assert response.status_code == 200, response.text
    url = response.json()["image_link"]
    _wait(embedded, url)
    _check_subtraction(embedded, url, pair, template_id)


def _assert_no_template_offline(reduction: dict) -> None:
    """No template of our own and offline: no survey template either, and the record says so."""
    step = reduction["subtraction"]
    assert step["status"] == "no_template" and "offline" in step["note"], step


def _new_source(pair: EpochPair, mag: float) -> tuple[EpochPair, float, float]:
    """The science frame with a point source of r = ``mag`` where nothing else shines."""
    science = pair.science
    assert science.model_adu is not None
    light = science.model_adu - science.truth.sky_e_per_pix / science.truth.gain_e_per_adu
    for y in range(60, 450, 17):
        for x in range(60, 450, 17):
            if float(light[y - 12 : y + 13, x - 12 : x + 13].max()) < 5.0:
                flux = 10 ** (-0.4 * (mag - science.truth.zp))
                image = add_point_sources(
                    science, np.array([x + 0.3]), np.array([y - 0.2]), np.array([flux]), seed=5
                )
                return dataclasses.replace(pair, science=image), x + 0.3, y - 0.2
    raise AssertionError("no empty place on the simulated frame")


def test_no_template_catalogue_candidates(embedded: System, pair: EpochPair, tmp_path) -> None:
    where = pair.science.true_wcs.pixel_to_world(pair.transient_x[0], pair.transient_y[0])
    embedded.client.post(
        "/api/v1/alerts",
        json={"name": ALERT, "ra_deg": float(where.ra.deg), "dec_deg": float(where.dec.deg)},
        headers=_bearer(embedded),
    )
    store = TileStore(embedded.context.settings.catalogs_dir)
    for survey, path in write_reference_tables(pair.science.references.values(), tmp_path / "refs").items():
        import_catalogue_file(store, survey, path, path.name)
    with_new, new_x, new_y = _new_source(pair, 15.5)
    accepted = embedded.client.post(
        "/api/v1/uploads",
        data={"alert": ALERT, "force_filter": "PS1/r"},
        files={"file": ("science.fits", image_to_fits_bytes(with_new.science))},
        headers=_bearer(embedded),
    )
    url = accepted.json()["status_url"]
    _wait(embedded, url)
    _assert_no_template_offline(embedded.client.get(f"{url}/reduction", headers=_bearer(embedded)).json())
    calibrations = embedded.client.get(f"{url}/calibrations", headers=_bearer(embedded)).json()
    assert calibrations[-1]["difference"] is None
    missing = embedded.client.get(f"{url}/difference", headers=_bearer(embedded))
    assert missing.status_code == 404 and missing.json()["error"] == "no_difference_image"
    # No template: the catalogue mode. The new source is found, absent from every catalogue, at its
    # magnitude; the host galaxies (no catalogue lists them) too; no catalogued star is.
    listed = embedded.client.get(f"{url}/candidates", headers=_bearer(embedded)).json()
    assert listed["status"] == "no_template" and listed["mode"] == "catalogue"
    assert listed["catalogue"]["survey"] == "PS1" and listed["catalogue"]["band"] == "r"
    assert listed["catalogue"]["margin_mag"] == 1.0
    found = listed["candidates"]
    assert found and all(c["mode"] == "catalogue" for c in found)
    (new,) = [c for c in found if np.hypot(c["x"] - new_x, c["y"] - new_y) < 1.5]
    assert new["found_by"] == "not_in_catalogue" and new["catalogue_mag"] is None and new["accepted"]
    assert abs(new["mag"] - 15.5) < 3 * new["magerr_inst"] + 0.03, new
    print(
        f"catalogue mode: {len(found)} candidates",
        [(round(c["x"]), round(c["y"]), c["found_by"]) for c in found],
    )
    assert len(found) <= 5
    # Offline: the known-object check is a note, not a wait.
    assert listed["solar_system"]["status"] == "offline" and "offline" in listed["solar_system"]["note"]


def test_an_earlier_frame_of_our_store_is_the_template(embedded: System, pair: EpochPair, tmp_path) -> None:
    where = pair.science.true_wcs.pixel_to_world(pair.transient_x[0], pair.transient_y[0])
    created = embedded.client.post(
        "/api/v1/alerts",
        json={"name": ALERT, "ra_deg": float(where.ra.deg), "dec_deg": float(where.dec.deg)},
        headers=_bearer(embedded),
    )
    store = TileStore(embedded.context.settings.catalogs_dir)
    for survey, path in write_reference_tables(pair.science.references.values(), tmp_path / "refs").items():
        import_catalogue_file(store, survey, path, path.name)
    urls = []
    for name, image in (("earlier.fits", pair.template), ("science.fits", pair.science)):
        accepted = embedded.client.post(
            "/api/v1/uploads",
            data={"alert": ALERT, "force_filter": "PS1/r"},
            files={"file": (name, image_to_fits_bytes(image))},
            headers=_bearer(embedded),
        )
        assert accepted.status_code == 202, accepted.text
        urls.append(accepted.json()["status_url"])
        _wait(embedded, urls[-1])
    earlier_id = int(urls[0].rsplit("/", 1)[1])
    # The first frame had nothing before it; the second is subtracted with the first.
    _assert_no_template_offline(embedded.client.get(f"{urls[0]}/reduction", headers=_bearer(embedded)).json())
    step = embedded.client.get(f"{urls[1]}/reduction", headers=_bearer(embedded)).json()["subtraction"]
    assert step["status"] == "subtracted", step
    assert step["template"]["source"] == "archive" and step["template"]["observation_id"] == earlier_id
    (template,) = embedded.client.get(
        f"/api/v1/alerts/{created.json()['id']}/templates", headers=_bearer(embedded)
    ).json()
    assert template["source"] == "archive" and template["observation_id"] == earlier_id
    assert template["id"] == step["template"]["id"] and template["band"] == "r"
    difference = embedded.client.get(f"{urls[1]}/calibrations", headers=_bearer(embedded)).json()[-1][
        "difference"
    ]
    print(f"archive template: difference {difference['mag']:.4f}, truth {float(pair.transient_mag[0]):.4f}")
    assert abs(difference["mag"] - float(pair.transient_mag[0])) < 0.06


def test_a_template_uploaded_after_the_reduction_is_applied(
    embedded: System, pair: EpochPair, tmp_path
) -> None:
    where = pair.science.true_wcs.pixel_to_world(pair.transient_x[0], pair.transient_y[0])
    created = embedded.client.post(
        "/api/v1/alerts",
        json={"name": ALERT, "ra_deg": float(where.ra.deg), "dec_deg": float(where.dec.deg)},
        headers=_bearer(embedded),
    )
    alert_id = int(created.json()["id"])
    store = TileStore(embedded.context.settings.catalogs_dir)
    for survey, path in write_reference_tables(pair.science.references.values(), tmp_path / "refs").items():
        import_catalogue_file(store, survey, path, path.name)
    accepted = embedded.client.post(
        "/api/v1/uploads",
        data={"alert": ALERT, "force_filter": "PS1/r"},
        files={"file": ("science.fits", image_to_fits_bytes(pair.science))},
        headers=_bearer(embedded),
    )
    url = accepted.json()["status_url"]
    observation_id = int(url.rsplit("/", 1)[1])
    _wait(embedded, url)
    _assert_no_template_offline(embedded.client.get(f"{url}/reduction", headers=_bearer(embedded)).json())
    assert embedded.client.get(f"{url}/candidates", headers=_bearer(embedded)).json()["mode"] == "catalogue"

    # The template arrives later: the frame reduced without one is subtracted with it, recalibrated.
    template = embedded.client.post(
        f"/api/v1/alerts/{alert_id}/templates",
        data={"filter": "r"},
        files={"file": ("template.fits", image_to_fits_bytes(pair.template))},
        headers=_bearer(embedded),
    )
    assert template.status_code == 201, template.text
    assert template.json()["resubtracting"] == [observation_id]
    template_id = int(template.json()["id"])
    deadline = time.monotonic() + 300
    while len(versions := embedded.client.get(f"{url}/calibrations", headers=_bearer(embedded)).json()) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert versions[0]["difference"] is None
    _check_subtraction(embedded, url, pair, template_id)
    point = embedded.client.get(url, headers=_bearer(embedded)).json()["point"]
    assert point["calibration_id"] == versions[-1]["id"]
    listed = embedded.client.get(f"{url}/candidates", headers=_bearer(embedded)).json()
    assert listed["mode"] == "difference" and listed["template_id"] == template_id

    # A second template: the frame has its difference image now, nothing is queued again.
    again = embedded.client.post(
        f"/api/v1/alerts/{alert_id}/templates",
        data={"filter": "r"},
        files={"file": ("template2.fits", image_to_fits_bytes(pair.template))},
        headers=_bearer(embedded),
    )
    assert again.status_code == 201 and again.json()["resubtracting"] == []
