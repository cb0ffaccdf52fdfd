"""Hermes: every point, its new versions and its deletion as Hermes messages on a Hopskotch topic.

SCiMMA's Kafka broker cannot be reached from here, so the narrowest boundary is replaced: the
``hop.io.Stream`` that hop-client opens is a stand-in whose producer keeps what ``write_raw`` was
given (the payload and headers hop-client's own ``Producer.pack`` made) and answers through the
delivery callback as confluent-kafka does, with success or with a ``KafkaError``. Everything
else is real: the embedded system, its database, its bus, the delivery worker and the API.

The messages are checked against the rules of Hermes' serializers (LCOGT/hermes
``hermes/serializers.py``, see :mod:`cpcs_api.outbound.hermes`).
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError
from dateutil.parser import parse as parse_date
from sqlalchemy import func, select

from cpcs.db.delivery_models import Delivery
from cpcs.db.models import Calibration, Point
from cpcs.domain.points import export_row
from cpcs.lightcurve.exports import ExportRow
from cpcs.messages import PointCalibratedV1, encode
from cpcs.messaging.bus import Envelope
from cpcs.science.bands import export_band
from cpcs.settings import Settings
from cpcs.simulation.catalogue_simulator import SimulatedField, simulate_field, to_sextractor_ascii
from cpcs_api.outbound import hermes as hermes_module
from cpcs_api.outbound.hermes import NotSendable, date_obs, message, photometry_row
from tests.conftest import FIELD_DEC_DEG, FIELD_RA_DEG, System, start_system

ALERT = "ivo://Gaia16aye"
MJD = 57737.5
TOPIC = "hermes.test"
BROKER = "kafka://kafka.scimma.org/"
HOP_USER = "cpcs-bot-0042"
HOP_PASSWORD = "hop-password-never-shown-7f3a"

FAST_OUTBOUND: dict[str, Any] = dict(
    outbound_backoff_s=(0.05, 0.1, 0.2),
    outbound_max_attempts=3,
    outbound_timeout_s=2.0,
    outbound_lease_s=10.0,
    outbound_poll_s=0.05,
    outbound_workers=1,
    outbound_allow_private_targets=True,
    outbound_trust_env=False,
)

# --------------------------------------------------------------------------------------------------
# Hermes' rules for a message (LCOGT/hermes, hermes/serializers.py).

HERMES_MESSAGE_KEYS = {"topic", "title", "submitter", "authors", "message_text", "data"}
HERMES_PHOTOMETRY_KEYS = {
    "target_name", "date_obs", "telescope", "instrument", "bandpass", "brightness", "brightness_error",
    "brightness_unit", "exposure_time", "observer", "comments", "limiting_brightness",
    "limiting_brightness_error", "limiting_brightness_unit", "catalog", "group_associations",
}  # fmt: skip
HERMES_UNITS = {"AB mag", "Vega mag", "mJy", "erg / s / cm² / Å"}


def hermes_violations(document: Any) -> list[str]:
    """What Hermes' serializers would refuse in ``document`` (empty: accepted)."""
    problems: list[str] = []
    if not isinstance(document, dict):
        return ["not an object"]
    problems += [f"unknown key {key}" for key in set(document) - HERMES_MESSAGE_KEYS]
    problems += [f"{key} missing" for key in ("title", "topic", "submitter") if not document.get(key)]
    data = document.get("data", {})
    targets = data.get("targets", [])
    names = [t.get("name") for t in targets]
    if len(set(names)) != len(names):
        problems.append("target names not unique")
    for target in targets:
        if not target.get("name"):
            problems.append("target without name")
        if not (isinstance(target.get("ra"), float) and isinstance(target.get("dec"), float)):
            problems.append("target without ra/dec")
    for row in data.get("photometry", []):
        problems += [f"photometry key {key}" for key in set(row) - HERMES_PHOTOMETRY_KEYS]
        if row.get("target_name") not in names:
            problems.append("photometry target_name names no target")
        for key in ("target_name", "date_obs", "bandpass"):
            if not row.get(key):
                problems.append(f"photometry {key} missing")
        try:
            parse_date(str(row.get("date_obs")))
        except (ValueError, OverflowError):
            problems.append("date_obs does not parse")
        if not (row.get("telescope") or row.get("instrument")):
            problems.append("neither telescope nor instrument")
        if not (row.get("brightness") or row.get("limiting_brightness")):
            problems.append("neither brightness nor limiting_brightness")
        for key in ("brightness_unit", "limiting_brightness_unit"):
            if key in row and row[key] not in HERMES_UNITS:
                problems.append(f"{key} {row[key]!r}")
        for key, value in row.items():
            if value is None or (isinstance(value, float) and not math.isfinite(value)):
                problems.append(f"{key} is {value}")
    return problems


