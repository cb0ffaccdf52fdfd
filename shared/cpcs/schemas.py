"""Typed views of stored records, returned by the domain stores and served by the APIs."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

T = TypeVar("T")

Role = Literal["observer", "admin"]

#: Largest id a record can have (32-bit integer keys in PostgreSQL); larger ones are refused as input,
#: never passed on to the database (where they overflow).
MAX_RECORD_ID = 2**31 - 1
#: An id in a path, a query or a body.
RecordId = Annotated[int, Field(ge=1, le=MAX_RECORD_ID)]
#: Where a page starts.
PageOffset = Annotated[int, Field(ge=0, le=MAX_RECORD_ID)]
ObservationStatus = Literal["received", "processing", "calibrated", "failed", "error"]


def as_utc(value: dt.datetime) -> dt.datetime:
    """Times are stored in UTC; a database without time zones (SQLite) gives them back naive."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


#: A time as answers show it: RFC 3339 with its offset, as the OpenAPI ``date-time`` format requires.
UtcDateTime = Annotated[dt.datetime, AfterValidator(as_utc)]


class Schema(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ErrorBody(Schema):
    """Every 4xx/5xx answer: a machine-readable code and a message that says what to fix."""

    error: str = Field(examples=["missing_columns"])
    message: str


#: What FastAPI answers to a JSON body it cannot decode at all (bytes that are not UTF-8): routes with
#: a JSON body document it beside ``cpcs.web.ERROR_RESPONSES``.
UNREADABLE_BODY_RESPONSE: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "The body cannot be read (not UTF-8 JSON)"}
}


class Page(Schema, Generic[T]):
    items: list[T]
    total: int
    offset: int
    limit: int


class ObservatoryOut(Schema):
    id: int
    name: str
    lon_deg: float | None
    lat_deg: float | None
    elevation_m: float | None = None
    n_points: int = 0


class UserOut(Schema):
    id: int
    name: str
    role: Role
    observatory: ObservatoryOut
    aavso_obscode: str | None = Field(None, description="The AAVSO observer code (PATCH /api/v1/me)")
    sharing: dict[str, bool] = Field(
        default_factory=dict,
        description="Where your points may go: skyportal, webhooks, tns (PATCH /api/v1/me)",
    )


class NewUserOut(UserOut):
    token: str = Field(description="Shown once: keep it, it is stored only as a digest.")


class AlertOut(Schema):
    id: int
    name: str = Field(examples=["ivo://Gaia16aye"])
    ra_deg: float
    dec_deg: float
    url: str | None
    created_at: UtcDateTime
    n_points: int = 0


class AlternativeOut(Schema):
    survey: str
    band: str
    rank: int
    score: float | None
    scatter: float | None
    colour_term: float | None
    n_stars: int
    n_matched: int
    reason: str
    err_zero_point: float | None = Field(
        default=None, description="the target's zero-point error with this fit, mag (AUTO ranks by the total)"
    )
    err_scatter: float | None = Field(default=None, description="the fit's intrinsic scatter, mag")
    err_colour: float | None = Field(
        default=None,
        description="colour term (unknown if not fitted) times the target's colour uncertainty, mag",
    )


class TargetOut(Schema):
    mag: float
    err_measurement: float
    err_zero_point: float
    err_scatter: float
    err_colour: float
    err_total: float
    colour_assumed: float
    colour_err_assumed: float
    colour_index: str | None
    is_upper_limit: bool
    limit_mag: float | None
    snr: float | None
    ra_deg: float | None = None
    dec_deg: float | None = None
    inst_mag: float | None = None


class DifferenceOut(Schema):
    """The target measured on the difference image (template subtracted), on the calibration's zero
    point; the point itself is the direct measurement."""

    measurement: Literal["difference"] = "difference"
    template: dict[str, Any] = Field(description="The template used: id, source (upload/archive), ...")
    mag: float | None
    mag_err_total: float | None
    magerr: float | None
    caliberr: float | None
    is_upper_limit: bool
    limit_mag: float | None
    snr: float | None
    inst_mag: float | None
    zp: float | None


