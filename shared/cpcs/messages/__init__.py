"""Versioned wire contracts. Pydantic only: this package imports nothing else from CPCS.

A message names its routing key and version. Within a version a change may only add
optional fields; consumers ignore fields they do not know. JSON-schema snapshots of every
message are committed under ``tests/contracts/schemas`` and a test fails on drift.
"""

from cpcs.messages.contracts import (
    MESSAGE_TYPES,
    CalibrationParamsV1,
    CatalogueReceivedV1,
    FieldRequestedV1,
    ImageReceivedV1,
    Message,
    ObservationFailedV1,
    PointCalibratedV1,
    PointDeletedV1,
    SourcesMeasuredV1,
    decode,
    encode,
)

__all__ = [
    "MESSAGE_TYPES",
    "CalibrationParamsV1",
    "CatalogueReceivedV1",
    "FieldRequestedV1",
    "ImageReceivedV1",
    "Message",
    "ObservationFailedV1",
    "PointCalibratedV1",
    "PointDeletedV1",
    "SourcesMeasuredV1",
    "decode",
    "encode",
]
