"""Registering an accepted upload: a new observation, the uploader's own duplicate, or a correction.

The bytes are stored once, by SHA-256, whoever sends them; observations are per uploader. An
observer who sends bytes they already sent for the same alert meets their own observation again:

* with the same parameters and the same metadata, nothing is added (``duplicate``, the existing ids);
* with the same parameters and other metadata (a corrected MJD, exposure, filter or comment), the
  metadata is corrected (a new revision, see :mod:`cpcs.domain.corrections`) and, when the
  calibration reads what changed, recalibrated;
* with other parameters, one more calibration request of that observation (a new version, the
  point moves to it).

Someone else's observation is never touched: another observer's upload of the same bytes is a new
observation of their own. A dry-run upload is always a new (expiring) observation.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from cpcs import tracing
from cpcs.db.models import Alert, CalibrationRequest, Observation, Point, Upload, User, utcnow
from cpcs.db.outbox import add_to_outbox
from cpcs.domain.corrections import correct_observation
from cpcs.domain.revisions import Metadata, first_revision
from cpcs.domain.work import work_message
from cpcs.messages import CalibrationParamsV1, FieldRequestedV1

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

    def metadata(self) -> Metadata:
        return Metadata(self.mjd, self.exptime_s, self.filter_declared, self.comment)


@dataclass(frozen=True)
class Registered:
    observation_id: int
    #: The request that follows this upload: a new one, the existing one, or a correction's recalibration.
    request_id: int
    duplicate: bool
    status: str
    point_id: int | None = None
    corrected: tuple[str, ...] = ()


def _upload_row(session: Session, facts: UploadFacts) -> Upload:
    # Locked: two uploads of the same bytes at once register one after the other (PostgreSQL).
    upload = session.scalar(select(Upload).where(Upload.sha256 == facts.sha256).with_for_update())
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


def _own_live_observation(session: Session, user: User, alert_id: int, upload_id: int) -> Observation | None:
    """The uploader's stored (not dry-run, not deleted) observation of these bytes for this alert."""
    deleted = select(Point.observation_id).where(Point.deleted_at.is_not(None))
    return session.scalar(
        select(Observation)
        .where(
            Observation.alert_id == alert_id,
            Observation.upload_id == upload_id,
            Observation.user_id == user.id,
            Observation.dry_run.is_(False),
            Observation.id.not_in(deleted),
        )
        .order_by(Observation.id.desc())
        .limit(1)
    )


def _point_id(session: Session, observation_id: int) -> int | None:
    return session.scalar(
        select(Point.id).where(Point.observation_id == observation_id, Point.deleted_at.is_(None))
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
    """
    upload = _upload_row(session, facts)
    key = params.key()
    tracing.annotate(alert_id=alert.id)
    observation = None if params.dry_run else _own_live_observation(session, user, alert.id, upload.id)
    corrected: tuple[str, ...] = ()
    if observation is not None:
        request = session.scalar(
            select(CalibrationRequest).where(
                CalibrationRequest.observation_id == observation.id, CalibrationRequest.params_key == key
            )
        )
        correction = correct_observation(
            session,
            user,
            observation.id,
            facts.metadata(),
            reason="re-upload",
            recalibrate=request is not None,
        )
        corrected = tuple(correction.changed)
        tracing.annotate(observation_id=observation.id)
        if request is not None:
            follow = correction.recalibration.request_id if correction.recalibration else request.id
            return Registered(
                observation.id,
                follow,
                True,
                observation.status,
                _point_id(session, observation.id),
                corrected,
            )
    else:
        observation = Observation(
            alert_id=alert.id,
            user_id=user.id,
            upload_id=upload.id,
            instrument_id=facts.instrument_id,
            filename=facts.filename,
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
        first_revision(session, observation)
    request = CalibrationRequest(
        observation_id=observation.id, params_key=key, params=params.model_dump(), requested_by_id=user.id
    )
    session.add(request)
    observation.status = "received"
    session.flush()
    add_to_outbox(
        session,
        work_message(
            kind=upload.kind,
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
    return Registered(
        observation.id, request.id, False, observation.status, _point_id(session, observation.id), corrected
    )
