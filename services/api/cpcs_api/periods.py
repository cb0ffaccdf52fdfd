"""REST v1: periods in an alert's light curve (``cpcs.science.periodogram``), per band.

``GET /api/v1/alerts/{id}/periodogram?band=V[&survey=GaiaSP]`` is the Lomb-Scargle periodogram of the
detections calibrated to that band (of every survey unless one is named): the grid and its power, the
best period with its uncertainty and false-alarm probability, and each point's phase folded on it. The
alert page draws the same (:func:`page_periodograms`, the grid thinned for the browser).
"""

from __future__ import annotations

import itertools
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from cpcs.domain import alerts as alert_store
from cpcs.domain.points import light_curve_points
from cpcs.errors import InputError
from cpcs.schemas import PointOut, RecordId
from cpcs.science.periodogram import MIN_POINTS, Periodogram, fold, lomb_scargle
from cpcs.web import ERROR_RESPONSES, SessionDep, UserDep

#: Most grid points the alert page draws per band (the highest power of each stretch is kept).
PAGE_GRID_POINTS = 1500


class FoldedPointOut(BaseModel):
    point_id: int
    mjd: float
    mag: float
    magerr: float
    phase: float = Field(description="Phase in [0, 1) on the best period, 0 at maximum brightness")


class PeriodogramOut(BaseModel):
    alert_id: int
    band: str
    survey: str | None = Field(description="The survey the points are calibrated to; null: every survey")
    n_points: int
    baseline_d: float
    best_period_d: float
    best_period_err_d: float
    false_alarm_probability: float
    amplitude_mag: float
    epoch_mjd: float = Field(description="Time of maximum brightness of the fitted sinusoid (phase 0)")
    frequency_per_day: list[float]
    power: list[float]
    points: list[FoldedPointOut]


def _detections(points: list[PointOut], band: str, survey: str | None) -> list[PointOut]:
    return [
        p
        for p in points
        if p.band == band
        and (survey is None or p.survey == survey)
        and not p.is_upper_limit
        and p.mjd is not None
        and np.isfinite(p.mag)
    ]


def band_periodogram(
    alert_id: int, points: list[PointOut], band: str, survey: str | None = None
) -> tuple[Periodogram, list[PointOut]]:
    """The periodogram of one band's detections (4xx-ready errors)."""
    chosen = _detections(points, band, survey)
    if not chosen:
        bands = sorted({f"{p.survey}/{p.band}" for p in points if not p.is_upper_limit})
        raise InputError(
            f"Alert {alert_id} has no detections in band {band!r}"
            + (f" of {survey}" if survey else "")
            + f"; its bands: {', '.join(bands) or 'none'}.",
            code="no_points_in_band",
        )
    mjd = np.array([p.mjd for p in chosen], dtype=float)
    mag = np.array([p.mag for p in chosen])
    err = np.array([p.mag_err_total for p in chosen])
    try:
        return lomb_scargle(mjd, mag, err if np.all(err > 0) else None), chosen
    except ValueError as exc:
        raise InputError(f"No periodogram of band {band!r}: {exc}.", code="too_few_points") from exc


def _thinned(result: Periodogram, size: int) -> tuple[list[float], list[float]]:
    """The grid in at most ``size`` points, each the highest power of its stretch (peaks kept)."""
    n = result.power.size
    if n <= size:
        return result.frequency_per_day.tolist(), result.power.tolist()
    edges = np.linspace(0, n, size + 1).astype(int)
    picks = [
        start + int(np.argmax(result.power[start:stop])) for start, stop in itertools.pairwise(edges.tolist())
    ]
    return result.frequency_per_day[picks].tolist(), result.power[picks].tolist()


def periodogram_out(
    alert_id: int,
    band: str,
    survey: str | None,
    result: Periodogram,
    chosen: list[PointOut],
    grid_points: int | None,
) -> PeriodogramOut:
    phases = fold(np.array([p.mjd for p in chosen], dtype=float), result.best_period_d, result.epoch_mjd)
    if grid_points is None:
        frequency, power = result.frequency_per_day.tolist(), result.power.tolist()
    else:
        frequency, power = _thinned(result, grid_points)
    return PeriodogramOut(
        alert_id=alert_id,
        band=band,
        survey=survey,
        n_points=result.n_points,
        baseline_d=result.baseline_d,
        best_period_d=result.best_period_d,
        best_period_err_d=result.best_period_err_d,
        false_alarm_probability=result.false_alarm_probability,
        amplitude_mag=result.amplitude_mag,
        epoch_mjd=result.epoch_mjd,
        frequency_per_day=frequency,
        power=power,
        points=[
            FoldedPointOut(
                point_id=p.id, mjd=float(p.mjd or 0.0), mag=p.mag, magerr=p.mag_err_total, phase=float(ph)
            )
            for p, ph in zip(chosen, phases, strict=True)
        ],
    )


def page_periodograms(alert_id: int, points: list[PointOut]) -> list[dict[str, Any]]:
    """The periodograms the alert page draws: every band with enough detections, grids thinned."""
    out = []
    for band in sorted({p.band for p in points}):
        if len(_detections(points, band, None)) < MIN_POINTS:
            continue
        try:
            result, chosen = band_periodogram(alert_id, points, band)
        except InputError:
            continue
        out.append(periodogram_out(alert_id, band, None, result, chosen, PAGE_GRID_POINTS).model_dump())
    return out


def router() -> APIRouter:
    api = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES)

    @api.get(
        "/alerts/{alert_id}/periodogram",
        response_model=PeriodogramOut,
        tags=["alerts"],
        summary="Lomb-Scargle periodogram of one band of an alert's light curve, and the folded points",
    )
    def periodogram(
        session: SessionDep,
        alert_id: RecordId,
        user: UserDep,
        band: Annotated[
            str, Query(min_length=1, max_length=20, description="The calibrated band (V, r, G...)")
        ],
        survey: Annotated[
            str | None,
            Query(max_length=40, description="Only points calibrated to this survey (PS1, APASS...)"),
        ] = None,
    ) -> PeriodogramOut:
        del user  # the light curve's data need a token, as in CPCS
        alert_store.get_alert(session, alert_id)
        points = light_curve_points(session, alert_id)
        result, chosen = band_periodogram(alert_id, points, band, survey)
        return periodogram_out(alert_id, band, survey, result, chosen, None)

    return api
