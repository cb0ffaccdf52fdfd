"""Alerts: the named targets observers follow up."""

from __future__ import annotations

import math
import unicodedata

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cpcs import tracing
from cpcs.db.models import Alert, Point
from cpcs.errors import ConflictError, InputError, NotFoundError
from cpcs.schemas import AlertOut, Page

IVORN_PREFIX = "ivo://"


def normalise_name(name: str) -> str:
    """The stored form of an alert name: ``Gaia16aye`` and ``ivo://Gaia16aye`` name the same alert.

    The name is NFKC-normalised (full-width ``ｉｖｏ://Ｇａｉａ16aye`` is ``ivo://Gaia16aye``, a
    no-break space a space) and must then be printable: line breaks, tabs, NUL and other control
    characters, bidirectional overrides and zero-width characters are refused with
    ``invalid_alert_name``, as is a scheme with no name after it.
    """
    name = unicodedata.normalize("NFKC", name or "").strip()
    if not name:
        raise InputError("The alert needs a name such as ivo://Gaia16aye.", code="missing_alert_name")
    if len(name) > 300:
        raise InputError("Alert names are at most 300 characters.", code="invalid_alert_name")
    for position, char in enumerate(name, start=1):
        if unicodedata.category(char)[0] in "CZ" and char != " ":
            raise InputError(
                f"The alert name holds {_describe(char)} at character {position}. Alert names are "
                "printable text such as ivo://Gaia16aye or AT 2024abc: no line breaks, tabs, control, "
                "invisible or text-direction characters.",
                code="invalid_alert_name",
            )
    if name.casefold().startswith(IVORN_PREFIX):
        name = IVORN_PREFIX + name[len(IVORN_PREFIX) :]
    else:
        name = IVORN_PREFIX + name
    if not any(char.isalnum() for char in name[len(IVORN_PREFIX) :]):
        raise InputError(
            f"The alert name {name!r} has no name after the scheme: send e.g. ivo://Gaia16aye or Gaia16aye.",
            code="invalid_alert_name",
        )
    return name


def _describe(char: str) -> str:
    code = f"U+{ord(char):04X}"
    label = unicodedata.name(char, "")
    return f"{code} ({label})" if label else f"the control character {code}"


def check_coordinates(ra_deg: float, dec_deg: float) -> None:
    if not (math.isfinite(ra_deg) and 0.0 <= ra_deg < 360.0):
        raise InputError(
            f"RA {ra_deg} is not in decimal degrees in [0, 360).", code="coordinates_out_of_range"
        )
    if not (math.isfinite(dec_deg) and -90.0 <= dec_deg <= 90.0):
        raise InputError(
            f"Dec {dec_deg} is not in decimal degrees in [-90, 90].", code="coordinates_out_of_range"
        )


def _counts(session: Session, alert_ids: list[int]) -> dict[int, int]:
    if not alert_ids:
        return {}
    rows = session.execute(
        select(Point.alert_id, func.count(Point.id))
        .where(Point.alert_id.in_(alert_ids), Point.deleted_at.is_(None))
        .group_by(Point.alert_id)
    ).all()
    return {alert_id: count for alert_id, count in rows}


def alert_view(session: Session, alert: Alert) -> AlertOut:
    count = _counts(session, [alert.id]).get(alert.id, 0)
    return AlertOut.model_validate(alert).model_copy(update={"n_points": count})


def create_alert(session: Session, name: str, ra_deg: float, dec_deg: float, url: str | None) -> AlertOut:
    name = normalise_name(name)
    check_coordinates(ra_deg, dec_deg)
    if session.scalar(select(Alert.id).where(Alert.name == name)) is not None:
        raise ConflictError(f"Alert {name} already exists.", code="alert_exists")
    alert = Alert(name=name, ra_deg=ra_deg, dec_deg=dec_deg, url=(url or None))
    session.add(alert)
    session.flush()
    tracing.annotate(alert_id=alert.id)
    return alert_view(session, alert)


def get_alert(session: Session, alert_id: int) -> Alert:
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise NotFoundError(f"No alert with id {alert_id}.", code="unknown_alert")
    return alert


def find_alert(session: Session, name: str) -> Alert:
    alert = session.scalar(select(Alert).where(Alert.name == normalise_name(name)))
    if alert is None:
        raise NotFoundError(
            f"No alert named {normalise_name(name)}; add it first (newevent, or POST /api/v1/alerts).",
            code="unknown_alert",
        )
    return alert


def update_alert(
    session: Session, alert_id: int, *, ra_deg: float | None, dec_deg: float | None, url: str | None
) -> AlertOut:
    alert = get_alert(session, alert_id)
    ra = alert.ra_deg if ra_deg is None else ra_deg
    dec = alert.dec_deg if dec_deg is None else dec_deg
    check_coordinates(ra, dec)
    alert.ra_deg, alert.dec_deg = ra, dec
    if url is not None:
        alert.url = url or None
    session.flush()
    return alert_view(session, alert)


def list_alerts(
    session: Session,
    *,
    offset: int = 0,
    limit: int = 20,
    observed_only: bool = False,
    search: str | None = None,
) -> Page[AlertOut]:
    query = select(Alert)
    if observed_only:
        observed = select(Point.alert_id).where(Point.deleted_at.is_(None))
        query = query.where(Alert.id.in_(observed))
    if search:
        query = query.where(Alert.name.contains(search.strip(), autoescape=True))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    alerts = session.scalars(query.order_by(Alert.id.desc()).offset(offset).limit(limit)).all()
    counts = _counts(session, [a.id for a in alerts])
    items = [AlertOut.model_validate(a).model_copy(update={"n_points": counts.get(a.id, 0)}) for a in alerts]
    return Page[AlertOut](items=items, total=total, offset=offset, limit=limit)


def cone_search(session: Session, ra_deg: float, dec_deg: float, radius_deg: float) -> list[AlertOut]:
    """Alerts within ``radius_deg`` of a position (a Dec band query, then exact distances)."""
    check_coordinates(ra_deg, dec_deg)
    if not 0 < radius_deg <= 10:
        raise InputError("The cone radius must be in (0, 10] degrees.", code="invalid_radius")
    rows = session.scalars(
        select(Alert).where(Alert.dec_deg.between(dec_deg - radius_deg, dec_deg + radius_deg))
    ).all()
    if not rows:
        return []
    ra = np.radians([a.ra_deg for a in rows])
    dec = np.radians([a.dec_deg for a in rows])
    ra0, dec0 = math.radians(ra_deg), math.radians(dec_deg)
    cos_d = np.sin(dec) * math.sin(dec0) + np.cos(dec) * math.cos(dec0) * np.cos(ra - ra0)
    inside = np.degrees(np.arccos(np.clip(cos_d, -1, 1))) <= radius_deg
    hits = [a for a, keep in zip(rows, inside, strict=True) if keep]
    counts = _counts(session, [a.id for a in hits])
    return [AlertOut.model_validate(a).model_copy(update={"n_points": counts.get(a.id, 0)}) for a in hits]
