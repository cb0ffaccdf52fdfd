"""A southern field through the whole system: the stored AUTO choice says why PS1 and SDSS were not tried."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cpcs.catalogs.importer import import_catalogue_file
from cpcs.catalogs.tiles import TileStore
from cpcs.simulation.catalogue_simulator import simulate_field
from cpcs.simulation.reference_files import write_reference_tables
from tests.conftest import FIELD_DEC_DEG, FIELD_RA_DEG, System

SOUTH_RA, SOUTH_DEC = 150.0, -60.0


def _alert(system: System, name: str, ra: float, dec: float) -> None:
    created = system.client.post(
        "/api/v1/alerts",
        json={"name": name, "ra_deg": ra, "dec_deg": dec},
        headers={"Authorization": f"Bearer {system.observer_token}"},
    )
    assert created.status_code == 201, created.text


def test_southern_choice_records_ps1_and_sdss_outside_coverage_northern_uses_them(
    embedded: System, tmp_path: Path
) -> None:
    system = embedded
    store = TileStore(system.context.settings.catalogs_dir)
    south = simulate_field(41, n_stars=400, ra_deg=SOUTH_RA, dec_deg=SOUTH_DEC, target="bright")
    tables = write_reference_tables(south, tmp_path / "south")
    import_catalogue_file(store, "GaiaSP", tables["GaiaSP"], tables["GaiaSP"].name)  # no PS1 down there
    north = simulate_field(42, n_stars=400, ra_deg=FIELD_RA_DEG, dec_deg=FIELD_DEC_DEG, target="bright")
    system.import_field(north, tmp_path / "north")  # PS1 and GaiaSP

    _alert(system, "ivo://South-2026a", SOUTH_RA, SOUTH_DEC)
    _alert(system, "ivo://Gaia16aye", FIELD_RA_DEG, FIELD_DEC_DEG)
    rows = np.arange(south.ra_deg.size)
    southern = system.calibrate_rows("ivo://South-2026a", south, rows, mjd="61000.1")["calibration"]
    northern = system.calibrate_rows("ivo://Gaia16aye", north, np.arange(north.ra_deg.size), mjd="61000.2")[
        "calibration"
    ]

    assert southern["survey"] == "GaiaSP"
    reasons = {a["survey"]: a["reason"] for a in southern["alternatives"] if a["band"] == "*"}
    assert set(reasons) == {"PS1", "SDSS"}
    assert reasons["PS1"].startswith("not tried: outside PS1 coverage") and "-30" in reasons["PS1"]
    assert reasons["SDSS"].startswith("not tried: outside SDSS coverage")

    tried_north = {a["survey"] for a in northern["alternatives"] if a["band"] != "*"}
    assert "PS1" in tried_north
    assert not any(a["survey"] in ("PS1", "SDSS") and a["band"] == "*" for a in northern["alternatives"])
    assert [a["survey"] for a in northern["alternatives"] if a["band"] == "*"] == ["SkyMapper"]
