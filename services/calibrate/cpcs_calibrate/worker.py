"""The calibrate consumer: ``catalogue.received`` in, a calibration record and a point out.

Validate, work, commit (with the outbox row), then the bus acks. Redelivery is harmless: a
request that is already final is acknowledged without work. A user-side fault ends the
observation as ``failed`` with its code; anything else is retried and, on the last attempt,
the observation shows ``error`` before the message goes to the dead-letter queue.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import time
from typing import Any, TypeAlias

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cpcs import __version__, metrics
from cpcs.catalogs.client import ReferenceSource
from cpcs.consumers import Consumer
from cpcs.context import Context
from cpcs.db.models import Calibration, CalibrationRequest, ImageReduction, Observation, Point
from cpcs.db.outbox import add_to_outbox
from cpcs.domain.calibration_inputs import calibration_sources
from cpcs.domain.colour_terms import learned_colour_terms
from cpcs.domain.observations import record_failure, record_internal_error
from cpcs.errors import CpcsError
from cpcs.jsonsafe import json_record
from cpcs.messages import (
    CatalogueReceivedV1,
    PointCalibratedV1,
    SourcesMeasuredV1,
)
from cpcs.messaging.bus import RejectMessage
from cpcs.science.crossmatch import field_cone_radius_deg
from cpcs.science.field_calibration import FieldCalibration, ForcedTarget, calibrate_field
from cpcs.science.photometric_systems import ab_flux_ujy
from cpcs_calibrate.catalogue_mode import catalogue_candidates_record
from cpcs_calibrate.difference import difference_record, difference_target

log = logging.getLogger(__name__)

QUEUE = "calibrate"
FINAL = ("calibrated", "failed")
WorkMessage: TypeAlias = CatalogueReceivedV1 | SourcesMeasuredV1
SAME_NIGHT_DAYS = 0.5


class CalibrateWorker(Consumer[WorkMessage]):
    queue = QUEUE
    kinds = (CatalogueReceivedV1, SourcesMeasuredV1)

    def __init__(self, context: Context, references: ReferenceSource):
        super().__init__(context)
        self.references = references

    def work(self, message: WorkMessage) -> None:
        self.calibrate(message)

    def on_last_failure(self, message: WorkMessage, error: Exception) -> None:
        self._mark_error(message, error)

    def calibrate(self, message: WorkMessage) -> None:
        started = time.perf_counter()
        with self.context.db.transaction() as session:
            request = session.get(CalibrationRequest, message.calibration_request_id)
            if request is None:
                raise RejectMessage(f"no calibration request {message.calibration_request_id}")
            if request.status in FINAL:
                log.info("already %s; acknowledging the repeated message", request.status)
                return
            observation = session.get(Observation, message.observation_id)
            assert observation is not None
            alert = observation.alert
            filename = observation.filename
            mjd = observation.mjd
            declared = observation.filter_declared
            night = self._same_night_mags(session, alert.id, mjd, observation.id)
            priors = _colour_term_priors(session, observation)
            forced = (
                _forced_target(session, observation.id) if isinstance(message, SourcesMeasuredV1) else None
            )
            difference = (
                difference_target(session, observation.id) if isinstance(message, SourcesMeasuredV1) else None
            )
        try:
            sources = calibration_sources(
                self.context,
                sources_path=message.sources_path if isinstance(message, SourcesMeasuredV1) else None,
                upload_sha256=message.upload_sha256 if isinstance(message, CatalogueReceivedV1) else None,
                filename=filename,
                magnitude_column=message.params.magnitude_column,
                aperture_index=message.params.aperture_index,
            )
            radius = field_cone_radius_deg(sources.ra_deg, sources.dec_deg, alert.ra_deg, alert.dec_deg)
            references = self.references.cone(alert.ra_deg, alert.dec_deg, radius)
            calibrate = functools.partial(
                calibrate_field,
                sources.ra_deg,
                sources.dec_deg,
                sources.mag,
                sources.magerr,
                target_ra_deg=alert.ra_deg,
                target_dec_deg=alert.dec_deg,
                references=references,
                match_radius_arcsec=message.params.match_radius_arcsec,
                force_filter=message.params.force_filter,
                declared_filter=declared,
                same_night_mags=night,
                colour_term_priors=priors,
            )
            result = calibrate(forced_target=forced)
            # The same stars, fit and choice: the difference flux on the direct point's zero point.
            on_difference = calibrate(forced_target=difference.forced) if difference is not None else None
        except CpcsError as exc:
            if exc.http_status >= 500:
                raise
            self._fail(message, exc)
            return
        by_catalogue = None
        if isinstance(message, SourcesMeasuredV1) and difference is None:
            by_catalogue = catalogue_candidates_record(
                self.context.settings,
                self.context.settings.data_dir / message.sources_path,
                references,
                result,
                cone=(alert.ra_deg, alert.dec_deg, radius),
                match_radius_arcsec=message.params.match_radius_arcsec,
                mjd=mjd,
            )
        self._store(message, result, difference_record(difference, on_difference), by_catalogue)
        log.info(
            "calibrated with %s/%s",
            result.survey,
            result.band,
            extra={"duration_ms": round(1e3 * (time.perf_counter() - started), 1)},
        )

    def _same_night_mags(
        self, session: Session, alert_id: int, mjd: float | None, observation_id: int
    ) -> dict[str, tuple[float, float]]:
        """Mean magnitude per band of this alert's other detections within half a day."""
        if mjd is None:
            return {}
        rows = session.execute(
            select(Point.band, Point.mag, Point.mag_err_total).where(
                Point.alert_id == alert_id,
                Point.deleted_at.is_(None),
                Point.is_upper_limit.is_(False),
                Point.observation_id != observation_id,
                Point.mjd.between(mjd - SAME_NIGHT_DAYS, mjd + SAME_NIGHT_DAYS),
            )
        ).all()
        by_band: dict[str, list[tuple[float, float]]] = {}
        for band, mag, err in rows:
            by_band.setdefault(band, []).append((mag, err))
        night = {}
        for band, values in by_band.items():
            mags = np.array([v[0] for v in values])
            errs = np.array([max(v[1], 0.01) for v in values])
            weights = 1 / errs**2
            night[band] = (
                float(np.sum(weights * mags) / np.sum(weights)),
                float(np.sqrt(1 / np.sum(weights))),
            )
        return night

    def _store(
        self,
        message: WorkMessage,
        result: FieldCalibration,
        difference: dict[str, Any] | None = None,
        by_catalogue: dict[str, Any] | None = None,
    ) -> None:
        target = result.target
        fit = result.fit
        with self.context.db.transaction() as session:
            request = session.get(CalibrationRequest, message.calibration_request_id, with_for_update=True)
            assert request is not None
            if request.status in FINAL:
                return
            observation = session.get(Observation, message.observation_id)
            assert observation is not None
            version = (
                session.scalar(
                    select(func.max(Calibration.version)).where(Calibration.observation_id == observation.id)
                )
                or 0
            ) + 1
            target_record = dataclasses.asdict(target)
            target_record.update(
                colour_index=result.colour_index,
                ra_deg=result.target_ra_deg,
                dec_deg=result.target_dec_deg,
                inst_mag=result.target_inst_mag,
                colour_term_prior=list(fit.colour_term_prior) if fit.colour_term_prior is not None else None,
            )
            if difference is not None:
                target_record["difference"] = difference
            if by_catalogue is not None:
                target_record["catalogue_candidates"] = by_catalogue
            calibration = Calibration(
                observation_id=observation.id,
                version=version,
                pipeline_version=__version__,
                params=message.params.model_dump(),
                mode=result.mode,
                survey=result.survey,
                band=result.band,
                catalogue_release=result.catalogue_release,
                colour_index=result.colour_index,
                zp=fit.zp,
                zp_err=fit.zp_err,
                colour_term=fit.colour_term,
                colour_term_err=fit.colour_term_err,
                spatial_order=fit.spatial_order,
                scatter=fit.scatter,
                intrinsic_scatter=fit.intrinsic_scatter,
                n_stars=fit.n_used,
                n_matched=result.n_matched,
                outlier_fraction=fit.outlier_fraction,
                alternatives=[dataclasses.asdict(a) for a in result.alternatives],
                result=json_record(target_record),
                requested_by_id=request.requested_by_id,
            )
            session.add(calibration)
            session.flush()
            dry_run = observation.dry_run or message.params.dry_run
            point = None
            if not dry_run:
                point = self._upsert_point(session, observation, calibration, result)
            request.status = "calibrated"
            request.calibration_id = calibration.id
            if not _trial(message, observation):
                observation.status = "calibrated"
                observation.error_code = observation.error_message = None
                metrics.observation_finished(
                    "calibrated", None, observation.created_at if version == 1 else None
                )
            add_to_outbox(
                session,
                PointCalibratedV1(
                    observation_id=observation.id,
                    calibration_id=calibration.id,
                    calibration_version=version,
                    point_id=point.id if point is not None else None,
                    alert_id=observation.alert_id,
                    mjd=observation.mjd,
                    survey=result.survey,
                    band=result.band,
                    mag=target.mag,
                    mag_err=target.err_total,
                    is_upper_limit=target.is_upper_limit,
                    dry_run=dry_run,
                ),
            )
        self.context.committed()

    @staticmethod
    def _upsert_point(
        session: Session, observation: Observation, calibration: Calibration, result: FieldCalibration
    ) -> Point:
        target = result.target
        point = session.scalar(select(Point).where(Point.observation_id == observation.id))
        if point is None:
            point = Point(
                observation_id=observation.id, alert_id=observation.alert_id, user_id=observation.user_id
            )
            session.add(point)
        caliberr = math.hypot(target.err_zero_point, target.err_scatter, target.err_colour)
        flux, flux_err = (
            ab_flux_ujy(target.mag, target.err_total, result.ab_offset, target.is_upper_limit)
            if result.ab_offset is not None
            else (None, None)
        )
        point.calibration_id = calibration.id
        point.mjd = observation.mjd
        point.survey = result.survey
        point.band = result.band
        point.mag = target.mag
        point.magerr = target.err_measurement
        point.caliberr = caliberr
        point.mag_err_total = target.err_total
        point.is_upper_limit = target.is_upper_limit
        point.limit_mag = (
            target.limit_mag if target.limit_mag is not None and math.isfinite(target.limit_mag) else None
        )
        point.flux_ujy = flux
        point.flux_err_ujy = flux_err
        session.flush()
        return point

    def _fail(self, message: WorkMessage, error: CpcsError) -> None:
        log.info("calibration failed: %s", error)
        with self.context.db.transaction() as session:
            request = session.get(CalibrationRequest, message.calibration_request_id)
            observation = session.get(Observation, message.observation_id)
            assert request is not None and observation is not None
            if request.status in FINAL:
                return
            record_failure(
                session, request, observation, error, update_observation=not _trial(message, observation)
            )
        self.context.committed()

    def _mark_error(self, message: WorkMessage, error: Exception) -> None:
        try:
            with self.context.db.transaction() as session:
                record_internal_error(session, message.calibration_request_id, message.observation_id, error)
        except Exception:
            log.exception("could not record the error state")


