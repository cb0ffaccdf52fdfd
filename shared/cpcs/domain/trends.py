"""An instrument's trends: its calibrated frames over time and what :mod:`cpcs.science.trends` makes of them.

A frame is an observation of the instrument with a point on a light curve (not a dry run, not
deleted), with the point's current calibration: zero point and its error, the 5σ limit, the
exposure time; from the image reduction (images only) the FWHM, the sky level and the airmass.
A frame without a measured airmass (a catalogue upload) gets one computed from the alert's
position, the time and the observatory's position (:func:`cpcs.science.airmass.airmasses`).
Frames are grouped by declared filter and reference survey/band (zero points against one
reference band are comparable); each group gets its nightly extinction, night-to-night changes,
limit model and learned colour term (:func:`cpcs.domain.colour_terms.learned_colour_terms`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from cpcs.db.models import Alert, Calibration, ImageReduction, Instrument, Observation, Observatory, Point
from cpcs.domain.colour_terms import learned_colour_terms
from cpcs.domain.instruments import instrument_view
from cpcs.errors import NotFoundError
from cpcs.schemas import InstrumentOut, Schema
from cpcs.science.airmass import airmasses
from cpcs.science.imaging.photometry import instrumental_magnitude
from cpcs.science.trends import LIMIT_SLOPE_PER_DEX, REFERENCE_EXPTIME_S, band_trends, night_of

__all__ = ["MAX_FRAMES", "PLANNING_EXPTIMES_S", "InstrumentTrendsOut", "instrument_trends"]

#: The most recent frames read (the page and the API stay fast for a busy instrument).
MAX_FRAMES = 5000
#: Exposure times the expected limit is tabulated for, s.
PLANNING_EXPTIMES_S = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0)
LIMIT_MODEL_TEXT = (
    "m_lim(t) = m_lim(t0) + 1.25 log10(t / t0) at airmass 1 (background-limited point source: signal "
    "grows as t, sky noise as sqrt t), minus k (X - 1) at airmass X with the band's mean extinction k"
)


class FrameOut(Schema):
    observation_id: int
    mjd: float
    night: int = Field(description="Integer MJD of the local noon that starts the night")
    filter: str | None = Field(description="The filter the observer declared")
    survey: str
    band: str
    exptime_s: float | None
    airmass: float | None
    airmass_source: str | None = Field(description="image (measured by reduce) or computed (from the time)")
    zp: float = Field(description="Zero point, m_cat = m_inst + zp")
    zp_err: float | None
    colour_term: float | None = Field(description="The frame's fitted colour term (null: not fitted)")
    limit_mag: float | None = Field(description="5-sigma limiting magnitude of the frame")
    fwhm_arcsec: float | None
    sky_adu: float | None = Field(description="Sky level per pixel (images)")
    sky_mag_arcsec2: float | None = Field(description="Sky brightness, mag per square arcsec (images)")


class NightOut(Schema):
    night: int
    n_frames: int
    airmass_min: float
    airmass_max: float
    zp_median: float
    zp0: float | None = Field(description="Zero point above the atmosphere, from zp = zp0 - k X")
    zp0_err: float | None
    k: float | None = Field(description="Extinction, mag per airmass")
    k_err: float | None
    rms: float | None
    why_not: str | None = Field(description="Why the night has no extinction fit")


class Zp0ChangeOut(Schema):
    night: int
    delta_zp0: float = Field(description="This night's zp0 minus the previous fitted night's")
    error: float


class LimitModelOut(Schema):
    reference_exptime_s: float
    limit_at_reference: float = Field(description="5-sigma limit at the reference exposure and airmass 1")
    scatter: float = Field(description="Robust scatter of the frames about the model, mag")
    n_frames: int
    slope_per_dex: float = LIMIT_SLOPE_PER_DEX


class ExpectedLimitOut(Schema):
    exptime_s: float
    airmass: float
    limit_mag: float


class ColourTermOut(Schema):
    value: float
    value_err: float
    spread: float
    n_frames: int
    n_used: int


class SeriesOut(Schema):
    filter: str | None
    survey: str
    band: str
    n_frames: int
    nights: list[NightOut]
    k_mean: float | None
    k_mean_err: float | None
    k_spread: float | None = Field(description="Night-to-night spread of k beyond the nightly errors")
    zp0_changes: list[Zp0ChangeOut]
    limit_model: LimitModelOut | None
    expected_limits: list[ExpectedLimitOut]
    colour_term: ColourTermOut | None = Field(description="The colour term learned for this filter and band")


class InstrumentTrendsOut(Schema):
    instrument: InstrumentOut
    n_frames: int
    limit_model: str = Field(description="The model of the expected limits")
    series: list[SeriesOut]
    frames: list[FrameOut] = Field(description="Every frame, oldest first")


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


@dataclass
class _Frame:
    out: dict[str, Any]
    ra_deg: float
    dec_deg: float


def _sky_brightness(
    quality: dict[str, Any], header: dict[str, Any], zp: float, exptime_s: float | None
) -> float | None:
    """The sky in mag per square arcsec, on the frame's instrumental scale plus its zero point."""
    sky = _finite(quality.get("background_level_adu"))
    scale = _finite(header.get("pixel_scale_arcsec"))
    if sky is None or sky <= 0 or scale is None or scale <= 0:
        return None
    gain = _finite((quality.get("noise_model") or {}).get("gain_e_per_adu"))
    mag, _ = instrumental_magnitude(sky / scale**2, 0.0, gain_e_per_adu=gain, exptime_s=exptime_s)
    return _finite(float(mag) + zp)


