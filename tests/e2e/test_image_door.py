"""Image uploads at the door: accepted when readable with a time, an exposure and astrometry to start
from; every other case a 4xx that says what to fix, with nothing stored."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from sqlalchemy import func, select

from cpcs.db.models import Observation, Upload
from tests.conftest import FIELD_DEC_DEG, FIELD_RA_DEG, System


def _header(*, wcs: bool = True, ra: float = FIELD_RA_DEG, dec: float = FIELD_DEC_DEG) -> fits.Header:
    header = fits.Header()
    if wcs:
        w = WCS(naxis=2)
        w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        w.wcs.crval = [ra, dec]
        w.wcs.crpix = [64.5, 64.5]
        w.wcs.cdelt = [-0.6 / 3600, 0.6 / 3600]
        header.update(w.to_header())
    header["DATE-OBS"] = "2016-12-15T19:40:00"
    header["EXPTIME"] = 60.0
    header["FILTER"] = "R"
    return header


def _fits(data: np.ndarray, header: fits.Header | None = None) -> bytes:
    buffer = io.BytesIO()
    fits.PrimaryHDU(data, header=header).writeto(buffer)
    return buffer.getvalue()


IMAGE = np.random.default_rng(1).normal(1000, 10, (128, 128)).astype(np.float32)


def _upload(system: System, data: bytes, **fields: str):
    form = {"EventID": "ivo://Gaia16aye", "hashtag": system.observer_token, "outputFormat": "json", **fields}
    return system.client.post("/followup/cgi/upload", data=form, files={"fitsFile": ("frame.fits", data)})


def _stored(system: System) -> tuple[int, int, int]:
    with system.context.db.transaction() as session:
        files = [p for p in system.context.settings.uploads_dir.rglob("*") if p.is_file()]
        return (
            session.scalar(select(func.count(Observation.id))) or 0,
            session.scalar(select(func.count(Upload.id))) or 0,
            len(files),
        )


@pytest.fixture
def with_alert(embedded: System) -> System:
    response = embedded.client.post(
        "/followup/newevent",
        data={
            "ivorn": "ivo://Gaia16aye",
            "ra": FIELD_RA_DEG,
            "dec": FIELD_DEC_DEG,
            "hashtag": embedded.observer_token,
        },
    )
    assert response.status_code == 201
    return embedded


def test_bad_images_are_refused_and_nothing_is_kept(with_alert: System, tmp_path: Path) -> None:
    system = with_alert
    good = _fits(IMAGE, _header())
    no_time = _header()
    del no_time["DATE-OBS"]
    no_exposure = _header()
    del no_exposure["EXPTIME"]
    table = io.BytesIO()
    fits.HDUList(
        [fits.PrimaryHDU(), fits.BinTableHDU.from_columns([fits.Column("A", "E", array=[1.0])])]
    ).writeto(table)
    cases = {
        "1-D": (_fits(np.zeros(100, np.float32), _header()), {}, 422, "image_not_2d"),
        "3-D cube": (_fits(np.zeros((3, 32, 32), np.float32), _header()), {}, 422, "image_not_2d"),
        "truncated": (good[: len(good) // 2], {}, 422, "truncated_image"),
        "not FITS": (b"hello, this is text", {}, 422, "unreadable_image"),
        "a table, not an image": (table.getvalue(), {}, 422, "no_image_in_fits"),
        "no time": (_fits(IMAGE, no_time), {}, 422, "missing_time"),
        "no exposure": (_fits(IMAGE, no_exposure), {}, 422, "missing_exposure"),
        "no WCS, no pointing": (_fits(IMAGE, _header(wcs=False)), {}, 422, "no_astrometry"),
        "alert not on the image": (
            _fits(IMAGE, _header(ra=100.0, dec=-20.0)),
            {},
            422,
            "image_not_near_target",
        ),
        "empty": (b"", {}, 422, "empty_file"),
    }
    for name, (data, fields, status, code) in cases.items():
        response = _upload(system, data, **fields)
        assert response.status_code == status, (name, response.text)
        assert response.json()["error"] == code, (name, response.json())
        assert "Traceback" not in response.text
    assert _stored(system) == (0, 0, 0)
    staging = system.context.settings.uploads_dir / ".staging"
    assert not staging.exists() or not any(staging.iterdir())


def test_oversized_image_is_refused(with_alert: System) -> None:
    with_alert.context.settings.max_image_pixels = 64 * 64
    response = _upload(with_alert, _fits(IMAGE, _header()))
    assert response.status_code == 413 and response.json()["error"] == "image_too_large"


@pytest.mark.parametrize("form", ["plain", "gzip", "rice", "extension"])
def test_accepted_image_forms(with_alert: System, form: str) -> None:
    system = with_alert
    if form == "plain":
        data = _fits(IMAGE, _header())
    elif form == "gzip":
        data = gzip.compress(_fits(IMAGE, _header()))
    else:
        buffer = io.BytesIO()
        hdu = (
            fits.CompImageHDU(IMAGE, header=_header()) if form == "rice" else fits.ImageHDU(IMAGE, _header())
        )
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buffer)
        data = buffer.getvalue()
    v1 = system.client.post(
        "/api/v1/uploads",
        data={"alert": "ivo://Gaia16aye"},
        files={"file": ("frame.fits", data)},
        headers={"Authorization": f"Bearer {system.observer_token}"},
    )
    assert v1.status_code == 202, v1.text
    observation = system.client.get(
        v1.json()["status_url"], headers={"Authorization": f"Bearer {system.observer_token}"}
    ).json()
    assert observation["source_summary"]["shape"] == [128, 128]
    assert observation["exptime_s"] == 60.0 and observation["filter_declared"] == "R"
    assert abs(observation["mjd"] - (57737.81944 + 30 / 86400)) < 1e-4  # mid-exposure
