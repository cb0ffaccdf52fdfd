"""Fixtures: the embedded system served by uvicorn, the alert created and its reference stars imported."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cpcs.client.tests.live_server import ALERT, LiveSystem, ServerThread
from cpcs.settings import Settings
from cpcs.simulation.catalogue_simulator import SimulatedField, simulate_field
from tests.conftest import FIELD_DEC_DEG, FIELD_RA_DEG, start_system


@pytest.fixture(scope="session")
def field() -> SimulatedField:
    return simulate_field(7, n_stars=300, ra_deg=FIELD_RA_DEG, dec_deg=FIELD_DEC_DEG, target="bright")


@pytest.fixture
def live(tmp_path: Path, field: SimulatedField) -> Iterator[LiveSystem]:
    """The whole system on a loopback port, the alert created and its reference stars imported."""
    listener = ServerThread()
    settings = Settings(
        data_dir=tmp_path / "data", retry_base_s=0.05, outbox_poll_s=0.05, public_url=listener.url
    )
    system = start_system(settings)
    system.import_field(field, tmp_path / "refs")
    created = system.client.post(
        "/api/v1/alerts",
        json={"name": ALERT, "ra_deg": FIELD_RA_DEG, "dec_deg": FIELD_DEC_DEG},
        headers={"Authorization": f"Bearer {system.observer_token}"},
    )
    assert created.status_code == 201, created.text
    assert system.assembly.app is not None
    try:
        with listener.serve(system.assembly.app):
            yield LiveSystem(system, listener.url)
    finally:
        system.client.close()
        system.assembly.stop()
