"""An observation's metadata (time, exposure, filter, comment) and its revisions.

The observation's columns hold the newest values; every version, the first as uploaded, is kept as
an ``ObservationRevision`` with who made it and why. A change of the time also moves the point's time
at once (the light curve never shows a time its observer has corrected); what the calibration itself
reads (the time, for same-night colours, and the declared filter) is left to a recalibration, which
:mod:`cpcs.domain.corrections` queues.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cpcs.db.models import Observation, ObservationRevision, Point, User
from cpcs.errors import InputError
from cpcs.schemas import ObservationRevisionOut

JD_OFFSET = 2400000.5
#: Fields the calibration reads: the time (same-night colours) and the declared filter (band choice).
CALIBRATION_FIELDS = frozenset({"mjd", "filter_declared"})
REASONS = ("upload", "correction", "re-upload")


@dataclass(frozen=True)
class Metadata:
    """Metadata values to set; ``None`` keeps the stored value, ``""`` clears a text field."""

    mjd: float | None = None
    exptime_s: float | None = None
    filter_declared: str | None = None
    comment: str | None = None

    @staticmethod
    def names() -> tuple[str, ...]:
        return tuple(f.name for f in fields(Metadata))


def check_mjd(mjd: float | None) -> float | None:
    """A usable mid-exposure MJD (or None); a JD, a negative or a non-finite value is an ``InputError``."""
    if mjd is None:
        return None
    if not math.isfinite(mjd):
        raise InputError("MJD must be a finite number.", code="invalid_mjd")
    if mjd > JD_OFFSET:
        raise InputError(
            f"MJD {mjd} looks like a Julian Date: send MJD = JD - 2400000.5 ({mjd - JD_OFFSET:.6f}).",
            code="invalid_mjd",
        )
    if mjd < 0:
        raise InputError("MJD cannot be negative.", code="invalid_mjd")
    return mjd


def check_exptime(exptime_s: float | None) -> float | None:
    if exptime_s is not None and not (math.isfinite(exptime_s) and exptime_s >= 0):
        raise InputError(
            "The exposure time must be a non-negative number of seconds.", code="invalid_exptime"
        )
    return exptime_s


def changed_fields(observation: Observation, metadata: Metadata) -> list[str]:
    """The fields whose given value differs from the stored one."""
    changed = []
    for name in Metadata.names():
        value = getattr(metadata, name)
        if value is None:
            continue
        if _stored(value) != getattr(observation, name):
            changed.append(name)
    return changed


def first_revision(session: Session, observation: Observation) -> None:
    """Revision 1: the metadata as uploaded, by its uploader."""
    session.add(_revision_row(observation, 1, [], "upload", observation.user_id))


def revise(
    session: Session, observation: Observation, metadata: Metadata, *, by: User, reason: str
) -> list[str]:
    """Apply the changed fields as a new revision; returns their names (empty: nothing changed)."""
    assert reason in REASONS, reason
    check_mjd(metadata.mjd)
    check_exptime(metadata.exptime_s)
    changed = changed_fields(observation, metadata)
    if not changed:
        return []
    for name in changed:
        setattr(observation, name, _stored(getattr(metadata, name)))
    newest = session.scalar(
        select(func.max(ObservationRevision.revision)).where(
            ObservationRevision.observation_id == observation.id
        )
    )
    session.add(_revision_row(observation, (newest or 0) + 1, changed, reason, by.id))
    if "mjd" in changed:
        point = session.scalar(select(Point).where(Point.observation_id == observation.id))
        if point is not None:
            point.mjd = observation.mjd
    session.flush()
    return changed


def revision_history(session: Session, observation_id: int) -> list[ObservationRevisionOut]:
    rows = session.scalars(
        select(ObservationRevision)
        .where(ObservationRevision.observation_id == observation_id)
        .order_by(ObservationRevision.revision)
    ).all()
    return [
        ObservationRevisionOut(
            revision=row.revision,
            mjd=row.mjd,
            exptime_s=row.exptime_s,
            filter_declared=row.filter_declared,
            comment=row.comment,
            changed=list(row.changed),
            reason=row.reason,
            made_by=row.made_by.name if row.made_by is not None else None,
            created_at=row.created_at,
        )
        for row in rows
    ]


def _stored(value: float | str | None) -> float | str | None:
    return None if value == "" else value


def _revision_row(
    observation: Observation, revision: int, changed: list[str], reason: str, user_id: int
) -> ObservationRevision:
    return ObservationRevision(
        observation_id=observation.id,
        revision=revision,
        mjd=observation.mjd,
        exptime_s=observation.exptime_s,
        filter_declared=observation.filter_declared,
        comment=observation.comment,
        changed=changed,
        reason=reason,
        made_by_id=user_id,
    )
