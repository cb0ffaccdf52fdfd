"""A point as a Hermes message on SCiMMA's Hopskotch (Kafka), published with hop-client.

Hermes (the message service of SCiMMA and LCO) reads JSON messages from Hopskotch topics. What
this module relies on, read in LCOGT/hermes (``hermes/serializers.py``: ``HermesMessageSerializer``,
``GenericHermesDataSerializer``, ``TargetDataSerializer``, ``PhotometryDataSerializer``; and
``submit_to_hop`` in ``hermes/views.py``, which opens ``kafka://<broker>/<topic>`` for writing with
``hop.io.Stream`` and writes the packed message):

* a message is ``{"topic", "title", "submitter", "authors", "message_text", "data"}``; ``title``,
  ``topic`` and ``submitter`` are required;
* ``data.targets`` is a list of ``{"name", "ra", "dec"}`` (names unique in the message; ra/dec as
  numbers in degrees or sexagesimal strings) and every ``data.photometry`` row names one of them in
  ``target_name``;
* a photometry row needs ``target_name``, ``date_obs`` (a date dateutil parses, or a JD),
  ``bandpass``, one of ``telescope``/``instrument``, and ``brightness`` or ``limiting_brightness``;
  ``brightness_unit`` and ``limiting_brightness_unit`` are one of ``AB mag``, ``Vega mag``, ``mJy``
  and ``erg / s / cm² / Å``; ``brightness_error``, ``observer``, ``catalog`` and ``comments`` are
  optional. Hermes drops null values, so we leave them out.

What a delivery publishes (the body is built once, when the point is announced, from the same
export row as every light-curve export, :func:`cpcs.domain.points.export_row`):

* ``calibrated``: the point's photometry row (a detection: its magnitude and total error, and the
  frame's limit when known; an upper limit: the limit only);
* ``updated``: a new calibration version of it, the same shape, titled as an update;
* ``deleted``: the target only, and a text saying that the point was withdrawn.

Every message carries Kafka headers ``cpcs-delivery-id``, ``cpcs-point-id`` and ``cpcs-event``
(``point.calibrated``, ``point.updated``, ``point.deleted``, as the webhooks): publishing is at least
once, so readers de-duplicate on the delivery id. hop-client adds ``_id`` (the message's UUID,
kept as the delivery's ``remote_url``), ``_sender`` and ``_format``.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from astropy.time import Time

from cpcs.lightcurve.exports import ExportRow, skyportal_obj_id
from cpcs.settings import Settings

#: ``Delivery.target_id`` of the one Hermes stream the settings configure.
HERMES_TARGET_ID = 1
DELIVERY_HEADER = "cpcs-delivery-id"
POINT_HEADER = "cpcs-point-id"
EVENT_HEADER = "cpcs-event"
#: Hermes' magnitude units by our magnitude system (sncosmo's name).
_UNITS = {"ab": "AB mag", "vega": "Vega mag"}
_TITLES = {
    "calibrated": "CPCS photometry of {target}",
    "updated": "CPCS photometry of {target} (new calibration)",
    "deleted": "CPCS photometry of {target} withdrawn",
}


class NotSendable(ValueError):
    """The point cannot be a Hermes photometry row (no time, no magnitude system …)."""


class PublishFailed(Exception):
    """A publication that did not reach the broker; ``retryable`` when trying again may succeed."""

    def __init__(self, message: str, *, retryable: bool):
        super().__init__(message)
        self.retryable = retryable


def stream_url(broker_url: str, topic: str) -> str:
    """The hop URL of ``topic`` at ``broker_url`` (``kafka://host/topic``)."""
    return f"{broker_url.rstrip('/')}/{topic}"


def _clean(document: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in document.items() if value is not None}


def date_obs(mjd: float) -> str:
    """An MJD as the ISO 8601 UTC time Hermes reads (to the millisecond)."""
    return str(Time(mjd, format="mjd", scale="utc").isot) + "Z"


def target(row: ExportRow, ra_deg: float, dec_deg: float) -> dict[str, Any]:
    """The message's target: the alert's short name and position."""
    return {"name": skyportal_obj_id(row.alert_name), "ra": round(ra_deg, 7), "dec": round(dec_deg, 7)}


def photometry_row(row: ExportRow) -> dict[str, Any]:
    """The point as one Hermes photometry row; :class:`NotSendable` when Hermes could not take it."""
    if row.mjd is None:
        raise NotSendable("the point has no MJD; Hermes needs date_obs")
    unit = _UNITS.get(row.magsys or "")
    if unit is None:
        raise NotSendable(f"{row.survey}/{row.band} has no known magnitude system (Hermes takes AB or Vega)")
    limit = row.mag if row.is_upper_limit else row.limit_mag
    if row.is_upper_limit and limit is None:
        raise NotSendable("the upper limit has no magnitude")
    release = row.calibration.catalogue_release if row.calibration is not None else None
    catalog = f"{row.survey} {release}" if release else row.survey
    return _clean(
        {
            "target_name": skyportal_obj_id(row.alert_name),
            "date_obs": date_obs(row.mjd),
            "telescope": row.observatory,
            "bandpass": row.sncosmo_filter or f"{row.survey} {row.band}",
            "brightness": None if row.is_upper_limit else round(row.mag, 4),
            "brightness_error": None if row.is_upper_limit else round(row.mag_err_total, 4),
            "brightness_unit": unit,
            "limiting_brightness": None if limit is None else round(limit, 4),
            "limiting_brightness_unit": unit if limit is not None else None,
            "observer": row.observer,
            "catalog": catalog,
            "comments": f"CPCS point {row.point_id}, calibration {row.calibration_id}: {row.calibration_url}",
        }
    )


def message(
    row: ExportRow,
    *,
    action: str,
    topic: str,
    submitter: str,
    ra_deg: float,
    dec_deg: float,
) -> dict[str, Any]:
    """The Hermes message a delivery with ``action`` publishes for ``row``."""
    name = skyportal_obj_id(row.alert_name)
    band = row.sncosmo_filter or f"{row.survey} {row.band}"
    data: dict[str, Any] = {"targets": [target(row, ra_deg, dec_deg)]}
    if action == "deleted":
        text = (
            f"{row.observer} ({row.observatory}) withdrew CPCS point {row.point_id} of {row.alert_name}; "
            "disregard the photometry published for it."
        )
    else:
        data["photometry"] = [photometry_row(row)]
        what = (
            f"upper limit {row.mag:.2f}" if row.is_upper_limit else f"{row.mag:.3f} ± {row.mag_err_total:.3f}"
        )
        text = (
            f"{row.observer} ({row.observatory}): {row.alert_name} in {band} at MJD {row.mjd:.5f}: {what} "
            f"(calibrated by CPCS against {row.survey} {row.band})."
        )
        if action == "updated":
            text += " This replaces the values published earlier for the same point."
    return {
        "topic": topic,
        "title": _TITLES[action].format(target=name),
        "submitter": submitter,
        "authors": row.observer,
        "message_text": text,
        "data": data,
    }


def encode_message(document: dict[str, Any]) -> bytes:
    """The JSON stored with the delivery (compact; NaN refused)."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def message_headers(delivery_id: int, point_id: int, event: str) -> list[tuple[str, bytes]]:
    """The Kafka headers CPCS adds to a message (hop-client adds its own)."""
    return [
        (DELIVERY_HEADER, str(delivery_id).encode()),
        (POINT_HEADER, str(point_id).encode()),
        (EVENT_HEADER, event.encode()),
    ]


# --------------------------------------------------------------------------------------------------
# Publishing.


class HopStream(Protocol):
    """What is used of :class:`hop.io.Stream`: ``open(url, "w", ...)`` gives a producer."""

    def open(self, url: str, mode: str = ..., **kwargs: Any) -> Any: ...


#: Kafka error codes that trying again cannot cure (credential, rights, size).
_REFUSALS = frozenset(
    {
        "TOPIC_AUTHORIZATION_FAILED",
        "CLUSTER_AUTHORIZATION_FAILED",
        "SASL_AUTHENTICATION_FAILED",
        "MSG_SIZE_TOO_LARGE",
        "INVALID_RECORD",
    }
)


def _kafka_error_text(error: Any) -> tuple[str, bool]:
    """What a Kafka delivery error says, and whether it is worth retrying."""
    name = error.name() if hasattr(error, "name") else type(error).__name__
    reason = error.str() if hasattr(error, "str") else str(error)
    fatal = bool(error.fatal()) if hasattr(error, "fatal") else False
    return f"Kafka {name}: {reason}", not fatal and name not in _REFUSALS


@dataclass(frozen=True)
class Published:
    """A message the broker acknowledged: hop's message id and where it went."""

    message_id: str
    url: str


class HermesPublisher:
    """Publishes messages to the configured Hopskotch broker with hop-client (one stream per call).

    ``stream`` stands in for :class:`hop.io.Stream` (tests); by default one is made with the
    configured credential. The password never leaves the hop ``Auth`` object: nothing here logs it.
    """

    def __init__(self, settings: Settings, stream: HopStream | None = None):
        if not settings.hermes_enabled:
            raise ValueError("Hermes needs CPCS_HERMES_TOPIC, CPCS_HERMES_USERNAME and CPCS_HERMES_PASSWORD")
        assert settings.hermes_username is not None and settings.hermes_password is not None
        from hop.auth import Auth  # imported here: only a process that publishes needs Kafka

        self.broker_url = settings.hermes_broker_url
        self.topic = str(settings.hermes_topic)
        self.timeout_s = settings.hermes_timeout_s
        self.auth = Auth(settings.hermes_username, settings.hermes_password.get_secret_value())
        self._stream = stream

    @property
    def stream(self) -> HopStream:
        if self._stream is None:
            from hop.io import Stream

            self._stream = Stream(auth=self.auth)
        return self._stream

    def publish(self, topic: str, document: dict[str, Any], headers: list[tuple[str, bytes]]) -> Published:
        """Publish ``document`` on ``topic`` and wait for the broker's acknowledgement.

        Raises :class:`PublishFailed` (with ``retryable``) when the broker does not take it.
        """
        from hop.io import Producer

        url = stream_url(self.broker_url, topic)
        payload, packed_headers = Producer.pack(document, headers=list(headers), auth=self.auth)
        message_id = next(str(uuid.UUID(bytes=value)) for key, value in packed_headers if key == "_id")
        errors: list[Any] = []

        def delivered(error: Any, _message: Any) -> None:
            if error is not None:
                errors.append(error)

        timeout = dt.timedelta(seconds=self.timeout_s)
        try:
            with self.stream.open(url, "w", produce_timeout=timeout) as producer:
                producer.write_raw(payload, packed_headers, delivery_callback=delivered)
                left = producer.flush(timeout)
        except Exception as exc:  # the broker is away, refuses the credential, …
            if errors:
                text, retryable = _kafka_error_text(errors[0])
                raise PublishFailed(text, retryable=retryable) from exc
            raise PublishFailed(f"{type(exc).__name__}: {exc}", retryable=True) from exc
        if errors:
            text, retryable = _kafka_error_text(errors[0])
            raise PublishFailed(text, retryable=retryable)
        if left:
            raise PublishFailed(
                f"no acknowledgement from the broker within {self.timeout_s:g} s", retryable=True
            )
        return Published(message_id, url)
