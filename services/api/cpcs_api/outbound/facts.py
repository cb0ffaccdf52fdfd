"""What an outbound message says about a point, read once from the database.

The payload builders (:mod:`.webhooks`, :mod:`.skyportal`) are pure functions of a
:class:`PointFacts`, so they are tested without a database and every target of one
calibration is sent the same facts.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from cpcs.db.models import Calibration, Point
from cpcs.domain.points import calibration_view, point_view
from cpcs.lightcurve.exports import ExportRow, PointDetails, export_rows


@dataclass(frozen=True)
class PointFacts:
    """One point as calibrated by one calibration version (non-finite numbers are ``None``)."""

    point_id: int
    observation_id: int
    alert_id: int
    alert_name: str
    alert_ra_deg: float
    alert_dec_deg: float
    observer_id: int
    observer: str
    observatory: str
    mjd: float | None
    filter_declared: str | None
    survey: str
    band: str
    mag: float
    magerr: float  # measurement only
    caliberr: float  # zero point, scatter and colour, in quadrature
    mag_err_total: float
    is_upper_limit: bool
    limit_mag: float | None
    flux_ujy: float | None
    flux_err_ujy: float | None
    calibration_id: int
    calibration_version: int
    calibration_mode: str
    pipeline_version: str
    catalogue_release: str | None
    colour_index: str | None
    zp: float | None
    zp_err: float | None
    colour_term: float | None
    colour_term_err: float | None
    scatter: float | None
    n_stars: int
    outlier_fraction: float | None
    calibrated_at: dt.datetime


def finite(value: float | None) -> float | None:
    """``value`` as a float, or ``None`` when it is missing, NaN or infinite (JSON has no NaN)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def point_facts(point: Point, calibration: Calibration) -> PointFacts:
    """The facts of ``point`` as ``calibration`` made it (the point's current calibration)."""
    observation = point.observation
    alert = observation.alert
    user = observation.user
    return PointFacts(
        point_id=point.id,
        observation_id=point.observation_id,
        alert_id=alert.id,
        alert_name=alert.name,
        alert_ra_deg=alert.ra_deg,
        alert_dec_deg=alert.dec_deg,
        observer_id=user.id,
        observer=user.name,
        observatory=user.observatory.name,
        mjd=finite(point.mjd),
        filter_declared=observation.filter_declared,
        survey=point.survey,
        band=point.band,
        mag=point.mag,
        magerr=point.magerr,
        caliberr=point.caliberr,
        mag_err_total=point.mag_err_total,
        is_upper_limit=point.is_upper_limit,
        limit_mag=finite(point.limit_mag),
        flux_ujy=finite(point.flux_ujy),
        flux_err_ujy=finite(point.flux_err_ujy),
        calibration_id=calibration.id,
        calibration_version=calibration.version,
        calibration_mode=calibration.mode,
        pipeline_version=calibration.pipeline_version,
        catalogue_release=calibration.catalogue_release,
        colour_index=calibration.colour_index,
        zp=finite(calibration.zp),
        zp_err=finite(calibration.zp_err),
        colour_term=finite(calibration.colour_term),
        colour_term_err=finite(calibration.colour_term_err),
        scatter=finite(calibration.scatter),
        n_stars=calibration.n_stars,
        outlier_fraction=finite(calibration.outlier_fraction),
        calibrated_at=calibration.created_at,
    )


def export_row(point: Point, calibration: Calibration, base_url: str = "") -> ExportRow:
    """``point`` as the light-curve exports see it, with ``calibration``'s facts (for SkyPortal)."""
    details = PointDetails(point.observation.filter_declared, calibration_view(calibration))
    [row] = export_rows([point_view(point)], {point.id: details}, base_url=base_url)
    return row


def as_utc(value: dt.datetime) -> dt.datetime:
    """``value`` as an aware UTC time (SQLite gives back naive times, stored in UTC)."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def iso_utc(value: dt.datetime) -> str:
    """``value`` as ISO 8601 in UTC, to the second."""
    return as_utc(value).isoformat(timespec="seconds")


def observation_url(base_url: str, observation_id: int) -> str:
    """Where the v1 API shows the observation (status, newest calibration, point)."""
    return f"{base_url.rstrip('/')}/api/v1/observations/{observation_id}"


def calibrations_url(base_url: str, observation_id: int) -> str:
    """Where the v1 API lists every calibration version of the observation."""
    return f"{observation_url(base_url, observation_id)}/calibrations"
