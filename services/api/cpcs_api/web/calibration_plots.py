"""The data of an observation's calibration plots: the stored inputs read back, the fits recomputed.

The stars themselves are not stored with a calibration, so they are recomputed from what is: the
uploaded catalogue (or the source table reduce measured on an image), the reference cone around the
alert and the calibration's parameters (match radius, magnitude column). The science is
:func:`cpcs.science.calibration_diagnostics.diagnose_calibration`; this module does the reading and
turns the result into the JSON a page plots.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select

from cpcs.catalogs.client import HttpReferences, LocalReferences, ReferenceSource
from cpcs.catalogs.cone import ConeService
from cpcs.catalogs.tiles import TileStore
from cpcs.context import Context
from cpcs.db.models import ImageReduction, Observation
from cpcs.domain.calibration_inputs import calibration_sources
from cpcs.domain.observations import current_calibration
from cpcs.errors import CpcsError
from cpcs.schemas import CalibrationOut
from cpcs.science.calibration_diagnostics import BandDiagnostics, CalibrationDiagnostics, diagnose_calibration
from cpcs.science.crossmatch import field_cone_radius_deg

log = logging.getLogger(__name__)

DECIMALS = 4


def reference_source(context: Context) -> ReferenceSource:
    """Where the page reads reference stars: catalog-cache over HTTP, or the local tile store.

    Offline in both cases as far as this process goes: a page never asks Vizier itself; the cone was
    cached when the observation was calibrated.
    """
    settings = context.settings
    if settings.catalog_cache_url:
        return HttpReferences(settings.catalog_cache_url, timeout_s=15.0)
    return LocalReferences(ConeService(TileStore(settings.catalogs_dir), online=False))


class ReferenceSources:
    """One reference source per context, kept between requests (its tile cache is worth keeping)."""

    def __init__(self) -> None:
        self._known: list[tuple[Context, ReferenceSource]] = []

    def for_context(self, context: Context) -> ReferenceSource:
        for known, source in self._known:
            if known is context:
                return source
        source = reference_source(context)
        self._known.append((context, source))
        return source


@dataclass(frozen=True)
class StoredInputs:
    """What the calibration had, read back from the database and the file store."""

    ra_deg: np.ndarray
    dec_deg: np.ndarray
    mag: np.ndarray
    magerr: np.ndarray
    alert_ra_deg: float
    alert_dec_deg: float
    match_radius_arcsec: float
    survey: str
    band: str
    colour_term_prior: tuple[float, float] | None


@dataclass(frozen=True)
class PlotData:
    """The page's plot data, or why there is none."""

    payload: dict[str, Any] | None
    problem: str | None = None


def _read_inputs(context: Context, observation_id: int) -> StoredInputs | str:
    with context.db.transaction() as session:
        observation = session.get(Observation, observation_id)
        if observation is None:
            return "No such observation."
        calibration = current_calibration(session, observation)  # the version the page shows
        if calibration is None:
            return "This observation has no calibration."
        params = dict(calibration.params or {})
        kind = observation.upload.kind
        sha256 = observation.upload.sha256
        filename = observation.filename
        alert_ra, alert_dec = observation.alert.ra_deg, observation.alert.dec_deg
        survey, band = calibration.survey, calibration.band
        prior = (calibration.result or {}).get("colour_term_prior")
        sources_path: str | None = None
        if kind == "image":
            reduction = session.scalar(
                select(ImageReduction).where(ImageReduction.observation_id == observation_id)
            )
            sources_path = reduction.sources_path if reduction is not None else None
            if sources_path is None:
                return "The image's measured source table is not available."
    ra, dec, mag, magerr = calibration_sources(
        context,
        sources_path=sources_path,
        upload_sha256=sha256,
        filename=filename,
        magnitude_column=params.get("magnitude_column"),
        aperture_index=int(params.get("aperture_index") or 0),
    )
    return StoredInputs(
        ra_deg=ra,
        dec_deg=dec,
        mag=mag,
        magerr=magerr,
        alert_ra_deg=alert_ra,
        alert_dec_deg=alert_dec,
        match_radius_arcsec=float(params.get("match_radius_arcsec") or 2.0),
        survey=survey,
        band=band,
        colour_term_prior=(float(prior[0]), float(prior[1])) if prior else None,
    )


