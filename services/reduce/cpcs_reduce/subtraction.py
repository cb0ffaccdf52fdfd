"""The subtraction step of reduce: the alert's template for this instrument and band, if it has one.

The template is an uploaded one (the newest for the instrument and band), else the best earlier
frame of the same alert, instrument and band from our store, recorded as an ``archive`` template
(:func:`cpcs.domain.templates.archive_template`). The difference image
and its noise map are stored as products beside ``sources.fits``; the record (template used,
target measured on the difference, candidates, timings) goes into the reduction's ``subtraction``.
A pair that cannot be subtracted is recorded with its reason; the direct measurement stands.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from sqlalchemy.orm import Session

from cpcs import tracing
from cpcs.catalogs.solar_system import check_candidates, frame_cone
from cpcs.catalogs.survey_templates import SurveySkipped, fetch_survey_template
from cpcs.context import Context
from cpcs.db.models import Alert, ImageReduction, Template, User
from cpcs.domain.templates import (
    add_template,
    archive_template,
    inspect_template,
    survey_templates,
    uploaded_templates,
)
from cpcs.errors import CpcsError, InputError
from cpcs.jsonsafe import json_record
from cpcs.science.bands import standard_band
from cpcs.science.image_reduction import ImageReductionResult
from cpcs.science.imaging.header import ImageHeader
from cpcs.science.imaging.photometry import instrumental_magnitude
from cpcs.science.subtraction.candidates import TransientCandidate
from cpcs.science.subtraction.measure import DifferenceMeasurement, SubtractionImpossible, measure_difference

DIFFERENCE_PRODUCT = "difference.fits"
DIFFERENCE_NOISE_PRODUCT = "difference_noise.fits"
#: Most candidates kept per observation (accepted ones first).
MAX_CANDIDATES = 200

#: Reads a stored image: (sha256) -> (pixels, standardised header).
ImageReader = Callable[[str], tuple[np.ndarray, ImageHeader]]


def survey_template(
    context: Context,
    *,
    alert: Alert,
    user_id: int,
    filter_name: str | None,
    wcs: WCS,
    shape: tuple[int, ...],
) -> tuple[Template | None, str | None]:
    """The third source of templates: the alert's survey template in the band (fetched before), else
    a Pan-STARRS cutout of the frame's field fetched now (online only) and kept as a template with
    its provenance, checked as an uploaded one is. (template, None), or (None, why there is none)."""
    band = standard_band(filter_name)
    if band is None:
        return None, None
    with context.db.transaction() as session:
        kept = survey_templates(session, alert.id, band.name)
        if kept:
            return kept[0], None
    settings = context.settings
    _, _, radius = frame_cone(wcs, shape)
    fetched = fetch_survey_template(
        alert.ra_deg,
        alert.dec_deg,
        band.name,
        fov_deg=min(2.0 * radius, 0.5),
        online=settings.catalog_online,
        timeout_s=settings.catalog_timeout_s,
        url=settings.hips2fits_url,
    )
    if isinstance(fetched, SurveySkipped):
        return None, fetched.note
    staged = context.files.stage(io.BytesIO(fetched.fits_bytes), max_bytes=settings.max_upload_bytes)
    try:
        facts = inspect_template(
            staged.path,
            alert_ra_deg=alert.ra_deg,
            alert_dec_deg=alert.dec_deg,
            filter_name=band.name,
            instrument=None,
            max_pixels=settings.max_image_pixels,
        )
        stored = context.files.keep(staged)
    except InputError as refused:
        context.files.discard(staged)
        return None, f"The survey cutout cannot be a template: {refused.message}"
    with context.db.transaction() as session:
        view = add_template(
            session,
            user=session.get_one(User, user_id),
            alert=session.get_one(Alert, alert.id),
            instrument=None,
            facts=facts,
            sha256=staged.sha256,
            size_bytes=staged.size_bytes,
            stored_path=context.files.relative(stored),
            filename=f"{fetched.provenance['hips'].replace('/', '_')}.fits",
            source="survey",
            provenance=fetched.provenance,
        )
        template = session.get_one(Template, view.id)
    return template, None


def choose_template(
    session: Session,
    *,
    alert_id: int,
    instrument_id: int | None,
    filter_name: str | None,
    observation_id: int,
    mjd: float | None,
) -> Template | None:
    """The template for a frame: the newest uploaded one for its alert, instrument and band, else the
    best earlier frame of our own store (``archive_template``); None when there is neither."""
    band = standard_band(filter_name)
    if band is None:
        return None
    uploaded = uploaded_templates(session, alert_id, instrument_id, band.name)
    if uploaded:
        return uploaded[0]
    return archive_template(
        session,
        alert_id=alert_id,
        instrument_id=instrument_id,
        band=band.name,
        science_observation_id=observation_id,
        science_mjd=mjd,
    )


@dataclass(frozen=True)
class FrameFacts:
    """What the subtraction needs of a reduced frame, from a fresh reduction or a stored one."""

    wcs: WCS
    target_x: float
    target_y: float
    gain_e_per_adu: float | None
    saturation_adu: float | None
    exptime_s: float | None
    mjd: float | None
    measured_plane: str

    @classmethod
    def of_result(cls, result: ImageReductionResult) -> FrameFacts:
        return cls(
            wcs=result.astrometry.wcs,
            target_x=result.target_x,
            target_y=result.target_y,
            gain_e_per_adu=result.noise.gain_e_per_adu,
            saturation_adu=result.saturation_adu,
            exptime_s=result.header.exptime_s,
            mjd=result.header.mjd_mid,
            measured_plane=result.measured_plane,
        )

    @classmethod
    def of_reduction(cls, reduction: ImageReduction) -> FrameFacts:
        """The facts a stored reduction kept (its solved WCS, target position, noise model, header)."""
        header, target = reduction.header or {}, reduction.target or {}
        noise = (reduction.quality or {}).get("noise_model") or {}
        return cls(
            wcs=WCS(fits.Header.fromstring(reduction.wcs_header or "", sep="\n")),
            target_x=float(target["x"]),
            target_y=float(target["y"]),
            gain_e_per_adu=noise.get("gain_e_per_adu"),
            saturation_adu=header.get("saturation_adu"),
            exptime_s=header.get("exptime_s"),
            mjd=header.get("mjd_mid"),
            measured_plane=str((reduction.astrometry or {}).get("measured_plane") or "frame"),
        )


def subtract(
    context: Context,
    observation_id: int,
    template: Template,
    data: np.ndarray,
    frame: FrameFacts,
    read_image: ImageReader,
) -> dict[str, Any]:
    """Run the subtraction and store its products; the record for the reduction's ``subtraction``."""
    started = time.perf_counter()
    record: dict[str, Any] = {
        "template": {
            "id": template.id,
            "source": template.source,
            "observation_id": template.observation_id,
            "fwhm_arcsec": template.fwhm_arcsec,
            "mjd": template.mjd,
        }
        | ({"provenance": template.provenance} if template.provenance else {})
    }
    if frame.measured_plane != "frame":
        return record | {"status": "skipped", "reason": "a Bayer mosaic's green plane is not subtracted"}
    try:
        template_data, template_header = read_image(template.sha256)
    except CpcsError as error:  # the template's file is gone or unreadable: the direct point stands
        return record | {"status": "failed", "code": error.code, "reason": error.message}
    template_wcs = WCS(fits.Header.fromstring(template.wcs_header, sep="\n"))
    steps_started_ns = time.time_ns()
    try:
        measured = measure_difference(
            data,
            frame.wcs,
            template_data,
            template_wcs,
            target_x=frame.target_x,
            target_y=frame.target_y,
            gain_e_per_adu=frame.gain_e_per_adu,
            saturation_adu=frame.saturation_adu,
            template_gain_e_per_adu=template_header.gain_e_per_adu or frame.gain_e_per_adu,
            template_saturation_adu=template_header.saturation_adu,
            exptime_s=frame.exptime_s,
        )
    except SubtractionImpossible as error:
        return record | {"status": "failed", "code": error.code, "reason": str(error)}
    tracing.record_stages("subtraction", measured.timings_ms, steps_started_ns)
    products = _store_products(context, observation_id, measured, frame.wcs)
    timings = dict(measured.timings_ms)
    candidates = [
        _candidate(c, frame.wcs, frame.gain_e_per_adu, frame.exptime_s)
        for c in sorted(measured.candidates, key=lambda c: (not c.accepted, -c.snr))[:MAX_CANDIDATES]
    ]
    checked = time.perf_counter()
    settings = context.settings
    solar_system = check_candidates(
        candidates,
        frame_cone(frame.wcs, data.shape),
        frame.mjd,
        online=settings.catalog_online,
        timeout_s=settings.solar_system_timeout_s,
        url=settings.skybot_url,
    )
    timings["solar_system"] = round(1e3 * (time.perf_counter() - checked), 1)
    timings["total"] = round(1e3 * (time.perf_counter() - started), 1)
    return record | {
        "status": "subtracted",
        "target": json_record(asdict(measured.target)),
        "coverage": round(measured.coverage, 4),
        "science_fwhm_px": round(measured.science_fwhm_px, 3),
        "template_fwhm_px": round(measured.template_fwhm_px, 3),
        "convolved": measured.subtraction.convolved,
        "flux_scale": measured.subtraction.flux_scale,
        "products": products,
        "candidates": candidates,
        "solar_system": solar_system,
        "timings_ms": timings,
    }