def _trial(message: WorkMessage, observation: Observation) -> bool:
    """A dry-run recalibration of a stored observation: its result never touches the point or status."""
    return message.params.dry_run and not observation.dry_run


def _forced_target(session: Session, observation_id: int) -> ForcedTarget:
    """The target's forced measurement that reduce stored with the image's reduction."""
    reduction = session.scalar(select(ImageReduction).where(ImageReduction.observation_id == observation_id))
    if reduction is None or not reduction.target:
        raise RejectMessage(f"no reduction with a forced measurement for observation {observation_id}")
    target = reduction.target

    def number(key: str) -> float:
        value = target.get(key)
        return float("nan") if value is None else float(value)

    return ForcedTarget(
        mag_inst=number("mag_inst"),
        magerr_inst=number("magerr_inst"),
        limit_mag_inst=number("limit_mag_inst_5sigma"),
        snr=number("snr"),
    )


def _colour_term_priors(
    session: Session, observation: Observation
) -> dict[tuple[str, str], tuple[float, float]]:
    """Colour terms learned from the instrument's other frames in the same declared filter.

    One (survey, band) at a time (:func:`cpcs.domain.colour_terms.learned_colour_terms`). Computed
    afresh for each calibration, so it follows the frames as they arrive and a recalibration
    re-applies it; the prior used is recorded in the calibration's target record
    (``colour_term_prior``).
    """
    if observation.instrument_id is None:
        return {}
    learned = learned_colour_terms(
        session,
        observation.instrument_id,
        filter_declared=observation.filter_declared,
        exclude_observation_id=observation.id,
    )
    return {(survey, band): term.prior for (_, survey, band), term in learned.items()}
