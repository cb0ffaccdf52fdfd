"""The messages services exchange on the ``cpcs`` topic exchange."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field


class Message(BaseModel):
    """Base of every message: ids and small facts, never large payloads."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    routing_key: ClassVar[str]
    version: int


class CalibrationParamsV1(BaseModel):
    """What the uploader asked for; identical parameters + bytes give the same calibration."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    match_radius_arcsec: float = Field(2.0, gt=0, le=60)
    force_filter: str | None = Field(None, description="'SURVEY/BAND', 'any/BAND' or None for AUTO")
    magnitude_column: str | None = None
    aperture_index: int = Field(0, ge=0)
    dry_run: bool = False

    def key(self) -> str:
        """A stable text key of the parameters that change the calibration's result."""
        return (
            f"r={self.match_radius_arcsec:g};f={self.force_filter or 'AUTO'};"
            f"m={self.magnitude_column or ''};a={self.aperture_index}"
        )


class CatalogueReceivedV1(Message):
    """A source catalogue was stored; calibrate it with these parameters."""

    routing_key: ClassVar[str] = "catalogue.received"
    version: Literal[1] = 1
    observation_id: int
    calibration_request_id: int
    alert_id: int
    upload_sha256: str
    params: CalibrationParamsV1


class ImageReceivedV1(Message):
    """A CCD image was stored; reduce it (detection, astrometry, photometry)."""

    routing_key: ClassVar[str] = "image.received"
    version: Literal[1] = 1
    observation_id: int
    calibration_request_id: int
    alert_id: int
    upload_sha256: str
    params: CalibrationParamsV1


class SourcesMeasuredV1(Message):
    """Reduce measured an image's sources; the table lives in the file store, not here."""

    routing_key: ClassVar[str] = "sources.measured"
    version: Literal[1] = 1
    observation_id: int
    calibration_request_id: int
    alert_id: int
    sources_path: str
    params: CalibrationParamsV1


class FieldRequestedV1(Message):
    """Somebody will need reference stars here soon: prefetch them."""

    routing_key: ClassVar[str] = "field.requested"
    version: Literal[1] = 1
    ra_deg: float = Field(ge=0, lt=360)
    dec_deg: float = Field(ge=-90, le=90)
    radius_deg: float = Field(gt=0, le=5)
    reason: str = ""


class PointCalibratedV1(Message):
    """A calibration finished and (unless dry run) the alert's light curve has a new point."""

    routing_key: ClassVar[str] = "point.calibrated"
    version: Literal[1] = 1
    observation_id: int
    calibration_id: int
    calibration_version: int
    point_id: int | None
    alert_id: int
    mjd: float | None
    survey: str
    band: str
    mag: float
    mag_err: float
    is_upper_limit: bool
    dry_run: bool = False


class PointDeletedV1(Message):
    """A point was deleted (hidden from light curves); every destination that had it is told."""

    routing_key: ClassVar[str] = "point.deleted"
    version: Literal[1] = 1
    point_id: int
    observation_id: int
    alert_id: int
    calibration_id: int = Field(description="The point's calibration when it was deleted")
    deleted_by_user_id: int


class ObservationFailedV1(Message):
    """An accepted observation could not be calibrated (a user-side fault, with its code)."""

    routing_key: ClassVar[str] = "observation.failed"
    version: Literal[1] = 1
    observation_id: int
    calibration_request_id: int
    code: str
    message: str


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.routing_key: cls
    for cls in (
        CatalogueReceivedV1,
        ImageReceivedV1,
        SourcesMeasuredV1,
        FieldRequestedV1,
        PointCalibratedV1,
        PointDeletedV1,
        ObservationFailedV1,
    )
}


def encode(message: Message) -> tuple[str, bytes]:
    """Routing key and JSON body of a message."""
    return message.routing_key, message.model_dump_json().encode()


def decode(routing_key: str, body: bytes) -> Message:
    """Parse a body by its routing key; raises ``KeyError`` or ``pydantic.ValidationError``."""
    return MESSAGE_TYPES[routing_key].model_validate_json(body)
