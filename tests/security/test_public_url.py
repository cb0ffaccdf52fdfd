"""Links CPCS gives out start with the configured public URL, never with the client's Host header."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from cpcs.settings import Settings, origin_of
from cpcs.simulation.catalogue_simulator import simulate_field, to_sextractor_ascii
from tests.badinput.corpus import good_catalogue
from tests.conftest import FIELD_DEC_DEG, FIELD_RA_DEG
from tests.security.conftest import ALERT, SystemFactory, add_alert, bearer

FORGED = {"Host": "evil.example", "X-Forwarded-Host": "evil.example"}


def test_status_url_and_location_ignore_the_host_header(make_system: SystemFactory, tmp_path: Path) -> None:
    system = make_system(public_url="https://cpcs.example.org/base")
    field = simulate_field(7, n_stars=300, ra_deg=FIELD_RA_DEG, dec_deg=FIELD_DEC_DEG, target="bright")
    system.import_field(field, tmp_path / "refs")
    add_alert(system)
    accepted = system.client.post(
        "/api/v1/uploads",
        data={"alert": ALERT, "mjd": "57737.8", "dry_run": "true"},
        files={"file": ("frame.cat", good_catalogue())},
        headers={**bearer(system.observer_token), **FORGED},
    )
    assert accepted.status_code == 202, accepted.text
    observation_id = accepted.json()["observation_id"]
    expected = f"https://cpcs.example.org/base/api/v1/observations/{observation_id}"
    assert accepted.json()["status_url"] == expected
    assert accepted.headers["location"] == expected

    catalogue = to_sextractor_ascii(field.ra_deg, field.dec_deg, field.mag, field.magerr).encode()
    legacy = system.client.post(
        "/followup/cgi/upload",
        data={"EventID": ALERT, "hashtag": system.observer_token, "outputFormat": "json", "MJD": "57737.9"},
        files={"sexCat": ("other.cat", catalogue)},
        headers=FORGED,
    )
    assert legacy.status_code == 200, legacy.text
    assert "evil.example" not in legacy.text
    assert "https://cpcs.example.org/base/api/v1/observations/" in legacy.text

    export = system.client.get(
        "/api/v1/alerts/1/export",
        params={"format": "csv"},
        headers={**bearer(system.observer_token), **FORGED},
    )
    assert export.status_code == 200 and "evil.example" not in export.text


def test_without_a_public_url_links_use_the_configured_host_and_port() -> None:
    assert Settings(host="0.0.0.0", port=8123).public_base_url == "http://127.0.0.1:8123/"
    assert Settings(host="cpcs.lan", port=80).public_base_url == "http://cpcs.lan:80/"
    assert Settings(public_url="https://cpcs.example.org").public_base_url == "https://cpcs.example.org/"


@pytest.mark.parametrize("value", ["cpcs.example.org", "ftp://x/", "https://x/?a=1", "https:///path"])
def test_public_url_must_be_an_http_base_url(value: str) -> None:
    with pytest.raises(ValidationError, match="public_url"):
        Settings(public_url=value)


def _upload_form_action(page: str) -> str:
    match = re.search(r'<form id="upload-form"[^>]* action="([^"]+)"', page)
    assert match is not None
    return match.group(1)


def test_on_one_host_the_upload_page_posts_to_its_own_origin(make_system: SystemFactory) -> None:
    system = make_system()
    page = system.client.get("/upload")
    assert page.status_code == 200
    assert _upload_form_action(page.text) == "/api/v1/uploads"
    assert "connect-src 'self';" in page.headers["content-security-policy"]


def test_without_a_gateway_the_upload_page_posts_to_ingest(make_system: SystemFactory) -> None:
    """api and ingest on their own ports: the page (on the api) sends the form to ingest's URL, its CSP
    lets it, and ingest accepts writes from the api's origin (ours) but from no other."""
    system = make_system(public_url="http://cpcs.lan:8000/", ingest_public_url="http://cpcs.lan:8001")
    page = system.client.get("/upload")
    assert _upload_form_action(page.text) == "http://cpcs.lan:8001/api/v1/uploads"
    policy = page.headers["content-security-policy"]
    assert "connect-src 'self' http://cpcs.lan:8001;" in policy
    assert "form-action 'self' http://cpcs.lan:8001;" in policy
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    ours = system.client.options("/api/v1/uploads", headers={"Origin": "http://cpcs.lan:8000", **preflight})
    assert ours.status_code == 204 and ours.headers["access-control-allow-origin"] == "http://cpcs.lan:8000"
    other = system.client.options("/api/v1/uploads", headers={"Origin": "http://cpcs.lan:9000", **preflight})
    assert other.status_code == 403


def test_origins_are_named_as_browsers_name_them() -> None:
    assert origin_of("HTTPS://CPCS.example.org:443/base/") == "https://cpcs.example.org"
    assert origin_of("http://cpcs.lan:8001/") == "http://cpcs.lan:8001"
    assert origin_of("http://[::1]:80") == "http://[::1]"
    assert Settings(public_url="https://cpcs.example.org/x", cors_origins="https://a.org").write_origins == (
        "https://a.org",
        "https://cpcs.example.org",
    )
    with pytest.raises(ValidationError, match="ingest_public_url"):
        Settings(ingest_public_url="cpcs.lan:8001")
