"""The housekeeping trims finished deliveries and dry-run versions past their age, and nothing else."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Boolean, DateTime, Float, Integer, String, Text, create_engine, select
from sqlalchemy.orm import Session

from cpcs.context import Context
from cpcs.db.delivery_models import Delivery, DeliveryAttempt
from cpcs.db.migrate import upgrade
from cpcs.db.models import Base, Calibration, CalibrationRequest, Point
from cpcs.housekeeping import Housekeeper
from cpcs.messaging.memory import InProcessBus
from cpcs.settings import Settings

NOW = dt.datetime.now(dt.UTC)
OLD = NOW - dt.timedelta(days=400)
RECENT = NOW - dt.timedelta(days=10)


def _row(model: type[Base], **given: Any) -> Base:
    """A row of ``model`` with every required column filled with a plain value (the test's own rows
    only; foreign keys are not enforced on this engine, so the rows need no parents)."""
    values: dict[str, Any] = {}
    for column in model.__table__.columns:
        if column.primary_key or column.nullable or column.default is not None or column.name in given:
            continue
        kind = column.type
        values[column.name] = (
            1
            if isinstance(kind, Integer)
            else 0.0
            if isinstance(kind, Float)
            else "x"
            if isinstance(kind, String | Text)
            else NOW
            if isinstance(kind, DateTime)
            else False
            if isinstance(kind, Boolean)
            else {}
        )
    return model(**{**values, **given})


@pytest.fixture
def database(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'cpcs.db'}"
    upgrade(url)
    return url


def _populate(url: str) -> None:
    with Session(create_engine(url)) as session:  # no foreign-key pragma: parents are not needed
        for cid, params, made in [
            (1, {"dry_run": True}, OLD),  # trimmed
            (2, {"dry_run": True}, RECENT),  # too recent
            (3, {"dry_run": False}, OLD),  # real version
            (4, {"dry_run": True}, OLD),  # a point refers to it: kept
        ]:
            session.add(
                _row(Calibration, id=cid, observation_id=cid, version=1, params=params, created_at=made)
            )
            session.add(
                _row(CalibrationRequest, observation_id=cid, params_key=f"k{cid}", calibration_id=cid)
            )
        session.add(_row(Point, observation_id=4, calibration_id=4))
        for did, status, made, delivered in [
            (1, "delivered", OLD, OLD),  # trimmed
            (2, "failed", OLD, None),  # trimmed
            (3, "pending", OLD, None),  # still to do: kept
            (4, "delivered", OLD, RECENT),  # finished recently: kept
        ]:
            session.add(
                _row(
                    Delivery,
                    id=did,
                    calibration_id=3,
                    target_id=did,
                    status=status,
                    created_at=made,
                    delivered_at=delivered,
                )
            )
            session.add(_row(DeliveryAttempt, delivery_id=did, number=1, started_at=made))
        session.commit()


def _housekeeper(tmp_path: Path, url: str, **settings: Any) -> Housekeeper:
    context = Context(Settings(database_url=url, data_dir=tmp_path / "data", **settings), bus=InProcessBus())
    return Housekeeper(context)


def test_trims_what_is_old_and_finished_and_keeps_the_rest(tmp_path: Path, database: str) -> None:
    _populate(database)
    removed = _housekeeper(tmp_path, database).run_once()
    with Session(create_engine(database)) as session:
        calibrations = set(session.scalars(select(Calibration.id)))
        requests = set(session.scalars(select(CalibrationRequest.calibration_id)))
        deliveries = set(session.scalars(select(Delivery.id)))
        attempts = set(session.scalars(select(DeliveryAttempt.delivery_id)))
    assert calibrations == {2, 3, 4}
    assert requests == {2, 3, 4}
    assert deliveries == {3, 4}
    assert attempts == {3, 4}
    assert removed == 3


def test_zero_retention_keeps_everything(tmp_path: Path, database: str) -> None:
    _populate(database)
    keeper = _housekeeper(tmp_path, database, delivery_retention_days=0, dry_run_version_retention_days=0)
    assert keeper.run_once() == 0
    with Session(create_engine(database)) as session:
        assert len(session.scalars(select(Calibration.id)).all()) == 4
        assert len(session.scalars(select(Delivery.id)).all()) == 4
