"""Security headers on every response; CORS open for reads, closed for writes unless configured."""

from __future__ import annotations

import pytest

from cpcs.security import DATA_POLICY, page_policy
from tests.security.conftest import SystemFactory, bearer

COMMON = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}


def _directives(policy: str) -> dict[str, list[str]]:
    parts = (p.split() for p in policy.split(";") if p.strip())
    return {words[0]: words[1:] for words in parts}


def test_every_kind_of_response_carries_the_headers(make_system: SystemFactory) -> None:
    system = make_system()
    app = system.assembly.app
    assert app is not None

    def bug() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/test/bug", bug)
    client = system.client
    answers = {
        "json": client.get("/api/v1/alerts"),
        "not found": client.get("/api/v1/alerts/12345"),
        "unauthenticated": client.get("/api/v1/points"),
        "no route": client.get("/nothing-here"),
        "bug": client.get("/test/bug"),
        "page": client.get("/alerts"),
        "static": client.get("/static/cpcs.css"),
    }
    assert answers["bug"].status_code == 500 and "Traceback" not in answers["bug"].text
    for name, response in answers.items():
        for header, value in COMMON.items():
            assert response.headers.get(header) == value, (name, header)
        policy = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy, name
        expected = page_policy() if name == "page" else DATA_POLICY
        assert policy == expected, name


def test_pages_run_only_our_own_scripts_and_styles(make_system: SystemFactory) -> None:
    system = make_system()
    for path in ("/alerts", "/upload", "/observatories"):
        response = system.client.get(path)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
        policy = _directives(response.headers["content-security-policy"])
        assert policy["script-src"] == ["'self'"]
        assert policy["object-src"] == ["'none'"] and policy["base-uri"] == ["'none'"]
        assert "'unsafe-inline'" not in policy["style-src"]
        # beyond our files only hashes: fixed strings of the plotting library, never data
        assert all(
            s in ("'self'", "'unsafe-hashes'") or s.startswith("'sha256-") for s in policy["style-src"]
        )
        assert "<script>" not in response.text  # every script element of ours has a src or is JSON data


def test_the_api_documentation_keeps_working(make_system: SystemFactory) -> None:
    response = make_system().client.get("/docs")
    assert response.status_code == 200
    policy = _directives(response.headers["content-security-policy"])
    assert "https://cdn.jsdelivr.net" in policy["script-src"] and policy["frame-ancestors"] == ["'none'"]


def test_reads_are_open_to_every_origin(make_system: SystemFactory) -> None:
    client = make_system().client
    response = client.get("/api/v1/alerts", headers={"Origin": "https://anywhere.example"})
    assert response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in response.headers
    preflight = client.options(
        "/api/v1/alerts/1/lightcurve",
        headers={
            "Origin": "https://anywhere.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "Authorization" in preflight.headers["access-control-allow-headers"]
    assert "POST" not in preflight.headers["access-control-allow-methods"]


@pytest.mark.parametrize("path", ["/api/v1/uploads", "/api/v1/alerts", "/followup/cgi/upload"])
def test_writes_from_other_origins_are_refused_by_default(make_system: SystemFactory, path: str) -> None:
    system = make_system()
    preflight = system.client.options(
        path, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status_code == 403 and preflight.json()["error"] == "cors_origin_not_allowed"
    assert "access-control-allow-origin" not in preflight.headers
    # A form POST needs no preflight; its answer then carries no permission for the page to read it.
    simple = system.client.post(
        path, data={"x": "1"}, headers={"Origin": "https://evil.example", **bearer(system.observer_token)}
    )
    assert "access-control-allow-origin" not in simple.headers


def test_configured_origins_may_write(make_system: SystemFactory) -> None:
    system = make_system(cors_origins="https://broker.example, https://other.example/")
    preflight = system.client.options(
        "/api/v1/uploads",
        headers={"Origin": "https://other.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://other.example"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "Origin" in preflight.headers["vary"]
    response = system.client.post(
        "/api/v1/alerts",
        json={"name": "ivo://Cors1", "ra_deg": 1.0, "dec_deg": 2.0},
        headers={"Origin": "https://broker.example", **bearer(system.observer_token)},
    )
    assert response.status_code == 201
    assert response.headers["access-control-allow-origin"] == "https://broker.example"
    assert "Location" in response.headers["access-control-expose-headers"]
