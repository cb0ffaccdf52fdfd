"""Observations: an upload for an alert, its calibration requests and its status."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from cpcs.db.models import (
    Alert,
    Calibration,
    CalibrationRequest,
    ImageReduction,
    Observation,
    Point,
    Upload,
    User,
    utcnow,
)
from cpcs.db.outbox import add_to_outbox
from cpcs.domain.points import calibration_view, point_view
from cpcs.errors import CpcsError, NotFoundError
from cpcs.messages import (
    CalibrationParamsV1,
    CatalogueReceivedV1,
    FieldRequestedV1,
    ImageReceivedV1,
    ObservationFailedV1,
)
from cpcs.schemas import CalibrationOut, ObservationOut

FIELD_PREFETCH_RADIUS_DEG = 0.5


@dataclass(frozen=True)
class UploadFacts:
    """What ingest learnt about an accepted upload."""

    sha256: str
    size_bytes: int
    kind: str
    filename: str | None
    stored_path: str
    mjd: float | None
    exptime_s: float | None
    filter_declared: str | None
    comment: str | None
    source_summary: dict[str, object]
    instrument_id: int | None = None


@dataclass(frozen=True)
class Registered:
    observation_id: int
    request_id: int
    duplicate: bool
    status: str


def _upload_row(session: Session, facts: UploadFacts) -> Upload:
    upload = session.scalar(select(Upload).where(Upload.sha256 == facts.sha256))
    if upload is None:
        upload = Upload(
            sha256=facts.sha256,
            size_bytes=facts.size_bytes,
            kind=facts.kind,
            filename=facts.filename,
            stored_path=facts.stored_path,
        )
        session.add(upload)
        session.flush()
    return upload


def _live_observation(session: Session, alert_id: int, upload_id: int) -> Observation | None:
    """The stored (not dry-run, not deleted) observation of these bytes for this alert, if any."""
    deleted = select(Point.observation_id).where(Point.deleted_at.is_not(None))
    return session.scalar(
        select(Observation)
        .where(
            Observation.alert_id == alert_id,
            Observation.upload_id == upload_id,
            Observation.dry_run.is_(False),
            Observation.id.not_in(deleted),
        )
        .order_by(Observation.id.desc())
        .limit(1)
    )


def register_upload(
    session: Session,
    *,
    user: User,
    alert: Alert,
    facts: UploadFacts,
    params: CalibrationParamsV1,
    dry_run_ttl: dt.timedelta,
) -> Registered:
    """Record an accepted upload and queue its work (in the caller's transaction).

    A catalogue goes to calibrate (``catalogue.received``), an image to reduce (``image.received``).

    The same bytes for the same alert with the same parameters return the existing request;
    with other parameters they add a calibration request to the same observation.
    """
    upload = _upload_row(session, facts)
    key = params.key()
    observation = None if params.dry_run else _live_observation(session, alert.id, upload.id)
    if observation is not None:
        request = session.scalar(
            select(CalibrationRequest).where(
                CalibrationRequest.observation_id == observation.id, CalibrationRequest.params_key == key
            )
        )
        if request is not None:
            return Registered(observation.id, request.id, True, observation.status)
    else:
        observation = Observation(
            alert_id=alert.id,
            user_id=user.id,
            upload_id=upload.id,
            instrument_id=facts.instrument_id,
            mjd=facts.mjd,
            exptime_s=facts.exptime_s,
            filter_declared=facts.filter_declared,
            comment=facts.comment,
            dry_run=params.dry_run,
            source_summary=facts.source_summary,
            expires_at=utcnow() + dry_run_ttl if params.dry_run else None,
        )
        session.add(observation)
        session.flush()
    request = CalibrationRequest(observation_id=observation.id, params_key=key, params=params.model_dump())
    session.add(request)
    observation.status = "received"
    session.flush()
    work = ImageReceivedV1 if upload.kind == "image" else CatalogueReceivedV1
    add_to_outbox(
        session,
        work(
            observation_id=observation.id,
            calibration_request_id=request.id,
            alert_id=alert.id,
            upload_sha256=upload.sha256,
            params=params,
        ),
    )
    add_to_outbox(
        session,
        FieldRequestedV1(
            ra_deg=alert.ra_deg, dec_deg=alert.dec_deg, radius_deg=FIELD_PREFETCH_RADIUS_DEG, reason="upload"
        ),
    )
    return Registered(observation.id, request.id, False, observation.status)


def purge_expired_dry_runs(session: Session, now: dt.datetime | None = None) -> int:
    """Delete dry-run observations past their expiry, with their calibrations (dry runs have no point)."""
    now = now or utcnow()
    expired = session.scalars(
        select(Observation.id).where(Observation.dry_run.is_(True), Observation.expires_at < now)
    ).all()
    if not expired:
        return 0
    session.execute(
        update(CalibrationRequest)
        .where(CalibrationRequest.observation_id.in_(expired))
        .values(calibration_id=None)
    )
    for model in (Calibration, CalibrationRequest):
        session.execute(delete(model).where(model.observation_id.in_(expired)))
    session.execute(delete(Observation).where(Observation.id.in_(expired)))
    return len(expired)


def record_failure(
    session: Session,
    request: CalibrationRequest,
    observation: Observation,
    error: CpcsError,
    *,
    update_observation: bool = True,
) -> None:
    """A user-side failure found after acceptance: the request (and the observation) end ``failed``."""
    request.status = "failed"
    request.error_code, request.error_message = error.code, error.message
    if update_observation and observation.status != "calibrated":
        observation.status = "failed"
        observation.error_code, observation.error_message = error.code, error.message
    add_to_outbox(
        session,
        ObservationFailedV1(
            observation_id=observation.id,
            calibration_request_id=request.id,
            code=error.code,
            message=error.message,
        ),
    )


def record_internal_error(session: Session, request_id: int, observation_id: int, error: Exception) -> None:
    """The last delivery attempt failed on our side: show it (``error``) before the message is dead-lettered.

    A dependency that stayed away keeps its own code (e.g. ``catalogue_source_unreachable``).
    """
    request = session.get(CalibrationRequest, request_id)
    observation = session.get(Observation, observation_id)
    if request is None or observation is None or request.status in ("calibrated", "failed"):
        return
    if isinstance(error, CpcsError):
        code, reason = error.code, error.message[:1000]
    else:
        code, reason = "internal_error", f"{type(error).__name__}: {error}"[:1000]
    request.status = "error"
    request.error_code, request.error_message = code, reason
    if observation.status != "calibrated":
        observation.status = "error"
        observation.error_code, observation.error_message = code, reason


def get_observation(session: Session, observation_id: int) -> Observation:
    observation = session.get(Observation, observation_id)
    if observation is None:
        raise NotFoundError(f"No observation {observation_id}.", code="unknown_observation")
    return observation


def get_request(session: Session, request_id: int) -> CalibrationRequest:
    request = session.get(CalibrationRequest, request_id)
    if request is None:
        raise NotFoundError(f"No calibration request {request_id}.")
    return request


def _current_calibration(
    session: Session, observation: Observation, point: Point | None
) -> Calibration | None:
    """The version its point shows; without a point, the newest that is not a dry-run recalibration."""
    versions = session.scalars(
        select(Calibration)
        .where(Calibration.observation_id == observation.id)
        .order_by(Calibration.version.desc())
    ).all()
    current = next((c for c in versions if point is not None and c.id == point.calibration_id), None)
    if current is None:
        current = next(
            (c for c in versions if observation.dry_run or not c.params.get("dry_run", False)), None
        )
    return current


def observation_view(session: Session, observation: Observation) -> ObservationOut:
    """The observation with its current calibration and its point, if any.

    The current calibration is the one its point shows; without a point, the newest one. A dry-run
    recalibration of a stored observation is never current (it is in the history only).
    """
    point = session.scalar(select(Point).where(Point.observation_id == observation.id))
    calibration = _current_calibration(session, observation, point)
    return ObservationOut(
        id=observation.id,
        alert_id=observation.alert_id,
        alert_name=observation.alert.name,
        observer=observation.user.name,
        observatory=observation.user.observatory.name,
        status=observation.status,
        error_code=observation.error_code,
        error_message=observation.error_message,
        dry_run=observation.dry_run,
        mjd=observation.mjd,
        exptime_s=observation.exptime_s,
        filter_declared=observation.filter_declared,
        comment=observation.comment,
        upload_sha256=observation.upload.sha256,
        filename=observation.upload.filename,
        source_summary=observation.source_summary,
        created_at=observation.created_at,
        calibration=calibration_view(calibration) if calibration else None,
        point=point_view(point) if point is not None and point.deleted_at is None else None,
    )


def get_reduction(session: Session, observation_id: int) -> ImageReduction:
    get_observation(session, observation_id)
    reduction = session.scalar(select(ImageReduction).where(ImageReduction.observation_id == observation_id))
    if reduction is None:
        raise NotFoundError(
            f"Observation {observation_id} has no image reduction (yet): catalogues have none, and images "
            "get one once reduce has measured them.",
            code="no_reduction",
        )
    return reduction


def calibration_history(session: Session, observation_id: int) -> list[CalibrationOut]:
    """Every calibration version, oldest first, with the current one and the dry runs marked."""
    observation = get_observation(session, observation_id)
    point = session.scalar(select(Point).where(Point.observation_id == observation_id))
    current = _current_calibration(session, observation, point)
    rows = session.scalars(
        select(Calibration).where(Calibration.observation_id == observation_id).order_by(Calibration.version)
    ).all()
    return [
        calibration_view(row).model_copy(
            update={
                "current": current is not None and row.id == current.id,
                "dry_run": bool(observation.dry_run or row.params.get("dry_run", False)),
            }
        )
        for row in rows
    ]
