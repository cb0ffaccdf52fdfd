"""Outbound flow: points, their new versions and deletions to signed webhooks and to SkyPortal,
over real local HTTP servers.

The SkyPortal stand-in keeps photometry rows and checks every request against what SkyPortal
publishes for its photometry endpoints (see the docstring of ``cpcs_api.outbound.skyportal``):
a PUT against ``PhotMagFlexible`` (a repeat of a row answers the existing id), a PATCH of a row
against ``PhotometryMag`` (``group_ids``/``stream_ids`` popped first; ``altdata`` kept), a DELETE
of a row; an unknown row is 400 ``Invalid Photometry id``. It answers like SkyPortal (200 / 400
``{"status": "error"}``) and can fail its first calls with 500. The webhook receiver checks each
HMAC signature. Both listen on 127.0.0.1 only; nothing here leaves the machine.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import math
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text, update
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cpcs.catalogs.surveys import SURVEYS
from cpcs.db.delivery_models import Delivery, DeliveryAttempt, SkyPortalDestination, WebhookSubscription
from cpcs.db.engine import Database
from cpcs.db.models import Alert, Base, Calibration, Observation, Observatory, Point, Upload, User, utcnow
from cpcs.db.secret_box import KEY_FILE_NAME, SecretBox, SecretUnreadable, new_key
from cpcs.db.stored_secrets import unreadable_secrets
from cpcs.lightcurve.exports import (
    ExportRow,
    PointDetails,
    SkyPortalOptions,
    export_rows,
    skyportal_obj_id,
    skyportal_photometry,
)
from cpcs.messages import PointCalibratedV1, PointDeletedV1, encode
from cpcs.messaging.bus import Envelope
from cpcs.schemas import CalibrationOut, PointOut, as_utc
from cpcs.science.bands import export_band
from cpcs.settings import Settings
from cpcs.simulation.catalogue_simulator import SimulatedField, simulate_field, to_sextractor_ascii
from cpcs.testing.local_http import LocalServer
from cpcs.testing.servers import temporary_postgres_database
from cpcs_api.outbound import Outbound
from cpcs_api.outbound.dispatcher import MAX_REMOTE_ERROR_CHARS, DeliveryWorker, remote_error_summary
from cpcs_api.outbound.routes import UNREADABLE_TOKEN_HINT
from cpcs_api.outbound.skyportal import (
    NotSendable,
    already_deleted,
    encode_body,
    is_row_of,
    photometry_body,
    photometry_id,
    update_body,
)
from cpcs_api.outbound.webhooks import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    TargetNotAllowed,
    check_literal_host,
    check_resolved_host,
    request_headers,
    sign,
    verify_signature,
)
from cpcs_api.outbound.webhooks import payload as webhook_payload
from tests.conftest import FIELD_DEC_DEG, FIELD_RA_DEG, System, start_system

ALERT = "ivo://Gaia16aye"
LIMIT_ALERT = "ivo://AT2024faint"
LIMIT_RA_DEG, LIMIT_DEC_DEG = 150.1, 2.2
MJD = 57737.5
SKYPORTAL_TOKEN = "sp-token-0123456789abcdef"
SKYPORTAL_INSTRUMENT = 7

# --------------------------------------------------------------------------------------------------
# SkyPortal's published facts (skyportal/skyportal 8bd346c0, skyportal/models/schema.py and
# skyportal/handlers/api/photometry.py; the older skyportal/schema.py made limiting_mag required).

#: Keys ``PhotMagFlexible`` (with ``PhotBaseFlexible``) declares; marshmallow refuses any other.
SKYPORTAL_MAG_KEYS = frozenset(
    {
        "obj_id", "mjd", "instrument_id", "filter", "magsys", "mag", "magerr", "limiting_mag",
        "limiting_mag_nsigma", "magref", "e_magref", "assignment_id", "ra", "dec", "ra_unc",
        "dec_unc", "origin", "group_ids", "stream_ids", "altdata",
    }
)  # fmt: skip
SKYPORTAL_REQUIRED = ("obj_id", "mjd", "instrument_id", "filter", "magsys")
#: Keys ``PhotometryMag`` (with ``PhotBase``) declares: what a PATCH may carry besides the popped
#: ``group_ids``/``stream_ids``; ``limiting_mag_nsigma`` is not one of them.
SKYPORTAL_PATCH_KEYS = frozenset(
    {
        "obj_id", "mjd", "instrument_id", "filter", "magsys", "mag", "magerr", "limiting_mag",
        "magref", "e_magref", "assignment_id", "ra", "dec", "ra_unc", "dec_unc", "origin",
        "alert_id", "altdata",
    }
)  # fmt: skip
#: Bandpass names registered by sncosmo (sncosmo/builtins.py), which SkyPortal's ALLOWED_BANDPASSES lists.
SNCOSMO_BANDPASSES = frozenset(
    {
        "bessellux", "bessellb", "bessellv", "bessellr", "besselli",
        "sdssu", "sdssg", "sdssr", "sdssi", "sdssz",
        "ps1::open", "ps1::g", "ps1::r", "ps1::i", "ps1::z", "ps1::y", "ps1::w",
        "2massj", "2massh", "2massks",
        "gaia::gbp", "gaia::g", "gaia::grp", "gaia::grvs",
        "ztfg", "ztfr", "ztfi", "atlasc", "atlaso",
        "skymapperu", "skymapperg", "skymapperr", "skymapperi", "skymapperz",
    }
)  # fmt: skip
#: What every band of the known reference surveys must be called in SkyPortal.
EXPECTED_BANDPASS = {
    **{("GaiaSP", b): f"bessell{'ux' if b == 'U' else b.lower()}" for b in "UBVRI"},
    **{("GaiaSP", b): f"sdss{b}" for b in "ugriz"},
    **{("APASS", b): f"bessell{b.lower()}" for b in "BV"},
    **{("APASS", b): f"sdss{b}" for b in "gri"},
    **{("PS1", b): f"ps1::{b}" for b in "grizy"},
    **{("PS1", b): f"bessell{b.lower()}" for b in "BVRI"},
    **{("SDSS", b): f"sdss{b}" for b in "ugriz"},
    **{("SDSS", b): f"bessell{b.lower()}" for b in "BVRI"},
    ("2MASS", "J"): "2massj",
    ("2MASS", "H"): "2massh",
    ("2MASS", "K"): "2massks",
    ("Gaia", "G"): "gaia::g",
    ("Gaia", "BP"): "gaia::gbp",
    ("Gaia", "RP"): "gaia::grp",
    **{("RefCat2", b): f"ps1::{b}" for b in "griz"},
    **{("RefCat2", b): f"bessell{b.lower()}" for b in "BVRI"},
    **{("SkyMapper", b): f"skymapper{b}" for b in "ugriz"},
    ("SkyMapper", "v"): None,  # sncosmo has no SkyMapper v
    **{("VST-ATLAS", b): f"sdss{b}" for b in "ugriz"},
    ("OGLE-III", "V"): "bessellv",
    ("OGLE-III", "I"): "besselli",
    **{("USNO-B1", b): None for b in ("B1", "R1", "B2", "R2", "I")},  # photographic: no bandpass
}
EXPECTED_MAGSYS = dict.fromkeys("uvgrizy", "ab")  # others: vega

#: Outbound settings for tests: quick retries, local targets allowed, no proxies.
FAST_OUTBOUND: dict[str, Any] = dict(
    outbound_backoff_s=(0.05, 0.1, 0.2),
    outbound_max_attempts=4,
    outbound_timeout_s=2.0,
    outbound_lease_s=10.0,
    outbound_poll_s=0.05,
    outbound_workers=2,
    outbound_allow_private_targets=True,
    outbound_trust_env=False,
)
FAST = Settings(**FAST_OUTBOUND)


# --------------------------------------------------------------------------------------------------
# Real local HTTP servers.


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def skyportal_violations(body: Any, *, instrument_id: int, patch: bool = False) -> list[str]:
    """Everything in ``body`` that SkyPortal's photometry PUT (or, ``patch``, a row's PATCH; mag
    form) would refuse or misread."""
    if not isinstance(body, dict):
        return ["the body is not a JSON object"]
    if patch:
        body = {key: value for key, value in body.items() if key not in ("group_ids", "stream_ids")}
    known = SKYPORTAL_PATCH_KEYS if patch else SKYPORTAL_MAG_KEYS
    problems = [f"unknown key {key!r}" for key in body if key not in known]
    for key in SKYPORTAL_REQUIRED:
        if body.get(key) is None:
            problems.append(f"missing required {key}")
    if not isinstance(body.get("obj_id"), str) or not body.get("obj_id"):
        problems.append("obj_id must be a non-empty string")
    elif body["obj_id"].startswith("ivo://"):
        problems.append("obj_id still has ivo://")
    if not _is_number(body.get("mjd")):
        problems.append("mjd must be a finite number")
    if body.get("instrument_id") != instrument_id or isinstance(body.get("instrument_id"), bool):
        problems.append(f"instrument_id must be the integer {instrument_id}")
    if body.get("filter") not in SNCOSMO_BANDPASSES:
        problems.append(f"filter {body.get('filter')!r} is not an sncosmo bandpass")
    if body.get("magsys") not in ("ab", "vega"):
        problems.append(f"magsys {body.get('magsys')!r} is not ab or vega")
    mag, magerr = body.get("mag"), body.get("magerr")
    if (mag is None) != (magerr is None):
        problems.append("mag and magerr must both be null, or both be numbers")
    if mag is not None and not (_is_number(mag) and _is_number(magerr) and magerr > 0):
        problems.append("mag and magerr must be finite numbers, magerr > 0")
    if not _is_number(body.get("limiting_mag")):
        problems.append("limiting_mag must be a finite number (non-detections need it; older schemas always)")
    if "limiting_mag_nsigma" in body and not (
        _is_number(body["limiting_mag_nsigma"]) and body["limiting_mag_nsigma"] > 0
    ):
        problems.append("limiting_mag_nsigma must be a positive number")
    if not isinstance(body.get("origin"), str) or not body.get("origin"):
        problems.append("origin must be a non-empty string")
    groups = body.get("group_ids", [])
    if not isinstance(groups, list) or not all(
        isinstance(g, int) and not isinstance(g, bool) for g in groups
    ):
        problems.append("group_ids must be a list of integers")
    altdata = body.get("altdata")
    if altdata is not None:
        if not isinstance(altdata, dict):
            problems.append("altdata must be an object")
        else:
            for key, value in altdata.items():
                if not isinstance(value, str | int | float | bool):
                    problems.append(f"altdata[{key!r}] must be a scalar (SkyPortal makes one record of it)")
    for key, value in body.items():
        if key not in ("group_ids", "stream_ids") and isinstance(value, list):
            problems.append(f"{key} is a list: SkyPortal would read the body as a table")
    return problems


@dataclass
class FakeSkyPortal:
    """SkyPortal's photometry endpoints as far as CPCS uses them, with the rows they hold."""

    instrument_id: int = SKYPORTAL_INSTRUMENT
    token: str = SKYPORTAL_TOKEN
    fail_first: int = 0
    always_fail: bool = False
    calls: list[dict[str, Any]] = field(default_factory=list)
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    next_id: int = 1001
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/photometry", self.photometry, methods=["PUT"]),
                Route("/api/photometry/{photometry_id:int}", self.row, methods=["PATCH", "DELETE"]),
            ]
        )

    def _call(
        self, request: Request, raw: bytes, body: Any, problems: list[str]
    ) -> tuple[dict[str, Any], int]:
        with self.lock:
            call = {
                "method": request.method,
                "path": request.url.path,
                "raw": raw,
                "body": body,
                "headers": dict(request.headers),
                "problems": problems,
            }
            self.calls.append(call)
            return call, len(self.calls)

    def _refusal(self, call: dict[str, Any], number: int, problems: list[str]) -> Response | None:
        """The error answer SkyPortal would give first, if any."""
        if call["headers"].get("authorization") != f"token {self.token}":
            call["status"] = 401
            return JSONResponse({"status": "error", "message": "Unauthorized"}, status_code=401)
        if problems:
            call["status"] = 400
            return JSONResponse({"status": "error", "message": "; ".join(problems)}, status_code=400)
        if self.always_fail or number <= self.fail_first:
            call["status"] = 500
            return JSONResponse({"status": "error", "message": "database is away"}, status_code=500)
        return None

    @staticmethod
    def _same_row(a: dict[str, Any], b: dict[str, Any]) -> bool:
        """SkyPortal's duplicate test: (obj_id, instrument_id, origin, mjd, flux, fluxerr)."""
        keys = ("obj_id", "instrument_id", "origin", "mjd", "mag", "magerr")
        limits = a["mag"] is not None or a["limiting_mag"] == b["limiting_mag"]
        return all(a.get(key) == b.get(key) for key in keys) and limits

    async def photometry(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        call, number = self._call(
            request, raw, body, skyportal_violations(body, instrument_id=self.instrument_id)
        )
        refusal = self._refusal(call, number, call["problems"])
        if refusal is not None:
            return refusal
        with self.lock:
            existing = [row_id for row_id, row in self.rows.items() if self._same_row(row, body)]
            if existing:
                row_id = existing[0]
            else:
                row_id, self.next_id = self.next_id, self.next_id + 1
                self.rows[row_id] = dict(body)
        call["status"] = 200
        return JSONResponse({"status": "success", "data": {"ids": [row_id], "upload_id": f"u-{number}"}})

    async def row(self, request: Request) -> Response:
        row_id = int(request.path_params["photometry_id"])
        raw = await request.body()
        body: Any = None
        problems: list[str] = []
        if request.method == "PATCH":
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            problems = skyportal_violations(body, instrument_id=self.instrument_id, patch=True)
        call, number = self._call(request, raw, body, problems)
        with self.lock:
            missing = row_id not in self.rows
        if missing and call["headers"].get("authorization") == f"token {self.token}":
            call["status"] = 400  # get_if_accessible_by(..., raise_if_none=True): an AccessError
            return JSONResponse(
                {"status": "error", "message": f"Invalid Photometry id: {row_id}"}, status_code=400
            )
        refusal = self._refusal(call, number, problems)
        if refusal is not None:
            return refusal
        with self.lock:
            if request.method == "DELETE":
                del self.rows[row_id]
            else:
                kept = self.rows[row_id].get("altdata")  # PhotometryMag builds the row without altdata
                values = {key: value for key, value in body.items() if key not in ("group_ids", "stream_ids")}
                self.rows[row_id] = {**self.rows[row_id], **values, "altdata": kept}
        call["status"] = 200
        return JSONResponse({"status": "success", "data": {}})


@dataclass
class WebhookReceiver:
    """Subscribers' endpoints ``/hook/{name}``; each checks the signature with its secret."""

    secrets: dict[str, str] = field(default_factory=dict)
    fail_first: dict[str, int] = field(default_factory=dict)
    answer: dict[str, int] = field(default_factory=dict)
    calls: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hook/{name}", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> Response:
        name = request.path_params["name"]
        raw = await request.body()
        verified = verify_signature(
            self.secrets.get(name, ""),
            raw,
            request.headers.get(SIGNATURE_HEADER),
            request.headers.get(TIMESTAMP_HEADER),
        )
        with self.lock:
            calls = self.calls.setdefault(name, [])
            calls.append({"raw": raw, "headers": dict(request.headers), "verified": verified})
            number = len(calls)
        if not verified:
            return Response(status_code=401)
        if name in self.answer:
            return Response(status_code=self.answer[name])
        if number <= self.fail_first.get(name, 0):
            return Response(status_code=503)
        return Response(status_code=204)


# --------------------------------------------------------------------------------------------------
# The CPCS side.


@dataclass
class OutboundSystem:
    system: System
    outbound: Outbound

    @property
    def client(self) -> Any:
        return self.system.client


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def start_outbound_system(data_dir: Path, **outbound: Any) -> OutboundSystem:
    """The embedded system with its outbound flow on the test settings (``outbound`` changes them)."""
    system = start_system(
        Settings(
            data_dir=data_dir,
            retry_base_s=0.05,
            outbox_poll_s=0.05,
            legacy_wait_s=30,
            public_url="http://cpcs.test",
            **{**FAST_OUTBOUND, **outbound},
        )
    )
    assert system.assembly.outbound is not None
    return OutboundSystem(system, system.assembly.outbound)


@pytest.fixture
def cpcs(tmp_path: Path) -> Iterator[OutboundSystem]:
    started = start_outbound_system(tmp_path / "data")
    try:
        yield started
    finally:
        started.outbound.stop()
        started.system.client.close()
        started.system.assembly.stop()


@pytest.fixture(scope="module")
def bright_field() -> SimulatedField:
    return simulate_field(7, n_stars=300, ra_deg=FIELD_RA_DEG, dec_deg=FIELD_DEC_DEG, target="bright")


@pytest.fixture(scope="module")
def undetected_field() -> SimulatedField:
    return simulate_field(11, n_stars=300, ra_deg=LIMIT_RA_DEG, dec_deg=LIMIT_DEC_DEG, target="undetected")


@pytest.fixture
def skyportal_server() -> Iterator[tuple[FakeSkyPortal, str]]:
    fake = FakeSkyPortal()
    with LocalServer(fake.app()) as server:
        yield fake, server.url


@pytest.fixture
def receiver_server() -> Iterator[tuple[WebhookReceiver, str]]:
    receiver = WebhookReceiver()
    with LocalServer(receiver.app()) as server:
        yield receiver, server.url


def _wait_for(predicate: Callable[[], Any], timeout_s: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _create_alert(cpcs: OutboundSystem, name: str, ra_deg: float, dec_deg: float) -> int:
    answer = cpcs.client.post(
        "/api/v1/alerts",
        json={"name": name, "ra_deg": ra_deg, "dec_deg": dec_deg},
        headers=_auth(cpcs.system.observer_token),
    )
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def _upload(cpcs: OutboundSystem, field_: SimulatedField, alert: str, **form: str) -> dict[str, Any]:
    """Upload the field's catalogue (v1) and wait for its final status."""
    catalogue = to_sextractor_ascii(field_.ra_deg, field_.dec_deg, field_.mag, field_.magerr).encode()
    data = {"alert": alert, "mjd": str(MJD), "exptime_s": "60", "filter": "r'", **form}
    observer = cpcs.system.observer_token
    accepted = cpcs.client.post(
        "/api/v1/uploads", data=data, files={"file": ("frame.cat", catalogue)}, headers=_auth(observer)
    )
    assert accepted.status_code == 202, accepted.text
    url = accepted.json()["status_url"]

    def final() -> dict[str, Any] | None:
        body: dict[str, Any] = cpcs.client.get(url, headers=_auth(observer)).json()
        return body if body["status"] in ("calibrated", "failed", "error") else None

    observation: dict[str, Any] = _wait_for(final, what="the calibration")
    assert observation["status"] == "calibrated", observation
    return observation


def _add_webhook(cpcs: OutboundSystem, token: str, url: str, alert_id: int | None) -> dict[str, Any]:
    answer = cpcs.client.post(
        "/api/v1/webhooks", json={"url": url, "alert_id": alert_id}, headers=_auth(token)
    )
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    assert len(created["secret"]) >= 40
    return created


def _add_destination(cpcs: OutboundSystem, base_url: str, **extra: Any) -> dict[str, Any]:
    body = {
        "name": "Fritz",
        "base_url": base_url,
        "token": SKYPORTAL_TOKEN,
        "instrument_id": SKYPORTAL_INSTRUMENT,
        "group_ids": [3, 5],
        **extra,
    }
    answer = cpcs.client.post(
        "/api/v1/skyportal/destinations", json=body, headers=_auth(cpcs.system.admin_token)
    )
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def _deliveries(cpcs: OutboundSystem, url: str, token: str) -> list[dict[str, Any]]:
    answer = cpcs.client.get(url, headers=_auth(token))
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def _settled(cpcs: OutboundSystem, url: str, token: str, count: int) -> list[dict[str, Any]]:
    """Wait until ``url`` lists ``count`` deliveries, none pending."""

    def done() -> list[dict[str, Any]] | None:
        items = _deliveries(cpcs, url, token)
        return items if len(items) == count and all(d["status"] != "pending" for d in items) else None

    result: list[dict[str, Any]] = _wait_for(done, what=f"{count} settled deliveries at {url}")
    return result


def _delivery_count(cpcs: OutboundSystem) -> int:
    with cpcs.system.context.db.transaction() as session:
        return session.scalar(select(func.count(Delivery.id))) or 0


# --------------------------------------------------------------------------------------------------
# End to end.


def test_point_reaches_webhooks_and_skyportal_with_retries(
    cpcs: OutboundSystem,
    bright_field: SimulatedField,
    skyportal_server: tuple[FakeSkyPortal, str],
    receiver_server: tuple[WebhookReceiver, str],
    tmp_path: Path,
) -> None:
    skyportal, skyportal_url = skyportal_server
    receiver, receiver_url = receiver_server
    system = cpcs.system
    system.import_field(bright_field, tmp_path / "refs")
    alert_id = _create_alert(cpcs, ALERT, FIELD_RA_DEG, FIELD_DEC_DEG)

    mine = _add_webhook(cpcs, system.observer_token, f"{receiver_url}/hook/mine", alert_id)
    everything = _add_webhook(cpcs, system.other_token, f"{receiver_url}/hook/all", None)
    receiver.secrets.update(mine=mine["secret"], all=everything["secret"])
    receiver.fail_first["all"] = 2
    skyportal.fail_first = 2
    destination = _add_destination(cpcs, skyportal_url, alert_filter="Gaia16*")
    elsewhere = _add_destination(cpcs, skyportal_url, name="ZTF only", alert_filter="ZTF*")

    observation = _upload(cpcs, bright_field, ALERT)
    point = observation["point"]
    calibration = observation["calibration"]

    # SkyPortal: two 500s, then accepted; the same bytes every time, each a valid PhotMagFlexible body.
    admin = system.admin_token
    sp_url = f"/api/v1/skyportal/destinations/{destination['id']}/deliveries"
    [sent] = _settled(cpcs, sp_url, admin, 1)
    assert sent["status"] == "delivered" and sent["attempts"] == 3, sent
    assert [a["http_status"] for a in sent["attempt_log"]] == [500, 500, 200]
    assert sent["last_http_status"] == 200 and sent["last_error"] is None and sent["delivered_at"]
    assert sent["point_id"] == point["id"] and sent["calibration_id"] == calibration["id"]
    [row_id] = skyportal.rows
    assert sent["action"] == "calibrated" and sent["remote_url"] == f"{skyportal_url}/api/photometry/{row_id}"
    assert [c["status"] for c in skyportal.calls] == [500, 500, 200]
    assert all(c["problems"] == [] for c in skyportal.calls), skyportal.calls
    assert len({c["raw"] for c in skyportal.calls}) == 1
    assert all(c["headers"]["authorization"] == f"token {SKYPORTAL_TOKEN}" for c in skyportal.calls)
    body = skyportal.calls[0]["body"]
    assert body == sent["body"]
    assert body["obj_id"] == "Gaia16aye" and body["mjd"] == MJD
    assert body["instrument_id"] == SKYPORTAL_INSTRUMENT and body["group_ids"] == [3, 5]
    assert body["filter"] == EXPECTED_BANDPASS[(point["survey"], point["band"])]
    assert body["magsys"] == EXPECTED_MAGSYS.get(point["band"], "vega")
    assert body["mag"] == point["mag"] and body["magerr"] == point["mag_err_total"]
    assert body["limiting_mag"] > body["mag"] and body["limiting_mag_nsigma"] == 5
    assert body["origin"] == "cpcs"
    altdata = body["altdata"]
    assert altdata["cpcs_point_id"] == point["id"] and altdata["calibration_version"] == 1
    assert altdata["calibration_survey"] == point["survey"] and altdata["calibration_zp"] == calibration["zp"]
    assert altdata["calibration_url"] == f"http://cpcs.test/api/v1/observations/{observation['id']}"
    assert _deliveries(cpcs, f"/api/v1/skyportal/destinations/{elsewhere['id']}/deliveries", admin) == []

    # Webhooks: signed, one delivery id per delivery, the same bytes on every attempt.
    [own] = _settled(cpcs, f"/api/v1/webhooks/{mine['id']}/deliveries", system.observer_token, 1)
    assert own["status"] == "delivered" and own["attempts"] == 1
    [call] = receiver.calls["mine"]
    assert call["verified"]
    assert call["headers"][DELIVERY_HEADER.lower()] == str(own["id"])
    assert abs(int(call["headers"][TIMESTAMP_HEADER.lower()]) - time.time()) < 120
    document = json.loads(call["raw"])
    assert document == own["body"]
    assert document["event"] == "point.calibrated" and document["delivery_id"] == own["id"]
    sent_point = document["point"]
    assert sent_point["id"] == point["id"] and sent_point["alert"]["name"] == ALERT
    assert sent_point["observer"]["name"] == "K. Rybicki"
    assert (sent_point["filter"]["survey"], sent_point["filter"]["band"]) == (point["survey"], point["band"])
    assert sent_point["filter"]["declared"] == "r'" and sent_point["filter"]["sncosmo"] == body["filter"]
    assert sent_point["mag"] == point["mag"] and sent_point["magerr"] == point["magerr"]
    assert (
        sent_point["caliberr"] == point["caliberr"] and sent_point["mag_err_total"] == point["mag_err_total"]
    )
    assert sent_point["is_upper_limit"] is False and sent_point["limit_mag"] == point["limit_mag"]
    assert sent_point["calibration"]["id"] == calibration["id"]
    assert sent_point["calibration"]["url"].endswith(f"/api/v1/observations/{observation['id']}/calibrations")

    [retried] = _settled(cpcs, f"/api/v1/webhooks/{everything['id']}/deliveries", system.other_token, 1)
    assert retried["status"] == "delivered" and retried["attempts"] == 3
    assert [a["http_status"] for a in retried["attempt_log"]] == [503, 503, 204]
    calls = receiver.calls["all"]
    assert len(calls) == 3 and all(c["verified"] for c in calls)
    assert {c["raw"] for c in calls} == {calls[0]["raw"]}
    assert {c["headers"][DELIVERY_HEADER.lower()] for c in calls} == {str(retried["id"])}

    # The history is the subscriber's own: 404 for everybody else, admins included.
    for token in (system.other_token, admin):
        assert (
            cpcs.client.get(f"/api/v1/webhooks/{mine['id']}/deliveries", headers=_auth(token)).status_code
            == 404
        )
    assert (
        cpcs.client.get(
            f"/api/v1/webhooks/{everything['id']}/deliveries", headers=_auth(system.observer_token)
        ).status_code
        == 404
    )

    # The bus redelivers point.calibrated: nothing new is planned.
    before = _delivery_count(cpcs)
    message = PointCalibratedV1(
        observation_id=observation["id"],
        calibration_id=calibration["id"],
        calibration_version=1,
        point_id=point["id"],
        alert_id=alert_id,
        mjd=MJD,
        survey=point["survey"],
        band=point["band"],
        mag=point["mag"],
        mag_err=point["mag_err_total"],
        is_upper_limit=False,
    )
    routing_key, raw = encode(message)
    cpcs.outbound.dispatcher.handle(Envelope("again", routing_key, raw, {}, 2))
    assert _delivery_count(cpcs) == before == 3

    # A dry run makes no point, so nothing is sent.
    shifted = to_sextractor_ascii(
        bright_field.ra_deg, bright_field.dec_deg, bright_field.mag + 0.001, bright_field.magerr
    )
    dry = cpcs.client.post(
        "/api/v1/uploads",
        data={"alert": ALERT, "mjd": str(MJD + 1), "filter": "r'", "dry_run": "true"},
        files={"file": ("dry.cat", shifted.encode())},
        headers=_auth(system.observer_token),
    )
    assert dry.status_code == 202, dry.text
    _wait_for(
        lambda: (
            cpcs.client.get(dry.json()["status_url"], headers=_auth(system.observer_token)).json()["status"]
            == "calibrated"
        ),
        what="the dry run",
    )
    time.sleep(0.5)  # let point.calibrated of the dry run reach the dispatcher
    assert _delivery_count(cpcs) == 3

    # A recalibration moves the point: every target gets the new calibration once more, SkyPortal
    # as a PATCH of the row it already holds (one row per point), webhooks as point.updated.
    again = _upload(cpcs, bright_field, ALERT, match_radius_arcsec="4")
    assert again["id"] == observation["id"] and again["calibration"]["version"] == 2
    newest = _settled(cpcs, sp_url, admin, 2)[0]
    assert newest["status"] == "delivered" and newest["attempts"] == 1
    assert newest["calibration_id"] == again["calibration"]["id"] and newest["action"] == "updated"
    assert newest["body"]["altdata"]["calibration_version"] == 2
    assert newest["remote_url"] == sent["remote_url"]
    assert (
        skyportal.calls[-1]["method"] == "PATCH"
        and skyportal.calls[-1]["path"] == f"/api/photometry/{row_id}"
    )
    assert list(skyportal.rows) == [row_id]
    hooks = _settled(cpcs, f"/api/v1/webhooks/{mine['id']}/deliveries", system.observer_token, 2)
    assert [h["body"]["event"] for h in hooks] == ["point.updated", "point.calibrated"]
    assert all(c["problems"] == [] for c in skyportal.calls)


def _recalibrated(cpcs: OutboundSystem, observation_id: int, version: int, **changes: Any) -> dict[str, Any]:
    """Recalibrate through the v1 API and wait for the observation's new current version."""
    observer = cpcs.system.observer_token
    accepted = cpcs.client.post(
        f"/api/v1/observations/{observation_id}/recalibrate", json=changes, headers=_auth(observer)
    )
    assert accepted.status_code == 202, accepted.text

    def current() -> dict[str, Any] | None:
        body: dict[str, Any] = cpcs.client.get(
            f"/api/v1/observations/{observation_id}", headers=_auth(observer)
        ).json()
        calibration = body.get("calibration") or {}
        return body if calibration.get("version") == version and body.get("point") else None

    result: dict[str, Any] = _wait_for(current, what=f"calibration version {version}")
    return result


def _redeliver(cpcs: OutboundSystem, message: PointCalibratedV1 | PointDeletedV1) -> None:
    routing_key, raw = encode(message)
    cpcs.outbound.dispatcher.handle(Envelope("again", routing_key, raw, {}, 2))


def test_new_versions_and_deletions_reach_every_target_that_had_the_point_once(
    cpcs: OutboundSystem,
    bright_field: SimulatedField,
    skyportal_server: tuple[FakeSkyPortal, str],
    receiver_server: tuple[WebhookReceiver, str],
    tmp_path: Path,
) -> None:
    skyportal, skyportal_url = skyportal_server
    receiver, receiver_url = receiver_server
    system = cpcs.system
    observer, admin = system.observer_token, system.admin_token
    system.import_field(bright_field, tmp_path / "refs")
    alert_id = _create_alert(cpcs, ALERT, FIELD_RA_DEG, FIELD_DEC_DEG)
    hook = _add_webhook(cpcs, observer, f"{receiver_url}/hook/news", alert_id)
    receiver.secrets["news"] = hook["secret"]
    destination = _add_destination(cpcs, skyportal_url)
    sp_url = f"/api/v1/skyportal/destinations/{destination['id']}/deliveries"
    hook_url = f"/api/v1/webhooks/{hook['id']}/deliveries"

    # The first version: one PUT, one row at SkyPortal; its id is kept on the delivery.
    observation = _upload(cpcs, bright_field, ALERT)
    point = observation["point"]
    [put] = _settled(cpcs, sp_url, admin, 1)
    [row_id] = skyportal.rows
    assert put["status"] == "delivered" and put["remote_url"] == f"{skyportal_url}/api/photometry/{row_id}"
    _settled(cpcs, hook_url, observer, 1)

    # A recalibration: the same SkyPortal row takes the new values (a PATCH, no second row); the
    # webhook gets point.updated. Both once, even when point.calibrated comes again.
    second = _recalibrated(cpcs, observation["id"], 2, match_radius_arcsec=4.0, force_filter="PS1/i")
    moved = second["point"]
    assert moved["id"] == point["id"] and moved["band"] == "i" != point["band"]
    patch = _settled(cpcs, sp_url, admin, 2)[0]
    assert patch["action"] == "updated" and patch["status"] == "delivered" and patch["attempts"] == 1
    assert patch["calibration_id"] == second["calibration"]["id"] and patch["remote_url"] == put["remote_url"]
    assert [(c["method"], c["path"], c["status"]) for c in skyportal.calls] == [
        ("PUT", "/api/photometry", 200),
        ("PATCH", f"/api/photometry/{row_id}", 200),
    ]
    assert all(c["problems"] == [] for c in skyportal.calls), skyportal.calls
    [row] = skyportal.rows.values()
    assert row["mag"] == moved["mag"] and row["magerr"] == moved["mag_err_total"]
    assert row["filter"] == EXPECTED_BANDPASS[("PS1", "i")] == "ps1::i"
    updated = _settled(cpcs, hook_url, observer, 2)[0]
    assert updated["action"] == "updated" and updated["status"] == "delivered"
    update_call = receiver.calls["news"][-1]
    assert update_call["verified"] and update_call["headers"]["x-cpcs-event"] == "point.updated"
    document = json.loads(update_call["raw"])
    assert document["event"] == "point.updated" and document["delivery_id"] == updated["id"]
    assert document["point"]["id"] == point["id"] and document["point"]["mag"] == moved["mag"]
    assert document["point"]["calibration"]["version"] == 2
    assert receiver.calls["news"][0]["headers"]["x-cpcs-event"] == "point.calibrated"

    before = _delivery_count(cpcs)
    _redeliver(
        cpcs,
        PointCalibratedV1(
            observation_id=observation["id"],
            calibration_id=second["calibration"]["id"],
            calibration_version=2,
            point_id=point["id"],
            alert_id=alert_id,
            mjd=MJD,
            survey=moved["survey"],
            band=moved["band"],
            mag=moved["mag"],
            mag_err=moved["mag_err_total"],
            is_upper_limit=False,
        ),
    )
    assert _delivery_count(cpcs) == before == 4

    # The deletion: the SkyPortal row goes, the webhook hears point.deleted; once each.
    deleted = cpcs.client.delete(f"/api/v1/points/{point['id']}", headers=_auth(observer))
    assert deleted.status_code == 200, deleted.text
    gone = _settled(cpcs, sp_url, admin, 3)[0]
    assert gone["action"] == "deleted" and gone["status"] == "delivered" and gone["body"] is None
    assert (
        skyportal.calls[-1]["method"] == "DELETE"
        and skyportal.calls[-1]["path"] == f"/api/photometry/{row_id}"
    )
    assert skyportal.rows == {}
    farewell = _settled(cpcs, hook_url, observer, 3)[0]
    assert farewell["action"] == "deleted" and farewell["status"] == "delivered"
    delete_call = receiver.calls["news"][-1]
    assert delete_call["verified"] and delete_call["headers"]["x-cpcs-event"] == "point.deleted"
    document = json.loads(delete_call["raw"])
    assert document["event"] == "point.deleted" and document["point"]["id"] == point["id"]
    assert document["point"]["deleted_at"] and document["point"]["calibration"]["version"] == 2

    _redeliver(
        cpcs,
        PointDeletedV1(
            point_id=point["id"],
            observation_id=observation["id"],
            alert_id=alert_id,
            calibration_id=second["calibration"]["id"],
            deleted_by_user_id=1,
        ),
    )
    time.sleep(0.3)
    assert _delivery_count(cpcs) == 6
    assert len(skyportal.calls) == 3 and len(receiver.calls["news"]) == 3


def test_a_legacy_delpoint_reaches_the_webhooks_and_skyportal(
    cpcs: OutboundSystem,
    bright_field: SimulatedField,
    skyportal_server: tuple[FakeSkyPortal, str],
    receiver_server: tuple[WebhookReceiver, str],
    tmp_path: Path,
) -> None:
    skyportal, skyportal_url = skyportal_server
    receiver, receiver_url = receiver_server
    system = cpcs.system
    system.import_field(bright_field, tmp_path / "refs")
    _create_alert(cpcs, ALERT, FIELD_RA_DEG, FIELD_DEC_DEG)
    hook = _add_webhook(cpcs, system.other_token, f"{receiver_url}/hook/all", None)
    receiver.secrets["all"] = hook["secret"]
    destination = _add_destination(cpcs, skyportal_url)
    observation = _upload(cpcs, bright_field, ALERT)
    sp_url = f"/api/v1/skyportal/destinations/{destination['id']}/deliveries"
    _settled(cpcs, sp_url, system.admin_token, 1)
    _settled(cpcs, f"/api/v1/webhooks/{hook['id']}/deliveries", system.other_token, 1)
    assert len(skyportal.rows) == 1

    answer = cpcs.client.post(
        "/followup/cgi/delpoint",
        data={"hashtag": system.observer_token, "followupid": str(observation["point"]["id"])},
    )
    assert answer.status_code == 200, answer.text
    assert _settled(cpcs, sp_url, system.admin_token, 2)[0]["action"] == "deleted"
    assert skyportal.rows == {}
    [farewell, _first] = _settled(cpcs, f"/api/v1/webhooks/{hook['id']}/deliveries", system.other_token, 2)
    assert farewell["body"]["event"] == "point.deleted"


def test_upper_limit_goes_to_skyportal_as_a_non_detection(
    cpcs: OutboundSystem,
    undetected_field: SimulatedField,
    skyportal_server: tuple[FakeSkyPortal, str],
    receiver_server: tuple[WebhookReceiver, str],
    tmp_path: Path,
) -> None:
    skyportal, skyportal_url = skyportal_server
    receiver, receiver_url = receiver_server
    cpcs.system.import_field(undetected_field, tmp_path / "refs")
    alert_id = _create_alert(cpcs, LIMIT_ALERT, LIMIT_RA_DEG, LIMIT_DEC_DEG)
    hook = _add_webhook(cpcs, cpcs.system.observer_token, f"{receiver_url}/hook/limits", alert_id)
    receiver.secrets["limits"] = hook["secret"]
    destination = _add_destination(cpcs, skyportal_url, group_ids=[])

    observation = _upload(cpcs, undetected_field, LIMIT_ALERT)
    point = observation["point"]
    assert point["is_upper_limit"] is True

    [sent] = _settled(
        cpcs, f"/api/v1/skyportal/destinations/{destination['id']}/deliveries", cpcs.system.admin_token, 1
    )
    assert sent["status"] == "delivered", sent
    [call] = skyportal.calls
    assert call["problems"] == [] and call["status"] == 200
    body = call["body"]
    assert body["obj_id"] == "AT2024faint"
    assert body["mag"] is None and body["magerr"] is None
    assert body["limiting_mag"] == point["limit_mag"] == point["mag"]
    assert body["filter"] == EXPECTED_BANDPASS[(point["survey"], point["band"])]
    assert body["altdata"]["is_upper_limit"] is True and body["group_ids"] == []

    _settled(cpcs, f"/api/v1/webhooks/{hook['id']}/deliveries", cpcs.system.observer_token, 1)
    [webhook_call] = receiver.calls["limits"]
    assert webhook_call["verified"]
    document = json.loads(webhook_call["raw"])
    assert (
        document["point"]["is_upper_limit"] is True and document["point"]["limit_mag"] == point["limit_mag"]
    )


def test_failures_are_retried_up_to_the_limit_and_refusals_end_at_once(
    cpcs: OutboundSystem,
    bright_field: SimulatedField,
    skyportal_server: tuple[FakeSkyPortal, str],
    receiver_server: tuple[WebhookReceiver, str],
    tmp_path: Path,
) -> None:
    skyportal, skyportal_url = skyportal_server
    receiver, receiver_url = receiver_server
    system = cpcs.system
    system.import_field(bright_field, tmp_path / "refs")
    alert_id = _create_alert(cpcs, ALERT, FIELD_RA_DEG, FIELD_DEC_DEG)
    skyportal.always_fail = True
    down = _add_destination(cpcs, skyportal_url)
    wrong_token = _add_destination(cpcs, skyportal_url, name="Wrong token", token="not-the-token")
    gone = _add_webhook(cpcs, system.observer_token, f"{receiver_url}/hook/gone", alert_id)
    receiver.secrets["gone"] = gone["secret"]
    receiver.answer["gone"] = 410
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    nobody = _add_webhook(cpcs, system.observer_token, f"http://127.0.0.1:{closed_port}/hook", None)

    _upload(cpcs, bright_field, ALERT)
    admin = system.admin_token
    [failed] = _settled(cpcs, f"/api/v1/skyportal/destinations/{down['id']}/deliveries", admin, 1)
    assert failed["status"] == "failed" and failed["attempts"] == FAST.outbound_max_attempts
    assert [a["http_status"] for a in failed["attempt_log"]] == [500] * FAST.outbound_max_attempts
    assert failed["next_attempt_at"] is None and "database is away" in failed["last_error"]
    gaps = [
        _seconds(b["started_at"]) - _seconds(a["started_at"])
        for a, b in zip(failed["attempt_log"], failed["attempt_log"][1:], strict=False)
    ]
    # each retry waits at least its back-off (the next is due back-off seconds after the last ended)
    assert len(gaps) == 3 and all(
        gap >= delay - 1e-3 for gap, delay in zip(gaps, FAST.outbound_backoff_s, strict=True)
    )

    [refused] = _settled(cpcs, f"/api/v1/skyportal/destinations/{wrong_token['id']}/deliveries", admin, 1)
    assert refused["status"] == "failed" and refused["attempts"] == 1 and refused["last_http_status"] == 401

    [ended] = _settled(cpcs, f"/api/v1/webhooks/{gone['id']}/deliveries", system.observer_token, 1)
    assert ended["status"] == "failed" and ended["attempts"] == 1 and ended["last_http_status"] == 410
    [unreachable] = _settled(cpcs, f"/api/v1/webhooks/{nobody['id']}/deliveries", system.observer_token, 1)
    assert unreachable["status"] == "failed" and unreachable["attempts"] == FAST.outbound_max_attempts
    assert unreachable["last_http_status"] is None and "ConnectError" in unreachable["last_error"]
    assert all(a["error"] for a in unreachable["attempt_log"])


def _seconds(iso: str) -> float:
    return dt.datetime.fromisoformat(iso).timestamp()


# --------------------------------------------------------------------------------------------------
# The REST endpoints.


def test_endpoints_check_who_asks_and_what_is_sent(cpcs: OutboundSystem) -> None:
    client, system = cpcs.client, cpcs.system
    observer, other, admin = system.observer_token, system.other_token, system.admin_token
    assert client.get("/api/v1/webhooks").status_code == 401
    assert client.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/x"}).status_code == 401

    destination = {
        "name": "Fritz",
        "base_url": "https://fritz.example",
        "token": "abcdefgh-ijkl-1234",
        "instrument_id": 3,
    }
    assert (
        client.post("/api/v1/skyportal/destinations", json=destination, headers=_auth(observer)).status_code
        == 403
    )
    assert client.get("/api/v1/skyportal/destinations", headers=_auth(observer)).status_code == 403
    created = client.post("/api/v1/skyportal/destinations", json=destination, headers=_auth(admin))
    assert created.status_code == 201
    assert "abcdefgh-ijkl-1234" not in created.text and created.json()["token_hint"] == "…1234"
    duplicate = client.post("/api/v1/skyportal/destinations", json=destination, headers=_auth(admin))
    assert duplicate.status_code == 409
    bad = client.post(
        "/api/v1/skyportal/destinations",
        json={**destination, "name": "x", "base_url": "ftp://x"},
        headers=_auth(admin),
    )
    assert bad.status_code == 422 and "base_url" in bad.json()["message"]
    listed = client.get("/api/v1/skyportal/destinations", headers=_auth(admin))
    assert [d["name"] for d in listed.json()] == ["Fritz"] and "abcdefgh-ijkl-1234" not in listed.text
    destination_id = created.json()["id"]
    patched = client.patch(
        f"/api/v1/skyportal/destinations/{destination_id}",
        json={"active": False, "alert_filter": "ZTF*", "token": "new-token-xyz-9876"},
        headers=_auth(admin),
    )
    assert patched.status_code == 200
    assert patched.json()["active"] is False and patched.json()["alert_filter"] == "ZTF*"
    assert patched.json()["token_hint"] == "…9876"
    moved = f"/api/v1/skyportal/destinations/{destination_id}"
    keeps_old_token = client.patch(
        moved, json={"base_url": "https://elsewhere.example"}, headers=_auth(admin)
    )
    assert keeps_old_token.status_code == 422 and keeps_old_token.json()["error"] == "token_required"
    unchanged = client.get("/api/v1/skyportal/destinations", headers=_auth(admin)).json()[0]
    assert unchanged["base_url"] == "https://fritz.example"
    same_host = client.patch(moved, json={"base_url": "https://fritz.example"}, headers=_auth(admin))
    assert same_host.status_code == 200
    with_token = client.patch(
        moved,
        json={"base_url": "https://elsewhere.example", "token": "other-token-abcdef-5555"},
        headers=_auth(admin),
    )
    assert with_token.status_code == 200 and with_token.json()["base_url"] == "https://elsewhere.example"
    assert with_token.json()["token_hint"] == "…5555"
    short = client.patch(
        f"/api/v1/skyportal/destinations/{destination_id}", json={"token": "abc123"}, headers=_auth(admin)
    )
    assert short.status_code == 200 and short.json()["token_hint"] == "…"  # nothing of a short token
    assert (
        client.get("/api/v1/skyportal/destinations/999/deliveries", headers=_auth(admin)).status_code == 404
    )
    assert (
        client.get(
            f"/api/v1/skyportal/destinations/{destination_id}/deliveries", headers=_auth(observer)
        ).status_code
        == 403
    )

    assert (
        client.post("/api/v1/webhooks", json={"url": "ftp://x/y"}, headers=_auth(observer)).status_code == 422
    )
    unknown = client.post(
        "/api/v1/webhooks", json={"url": "http://127.0.0.1:9/x", "alert_id": 999}, headers=_auth(observer)
    )
    assert unknown.status_code == 422 and unknown.json()["error"] == "unknown_alert"
    mine = client.post(
        "/api/v1/webhooks", json={"url": "http://127.0.0.1:9/mine"}, headers=_auth(observer)
    ).json()
    theirs = client.post(
        "/api/v1/webhooks", json={"url": "http://127.0.0.1:9/theirs"}, headers=_auth(other)
    ).json()
    listing = client.get("/api/v1/webhooks", headers=_auth(observer))
    assert [w["id"] for w in listing.json()] == [mine["id"]] and "secret" not in listing.text
    assert client.delete(f"/api/v1/webhooks/{theirs['id']}", headers=_auth(observer)).status_code == 404
    assert (
        client.get(f"/api/v1/webhooks/{mine['id']}/deliveries", headers=_auth(observer)).json()["total"] == 0
    )
    assert (
        client.get(
            f"/api/v1/webhooks/{mine['id']}/deliveries", params={"status": "odd"}, headers=_auth(observer)
        )
    ).status_code == 422
    assert client.delete(f"/api/v1/webhooks/{mine['id']}", headers=_auth(observer)).status_code == 204
    assert client.get(f"/api/v1/webhooks/{mine['id']}/deliveries", headers=_auth(observer)).status_code == 404
    assert [w["id"] for w in client.get("/api/v1/webhooks", headers=_auth(other)).json()] == [theirs["id"]]


def test_private_targets_are_refused_unless_allowed(tmp_path: Path) -> None:
    strict = start_outbound_system(
        tmp_path / "data", outbound_allow_private_targets=False
    )
    try:
        for url in ("http://127.0.0.1:8000/x", "http://localhost/x", "http://10.1.2.3/x", "http://[::1]/x"):
            answer = strict.client.post(
                "/api/v1/webhooks", json={"url": url}, headers=_auth(strict.system.observer_token)
            )
            assert answer.status_code == 422 and answer.json()["error"] == "invalid_webhook_url", url
            assert "CPCS_OUTBOUND_ALLOW_PRIVATE_TARGETS" in answer.json()["message"]
            destination = {"name": url, "base_url": url, "token": "t0ken-1234", "instrument_id": 1}
            refused = strict.client.post(
                "/api/v1/skyportal/destinations", json=destination, headers=_auth(strict.system.admin_token)
            )
            assert refused.status_code == 422 and refused.json()["error"] == "invalid_destination_url", url
        public = {
            "name": "public",
            "base_url": "https://93.184.215.14",
            "token": "t0ken-1",
            "instrument_id": 1,
        }
        added = strict.client.post(
            "/api/v1/skyportal/destinations", json=public, headers=_auth(strict.system.admin_token)
        )
        assert added.status_code == 201
        moved = strict.client.patch(
            f"/api/v1/skyportal/destinations/{added.json()['id']}",
            json={"base_url": "http://10.0.0.5", "token": "t0ken-2"},
            headers=_auth(strict.system.admin_token),
        )
        assert moved.status_code == 422 and moved.json()["error"] == "invalid_destination_url"
    finally:
        strict.outbound.stop()
        strict.system.client.close()
        strict.system.assembly.stop()


# --------------------------------------------------------------------------------------------------
# Pure parts.


def test_signature_is_hmac_sha256_of_the_timestamp_and_the_raw_body() -> None:
    # The documented recipe, computed independently: HMAC-SHA256(secret, "<timestamp>.<body>").
    expected = hmac.new(b"Jefe", b"1700000000.what do ya want for nothing?", hashlib.sha256).hexdigest()
    assert sign("Jefe", b"what do ya want for nothing?", "1700000000") == "sha256=" + expected
    body, sent = b'{"a":1}', 1_700_000_000
    signature = sign("s3cret", body, str(sent))
    assert verify_signature("s3cret", body, signature, str(sent), now=sent + 10)
    assert not verify_signature("s3cret", body + b" ", signature, str(sent), now=sent)
    assert not verify_signature("other", body, signature, str(sent), now=sent)
    assert not verify_signature("s3cret", body, signature.removeprefix("sha256="), str(sent), now=sent)
    assert not verify_signature("s3cret", body, None, str(sent), now=sent)
    assert not verify_signature("s3cret", body, signature, None, now=sent)
    # A captured request replayed later: its old timestamp is too old, a new one breaks the signature.
    assert not verify_signature("s3cret", body, signature, str(sent), now=sent + 301)
    assert not verify_signature("s3cret", body, signature, str(sent + 3600), now=sent + 3600)
    assert not verify_signature("s3cret", body, signature, "-1", now=sent)


def test_request_headers_sign_the_timestamp_they_send() -> None:
    sent_at = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    headers = request_headers("s3cret", b"{}", 7, sent_at)
    assert headers[TIMESTAMP_HEADER] == str(int(sent_at.timestamp()))
    assert headers[SIGNATURE_HEADER] == sign("s3cret", b"{}", headers[TIMESTAMP_HEADER])
    assert verify_signature(
        "s3cret", b"{}", headers[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER], now=sent_at.timestamp()
    )


def test_every_band_of_the_known_surveys_has_its_sncosmo_name() -> None:
    def named(survey: str, band: str) -> tuple[str | None, str | None]:
        exported = export_band(survey, band)
        return exported.sncosmo, exported.magsys

    for survey in SURVEYS.values():
        for band in survey.band_names:
            sncosmo, magsys = named(survey.name, band)
            assert sncosmo == EXPECTED_BANDPASS[(survey.name, band)], (survey.name, band)
            assert sncosmo is None or sncosmo in SNCOSMO_BANDPASSES
            assert magsys == EXPECTED_MAGSYS.get(band, "vega"), (survey.name, band)
    assert named("ps1", "r")[0] == "ps1::r"  # survey aliases and case
    assert named("MySiteSurvey", "V") == ("bessellv", "vega")
    assert named("MySiteSurvey", "Clear")[0] is None and named("MySiteSurvey", "Ha")[0] is None
    assert skyportal_obj_id("ivo://Gaia16aye") == "Gaia16aye" and skyportal_obj_id("ZTF21abc") == "ZTF21abc"


def _row(declared: str | None = "V", **changes: Any) -> ExportRow:
    """A point as the exports (and so the SkyPortal delivery) see it."""
    base: dict[str, Any] = dict(
        id=1, alert_id=3, alert_name="ivo://Gaia16aye", observation_id=2, calibration_id=5, observer="O",
        observatory="Obs", mjd=60000.5, survey="APASS", band="V", mag=15.0, magerr=0.01, caliberr=0.02,
        mag_err_total=0.0224, is_upper_limit=False, limit_mag=None, flux_ujy=None, flux_err_ujy=None,
        created_at=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    )  # fmt: skip
    base.update(changes)
    [row] = export_rows([PointOut(**base)], {1: PointDetails(declared)})
    return row


def _calibrated_row(**calibration: Any) -> ExportRow:
    """An export row with its calibration and the webhook-only facts, as the dispatcher builds it."""
    facts: dict[str, Any] = dict(
        id=5, observation_id=2, version=1, pipeline_version="0.1", mode="AUTO", catalogue_release=None,
        colour_index="B-V", zp=25.0, zp_err=0.01, colour_term=0.1, colour_term_err=0.01, scatter=0.03,
        n_stars=80, outlier_fraction=0.02, created_at=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    )  # fmt: skip
    facts.update(calibration)
    return dataclasses.replace(
        _row(),
        calibration=CalibrationOut.model_construct(**facts),
        observer_id=4,
        alert_ra_deg=1.0,
        alert_dec_deg=2.0,
    )


def test_a_detection_without_a_computed_limit_gets_an_estimated_one() -> None:
    body = photometry_body(_row(), instrument_id=2, group_ids=[1])
    # S/N = 1.0857 / 0.01 = 108.6; the 5-sigma flux is 5/108.6 of the target's: 3.34 mag fainter.
    assert body["limiting_mag"] == pytest.approx(15.0 + 2.5 * math.log10(108.574 / 5), abs=1e-3)
    assert skyportal_violations(body, instrument_id=2) == []
    assert body["altdata"]["limiting_mag_source"] == "target_noise" and body["filter"] == "bessellv"
    given = photometry_body(_row(limit_mag=18.0), instrument_id=2, group_ids=[1])
    assert given["limiting_mag"] == 18.0 and given["altdata"]["limiting_mag_source"] == "image"


def test_the_delivery_sends_what_the_skyportal_export_gives() -> None:
    rows = [_row(), _row(id=7, is_upper_limit=True, mag=18.2, limit_mag=18.2)]
    exported = skyportal_photometry(rows, "mag", SkyPortalOptions(instrument_id=2, group_ids=[4])).packets
    assert [photometry_body(row, instrument_id=2, group_ids=[4]) for row in rows] == exported


def test_the_skyportal_stand_in_refuses_what_skyportal_refuses() -> None:
    good = photometry_body(_row(), instrument_id=2, group_ids=[])
    assert skyportal_violations(good, instrument_id=2) == []
    bad_bodies = [
        {**good, "magerr": None},  # mag without magerr
        {**good, "mag": None, "magerr": None, "limiting_mag": None},  # a non-detection without a limit
        {**good, "flux": 1.0},  # not a PhotMagFlexible key
        {**good, "filter": "V"},  # not an sncosmo bandpass
        {**good, "magsys": "AB"},
        {**good, "obj_id": "ivo://Gaia16aye"},
        {**good, "instrument_id": "2"},
        {**good, "group_ids": [True]},
        {**good, "altdata": {"nested": {"a": 1}}},
        {**good, "mjd": [60000.5, 60001.5]},
        {key: value for key, value in good.items() if key != "magsys"},
    ]
    for body in bad_bodies:
        assert skyportal_violations(body, instrument_id=2), body


def test_points_skyportal_cannot_take_are_refused_before_sending() -> None:
    for changes in ({"mjd": None}, {"survey": "Mine", "band": "Ha"}, {"band": "Clear", "survey": "Gaia"}):
        with pytest.raises(NotSendable):
            photometry_body(_row(**changes), instrument_id=1, group_ids=[])


def test_remote_error_bodies_are_summarised_not_kept_verbatim() -> None:
    assert remote_error_summary(b'{"status": "error", "message": "Unauthorized"}') == "Unauthorized"
    forged = "bad\nINFO forged line\u202e\u200b\x00 end".encode()
    assert remote_error_summary(forged) == "bad INFO forged line end"
    page = b"<html>" + b"x" * 10_000 + b"</html>"
    summary = remote_error_summary(page)
    assert len(summary) == MAX_REMOTE_ERROR_CHARS and summary.endswith("…")
    assert remote_error_summary(b"\xff\xfe") != "" and remote_error_summary(b"") == "(no message)"


def test_url_checks() -> None:
    for url in (
        "http://127.0.0.1/x",
        "http://localhost:8000/x",
        "http://169.254.169.254/latest",
        "http://[::1]/",
    ):
        with pytest.raises(TargetNotAllowed):
            check_literal_host(url, allow_private=False)
        with pytest.raises(TargetNotAllowed):
            check_resolved_host(url, allow_private=False)
        check_literal_host(url, allow_private=True)
    for url in ("ftp://example.org/", "http:///path", "http://user:pw@example.org/"):
        with pytest.raises(TargetNotAllowed):
            check_literal_host(url, allow_private=True)
    check_literal_host("https://93.184.215.14/hook", allow_private=False)  # a public literal: no lookup


def test_back_off_follows_the_settings() -> None:
    settings = Settings(outbound_backoff_s=(30, 120, 600))
    assert [settings.outbound_backoff(n) for n in (1, 2, 3, 4, 9)] == [30, 120, 600, 600, 600]
    assert Settings().outbound_backoff_s == (30, 120, 600, 3600, 21600)
    with pytest.raises(ValueError):
        Settings(outbound_timeout_s=10, outbound_lease_s=5)


# --------------------------------------------------------------------------------------------------
# Several workers (as in several api processes) on one database.


def _seed_point(database: Database) -> tuple[int, int]:
    """The smallest set of rows a delivery refers to; returns (point id, calibration id)."""
    with database.transaction() as session:
        observatory = Observatory(name="Ostrowik")
        session.add(observatory)
        session.flush()
        user = User(name="K. Rybicki", observatory_id=observatory.id)
        alert = Alert(name=ALERT, ra_deg=FIELD_RA_DEG, dec_deg=FIELD_DEC_DEG)
        upload = Upload(sha256="0" * 64, size_bytes=1, kind="catalogue", stored_path="x")
        session.add_all([user, alert, upload])
        session.flush()
        observation = Observation(alert_id=alert.id, user_id=user.id, upload_id=upload.id, mjd=MJD)
        session.add(observation)
        session.flush()
        calibration = Calibration(
            observation_id=observation.id, version=1, pipeline_version="t", mode="AUTO", survey="PS1",
            band="r", zp=25.0, zp_err=0.01, colour_term=0.1, colour_term_err=0.01, scatter=0.02,
            intrinsic_scatter=0.0, n_stars=50, n_matched=60, outlier_fraction=0.0,
        )  # fmt: skip
        session.add(calibration)
        session.flush()
        point = Point(
            observation_id=observation.id, alert_id=alert.id, user_id=user.id, calibration_id=calibration.id,
            mjd=MJD, survey="PS1", band="r", mag=15.0, magerr=0.01, caliberr=0.02, mag_err_total=0.0224,
        )  # fmt: skip
        session.add(point)
        session.flush()
        return point.id, calibration.id


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'race.sqlite3'}"
    else:
        with temporary_postgres_database() as url:
            yield url


def test_workers_sharing_a_database_send_each_delivery_once(
    shared_database: str, receiver_server: tuple[WebhookReceiver, str]
) -> None:
    receiver, receiver_url = receiver_server
    keys = SecretBox([new_key()])
    database = Database(shared_database, secret_box=keys)
    workers: list[DeliveryWorker] = []
    try:
        Base.metadata.create_all(database.engine)
        point_id, calibration_id = _seed_point(database)
        with database.transaction() as session:
            user_id = session.scalar(select(User.id))
            assert user_id is not None
            for index in range(30):
                name = f"race-{index}"
                receiver.secrets[name] = f"secret-{index}"
                subscription = WebhookSubscription(
                    user_id=user_id, url=f"{receiver_url}/hook/{name}", secret=f"secret-{index}"
                )
                session.add(subscription)
                session.flush()
                session.add(
                    Delivery(
                        kind="webhook", target_id=subscription.id, point_id=point_id,
                        calibration_id=calibration_id, status="pending", next_attempt_at=utcnow(),
                        request_body=json.dumps({"n": index}),
                    )
                )  # fmt: skip
        settings = FAST.model_copy(update={"outbound_workers": 3})
        workers = [
            DeliveryWorker(database, settings),
            DeliveryWorker(Database(shared_database, secret_box=keys), settings),
        ]
        for worker in workers:
            worker.start()

        def all_delivered() -> bool:
            with database.transaction() as session:
                statuses = session.scalars(select(Delivery.status)).all()
            return len(statuses) == 30 and set(statuses) == {"delivered"}

        _wait_for(all_delivered, what="30 deliveries")
        names = [name for name, calls in receiver.calls.items() for _ in calls]
        assert sorted(names) == sorted(f"race-{index}" for index in range(30))  # each exactly once
        assert all(call["verified"] for calls in receiver.calls.values() for call in calls)
        with database.transaction() as session:
            assert set(session.scalars(select(Delivery.attempts)).all()) == {1}
            assert session.scalar(select(func.count(DeliveryAttempt.id))) == 30
    finally:
        for worker in workers:
            worker.stop()
            worker.db.dispose()
        database.dispose()


def test_updates_and_deletions_wait_for_the_row_and_never_guess_it(
    tmp_path: Path, skyportal_server: tuple[FakeSkyPortal, str]
) -> None:
    skyportal, skyportal_url = skyportal_server
    database = Database(f"sqlite:///{tmp_path / 'order.sqlite3'}", secret_box=SecretBox([new_key()]))
    worker = DeliveryWorker(database, FAST.model_copy(update={"outbound_workers": 1}))
    body = photometry_body(_row(), instrument_id=SKYPORTAL_INSTRUMENT, group_ids=[])
    put_body = encode_body(body).decode()
    patch_body = encode_body(update_body({**body, "mag": 15.25})).decode()
    later = utcnow() + dt.timedelta(hours=1)
    try:
        Base.metadata.create_all(database.engine)
        point_id, calibration_id = _seed_point(database)
        with database.transaction() as session:
            targets = []
            for name, base_url in (
                ("waits", skyportal_url),
                ("gone", skyportal_url),
                ("put failed", skyportal_url),
                ("moved", skyportal_url),
            ):
                destination = SkyPortalDestination(
                    name=name, base_url=base_url, token=SKYPORTAL_TOKEN, instrument_id=SKYPORTAL_INSTRUMENT
                )
                session.add(destination)
                session.flush()
                targets.append(destination.id)
            waits, gone, put_failed, moved = targets

            def add(target: int, action: str, request_body: str, **state: Any) -> None:
                values: dict[str, Any] = dict(status="pending", next_attempt_at=utcnow()) | state
                session.add(
                    Delivery(
                        kind="skyportal", target_id=target, point_id=point_id, calibration_id=calibration_id,
                        action=action, request_body=request_body, **values,
                    )
                )  # fmt: skip
                session.flush()

            # The PUT is not answered yet (due in an hour); its update and deletion are due now.
            add(waits, "calibrated", put_body, next_attempt_at=later)
            add(waits, "updated", patch_body)
            add(waits, "deleted", "")
            # Somebody already removed the row at SkyPortal (or our first DELETE's answer was lost).
            add(gone, "calibrated", put_body, status="delivered", next_attempt_at=None,
                remote_url=f"{skyportal_url}/api/photometry/999")  # fmt: skip
            add(gone, "deleted", "", next_attempt_at=later)
            # The first PUT failed for good: SkyPortal holds no row to update.
            add(put_failed, "calibrated", put_body, status="failed", next_attempt_at=None)
            add(put_failed, "updated", patch_body, next_attempt_at=later)
            # The row was made at the destination's earlier base_url: not addressed with today's token.
            add(moved, "calibrated", put_body, status="delivered", next_attempt_at=None,
                remote_url="http://old-skyportal.test/api/photometry/5")  # fmt: skip
            add(moved, "updated", patch_body, next_attempt_at=later)

        def state(target: int, action: str) -> Delivery:
            with database.transaction() as session:
                row = session.scalar(
                    select(Delivery).where(Delivery.target_id == target, Delivery.action == action)
                )
                assert row is not None
                session.expunge(row)
                return row

        assert worker.run_once() is False  # both wait for the PUT; nothing is sent, no attempt counted
        assert skyportal.calls == []
        assert state(waits, "updated").attempts == 0 and state(waits, "deleted").attempts == 0
        held = state(waits, "updated")
        assert held.status == "pending" and held.next_attempt_at is not None
        assert as_utc(held.next_attempt_at) >= later - dt.timedelta(
            seconds=1
        )  # no polling while the PUT waits

        with database.transaction() as session:
            session.execute(
                update(Delivery)
                .where(Delivery.target_id == waits, Delivery.action == "calibrated")
                .values(next_attempt_at=utcnow() - dt.timedelta(seconds=1))
            )
        assert worker.run_once() is True
        put = state(waits, "calibrated")
        [row_id] = skyportal.rows
        assert put.status == "delivered" and put.remote_url == f"{skyportal_url}/api/photometry/{row_id}"
        assert worker.run_once() and worker.run_once()  # the PUT's end released them
        assert [(c["method"], c["path"], c["status"]) for c in skyportal.calls] == [
            ("PUT", "/api/photometry", 200),
            ("PATCH", f"/api/photometry/{row_id}", 200),
            ("DELETE", f"/api/photometry/{row_id}", 200),
        ]
        assert all(c["problems"] == [] for c in skyportal.calls), skyportal.calls
        assert skyportal.rows == {}
        assert state(waits, "updated").status == state(waits, "deleted").status == "delivered"

        with database.transaction() as session:
            session.execute(
                update(Delivery)
                .where(Delivery.status == "pending", Delivery.next_attempt_at == later)
                .values(next_attempt_at=utcnow())
            )
        while worker.run_once():
            pass
        already = state(gone, "deleted")
        assert already.status == "delivered" and already.last_http_status == 400
        assert already.last_error is not None and "already gone" in already.last_error
        no_row = state(put_failed, "updated")
        assert (
            no_row.status == "failed"
            and no_row.attempts == 0
            and "holds no row of this point" in (no_row.last_error or "")
        )
        elsewhere = state(moved, "updated")
        assert elsewhere.status == "failed" and "earlier base_url" in (elsewhere.last_error or "")
        assert len(skyportal.calls) == 4  # only the DELETE of the gone row went out
    finally:
        worker.stop()
        database.dispose()


def test_update_bodies_answers_and_events_follow_skyportal_and_the_webhook_contract() -> None:
    put = photometry_body(_row(), instrument_id=2, group_ids=[4])
    patch = update_body(put)
    assert skyportal_violations(patch, instrument_id=2, patch=True) == []
    assert skyportal_violations(put, instrument_id=2, patch=True) == ["unknown key 'limiting_mag_nsigma'"]
    limit = update_body(
        photometry_body(_row(is_upper_limit=True, mag=18.2, limit_mag=18.2), instrument_id=2, group_ids=[])
    )
    assert limit["mag"] is None and limit["limiting_mag"] == 18.2
    assert skyportal_violations(limit, instrument_id=2, patch=True) == []

    assert photometry_id(b'{"status": "success", "data": {"ids": [4711], "upload_id": "u"}}') == 4711
    for answer in (
        b"",
        b"[]",
        b'{"data": {"ids": []}}',
        b'{"data": {"ids": ["7"]}}',
        b'{"data": {"ids": [true]}}',
    ):
        assert photometry_id(answer) is None, answer
    assert is_row_of("https://fritz.test/api/photometry/12", "https://fritz.test/")
    assert not is_row_of("https://old.test/api/photometry/12", "https://fritz.test")
    assert not is_row_of("https://fritz.test/api/photometry/12/x", "https://fritz.test")
    assert already_deleted(400, "Invalid Photometry id: 12")
    assert not already_deleted(400, "Unauthorized") and not already_deleted(500, "Invalid Photometry id: 12")

    created = dt.datetime(2024, 1, 2, tzinfo=dt.UTC)
    updated = webhook_payload(_calibrated_row(), delivery_id=9, created_at=created, event="point.updated")
    assert updated["event"] == "point.updated" and "deleted_at" not in updated["point"]
    assert updated["point"]["alert"] == {"id": 3, "name": "ivo://Gaia16aye", "ra_deg": 1.0, "dec_deg": 2.0}
    assert updated["point"]["observer"] == {"id": 4, "name": "O", "observatory": "Obs"}
    assert updated["point"]["filter"]["sncosmo"] == "bessellv"
    assert updated["point"]["calibration"]["created_at"] == "2024-01-01T00:00:00+00:00"
    assert updated["point"]["calibration"]["url"] == "/api/v1/observations/2/calibrations"
    unfitted = webhook_payload(_calibrated_row(zp=float("nan")), delivery_id=9, created_at=created)
    assert unfitted["point"]["calibration"]["zp"] is None  # JSON has no NaN
    gone = webhook_payload(
        _calibrated_row(), delivery_id=9, created_at=created, event="point.deleted", deleted_at=created
    )
    assert gone["point"]["deleted_at"] == "2024-01-02T00:00:00+00:00"
    with pytest.raises(ValueError):
        webhook_payload(_calibrated_row(), delivery_id=9, created_at=created, event="point.deleted")
    with pytest.raises(ValueError):
        webhook_payload(_calibrated_row(), delivery_id=9, created_at=created, event="point.moved")
    with pytest.raises(ValueError):
        webhook_payload(_row(), delivery_id=9, created_at=created)  # no calibration


# --------------------------------------------------------------------------------------------------
# Secrets at rest: what the database holds is a Fernet token of the server's key.


def _raw(database: Database, sql: str) -> list[Any]:
    with database.engine.connect() as connection:
        return [row[0] for row in connection.execute(text(sql))]


def _neither_clear_nor_encoded(stored: str, secret: str) -> None:
    assert secret not in stored
    for encode_ in (base64.b64encode, base64.urlsafe_b64encode):
        assert encode_(secret.encode()).decode().rstrip("=") not in stored


def test_webhook_secrets_and_destination_tokens_are_stored_encrypted(
    cpcs: OutboundSystem,
    bright_field: SimulatedField,
    receiver_server: tuple[WebhookReceiver, str],
    skyportal_server: tuple[FakeSkyPortal, str],
    tmp_path: Path,
) -> None:
    receiver, receiver_url = receiver_server
    skyportal, skyportal_url = skyportal_server
    cpcs.system.import_field(bright_field, tmp_path / "refs")
    alert_id = _create_alert(cpcs, ALERT, FIELD_RA_DEG, FIELD_DEC_DEG)
    hook = _add_webhook(cpcs, cpcs.system.observer_token, f"{receiver_url}/hook/enc", alert_id)
    receiver.secrets["enc"] = hook["secret"]
    destination = _add_destination(cpcs, skyportal_url)
    assert destination["token_hint"] == "…" + SKYPORTAL_TOKEN[-4:]
    database = cpcs.system.context.db
    [stored_secret] = _raw(database, "SELECT secret FROM webhook_subscription")
    [stored_token] = _raw(database, "SELECT token FROM skyportal_destination")
    _neither_clear_nor_encoded(stored_secret, hook["secret"])
    _neither_clear_nor_encoded(stored_token, SKYPORTAL_TOKEN)
    keys = cpcs.system.context.secret_box
    assert keys.decrypt(stored_secret) == hook["secret"]
    assert keys.decrypt(stored_token) == SKYPORTAL_TOKEN
    with pytest.raises(SecretUnreadable, match="CPCS_SECRET_KEY"):
        SecretBox([new_key()]).decrypt(stored_token)  # another key reads nothing
    # The key generated for this data folder is the owner's only, and it is the one in use.
    key_file = cpcs.system.context.settings.data_dir / KEY_FILE_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert SecretBox(key_file.read_text().split()).decrypt(stored_secret) == hook["secret"]

    # What is sent is the secret itself: a signature the subscriber checks, the token SkyPortal wants.
    _upload(cpcs, bright_field, ALERT)
    [sent] = _settled(cpcs, f"/api/v1/webhooks/{hook['id']}/deliveries", cpcs.system.observer_token, 1)
    assert sent["status"] == "delivered", sent
    assert receiver.calls["enc"] and all(call["verified"] for call in receiver.calls["enc"])
    url = f"/api/v1/skyportal/destinations/{destination['id']}/deliveries"
    [put] = _settled(cpcs, url, cpcs.system.admin_token, 1)
    assert put["status"] == "delivered", put
    assert {call["headers"]["authorization"] for call in skyportal.calls} == {f"token {SKYPORTAL_TOKEN}"}


def test_secrets_written_with_another_key_fail_clearly_and_can_be_given_again(
    cpcs: OutboundSystem,
    skyportal_server: tuple[FakeSkyPortal, str],
    receiver_server: tuple[WebhookReceiver, str],
) -> None:
    skyportal, skyportal_url = skyportal_server
    receiver, receiver_url = receiver_server
    observer, admin = cpcs.system.observer_token, cpcs.system.admin_token
    hook = _add_webhook(cpcs, observer, f"{receiver_url}/hook/lost", None)
    destination = _add_destination(cpcs, skyportal_url)
    database = cpcs.system.context.db
    other_key = SecretBox([new_key()])
    with database.engine.begin() as connection:  # as if written by a process with another key
        connection.execute(text("UPDATE webhook_subscription SET secret = :v"), {"v": other_key.encrypt("s")})
        connection.execute(text("UPDATE skyportal_destination SET token = :v"), {"v": other_key.encrypt("t")})

    # The API still answers: the webhook is listed, the destination says its token is unreadable.
    assert [w["id"] for w in cpcs.client.get("/api/v1/webhooks", headers=_auth(observer)).json()] == [
        hook["id"]
    ]
    listed = cpcs.client.get("/api/v1/skyportal/destinations", headers=_auth(admin))
    assert listed.status_code == 200, listed.text
    assert listed.json()[0]["token_hint"] == UNREADABLE_TOKEN_HINT
    assert unreadable_secrets(database) == [
        f"webhook {hook['id']}",
        f"SkyPortal destination {destination['id']}",
    ]

    # A delivery to either fails at once with the reason, and nothing is sent.
    point_id, calibration_id = _seed_point(database)
    with database.transaction() as session:
        for kind, target in (("webhook", hook["id"]), ("skyportal", destination["id"])):
            session.add(
                Delivery(
                    kind=kind, target_id=target, point_id=point_id, calibration_id=calibration_id,
                    status="pending", next_attempt_at=utcnow(), request_body="{}",
                )
            )  # fmt: skip
    cpcs.outbound.worker.notify()
    webhook_url = f"/api/v1/webhooks/{hook['id']}/deliveries"
    [failed_hook] = _settled(cpcs, webhook_url, observer, 1)
    sp_url = f"/api/v1/skyportal/destinations/{destination['id']}/deliveries"
    [failed_sp] = _settled(cpcs, sp_url, admin, 1)
    for failed, what in ((failed_hook, "signing secret"), (failed_sp, "token")):
        assert failed["status"] == "failed" and failed["attempts"] == 0, failed
        assert f"{what} cannot be decrypted" in failed["last_error"]
        assert "CPCS_SECRET_KEY" in failed["last_error"]
    assert not receiver.calls and not skyportal.calls

    # The admin gives the token again: it is readable (and encrypted with this server's key).
    patched = cpcs.client.patch(
        f"/api/v1/skyportal/destinations/{destination['id']}",
        json={"token": SKYPORTAL_TOKEN},
        headers=_auth(admin),
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["token_hint"] == "…" + SKYPORTAL_TOKEN[-4:]
    assert unreadable_secrets(database) == [f"webhook {hook['id']}"]


# --------------------------------------------------------------------------------------------------
# Consent: an observer chooses where their points go (cpcs.domain.consent).


def test_points_go_only_where_their_observer_lets_them(
    cpcs: OutboundSystem,
    bright_field: SimulatedField,
    skyportal_server: tuple[FakeSkyPortal, str],
    receiver_server: tuple[WebhookReceiver, str],
    tmp_path: Path,
) -> None:
    skyportal, skyportal_url = skyportal_server
    receiver, receiver_url = receiver_server
    system = cpcs.system
    system.import_field(bright_field, tmp_path / "refs")
    alert_id = _create_alert(cpcs, ALERT, FIELD_RA_DEG, FIELD_DEC_DEG)
    hook = _add_webhook(cpcs, system.other_token, f"{receiver_url}/hook/all", None)
    receiver.secrets.update(all=hook["secret"])
    destination = _add_destination(cpcs, skyportal_url)
    me = _auth(system.observer_token)
    refused = cpcs.client.patch("/api/v1/me", json={"sharing": {"nowhere": False}}, headers=me)
    assert refused.status_code == 422 and refused.json()["error"] == "unknown_destination"
    changed = cpcs.client.patch("/api/v1/me", json={"sharing": {"skyportal": False}}, headers=me)
    assert changed.status_code == 200, changed.text
    assert changed.json()["sharing"] == {"skyportal": False, "webhooks": True, "tns": True, "hermes": True}

    point = _upload(cpcs, bright_field, ALERT)["point"]
    [sent] = _settled(cpcs, f"/api/v1/webhooks/{hook['id']}/deliveries", system.other_token, 1)
    assert sent["status"] == "delivered" and sent["point_id"] == point["id"]
    # Webhooks and SkyPortal are planned in one transaction: the webhook's delivery means SkyPortal's
    # was decided against.
    admin = system.admin_token
    assert _deliveries(cpcs, f"/api/v1/skyportal/destinations/{destination['id']}/deliveries", admin) == []
    assert skyportal.calls == [] and _delivery_count(cpcs) == 1
    del alert_id