class CalibrationOut(Schema):
    id: int
    observation_id: int
    version: int
    pipeline_version: str
    mode: Literal["AUTO", "FORCED"]
    params: dict[str, Any]
    survey: str
    band: str
    catalogue_release: str | None
    colour_index: str | None
    zp: float = Field(description="m_cat = m_inst + zp + colour_term * colour (+ spatial terms)")
    zp_err: float
    colour_term: float
    colour_term_err: float
    colour_term_prior: list[float] | None = Field(
        default=None,
        description="(mean, sigma) of the colour term learned from the instrument's earlier frames that "
        "this calibration used as a prior; null when the frame's own colour term was fitted alone",
    )
    spatial_order: int
    scatter: float
    intrinsic_scatter: float
    n_stars: int
    n_matched: int
    outlier_fraction: float
    alternatives: list[AlternativeOut]
    target: TargetOut
    difference: DifferenceOut | None = Field(
        None, description="The target on the difference image, when the image had a template"
    )
    requested_by: str | None = Field(
        None, description="Who asked for this version: the uploader, or who recalibrated it (an admin)"
    )
    created_at: UtcDateTime
    current: bool = Field(
        False, description="In a history: the version the observation and its point show now"
    )
    dry_run: bool = Field(False, description="A dry run: computed and kept, never on the light curve")


class PointOut(Schema):
    id: int
    alert_id: int
    alert_name: str
    observation_id: int
    calibration_id: int
    observer: str
    observatory: str
    mjd: float | None
    survey: str
    band: str
    mag: float
    magerr: float = Field(description="measurement error")
    caliberr: float = Field(description="calibration error (zero point, scatter, colour term)")
    mag_err_total: float
    is_upper_limit: bool
    limit_mag: float | None
    flux_ujy: float | None
    flux_err_ujy: float | None
    #: This point is the direct measurement; the difference one (template subtracted), if any:
    measurement: Literal["direct"] = "direct"
    difference: DifferenceOut | None = None
    created_at: UtcDateTime


class ObservationOut(Schema):
    id: int
    alert_id: int
    alert_name: str
    observer: str
    observatory: str
    status: ObservationStatus
    error_code: str | None
    error_message: str | None
    dry_run: bool
    mjd: float | None
    exptime_s: float | None
    filter_declared: str | None
    comment: str | None
    upload_sha256: str
    filename: str | None
    source_summary: dict[str, Any]
    created_at: UtcDateTime
    revision: int = Field(1, description="The metadata's revision (1 as uploaded; see /revisions)")
    calibration: CalibrationOut | None = None
    point: PointOut | None = None


class ObservationRevisionOut(Schema):
    """One version of an observation's metadata: 1 as uploaded, then each correction."""

    revision: int
    mjd: float | None
    exptime_s: float | None
    filter_declared: str | None
    comment: str | None
    changed: list[str] = Field(description="The fields this revision changed (none for the upload)")
    reason: Literal["upload", "correction", "re-upload"]
    made_by: str | None = Field(description="Who made it (the observer, or an admin)")
    created_at: UtcDateTime


class UploadAccepted(Schema):
    observation_id: int
    status: ObservationStatus
    status_url: str
    duplicate: bool = Field(
        False,
        description="You uploaded the same bytes for this alert with these parameters before: nothing "
        "new was added, the ids are those of your existing observation",
    )
    calibration_request_id: int = Field(description="The calibration request this upload is followed by")
    point_id: int | None = Field(
        None, description="The observation's light-curve point, when it has one already (a duplicate)"
    )
    corrected: list[str] = Field(
        default_factory=list,
        description="Metadata fields (mjd, exptime_s, filter_declared, comment) of your existing "
        "observation that this upload corrected; a new revision was kept",
    )


class LightCurve(Schema):
    alert: AlertOut
    points: list[PointOut]


class ReductionOut(Schema):
    """What reduce measured on an image: header facts, astrometry, quality, the forced target."""

    observation_id: int
    status: Literal["reduced", "failed"]
    error_code: str | None
    error_message: str | None
    header: dict[str, Any]
    astrometry: dict[str, Any]
    quality: dict[str, Any]
    target: dict[str, Any]
    wcs_header: str | None
    sources_path: str | None
    timings_ms: dict[str, Any]
    #: The subtraction step: template, the target on the difference, products, candidates, timings.
    subtraction: dict[str, Any] = {}
    pipeline_version: str
    created_at: UtcDateTime


class InstrumentOut(Schema):
    id: int
    observatory: str
    name: str
    gain_e_per_adu: float | None
    pixel_scale_arcsec: float | None
    saturation_adu: float | None
    filters: dict[str, str] = Field(description="Header filter names and the bands they stand for")
    default_filter: str | None
