"""Message contracts: committed JSON-schema snapshots, round trips, tolerance of added fields."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from cpcs.messages import (
    MESSAGE_TYPES,
    CalibrationParamsV1,
    CatalogueReceivedV1,
    FieldRequestedV1,
    PointCalibratedV1,
    decode,
    encode,
)
from tests.contracts.snapshot import SNAPSHOT_DIR, current_schemas, render


@pytest.mark.parametrize("name", sorted(current_schemas()))
def test_schema_matches_committed_snapshot(name: str) -> None:
    committed = SNAPSHOT_DIR / name
    assert committed.exists(), f"no snapshot {name}: run 'make schemas' and commit it"
    assert committed.read_text() == render(current_schemas()[name]), (
        f"{name} drifted from its snapshot: a change within a version may only add optional "
        "fields; bump the version for anything else, then run 'make schemas'"
    )


def test_every_snapshot_belongs_to_a_message() -> None:
    assert {p.name for p in SNAPSHOT_DIR.glob("*.json")} == set(current_schemas())


def test_round_trip_of_every_message() -> None:
    params = CalibrationParamsV1(match_radius_arcsec=4, force_filter="APASS/V", dry_run=True)
    samples = [
        CatalogueReceivedV1(
            observation_id=3, calibration_request_id=4, alert_id=5, upload_sha256="ab" * 32, params=params
        ),
        FieldRequestedV1(ra_deg=295.0, dec_deg=30.1, radius_deg=0.5, reason="upload"),
        PointCalibratedV1(
            observation_id=1,
            calibration_id=2,
            calibration_version=1,
            point_id=7,
            alert_id=5,
            mjd=57700.5,
            survey="APASS",
            band="V",
            mag=17.2,
            mag_err=0.03,
            is_upper_limit=False,
        ),
    ]
    for message in samples:
        routing_key, body = encode(message)
        assert routing_key in MESSAGE_TYPES
        assert decode(routing_key, body) == message


def test_unknown_fields_are_ignored_and_missing_ones_rejected() -> None:
    body = {"version": 1, "ra_deg": 10.0, "dec_deg": -5.0, "radius_deg": 0.2, "added_later": "x"}
    message = decode("field.requested", json.dumps(body).encode())
    assert isinstance(message, FieldRequestedV1) and message.ra_deg == 10.0
    with pytest.raises(ValidationError):
        decode("field.requested", json.dumps({"version": 1, "ra_deg": 10.0}).encode())
    with pytest.raises(ValidationError):
        decode("field.requested", json.dumps({**body, "version": 2}).encode())


def test_params_key_separates_what_changes_the_result() -> None:
    base = CalibrationParamsV1()
    assert base.key() == CalibrationParamsV1(dry_run=True).key()
    assert base.key() != CalibrationParamsV1(match_radius_arcsec=4).key()
    assert base.key() != CalibrationParamsV1(force_filter="any/r").key()


def test_every_message_has_a_consumer_or_is_declared_an_event_nobody_consumes() -> None:
    """A new message type must get a consumer queue, or be declared unconsumed on purpose (the relay
    warns about any other message nobody receives)."""
    from cpcs.messaging.memory import topic_matches
    from cpcs.messaging.topology import CPCS_TOPOLOGY

    bound = [key for spec in CPCS_TOPOLOGY.queues for key in spec.binding_keys]
    for routing_key in MESSAGE_TYPES:
        consumed = any(topic_matches(binding, routing_key) for binding in bound)
        declared = CPCS_TOPOLOGY.expects_unroutable(routing_key)
        assert consumed != declared, f"{routing_key}: consumed={consumed}, declared unconsumed={declared}"