# --------------------------------------------------------------------------------------------------
# The stand-in of hop's Stream.


@dataclass
class Written:
    url: str
    payload: bytes
    headers: list[tuple[str, bytes]]

    @property
    def document(self) -> Any:
        return json.loads(self.payload)

    def header(self, key: str) -> bytes:
        [value] = [v for k, v in self.headers if k == key]
        return value


@dataclass
class FakeHopStream:
    """``open(url, "w")`` gives a producer; ``outcomes`` (consumed in order, then success) say how
    each write ends: ``None`` delivered, a ``KafkaError`` through the callback, an exception at open."""

    outcomes: list[KafkaError | Exception | None] = field(default_factory=list)
    opened: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    written: list[Written] = field(default_factory=list)  # acknowledged by the "broker"
    refused: list[Written] = field(default_factory=list)

    def open(self, url: str, mode: str = "r", **kwargs: Any) -> FakeProducer:
        self.opened.append((url, mode, kwargs))
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if isinstance(outcome, Exception):
            raise outcome
        return FakeProducer(self, url, outcome)


@dataclass
class FakeProducer:
    stream: FakeHopStream
    url: str
    outcome: KafkaError | None
    queued: list[tuple[Written, Callable[..., None]]] = field(default_factory=list)

    def __enter__(self) -> FakeProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()

    def write_raw(
        self, packed_message: bytes, headers: list[tuple[str, bytes]], delivery_callback: Callable[..., None]
    ) -> None:
        self.queued.append((Written(self.url, packed_message, list(headers)), delivery_callback))

    def flush(self, timeout: Any = None) -> int:
        for written, callback in self.queued:
            if self.outcome is None:
                self.stream.written.append(written)
                callback(None, written)
            else:
                self.stream.refused.append(written)
                callback(self.outcome, None)
        self.queued = []
        return 0


# --------------------------------------------------------------------------------------------------
# The CPCS side.


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _hermes_settings(data_dir: Path, **extra: Any) -> Settings:
    return Settings(
        data_dir=data_dir,
        retry_base_s=0.05,
        outbox_poll_s=0.05,
        legacy_wait_s=30,
        public_url="http://cpcs.test",
        hermes_topic=TOPIC,
        hermes_username=HOP_USER,
        hermes_password=HOP_PASSWORD,
        hermes_submitter="CPCS test server",
        **{**FAST_OUTBOUND, **extra},
    )


def start_hermes_system(settings: Settings, stream: FakeHopStream) -> System:
    """The embedded system whose Hermes publisher writes to ``stream`` (hop's Stream stood in for)."""
    system = start_system(settings)
    outbound = system.assembly.outbound
    assert outbound is not None and outbound.worker.hermes is not None  # configured: a real publisher
    outbound.worker.hermes = hermes_module.HermesPublisher(system.context.settings, stream)
    return system


def outbound_of(system: System) -> Any:
    assert system.assembly.outbound is not None
    return system.assembly.outbound


@dataclass
class HermesSystem:
    system: System
    stream: FakeHopStream


@pytest.fixture
def cpcs(tmp_path: Path) -> Iterator[HermesSystem]:
    stream = FakeHopStream()
    system = start_hermes_system(_hermes_settings(tmp_path / "data"), stream)
    try:
        yield HermesSystem(system, stream)
    finally:
        outbound_of(system).stop()
        system.client.close()
        system.assembly.stop()


