"""Observations: an upload for an alert, its calibration requests and its status.

Registering an upload is :mod:`cpcs.domain.uploads`; correcting its metadata :mod:`cpcs.domain.corrections`.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from cpcs import metrics
from cpcs.db.models import (
    Calibration,
    CalibrationRequest,
    ImageReduction,
    Observation,
    ObservationRevision,
    Point,
    utcnow,
)
from cpcs.db.outbox import add_to_outbox
from cpcs.domain.points import calibration_view, point_view
from cpcs.errors import CpcsError, NotFoundError
from cpcs.messages import ObservationFailedV1
from cpcs.schemas import CalibrationOut, ObservationOut


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
    for model in (Calibration, CalibrationRequest, ObservationRevision):
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
        metrics.observation_finished("failed", error.code)
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
        metrics.observation_finished("error", code)


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


def current_calibration(
    session: Session, observation: Observation, point: Point | None = None
) -> Calibration | None:
    """The version its point shows; without a point, the newest that is not a dry-run recalibration.

    ``point`` is the observation's point when the caller has it already (else it is looked up)."""
    if point is None:
        point = session.scalar(select(Point).where(Point.observation_id == observation.id))
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
    calibration = current_calibration(session, observation, point)
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
        filename=observation.filename,
        source_summary=observation.source_summary,
        created_at=observation.created_at,
        revision=session.scalar(
            select(func.max(ObservationRevision.revision)).where(
                ObservationRevision.observation_id == observation.id
            )
        )
        or 1,
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
    current = current_calibration(session, observation, point)
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
