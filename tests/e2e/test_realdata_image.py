"""A real SDSS frame (nanomaggies, no GAIN, DATE-OBS + TAIHMS) through the upload door and reduce."""

from __future__ import annotations

import bz2
import math
import time
from pathlib import Path

from cpcs.catalogs.importer import import_catalogue_file
from cpcs.catalogs.tiles import TileStore
from cpcs.simulation.reference_files import write_reference_tables
from cpcs.testing.realdata import detections_as_reference, realdata_file
from tests.conftest import System

FRAME = "sdss_m2/frame-{band}-002583-2-0136.fits.bz2"
CENTRE = (323.3420, -0.7340)  # the r frame's centre (README of ../shared/realdata)


def test_sdss_frame_reduction_records_its_noise_model_time_and_airmass(
    embedded: System, tmp_path: Path
) -> None:
    auth = {"Authorization": f"Bearer {embedded.observer_token}"}
    created = embedded.client.post(
        "/followup/newevent",
        data={
            "ivorn": "ivo://sdss-m2-field",
            "ra": CENTRE[0],
            "dec": CENTRE[1],
            "hashtag": embedded.observer_token,
        },
    )
    assert created.status_code == 201, created.text
    # astrometric reference: the g frame's stars through its own SDSS WCS (no Gaia cone of M2 here)
    gaia = detections_as_reference(realdata_file(FRAME.format(band="g")), "Gaia", zero_point=22.5)
    store = TileStore(embedded.context.settings.catalogs_dir)
    for survey, path in write_reference_tables([gaia], tmp_path / "refs").items():
        import_catalogue_file(store, survey, path, path.name)

    frame = bz2.decompress(realdata_file(FRAME.format(band="r")).read_bytes())
    accepted = embedded.client.post(
        "/api/v1/uploads",
        data={"alert": "ivo://sdss-m2-field"},
        files={"file": ("frame-r.fits", frame)},
        headers=auth,
    )
    assert accepted.status_code == 202, accepted.text
    status_url = accepted.json()["status_url"]
    deadline = time.monotonic() + 120
    while embedded.client.get(status_url, headers=auth).json()["status"] == "received":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    reduction = embedded.client.get(f"{status_url}/reduction", headers=auth).json()
    assert reduction["status"] == "reduced", reduction["error_message"]

    header, quality, target = reduction["header"], reduction["quality"], reduction["target"]
    assert header["pixel_unit"] == "nanomaggy" and header["exptime_s"] == 53.907456
    assert header["date_source"] == "DATE-OBS+TAIHMS+EXPTIME/2"
    noise = quality["noise_model"]
    assert noise["kind"] == "background_only" and noise["gain_e_per_adu"] is None
    # the observer is in Poland: at 06:25 UTC M2 had set there -- no airmass, and a note saying why
    assert quality["airmass"] is None and quality["altitude_deg"] < 0
    assert "below the observatory's horizon" in quality["airmass_note"]
    assert reduction["astrometry"]["rms_arcsec"] < 0.2
    # the target's 5-sigma limit on the nanomaggy scale: SDSS r reaches ~22.7 at 5 sigma
    limit = target["limit_mag_inst_5sigma"] + 22.5 - 2.5 * math.log10(header["exptime_s"])
    assert abs(limit - 22.7) < 0.5, limit
