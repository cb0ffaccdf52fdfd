"""Who may call what: every route of the embedded app against five callers.

The callers: no token, a wrong token, the observer who owns the resources used, another
observer, an admin. Each route has one rule:

``PUBLIC``
    Open to everyone; a token, right or wrong, changes nothing. The alerts (list, search, one
    alert), the web pages (light curve and calibration plots included, as the module docstring of
    ``cpcs_api.web.routes`` says), observatories, instruments (equipment, shown like the
    observatories, and their trends), filters, health, the API documents, and the catalog-cache's
    reference cones (public survey data, asked for by the calibrate service without a token).
``TOKEN``
    Any valid token: downloads of data (light curves, exports, observations, points, calibration
    requests, measured tables) and what every observer may do (add an alert, upload, list the
    webhooks they own). 401 without a token and with a wrong one.
``OWNER``
    Changing a point or an observation: its observer or an admin; another observer gets 403.
    Points and observations are not secret (they are on the public light curve), so 403 tells
    nothing new; an id that does not exist is 404.
``PRIVATE``
    A user's webhooks: only their owner sees or removes them. Anyone else, admins included, gets
    the 404 an id that does not exist gets, with the same code and message, so the existence of
    someone else's subscription does not leak.
``ADMIN``
    Admin tools (users, instruments, alert corrections, bulk recalibration, SkyPortal): 403 for
    observers whatever the id, so an observer cannot probe which ids exist.

Every rule answers 401 to a missing or wrong token before looking anything up, so nothing is
learnt without a token. :data:`ROUTES` classifies every method and path; a route added to the app
without a line there fails :func:`test_every_route_is_classified`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from sqlalchemy import select

from cpcs.catalogs.importer import import_catalogue_file
from cpcs.catalogs.tiles import TileStore
from cpcs.db.models import CalibrationRequest
from cpcs.settings import Settings
from cpcs.simulation.catalogue_simulator import SimulatedField, to_sextractor_ascii
from cpcs.simulation.image_simulator import image_to_fits_bytes, simulate_image
from cpcs.simulation.reference_files import write_reference_tables
from tests.conftest import FIELD_DEC_DEG, FIELD_RA_DEG, System, start_system

Caller = Literal["none", "wrong", "other", "admin", "observer"]
#: The owner comes last: some calls use up what they act on (a deleted point, a removed webhook).
CALLERS: tuple[Caller, ...] = ("none", "wrong", "other", "admin", "observer")
ALERT = "ivo://Gaia16aye"
IMAGE_ALERT = "ivo://CPCS-access-image"
IMAGE_RA_DEG, IMAGE_DEC_DEG = 297.0, 31.0  # the Galactic plane (stars enough), clear of ALERT
MISSING_ID = 987654
WRONG_TOKEN = "not-a-token-of-this-server-0123456789"


class Rule(Enum):
    PUBLIC = "public"
    TOKEN = "token"
    OWNER = "owner"
    PRIVATE = "private"
    ADMIN = "admin"


def expected_status(rule: Rule, caller: Caller, ok: int) -> int:
    if rule is Rule.PUBLIC:
        return ok
    if caller in ("none", "wrong"):
        return 401
    if rule is Rule.ADMIN:
        return ok if caller == "admin" else 403
    if rule is Rule.TOKEN or caller == "observer":
        return ok
    if rule is Rule.OWNER:
        return 403 if caller == "other" else ok
    return 404  # PRIVATE: someone else, admins included


@dataclass
class World:
    """The system and the resources the calls act on (created by the observer unless named)."""

    system: System
    field: SimulatedField
    alert_id: int
    image_alert_id: int
    points: dict[str, int]  # purpose -> point id (the observer's)
    observations: dict[str, int]  # purpose -> observation id
    request_id: int
    webhooks: dict[str, int]  # purpose -> the observer's webhook id
    destination_id: int
    other_observatory_id: int
    templates: dict[str, int] = field(default_factory=dict)  # "observer"/"admin" -> the observer's
    template_fits: bytes = b""
    instrument_id: int = 0  # an instrument of the observer's observatory, added after the uploads

    def token(self, caller: Caller) -> str | None:
        return {
            "none": None,
            "wrong": WRONG_TOKEN,
            "observer": self.system.observer_token,
            "other": self.system.other_token,
            "admin": self.system.admin_token,
        }[caller]


@dataclass
class Call:
    method: str
    url: str
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    data: dict[str, Any] | None = None
    files: dict[str, tuple[str, bytes]] | None = None
    legacy: bool = False  # the token goes in the 'hashtag' field, as CPCS scripts send it


Build = Callable[[World, Caller], Call]


@dataclass(frozen=True)
class Route:
    rule: Rule
    ok: int
    build: Build
    #: For TOKEN/OWNER/PRIVATE/ADMIN routes with an id: the same call on an id that does not exist.
    missing: Build | None = None


def _get(url: str, **params: Any) -> Build:
    return lambda world, caller: Call("GET", url.format(**vars(world)), params=dict(params))


def _catalogue(field: SimulatedField, note: str) -> bytes:
    text = to_sextractor_ascii(field.ra_deg, field.dec_deg, field.mag, field.magerr)
    return (text + f"# {note}\n").encode()


def _upload_v1(world: World, caller: Caller) -> Call:
    return Call(
        "POST",
        "/api/v1/uploads",
        data={"alert": ALERT, "dry_run": "true", "mjd": "57737.8"},
        files={"file": ("frame.cat", _catalogue(world.field, f"v1 upload by {caller}"))},
    )


def _upload_legacy(world: World, caller: Caller) -> Call:
    return Call(
        "POST",
        "/followup/cgi/upload",
        data={"EventID": ALERT, "MJD": "57737.8", "dryRun": "1", "outputFormat": "json"},
        files={"sexCat": ("frame.cat", _catalogue(world.field, f"legacy upload by {caller}"))},
        legacy=True,
    )


def _consumed(kind: str, url: str, method: str = "POST", **extra: Any) -> Build:
    """A call that uses up its resource (``world.<kind>``): the observer and the admin each get one of
    the observer's; the others are sent to the observer's, which is still there when they call."""

    def build(world: World, caller: Caller) -> Call:
        resource = getattr(world, kind)[f"{'admin' if caller == 'admin' else 'observer'}-{url}"]
        return Call(method, url.format(id=resource), **extra)

    return build


def _missing(method: str, url: str, legacy_field: str | None = None, **extra: Any) -> Build:
    def build(world: World, caller: Caller) -> Call:
        if legacy_field is not None:
            return Call(method, url, data={legacy_field: str(MISSING_ID)}, legacy=True)
        return Call(method, url.format(id=MISSING_ID), **extra)

    return build


def _named(kind: str) -> Build:
    """A creation whose body must differ per caller (unique names)."""

    def build(world: World, caller: Caller) -> Call:
        tag = f"{caller}-{time.monotonic_ns()}"
        if kind == "alert":
            return Call(
                "POST", "/api/v1/alerts", json={"name": f"ivo://access-{tag}", "ra_deg": 10.0, "dec_deg": 5.0}
            )
        if kind == "newevent":
            return Call(
                "POST",
                "/followup/newevent",
                data={"ivorn": f"ivo://access-legacy-{tag}", "ra": "11.0", "dec": "-5.0"},
                legacy=True,
            )
        if kind == "user":
            return Call("POST", "/api/v1/users", json={"name": f"user {tag}", "observatory": f"site {tag}"})
        if kind == "instrument":
            return Call(
                "POST", "/api/v1/instruments", json={"observatory": "Ostrowik 0.6m", "name": f"camera {tag}"}
            )
        if kind == "webhook":
            return Call("POST", "/api/v1/webhooks", json={"url": f"https://hooks.example.org/{tag}"})
        if kind == "destination":
            return Call(
                "POST",
                "/api/v1/skyportal/destinations",
                json={
                    "name": f"fritz {tag}",
                    "base_url": "https://fritz.example.org",
                    "token": "secret-token",
                    "instrument_id": 1,
                },
            )
        raise AssertionError(kind)

    return build


def _with_id(method: str, url: str, attribute: str, key: str | None = None, **extra: Any) -> Build:
    def build(world: World, caller: Caller) -> Call:
        value = getattr(world, attribute)
        return Call(method, url.format(id=value[key] if key else value), **extra)

    return build


ROUTES: dict[tuple[str, str], Route] = {
    # The API documents and health.
    ("GET", "/openapi.json"): Route(Rule.PUBLIC, 200, _get("/openapi.json")),
    ("GET", "/docs"): Route(Rule.PUBLIC, 200, _get("/docs")),
    ("GET", "/docs/oauth2-redirect"): Route(Rule.PUBLIC, 200, _get("/docs/oauth2-redirect")),
    ("GET", "/redoc"): Route(Rule.PUBLIC, 200, _get("/redoc")),
    ("GET", "/healthz"): Route(Rule.PUBLIC, 200, _get("/healthz")),
    ("GET", "/readyz"): Route(Rule.PUBLIC, 200, _get("/readyz")),
    ("GET", "/metrics"): Route(Rule.PUBLIC, 200, _get("/metrics")),
    # Operations: the page is a shell that reads the admin-only status with the visitor's token.
    ("GET", "/admin/status"): Route(Rule.PUBLIC, 200, _get("/admin/status")),
    ("GET", "/api/v1/admin/status"): Route(Rule.ADMIN, 200, _get("/api/v1/admin/status")),
    ("POST", "/api/v1/admin/dead-letters/{queue}/replay"): Route(
        Rule.ADMIN, 200, lambda world, caller: Call("POST", "/api/v1/admin/dead-letters/calibrate/replay")
    ),
    # Web pages.
    ("GET", "/"): Route(Rule.PUBLIC, 302, _get("/")),
    ("GET", "/static/{name}"): Route(Rule.PUBLIC, 200, _get("/static/cpcs.css")),
    ("GET", "/alerts"): Route(Rule.PUBLIC, 200, _get("/alerts")),
    ("GET", "/alerts/{alert_id}"): Route(Rule.PUBLIC, 200, _get("/alerts/{alert_id}")),
    ("GET", "/observations/{observation_id}"): Route(
        Rule.PUBLIC, 200, _with_id("GET", "/observations/{id}", "observations", "read")
    ),
    ("GET", "/observations/{observation_id}/calibration.svg"): Route(
        Rule.PUBLIC, 200, _with_id("GET", "/observations/{id}/calibration.svg", "observations", "read")
    ),
    ("GET", "/upload"): Route(Rule.PUBLIC, 200, _get("/upload")),
    ("GET", "/observatories"): Route(Rule.PUBLIC, 200, _get("/observatories")),
    ("GET", "/instruments/{instrument_id}"): Route(Rule.PUBLIC, 200, _get("/instruments/{instrument_id}")),
    # Alerts.
    ("GET", "/api/v1/alerts"): Route(Rule.PUBLIC, 200, _get("/api/v1/alerts")),
    ("POST", "/api/v1/alerts"): Route(Rule.TOKEN, 201, _named("alert")),
    ("GET", "/api/v1/alerts/cone"): Route(
        Rule.PUBLIC, 200, _get("/api/v1/alerts/cone", ra_deg=FIELD_RA_DEG, dec_deg=FIELD_DEC_DEG)
    ),
    ("GET", "/api/v1/alerts/by-name"): Route(Rule.PUBLIC, 200, _get("/api/v1/alerts/by-name", name=ALERT)),
    ("GET", "/api/v1/alerts/{alert_id}"): Route(Rule.PUBLIC, 200, _get("/api/v1/alerts/{alert_id}")),
    ("PATCH", "/api/v1/alerts/{alert_id}"): Route(
        Rule.ADMIN,
        200,
        _with_id("PATCH", "/api/v1/alerts/{id}", "alert_id", json={"url": "https://example.org/a"}),
        _missing("PATCH", "/api/v1/alerts/{id}", json={"url": "https://example.org/a"}),
    ),
    ("GET", "/api/v1/alerts/{alert_id}/lightcurve"): Route(
        Rule.TOKEN,
        200,
        _get("/api/v1/alerts/{alert_id}/lightcurve"),
        _missing("GET", "/api/v1/alerts/{id}/lightcurve"),
    ),
    ("GET", "/api/v1/alerts/{alert_id}/export"): Route(
        Rule.TOKEN,
        200,
        _get("/api/v1/alerts/{alert_id}/export", format="csv"),
        _missing("GET", "/api/v1/alerts/{id}/export"),
    ),
    # The periodogram of a band (the world's alert has too few points: a 422 that says so).
    ("GET", "/api/v1/alerts/{alert_id}/periodogram"): Route(
        Rule.TOKEN,
        422,
        _get("/api/v1/alerts/{alert_id}/periodogram", band="r"),
        _missing("GET", "/api/v1/alerts/{id}/periodogram", params={"band": "r"}),
    ),
    # A TNS report is of the caller's own points (an admin's: all); every caller here has some.
    ("GET", "/api/v1/alerts/{alert_id}/tns-report"): Route(
        Rule.TOKEN,
        200,
        _get("/api/v1/alerts/{alert_id}/tns-report"),
        _missing("GET", "/api/v1/alerts/{id}/tns-report"),
    ),
    # Sending is not configured here: the owner's and an admin's answer is "off" (409).
    ("POST", "/api/v1/alerts/{alert_id}/tns-report/send"): Route(
        Rule.TOKEN,
        409,
        _with_id("POST", "/api/v1/alerts/{id}/tns-report/send", "alert_id", json={"digest": "0" * 64}),
        _missing("POST", "/api/v1/alerts/{id}/tns-report/send", json={"digest": "0" * 64}),
    ),
    ("POST", "/api/v1/alerts/{alert_id}/recalibrate"): Route(
        Rule.ADMIN,
        202,
        _with_id("POST", "/api/v1/alerts/{id}/recalibrate", "image_alert_id", json={"dry_run": True}),
        _missing("POST", "/api/v1/alerts/{id}/recalibrate", json={"dry_run": True}),
    ),
    ("POST", "/api/v1/alerts/{alert_id}/templates"): Route(
        Rule.TOKEN,
        201,
        lambda world, caller: Call(
            "POST",
            f"/api/v1/alerts/{world.image_alert_id}/templates",
            data={"filter": "r"},
            files={"file": ("template.fits", world.template_fits)},
        ),
        lambda world, caller: Call(
            "POST",
            f"/api/v1/alerts/{MISSING_ID}/templates",
            data={"filter": "r"},
            files={"file": ("template.fits", world.template_fits)},
        ),
    ),
    ("GET", "/api/v1/alerts/{alert_id}/templates"): Route(
        Rule.TOKEN,
        200,
        _with_id("GET", "/api/v1/alerts/{id}/templates", "image_alert_id"),
        _missing("GET", "/api/v1/alerts/{id}/templates"),
    ),
    ("DELETE", "/api/v1/alerts/{alert_id}/templates/{template_id}"): Route(
        Rule.OWNER,
        200,
        lambda world, caller: Call(
            "DELETE",
            f"/api/v1/alerts/{world.image_alert_id}/templates/"
            f"{world.templates['admin' if caller == 'admin' else 'observer']}",
        ),
        lambda world, caller: Call("DELETE", f"/api/v1/alerts/{world.image_alert_id}/templates/{MISSING_ID}"),
    ),
    # Uploads.
    ("POST", "/api/v1/uploads"): Route(Rule.TOKEN, 202, _upload_v1),
    ("POST", "/followup/cgi/upload"): Route(Rule.TOKEN, 200, _upload_legacy),
    # Observations, requests, points.
    ("GET", "/api/v1/observations/{observation_id}"): Route(
        Rule.TOKEN,
        200,
        _with_id("GET", "/api/v1/observations/{id}", "observations", "read"),
        _missing("GET", "/api/v1/observations/{id}"),
    ),
    ("GET", "/api/v1/observations/{observation_id}/calibrations"): Route(
        Rule.TOKEN,
        200,
        _with_id("GET", "/api/v1/observations/{id}/calibrations", "observations", "read"),
        _missing("GET", "/api/v1/observations/{id}/calibrations"),
    ),
    ("GET", "/api/v1/observations/{observation_id}/reduction"): Route(
        Rule.TOKEN,
        200,
        _with_id("GET", "/api/v1/observations/{id}/reduction", "observations", "image"),
        _missing("GET", "/api/v1/observations/{id}/reduction"),
    ),
    ("GET", "/api/v1/observations/{observation_id}/sources"): Route(
        Rule.TOKEN,
        200,
        _with_id("GET", "/api/v1/observations/{id}/sources", "observations", "image"),
        _missing("GET", "/api/v1/observations/{id}/sources"),
    ),
    ("GET", "/api/v1/observations/{observation_id}/difference"): Route(
        Rule.TOKEN,
        200,
        _with_id("GET", "/api/v1/observations/{id}/difference", "observations", "image"),
        _missing("GET", "/api/v1/observations/{id}/difference"),
    ),
    ("GET", "/api/v1/observations/{observation_id}/candidates"): Route(
        Rule.TOKEN,
        200,
        _with_id("GET", "/api/v1/observations/{id}/candidates", "observations", "image"),
        _missing("GET", "/api/v1/observations/{id}/candidates"),
    ),
    # Pictures of an image's pixels: data like the difference image (the page fetches them with a token).
    ("GET", "/api/v1/observations/{observation_id}/thumbnail.png"): Route(
        Rule.TOKEN,
        200,
        _with_id("GET", "/api/v1/observations/{id}/thumbnail.png", "observations", "image"),
        _missing("GET", "/api/v1/observations/{id}/thumbnail.png"),
    ),
    ("GET", "/api/v1/observations/{observation_id}/cutout.png"): Route(
        Rule.TOKEN,
        200,
        _with_id("GET", "/api/v1/observations/{id}/cutout.png", "observations", "image", params={"size": 32}),
        _missing("GET", "/api/v1/observations/{id}/cutout.png"),
    ),
    ("PATCH", "/api/v1/observations/{observation_id}"): Route(
        Rule.OWNER,
        200,
        lambda world, caller: Call(
            "PATCH",
            f"/api/v1/observations/{world.observations['read']}",
            json={"comment": f"seen by {caller}"},
        ),
        _missing("PATCH", "/api/v1/observations/{id}", json={"comment": "nobody's"}),
    ),
    ("GET", "/api/v1/observations/{observation_id}/revisions"): Route(
        Rule.TOKEN,
        200,
        _with_id("GET", "/api/v1/observations/{id}/revisions", "observations", "read"),
        _missing("GET", "/api/v1/observations/{id}/revisions"),
    ),
    ("POST", "/api/v1/observations/{observation_id}/recalibrate"): Route(
        Rule.OWNER,
        202,
        _consumed("observations", "/api/v1/observations/{id}/recalibrate", json={"dry_run": True}),
        _missing("POST", "/api/v1/observations/{id}/recalibrate", json={"dry_run": True}),
    ),
    ("GET", "/api/v1/calibration-requests/{request_id}"): Route(
        Rule.TOKEN,
        200,
        _with_id("GET", "/api/v1/calibration-requests/{id}", "request_id"),
        _missing("GET", "/api/v1/calibration-requests/{id}"),
    ),
    ("GET", "/api/v1/points"): Route(Rule.TOKEN, 200, _get("/api/v1/points")),
    ("DELETE", "/api/v1/points/{point_id}"): Route(
        Rule.OWNER,
        200,
        _consumed("points", "/api/v1/points/{id}", method="DELETE"),
        _missing("DELETE", "/api/v1/points/{id}"),
    ),
    ("POST", "/api/v1/observatories/{observatory_id}/recalibrate"): Route(
        Rule.ADMIN,
        202,
        _with_id(
            "POST", "/api/v1/observatories/{id}/recalibrate", "other_observatory_id", json={"dry_run": True}
        ),
        _missing("POST", "/api/v1/observatories/{id}/recalibrate", json={"dry_run": True}),
    ),
    # Accounts and registries.
    ("GET", "/api/v1/me"): Route(Rule.TOKEN, 200, _get("/api/v1/me")),
    ("PATCH", "/api/v1/me"): Route(
        Rule.TOKEN, 200, lambda world, caller: Call("PATCH", "/api/v1/me", json={"aavso_obscode": "TST01"})
    ),
    ("POST", "/api/v1/users"): Route(Rule.ADMIN, 201, _named("user")),
    ("GET", "/api/v1/instruments"): Route(Rule.PUBLIC, 200, _get("/api/v1/instruments")),
    ("GET", "/api/v1/instruments/{instrument_id}/trends"): Route(
        Rule.PUBLIC, 200, _get("/api/v1/instruments/{instrument_id}/trends")
    ),
    ("POST", "/api/v1/instruments"): Route(Rule.ADMIN, 201, _named("instrument")),
    ("GET", "/api/v1/observatories"): Route(Rule.PUBLIC, 200, _get("/api/v1/observatories")),
    ("GET", "/api/v1/filters"): Route(Rule.PUBLIC, 200, _get("/api/v1/filters")),
    # Reference catalogues (the catalog-cache service's own API).
    ("GET", "/api/v1/cone"): Route(
        Rule.PUBLIC, 200, _get("/api/v1/cone", ra_deg=FIELD_RA_DEG, dec_deg=FIELD_DEC_DEG, radius_deg=0.05)
    ),
    ("GET", "/api/v1/surveys"): Route(Rule.PUBLIC, 200, _get("/api/v1/surveys")),
    ("GET", "/api/v1/coverage"): Route(
        Rule.PUBLIC, 200, _get("/api/v1/coverage", ra_deg=150.0, dec_deg=-60.0, radius_deg=0.2)
    ),
    # Webhooks and SkyPortal.
    ("POST", "/api/v1/webhooks"): Route(Rule.TOKEN, 201, _named("webhook")),
    ("GET", "/api/v1/webhooks"): Route(Rule.TOKEN, 200, _get("/api/v1/webhooks")),
    ("DELETE", "/api/v1/webhooks/{webhook_id}"): Route(
        Rule.PRIVATE,
        204,
        _with_id("DELETE", "/api/v1/webhooks/{id}", "webhooks", "delete"),
        _missing("DELETE", "/api/v1/webhooks/{id}"),
    ),
    ("GET", "/api/v1/webhooks/{webhook_id}/deliveries"): Route(
        Rule.PRIVATE,
        200,
        _with_id("GET", "/api/v1/webhooks/{id}/deliveries", "webhooks", "read"),
        _missing("GET", "/api/v1/webhooks/{id}/deliveries"),
    ),
    ("POST", "/api/v1/skyportal/destinations"): Route(Rule.ADMIN, 201, _named("destination")),
    ("GET", "/api/v1/skyportal/destinations"): Route(Rule.ADMIN, 200, _get("/api/v1/skyportal/destinations")),
    ("PATCH", "/api/v1/skyportal/destinations/{destination_id}"): Route(
        Rule.ADMIN,
        200,
        _with_id("PATCH", "/api/v1/skyportal/destinations/{id}", "destination_id", json={"active": False}),
        _missing("PATCH", "/api/v1/skyportal/destinations/{id}", json={"active": False}),
    ),
    ("GET", "/api/v1/skyportal/destinations/{destination_id}/deliveries"): Route(
        Rule.ADMIN,
        200,
        _with_id("GET", "/api/v1/skyportal/destinations/{id}/deliveries", "destination_id"),
        _missing("GET", "/api/v1/skyportal/destinations/{id}/deliveries"),
    ),
    # Hermes: its settings (never the password) and the messages of the caller's points (an admin's: all).
    ("GET", "/api/v1/hermes"): Route(Rule.TOKEN, 200, _get("/api/v1/hermes")),
    ("GET", "/api/v1/hermes/deliveries"): Route(Rule.TOKEN, 200, _get("/api/v1/hermes/deliveries")),
    # Legacy CPCS.
    ("GET", "/followup/get_alert_lc_data"): Route(
        Rule.TOKEN,
        200,
        lambda world, caller: Call(
            "GET", "/followup/get_alert_lc_data", params={"alert_name": ALERT}, legacy=True
        ),
        lambda world, caller: Call(
            "GET", "/followup/get_alert_lc_data", params={"alert_id": str(MISSING_ID)}, legacy=True
        ),
    ),
    ("POST", "/followup/get_alert_lc_data"): Route(
        Rule.TOKEN,
        200,
        lambda world, caller: Call(
            "POST", "/followup/get_alert_lc_data", data={"alert_name": ALERT}, legacy=True
        ),
        _missing("POST", "/followup/get_alert_lc_data", legacy_field="alert_id"),
    ),
    ("GET", "/followup/list_of_alerts"): Route(
        Rule.PUBLIC, 200, _get("/followup/list_of_alerts", format="json")
    ),
    ("POST", "/followup/newevent"): Route(Rule.TOKEN, 201, _named("newevent")),
    ("GET", "/followup/cgi/delpoint"): Route(
        Rule.OWNER,
        200,
        lambda world, caller: Call(
            "GET",
            "/followup/cgi/delpoint",
            params={"followupid": str(world.points[f"{'admin' if caller == 'admin' else 'observer'}-get"])},
            legacy=True,
        ),
        lambda world, caller: Call(
            "GET", "/followup/cgi/delpoint", params={"followupid": str(MISSING_ID)}, legacy=True
        ),
    ),
    ("POST", "/followup/cgi/delpoint"): Route(
        Rule.OWNER,
        200,
        lambda world, caller: Call(
            "POST",
            "/followup/cgi/delpoint",
            data={"followupid": str(world.points[f"{'admin' if caller == 'admin' else 'observer'}-post"])},
            legacy=True,
        ),
        _missing("POST", "/followup/cgi/delpoint", legacy_field="followupid"),
    ),
    ("GET", "/followup/observatories"): Route(Rule.PUBLIC, 200, _get("/followup/observatories")),
}


def app_routes(system: System) -> set[tuple[str, str]]:
    """Every method and path the app answers (HEAD, added by Starlette beside GET, aside)."""
    assert system.assembly.app is not None
    found = set()
    for route in iter_route_contexts(system.assembly.app.routes):
        for method in route.methods or ():
            if method != "HEAD" and route.path is not None:
                found.add((method, route.path))
    return found


# --------------------------------------------------------------------------------------------------
# The world the calls act on.


def _send(world: World, call: Call, caller: Caller) -> httpx.Response:
    token = world.token(caller)
    headers: dict[str, str] = {}
    params, data = dict(call.params), dict(call.data) if call.data is not None else None
    if token is not None and call.legacy:
        if call.method == "GET":
            params["hashtag"] = token
        else:
            data = {**(data or {}), "hashtag": token}
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return world.system.client.request(
        call.method,
        call.url,
        params=params or None,
        json=call.json,
        data=data,
        files=call.files,
        headers=headers,
        follow_redirects=False,
    )


def _as(system: System, token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _wait_calibrated(system: System, observation_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        body: dict[str, Any] = system.client.get(
            f"/api/v1/observations/{observation_id}", headers=_as(system, system.admin_token)
        ).json()
        if body["status"] != "received":
            assert body["status"] == "calibrated", (body["error_code"], body["error_message"])
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def _upload(system: System, token: str, alert: str, name: str, data: bytes, **form: str) -> int:
    accepted = system.client.post(
        "/api/v1/uploads",
        data={"alert": alert, "mjd": "57737.8", **form},
        files={"file": (name, data)},
        headers=_as(system, token),
    )
    assert accepted.status_code == 202, accepted.text
    observation_id: int = accepted.json()["observation_id"]
    return observation_id


def build_world(system: System, field_: SimulatedField, folder: Path) -> World:
    client = system.client
    for ivorn, ra, dec in ((ALERT, FIELD_RA_DEG, FIELD_DEC_DEG), (IMAGE_ALERT, IMAGE_RA_DEG, IMAGE_DEC_DEG)):
        added = client.post(
            "/followup/newevent",
            data={"ivorn": ivorn, "ra": ra, "dec": dec, "hashtag": system.observer_token},
        )
        assert added.status_code == 201, added.text
    system.import_field(field_, folder / "refs")
    image = simulate_image(5, shape=(512, 512), ra_deg=IMAGE_RA_DEG, dec_deg=IMAGE_DEC_DEG, target="bright")
    store = TileStore(system.context.settings.catalogs_dir)
    for survey, path in write_reference_tables(image.references.values(), folder / "image-refs").items():
        import_catalogue_file(store, survey, path, path.name)

    observer, other = system.observer_token, system.other_token
    # Templates of the image alert first, so that its image is subtracted (against itself).
    image_alert_id = client.get("/api/v1/alerts/by-name", params={"name": IMAGE_ALERT}).json()["id"]
    template_fits = image_to_fits_bytes(image)
    templates = {}
    for who in ("subtracted", "observer", "admin"):
        added_template = client.post(
            f"/api/v1/alerts/{image_alert_id}/templates",
            data={"filter": "r"},
            files={"file": ("template.fits", template_fits)},
            headers=_as(system, observer),
        )
        assert added_template.status_code == 201, added_template.text
        templates[who] = added_template.json()["id"]
    purposes = [
        "read",
        *(f"{who}-{what}" for who in ("observer", "admin") for what in ("del", "get", "post")),
    ]
    uploads = {p: _upload(system, observer, ALERT, "frame.cat", _catalogue(field_, p)) for p in purposes}
    recalibrate = "/api/v1/observations/{id}/recalibrate"
    for who in ("observer", "admin"):
        uploads[f"{who}-{recalibrate}"] = _upload(
            system, observer, ALERT, "frame.cat", _catalogue(field_, f"recalibrate {who}")
        )
    uploads["image"] = _upload(system, observer, IMAGE_ALERT, "frame.fits", image_to_fits_bytes(image))
    others = _upload(system, other, ALERT, "frame.cat", _catalogue(field_, "by the other observer"))
    points: dict[str, int] = {}
    for purpose, observation_id in [*uploads.items(), ("others", others)]:
        body = _wait_calibrated(system, observation_id)
        if purpose.endswith(("-del", "-get", "-post")):
            points[purpose.replace("-del", "-/api/v1/points/{id}")] = body["point"]["id"]

    def created(response: httpx.Response) -> int:
        assert response.status_code == 201, response.text
        value: int = response.json()["id"]
        return value

    hooks = {
        purpose: created(
            client.post(
                "/api/v1/webhooks",
                json={"url": f"https://hooks.example.org/{purpose}"},
                headers=_as(system, observer),
            )
        )
        for purpose in ("read", "delete")
    }
    destination = created(
        client.post(
            "/api/v1/skyportal/destinations",
            json={
                "name": "fritz",
                "base_url": "https://fritz.example.org",
                "token": "t0ken",
                "instrument_id": 1,
            },
            headers=_as(system, system.admin_token),
        )
    )
    instrument = created(
        client.post(
            "/api/v1/instruments",
            json={"observatory": "Ostrowik 0.6m", "name": "trends camera"},
            headers=_as(system, system.admin_token),
        )
    )
    alerts = client.get("/api/v1/alerts", params={"limit": 500}).json()["items"]
    by_name = {a["name"]: a["id"] for a in alerts}
    sites = {s["name"]: s["id"] for s in client.get("/api/v1/observatories").json()}
    with system.context.db.transaction() as session:
        request_id = session.scalar(
            select(CalibrationRequest.id).where(CalibrationRequest.observation_id == uploads["read"])
        )
    assert request_id is not None
    return World(
        system=system,
        field=field_,
        alert_id=by_name[ALERT],
        image_alert_id=by_name[IMAGE_ALERT],
        points=points,
        observations=uploads,
        request_id=request_id,
        webhooks=hooks,
        destination_id=destination,
        other_observatory_id=sites["pt5m La Palma"],
        templates=templates,
        template_fits=template_fits,
        instrument_id=instrument,
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, gaia16aye_field: SimulatedField) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("access")
    settings = Settings(
        data_dir=folder / "data",
        retry_base_s=0.05,
        outbox_poll_s=0.05,
        legacy_wait_s=30,
        # Forty wrong tokens in a row are the point here; throttling them is another test's business.
        auth_failures_per_token=0,
        auth_failures_per_client=0,
    )
    system = start_system(settings)
    # Webhooks and destinations below name public hosts: nothing may be sent to them.
    assert system.assembly.outbound is not None
    system.assembly.outbound.stop()
    try:
        yield build_world(system, gaia16aye_field, folder)
    finally:
        system.client.close()
        system.assembly.stop()


# --------------------------------------------------------------------------------------------------
# The tests.


def test_every_route_is_classified(world: World) -> None:
    routes = app_routes(world.system)
    unclassified = sorted(routes - ROUTES.keys())
    gone = sorted(ROUTES.keys() - routes)
    assert not unclassified, f"routes with no access rule in ROUTES: {unclassified}"
    assert not gone, f"ROUTES names routes the app no longer has: {gone}"


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def test_the_access_matrix(world: World) -> None:
    failures: list[str] = []
    for (method, path), route in ROUTES.items():
        for caller in CALLERS:
            response = _send(world, route.build(world, caller), caller)
            want = expected_status(route.rule, caller, route.ok)
            if response.status_code != want:
                failures.append(
                    f"{method} {path} as {caller}: {response.status_code}, expected {want} "
                    f"({route.rule.value}): {response.text[:160]}"
                )
            elif want >= 400 and not {"error", "message"} <= _body(response).keys():
                failures.append(f"{method} {path} as {caller}: {want} without an error body")
    assert not failures, f"{len(failures)} wrong answers:\n" + "\n".join(failures)


def _anonymised(response: httpx.Response) -> tuple[int, str, str]:
    body = _body(response)
    message = re.sub(r"\d+", "N", str(body.get("message", "")))
    return response.status_code, str(body.get("error")), message


def test_nothing_is_learnt_about_ids_without_the_right(world: World) -> None:
    """On an id that does not exist: 401 without a token, 403 for an observer on admin tools (as for
    an id that exists), and for private things the very answer someone else's id gets."""
    failures: list[str] = []
    for (method, path), route in ROUTES.items():
        if route.missing is None:
            continue
        for caller in ("none", "wrong", "other"):
            response = _send(world, route.missing(world, caller), caller)
            want = 401 if caller in ("none", "wrong") else (403 if route.rule is Rule.ADMIN else 404)
            if response.status_code != want:
                failures.append(
                    f"{method} {path} (missing id) as {caller}: {response.status_code}, expected {want}"
                )
        if route.rule is Rule.PRIVATE:
            theirs = _anonymised(_send(world, route.build(world, "other"), "other"))
            missing = _anonymised(_send(world, route.missing(world, "other"), "other"))
            if theirs != missing:
                failures.append(
                    f"{method} {path}: someone else's id answers {theirs}, a missing one {missing}"
                )
    assert not failures, "\n".join(failures)