def _store_products(
    context: Context, observation_id: int, measured: DifferenceMeasurement, wcs: WCS
) -> dict[str, str]:
    header = wcs.to_header(relax=True)
    paths = {}
    for name, image in (
        (DIFFERENCE_PRODUCT, measured.subtraction.difference),
        (DIFFERENCE_NOISE_PRODUCT, measured.subtraction.noise),
    ):
        path = context.files.product_path(observation_id, name)
        fits.PrimaryHDU(np.asarray(image, dtype=np.float32), header).writeto(path, overwrite=True)
        paths[name] = str(path.relative_to(context.settings.data_dir))
    return paths


def _candidate(
    candidate: TransientCandidate, wcs: WCS, gain: float | None, exptime_s: float | None
) -> dict[str, Any]:
    """A candidate with its sky position and instrumental magnitude (units of the target's)."""
    record = json_record(asdict(candidate))
    mag, magerr = instrumental_magnitude(
        candidate.flux, candidate.flux_err, gain_e_per_adu=gain, exptime_s=exptime_s
    )
    record["mag_inst"] = round(float(mag), 4) if np.isfinite(mag) else None
    record["magerr_inst"] = round(float(magerr), 4) if np.isfinite(magerr) else None
    sky = wcs.pixel_to_world(candidate.x, candidate.y)
    record["ra_deg"], record["dec_deg"] = round(float(sky.ra.deg), 7), round(float(sky.dec.deg), 7)
    record["reasons"] = list(candidate.reasons)
    record["mode"] = "difference"
    return record
