"""Survey footprints, and the cone service never asking Vizier for a survey outside its sky."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from cpcs.catalogs.cone import ConeService
from cpcs.catalogs.coverage import covers, footprint, galactic, outside_coverage
from cpcs.catalogs.surveys import SURVEYS
from cpcs.catalogs.tiles import TileStore

R = 10.0 / 60.0


def test_every_footprint_belongs_to_a_known_survey_and_all_sky_surveys_cover_everything() -> None:
    for name in ("PS1", "SDSS", "SkyMapper", "VST-ATLAS", "OGLE-III"):
        fp = footprint(name)
        assert fp is not None and name in SURVEYS and fp.description and fp.source
    for name in ("GaiaSP", "RefCat2", "APASS", "2MASS", "USNO-B1", "Gaia", "my-site-standards"):
        assert footprint(name) is None
        assert covers(name, 150.0, -60.0, R) and covers(name, 10.0, 85.0, R)


@pytest.mark.parametrize(
    ("survey", "inside", "outside"),
    [
        ("PS1", [(295.0, 30.1), (10.0, -30.5), (200.0, 89.5)], [(150.0, -60.0), (10.0, -35.0), (0.0, -89.0)]),
        ("SDSS", [(180.0, 20.0), (10.0, -25.5)], [(150.0, -60.0), (300.0, -40.0)]),
        ("SkyMapper", [(150.0, -60.0), (10.0, 27.5), (0.0, -89.9)], [(295.0, 30.2), (100.0, 60.0)]),
        ("VST-ATLAS", [(180.0, -15.0), (10.0, -30.0), (330.0, -20.0), (59.0, -39.0)],
         [(100.0, -20.0), (180.0, 10.0), (10.0, -60.0), (280.0, -30.0)]),
        ("OGLE-III", [(80.9, -69.8), (84.0, -66.0), (13.2, -72.8), (270.9, -30.0), (266.4, -29.0)],
         [(150.0, -60.0), (40.0, -72.0), (295.0, 30.1), (200.0, -30.0)]),
    ],
)  # fmt: skip
def test_footprints_include_and_exclude_known_fields(
    survey: str, inside: list[tuple[float, float]], outside: list[tuple[float, float]]
) -> None:
    for ra, dec in inside:
        assert covers(survey, ra, dec, R), (survey, ra, dec)
    for ra, dec in outside:
        assert not covers(survey, ra, dec, R), (survey, ra, dec)


def test_a_cone_reaching_over_the_edge_counts_as_covered() -> None:
    assert not covers("PS1", 10.0, -32.0, 0.5)
    assert covers("PS1", 10.0, -32.0, 1.5)  # reaches -30.5
    # RA boxes wrap through 0h: the southern VST ATLAS area runs from 21.5h to 4h
    assert covers("VST-ATLAS", 0.0, -25.0, R) and covers("VST-ATLAS", 61.0, -25.0, 1.5)
    assert not covers("VST-ATLAS", 62.0, -25.0, 1.0)


def test_galactic_coordinates_match_astropy() -> None:
    rng = np.random.default_rng(3)
    for ra, dec in zip(rng.uniform(0, 360, 20), rng.uniform(-89, 89, 20), strict=True):
        expected = SkyCoord(ra, dec, unit="deg", frame="icrs").galactic
        lon, lat = galactic(float(ra), float(dec))
        assert abs(lat - expected.b.deg) < 1e-6
        assert abs(((lon - expected.l.deg) + 180.0) % 360.0 - 180.0) < 1e-6


def test_outside_coverage_names_the_surveys_a_southern_field_lacks() -> None:
    outside = outside_coverage(SURVEYS, 150.0, -60.0, R)
    assert set(outside) == {"PS1", "SDSS", "VST-ATLAS", "OGLE-III"}
    assert "dec >= -30" in outside["PS1"].description
    assert set(outside_coverage(SURVEYS, 295.00474, 30.13149, R)) == {"SkyMapper", "VST-ATLAS", "OGLE-III"}


def test_a_southern_field_asks_vizier_for_no_ps1_or_sdss_cone(
    store: TileStore, recorded: Any, sky: Any
) -> None:
    fetcher = sky.FakeFetcher()
    service = ConeService(store, online=True, fetcher=fetcher)
    found = service.get_cone(recorded.south_ra, recorded.south_dec, R)
    asked = {call[0] for call in fetcher.calls}
    assert "PS1" not in asked and "SDSS" not in asked
    assert {"SkyMapper", "GaiaSP", "RefCat2", "APASS", "2MASS", "USNO-B1", "Gaia"} <= asked
    assert not asked & {"VST-ATLAS", "OGLE-III"}  # import only: never fetched
    assert list(found) == ["SkyMapper"] and len(found["SkyMapper"]) > 20
    report = service.prefetch(recorded.south_ra, recorded.south_dec, R)
    assert {"PS1", "SDSS", "VST-ATLAS", "OGLE-III"} == set(report.outside)
    assert report.to_dict()["outside"] == report.outside
    # PS1/SDSS were neither fetched nor recorded as missing fetches: nothing is waited on
    assert len({c[0] for c in fetcher.calls} & {"PS1", "SDSS"}) == 0


def test_a_northern_field_still_asks_for_ps1_and_sdss(store: TileStore, recorded: Any, sky: Any) -> None:
    fetcher = sky.FakeFetcher()
    found = ConeService(store, online=True, fetcher=fetcher).get_cone(
        recorded.field_ra, recorded.field_dec, R
    )
    asked = {call[0] for call in fetcher.calls}
    assert {"PS1", "SDSS", "RefCat2", "USNO-B1"} <= asked and "SkyMapper" not in asked
    assert {"PS1", "SDSS", "RefCat2", "USNO-B1"} <= set(found)


def test_stored_stars_outside_a_footprint_are_still_served(store: TileStore, recorded: Any, sky: Any) -> None:
    """The footprint gates the network, not the store: what an operator imported is used."""
    stars = sky.random_stars(
        np.random.default_rng(1), "PS1", recorded.south_ra, recorded.south_dec, R, 30, ("r",)
    )
    sky.store_by_tiles(store, stars, complete=False, source="import")
    fetcher = sky.FakeFetcher()
    found = ConeService(store, online=True, fetcher=fetcher).get_cone(
        recorded.south_ra, recorded.south_dec, R, surveys=["PS1"]
    )
    assert len(found["PS1"]) == 30 and fetcher.calls == []


def test_the_catalog_cache_answers_coverage_and_skips_ps1_over_http(
    store: TileStore, recorded: Any, sky: Any, tmp_path: Any
) -> None:
    from fastapi.testclient import TestClient

    from cpcs.context import Context
    from cpcs.messaging.memory import InProcessBus
    from cpcs.settings import Settings
    from cpcs_catalog_cache.app import create_app

    context = Context(Settings(data_dir=tmp_path / "data"), bus=InProcessBus())
    fetcher = sky.FakeFetcher()
    south = {"ra_deg": recorded.south_ra, "dec_deg": recorded.south_dec, "radius_deg": R}
    with TestClient(create_app(context, ConeService(store, online=True, fetcher=fetcher))) as client:
        coverage = client.get("/api/v1/coverage", params=south)
        cone = client.get("/api/v1/cone", params=south)
        bad = client.get("/api/v1/coverage", params={**south, "dec_deg": -95})
    assert coverage.status_code == 200, coverage.text
    surveys = coverage.json()["surveys"]
    assert set(surveys) == set(SURVEYS)
    assert surveys["PS1"]["covered"] is False and "-30" in surveys["PS1"]["footprint"]
    assert surveys["SkyMapper"]["covered"] is True and surveys["RefCat2"]["footprint"] == "all-sky"
    assert surveys["OGLE-III"]["fetchable"] is False
    assert cone.status_code == 200 and list(cone.json()["catalogues"]) == ["SkyMapper"]
    assert not {c[0] for c in fetcher.calls} & {"PS1", "SDSS"}
    assert bad.status_code == 422 and "dec_deg" in bad.text
