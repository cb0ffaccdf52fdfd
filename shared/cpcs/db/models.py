"""Tables of the one database (SQLite embedded, PostgreSQL distributed).

History is never rewritten: a recalibration adds a ``Calibration`` version and moves the
point's ``calibration_id``; deleting a point sets ``deleted_at``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class Observatory(Base):
    __tablename__ = "observatory"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    lon_deg: Mapped[float | None] = mapped_column(Float)
    lat_deg: Mapped[float | None] = mapped_column(Float)
    elevation_m: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Instrument(Base):
    __tablename__ = "instrument"
    __table_args__ = (UniqueConstraint("observatory_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    observatory_id: Mapped[int] = mapped_column(ForeignKey("observatory.id"))
    name: Mapped[str] = mapped_column(String(200))
    filters: Mapped[dict[str, Any]] = mapped_column(default=dict)  # header filter name -> band
    default_filter: Mapped[str | None] = mapped_column(String(40))
    gain_e_per_adu: Mapped[float | None] = mapped_column(Float)
    pixel_scale_arcsec: Mapped[float | None] = mapped_column(Float)
    saturation_adu: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class User(Base):
    __tablename__ = "user_account"
    __table_args__ = (UniqueConstraint("name", "observatory_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    observatory_id: Mapped[int] = mapped_column(ForeignKey("observatory.id"))
    role: Mapped[str] = mapped_column(String(20), default="observer")
    #: The observer code the AAVSO assigned (the AAVSO export's #OBSCODE); set by the user.
    aavso_obscode: Mapped[str | None] = mapped_column(String(10))
    #: Where the user's points may go (cpcs.domain.consent): SkyPortal, webhooks, TNS reports.
    share_skyportal: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    share_webhooks: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    share_tns: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    share_hermes: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    observatory: Mapped[Observatory] = relationship(lazy="joined")


class Token(Base):
    """A user's secret (the CPCS "hashtag"), stored as its SHA-256 digest only."""

    __tablename__ = "token"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class Alert(Base):
    __tablename__ = "alert"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(300), unique=True)
    ra_deg: Mapped[float] = mapped_column(Float)
    dec_deg: Mapped[float] = mapped_column(Float)
    url: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class Upload(Base):
    """Raw bytes as received, content-addressed by SHA-256."""

    __tablename__ = "upload"

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    size_bytes: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))
    filename: Mapped[str | None] = mapped_column(String(300))
    stored_path: Mapped[str] = mapped_column(String(1000))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Observation(Base):
    __tablename__ = "observation"
    __table_args__ = (Index("ix_observation_alert_upload", "alert_id", "upload_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alert.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    instrument_id: Mapped[int | None] = mapped_column(ForeignKey("instrument.id"))
    upload_id: Mapped[int] = mapped_column(ForeignKey("upload.id"))
    #: The name this uploader gave the file (the bytes are shared, the names are not).
    filename: Mapped[str | None] = mapped_column(String(300))
    mjd: Mapped[float | None] = mapped_column(Float)
    exptime_s: Mapped[float | None] = mapped_column(Float)
    filter_declared: Mapped[str | None] = mapped_column(String(40))
    comment: Mapped[str | None] = mapped_column(Text)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(20), default="received", index=True)
    error_code: Mapped[str | None] = mapped_column(String(80))
    error_message: Mapped[str | None] = mapped_column(Text)
    source_summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    alert: Mapped[Alert] = relationship(lazy="joined")
    user: Mapped[User] = relationship(lazy="joined")
    upload: Mapped[Upload] = relationship(lazy="joined")


class CalibrationRequest(Base):
    """One asked-for calibration of an observation: its parameters and where it stands."""

    __tablename__ = "calibration_request"
    __table_args__ = (UniqueConstraint("observation_id", "params_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    observation_id: Mapped[int] = mapped_column(ForeignKey("observation.id"), index=True)
    params_key: Mapped[str] = mapped_column(String(200))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(20), default="received")
    calibration_id: Mapped[int | None] = mapped_column(ForeignKey("calibration.id"))
    #: Who asked for it: the uploader, or whoever recalibrated (an admin acting on someone's observation).
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    error_code: Mapped[str | None] = mapped_column(String(80))
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    requested_by: Mapped[User | None] = relationship()


class ObservationRevision(Base):
    """One version of an observation's metadata: as uploaded (1), then each correction.

    The observation's own columns hold the newest version; these rows keep them all, with who made
    each one and how (``upload``, ``correction`` through the API, ``re-upload`` of the same file).
    """

    __tablename__ = "observation_revision"
    __table_args__ = (UniqueConstraint("observation_id", "revision"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    observation_id: Mapped[int] = mapped_column(ForeignKey("observation.id"), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    mjd: Mapped[float | None] = mapped_column(Float)
    exptime_s: Mapped[float | None] = mapped_column(Float)
    filter_declared: Mapped[str | None] = mapped_column(String(40))
    comment: Mapped[str | None] = mapped_column(Text)
    changed: Mapped[list[Any]] = mapped_column(default=list)
    reason: Mapped[str] = mapped_column(String(20))
    made_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    made_by: Mapped[User | None] = relationship()


class Calibration(Base):
    """One calibration run of an observation, with its inputs, parameters and result."""

    __tablename__ = "calibration"
    __table_args__ = (UniqueConstraint("observation_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    observation_id: Mapped[int] = mapped_column(ForeignKey("observation.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    pipeline_version: Mapped[str] = mapped_column(String(40))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    mode: Mapped[str] = mapped_column(String(10))
    survey: Mapped[str] = mapped_column(String(40))
    band: Mapped[str] = mapped_column(String(20))
    catalogue_release: Mapped[str | None] = mapped_column(String(300))
    colour_index: Mapped[str | None] = mapped_column(String(20))
    zp: Mapped[float] = mapped_column(Float)
    zp_err: Mapped[float] = mapped_column(Float)
    colour_term: Mapped[float] = mapped_column(Float)
    colour_term_err: Mapped[float] = mapped_column(Float)
    spatial_order: Mapped[int] = mapped_column(Integer, default=0)
    scatter: Mapped[float] = mapped_column(Float)
    intrinsic_scatter: Mapped[float] = mapped_column(Float)
    n_stars: Mapped[int] = mapped_column(Integer)
    n_matched: Mapped[int] = mapped_column(Integer)
    outlier_fraction: Mapped[float] = mapped_column(Float)
    alternatives: Mapped[list[Any]] = mapped_column(default=list)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: Who asked for this version (its request's requester): the uploader, or who recalibrated.
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    requested_by: Mapped[User | None] = relationship(lazy="joined")


class Point(Base):
    """The light-curve point of an observation: the result of its current calibration."""

    __tablename__ = "point"

    id: Mapped[int] = mapped_column(primary_key=True)
    observation_id: Mapped[int] = mapped_column(ForeignKey("observation.id"), unique=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alert.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    calibration_id: Mapped[int] = mapped_column(ForeignKey("calibration.id"))
    mjd: Mapped[float | None] = mapped_column(Float)
    survey: Mapped[str] = mapped_column(String(40))
    band: Mapped[str] = mapped_column(String(20))
    mag: Mapped[float] = mapped_column(Float)
    magerr: Mapped[float] = mapped_column(Float)
    caliberr: Mapped[float] = mapped_column(Float)
    mag_err_total: Mapped[float] = mapped_column(Float)
    is_upper_limit: Mapped[bool] = mapped_column(Boolean, default=False)
    limit_mag: Mapped[float | None] = mapped_column(Float)
    flux_ujy: Mapped[float | None] = mapped_column(Float)
    flux_err_ujy: Mapped[float | None] = mapped_column(Float)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    observation: Mapped[Observation] = relationship(lazy="joined")
    calibration: Mapped[Calibration] = relationship(lazy="joined")


class OutboxMessage(Base):
    """A message committed with the data it announces; the relay publishes it and marks it sent."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[str] = mapped_column(String(64), unique=True)
    routing_key: Mapped[str] = mapped_column(String(100))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    published_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    #: The W3C trace context (traceparent, baggage) of the span that wrote the row; None untraced.
    trace_context: Mapped[dict[str, str] | None] = mapped_column(JSON)


class ImageReduction(Base):
    """What reduce learnt from an uploaded image: header facts, solved WCS, quality, target, products."""

    __tablename__ = "image_reduction"

    id: Mapped[int] = mapped_column(primary_key=True)
    observation_id: Mapped[int] = mapped_column(ForeignKey("observation.id"), unique=True)
    status: Mapped[str] = mapped_column(String(20))  # "reduced" or "failed"
    error_code: Mapped[str | None] = mapped_column(String(80))
    error_message: Mapped[str | None] = mapped_column(Text)
    header: Mapped[dict[str, Any]] = mapped_column(default=dict)
    wcs_header: Mapped[str | None] = mapped_column(Text)
    astrometry: Mapped[dict[str, Any]] = mapped_column(default=dict)
    quality: Mapped[dict[str, Any]] = mapped_column(default=dict)
    target: Mapped[dict[str, Any]] = mapped_column(default=dict)
    sources_path: Mapped[str | None] = mapped_column(String(1000))
    timings_ms: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: The subtraction step (cpcs_reduce.subtraction): template used, the target on the difference,
    #: products, candidates, timings; empty when the alert has no template for the frame.
    subtraction: Mapped[dict[str, Any]] = mapped_column(default=dict)
    pipeline_version: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Template(Base):
    """A reference image of an alert's field in one band, for image subtraction.

    ``source`` is ``upload`` (an observer's file, stored by SHA-256 like uploads), ``archive`` (an
    earlier frame of our own store, ``observation_id`` naming it) or ``survey`` (a survey cutout
    fetched online, ``provenance`` saying from where: service, HiPS, field, time).
    ``depth_inst_mag`` is the 5-sigma point-source limit in instrumental magnitudes (-2.5 log10 ADU),
    comparable between frames of one instrument.
    """

    __tablename__ = "template"

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alert.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    instrument_id: Mapped[int | None] = mapped_column(ForeignKey("instrument.id"))
    filter_declared: Mapped[str] = mapped_column(String(40))
    band: Mapped[str] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(String(20))  # "upload", "archive" or "survey"
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    stored_path: Mapped[str] = mapped_column(String(1000))
    filename: Mapped[str | None] = mapped_column(String(300))
    wcs_header: Mapped[str] = mapped_column(Text)
    footprint: Mapped[list[Any]] = mapped_column(default=list)  # corners [[ra, dec], ...], degrees
    overlap_fraction: Mapped[float] = mapped_column(Float)
    fwhm_px: Mapped[float | None] = mapped_column(Float)
    fwhm_arcsec: Mapped[float | None] = mapped_column(Float)
    depth_inst_mag: Mapped[float | None] = mapped_column(Float)
    mjd: Mapped[float | None] = mapped_column(Float)
    observation_id: Mapped[int | None] = mapped_column(ForeignKey("observation.id"))
    provenance: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    user: Mapped[User] = relationship(lazy="joined")


# Tables of the outbound flow (webhooks, SkyPortal) live beside these; import them so one metadata has all.
from cpcs.db import delivery_models as delivery_models  # noqa: E402
