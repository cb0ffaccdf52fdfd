"""Instruments: what an observatory's camera is, for the headers that do not say it."""

from __future__ import annotations

import math

from sqlalchemy import select
from sqlalchemy.orm import Session

from cpcs.db.models import Instrument, Observation, Observatory
from cpcs.errors import ConflictError, InputError, NotFoundError
from cpcs.schemas import InstrumentOut
from cpcs.science.imaging.header import InstrumentDefaults


def _positive(value: float | None, what: str) -> float | None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise InputError(f"The {what} must be a positive number.", code="invalid_instrument")
    return value


def add_instrument(
    session: Session,
    *,
    observatory: str,
    name: str,
    gain_e_per_adu: float | None = None,
    pixel_scale_arcsec: float | None = None,
    saturation_adu: float | None = None,
    filters: dict[str, str] | None = None,
    default_filter: str | None = None,
) -> InstrumentOut:
    site = session.scalar(select(Observatory).where(Observatory.name == observatory.strip()))
    if site is None:
        raise NotFoundError(
            f"No observatory named {observatory!r}; add a user there first.", code="unknown_observatory"
        )
    if not name.strip():
        raise InputError("An instrument needs a name.", code="invalid_instrument")
    exists = select(Instrument.id).where(
        Instrument.observatory_id == site.id, Instrument.name == name.strip()
    )
    if session.scalar(exists) is not None:
        raise ConflictError(f"{observatory} already has an instrument {name!r}.", code="instrument_exists")
    instrument = Instrument(
        observatory_id=site.id,
        name=name.strip(),
        gain_e_per_adu=_positive(gain_e_per_adu, "gain"),
        pixel_scale_arcsec=_positive(pixel_scale_arcsec, "pixel scale"),
        saturation_adu=_positive(saturation_adu, "saturation level"),
        filters=dict(filters or {}),
        default_filter=default_filter or None,
    )
    session.add(instrument)
    session.flush()
    return instrument_view(instrument, site.name)


def instrument_view(instrument: Instrument, observatory: str) -> InstrumentOut:
    return InstrumentOut(
        id=instrument.id,
        observatory=observatory,
        name=instrument.name,
        gain_e_per_adu=instrument.gain_e_per_adu,
        pixel_scale_arcsec=instrument.pixel_scale_arcsec,
        saturation_adu=instrument.saturation_adu,
        filters=instrument.filters,
        default_filter=instrument.default_filter,
    )


def list_instruments(session: Session) -> list[InstrumentOut]:
    rows = session.execute(
        select(Instrument, Observatory.name).join(Observatory).order_by(Observatory.name, Instrument.name)
    ).all()
    return [instrument_view(instrument, site) for instrument, site in rows]


def find_instrument(session: Session, observatory_id: int, name: str | None) -> Instrument | None:
    """The named instrument of an observatory; without a name, its only instrument (if it has one)."""
    query = select(Instrument).where(Instrument.observatory_id == observatory_id)
    if name:
        instrument = session.scalar(query.where(Instrument.name == name.strip()))
        if instrument is None:
            raise NotFoundError(
                f"Your observatory has no instrument named {name!r}.", code="unknown_instrument"
            )
        return instrument
    instruments = session.scalars(query.limit(2)).all()
    return instruments[0] if len(instruments) == 1 else None


def instrument_defaults(instrument: Instrument | None) -> InstrumentDefaults | None:
    if instrument is None:
        return None
    return InstrumentDefaults(
        gain=instrument.gain_e_per_adu,
        saturation=instrument.saturation_adu,
        pixel_scale=instrument.pixel_scale_arcsec,
        filters=dict(instrument.filters or {}),
        default_filter=instrument.default_filter,
    )


def defaults_for_observation(session: Session, observation: Observation) -> InstrumentDefaults | None:
    if observation.instrument_id is None:
        return None
    return instrument_defaults(session.get(Instrument, observation.instrument_id))
