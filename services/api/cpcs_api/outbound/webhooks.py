"""Signed webhooks: a point's news POSTed as JSON to a subscriber's URL.

Three events, named in the body's ``event`` and in the ``X-CPCS-Event`` header:

* ``point.calibrated`` — a point the subscription has not had yet, with its calibration;
* ``point.updated`` — a new calibration version of a point the subscription already got (a
  recalibration or a corrected observation): the same document, the point's new values;
* ``point.deleted`` — the point was deleted; the document is the point as it last was, with
  ``point.deleted_at``. Nothing follows it for that point.

A subscription gets each event of a point once (at least once over the wire: see below), in
order: a point's next delivery to a subscription waits until the one before it has ended. The
header is for routing; the body's ``event`` is the signed one.

Every request carries

* ``X-CPCS-Timestamp`` — when this attempt was sent, Unix seconds (an integer, as text);
* ``X-CPCS-Signature: sha256=<hex>`` — HMAC-SHA256 of the timestamp, a full stop and the raw
  request body (``f"{timestamp}.".encode() + body``), keyed with the subscription's secret (UTF-8),
  as lower-case hex;
* ``X-CPCS-Delivery`` — the delivery id; every retry of one delivery repeats it and sends the
  same bytes, so a receiver de-duplicates on it.

The signature covers the timestamp, so a captured request cannot be replayed later with a new
one: a receiver refuses a timestamp older than a few minutes (:data:`SIGNATURE_TOLERANCE_S`) and
de-duplicates deliveries within that window. It checks with :func:`verify_signature`, or in any
language: ``hmac_sha256(secret, timestamp + "." + body) == signature[len("sha256="):]`` in
constant time, and ``|now - timestamp| <= 300``.

Any 2xx answer counts as delivered; see :mod:`.dispatcher` for retries.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
from typing import Any
from urllib.parse import urlsplit

from cpcs.lightcurve.exports import ExportRow, finite
from cpcs.schemas import as_utc

SIGNATURE_HEADER = "X-CPCS-Signature"
TIMESTAMP_HEADER = "X-CPCS-Timestamp"
DELIVERY_HEADER = "X-CPCS-Delivery"
EVENT_HEADER = "X-CPCS-Event"
EVENT_CALIBRATED = "point.calibrated"
EVENT_UPDATED = "point.updated"
EVENT_DELETED = "point.deleted"
#: The event of each delivery action (``cpcs.db.delivery_models.DELIVERY_ACTIONS``).
EVENTS = {"calibrated": EVENT_CALIBRATED, "updated": EVENT_UPDATED, "deleted": EVENT_DELETED}
PAYLOAD_VERSION = 1
SIGNATURE_PREFIX = "sha256="
SECRET_BYTES = 32
#: How far a signed timestamp may be from the receiver's clock, in seconds.
SIGNATURE_TOLERANCE_S = 300


def new_secret() -> str:
    """A fresh subscription secret (256 random bits, URL-safe text), shown to the subscriber once."""
    return secrets.token_urlsafe(SECRET_BYTES)


def sign(secret: str, body: bytes, timestamp: str) -> str:
    """The ``X-CPCS-Signature`` value of ``body`` sent at ``timestamp`` (the header's text)."""
    message = timestamp.encode("ascii") + b"." + body
    return SIGNATURE_PREFIX + hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    *,
    now: float | None = None,
    tolerance_s: float = SIGNATURE_TOLERANCE_S,
) -> bool:
    """Whether ``signature`` signs ``body`` at ``timestamp`` under ``secret``, and the time is recent.

    ``signature`` and ``timestamp`` are the ``X-CPCS-Signature`` and ``X-CPCS-Timestamp`` headers;
    the comparison is constant-time; ``now`` defaults to the clock (Unix seconds).
    """
    if not signature or not signature.startswith(SIGNATURE_PREFIX) or not timestamp:
        return False
    timestamp = timestamp.strip()
    if not (timestamp.isascii() and timestamp.isdigit()):
        return False
    current = dt.datetime.now(dt.UTC).timestamp() if now is None else now
    if abs(current - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, body, timestamp).encode(), signature.strip().encode())


def request_headers(secret: str, body: bytes, delivery_id: int, sent_at: dt.datetime) -> dict[str, str]:
    """The headers of one attempt of a webhook delivery."""
    timestamp = str(int(sent_at.timestamp()))
    return {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(secret, body, timestamp),
        TIMESTAMP_HEADER: timestamp,
        DELIVERY_HEADER: str(delivery_id),
    }


def iso_utc(value: dt.datetime) -> str:
    """``value`` as ISO 8601 in UTC, to the second."""
    return as_utc(value).isoformat(timespec="seconds")