def _frames(session: Session, instrument_id: int) -> list[_Frame]:
    rows = session.execute(
        select(
            Observation.id,
            Observation.filter_declared,
            Observation.exptime_s,
            Point.mjd,
            Point.limit_mag,
            Calibration.survey,
            Calibration.band,
            Calibration.zp,
            Calibration.zp_err,
            Calibration.colour_term,
            Alert.ra_deg,
            Alert.dec_deg,
            ImageReduction.quality,
            ImageReduction.header,
        )
        .join(Point, Point.observation_id == Observation.id)
        .join(Calibration, Calibration.id == Point.calibration_id)
        .join(Alert, Alert.id == Observation.alert_id)
        .outerjoin(ImageReduction, ImageReduction.observation_id == Observation.id)
        .where(
            Observation.instrument_id == instrument_id,
            Observation.dry_run.is_(False),
            Point.deleted_at.is_(None),
            Point.mjd.is_not(None),
        )
        .order_by(Point.mjd.desc(), Observation.id.desc())
        .limit(MAX_FRAMES)
    ).all()
    frames = []
    for row in reversed(rows):
        zp = _finite(row.zp)
        if zp is None:
            continue
        quality = dict(row.quality or {})
        header = dict(row.header or {})
        exptime = _finite(row.exptime_s) or _finite(header.get("exptime_s"))
        airmass = _finite(quality.get("airmass"))
        frames.append(
            _Frame(
                {
                    "observation_id": row.id,
                    "mjd": float(row.mjd),
                    "filter": row.filter_declared,
                    "survey": row.survey,
                    "band": row.band,
                    "exptime_s": exptime,
                    "airmass": airmass,
                    "airmass_source": "image" if airmass is not None else None,
                    "zp": zp,
                    "zp_err": _finite(row.zp_err),
                    "colour_term": _finite(row.colour_term),
                    "limit_mag": _finite(row.limit_mag),
                    "fwhm_arcsec": _finite(quality.get("fwhm_arcsec")),
                    "sky_adu": _finite(quality.get("background_level_adu")),
                    "sky_mag_arcsec2": _sky_brightness(quality, header, zp, exptime),
                },
                row.ra_deg,
                row.dec_deg,
            )
        )
    return frames


