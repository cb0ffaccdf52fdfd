"""Templates: reference images of an alert's field, one band each, for image subtraction.

An uploaded template is checked before anything is kept: a FITS image with a usable WCS, the
alert on it, enough of the field around the alert covered, a filter the instrument has, and
stars to measure its seeing on. Its footprint, FWHM and depth are stored with it so that reduce
can choose between several.
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from cpcs.db.models import Alert, ImageReduction, Instrument, Observation, Template, User
from cpcs.errors import InputError, NotFoundError, PermissionDeniedError
from cpcs.formats.fits_image import inspect_fits_image
from cpcs.schemas import Schema
from cpcs.science.bands import standard_band
from cpcs.science.imaging.background import estimate_background, pixel_mask_bits
from cpcs.science.imaging.detection import detect_sources
from cpcs.science.imaging.header import InstrumentDefaults, standardise_header

#: The field around the alert a template should cover: a square of this half-width, or of a quarter
#: of the template's shorter side when that is smaller (a template with the alert near its edge or
#: corner covers too little of the field a science frame of the alert shows around it).
FIELD_HALF_WIDTH_ARCMIN = 3.0
#: The least fraction of that square the template must cover.
MIN_OVERLAP_FRACTION = 0.5
#: Fewest stars with a measured shape for a template's FWHM to be trusted.
MIN_TEMPLATE_STARS = 3
TEMPLATE_SOURCES = ("upload", "archive", "survey")


class TemplateOut(Schema):
    id: int
    alert_id: int
    user_id: int
    owner: str
    instrument_id: int | None
    filter: str
    band: str
    source: str
    sha256: str
    size_bytes: int
    filename: str | None
    footprint: list[list[float]]
    overlap_fraction: float
    fwhm_px: float | None
    fwhm_arcsec: float | None
    depth_inst_mag: float | None
    mjd: float | None
    observation_id: int | None
    #: A survey template's origin (service, HiPS, field, fetch time); None for the others.
    provenance: dict[str, Any] | None = None
    created_at: dt.datetime
    #: In the upload's answer: the observations reduced without a difference image that are being
    #: subtracted with this template now (each gets a new calibration version).
    resubtracting: list[int] = Field(default_factory=list)


@dataclass(frozen=True)
class TemplateFacts:
    """What the checks learnt about a template image."""

    filter_declared: str
    band: str
    wcs_header: str
    footprint: list[list[float]]
    overlap_fraction: float
    fwhm_px: float
    fwhm_arcsec: float
    depth_inst_mag: float | None
    mjd: float | None


def template_band(filter_name: str, instrument: InstrumentDefaults | None) -> str:
    """The standard band of a template's filter, refusing one the instrument does not have."""
    name = (filter_name or "").strip()
    if not name:
        raise InputError(
            "Say which filter the template was taken in (the filter field).", code="missing_filter"
        )
    if instrument is not None and instrument.filters:
        translation = {key.strip().upper(): value for key, value in instrument.filters.items()}
        bands = {value.strip().upper(): value.strip() for value in translation.values()}
        if name.upper() not in translation and name.upper() not in bands:
            raise InputError(
                f"The instrument has no filter {name!r}; its filters are "
                f"{', '.join(sorted(instrument.filters))}.",
                code="filter_not_on_instrument",
            )
        name = translation.get(name.upper()) or bands[name.upper()]
    band = standard_band(name)
    if band is None:
        raise InputError(
            f"Unknown filter {name!r}: use a band name (B, V, R, I, g, r, i, z, Clear...) or one of "
            "the instrument's filter names.",
            code="unknown_filter",
        )
    return band.name


def _covered_fraction(
    wcs: WCS, shape: tuple[int, int], ra_deg: float, dec_deg: float, half_deg: float
) -> float:
    """The fraction of the square of half-width ``half_deg`` around the alert that is on the image."""
    ny, nx = shape
    half = half_deg
    offsets = np.linspace(-half, half, 21)
    d_ra, d_dec = np.meshgrid(offsets / max(math.cos(math.radians(dec_deg)), 1e-3), offsets)
    x, y = wcs.all_world2pix((ra_deg + d_ra) % 360.0, np.clip(dec_deg + d_dec, -90, 90), 0)
    inside = np.isfinite(x) & np.isfinite(y) & (x >= -0.5) & (x <= nx - 0.5) & (y >= -0.5) & (y <= ny - 0.5)
    return float(inside.mean())


