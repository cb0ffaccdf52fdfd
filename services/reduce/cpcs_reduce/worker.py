"""The reduce consumer: ``image.received`` in, a measured source table and ``sources.measured`` out.

Validate, work, commit the reduction (with the outbox row), then the bus acks. A reduction that
already exists is acknowledged without work. A field that cannot be solved ends the observation
``failed`` with its code, keeping what was measured (the detections) as a partial product.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import asdict, replace
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning
from sqlalchemy import select
from sqlalchemy.orm import Session

from cpcs import __version__, metrics, tracing
from cpcs.catalogs.client import ReferenceSource
from cpcs.catalogs.cone import MAX_CONE_RADIUS_DEG
from cpcs.catalogs.model import ReferenceCatalogue
from cpcs.consumers import Consumer
from cpcs.context import Context
from cpcs.db.models import CalibrationRequest, ImageReduction, Observation, Template
from cpcs.db.outbox import add_to_outbox
from cpcs.domain.instruments import defaults_for_observation
from cpcs.domain.observations import record_failure, record_internal_error
from cpcs.domain.work import RequestWork, work_message
from cpcs.errors import CalibrationFailed, CpcsError
from cpcs.formats.fits_image import inspect_fits_image
from cpcs.jsonsafe import json_record
from cpcs.messages import ImageReceivedV1
from cpcs.messaging.bus import RejectMessage
from cpcs.science.airmass import airmass_at
from cpcs.science.astrometry import MIN_MATCHES
from cpcs.science.image_reduction import (
    ImageReductionResult,
    PartialReduction,
    ReductionFailed,
    reduce_image,
    reference_radius_deg,
)
from cpcs.science.imaging.header import ImageHeader, InstrumentDefaults, standardise_header
from cpcs_reduce.subtraction import FrameFacts, choose_template, subtract, survey_template

log = logging.getLogger(__name__)

QUEUE = "reduce"
#: Catalogues the astrometry may be solved against, best positions first: Gaia (moved to the image's
#: epoch), GaiaSP (Gaia's positions), then surveys good to a fraction of an arcsecond. The first one
#: with enough stars in the cone is used, and named in the reduction record.
ASTROMETRIC_SURVEYS = ("Gaia", "GaiaSP", "PS1", "SDSS", "2MASS", "APASS")


class ReduceWorker(Consumer[ImageReceivedV1]):
    queue = QUEUE
    kinds = (ImageReceivedV1,)

    def __init__(self, context: Context, references: ReferenceSource):
        super().__init__(context)
        self.references = references

    def work(self, message: ImageReceivedV1) -> None:
        self.reduce(message)

    def on_last_failure(self, message: ImageReceivedV1, error: Exception) -> None:
        self._mark_error(message, error)

    def reduce(self, message: ImageReceivedV1) -> None:
        started = time.perf_counter()
        with self.context.db.transaction() as session:
            reduction = session.scalar(
                select(ImageReduction).where(ImageReduction.observation_id == message.observation_id)
            )
            late = self._late_template(session, message, reduction) if reduction is not None else None
        if late is not None:
            self._resubtract(message, *late)
        with self.context.db.transaction() as session:
            reduction = session.scalar(
                select(ImageReduction).where(ImageReduction.observation_id == message.observation_id)
            )
            reused = reduction is not None and self._reuse(session, message, reduction)
        if reduction is not None:
            if reused:
                self.context.committed()
            return
        with self.context.db.transaction() as session:
            observation = session.get(Observation, message.observation_id)
            if observation is None:
                raise RejectMessage(f"no observation {message.observation_id}")
            alert = observation.alert
            site = observation.user.observatory
            form = (observation.mjd, observation.exptime_s, observation.filter_declared)
            defaults = defaults_for_observation(session, observation)
            site_facts = (site.lon_deg, site.lat_deg, site.elevation_m)
        steps_started_ns = time.time_ns()
        try:
            data, header = self._read(message.upload_sha256, form, defaults)
            radius = min(
                reference_radius_deg(header, data.shape, alert.ra_deg, alert.dec_deg), MAX_CONE_RADIUS_DEG
            )
            references = self._astrometric_references(alert.ra_deg, alert.dec_deg, radius)
            steps_started_ns = time.time_ns()
            result = reduce_image(
                data,
                header,
                references,
                target_ra_deg=alert.ra_deg,
                target_dec_deg=alert.dec_deg,
            )
        except ReductionFailed as failure:
            if failure.partial is not None:
                tracing.record_stages("reduce", failure.partial.timings_ms, steps_started_ns)
            self._fail(message, failure.error, failure.partial)
            return
        except CpcsError as exc:
            if exc.http_status >= 500:
                raise
            self._fail(message, exc, None)
            return
        with self.context.db.transaction() as session:
            template = choose_template(
                session,
                alert_id=alert.id,
                instrument_id=observation.instrument_id,
                filter_name=result.header.filter_name,
                observation_id=message.observation_id,
                mjd=result.header.mjd_mid,
            )
        difference: dict[str, Any] = {}
        if template is None:
            template, note = survey_template(
                self.context,
                alert=alert,
                user_id=observation.user_id,
                filter_name=result.header.filter_name,
                wcs=result.astrometry.wcs,
                shape=data.shape,
            )
            if note is not None:
                difference = {"status": "no_template", "note": note}
        if template is not None:
            difference = subtract(
                self.context,
                message.observation_id,
                template,
                data,
                FrameFacts.of_result(result),
                lambda sha256: self._read(sha256, (None, None, None), defaults),
            )
        self._store(message, result, site_facts, alert.ra_deg, alert.dec_deg, difference)
        metrics.reduction_timed(result.timings_ms)
        tracing.record_stages("reduce", result.timings_ms, steps_started_ns)
        log.info(
            "reduced in %.0f ms",
            1e3 * (time.perf_counter() - started),
            extra={"duration_ms": result.timings_ms},
        )

    def _astrometric_references(self, ra_deg: float, dec_deg: float, radius_deg: float) -> ReferenceCatalogue:
        """Gaia's cone when it has stars (the only survey fetched online for this), else the first of
        the other ``ASTROMETRIC_SURVEYS`` with enough stars."""
        first, *others = ASTROMETRIC_SURVEYS
        for surveys in ([first], others):
            try:
                cones = self.references.cone(ra_deg, dec_deg, radius_deg, surveys)
            except CalibrationFailed:
                continue
            for survey in surveys:
                catalogue = cones.get(survey)
                if catalogue is not None and len(catalogue) >= MIN_MATCHES:
                    return catalogue
        raise CalibrationFailed(
            f"No reference stars with good positions ({', '.join(ASTROMETRIC_SURVEYS)}) are cached for "
            "this field, so its astrometry cannot be solved; import them with 'cpcs catalog import "
            "--survey Gaia FILE' (or PS1, APASS...) or enable the online catalogue.",
            code="no_astrometric_references",
        )

    def _late_template(
        self, session: Session, message: ImageReceivedV1, reduction: ImageReduction
    ) -> tuple[Template, InstrumentDefaults | None, FrameFacts] | None:
        """A template for a frame reduced without one (a template uploaded since, and this request
        asks for the frame again): the template, the instrument's defaults and the frame's facts."""
        request = session.get(CalibrationRequest, message.calibration_request_id)
        if request is None or request.status in ("calibrated", "failed") or reduction.status != "reduced":
            return None
        if (reduction.subtraction or {}).get("status") == "subtracted" or not reduction.wcs_header:
            return None
        observation = session.get(Observation, message.observation_id)
        if observation is None:
            return None
        header = reduction.header or {}
        template = choose_template(
            session,
            alert_id=observation.alert_id,
            instrument_id=observation.instrument_id,
            filter_name=header.get("filter") or observation.filter_declared,
            observation_id=observation.id,
            mjd=header.get("mjd_mid"),
        )
        if template is None:
            return None
        return template, defaults_for_observation(session, observation), FrameFacts.of_reduction(reduction)

    def _resubtract(
        self,
        message: ImageReceivedV1,
        template: Template,
        defaults: InstrumentDefaults | None,
        frame: FrameFacts,
    ) -> None:
        """Subtract the template from the stored frame and keep the record in its reduction."""
        data, _ = self._read(message.upload_sha256, (None, None, None), defaults)
        record = subtract(
            self.context,
            message.observation_id,
            template,
            data,
            frame,
            lambda sha256: self._read(sha256, (None, None, None), defaults),
        )
        with self.context.db.transaction() as session:
            reduction = session.scalar(
                select(ImageReduction).where(ImageReduction.observation_id == message.observation_id)
            )
            assert reduction is not None
            reduction.subtraction = record
            if "timings_ms" in record:
                reduction.timings_ms = dict(reduction.timings_ms or {}) | {
                    "subtraction": record["timings_ms"]["total"]
                }
        log.info("subtracted template %s after the reduction: %s", template.id, record.get("status"))

    def _reuse(self, session: Session, message: ImageReceivedV1, reduction: ImageReduction) -> bool:
        """The image was reduced before (a repeated message, or the same image with other calibration
        parameters): hand the stored table to calibrate again, or repeat the stored failure."""
        request = session.get(CalibrationRequest, message.calibration_request_id)
        if request is None or request.status in ("calibrated", "failed"):
            log.info("already reduced; acknowledging the repeated message")
            return False
        if reduction.status == "reduced" and reduction.sources_path:
            add_to_outbox(session, _measured(message, reduction.sources_path))
        else:
            request.status = "failed"
            request.error_code, request.error_message = reduction.error_code, reduction.error_message
        return True

    def _read(
        self,
        sha256: str,
        form: tuple[float | None, float | None, str | None],
        defaults: InstrumentDefaults | None,
    ) -> tuple[np.ndarray, ImageHeader]:
        """The image's pixels (float32) and its standardised header; the form's values win."""
        path = self.context.files.path_for(sha256)
        facts = inspect_fits_image(path, max_pixels=self.context.settings.max_image_pixels)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", AstropyWarning)
                with fits.open(path, memmap=False) as hdus:
                    data = np.asarray(hdus[facts.hdu_index].data, dtype=np.float32).squeeze()
        except Exception as exc:
            raise CalibrationFailed(
                f"The image's pixels cannot be read ({type(exc).__name__}); upload the file again.",
                code="unreadable_image",
            ) from None
        header = standardise_header(facts.header, instrument=defaults)
        mjd, exptime_s, filter_name = form
        header = replace(
            header,
            mjd_mid=mjd if mjd is not None else header.mjd_mid,
            exptime_s=exptime_s if exptime_s is not None else header.exptime_s,
            filter_name=filter_name or header.filter_name,
        )
        return data, header

    def _store(
        self,
        message: ImageReceivedV1,
        result: ImageReductionResult,
        site: tuple[float | None, float | None, float | None],
        ra_deg: float,
        dec_deg: float,
        subtraction: dict[str, Any],
    ) -> None:
        sources_path = self.context.files.product_path(message.observation_id, "sources.fits")
        result.sources.write(sources_path, format="fits", overwrite=True)
        relative = str(sources_path.relative_to(self.context.settings.data_dir))
        quality = json_record(asdict(result.quality))
        lon, lat, elevation = site
        if lon is not None and lat is not None and result.header.mjd_mid is not None:
            seen = airmass_at(
                ra_deg, dec_deg, result.header.mjd_mid, lon_deg=lon, lat_deg=lat, elevation_m=elevation or 0.0
            )
            quality["airmass"] = seen.value
            quality["altitude_deg"] = round(seen.altitude_deg, 3)
            if seen.note is not None:
                quality["airmass_note"] = seen.note
        quality["astrometric_rms_arcsec"] = result.astrometry.rms_arcsec
        quality["noise_model"] = json_record(asdict(result.noise))
        with self.context.db.transaction() as session:
            session.add(
                ImageReduction(
                    observation_id=message.observation_id,
                    status="reduced",
                    header=_header_summary(result.header),
                    wcs_header=result.astrometry.wcs.to_header(relax=True).tostring(sep="\n"),
                    astrometry=_astrometry_summary(result),
                    quality=quality,
                    target=json_record(asdict(result.forced)) | {"x": result.target_x, "y": result.target_y},
                    sources_path=relative,
                    timings_ms=result.timings_ms
                    | (
                        {"subtraction": subtraction["timings_ms"]["total"]}
                        if "timings_ms" in subtraction
                        else {}
                    ),
                    subtraction=subtraction,
                    pipeline_version=__version__,
                )
            )
            add_to_outbox(session, _measured(message, relative))
        self.context.committed()

    def _fail(self, message: ImageReceivedV1, error: CpcsError, partial: PartialReduction | None) -> None:
        log.info("reduction failed: %s", error)
        sources_path = None
        if partial is not None and partial.detections is not None:
            path = self.context.files.product_path(message.observation_id, "detections.fits")
            partial.detections.write(path, format="fits", overwrite=True)
            sources_path = str(path.relative_to(self.context.settings.data_dir))
        quality: dict[str, Any] = {}
        if partial is not None and partial.quality is not None:
            quality = json_record(asdict(partial.quality))
        if partial is not None and partial.noise is not None:
            quality["noise_model"] = json_record(asdict(partial.noise))
        with self.context.db.transaction() as session:
            request = session.get(CalibrationRequest, message.calibration_request_id)
            observation = session.get(Observation, message.observation_id)
            assert request is not None and observation is not None
            session.add(
                ImageReduction(
                    observation_id=observation.id,
                    status="failed",
                    error_code=error.code,
                    error_message=error.message,
                    header={} if partial is None else _header_summary(partial.header),
                    quality=quality,
                    sources_path=sources_path,
                    timings_ms={} if partial is None else partial.timings_ms,
                    pipeline_version=__version__,
                )
            )
            record_failure(session, request, observation, error)
        self.context.committed()

    def _mark_error(self, message: ImageReceivedV1, error: Exception) -> None:
        try:
            with self.context.db.transaction() as session:
                record_internal_error(session, message.calibration_request_id, message.observation_id, error)
        except Exception:
            log.exception("could not record the error state")


def _header_summary(header: ImageHeader) -> dict[str, Any]:
    return json_record(
        {
            "mjd_mid": header.mjd_mid,
            "exptime_s": header.exptime_s,
            "filter": header.filter_name,
            "gain_e_per_adu": header.gain_e_per_adu,
            "saturation_adu": header.saturation_adu,
            "pixel_unit": header.pixel_unit,
            "pointing_ra_deg": header.ra_deg,
            "pointing_dec_deg": header.dec_deg,
            "pixel_scale_arcsec": header.pixel_scale_arcsec,
            "had_wcs": header.wcs is not None,
            "date_source": header.date_source,
            "object": header.object_name,
            "bayer_pattern": header.bayer_pattern,
            "notes": list(header.notes),
        }
    )


def _astrometry_summary(result: ImageReductionResult) -> dict[str, Any]:
    solution = result.astrometry
    return json_record(
        {
            "method": solution.method,
            "rms_arcsec": solution.rms_arcsec,
            "n_matched": solution.n_matched,
            "sip_order": solution.sip_order,
            "pixel_scale_arcsec": solution.pixel_scale_arcsec,
            "rotation_deg": solution.rotation_deg,
            "flipped": solution.flipped,
            "reference_survey": result.reference_survey,
            "measured_plane": result.measured_plane,
        }
    )


def _measured(message: ImageReceivedV1, sources_path: str) -> RequestWork:
    """The work message of a reduced image: its measured table, to calibrate."""
    return work_message(
        kind="image",
        observation_id=message.observation_id,
        calibration_request_id=message.calibration_request_id,
        alert_id=message.alert_id,
        params=message.params,
        upload_sha256=message.upload_sha256,
        sources_path=sources_path,
    )