def recompute_stars(
    context: Context, references: ReferenceSource, observation_id: int
) -> CalibrationDiagnostics | str:
    """The matched stars of the calibration an observation shows now, or why they cannot be had."""
    try:
        inputs = _read_inputs(context, observation_id)
        if isinstance(inputs, str):
            return inputs
        radius = field_cone_radius_deg(
            inputs.ra_deg, inputs.dec_deg, inputs.alert_ra_deg, inputs.alert_dec_deg
        )
        cone = references.cone(inputs.alert_ra_deg, inputs.alert_dec_deg, radius)
        return diagnose_calibration(
            inputs.ra_deg,
            inputs.dec_deg,
            inputs.mag,
            inputs.magerr,
            target_ra_deg=inputs.alert_ra_deg,
            target_dec_deg=inputs.alert_dec_deg,
            references=cone,
            match_radius_arcsec=inputs.match_radius_arcsec,
            chosen=(inputs.survey, inputs.band),
            colour_term_priors=(
                {(inputs.survey, inputs.band): inputs.colour_term_prior} if inputs.colour_term_prior else None
            ),
        )
    except (CpcsError, OSError, KeyError, ValueError) as exc:
        log.warning("calibration stars of observation %s unavailable: %s", observation_id, exc)
        message = exc.message if isinstance(exc, CpcsError) else f"{type(exc).__name__}: {exc}"
        return f"The calibration plots cannot be drawn: {message}"


def diagnostics_for(context: Context, references: ReferenceSource, observation_id: int) -> PlotData:
    """Recompute the stars of the calibration an observation shows now and shape them for the page."""
    diagnostics = recompute_stars(context, references, observation_id)
    if isinstance(diagnostics, str):
        return PlotData(None, diagnostics)
    return PlotData(diagnostics_payload(diagnostics))


def _numbers(values: Iterable[float], decimals: int = DECIMALS) -> list[float | None]:
    """JSON has no NaN: None instead, rounded to keep the page small."""
    return [round(float(v), decimals) if math.isfinite(v) else None for v in values]


def _number(value: float | None, decimals: int = DECIMALS) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), decimals)


def _band_payload(entry: BandDiagnostics) -> dict[str, Any]:
    fit = entry.fit
    stars = entry.stars
    colour = stars.colour[np.isfinite(stars.colour)]
    return {
        "label": entry.label,
        "survey": entry.survey,
        "band": entry.band,
        "chosen": entry.chosen,
        "colour_index": entry.colour_index if fit is not None and fit.colour_fitted else None,
        "failure": entry.failure,
        "n_matched": entry.n_matched,
        "n_used": fit.n_used if fit is not None else 0,
        "zp": _number(fit.zp) if fit is not None else None,
        "colour_term": _number(fit.colour_term) if fit is not None and fit.colour_fitted else None,
        "scatter": _number(fit.scatter) if fit is not None else None,
        "spatial_order": fit.spatial_order if fit is not None else None,
        "median_colour": _number(float(np.median(colour))) if colour.size else None,
        "inst": _numbers(stars.inst_mag),
        "cat": _numbers(stars.cat_mag),
        "used": [bool(u) for u in stars.used],
    }


def _chosen_payload(entry: BandDiagnostics) -> dict[str, Any]:
    stars = entry.stars
    fit = entry.fit
    return {
        "label": entry.label,
        "colour_index": entry.colour_index if fit is not None and fit.colour_fitted else None,
        "colour_term": _number(fit.colour_term) if fit is not None and fit.colour_fitted else 0.0,
        "colour": _numbers(stars.colour),
        "colour_residual": _numbers(stars.colour_residual),
        "residual": _numbers(stars.residual),
        "x_arcmin": _numbers(stars.x_arcmin, 3),
        "y_arcmin": _numbers(stars.y_arcmin, 3),
        "used": [bool(u) for u in stars.used],
    }


def diagnostics_payload(diagnostics: CalibrationDiagnostics) -> dict[str, Any]:
    """The JSON the observation page draws from."""
    chosen = diagnostics.chosen
    return {
        "match_radius_arcsec": diagnostics.match_radius_arcsec,
        "n_sources": diagnostics.n_sources,
        "target_found": diagnostics.target_index is not None,
        "bands": [_band_payload(entry) for entry in diagnostics.bands],
        "chosen": _chosen_payload(chosen) if chosen is not None else None,
    }


def order_by_rank(payload: dict[str, Any], calibration: CalibrationOut) -> dict[str, Any]:
    """Put the panels in the calibration's ranking (chosen first), unranked ones after, and add ranks."""
    ranks = {f"{a.survey}/{a.band}": a.rank for a in calibration.alternatives}
    bands: Sequence[dict[str, Any]] = payload["bands"]
    ordered = sorted(bands, key=lambda b: (not b["chosen"], ranks.get(b["label"], 10_000), b["label"]))
    for entry in ordered:
        entry["rank"] = ranks.get(entry["label"])
    target = calibration.target
    return {
        **payload,
        "bands": ordered,
        "stored": {
            "survey": calibration.survey,
            "band": calibration.band,
            "zp": _number(calibration.zp),
            "colour_term": _number(calibration.colour_term),
        },
        "target": {
            "inst_mag": _number(target.inst_mag),
            "mag": _number(target.mag),
            "is_upper_limit": target.is_upper_limit,
            "colour_assumed": _number(target.colour_assumed),
        },
    }
