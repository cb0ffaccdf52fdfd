"""Templates of an alert through the v1 API: upload, list, delete, and every refusal."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
from astropy.io import fits

from cpcs.domain.instruments import add_instrument
from cpcs.science.imaging.header import standardise_header
from cpcs.simulation.image_simulator import SimulatedImage, image_to_fits_bytes
from cpcs.simulation.transient_simulator import simulate_epoch_pair
from tests.conftest import FIELD_DEC_DEG, FIELD_RA_DEG, System


@pytest.fixture(scope="module")
def template_image() -> SimulatedImage:
    return simulate_epoch_pair(1, shape=(512, 512), star_density=3.0).template


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _alert(system: System, ra_deg: float = FIELD_RA_DEG, dec_deg: float = FIELD_DEC_DEG) -> int:
    response = system.client.post(
        "/api/v1/alerts",
        json={"name": f"ivo://T{ra_deg:.3f}", "ra_deg": ra_deg, "dec_deg": dec_deg},
        headers=_bearer(system.observer_token),
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def _post(system: System, alert_id: int, data: bytes, token: str, **form: str):
    return system.client.post(
        f"/api/v1/alerts/{alert_id}/templates",
        data={"filter": "r", **form},
        files={"file": ("template.fits", data)},
        headers=_bearer(token),
    )


def _stored_files(system: System) -> set[str]:
    root = system.context.files.root
    return {str(p) for p in root.rglob("*") if p.is_file() and ".staging" not in p.parts}


def test_upload_list_and_delete_by_owner(embedded: System, template_image: SimulatedImage) -> None:
    alert_id = _alert(embedded)
    response = _post(embedded, alert_id, image_to_fits_bytes(template_image), embedded.observer_token)
    assert response.status_code == 201, response.text
    template = response.json()
    assert template["band"] == "r" and template["source"] == "upload" and template["owner"] == "K. Rybicki"
    # the simulator's template seeing is 1.6 arcsec at 0.6 arcsec per pixel
    assert abs(template["fwhm_arcsec"] - 1.6) < 0.25, template["fwhm_arcsec"]
    assert template["overlap_fraction"] > 0.9
    assert len(template["footprint"]) == 4 and template["depth_inst_mag"] is not None
    assert template["mjd"] is not None

    listed = embedded.client.get(
        f"/api/v1/alerts/{alert_id}/templates", headers=_bearer(embedded.other_token)
    )
    assert [t["id"] for t in listed.json()] == [template["id"]]

    url = f"/api/v1/alerts/{alert_id}/templates/{template['id']}"
    refused = embedded.client.delete(url, headers=_bearer(embedded.other_token))
    assert refused.status_code == 403 and refused.json()["error"] == "not_your_template"
    assert (
        len(
            embedded.client.get(
                f"/api/v1/alerts/{alert_id}/templates", headers=_bearer(embedded.observer_token)
            ).json()
        )
        == 1
    )
    deleted = embedded.client.delete(url, headers=_bearer(embedded.observer_token))
    assert deleted.status_code == 200
    assert (
        embedded.client.get(
            f"/api/v1/alerts/{alert_id}/templates", headers=_bearer(embedded.observer_token)
        ).json()
        == []
    )
    again = embedded.client.delete(url, headers=_bearer(embedded.observer_token))
    assert again.status_code == 404 and again.json()["error"] == "unknown_template"


def test_an_admin_deletes_anyones_template(embedded: System, template_image: SimulatedImage) -> None:
    alert_id = _alert(embedded)
    template = _post(embedded, alert_id, image_to_fits_bytes(template_image), embedded.other_token).json()
    deleted = embedded.client.delete(
        f"/api/v1/alerts/{alert_id}/templates/{template['id']}", headers=_bearer(embedded.admin_token)
    )
    assert deleted.status_code == 200


def test_no_token_no_template(embedded: System, template_image: SimulatedImage) -> None:
    alert_id = _alert(embedded)
    response = embedded.client.post(
        f"/api/v1/alerts/{alert_id}/templates",
        data={"filter": "r"},
        files={"file": ("t.fits", image_to_fits_bytes(template_image))},
    )
    assert response.status_code == 401


def _without_wcs(image: SimulatedImage) -> bytes:
    header = image.header.copy()
    for key in list(header):
        if key.startswith(
            ("CRVAL", "CRPIX", "CD", "CDELT", "CTYPE", "PC", "CUNIT", "A_", "B_", "AP_", "BP_")
        ) or key in ("WCSAXES", "RA", "DEC", "PIXSCALE"):
            del header[key]
    buffer = io.BytesIO()
    fits.PrimaryHDU(image.data, header).writeto(buffer)
    return buffer.getvalue()


def _table_fits() -> bytes:
    buffer = io.BytesIO()
    fits.HDUList(
        [fits.PrimaryHDU(), fits.BinTableHDU.from_columns([fits.Column("X", "E", array=np.ones(3))])]
    ).writeto(buffer)
    return buffer.getvalue()


def _blank(image: SimulatedImage) -> bytes:
    return image_to_fits_bytes(replace(image, data=np.full_like(image.data, 100.0)))


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("not_fits", "unreadable_image"),
        ("table", "no_image_in_fits"),
        ("no_wcs", "template_without_wcs"),
        ("other_field", "template_not_on_alert"),
        ("edge", "template_overlap_too_small"),
        ("unknown_filter", "unknown_filter"),
        ("no_stars", "template_without_stars"),
        ("empty", "empty_file"),
    ],
)
def test_bad_templates_are_refused_and_nothing_is_kept(
    embedded: System, template_image: SimulatedImage, case: str, code: str
) -> None:
    form: dict[str, str] = {}
    data = image_to_fits_bytes(template_image)
    if case == "not_fits":
        data = b"hello, this is not an image\n" * 10
    elif case == "table":
        data = _table_fits()
    elif case == "no_wcs":
        data = _without_wcs(template_image)
    elif case == "unknown_filter":
        form = {"filter": "Halpha-wide"}
    elif case == "no_stars":
        data = _blank(template_image)
    elif case == "empty":
        data = b""
    if case == "other_field":
        alert_id = _alert(embedded, FIELD_RA_DEG + 1.0, FIELD_DEC_DEG)
    elif case == "edge":
        # the alert just inside a corner: three quarters of the field around it are off the frame
        wcs = standardise_header(template_image.header).wcs
        assert wcs is not None
        corner = wcs.celestial.pixel_to_world(3, 3)
        alert_id = _alert(embedded, float(corner.ra.deg), float(corner.dec.deg))
    else:
        alert_id = _alert(embedded)
    before = _stored_files(embedded)
    response = _post(embedded, alert_id, data, embedded.observer_token, **form)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"] == code, response.text
    assert _stored_files(embedded) == before
    listed = embedded.client.get(
        f"/api/v1/alerts/{alert_id}/templates", headers=_bearer(embedded.observer_token)
    )
    assert listed.json() == []


def test_a_filter_the_instrument_does_not_have_is_refused(
    embedded: System, template_image: SimulatedImage
) -> None:
    with embedded.context.db.transaction() as session:
        add_instrument(session, observatory="Ostrowik 0.6m", name="Andor", filters={"R": "R", "V": "V"})
    alert_id = _alert(embedded)
    wrong = _post(
        embedded, alert_id, image_to_fits_bytes(template_image), embedded.observer_token, filter="r'"
    )
    assert wrong.status_code == 422 and wrong.json()["error"] == "filter_not_on_instrument"
    assert "R, V" in wrong.json()["message"]
    right = _post(
        embedded, alert_id, image_to_fits_bytes(template_image), embedded.observer_token, filter="R"
    )
    assert right.status_code == 201, right.text
    assert right.json()["band"] == "R" and right.json()["instrument_id"] is not None


def test_unknown_alert_is_a_404(embedded: System, template_image: SimulatedImage) -> None:
    response = _post(embedded, 999, image_to_fits_bytes(template_image), embedded.observer_token)
    assert response.status_code == 404 and response.json()["error"] == "unknown_alert"
