"""Fixtures for cross-service tests: an embedded system on a temporary data folder."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from cpcs.catalogs.importer import import_catalogue_file
from cpcs.catalogs.tiles import TileStore
from cpcs.context import Context
from cpcs.db import migrate
from cpcs.domain.accounts import add_user
from cpcs.settings import Settings
from cpcs.simulation.catalogue_simulator import SimulatedField, simulate_field, to_sextractor_ascii
from cpcs.simulation.reference_files import write_reference_tables
from cpcs_system.launcher import Assembly, assemble_embedded

FIELD_RA_DEG = 295.00474
FIELD_DEC_DEG = 30.13149


@dataclass
class System:
    client: TestClient
    context: Context
    assembly: Assembly
    admin_token: str
    observer_token: str
    other_token: str

    def import_field(self, field: SimulatedField, folder: Path) -> None:
        store = TileStore(self.context.settings.catalogs_dir)
        for survey, path in write_reference_tables(field, folder).items():
            import_catalogue_file(store, survey, path, path.name)

    def calibrate_rows(
        self, alert: str, field: SimulatedField, rows: np.ndarray, *, timeout_s: float = 60, **form: str
    ) -> dict[str, Any]:
        """Upload ``rows`` of ``field`` as the observer's catalogue (v1) and wait for ``calibrated``."""
        catalogue = to_sextractor_ascii(
            field.ra_deg[rows], field.dec_deg[rows], field.mag[rows], field.magerr[rows]
        )
        headers = {"Authorization": f"Bearer {self.observer_token}"}
        accepted = self.client.post(
            "/api/v1/uploads",
            data={"alert": alert, "exptime_s": "60", **form},
            files={"file": ("frame.cat", catalogue.encode())},
            headers=headers,
        )
        assert accepted.status_code == 202, accepted.text
        deadline = time.monotonic() + timeout_s
        while True:
            status: dict[str, Any] = self.client.get(accepted.json()["status_url"], headers=headers).json()
            if status["status"] in ("calibrated", "failed", "error"):
                break
            assert time.monotonic() < deadline, status
            time.sleep(0.05)
        assert status["status"] == "calibrated", status
        return status


def start_system(settings: Settings) -> System:
    """The embedded system on ``settings``, with an admin and two observers."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.sqlalchemy_url)
    context = Context(settings)
    with context.db.transaction() as session:
        admin = add_user(session, "admin", observatory="admin", role="admin")
        observer = add_user(session, "K. Rybicki", observatory="Ostrowik 0.6m", lon_deg=21.4, lat_deg=52.1)
        other = add_user(session, "L. Hardy", observatory="pt5m La Palma", lon_deg=-17.9, lat_deg=28.8)
    assembly = assemble_embedded(context)
    assembly.start_background()
    assert assembly.app is not None
    client = TestClient(assembly.app, raise_server_exceptions=False)
    return System(client, context, assembly, admin.token, observer.token, other.token)


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[System]:
    settings = Settings(data_dir=tmp_path / "data", retry_base_s=0.05, outbox_poll_s=0.05, legacy_wait_s=30)
    system = start_system(settings)
    try:
        yield system
    finally:
        system.client.close()
        system.assembly.stop()


@pytest.fixture(scope="session")
def gaia16aye_field() -> SimulatedField:
    """A simulated field around Gaia16aye with a bright target at the alert position."""
    return simulate_field(7, n_stars=400, ra_deg=FIELD_RA_DEG, dec_deg=FIELD_DEC_DEG, target="bright")
