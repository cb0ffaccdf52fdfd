"""The demo a newcomer sees on a new data folder: a simulated night from three observatories, removable."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import func, select

from cpcs.catalogs.tiles import TileStore
from cpcs.db.models import Alert, Observation, Observatory, Point, Upload, User
from cpcs_system.demo import DEMO_ALERT, remove_demo, seed_demo
from tests.conftest import System


def _count(system: System, model: type) -> int:
    with system.context.db.transaction() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_demo_seeds_a_light_curve_and_goes_away(embedded: System, tmp_path: Path) -> None:
    queued = seed_demo(embedded.context, tmp_path / "demo")
    assert queued >= 12
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with embedded.context.db.transaction() as session:
            pending = session.scalar(
                select(func.count(Observation.id)).where(Observation.status.not_in(["calibrated", "failed"]))
            )
        if pending == 0:
            break
        time.sleep(0.1)
    with embedded.context.db.transaction() as session:
        statuses = session.scalars(select(Observation.status)).all()
        alert = session.scalars(select(Alert).where(Alert.name == DEMO_ALERT)).one()
    assert set(statuses) == {"calibrated"}, statuses
    assert "demo" in (alert.url or "")
    lc = embedded.client.get(
        "/followup/get_alert_lc_data", params={"alert_name": DEMO_ALERT, "hashtag": embedded.observer_token}
    ).json()
    assert len(lc["id"]) == queued
    assert len(set(lc["observatory"])) == 3
    assert -1.0 in lc["magerr"], "the early, faint nights are upper limits"
    detections = [m for m, e in zip(lc["mag"], lc["magerr"], strict=True) if e > 0]
    assert min(detections) < 17.6 < max(detections)  # the rise to ~17 and the decline
    assert all(c.endswith("-sim") for c in lc["catalog"]), "simulated catalogues are named as such"

    users_before = _count(embedded, User)
    removed = remove_demo(embedded.context)
    assert removed["observations"] == queued and removed["observers"] == 3 and removed["tiles"] > 0
    assert (
        _count(embedded, Point) == 0 and _count(embedded, Observation) == 0 and _count(embedded, Upload) == 0
    )
    assert _count(embedded, User) == users_before - 3
    with embedded.context.db.transaction() as session:
        assert (
            session.scalar(select(func.count(Observatory.id)).where(Observatory.name.startswith("Demo"))) == 0
        )
    assert not any(s.endswith("-sim") for s in TileStore(embedded.context.settings.catalogs_dir).surveys())
    assert not any(
        p.is_file() for p in embedded.context.settings.uploads_dir.rglob("*") if ".staging" not in str(p)
    )
