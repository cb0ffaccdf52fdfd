"""Recalibration: run the calibration of stored observations again, as new calibration versions.

A recalibration is one more ``CalibrationRequest`` of an observation, announced like an upload's:
a catalogue goes to calibrate as ``catalogue.received`` (the stored bytes are read again); an image
is not measured again, calibrate gets ``sources.measured`` with the table reduce stored. The worker
adds a ``Calibration`` version and moves the observation's point to it, so the light curve shows the
newest real run while every earlier version stays in the history.

Parameters left out are the ones of the observation's current calibration (the one its point shows,
else its newest request), so "recalibrate" alone re-runs a field against a changed reference
catalogue. Each request's ``params_key`` carries a ``recal=<n>`` marker (and ``dry`` for a dry run):
the same parameters can be run again, and a repeated upload of the same bytes, whose key has no
marker, still finds the upload's own request.

A **dry run** is computed and stored like any version, with ``dry_run: true`` in its parameters, but
the point does not move and the observation's status is left alone: the light curve keeps the current
calibration. Running the same parameters without ``dry_run`` makes it real.

Who may: the observer who uploaded an observation, or an admin; whole alerts and observatories are
for admins. Every request records who asked for it (``requested_by``), so an admin's run on someone
else's observation shows as theirs. What is not recalibrated: dry-run uploads (they expire),
observations still in their first calibration, observations whose point was deleted, and images
without a measured source table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cpcs.db.models import (
    Alert,
    Calibration,
    CalibrationRequest,
    ImageReduction,
    Observation,
    Observatory,
    Point,
    Template,
    User,
)
from cpcs.db.outbox import add_to_outbox
from cpcs.domain.observations import get_observation
from cpcs.domain.points import calibration_view
from cpcs.domain.work import work_message
from cpcs.errors import ConflictError, NotFoundError, PermissionDeniedError
from cpcs.messages import CalibrationParamsV1, FieldRequestedV1
from cpcs.schemas import CalibrationOut, ObservationStatus, Schema, UtcDateTime
from cpcs.science.bands import standard_band
from cpcs.science.selection import parse_force_filter

#: Observation statuses of a first calibration still under way.
IN_FLIGHT = ("received", "processing")
FIELD_PREFETCH_RADIUS_DEG = 0.5


@dataclass(frozen=True)
class RecalibrationOptions:
    """What a recalibration asks for; ``None`` keeps the observation's current value.

    ``force_filter``: ``"SURVEY/BAND"`` or ``"any/BAND"`` forces a band, ``"auto"`` asks for the
    automatic choice.
    """

    match_radius_arcsec: float | None = None
    force_filter: str | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class Queued:
    """A recalibration request waiting for calibrate."""

    request_id: int
    observation_id: int
    params: CalibrationParamsV1


@dataclass(frozen=True)
class Skipped:
    observation_id: int
    reason: str


@dataclass(frozen=True)
class BulkResult:
    queued: list[Queued]
    skipped: list[Skipped]


class CalibrationRequestOut(Schema):
    """One calibration request (an upload's or a recalibration) and, once it ran, its calibration."""

    id: int
    observation_id: int
    status: ObservationStatus
    dry_run: bool
    recalibration: bool
    params: dict[str, Any]
    requested_by: str | None = Field(
        description="Who asked for it: the uploader, or who recalibrated (an admin, on someone's observation)"
    )
    error_code: str | None
    error_message: str | None
    calibration: CalibrationOut | None
    current: bool = Field(description="Its calibration is the one the observation's point shows")
    created_at: UtcDateTime
    updated_at: UtcDateTime


def normalise_force_filter(value: str | None) -> str | None:
    """``None`` (keep the current choice), ``"AUTO"`` or ``"SURVEY/BAND"``; raises ``InputError``."""
    if value is None:
        return None
    return parse_force_filter(value, "force_filter") or "AUTO"


def _point(session: Session, observation_id: int) -> Point | None:
    return session.scalar(select(Point).where(Point.observation_id == observation_id))


def current_params(session: Session, observation: Observation) -> CalibrationParamsV1:
    """The parameters of the calibration the observation shows (its point's, else its newest request's)."""
    point = _point(session, observation.id)
    if point is not None:  # the calibration it shows, even when the point is hidden
        return CalibrationParamsV1.model_validate(point.calibration.params)
    requests = session.scalars(
        select(CalibrationRequest)
        .where(CalibrationRequest.observation_id == observation.id)
        .order_by(CalibrationRequest.id.desc())
    ).all()
    for request in requests:
        params = CalibrationParamsV1.model_validate(request.params)
        if observation.dry_run or not params.dry_run:
            return params
    return CalibrationParamsV1()


def _new_params(base: CalibrationParamsV1, options: RecalibrationOptions) -> CalibrationParamsV1:
    changes: dict[str, Any] = {"dry_run": options.dry_run}
    if options.match_radius_arcsec is not None:
        changes["match_radius_arcsec"] = options.match_radius_arcsec
    forced = normalise_force_filter(options.force_filter)
    if forced is not None:
        changes["force_filter"] = None if forced == "AUTO" else forced
    return CalibrationParamsV1.model_validate(base.model_dump() | changes)


def _why_not(session: Session, observation: Observation) -> tuple[str, str] | None:
    """Why an observation cannot be recalibrated now: (code, message), or None when it can."""
    if observation.dry_run:
        return "dry_run_observation", "A dry-run upload is not kept; upload it again without dry run."
    if observation.status in IN_FLIGHT:
        return (
            "observation_busy",
            "Its first calibration is still running; recalibrate once it is calibrated or failed.",
        )
    point = _point(session, observation.id)
    if point is not None and point.deleted_at is not None:
        return "point_deleted", "Its point was deleted; upload the file again to make a new one."
    if observation.upload.kind == "image" and _sources_path(session, observation.id) is None:
        return (
            "not_reduced",
            "The image has no measured source table (its reduction failed or has not run).",
        )
    return None


def _sources_path(session: Session, observation_id: int) -> str | None:
    reduction = session.scalar(select(ImageReduction).where(ImageReduction.observation_id == observation_id))
    if reduction is None or reduction.status != "reduced" or not reduction.sources_path:
        return None
    return reduction.sources_path


def _queue(
    session: Session,
    observation: Observation,
    options: RecalibrationOptions,
    by: User,
    *,
    through_reduce: bool = False,
) -> Queued:
    """Add the request (recording who asked) and its work message (in the caller's transaction).

    ``through_reduce``: an image goes to reduce again (``image.received``) rather than straight to
    calibrate; reduce keeps its reduction and subtracts a template it lacked, then hands it on."""
    params = _new_params(current_params(session, observation), options)
    runs = session.scalar(
        select(func.count(CalibrationRequest.id)).where(CalibrationRequest.observation_id == observation.id)
    )
    key = f"{params.key()};recal={(runs or 0) + 1}" + (";dry" if params.dry_run else "")
    request = CalibrationRequest(
        observation_id=observation.id, params_key=key, params=params.model_dump(), requested_by_id=by.id
    )
    session.add(request)
    session.flush()
    sources_path = _sources_path(session, observation.id) if observation.upload.kind == "image" else None
    if observation.upload.kind == "image":
        assert sources_path is not None  # checked by _why_not: a recalibration never reduces again
        if through_reduce:
            sources_path = None
    add_to_outbox(
        session,
        work_message(
            kind=observation.upload.kind,
            observation_id=observation.id,
            calibration_request_id=request.id,
            alert_id=observation.alert_id,
            params=params,
            upload_sha256=observation.upload.sha256,
            sources_path=sources_path,
        ),
    )
    return Queued(request.id, observation.id, params)


def resubtract_for_template(session: Session, template: Template, by: User) -> list[int]:
    """Queue the alert's image observations in the template's instrument and band that were reduced
    without a difference image (no template then, or a failed subtraction): each gets a new
    calibration version after reduce subtracts the template. Returns their ids."""
    rows = session.execute(
        select(Observation, ImageReduction)
        .join(ImageReduction, ImageReduction.observation_id == Observation.id)
        .where(
            Observation.alert_id == template.alert_id,
            Observation.instrument_id.is_(None)
            if template.instrument_id is None
            else Observation.instrument_id == template.instrument_id,
            ImageReduction.status == "reduced",
        )
        .order_by(Observation.id)
    ).all()
    queued = []
    for observation, reduction in rows:
        band = standard_band((reduction.header or {}).get("filter") or observation.filter_declared)
        if band is None or band.name != template.band or observation.id == template.observation_id:
            continue
        if (reduction.subtraction or {}).get("status") == "subtracted" or _why_not(session, observation):
            continue
        _queue(session, observation, RecalibrationOptions(), by, through_reduce=True)
        queued.append(observation.id)
    return queued


def _prefetch(session: Session, alerts: Sequence[Alert]) -> None:
    for alert in {a.id: a for a in alerts}.values():
        add_to_outbox(
            session,
            FieldRequestedV1(
                ra_deg=alert.ra_deg,
                dec_deg=alert.dec_deg,
                radius_deg=FIELD_PREFETCH_RADIUS_DEG,
                reason="recalibration",
            ),
        )


def recalibrate_observation(
    session: Session, user: User, observation_id: int, options: RecalibrationOptions
) -> Queued:
    """Queue one observation's recalibration; its observer or an admin only."""
    observation = get_observation(session, observation_id)
    if observation.user_id != user.id and user.role != "admin":
        raise PermissionDeniedError(
            "Only the observer who uploaded an observation (or an admin) can recalibrate it.",
            code="not_your_observation",
        )
    refusal = _why_not(session, observation)
    if refusal is not None:
        code, message = refusal
        raise ConflictError(f"Observation {observation_id} cannot be recalibrated: {message}", code=code)
    queued = _queue(session, observation, options, user)
    _prefetch(session, [observation.alert])
    return queued


def _recalibrate_many(
    session: Session, observations: Sequence[Observation], options: RecalibrationOptions, by: User
) -> BulkResult:
    normalise_force_filter(options.force_filter)  # a bad value is a 422 before anything is queued
    queued: list[Queued] = []
    skipped: list[Skipped] = []
    for observation in observations:
        refusal = _why_not(session, observation)
        if refusal is None:
            queued.append(_queue(session, observation, options, by))
        else:
            skipped.append(Skipped(observation.id, refusal[0]))
    _prefetch(session, [o.alert for o in observations if o.id in {q.observation_id for q in queued}])
    return BulkResult(queued, skipped)


def _stored_observations(session: Session, *conditions: Any) -> list[Observation]:
    return list(
        session.scalars(
            select(Observation).where(Observation.dry_run.is_(False), *conditions).order_by(Observation.id)
        ).all()
    )


def recalibrate_alert(session: Session, alert_id: int, options: RecalibrationOptions, by: User) -> BulkResult:
    """Queue the recalibration of every stored observation of an alert (an admin's action)."""
    if session.get(Alert, alert_id) is None:
        raise NotFoundError(f"No alert with id {alert_id}.", code="unknown_alert")
    return _recalibrate_many(
        session, _stored_observations(session, Observation.alert_id == alert_id), options, by
    )


def recalibrate_observatory(
    session: Session, observatory_id: int, options: RecalibrationOptions, by: User
) -> BulkResult:
    """Queue the recalibration of every stored observation made at an observatory (an admin's action)."""
    if session.get(Observatory, observatory_id) is None:
        raise NotFoundError(f"No observatory with id {observatory_id}.", code="unknown_observatory")
    users = select(User.id).where(User.observatory_id == observatory_id)
    return _recalibrate_many(
        session, _stored_observations(session, Observation.user_id.in_(users)), options, by
    )


def request_view(session: Session, request_id: int) -> CalibrationRequestOut:
    request = session.get(CalibrationRequest, request_id)
    if request is None:
        raise NotFoundError(f"No calibration request {request_id}.", code="unknown_calibration_request")
    calibration = session.get(Calibration, request.calibration_id) if request.calibration_id else None
    point = _point(session, request.observation_id)
    return CalibrationRequestOut(
        id=request.id,
        observation_id=request.observation_id,
        status=request.status,
        dry_run=bool(request.params.get("dry_run", False)),
        recalibration=";recal=" in request.params_key,
        params=request.params,
        requested_by=request.requested_by.name if request.requested_by is not None else None,
        error_code=request.error_code,
        error_message=request.error_message,
        calibration=calibration_view(calibration) if calibration is not None else None,
        current=point is not None
        and point.deleted_at is None
        and calibration is not None
        and point.calibration_id == calibration.id,
        created_at=request.created_at,
        updated_at=request.updated_at,
    )
