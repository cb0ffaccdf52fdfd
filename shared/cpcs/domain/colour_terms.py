"""An instrument's learned colour terms, read from its calibrated frames (``cpcs.science.colour_terms``).

One rule for calibrate (the prior of a new frame) and for the instrument's trends (what the
instrument page shows): per declared filter and reference survey/band, the latest calibration of
each of the most recent ``COLOUR_TERM_FRAMES`` observations that fitted its own colour term;
calibrations made with a prior are left out, so that a prior never feeds on itself.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from cpcs.db.models import Calibration, Observation
from cpcs.errors import CalibrationFailed
from cpcs.science.colour_terms import MIN_FRAMES, LearnedColourTerm, learn_colour_term

__all__ = ["ALL_FILTERS", "COLOUR_TERM_FRAMES", "learned_colour_terms"]

#: The most recent calibrated frames of an instrument, filter and band a colour term is learned from.
COLOUR_TERM_FRAMES = 200
#: ``filter_declared`` of :func:`learned_colour_terms` for every filter at once.
ALL_FILTERS = "*all*"

#: (declared filter, reference survey, band)
ColourTermKey = tuple[str | None, str, str]


def learned_colour_terms(
    session: Session,
    instrument_id: int,
    *,
    filter_declared: str | None = ALL_FILTERS,
    exclude_observation_id: int | None = None,
) -> dict[ColourTermKey, LearnedColourTerm]:
    """The colour terms learned for an instrument, by (declared filter, survey, band).

    ``filter_declared``: one filter (``None``: frames declared without one), or :data:`ALL_FILTERS`.
    Combinations with fewer than ``MIN_FRAMES`` usable frames are left out.
    """
    query = (
        select(
            Observation.filter_declared,
            Calibration.observation_id,
            Calibration.survey,
            Calibration.band,
            Calibration.colour_term,
            Calibration.colour_term_err,
            Calibration.result,
        )
        .join(Observation, Calibration.observation_id == Observation.id)
        .where(Observation.instrument_id == instrument_id, Calibration.colour_term_err > 0.0)
        .order_by(Calibration.id.desc())
    )
    if filter_declared != ALL_FILTERS:
        query = query.where(
            Observation.filter_declared.is_(None)
            if filter_declared is None
            else Observation.filter_declared == filter_declared
        ).limit(4 * COLOUR_TERM_FRAMES)
    else:
        query = query.limit(40 * COLOUR_TERM_FRAMES)
    if exclude_observation_id is not None:
        query = query.where(Observation.id != exclude_observation_id)
    frames: dict[ColourTermKey, dict[int, tuple[float, float]]] = {}
    for declared, observation_id, survey, band, value, error, record in session.execute(query).all():
        if (record or {}).get("colour_term_prior") is not None:
            continue
        per_band = frames.setdefault((declared, survey, band), {})
        if observation_id not in per_band and len(per_band) < COLOUR_TERM_FRAMES:
            per_band[observation_id] = (value, error)  # the latest calibration of that frame
    learned = {}
    for key, values in frames.items():
        if len(values) < MIN_FRAMES:
            continue
        try:
            learned[key] = learn_colour_term([v for v, _ in values.values()], [e for _, e in values.values()])
        except CalibrationFailed:
            continue
    return learned