@pytest.fixture(scope="module")
def bright_field() -> SimulatedField:
    return simulate_field(7, n_stars=300, ra_deg=FIELD_RA_DEG, dec_deg=FIELD_DEC_DEG, target="bright")


def _wait_for(predicate: Callable[[], Any], timeout_s: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _upload(system: System, field_: SimulatedField) -> dict[str, Any]:
    catalogue = to_sextractor_ascii(field_.ra_deg, field_.dec_deg, field_.mag, field_.magerr).encode()
    data = {"alert": ALERT, "mjd": str(MJD), "exptime_s": "60", "filter": "r'"}
    accepted = system.client.post(
        "/api/v1/uploads",
        data=data,
        files={"file": ("frame.cat", catalogue)},
        headers=_auth(system.observer_token),
    )
    assert accepted.status_code == 202, accepted.text
    url = accepted.json()["status_url"]

    def final() -> dict[str, Any] | None:
        body: dict[str, Any] = system.client.get(url, headers=_auth(system.observer_token)).json()
        return body if body["status"] in ("calibrated", "failed", "error") else None

    observation: dict[str, Any] = _wait_for(final, what="the calibration")
    assert observation["status"] == "calibrated", observation
    return observation


def _prepare(system: System, field_: SimulatedField, tmp_path: Path) -> int:
    system.import_field(field_, tmp_path / "refs")
    answer = system.client.post(
        "/api/v1/alerts",
        json={"name": ALERT, "ra_deg": FIELD_RA_DEG, "dec_deg": FIELD_DEC_DEG},
        headers=_auth(system.observer_token),
    )
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def _hermes_deliveries(system: System, token: str) -> list[dict[str, Any]]:
    answer = system.client.get("/api/v1/hermes/deliveries", headers=_auth(token))
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def _settled(system: System, count: int) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        items = _hermes_deliveries(system, system.admin_token)
        return items if len(items) == count and all(d["status"] != "pending" for d in items) else None

    result: list[dict[str, Any]] = _wait_for(done, what=f"{count} settled Hermes deliveries")
    return result


def _delivery_count(system: System) -> int:
    with system.context.db.transaction() as session:
        return session.scalar(select(func.count(Delivery.id))) or 0


def _expected_message(system: System, point_id: int, action: str) -> dict[str, Any]:
    """What the export row of the point, as stored now, makes (the light-curve exports' row)."""
    with system.context.db.transaction() as session:
        point = session.get(Point, point_id)
        assert point is not None
        calibration = session.get(Calibration, point.calibration_id)
        assert calibration is not None
        row = export_row(point, calibration, "http://cpcs.test/")
        return message(
            row,
            action=action,
            topic=TOPIC,
            submitter="CPCS test server",
            ra_deg=FIELD_RA_DEG,
            dec_deg=FIELD_DEC_DEG,
        )


# --------------------------------------------------------------------------------------------------
# End to end.


def test_points_updates_and_deletions_are_published_once_each(
    cpcs: HermesSystem, bright_field: SimulatedField, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    system, stream = cpcs.system, cpcs.stream
    alert_id = _prepare(system, bright_field, tmp_path)

    observation = _upload(system, bright_field)
    point = observation["point"]
    [first] = _settled(system, 1)
    assert first["status"] == "delivered" and first["action"] == "calibrated" and first["attempts"] == 1
    [sent] = stream.written
    # the topic, through hop's URL, in write mode with a time limit
    assert stream.opened[0][0] == "kafka://kafka.scimma.org/hermes.test" and stream.opened[0][1] == "w"
    assert stream.opened[0][2]["produce_timeout"].total_seconds() == 30.0
    # the exact message: the stored body, byte-equal as JSON to what the export row makes
    document = sent.document
    assert document == first["body"] == _expected_message(system, point["id"], "calibrated")
    assert hermes_violations(document) == []
    assert document["topic"] == TOPIC and document["submitter"] == "CPCS test server"
    assert document["title"] == "CPCS photometry of Gaia16aye"
    assert document["data"]["targets"] == [{"name": "Gaia16aye", "ra": FIELD_RA_DEG, "dec": FIELD_DEC_DEG}]
    [row] = document["data"]["photometry"]
    assert row["target_name"] == "Gaia16aye" and row["date_obs"] == "2016-12-15T12:00:00.000Z"
    assert row["brightness"] == round(point["mag"], 4)
    assert row["brightness_error"] == round(point["mag_err_total"], 4)
    band = export_band(point["survey"], point["band"])
    assert row["bandpass"] == band.sncosmo and band.magsys is not None
    assert row["brightness_unit"] == {"ab": "AB mag", "vega": "Vega mag"}[band.magsys]
    assert row["telescope"] == "Ostrowik 0.6m" and row["observer"] == "K. Rybicki"
    assert (
        row["comments"]
        == f"CPCS point {point['id']}, calibration {first['calibration_id']}: http://cpcs.test/api/v1/observations/{observation['id']}"
    )
    # hop-client's headers and ours
    assert sent.header("cpcs-delivery-id") == str(first["id"]).encode()
    assert sent.header("cpcs-point-id") == str(point["id"]).encode()
    assert sent.header("cpcs-event") == b"point.calibrated"
    assert sent.header("_format") == b"json" and sent.header("_sender") == HOP_USER.encode()
    message_id = str(uuid.UUID(bytes=sent.header("_id")))
    assert first["remote_url"] == f"kafka://kafka.scimma.org/hermes.test#{message_id}"

    # The same announcement again (a redelivery): nothing new is planned or published.
    routing_key, raw = encode(
        PointCalibratedV1(
            observation_id=observation["id"],
            calibration_id=observation["calibration"]["id"],
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
    )
    outbound_of(system).dispatcher.handle(Envelope("again", routing_key, raw, {}, 2))
    time.sleep(0.3)
    assert _delivery_count(system) == 1 and len(stream.written) == 1

    # A recalibration is a light-curve update: one message with the new values.
    accepted = system.client.post(
        f"/api/v1/observations/{observation['id']}/recalibrate",
        json={"force_filter": "PS1/i"},
        headers=_auth(system.observer_token),
    )
    assert accepted.status_code == 202, accepted.text
    update = _settled(system, 2)[0]
    assert update["action"] == "updated" and update["status"] == "delivered"
    updated = stream.written[-1].document
    assert updated == _expected_message(system, point["id"], "updated") and hermes_violations(updated) == []
    assert updated["title"] == "CPCS photometry of Gaia16aye (new calibration)"
    assert updated["data"]["photometry"][0]["bandpass"] == "ps1::i"
    assert stream.written[-1].header("cpcs-event") == b"point.updated"

    # The deletion: a withdrawal naming the point, once.
    deleted = system.client.delete(f"/api/v1/points/{point['id']}", headers=_auth(system.observer_token))
    assert deleted.status_code == 200, deleted.text
    farewell = _settled(system, 3)[0]
    assert farewell["action"] == "deleted" and farewell["status"] == "delivered"
    gone = stream.written[-1].document
    assert hermes_violations(gone) == [] and "photometry" not in gone["data"]
    assert gone["title"] == "CPCS photometry of Gaia16aye withdrawn"
    assert f"withdrew CPCS point {point['id']}" in gone["message_text"]
    assert stream.written[-1].header("cpcs-event") == b"point.deleted"
    assert len(stream.written) == 3 and len(stream.opened) == 3

    # Who sees what: the admin and the observer all three; another observer none.
    assert [d["id"] for d in _hermes_deliveries(system, system.observer_token)] == [
        d["id"] for d in _settled(system, 3)
    ]
    assert _hermes_deliveries(system, system.other_token) == []
    shown = system.client.get("/api/v1/hermes", headers=_auth(system.other_token))
    assert shown.status_code == 200
    assert shown.json() == {
        "enabled": True,
        "stream": "kafka://kafka.scimma.org/hermes.test",
        "username": HOP_USER,
        "submitter": "CPCS test server",
        "alert_filter": None,
    }
    bad = system.client.get("/api/v1/hermes/deliveries?status=lost", headers=_auth(system.admin_token))
    assert bad.status_code == 422 and bad.json()["error"] == "invalid_status"
    assert system.client.get("/api/v1/hermes/deliveries").status_code == 401
    # the password is never shown nor logged
    assert HOP_PASSWORD not in shown.text and HOP_PASSWORD not in caplog.text
    assert HOP_PASSWORD not in system.client.get("/openapi.json").text


def test_failures_are_recorded_retried_and_refusals_end_at_once(
    tmp_path: Path, bright_field: SimulatedField
) -> None:
    stream = FakeHopStream(
        outcomes=[
            KafkaError(KafkaError._TRANSPORT, "broker transport failure", False, True, False),
            ConnectionError("no route to kafka.scimma.org"),
        ]
    )
    system = start_hermes_system(_hermes_settings(tmp_path / "data"), stream)
    try:
        _prepare(system, bright_field, tmp_path)
        observation = _upload(system, bright_field)
        [delivery] = _settled(system, 1)
        assert delivery["status"] == "delivered" and delivery["attempts"] == 3
        log = delivery["attempt_log"]
        assert [a["http_status"] for a in log] == [None, None, None]
        assert log[0]["error"] == "Kafka _TRANSPORT: broker transport failure"
        assert log[1]["error"] == "ConnectionError: no route to kafka.scimma.org"
        assert log[2]["error"] is None
        assert len(stream.refused) == 1 and len(stream.written) == 1
        assert stream.refused[0].document == stream.written[0].document  # the same message, again

        # A refusal that retrying cannot cure (no right to write the topic) fails at once.
        stream.outcomes.append(
            KafkaError(
                KafkaError.TOPIC_AUTHORIZATION_FAILED, "not authorized: hermes.test", False, False, False
            )
        )
        accepted = system.client.post(
            f"/api/v1/observations/{observation['id']}/recalibrate",
            json={"force_filter": "PS1/i"},
            headers=_auth(system.observer_token),
        )
        assert accepted.status_code == 202, accepted.text
        refused = _settled(system, 2)[0]
        assert refused["status"] == "failed" and refused["attempts"] == 1
        assert refused["last_error"] == "Kafka TOPIC_AUTHORIZATION_FAILED: not authorized: hermes.test"
    finally:
        outbound_of(system).stop()
        system.client.close()
        system.assembly.stop()


def test_observers_who_keep_their_points_from_hermes_are_not_published(
    cpcs: HermesSystem, bright_field: SimulatedField, tmp_path: Path
) -> None:
    system = cpcs.system
    _prepare(system, bright_field, tmp_path)
    me = _auth(system.observer_token)
    changed = system.client.patch("/api/v1/me", json={"sharing": {"hermes": False}}, headers=me)
    assert changed.status_code == 200, changed.text
    assert changed.json()["sharing"] == {"skyportal": True, "webhooks": True, "tns": True, "hermes": False}
    _upload(system, bright_field)
    time.sleep(0.5)
    assert _hermes_deliveries(system, system.admin_token) == [] and cpcs.stream.opened == []


def test_hermes_is_off_unless_configured(tmp_path: Path, bright_field: SimulatedField) -> None:
    settings = Settings(
        data_dir=tmp_path / "data", retry_base_s=0.05, outbox_poll_s=0.05, legacy_wait_s=30, **FAST_OUTBOUND
    )
    assert settings.hermes_enabled is False
    system = start_system(settings)
    assert outbound_of(system).worker.hermes is None
    try:
        _prepare(system, bright_field, tmp_path)
        _upload(system, bright_field)
        time.sleep(0.3)
        assert _delivery_count(system) == 0
        assert (
            system.client.get("/api/v1/hermes", headers=_auth(system.observer_token)).json()["enabled"]
            is False
        )
    finally:
        outbound_of(system).stop()
        system.client.close()
        system.assembly.stop()


# --------------------------------------------------------------------------------------------------
# The message, pure.


def _row(**changes: Any) -> ExportRow:
    values: dict[str, Any] = dict(
        point_id=5, alert_id=1, alert_name="ivo://AT2024abc", observation_id=3, calibration_id=9,
        observer="A. Observer", observatory="pt5m La Palma", mjd=60400.25, filter_declared="V",
        survey="APASS", band="V", sncosmo_filter="bessellv", magsys="vega", filter_note="V as APASS V",
        mag=17.234567, magerr=0.02, caliberr=0.015, mag_err_total=0.025, is_upper_limit=False,
        limit_mag=19.5, flux_ujy=None, flux_err_ujy=None,
        calibration_url="http://cpcs.test/api/v1/observations/3/calibrations",
        created_at="2024-04-01T06:00:00+00:00",
    )  # fmt: skip
    values.update(changes)
    return ExportRow(**values)


def test_detections_and_limits_follow_hermes_rules() -> None:
    detection = message(
        _row(), action="calibrated", topic=TOPIC, submitter="CPCS", ra_deg=10.5, dec_deg=-30.25
    )
    assert hermes_violations(detection) == []
    [row] = detection["data"]["photometry"]
    assert row == {
        "target_name": "AT2024abc",
        "date_obs": "2024-03-31T06:00:00.000Z",
        "telescope": "pt5m La Palma",
        "bandpass": "bessellv",
        "brightness": 17.2346,
        "brightness_error": 0.025,
        "brightness_unit": "Vega mag",
        "limiting_brightness": 19.5,
        "limiting_brightness_unit": "Vega mag",
        "observer": "A. Observer",
        "catalog": "APASS",
        "comments": "CPCS point 5, calibration 9: http://cpcs.test/api/v1/observations/3/calibrations",
    }
    limit = photometry_row(
        _row(is_upper_limit=True, mag=19.1, limit_mag=19.1, magsys="ab", sncosmo_filter=None)
    )
    assert "brightness" not in limit and "brightness_error" not in limit
    assert limit["limiting_brightness"] == 19.1 and limit["limiting_brightness_unit"] == "AB mag"
    assert limit["bandpass"] == "APASS V"  # a band without an sncosmo name keeps its survey's name
    assert date_obs(51544.5) == "2000-01-01T12:00:00.000Z"
    with pytest.raises(NotSendable, match="no MJD"):
        photometry_row(_row(mjd=None))
    with pytest.raises(NotSendable, match="magnitude system"):
        photometry_row(_row(magsys=None))
    # the checker itself refuses what Hermes refuses
    assert "neither brightness nor limiting_brightness" in hermes_violations(
        {
            **detection,
            "data": {
                **detection["data"],
                "photometry": [{**row, "brightness": None, "limiting_brightness": None}],
            },
        }
    )
    assert "photometry target_name names no target" in hermes_violations(
        {**detection, "data": {**detection["data"], "targets": [{"name": "other", "ra": 1.0, "dec": 2.0}]}}
    )


def test_broker_urls_and_credentials_are_checked() -> None:
    with pytest.raises(ValueError, match="not a broker URL"):
        Settings(hermes_broker_url="https://kafka.scimma.org/")
    with pytest.raises(ValueError, match="no topic"):
        Settings(hermes_broker_url="kafka://kafka.scimma.org/hermes.test")
    with pytest.raises(ValueError, match="not a Kafka topic name"):
        Settings(hermes_topic="hermes test/../x")
    assert Settings(hermes_topic=" ").hermes_topic is None
    assert Settings(hermes_topic=TOPIC, hermes_username=HOP_USER).hermes_enabled is False  # no password
    with pytest.raises(ValueError, match="CPCS_HERMES_TOPIC"):
        hermes_module.HermesPublisher(Settings())
    configured = Settings(hermes_topic=TOPIC, hermes_username=HOP_USER, hermes_password=HOP_PASSWORD)
    assert configured.hermes_enabled and HOP_PASSWORD not in repr(configured)
    publisher = hermes_module.HermesPublisher(configured)
    assert publisher.topic == TOPIC and publisher.auth.username == HOP_USER
