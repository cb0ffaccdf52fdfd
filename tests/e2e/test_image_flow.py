"""The image path end to end: a calibrated FITS image in, the target's calibrated magnitude out."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from cpcs.catalogs.importer import import_catalogue_file
from cpcs.catalogs.tiles import TileStore
from cpcs.simulation.image_simulator import SimulatedImage, image_to_fits_bytes, simulate_image
from cpcs.simulation.reference_files import write_reference_tables
from tests.conftest import FIELD_DEC_DEG, FIELD_RA_DEG, System


def _prepare(system: System, image: SimulatedImage, folder: Path) -> None:
    response = system.client.post(
        "/followup/newevent",
        data={
            "ivorn": "ivo://Gaia16aye",
            "ra": FIELD_RA_DEG,
            "dec": FIELD_DEC_DEG,
            "hashtag": system.observer_token,
        },
    )
    assert response.status_code == 201
    store = TileStore(system.context.settings.catalogs_dir)
    for survey, path in write_reference_tables(image.references.values(), folder).items():
        import_catalogue_file(store, survey, path, path.name)


def _upload(system: System, data: bytes, **fields: str):
    form = {"EventID": "ivo://Gaia16aye", "hashtag": system.observer_token, "outputFormat": "json", **fields}
    return system.client.post("/followup/cgi/upload", data=form, files={"fitsFile": ("frame.fits.fz", data)})


def _auth(system: System) -> dict[str, str]:
    return {"Authorization": f"Bearer {system.observer_token}"}


@pytest.mark.parametrize("compression", [None, "rice"])
def test_bright_target_through_the_legacy_upload(
    embedded: System, tmp_path: Path, compression: str | None
) -> None:
    image = simulate_image(
        3, shape=(1024, 1024), header_offset_arcsec=(40.0, -25.0), header_rotation_deg=1.0, target="bright"
    )
    _prepare(embedded, image, tmp_path / "refs")
    response = _upload(embedded, image_to_fits_bytes(image, compression=compression), forceFilter="PS1/r")
    assert response.status_code == 200, response.text
    result = response.json()
    target = image.target
    assert target is not None
    # The server assumes colour 0 for a transient (its colour is unknown): the truth at colour 0.
    truth = image.truth.band("PS1", "r")
    expected = target.true_mag - truth.colour_term * target.true_colour
    assert abs(result["mag"] - expected) < 0.02
    assert 0 < result["mag_err"] < 0.1  # dominated by the colour term times the unknown colour

    observation = embedded.client.get(result["image_link"], headers=_auth(embedded)).json()
    assert observation["status"] == "calibrated"
    reduction = embedded.client.get(f"{result['image_link']}/reduction", headers=_auth(embedded)).json()
    assert reduction["status"] == "reduced"
    # The solved WCS against the simulator's true WCS, over the whole frame: under 0.1 arcsec.
    solved = WCS(fits.Header.fromstring(reduction["wcs_header"], sep="\n"))
    ny, nx = image.data.shape
    gx, gy = np.meshgrid(np.linspace(0, nx - 1, 9), np.linspace(0, ny - 1, 9))
    offsets = solved.pixel_to_world(gx, gy).separation(image.true_wcs.pixel_to_world(gx, gy)).arcsec
    assert offsets.max() < 0.1, offsets.max()
    assert reduction["astrometry"]["rms_arcsec"] < 0.5
    assert reduction["quality"]["n_sources"] > 50
    assert abs(reduction["quality"]["fwhm_px"] - image.truth.fwhm_pix) / image.truth.fwhm_pix < 0.1
    assert reduction["quality"]["airmass"] is None or reduction["quality"]["airmass"] >= 1.0

    sources = embedded.client.get(f"{result['image_link']}/sources", headers=_auth(embedded))
    assert sources.status_code == 200
    table = Table.read(io.BytesIO(sources.content), format="fits")
    assert {"NUMBER", "RA", "DEC", "X", "Y", "MAG_PSF", "MAG_APER", "FLAGS", "FWHM"} <= set(table.colnames)


def test_undetected_target_is_an_upper_limit(embedded: System, tmp_path: Path) -> None:
    image = simulate_image(4, shape=(1024, 1024), target="undetected")
    _prepare(embedded, image, tmp_path / "refs")
    response = _upload(embedded, image_to_fits_bytes(image), forceFilter="PS1/r")
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["mag_err"] == -1
    assert abs(result["mag"] - image.truth.limit_mag_5sigma_optimal) < 0.3


def test_unsolvable_field_fails_with_a_code_and_keeps_the_detections(
    embedded: System, tmp_path: Path
) -> None:
    image = simulate_image(5, shape=(512, 512), target="bright")
    _prepare(embedded, image, tmp_path / "refs")
    # another sky's pixels under this field's header: nothing on the image matches Gaia here
    other = simulate_image(6, shape=(512, 512), target=None)
    object.__setattr__(image, "data", other.data[::-1].copy())
    accepted = embedded.client.post(
        "/api/v1/uploads",
        data={"alert": "ivo://Gaia16aye"},
        files={"file": ("frame.fits", image_to_fits_bytes(image))},
        headers=_auth(embedded),
    )
    assert accepted.status_code == 202, accepted.text
    status_url = accepted.json()["status_url"]
    deadline = time.monotonic() + 60
    while (observation := embedded.client.get(status_url, headers=_auth(embedded)).json())[
        "status"
    ] == "received":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert observation["status"] == "failed" and observation["error_code"] == "astrometry_failed"
    reduction = embedded.client.get(f"{status_url}/reduction", headers=_auth(embedded)).json()
    assert reduction["status"] == "failed" and reduction["quality"]["n_sources"] > 10
    assert reduction["quality"]["noise_model"]["kind"] == "gain"  # the GAIN card, kept with the failure
    detections = embedded.client.get(f"{status_url}/sources", headers=_auth(embedded))
    assert (
        detections.status_code == 200 and len(Table.read(io.BytesIO(detections.content), format="fits")) > 10
    )


def test_instrument_record_fills_what_the_header_lacks(embedded: System, tmp_path: Path) -> None:
    """No WCS and no pixel scale in the header: refused until the instrument's pixel scale is recorded;
    then solved blind around the pointing, with a 90-degree rotated camera."""
    image = simulate_image(7, shape=(1024, 1024), header_wcs=False, rotation_deg=90.0, header_style="mjd")
    del image.header["PIXSCALE"]
    _prepare(embedded, image, tmp_path / "refs")
    data = image_to_fits_bytes(image)
    refused = _upload(embedded, data, forceFilter="PS1/r")
    assert refused.status_code == 422 and refused.json()["error"] == "no_astrometry"

    admin = {"Authorization": f"Bearer {embedded.admin_token}"}
    instrument = {
        "observatory": "Ostrowik 0.6m",
        "name": "Andor iKon",
        "pixel_scale_arcsec": 0.6,
        "gain_e_per_adu": image.truth.gain_e_per_adu,
        "saturation_adu": image.truth.saturation_adu,
    }
    assert (
        embedded.client.post("/api/v1/instruments", json=instrument, headers=_auth(embedded)).status_code
        == 403
    )
    created = embedded.client.post("/api/v1/instruments", json=instrument, headers=admin)
    assert created.status_code == 201, created.text

    response = _upload(embedded, data, forceFilter="PS1/r")
    assert response.status_code == 200, response.text
    reduction = embedded.client.get(
        f"{response.json()['image_link']}/reduction", headers=_auth(embedded)
    ).json()
    assert reduction["astrometry"]["method"] == "blind-pointing"
    assert reduction["header"]["gain_e_per_adu"] == image.truth.gain_e_per_adu
    assert reduction["header"]["pixel_scale_arcsec"] == 0.6
    assert image.target is not None
    truth = image.truth.band("PS1", "r")
    assert (
        abs(response.json()["mag"] - (image.target.true_mag - truth.colour_term * image.target.true_colour))
        < 0.03
    )


def test_same_image_with_other_parameters_reuses_the_reduction(embedded: System, tmp_path: Path) -> None:
    image = simulate_image(8, shape=(768, 768), zp=27.5, target="bright")
    _prepare(embedded, image, tmp_path / "refs")
    data = image_to_fits_bytes(image)
    first = _upload(embedded, data, forceFilter="PS1/r")
    assert first.status_code == 200, first.text
    second = _upload(embedded, data, forceFilter="PS1/i")
    assert second.status_code == 200, second.text
    assert second.json()["filter"] == "i"
    assert second.json()["followup_id"] == first.json()["followup_id"]  # one point, a new calibration version
    history = embedded.client.get(
        f"{first.json()['image_link']}/calibrations", headers=_auth(embedded)
    ).json()
    assert [c["band"] for c in history] == ["r", "i"]


@pytest.mark.parametrize("frame", ["counts_without_gain", "sky_subtracted_physical_units"])
def test_frames_without_a_gain_record_their_noise_model(embedded: System, tmp_path: Path, frame: str) -> None:
    """No GAIN card: the sky's level / variance gives an effective gain; a sky-subtracted frame in
    physical units is measured with the background rms alone. Either way the target is right and
    the reduction record says which noise model was used."""
    image = simulate_image(3, shape=(1024, 1024), target="bright")
    for key in ("GAIN", "EGAIN", "GAIN1", "CCDGAIN"):
        image.header.remove(key, ignore_missing=True, remove_all=True)
    if frame == "sky_subtracted_physical_units":
        for key in ("SATURATE", "SATLEVEL", "SATUR", "MAXLIN", "DATAMAX"):
            image.header.remove(key, ignore_missing=True, remove_all=True)
        image.header["BUNIT"] = "nanomaggy"
        object.__setattr__(image, "data", ((image.data - np.median(image.data)) * 1e-3).astype(np.float32))
    _prepare(embedded, image, tmp_path / "refs")
    response = _upload(embedded, image_to_fits_bytes(image), forceFilter="PS1/r")
    assert response.status_code == 200, response.text
    target = image.target
    assert target is not None
    truth = image.truth.band("PS1", "r")
    assert abs(response.json()["mag"] - (target.true_mag - truth.colour_term * target.true_colour)) < 0.03
    reduction = embedded.client.get(
        f"{response.json()['image_link']}/reduction", headers=_auth(embedded)
    ).json()
    noise = reduction["quality"]["noise_model"]
    if frame == "counts_without_gain":
        assert noise["kind"] == "effective_gain" and noise["source"] == "sky level / variance"
        assert noise["gain_e_per_adu"] == pytest.approx(image.truth.gain_e_per_adu, rel=0.15)
    else:
        assert noise["kind"] == "background_only" and noise["gain_e_per_adu"] is None
        assert "nanomaggy" in noise["note"] and reduction["header"]["pixel_unit"] == "nanomaggy"