def inspect_template(
    path: Path,
    *,
    alert_ra_deg: float,
    alert_dec_deg: float,
    filter_name: str,
    instrument: InstrumentDefaults | None,
    max_pixels: int,
) -> TemplateFacts:
    """Check a template image and measure it; raises ``InputError`` (4xx) saying what to fix."""
    band = template_band(filter_name, instrument)
    facts = inspect_fits_image(path, max_pixels=max_pixels)
    header = standardise_header(facts.header, instrument=instrument)
    if header.wcs is None:
        raise InputError(
            "The template has no usable WCS: a template must carry its astrometric solution (CRVAL, "
            "CRPIX and CD or CDELT cards); solve it first (e.g. upload it as an observation).",
            code="template_without_wcs",
        )
    wcs = header.wcs.celestial
    ny, nx = facts.shape
    x, y = (float(v) for v in wcs.all_world2pix(alert_ra_deg, alert_dec_deg, 0))
    if not (math.isfinite(x) and math.isfinite(y) and -0.5 <= x <= nx - 0.5 and -0.5 <= y <= ny - 0.5):
        raise InputError(
            f"The alert ({alert_ra_deg:.5f}, {alert_dec_deg:+.5f}) is not on this template according to "
            "its WCS: upload an image of the alert's field.",
            code="template_not_on_alert",
        )
    scale_arcsec = float(np.mean(proj_plane_pixel_scales(wcs))) * 3600.0
    half_arcmin = min(FIELD_HALF_WIDTH_ARCMIN, 0.25 * min(nx, ny) * scale_arcsec / 60.0)
    overlap = _covered_fraction(wcs, facts.shape, alert_ra_deg, alert_dec_deg, half_arcmin / 60.0)
    if overlap < MIN_OVERLAP_FRACTION:
        raise InputError(
            f"The template covers {100 * overlap:.0f}% of the {2 * half_arcmin:.1f}' square "
            f"around the alert; at least {100 * MIN_OVERLAP_FRACTION:.0f}% is needed. Upload a frame "
            "centred closer to the alert.",
            code="template_overlap_too_small",
        )
    fwhm_px, depth = _seeing_and_depth(path, facts.hdu_index, header.saturation_adu)
    footprint = [[round(float(ra), 7), round(float(dec), 7)] for ra, dec in wcs.calc_footprint(axes=(nx, ny))]
    return TemplateFacts(
        filter_declared=filter_name.strip(),
        band=band,
        wcs_header=wcs.to_header(relax=True).tostring(sep="\n"),
        footprint=footprint,
        overlap_fraction=round(overlap, 4),
        fwhm_px=round(fwhm_px, 4),
        fwhm_arcsec=round(fwhm_px * scale_arcsec, 4),
        depth_inst_mag=depth,
        mjd=header.mjd_mid,
    )


