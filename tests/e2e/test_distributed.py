"""The manual's flow with every service as its own process, on the machine's RabbitMQ and PostgreSQL."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from cpcs.simulation.catalogue_simulator import SimulatedField, to_sextractor_ascii
from cpcs.simulation.image_simulator import image_to_fits_bytes, simulate_image
from cpcs.simulation.reference_files import write_reference_tables
from cpcs.testing.processes import distributed_processes
from cpcs.testing.servers import temporary_postgres_database, temporary_rabbitmq_vhost
from cpcs_api.outbound.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from tests.conftest import FIELD_DEC_DEG, FIELD_RA_DEG

FINAL = ("calibrated", "failed", "error")


@contextmanager
def webhook_receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A subscriber's endpoint on 127.0.0.1: its URL and every request it got (body and headers)."""
    received: list[dict[str, Any]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            received.append({"raw": raw, "headers": {k.lower(): v for k, v in self.headers.items()}})
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            del format, args

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, name="test-webhook", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


def test_curl_flow_across_processes(
    tmp_path: Path, gaia16aye_field: SimulatedField, monkeypatch: pytest.MonkeyPatch
) -> None:
    field = gaia16aye_field
    monkeypatch.setenv("CPCS_OUTBOUND_ALLOW_PRIVATE_TARGETS", "true")  # the receiver is on loopback
    monkeypatch.setenv("CPCS_OUTBOUND_POLL_S", "0.2")
    with (
        webhook_receiver() as (hook_url, received),
        temporary_rabbitmq_vhost() as broker_url,
        temporary_postgres_database() as database_url,
        distributed_processes(tmp_path / "data", database_url, broker_url) as system,
    ):
        token = system.cli(
            "users", "add", "K. Rybicki", "--observatory", "Ostrowik", "--lon", "21.4", "--lat", "52.1"
        )
        token = token.strip()
        for survey, path in write_reference_tables(field, tmp_path / "refs").items():
            assert "stars in" in system.cli("catalog", "import", "--survey", survey, str(path))

        created = httpx.post(
            f"{system.api_url}/followup/newevent",
            data={"ivorn": "ivo://Gaia16aye", "ra": FIELD_RA_DEG, "dec": FIELD_DEC_DEG, "hashtag": token},
        )
        assert created.status_code == 201, created.text
        subscribed = httpx.post(
            f"{system.api_url}/api/v1/webhooks",
            json={"url": hook_url, "alert_id": created.json()["id"]},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert subscribed.status_code == 201, subscribed.text
        secret = subscribed.json()["secret"]
        catalogue = to_sextractor_ascii(field.ra_deg, field.dec_deg, field.mag, field.magerr).encode()
        form = {
            "matchDist": "2",
            "MJD": "57737.8",
            "expTime": "120",
            "EventID": "ivo://Gaia16aye",
            "forceFilter": "no",
            "hashtag": token,
            "outputFormat": "json",
            "noPlot": "1",
            "dryRun": "0",
        }
        started = time.monotonic()
        response = httpx.post(
            f"{system.ingest_url}/followup/cgi/upload",
            data=form,
            files={"sexCat": ("a.cat", catalogue)},
            timeout=120,
        )
        assert response.status_code == 200, response.text
        result = response.json()
        assert time.monotonic() - started < 30
        # The band closest to the instrument's (R); PS1's R, derived from g, r, i, is nearly as close
        # and may win it by the target's calibration error (as in the embedded legacy flow).
        closest = min(field.truth.bands, key=lambda b: abs(b.colour_term))
        assert result["filter"] == closest.band and result["survey"] in (closest.survey, "PS1")

        lc = httpx.get(
            f"{system.api_url}/followup/get_alert_lc_data",
            params={"alert_name": "ivo://Gaia16aye", "hashtag": token},
        ).json()
        assert lc["id"] == [result["followup_id"]]
        # No gateway: the links ingest gives out are the api's (CPCS_PUBLIC_URL), and they answer.
        bearer = {"Authorization": f"Bearer {token}"}
        assert result["image_link"].startswith(f"{system.api_url}/")
        shown = httpx.get(result["image_link"], headers=bearer)
        assert shown.status_code == 200 and shown.json()["id"] == result["observation_id"]

        # The same file again, as the HTML page with its plot: the existing point, the page and plot links.
        again = httpx.post(
            f"{system.ingest_url}/followup/cgi/upload",
            data={**form, "outputFormat": "html", "noPlot": "0"},
            files={"sexCat": ("a.cat", catalogue)},
            timeout=120,
        )
        assert again.status_code == 200 and again.headers["content-type"].startswith("text/html")
        assert f"<th>Followup id</th><td>{result['followup_id']}</td>" in again.text
        page_url = f"{system.api_url}/observations/{result['observation_id']}"
        assert f"href='{page_url}'" in again.text
        assert f"src='{page_url}/calibration.svg'" in again.text
        assert system.api_url in again.headers["content-security-policy"]  # the image may load from the api
        observation_page = httpx.get(page_url)
        assert observation_page.status_code == 200 and "calibration-data" in observation_page.text
        plot = httpx.get(f"{page_url}/calibration.svg", timeout=30)
        assert plot.status_code == 200 and plot.headers["content-type"].startswith("image/svg+xml")
        assert plot.text.count('class="used"') >= 5 and 'class="fit"' in plot.text
        deleted = httpx.post(
            f"{system.api_url}/followup/cgi/delpoint",
            data={"followupid": result["followup_id"], "hashtag": token},
        )
        assert deleted.status_code == 200
        for url in (system.ingest_url, system.api_url):
            assert httpx.get(f"{url}/readyz").json()["status"] == "ready"

        # The subscriber heard the point and its deletion (outbox -> RabbitMQ -> api), once each.
        deadline = time.monotonic() + 30
        while len(received) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # a third (duplicate) request would show up here
        assert [r["headers"]["x-cpcs-event"] for r in received] == ["point.calibrated", "point.deleted"]
        assert all(
            verify_signature(
                secret,
                r["raw"],
                r["headers"][SIGNATURE_HEADER.lower()],
                r["headers"][TIMESTAMP_HEADER.lower()],
            )
            for r in received
        )
        documents = [json.loads(r["raw"]) for r in received]
        assert {d["point"]["id"] for d in documents} == {result["followup_id"]}
        assert documents[1]["event"] == "point.deleted" and documents[1]["point"]["deleted_at"]

        # The api's upload page posts to ingest (CPCS_INGEST_PUBLIC_URL), cross-origin as a browser does.
        page = httpx.get(f"{system.api_url}/upload")
        assert page.status_code == 200
        action = re.search(r'<form id="upload-form"[^>]* action="([^"]+)"', page.text)
        assert action is not None and action.group(1) == f"{system.ingest_url}/api/v1/uploads"
        policy = dict(d.strip().split(" ", 1) for d in page.headers["content-security-policy"].split(";"))
        assert system.ingest_url in policy["connect-src"].split()
        origin = {"Origin": system.api_url}
        preflight = httpx.options(
            action.group(1),
            headers={
                **origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == system.api_url
        stranger = httpx.options(
            action.group(1),
            headers={"Origin": "http://elsewhere.example", "Access-Control-Request-Method": "POST"},
        )
        assert stranger.status_code == 403
        other = to_sextractor_ascii(field.ra_deg[:-1], field.dec_deg[:-1], field.mag[:-1], field.magerr[:-1])
        accepted = httpx.post(
            action.group(1),
            data={"alert": "ivo://Gaia16aye", "mjd": "57738.8", "dry_run": "false"},
            files={"file": ("b.cat", other.encode())},
            headers={**origin, **bearer},
            timeout=60,
        )
        assert accepted.status_code == 202, accepted.text
        assert accepted.headers["access-control-allow-origin"] == system.api_url
        status_url = accepted.json()["status_url"]
        assert status_url.startswith(f"{system.api_url}/")
        deadline = time.monotonic() + 60
        while (status := httpx.get(status_url, headers=bearer)).json()["status"] not in FINAL:
            assert time.monotonic() < deadline, status.text
            time.sleep(0.3)
        assert status.status_code == 200 and status.json()["status"] == "calibrated", status.text

        # An image of another target (its own simulated sky): reduce and calibrate as their own processes.
        image = simulate_image(9, shape=(768, 768), zp=27.5, ra_deg=150.1, dec_deg=2.2, target="bright")
        for survey, path in write_reference_tables(
            image.references.values(), tmp_path / "image-refs"
        ).items():
            system.cli("catalog", "import", "--survey", survey, str(path))
        created = httpx.post(
            f"{system.api_url}/followup/newevent",
            data={"ivorn": "ivo://Gaia17img", "ra": 150.1, "dec": 2.2, "hashtag": token},
        )
        assert created.status_code == 201, created.text
        form = {**form, "EventID": "ivo://Gaia17img", "forceFilter": "PS1/r"}
        response = httpx.post(
            f"{system.ingest_url}/followup/cgi/upload",
            data=form,
            files={"fitsFile": ("frame.fits", image_to_fits_bytes(image))},
            timeout=120,
        )
        assert response.status_code == 200, response.text
        assert image.target is not None
        truth = image.truth.band("PS1", "r")
        expected = image.target.true_mag - truth.colour_term * image.target.true_colour
        assert abs(response.json()["mag"] - expected) < 0.03
