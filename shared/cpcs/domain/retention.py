"""What the housekeeping trims: finished delivery records and dry-run calibration versions past their age.

Both are bookkeeping, not science: a delivery that ended (delivered or failed for good) keeps its
row and its attempts only for the operator's history; a dry-run version of a recalibration is a
preview nobody's point uses. Pending deliveries, and any calibration a point or a delivery refers
to, are never touched.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cpcs.db.delivery_models import STATUS_DELIVERED, STATUS_FAILED, Delivery, DeliveryAttempt
from cpcs.db.models import Calibration, CalibrationRequest, Point


def trim_finished_deliveries(session: Session, older_than: dt.datetime) -> int:
    """Delete deliveries that ended (delivered or failed) before ``older_than``, with their attempts."""
    finished_at = Delivery.delivered_at.is_not(None) & (Delivery.delivered_at < older_than)
    failed_long_ago = (Delivery.status == STATUS_FAILED) & (Delivery.created_at < older_than)
    ids = session.scalars(
        select(Delivery.id).where(
            Delivery.status.in_((STATUS_DELIVERED, STATUS_FAILED)), finished_at | failed_long_ago
        )
    ).all()
    if not ids:
        return 0
    session.execute(delete(DeliveryAttempt).where(DeliveryAttempt.delivery_id.in_(ids)))
    session.execute(delete(Delivery).where(Delivery.id.in_(ids)))
    return len(ids)


def trim_dry_run_versions(session: Session, older_than: dt.datetime) -> int:
    """Delete dry-run calibration versions made before ``older_than`` (and the requests that made them)."""
    candidates = session.execute(
        select(Calibration.id, Calibration.params).where(Calibration.created_at < older_than)
    ).all()
    dry = [cid for cid, params in candidates if isinstance(params, dict) and params.get("dry_run") is True]
    if not dry:
        return 0
    used = set(session.scalars(select(Point.calibration_id).where(Point.calibration_id.in_(dry))))
    used |= set(session.scalars(select(Delivery.calibration_id).where(Delivery.calibration_id.in_(dry))))
    ids = [cid for cid in dry if cid not in used]
    if not ids:
        return 0
    session.execute(delete(CalibrationRequest).where(CalibrationRequest.calibration_id.in_(ids)))
    session.execute(delete(Calibration).where(Calibration.id.in_(ids)))
    return len(ids)