def payload(
    row: ExportRow,
    *,
    delivery_id: int,
    created_at: dt.datetime,
    event: str = EVENT_CALIBRATED,
    deleted_at: dt.datetime | None = None,
) -> dict[str, Any]:
    """The JSON document a subscriber receives for one event of a point (version 1), from the point's
    export row (``cpcs.domain.points.export_row``: with its calibration).

    ``mag`` of an upper limit is the limit (``is_upper_limit`` true); ``magerr`` is the measurement
    error, ``caliberr`` the calibration error and ``mag_err_total`` both in quadrature. A
    ``point.deleted`` document adds ``point.deleted_at``.
    """
    if event not in EVENTS.values():
        raise ValueError(f"unknown webhook event {event!r}")
    if (event == EVENT_DELETED) != (deleted_at is not None):
        raise ValueError("point.deleted, and only it, carries deleted_at")
    calibration = row.calibration
    if calibration is None:
        raise ValueError("a webhook document needs the point's calibration")
    document: dict[str, Any] = {
        "event": event,
        "version": PAYLOAD_VERSION,
        "delivery_id": delivery_id,
        "created_at": iso_utc(created_at),
        "point": {
            "id": row.point_id,
            "observation_id": row.observation_id,
            "url": row.calibration_url,
            "alert": {
                "id": row.alert_id,
                "name": row.alert_name,
                "ra_deg": row.alert_ra_deg,
                "dec_deg": row.alert_dec_deg,
            },
            "observer": {"id": row.observer_id, "name": row.observer, "observatory": row.observatory},
            "mjd": row.mjd,
            "filter": {
                "declared": row.filter_declared,
                "survey": row.survey,
                "band": row.band,
                "sncosmo": row.sncosmo_filter,
                "magsys": row.magsys,
            },
            "mag": row.mag,
            "magerr": row.magerr,
            "caliberr": row.caliberr,
            "mag_err_total": row.mag_err_total,
            "is_upper_limit": row.is_upper_limit,
            "limit_mag": row.limit_mag,
            "flux_ujy": row.flux_ujy,
            "flux_err_ujy": row.flux_err_ujy,
            "calibration": {
                "id": calibration.id,
                "version": calibration.version,
                "mode": calibration.mode,
                "pipeline_version": calibration.pipeline_version,
                "catalogue_release": calibration.catalogue_release,
                "colour_index": calibration.colour_index,
                "zp": finite(calibration.zp),
                "zp_err": finite(calibration.zp_err),
                "colour_term": finite(calibration.colour_term),
                "colour_term_err": finite(calibration.colour_term_err),
                "scatter": finite(calibration.scatter),
                "n_stars": calibration.n_stars,
                "outlier_fraction": finite(calibration.outlier_fraction),
                "created_at": iso_utc(calibration.created_at),
                "url": f"{row.calibration_url}/calibrations",
            },
        },
    }
    if deleted_at is not None:
        document["point"]["deleted_at"] = iso_utc(deleted_at)
    return document


def encode_payload(document: dict[str, Any]) -> bytes:
    """The bytes sent and signed: compact JSON with sorted keys, no NaN."""
    return json.dumps(document, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()


# --------------------------------------------------------------------------------------------------
# Where webhooks may go. A subscriber chooses the URL, so by default it may not point into our own
# network (loopback, private, link-local …): that would let anybody make the server call its
# neighbours. Operators who need it (tests, a closed network) allow it in the outbound settings.


#: How an operator lets deliveries reach a closed network, named in every refusal.
_ALLOW_HINT = " (an operator can allow them with CPCS_OUTBOUND_ALLOW_PRIVATE_TARGETS=true)"


class TargetNotAllowed(ValueError):
    """The webhook URL is not an http(s) URL to a public address."""


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url_form(url: str) -> tuple[str, int]:
    """The host and port of an http(s) URL without credentials; raises :class:`TargetNotAllowed`."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise TargetNotAllowed("the URL must start with http:// or https://")
    if not parts.hostname:
        raise TargetNotAllowed("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise TargetNotAllowed("the URL may not contain credentials; the signature authenticates us")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise TargetNotAllowed(f"the URL's port is not valid: {exc}") from exc
    return parts.hostname, port


def check_literal_host(url: str, *, allow_private: bool) -> None:
    """At subscription time: the URL's form, and its host if it is an IP address or ``localhost``."""
    host, _port = check_url_form(url)
    if allow_private:
        return
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        raise TargetNotAllowed(f"outbound URLs may not point at this server's own network{_ALLOW_HINT}")
    try:
        public = _is_public(host)
    except ValueError:
        return  # a name: resolved and checked when sending
    if not public:
        raise TargetNotAllowed(
            f"outbound URLs may not point at private, loopback or link-local addresses{_ALLOW_HINT}"
        )


def check_resolved_host(url: str, *, allow_private: bool) -> None:
    """At send time: every address the URL's host resolves to must be public.

    Raises :class:`TargetNotAllowed`, or ``OSError`` when the name does not resolve (a transient
    failure). The HTTP client resolves the name again, so this narrows but does not close DNS
    rebinding; a deployment that must close it sends webhooks through an egress proxy.
    """
    host, port = check_url_form(url)
    if allow_private:
        return
    check_literal_host(url, allow_private=False)
    for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        address = str(info[4][0])
        if not _is_public(address):
            raise TargetNotAllowed(f"{host} resolves to a non-public address ({address})")
