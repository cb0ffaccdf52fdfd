"""Correcting an observation's metadata: its observer (or an admin) sets a new time, exposure, filter
or comment; the old values stay in the revision history.

A correction of what the calibration reads (the time or the declared filter) also queues a
recalibration with the current parameters, so the point is calibrated again with the corrected
values (a new calibration version, the old one kept). While the first calibration is still running a
correction is refused (``observation_busy``): it would race with it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from cpcs.db.models import Observation, User
from cpcs.domain.observations import get_observation
from cpcs.domain.recalibration import IN_FLIGHT, Queued, RecalibrationOptions, recalibrate_observation
from cpcs.domain.revisions import CALIBRATION_FIELDS, Metadata, changed_fields, revise
from cpcs.errors import ConflictError, PermissionDeniedError


@dataclass(frozen=True)
class Correction:
    observation_id: int
    changed: list[str]
    #: The recalibration queued for the corrected values, if any.
    recalibration: Queued | None
    #: Why none was queued although the calibration reads a changed field (e.g. ``point_deleted``).
    not_recalibrated: str | None = None


def check_may_change(user: User, observation: Observation) -> None:
    """Only the observer who uploaded an observation, or an admin, may change it."""
    if observation.user_id != user.id and user.role != "admin":
        raise PermissionDeniedError(
            "Only the observer who uploaded an observation (or an admin) can change it.",
            code="not_your_observation",
        )


def correct_observation(
    session: Session,
    user: User,
    observation_id: int,
    metadata: Metadata,
    *,
    reason: str = "correction",
    recalibrate: bool = True,
) -> Correction:
    """Apply a correction in the caller's transaction (``recalibrate=False``: a run is queued anyway)."""
    observation = get_observation(session, observation_id)
    check_may_change(user, observation)
    if changed_fields(observation, metadata) and observation.status in IN_FLIGHT:
        raise ConflictError(
            f"Observation {observation_id} is still being calibrated; send the correction once it is "
            f"calibrated or failed.",
            code="observation_busy",
        )
    changed = revise(session, observation, metadata, by=user, reason=reason)
    if not (recalibrate and CALIBRATION_FIELDS & set(changed)):
        return Correction(observation.id, changed, None)
    try:
        queued = recalibrate_observation(session, user, observation.id, RecalibrationOptions())
    except ConflictError as refusal:
        return Correction(observation.id, changed, None, refusal.code)
    return Correction(observation.id, changed, queued)