def _seeing_and_depth(path: Path, hdu_index: int, saturation_adu: float | None) -> tuple[float, float | None]:
    """The FWHM (px) of the template's stars and its 5-sigma point-source limit (instrumental mag)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            with fits.open(path, memmap=False) as hdus:
                data = np.asarray(hdus[hdu_index].data, dtype=np.float32).squeeze()
    except Exception:
        raise InputError(
            "The template's pixels cannot be read; upload the whole file again.", code="unreadable_image"
        ) from None
    background = estimate_background(data, ~np.isfinite(data))
    # cosmic rays and hot pixels masked, or they would pass for the sharpest stars
    mask = pixel_mask_bits(data, saturation_adu=saturation_adu, background=background)
    detections = detect_sources(data, background, mask, saturation_adu=saturation_adu, keep_segmap=False)
    if detections.n_sources < MIN_TEMPLATE_STARS or not math.isfinite(detections.fwhm_px):
        raise InputError(
            f"{detections.n_sources} sources were found on the template, too few isolated stars to "
            "measure its seeing: upload a deeper frame of the field.",
            code="template_without_stars",
        )
    # Optimal PSF photometry of a Gaussian star: noise-equivalent area 4 pi sigma^2.
    sigma = detections.fwhm_px / (2 * math.sqrt(2 * math.log(2)))
    limit_adu = 5.0 * background.global_rms * math.sqrt(4 * math.pi) * sigma
    depth = round(-2.5 * math.log10(limit_adu), 4) if limit_adu > 0 else None
    return float(detections.fwhm_px), depth


def template_view(template: Template) -> TemplateOut:
    return TemplateOut(
        id=template.id,
        alert_id=template.alert_id,
        user_id=template.user_id,
        owner=template.user.name,
        instrument_id=template.instrument_id,
        filter=template.filter_declared,
        band=template.band,
        source=template.source,
        sha256=template.sha256,
        size_bytes=template.size_bytes,
        filename=template.filename,
        footprint=template.footprint,
        overlap_fraction=template.overlap_fraction,
        fwhm_px=template.fwhm_px,
        fwhm_arcsec=template.fwhm_arcsec,
        depth_inst_mag=template.depth_inst_mag,
        mjd=template.mjd,
        observation_id=template.observation_id,
        provenance=template.provenance,
        created_at=template.created_at,
    )


def add_template(
    session: Session,
    *,
    user: User,
    alert: Alert,
    instrument: Instrument | None,
    facts: TemplateFacts,
    sha256: str,
    size_bytes: int,
    stored_path: str,
    filename: str | None,
    source: str = "upload",
    observation_id: int | None = None,
    provenance: dict[str, Any] | None = None,
) -> TemplateOut:
    if source not in TEMPLATE_SOURCES:
        raise ValueError(f"a template's source is one of {TEMPLATE_SOURCES}")
    template = Template(
        alert_id=alert.id,
        user_id=user.id,
        instrument_id=instrument.id if instrument is not None else None,
        filter_declared=facts.filter_declared,
        band=facts.band,
        source=source,
        sha256=sha256,
        size_bytes=size_bytes,
        stored_path=stored_path,
        filename=filename,
        wcs_header=facts.wcs_header,
        footprint=facts.footprint,
        overlap_fraction=facts.overlap_fraction,
        fwhm_px=facts.fwhm_px,
        fwhm_arcsec=facts.fwhm_arcsec,
        depth_inst_mag=facts.depth_inst_mag,
        mjd=facts.mjd,
        observation_id=observation_id,
        provenance=provenance,
    )
    session.add(template)
    session.flush()
    return template_view(template)


def list_templates(session: Session, alert_id: int) -> list[TemplateOut]:
    rows = session.scalars(select(Template).where(Template.alert_id == alert_id).order_by(Template.id))
    return [template_view(row) for row in rows]


def uploaded_templates(
    session: Session, alert_id: int, instrument_id: int | None, band: str
) -> list[Template]:
    """The uploaded templates of an alert for one instrument and band, the newest first."""
    query = select(Template).where(
        Template.alert_id == alert_id,
        Template.band == band,
        Template.source == "upload",
        Template.instrument_id.is_(None)
        if instrument_id is None
        else Template.instrument_id == instrument_id,
    )
    return list(session.scalars(query.order_by(Template.id.desc())))


def survey_templates(session: Session, alert_id: int, band: str) -> list[Template]:
    """The survey templates fetched for an alert in one band, the newest first."""
    query = select(Template).where(
        Template.alert_id == alert_id, Template.band == band, Template.source == "survey"
    )
    return list(session.scalars(query.order_by(Template.id.desc())))


def delete_template(session: Session, user: User, alert_id: int, template_id: int) -> TemplateOut:
    """Remove a template (its bytes stay in the content-addressed store). Owners and admins only."""
    template = session.get(Template, template_id)
    if template is None or template.alert_id != alert_id:
        raise NotFoundError(f"Alert {alert_id} has no template {template_id}.", code="unknown_template")
    if template.user_id != user.id and user.role != "admin":
        raise PermissionDeniedError(
            "Only the observer who uploaded a template (or an admin) can delete it.", code="not_your_template"
        )
    view = template_view(template)
    session.delete(template)
    session.flush()
    return view


#: Archive frames whose depths round to the same step of this (mag) are ranked by their seeing.
DEPTH_TIE_MAG = 0.1
#: Frames within this of the alert's earliest frame count as its first night (days).
FIRST_NIGHT_DAYS = 0.5


def _archive_rank(reduction: ImageReduction) -> tuple[float, float]:
    """Sort key, best first: the deepest (faintest limit, in ``DEPTH_TIE_MAG`` steps), then the sharpest."""
    depth = reduction.quality.get("limit_mag_inst_5sigma")
    fwhm = reduction.quality.get("fwhm_arcsec") or reduction.quality.get("fwhm_px")
    depth_key = (
        -round(float(depth) / DEPTH_TIE_MAG) if depth is not None and math.isfinite(depth) else math.inf
    )
    return depth_key, float(fwhm) if fwhm is not None else math.inf


def archive_template(
    session: Session,
    *,
    alert_id: int,
    instrument_id: int | None,
    band: str,
    science_observation_id: int,
    science_mjd: float | None,
) -> Template | None:
    """The best earlier reduced frame of the alert by the same instrument in the same band, kept as a
    template (``source="archive"``; the same frame's row is reused), or None when there is none.

    Only frames before the transient qualify. Alerts carry no discovery date yet, and the first
    direct detection cannot stand for one (a host galaxy makes every direct point a detection), so
    the frames of the alert's first night in our store are the candidates, when that night is
    before the science frame. Among those, the deepest (5-sigma limit), then the sharpest.
    """
    rows = session.execute(
        select(Observation, ImageReduction)
        .join(ImageReduction, ImageReduction.observation_id == Observation.id)
        .where(
            Observation.alert_id == alert_id,
            Observation.id != science_observation_id,
            Observation.instrument_id.is_(None)
            if instrument_id is None
            else Observation.instrument_id == instrument_id,
            Observation.dry_run.is_(False),
            ImageReduction.status == "reduced",
            ImageReduction.wcs_header.is_not(None),
        )
    ).all()
    frames = [
        (observation, reduction)
        for observation, reduction in rows
        if observation.mjd is not None
        and (science_mjd is None or observation.mjd < science_mjd)
        and _band_of(reduction.header.get("filter") or observation.filter_declared) == band
    ]
    if not frames:
        return None
    earliest = min(o.mjd for o, _ in frames if o.mjd is not None)
    frames = [(o, r) for o, r in frames if o.mjd is not None and o.mjd < earliest + FIRST_NIGHT_DAYS]
    observation, reduction = min(frames, key=lambda pair: _archive_rank(pair[1]))
    existing = session.scalar(
        select(Template).where(
            Template.source == "archive", Template.observation_id == observation.id, Template.band == band
        )
    )
    if existing is not None:
        return existing
    wcs = WCS(fits.Header.fromstring(reduction.wcs_header or "", sep="\n"))
    ny, nx = (observation.source_summary.get("shape") or [0, 0])[:2]
    fwhm_px = reduction.quality.get("fwhm_px")
    depth = reduction.quality.get("limit_mag_inst_5sigma")
    template = Template(
        alert_id=alert_id,
        user_id=observation.user_id,
        instrument_id=instrument_id,
        filter_declared=(reduction.header.get("filter") or observation.filter_declared or band)[:40],
        band=band,
        source="archive",
        sha256=observation.upload.sha256,
        size_bytes=observation.upload.size_bytes,
        stored_path=observation.upload.stored_path,
        filename=observation.filename,
        wcs_header=reduction.wcs_header or "",
        footprint=[
            [round(float(ra), 7), round(float(dec), 7)] for ra, dec in wcs.calc_footprint(axes=(nx, ny))
        ]
        if nx and ny
        else [],
        overlap_fraction=1.0,
        fwhm_px=fwhm_px,
        fwhm_arcsec=reduction.quality.get("fwhm_arcsec"),
        depth_inst_mag=depth if depth is not None and math.isfinite(depth) else None,
        mjd=observation.mjd,
        observation_id=observation.id,
    )
    session.add(template)
    session.flush()
    return template


def _band_of(filter_name: str | None) -> str | None:
    band = standard_band(filter_name)
    return band.name if band is not None else None