def _fill_airmasses(frames: Sequence[_Frame], site: Observatory) -> None:
    missing = [f for f in frames if f.out["airmass"] is None]
    if not missing or site.lon_deg is None or site.lat_deg is None:
        return
    values = airmasses(
        [f.ra_deg for f in missing],
        [f.dec_deg for f in missing],
        [f.out["mjd"] for f in missing],
        lon_deg=site.lon_deg,
        lat_deg=site.lat_deg,
        elevation_m=site.elevation_m or 0.0,
    )
    for frame, value in zip(missing, values, strict=True):
        if math.isfinite(value):
            frame.out["airmass"] = float(value)
            frame.out["airmass_source"] = "computed"


def _series(
    key: tuple[str | None, str, str],
    frames: list[dict[str, Any]],
    lon_deg: float | None,
    colour_term: ColourTermOut | None,
    planning: Sequence[float],
    airmass: float,
) -> SeriesOut:
    def column(name: str) -> np.ndarray:
        return np.array([np.nan if f[name] is None else f[name] for f in frames], dtype=float)

    trends = band_trends(
        column("mjd"),
        column("airmass"),
        column("zp"),
        column("zp_err"),
        column("limit_mag"),
        column("exptime_s"),
        lon_deg=lon_deg,
    )
    limit = trends.limit
    expected = []
    if limit is not None:
        k = trends.k_mean if trends.k_mean is not None else 0.0
        for exptime, value in zip(
            planning, limit.expected(list(planning), airmass=airmass, k=k), strict=True
        ):
            expected.append(
                ExpectedLimitOut(exptime_s=exptime, airmass=airmass, limit_mag=round(float(value), 3))
            )
    return SeriesOut(
        filter=key[0],
        survey=key[1],
        band=key[2],
        n_frames=len(frames),
        nights=[NightOut(**vars(night)) for night in trends.nights],
        k_mean=trends.k_mean,
        k_mean_err=trends.k_mean_err,
        k_spread=trends.k_spread,
        zp0_changes=[Zp0ChangeOut(night=n, delta_zp0=d, error=e) for n, d, e in trends.delta_zp0],
        limit_model=None
        if limit is None
        else LimitModelOut(
            reference_exptime_s=limit.reference_exptime_s,
            limit_at_reference=limit.limit_at_reference,
            scatter=limit.scatter,
            n_frames=limit.n_frames,
        ),
        expected_limits=expected,
        colour_term=colour_term,
    )


def instrument_trends(
    session: Session,
    instrument_id: int,
    *,
    exptimes_s: Sequence[float] = PLANNING_EXPTIMES_S,
    airmass: float = 1.0,
) -> InstrumentTrendsOut:
    """The trends of one instrument (``NotFoundError`` for an unknown id)."""
    instrument = session.get(Instrument, instrument_id)
    if instrument is None:
        raise NotFoundError(f"No instrument {instrument_id}.", code="unknown_instrument")
    site = session.get(Observatory, instrument.observatory_id)
    assert site is not None
    frames = _frames(session, instrument.id)
    _fill_airmasses(frames, site)
    nights = night_of([f.out["mjd"] for f in frames], site.lon_deg)
    for frame, night in zip(frames, nights.tolist(), strict=True):
        frame.out["night"] = int(night)
    groups: dict[tuple[str | None, str, str], list[dict[str, Any]]] = {}
    for frame in frames:
        groups.setdefault((frame.out["filter"], frame.out["survey"], frame.out["band"]), []).append(frame.out)
    learned = learned_colour_terms(session, instrument.id)
    series = []
    for key in sorted(groups, key=lambda k: (k[0] or "", k[1], k[2])):
        term = learned.get(key)
        colour = (
            None
            if term is None
            else ColourTermOut(
                value=term.value,
                value_err=term.value_err,
                spread=term.spread,
                n_frames=term.n_frames,
                n_used=term.n_used,
            )
        )
        series.append(_series(key, groups[key], site.lon_deg, colour, exptimes_s, airmass))
    return InstrumentTrendsOut(
        instrument=instrument_view(instrument, site.name),
        n_frames=len(frames),
        limit_model=LIMIT_MODEL_TEXT.replace("t0", f"t0 = {REFERENCE_EXPTIME_S:g} s", 1),
        series=series,
        frames=[FrameOut(**f.out) for f in frames],
    )
