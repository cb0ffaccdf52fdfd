"""Points of light curves: listing, deleting (hiding), and views of calibrations."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from cpcs.db.models import Calibration, Observation, Point, User, utcnow
from cpcs.db.outbox import add_to_outbox
from cpcs.domain.consent import may_share
from cpcs.errors import NotFoundError, PermissionDeniedError
from cpcs.lightcurve.exports import ExportRow, PointDetails, export_rows
from cpcs.messages import PointDeletedV1
from cpcs.schemas import AlternativeOut, CalibrationOut, DifferenceOut, Page, PointOut, TargetOut


def calibration_view(row: Calibration) -> CalibrationOut:
    return CalibrationOut(
        id=row.id,
        observation_id=row.observation_id,
        version=row.version,
        pipeline_version=row.pipeline_version,
        mode=row.mode,
        params=row.params,
        survey=row.survey,
        band=row.band,
        catalogue_release=row.catalogue_release,
        colour_index=row.colour_index,
        zp=row.zp,
        zp_err=row.zp_err,
        colour_term=row.colour_term,
        colour_term_err=row.colour_term_err,
        colour_term_prior=(row.result or {}).get("colour_term_prior"),
        spatial_order=row.spatial_order,
        scatter=row.scatter,
        intrinsic_scatter=row.intrinsic_scatter,
        n_stars=row.n_stars,
        n_matched=row.n_matched,
        outlier_fraction=row.outlier_fraction,
        alternatives=[AlternativeOut.model_validate(a) for a in row.alternatives],
        target=TargetOut.model_validate(row.result),
        difference=_difference(row),
        requested_by=row.requested_by.name if row.requested_by is not None else None,
        created_at=row.created_at,
    )


def point_view(point: Point) -> PointOut:
    observation = point.observation
    return PointOut(
        id=point.id,
        alert_id=point.alert_id,
        alert_name=observation.alert.name,
        observation_id=point.observation_id,
        calibration_id=point.calibration_id,
        observer=observation.user.name,
        observatory=observation.user.observatory.name,
        mjd=point.mjd,
        survey=point.survey,
        band=point.band,
        mag=point.mag,
        magerr=point.magerr,
        caliberr=point.caliberr,
        mag_err_total=point.mag_err_total,
        is_upper_limit=point.is_upper_limit,
        limit_mag=point.limit_mag,
        flux_ujy=point.flux_ujy,
        flux_err_ujy=point.flux_err_ujy,
        difference=_difference(point.calibration),
        created_at=point.created_at,
    )


def _difference(calibration: Calibration) -> DifferenceOut | None:
    record = (calibration.result or {}).get("difference")
    return DifferenceOut.model_validate(record) if record else None


def _visible(query: Select[Any]) -> Select[Any]:
    return query.where(Point.deleted_at.is_(None))


def list_points(
    session: Session,
    *,
    alert_id: int | None = None,
    user_id: int | None = None,
    band: str | None = None,
    mjd_min: float | None = None,
    mjd_max: float | None = None,
    offset: int = 0,
    limit: int = 100,
) -> Page[PointOut]:
    query = _visible(select(Point))
    if alert_id is not None:
        query = query.where(Point.alert_id == alert_id)
    if user_id is not None:
        query = query.where(Point.user_id == user_id)
    if band is not None:
        query = query.where(Point.band == band)
    if mjd_min is not None:
        query = query.where(Point.mjd >= mjd_min)
    if mjd_max is not None:
        query = query.where(Point.mjd <= mjd_max)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Point.mjd, Point.id).offset(offset).limit(limit)).all()
    return Page[PointOut](items=[point_view(p) for p in rows], total=total, offset=offset, limit=limit)


def _light_curve_rows(session: Session, alert_id: int) -> list[Point]:
    return list(
        session.scalars(
            _visible(select(Point)).where(Point.alert_id == alert_id).order_by(Point.mjd, Point.id)
        ).all()
    )


def light_curve_points(session: Session, alert_id: int) -> list[PointOut]:
    return [point_view(p) for p in _light_curve_rows(session, alert_id)]


def point_details(point: Point, calibration: Calibration | None = None) -> PointDetails:
    """What the exports need of ``point`` beyond its view: the observer's filter, the calibration
    (``calibration`` when given, e.g. the version an outbound message names; else the point's own),
    the uploader's id and the alert's position."""
    observation = point.observation
    return PointDetails(
        observation.filter_declared,
        calibration_view(calibration or point.calibration),
        observer_id=observation.user_id,
        alert_ra_deg=observation.alert.ra_deg,
        alert_dec_deg=observation.alert.dec_deg,
    )


def light_curve_for_export(
    session: Session, alert_id: int, *, user_id: int | None = None, destination: str | None = None
) -> tuple[list[PointOut], dict[int, PointDetails]]:
    """An alert's visible points in light-curve order with their export details, read in one query.

    ``user_id`` keeps only that observer's points; ``destination`` only those whose observer lets
    them go there (``cpcs.domain.consent``).
    """
    rows = [
        row
        for row in _light_curve_rows(session, alert_id)
        if (user_id is None or row.observation.user_id == user_id)
        and (destination is None or may_share(row.observation.user, destination))
    ]
    return [point_view(row) for row in rows], {row.id: point_details(row) for row in rows}


def export_row(point: Point, calibration: Calibration, base_url: str = "") -> ExportRow:
    """``point`` as the exports see it, calibrated by ``calibration`` (the outbound deliveries)."""
    [row] = export_rows([point_view(point)], {point.id: point_details(point, calibration)}, base_url=base_url)
    return row


def delete_point(session: Session, user: User, point_id: int) -> PointOut:
    """Hide a point from light curves; its records stay. Observers delete only their own points.

    ``point.deleted`` goes into the outbox in the caller's transaction, so every destination that
    had the point hears of it exactly when the deletion commits (call ``context.committed()``).
    """
    point = session.get(Point, point_id)
    if point is None or point.deleted_at is not None:
        raise NotFoundError(f"No point {point_id}.", code="unknown_point")
    if point.user_id != user.id and user.role != "admin":
        raise PermissionDeniedError(
            "Only the observer who uploaded a point (or an admin) can delete it.", code="not_your_point"
        )
    point.deleted_at = utcnow()
    add_to_outbox(
        session,
        PointDeletedV1(
            point_id=point.id,
            observation_id=point.observation_id,
            alert_id=point.alert_id,
            calibration_id=point.calibration_id,
            deleted_by_user_id=user.id,
        ),
    )
    session.flush()
    return point_view(point)


def observation_of_point(session: Session, point_id: int) -> Observation:
    point = session.get(Point, point_id)
    if point is None:
        raise NotFoundError(f"No point {point_id}.", code="unknown_point")
    return point.observation
