"""The image path without a Gaia cone: astrometry against whatever cached catalogue has good positions."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from cpcs.catalogs.importer import import_catalogue_file
from cpcs.catalogs.tiles import TileStore
from cpcs.simulation.image_simulator import SimulatedImage, image_to_fits_bytes, simulate_image
from cpcs.simulation.reference_files import write_reference_tables
from tests.conftest import FIELD_DEC_DEG, FIELD_RA_DEG, System


def _prepare(system: System, image: SimulatedImage, folder: Path, surveys: tuple[str, ...]) -> None:
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
    chosen = [image.references[name] for name in surveys]
    for survey, path in write_reference_tables(chosen, folder).items():
        import_catalogue_file(store, survey, path, path.name)


def _upload(system: System, data: bytes, **fields: str) -> httpx.Response:
    form = {"EventID": "ivo://Gaia16aye", "hashtag": system.observer_token, "outputFormat": "json", **fields}
    return system.client.post("/followup/cgi/upload", data=form, files={"fitsFile": ("frame.fits", data)})


def _reduction(system: System, response: httpx.Response) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {system.observer_token}"}
    reduction: dict[str, Any] = system.client.get(
        f"{response.json()['image_link']}/reduction", headers=headers
    ).json()
    return reduction


@pytest.mark.parametrize(("cached", "astrometric"), [(("PS1",), "PS1"), (("PS1", "GaiaSP"), "GaiaSP")])
def test_a_field_without_gaia_is_solved_against_the_cached_survey(
    embedded: System, tmp_path: Path, cached: tuple[str, ...], astrometric: str
) -> None:
    image = simulate_image(21, shape=(1024, 1024), header_offset_arcsec=(30.0, -20.0), target="bright")
    _prepare(embedded, image, tmp_path / "refs", cached)
    response = _upload(embedded, image_to_fits_bytes(image), forceFilter="PS1/r")
    assert response.status_code == 200, response.text
    reduction = _reduction(embedded, response)
    assert reduction["status"] == "reduced"
    assert reduction["astrometry"]["reference_survey"] == astrometric
    assert reduction["astrometry"]["rms_arcsec"] < 0.5
    target = image.target
    assert target is not None
    truth = image.truth.band("PS1", "r")
    assert abs(response.json()["mag"] - (target.true_mag - truth.colour_term * target.true_colour)) < 0.03


def test_gaia_is_preferred_when_cached(embedded: System, tmp_path: Path) -> None:
    image = simulate_image(22, shape=(768, 768), target="bright")
    _prepare(embedded, image, tmp_path / "refs", ("PS1", "Gaia"))
    response = _upload(embedded, image_to_fits_bytes(image), forceFilter="PS1/r")
    assert response.status_code == 200, response.text
    assert _reduction(embedded, response)["astrometry"]["reference_survey"] == "Gaia"


def test_a_raw_colour_mosaic_without_wcs_reduces_through_the_service(
    embedded: System, tmp_path: Path
) -> None:
    """A DSLR-like frame: RGGB mosaic, no WCS, only a pointing and a pixel scale; PS1 stars only."""
    image = simulate_image(
        23,
        shape=(1024, 1024),
        header_wcs=False,
        fwhm_arcsec=1.8,
        bayer_pattern="RGGB",
        rotation_deg=180.0,
        target="bright",
    )
    _prepare(embedded, image, tmp_path / "refs", ("PS1",))
    response = _upload(embedded, image_to_fits_bytes(image), forceFilter="PS1/r")
    assert response.status_code == 200, response.text
    reduction = _reduction(embedded, response)
    assert reduction["header"]["bayer_pattern"] == "RGGB"
    assert reduction["astrometry"]["measured_plane"] == "green"
    assert reduction["astrometry"]["method"] == "blind-pointing"
    assert reduction["astrometry"]["reference_survey"] == "PS1"
    target = image.target
    assert target is not None
    truth = image.truth.band("PS1", "r")
    assert abs(response.json()["mag"] - (target.true_mag - truth.colour_term * target.true_colour)) < 0.04


def test_no_cached_positions_fail_with_a_code(embedded: System, tmp_path: Path) -> None:
    image = simulate_image(24, shape=(512, 512), target="bright")
    _prepare(embedded, image, tmp_path / "refs", ())
    accepted = embedded.client.post(
        "/api/v1/uploads",
        data={"alert": "ivo://Gaia16aye"},
        files={"file": ("frame.fits", image_to_fits_bytes(image))},
        headers={"Authorization": f"Bearer {embedded.observer_token}"},
    )
    assert accepted.status_code == 202, accepted.text
    status_url = accepted.json()["status_url"]
    deadline = time.monotonic() + 60
    headers = {"Authorization": f"Bearer {embedded.observer_token}"}
    while (observation := embedded.client.get(status_url, headers=headers).json())["status"] == "received":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert observation["status"] == "failed"
    assert observation["error_code"] == "no_astrometric_references"