def _observation(world: World, observation_id: int) -> dict[str, Any]:
    body: dict[str, Any] = world.system.client.get(
        f"/api/v1/observations/{observation_id}", headers=_as(world.system, world.system.admin_token)
    ).json()
    return body


def _history(world: World, observation_id: int) -> list[dict[str, Any]]:
    versions: list[dict[str, Any]] = world.system.client.get(
        f"/api/v1/observations/{observation_id}/calibrations",
        headers=_as(world.system, world.system.admin_token),
    ).json()
    return versions


def test_the_same_bytes_from_another_observer_are_his_own_observation(world: World) -> None:
    """Bob sends the exact bytes of Alice's catalogue for her alert, through both doors, with her
    parameters and with others: each time he gets an observation and a point of his own, with his
    time and comment, and nothing of Alice's moves. An admin may recalibrate hers, and it says who did."""
    system, client = world.system, world.system.client
    alice, bob, admin = system.observer_token, system.other_token, system.admin_token
    names = {t: client.get("/api/v1/me", headers=_as(system, t)).json()["name"] for t in (alice, bob, admin)}
    frame = _catalogue(world.field, "the frame Alice and Bob both have")
    hers_id = _upload(system, alice, ALERT, "alice.cat", frame, comment="Alice's night")
    hers = _wait_calibrated(system, hers_id)
    hers_before = (hers["point"], hers["calibration"]["id"], hers["mjd"], hers["comment"], hers["observer"])

    # The v1 door, Alice's parameters, Bob's own metadata.
    same = client.post(
        "/api/v1/uploads",
        data={"alert": ALERT, "mjd": "57738.25", "exptime_s": "45", "filter": "R", "comment": "Bob's night"},
        files={"file": ("bob.cat", frame)},
        headers=_as(system, bob),
    )
    assert same.status_code == 202, same.text
    assert same.json()["duplicate"] is False and same.json()["observation_id"] != hers_id
    his = _wait_calibrated(system, same.json()["observation_id"])
    assert his["observer"] == names[bob] and his["point"]["id"] != hers["point"]["id"]
    assert (his["mjd"], his["exptime_s"], his["filter_declared"], his["comment"]) == (
        57738.25,
        45.0,
        "R",
        "Bob's night",
    )
    assert his["point"]["mjd"] == 57738.25 and his["point"]["observer"] == names[bob]
    assert (his["filename"], hers["filename"]) == ("bob.cat", "alice.cat")  # the bytes are shared, names not

    # The legacy door, other parameters: a new version of Bob's observation, never of Alice's.
    legacy = client.post(
        "/followup/cgi/upload",
        data={
            "EventID": ALERT,
            "MJD": "57738.25",
            "expTime": "45",
            "comment": "Bob's night",
            "forceFilter": "GaiaSP/V",
            "matchDist": "3",
            "hashtag": bob,
            "outputFormat": "json",
        },
        files={"sexCat": ("bob.cat", frame)},
    )
    assert legacy.status_code == 200, legacy.text
    answer = legacy.json()
    assert answer["observation_id"] == his["id"] and answer["followup_id"] == his["point"]["id"]
    assert (answer["survey"], answer["filter"]) == ("GaiaSP", "V") and answer["duplicate"] is False
    moved = _observation(world, his["id"])
    assert moved["point"]["band"] == "V" and [c["version"] for c in _history(world, his["id"])] == [1, 2]

    # Alice's observation and point are as she left them; the light curve has both points.
    now = _observation(world, hers_id)
    assert (
        now["point"],
        now["calibration"]["id"],
        now["mjd"],
        now["comment"],
        now["observer"],
    ) == hers_before
    assert len(_history(world, hers_id)) == 1
    curve = client.get(f"/api/v1/alerts/{world.alert_id}/lightcurve", headers=_as(system, bob)).json()
    ids = {p["id"]: p["observer"] for p in curve["points"]}
    assert ids[hers["point"]["id"]] == names[alice] and ids[his["point"]["id"]] == names[bob]

    # Bob may not change hers; an admin may, and the version says who asked for it.
    refused = client.post(f"/api/v1/observations/{hers_id}/recalibrate", json={}, headers=_as(system, bob))
    assert refused.status_code == 403 and refused.json()["error"] == "not_your_observation"
    corrected = client.patch(f"/api/v1/observations/{hers_id}", json={"mjd": 1.0}, headers=_as(system, bob))
    assert corrected.status_code == 403 and _observation(world, hers_id)["mjd"] == hers["mjd"]
    run = client.post(f"/api/v1/observations/{hers_id}/recalibrate", json={}, headers=_as(system, admin))
    assert run.status_code == 202, run.text
    deadline = time.monotonic() + 60
    while (request := client.get(run.json()["status_url"], headers=_as(system, admin)).json())["status"] in (
        "received",
        "processing",
    ):
        assert time.monotonic() < deadline, request
        time.sleep(0.05)
    assert request["status"] == "calibrated" and request["requested_by"] == names[admin]
    assert [c["requested_by"] for c in _history(world, hers_id)] == [names[alice], names[admin]]
    assert [c["requested_by"] for c in _history(world, his["id"])] == [names[bob], names[bob]]
    with system.context.db.transaction() as session:
        first = session.scalars(
            select(CalibrationRequest).where(CalibrationRequest.observation_id == hers_id)
        ).first()
        assert (
            first is not None and first.requested_by is not None and first.requested_by.name == names[alice]
        )
