"""Survey templates from hips2fits: the query sent (over a real local socket to a recorded answer),
and every way of not getting one is a note."""

from __future__ import annotations

import io

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from cpcs.catalogs.survey_templates import fetch_survey_template
from cpcs.testing.recorded_http import RecordedAnswer, recorded_http


def _cutout_bytes() -> bytes:
    """A FITS answer shaped as hips2fits writes it: one float32 image with its TAN WCS."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.1, 2.2]
    wcs.wcs.crpix = [32.5, 32.5]
    wcs.wcs.cdelt = [-0.25 / 3600, 0.25 / 3600]
    header = wcs.to_header()
    header["HIPS"] = "CDS/P/PanSTARRS/DR1/r"
    data = np.random.default_rng(1).normal(100.0, 5.0, (64, 64)).astype(np.float32)
    buffer = io.BytesIO()
    fits.PrimaryHDU(data, header).writeto(buffer)
    return buffer.getvalue()


def test_the_cutout_is_fetched_with_its_provenance() -> None:
    answer = RecordedAnswer(_cutout_bytes(), "application/fits")
    with recorded_http({"/hips2fits": answer}) as server:
        cutout = fetch_survey_template(
            150.1, 2.2, "r", fov_deg=0.1, online=True, timeout_s=5, url=f"{server.url}/hips2fits"
        )
    assert not hasattr(cutout, "note"), cutout
    ((path, query),) = server.requests
    assert path == "/hips2fits" and query["hips"] == "CDS/P/PanSTARRS/DR1/r" and query["format"] == "fits"
    assert query["projection"] == "TAN" and float(query["fov"]) == 0.1
    assert int(query["width"]) == int(query["height"]) == 1440  # 0.1 deg at PS1's 0.25"
    assert float(query["ra"]) == 150.1 and float(query["dec"]) == 2.2
    assert (
        cutout.provenance["hips"] == "CDS/P/PanSTARRS/DR1/r" and cutout.provenance["service"] == "hips2fits"
    )
    assert fits.getdata(io.BytesIO(cutout.fits_bytes)).shape == (64, 64)


def test_offline_a_band_without_survey_a_timeout_or_junk_are_notes() -> None:
    slow = RecordedAnswer(_cutout_bytes(), "application/fits", delay_s=5.0)
    junk = RecordedAnswer(b"<html>quota exceeded</html>", "text/html")
    with recorded_http({"/slow": slow, "/junk": junk}) as server:
        offline = fetch_survey_template(
            150.1, 2.2, "r", fov_deg=0.1, online=False, timeout_s=5, url=server.url
        )
        no_band = fetch_survey_template(
            150.1, 2.2, "V", fov_deg=0.1, online=True, timeout_s=5, url=server.url
        )
        late = fetch_survey_template(
            150.1, 2.2, "r", fov_deg=0.1, online=True, timeout_s=0.5, url=f"{server.url}/slow"
        )
        bad = fetch_survey_template(
            150.1, 2.2, "r", fov_deg=0.1, online=True, timeout_s=5, url=f"{server.url}/junk"
        )
        assert [p for p, _ in server.requests] == ["/slow", "/junk"]
    assert "offline" in getattr(offline, "note", "")
    assert "no V band" in getattr(no_band, "note", "")
    assert "timed out" in getattr(late, "note", "").lower()
    assert "hips2fits did not give one" in getattr(bad, "note", "")
