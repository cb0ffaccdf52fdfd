"""The legacy upload's HTML answer (the observation page, the plot when noPlot is 0) and the embedded log
of a failed upload, through the embedded system."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from cpcs.db.models import OutboxMessage
from cpcs.simulation.catalogue_simulator import SimulatedField, to_sextractor_ascii
from tests.conftest import FIELD_DEC_DEG, FIELD_RA_DEG, System

ALERT = "ivo://Gaia16aye"


def _new_event(
    system: System, name: str = ALERT, ra: float = FIELD_RA_DEG, dec: float = FIELD_DEC_DEG
) -> None:
    response = system.client.post(
        "/followup/newevent", data={"ivorn": name, "ra": ra, "dec": dec, "hashtag": system.observer_token}
    )
    assert response.status_code == 201, response.text


def _upload(system: System, field: SimulatedField, **fields: str):
    catalogue = to_sextractor_ascii(field.ra_deg, field.dec_deg, field.mag, field.magerr).encode()
    form = {"EventID": ALERT, "MJD": "57737.8", "hashtag": system.observer_token, **fields}
    return system.client.post("/followup/cgi/upload", data=form, files={"sexCat": ("f.cat", catalogue)})


def test_the_html_answer_links_the_observation_page_and_shows_the_plot(
    embedded: System, gaia16aye_field: SimulatedField, tmp_path: Path
) -> None:
    system = embedded
    _new_event(system)
    system.import_field(gaia16aye_field, tmp_path / "refs")
    base = system.context.settings.public_base_url

    answer = _upload(system, gaia16aye_field, noPlot="0")  # html is the legacy default
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    [observation_id] = re.findall(rf"href='{re.escape(base)}api/v1/observations/(\d+)'", answer.text)
    page_url = f"{base}observations/{observation_id}"
    assert f"<a id='observation-page' href='{page_url}'>" in answer.text
    [src] = re.findall(r"<img id='calibration-plot' src='([^']+)'", answer.text)
    assert src == f"{page_url}/calibration.svg"
    policy = answer.headers["content-security-policy"]
    assert "img-src 'self' " + base.rstrip("/") in policy and "script-src" not in policy

    plot = system.client.get(src.removeprefix(base.rstrip("/")))
    assert plot.status_code == 200 and plot.headers["content-type"].startswith("image/svg+xml")
    svg = plot.text
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    used, rejected = svg.count('class="used"'), svg.count('class="rejected"')
    assert used >= 50 and 'class="fit"' in svg and svg.count('class="target"') == 1
    assert f"{used} of {used + rejected} matched stars used" in svg
    page = system.client.get(src.removeprefix(base.rstrip("/")).removesuffix("/calibration.svg"))
    assert page.status_code == 200 and "calibration-data" in page.text

    # noPlot=1: the numbers and the link, no image.
    quiet = _upload(system, gaia16aye_field, noPlot="1")
    assert quiet.status_code == 200
    assert "calibration-plot" not in quiet.text and f"href='{page_url}'" in quiet.text

    missing = system.client.get("/observations/999/calibration.svg")
    assert missing.status_code == 404 and "no calibration" in missing.text


def test_a_failed_upload_logs_no_dropped_message(
    embedded: System, gaia16aye_field: SimulatedField, caplog: pytest.LogCaptureFixture
) -> None:
    """observation.failed has no consumer by design: publishing it is not a warning."""
    system = embedded
    _new_event(system)  # no reference stars imported: the calibration fails
    with caplog.at_level(logging.DEBUG):
        failed = _upload(system, gaia16aye_field, outputFormat="json", noPlot="1")
        assert failed.status_code == 422 and failed.json()["error"] == "no_reference_stars", failed.text
        deadline = time.monotonic() + 10
        while True:
            with system.context.db.transaction() as session:
                row = session.scalar(
                    select(OutboxMessage).where(OutboxMessage.routing_key == "observation.failed")
                )
                if row is not None and row.published_at is not None:
                    break
            assert time.monotonic() < deadline, "the relay did not pass observation.failed"
            time.sleep(0.05)
    assert any("observation.failed" in r.getMessage() for r in caplog.records)  # it was relayed...
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING and "no queue bound" in r.getMessage()]
    assert noisy == []  # ...quietly
