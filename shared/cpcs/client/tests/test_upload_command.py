"""``cpcs upload`` against the real system on a loopback port: headers beside catalogues, retries, output."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner
from sqlalchemy import select

from cpcs.client.tests.live_server import ALERT, LiveSystem
from cpcs.client.uploader import (
    CpcsUploader,
    RetryPolicy,
    UploadOptions,
    expand_inputs,
    file_kind,
    format_magnitude,
    format_table,
    plan_upload,
    sibling_image,
)
from cpcs.db.models import Observation
from cpcs.simulation.catalogue_files import to_fits_ldac, to_fits_table
from cpcs.simulation.catalogue_simulator import SimulatedField, to_sextractor_ascii
from cpcs_system.cli import main

DATE_OBS = "2016-12-15T19:40:00"  # MJD 57737.819444...
START_MJD = 57737.0 + (19 * 3600 + 40 * 60) / 86400


def _catalogue(field: SimulatedField, shift: float = 0.0) -> bytes:
    return to_sextractor_ascii(field.ra_deg, field.dec_deg, field.mag + shift, field.magerr).encode()


def _image(path: Path, **cards: Any) -> Path:
    header = fits.Header()
    for key, value in cards.items():
        header[key.replace("_", "-")] = value
    fits.PrimaryHDU(np.zeros((16, 16), np.float32), header=header).writeto(path)
    return path


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _upload(live: LiveSystem, *args: str, server: str | None = None) -> Any:
    runner = CliRunner()
    return runner.invoke(
        main,
        ["upload", "--server", server or live.url, "--alert", ALERT, *args],
        env={"CPCS_TOKEN": live.system.observer_token},
        catch_exceptions=False,
    )


def test_catalogue_gets_time_exposure_and_filter_from_the_image_beside_it(
    live: LiveSystem, field: SimulatedField, tmp_path: Path
) -> None:
    night = tmp_path / "night"
    night.mkdir()
    (night / "frame1.cat").write_bytes(_catalogue(field))
    _image(night / "frame1.fits", DATE_OBS=DATE_OBS, EXPTIME=120.0, FILTER="V")
    (night / "frame2.cat").write_bytes(_catalogue(field, 0.003))  # no image beside it: --mjd is used

    result = _upload(live, "--json", "--mjd", "57738.5", str(night / "*.cat"))
    assert result.exit_code == 0, result.output
    first, second = _json_lines(result.stdout)
    assert first["status"] == "calibrated" and first["point_id"] is not None
    assert first["header_from"] == str(night / "frame1.fits")
    assert first["exptime_s"] == 120.0 and first["filter"] == "V"
    # The command line wins over the header: --mjd applies to both files.
    assert first["mjd"] == pytest.approx(57738.5) and second["mjd"] == pytest.approx(57738.5)
    assert second["header_from"] is None and second["filter"] is None
    # The header's V fixes the band family: a V band, whose large colour term against this r-like
    # instrument is in the error (0.54 on g - r times the unknown colour's 0.5 mag).
    assert first["survey"] and first["band"] == "V" and 10 < first["mag"] < 20 and 0 < first["mag_err"] < 0.4
    assert second["band"] not in ("V", "G")  # no filter declared: the band closest to the instrument

    # Without --mjd the header gives the mid-exposure time; the server stored what was sent.
    (night / "frame3.cat").write_bytes(_catalogue(field, 0.006))
    _image(night / "frame3.fts", DATE_OBS=DATE_OBS, EXPTIME=120.0, FILTER="R")
    result = _upload(live, "--json", str(night / "frame3.cat"))
    assert result.exit_code == 0, result.output
    [third] = _json_lines(result.stdout)
    assert third["mjd"] == pytest.approx(START_MJD + 60 / 86400, abs=1e-6)
    observation = live.system.client.get(
        f"/api/v1/observations/{third['observation_id']}",
        headers={"Authorization": f"Bearer {live.system.observer_token}"},
    ).json()
    assert observation["mjd"] == pytest.approx(START_MJD + 60 / 86400, abs=1e-6)
    assert observation["exptime_s"] == 120.0 and observation["filter_declared"] == "R"
    assert "frame3.cat: catalogue, MJD 57737.82014, 120 s, filter R, header of frame3.fts" in result.stderr


def test_table_output_duplicates_dry_runs_and_refusals(
    live: LiveSystem, field: SimulatedField, tmp_path: Path
) -> None:
    table = tmp_path / "frame.fits"  # a FITS table is a catalogue, and it is not its own sibling image
    table.write_bytes(to_fits_table(field.ra_deg, field.dec_deg, field.mag, field.magerr))
    first = _upload(live, "--mjd", "57737.5", str(table))
    assert first.exit_code == 0, first.output
    lines = first.stdout.splitlines()
    assert lines[0].split() == ["file", "status", "survey/band", "mag", "point"]
    assert lines[1].startswith("frame.fits") and "calibrated" in lines[1] and "±" in lines[1]

    again = _upload(live, "--mjd", "57737.5", str(table))
    assert "calibrated (seen before)" in again.stdout
    fixed = _upload(live, "--json", "--mjd", "57737.6", str(table))
    [record] = _json_lines(fixed.stdout)
    assert record["duplicate"] is True and record["corrected"] == ["mjd"] and record["mjd"] == 57737.6
    assert "calibrated (seen before, corrected: mjd)" in format_table([record])

    dry = _upload(live, "--dry-run", "--json", "--force-filter", "any/i", "--mjd", "57737.5", str(table))
    [record] = _json_lines(dry.stdout)
    assert record["status"] == "calibrated" and record["point_id"] is None and record["band"] == "i"

    refused = _upload(live, "--alert", "ivo://Gaia99zzz", "--mjd", "57737.5", str(table))
    assert refused.exit_code == 1
    assert "rejected" in refused.stdout and "unknown_alert" in refused.stdout
    assert "No alert named ivo://Gaia99zzz" in refused.stdout

    missing = _upload(live, str(tmp_path / "nothing-*.cat"))
    assert missing.exit_code == 2 and "no such file" in missing.output


def test_a_catalogue_without_a_time_is_not_sent(
    live: LiveSystem, field: SimulatedField, tmp_path: Path
) -> None:
    """No --mjd, no image beside it, no time in its own header: refused here, before any request."""
    lonely = tmp_path / "lonely.cat"
    lonely.write_bytes(_catalogue(field, 0.009))
    untimed = tmp_path / "untimed.ldac"
    untimed.write_bytes(to_fits_ldac(field.ra_deg, field.dec_deg, field.mag, field.magerr, {"EXPTIME": 30.0}))
    timed = tmp_path / "timed.ldac"
    header = {"DATE-OBS": DATE_OBS, "EXPTIME": 30.0}
    timed.write_bytes(to_fits_ldac(field.ra_deg, field.dec_deg, field.mag, field.magerr, header))
    _image(tmp_path / "blank.fits", EXPTIME=30.0)
    blank_sibling = tmp_path / "blank.cat"
    blank_sibling.write_bytes(_catalogue(field, 0.012))

    for path in (lonely, untimed, blank_sibling):
        plan = plan_upload(path)
        assert plan.refusal is not None and plan.refusal[0] == "missing_time", path
        assert "--mjd" in plan.refusal[1]
    assert "blank.fits beside it has no usable time card" in plan_upload(blank_sibling).refusal[1]
    assert plan_upload(timed).refusal is None  # the server reads the time from its LDAC header
    assert plan_upload(lonely, mjd=57737.5).refusal is None

    sent: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda request: sent.append(request) or httpx.Response(500))
    with CpcsUploader("http://cpcs.invalid", "token", transport=transport) as client:
        outcome = client.upload(plan_upload(lonely), UploadOptions(alert=ALERT))
    assert sent == [] and outcome.status == "rejected" and outcome.error_code == "missing_time"

    before = _observation_count(live)
    result = _upload(live, "--json", str(lonely), str(timed))
    assert result.exit_code == 1, result.output
    refused, accepted = _json_lines(result.stdout)
    assert refused["status"] == "rejected" and refused["error_code"] == "missing_time"
    assert refused["observation_id"] is None and "give --mjd" in refused["error_message"]
    assert accepted["status"] == "calibrated" and accepted["mjd"] == pytest.approx(START_MJD + 15 / 86400)
    assert "lonely.cat: catalogue; not sent: no time for this catalogue" in result.stderr
    assert _observation_count(live) == before + 1


def _observation_count(live: LiveSystem) -> int:
    with live.system.context.db.transaction() as session:
        return len(session.scalars(select(Observation.id)).all())


class FlakyProxy:
    """Forwards HTTP to ``upstream``, answering 503 to the first ``failures`` POSTs; records every call."""

    def __init__(self, upstream: str, failures: int):
        self.upstream = upstream
        self.failures = failures
        self.calls: list[tuple[str, str, int]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                proxy.forward(self)

            def do_POST(self) -> None:
                proxy.forward(self)

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def forward(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("content-length") or 0))
        if handler.command == "POST" and self.failures > 0:
            self.failures -= 1
            self.calls.append((handler.command, handler.path, 503))
            payload = b'{"error": "service_unavailable", "message": "Restarting; retry shortly."}'
            handler.send_response(503)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Retry-After", "0")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
            return
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in ("host", "connection")}
        answer = httpx.request(handler.command, self.upstream + handler.path, headers=headers, content=body)
        self.calls.append((handler.command, handler.path, answer.status_code))
        handler.send_response(answer.status_code)
        for key, value in answer.headers.items():
            if key.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(answer.content)))
        handler.end_headers()
        handler.wfile.write(answer.content)

    def __enter__(self) -> FlakyProxy:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def flaky(live: LiveSystem) -> Iterator[FlakyProxy]:
    with FlakyProxy(live.url, failures=2) as proxy:
        yield proxy


def test_a_503_is_retried_and_a_4xx_is_not(
    live: LiveSystem, flaky: FlakyProxy, field: SimulatedField, tmp_path: Path
) -> None:
    catalogue = tmp_path / "frame.cat"
    catalogue.write_bytes(_catalogue(field))
    result = _upload(live, "--json", "--mjd", "57737.5", str(catalogue), server=flaky.url)
    assert result.exit_code == 0, result.output
    [record] = _json_lines(result.stdout)
    assert record["status"] == "calibrated"
    posts = [status for method, _, status in flaky.calls if method == "POST"]
    assert posts == [503, 503, 202]
    assert "try 1 failed (503 service_unavailable: Restarting; retry shortly.)" in result.stderr

    flaky.calls.clear()
    bad = tmp_path / "bad.cat"
    bad.write_bytes(b"# 1 MAG_AUTO\n# 2 MAGERR_AUTO\n12.0 0.01\n")
    refused = _upload(live, "--json", "--mjd", "57737.5", str(bad), server=flaky.url)
    assert refused.exit_code == 1
    [record] = _json_lines(refused.stdout)
    assert record["status"] == "rejected" and record["error_code"] == "missing_columns"
    assert [status for method, _, status in flaky.calls if method == "POST"] == [422]


def test_a_server_that_stays_away_is_given_up_on(field: SimulatedField, tmp_path: Path) -> None:
    catalogue = tmp_path / "frame.cat"
    catalogue.write_bytes(_catalogue(field))
    with FlakyProxy("http://127.0.0.1:9", failures=100) as proxy:
        result = CliRunner().invoke(
            main,
            [
                "upload",
                "--server",
                proxy.url,
                "--token",
                "t",
                "--alert",
                ALERT,
                "--retries",
                "2",
                "--mjd",
                "57737.5",
                str(catalogue),
            ],
        )
    assert result.exit_code == 1
    assert "rejected" in result.stdout and "gave up after 2 tries" in result.stdout


def test_what_is_sent_with_each_file(field: SimulatedField, tmp_path: Path) -> None:
    catalogue = tmp_path / "a.cat"
    catalogue.write_bytes(_catalogue(field))
    ldac = tmp_path / "b.ldac"
    ldac.write_bytes(to_fits_ldac(field.ra_deg, field.dec_deg, field.mag, field.magerr, {"EXPTIME": 30.0}))
    image = _image(tmp_path / "c.fits", MJD_OBS=57000.25, EXPTIME=60.0, FILTER="Clear", FILTER2="r'")
    assert (
        file_kind(catalogue) == "catalogue" and file_kind(ldac) == "catalogue" and file_kind(image) == "image"
    )
    # An image goes as it is: the server reads its header.
    assert plan_upload(image).form() == {}
    assert plan_upload(image, mjd=57000.5).form() == {"mjd": "57000.5"}
    # A catalogue takes the header of the image of the same stem.
    _image(tmp_path / "a.fit", MJD_OBS=57000.25, EXPTIME=60.0, FILTER="Clear", FILTER2="r'")
    assert sibling_image(catalogue) == tmp_path / "a.fit"
    plan = plan_upload(catalogue, exptime_s=61.0)
    assert plan.mjd == pytest.approx(57000.25 + 30 / 86400) and plan.exptime_s == 61.0
    assert plan.filter_name == "r'" and plan.header_from == tmp_path / "a.fit"
    assert plan_upload(catalogue, use_sibling=False).mjd is None
    assert expand_inputs([str(tmp_path / "*.cat"), str(catalogue)]) == [catalogue]

    assert format_magnitude({"mag": 16.2341, "mag_err": 0.0123, "is_upper_limit": False}) == "16.234 ± 0.012"
    assert format_magnitude({"mag": 19.0, "limit_mag": 19.414, "is_upper_limit": True}) == "> 19.41"
    assert format_magnitude({"mag": None}) == "-"
    policy = RetryPolicy(base_s=0.5, cap_s=4.0)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert policy.delay(1, "3") == 3.0 and policy.delay(1, "soon") == 0.5
