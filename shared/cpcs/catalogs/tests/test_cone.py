"""ConeService: offline cache, online fill through an injected fetcher, failures, warm timing."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from cpcs.catalogs.cone import IMPORT_HINT, ConeService
from cpcs.catalogs.importer import import_catalogue_file
from cpcs.catalogs.model import angular_separation_deg, from_wire, to_wire
from cpcs.catalogs.tiles import TileStore
from cpcs.errors import CalibrationFailed, InputError, ServiceUnavailable

RA0, DEC0 = 295.00474, 30.13149
R10 = 10.0 / 60.0


def test_offline_empty_cache_fails_fast_with_a_clear_message(store: TileStore) -> None:
    service = ConeService(store, online=False)
    started = time.perf_counter()
    with pytest.raises(CalibrationFailed) as err:
        service.get_cone(RA0, DEC0, R10)
    assert time.perf_counter() - started < 1.0
    assert err.value.code == "no_reference_stars"
    assert "not in the local catalogue cache" in err.value.message
    assert IMPORT_HINT in err.value.message == err.value.message
    assert "cpcs catalog import --survey NAME FILE" in err.value.message


def test_offline_serves_imported_stars_within_the_cone(store: TileStore, recorded: Any) -> None:
    import_catalogue_file(store, "APASS", recorded.paths["APASS"])
    import_catalogue_file(store, "2MASS", recorded.paths["2MASS"])
    service = ConeService(store, online=False)
    result = service.get_cone(RA0, DEC0, 3.0 / 60.0)
    assert list(result) == ["APASS", "2MASS"]  # preference order, empty surveys left out
    for cat in result.values():
        sep = angular_separation_deg(RA0, DEC0, cat.ra_deg, cat.dec_deg)
        assert len(cat) > 0 and np.all(sep <= 3.0 / 60.0)
    full = recorded.catalogue("APASS")
    expected = int((angular_separation_deg(RA0, DEC0, full.ra_deg, full.dec_deg) <= 3.0 / 60.0).sum())
    assert len(result["APASS"]) == expected
    only = service.get_cone(RA0, DEC0, 3.0 / 60.0, surveys=["2mass"])
    assert list(only) == ["2MASS"]
    back = from_wire(to_wire(result["APASS"]))  # what the HTTP shell sends
    assert len(back) == len(result["APASS"])
    with pytest.raises(CalibrationFailed):
        service.get_cone(RA0 + 5.0, DEC0, R10)  # cached survey, but not this field


def test_online_fills_missing_tiles_once(store: TileStore, sky: Any) -> None:
    fetcher = sky.FakeFetcher()
    service = ConeService(store, online=True, fetcher=fetcher, timeout_s=3)
    result = service.get_cone(RA0, DEC0, R10, surveys=["APASS", "PS1", "SDSS"])
    assert set(result) == {"APASS", "PS1", "SDSS"}
    assert [c[0] for c in fetcher.calls] == ["APASS", "PS1", "SDSS"]  # one query per survey
    assert fetcher.calls[0][4]["timeout_s"] == 3
    for name, cat in result.items():
        assert np.all(angular_separation_deg(RA0, DEC0, cat.ra_deg, cat.dec_deg) <= R10)
        for ipix in store.tiles_for_cone(RA0, DEC0, R10):
            info = store.info(name, ipix)
            assert info is not None and info.complete and info.source == "vizier"
    assert {"B", "V", "R", "I"} <= set(result["SDSS"].bands)
    n_calls = len(fetcher.calls)
    again = service.get_cone(RA0, DEC0, R10, surveys=["APASS", "PS1", "SDSS"])
    assert len(fetcher.calls) == n_calls  # served from the store now
    assert {k: len(v) for k, v in again.items()} == {k: len(v) for k, v in result.items()}
    offline = ConeService(TileStore(store.root), online=False).get_cone(RA0, DEC0, R10, surveys=["PS1"])
    assert len(offline["PS1"]) == len(result["PS1"])


def test_online_query_covers_the_tiles(store: TileStore, sky: Any) -> None:
    fetcher = sky.FakeFetcher()
    ConeService(store, online=True, fetcher=fetcher).get_cone(RA0, DEC0, R10, surveys=["Gaia"])
    _, q_ra, q_dec, q_radius, _ = fetcher.calls[0]
    for ipix in store.tiles_for_cone(RA0, DEC0, R10):
        c_ra, c_dec = store.tile_corners(ipix)
        assert np.all(angular_separation_deg(q_ra, q_dec, c_ra, c_dec) < q_radius)


def test_online_empty_answer_is_cached_as_empty_tiles(store: TileStore, sky: Any) -> None:
    fetcher = sky.FakeFetcher(empty=True)
    service = ConeService(store, online=True, fetcher=fetcher)
    with pytest.raises(CalibrationFailed) as err:
        service.get_cone(10.0, -20.0, R10, surveys=["SDSS"])  # inside the SDSS envelope, no stars
    assert err.value.code == "no_reference_stars"
    assert len(fetcher.calls) == 1
    with pytest.raises(CalibrationFailed):
        service.get_cone(10.0, -20.0, R10, surveys=["SDSS"])
    assert len(fetcher.calls) == 1  # "no SDSS here" is remembered


def test_online_completes_tiles_filled_by_an_import(store: TileStore, recorded: Any, sky: Any) -> None:
    import_catalogue_file(store, "APASS", recorded.paths["APASS"])
    ipix = store.tile_of(RA0, DEC0).item()
    assert not store.info("APASS", ipix).complete
    fetcher = sky.FakeFetcher()
    result = ConeService(store, online=True, fetcher=fetcher).get_cone(RA0, DEC0, R10, surveys=["APASS"])
    assert len(fetcher.calls) == 1
    info = store.info("APASS", ipix)
    assert info.complete and info.sources[-1] == "vizier"
    assert len(store.read("APASS", ipix)) == 35  # same stars: merged, not duplicated
    assert len(result["APASS"]) > 0


def test_online_failure_without_cache_is_service_unavailable(store: TileStore, sky: Any) -> None:
    service = ConeService(store, online=True, fetcher=sky.FakeFetcher(fail=True))
    with pytest.raises(ServiceUnavailable) as err:
        service.get_cone(RA0, DEC0, R10, surveys=["APASS", "PS1"])
    assert err.value.code == "catalogue_source_unreachable"
    assert "APASS" in err.value.message and "PS1" in err.value.message


def test_online_failure_still_serves_what_is_cached(store: TileStore, recorded: Any, sky: Any) -> None:
    import_catalogue_file(store, "APASS", recorded.paths["APASS"])
    service = ConeService(store, online=True, fetcher=sky.FakeFetcher(fail=True))
    result = service.get_cone(RA0, DEC0, R10, surveys=["APASS", "PS1"])
    assert list(result) == ["APASS"]


def test_truncated_answer_stores_incomplete_tiles_and_the_cone(store: TileStore, sky: Any) -> None:
    fetcher = sky.FakeFetcher(row_limit_hit=True)
    service = ConeService(store, online=True, fetcher=fetcher, row_limit=10)
    result = service.get_cone(RA0, DEC0, R10, surveys=["PS1"])
    assert len(fetcher.calls) == 2  # the tile query, then the cone itself
    assert fetcher.calls[1][3] == pytest.approx(R10 * 1.05)
    assert all(not store.info("PS1", t).complete for t in store.tiles_for_cone(RA0, DEC0, R10))
    assert 0 < len(result["PS1"]) <= 20


def test_prefetch_reports_counts(store: TileStore, sky: Any) -> None:
    offline = ConeService(store, online=False).prefetch(RA0, DEC0, R10, surveys=["APASS"])
    assert offline.counts == {"APASS": 0} and offline.missing_tiles["APASS"]
    service = ConeService(store, online=True, fetcher=sky.FakeFetcher())
    report = service.prefetch(RA0, DEC0, R10, surveys=["APASS", "Gaia"])
    assert report.counts["APASS"] > 0 and report.counts["Gaia"] > 0
    assert report.fetched_tiles["APASS"] >= 1 and not report.errors and not report.missing_tiles
    failing = ConeService(
        TileStore(store.root.parent / "other"), online=True, fetcher=sky.FakeFetcher(fail=True)
    )
    bad = failing.prefetch(RA0, DEC0, R10, surveys=["PS1"])
    assert bad.counts == {"PS1": 0} and "PS1" in bad.errors
    assert bad.to_dict()["errors"]["PS1"]


def test_default_surveys_include_site_surveys(store: TileStore) -> None:
    import_catalogue_file(store, "SiteStd", b"ra,dec,Vmag\n295.0047,30.1315,12.0\n", "std.csv")
    service = ConeService(store, online=False)
    assert list(service.get_cone(RA0, DEC0, R10)) == ["SiteStd"]
    assert list(ConeService(store, online=False, surveys=["SiteStd"]).get_cone(RA0, DEC0, R10)) == ["SiteStd"]


def test_request_validation(store: TileStore) -> None:
    service = ConeService(store, online=False)
    with pytest.raises(InputError) as err:
        service.get_cone(RA0, DEC0, R10, surveys=["NoSuchSurvey"])
    assert err.value.code == "unknown_survey"
    with pytest.raises(InputError) as err:
        service.get_cone(RA0, DEC0, 30.0)
    assert err.value.code == "invalid_cone"
    with pytest.raises(InputError):
        service.get_cone(RA0, 100.0, R10)
    with pytest.raises(InputError):
        service.get_cone(RA0, DEC0, R10, surveys=[])


def test_cone_across_tile_boundary_and_ra_wrap(store: TileStore, rng: np.random.Generator, sky: Any) -> None:
    ra, dec = 0.0, 0.0  # a tile corner and RA = 0/360
    cat = sky.random_stars(rng, "Gaia", ra, dec, 0.5, 2000, bands=("G",))
    sky.store_by_tiles(store, cat)
    result = ConeService(store, online=False).get_cone(ra, dec, 0.3, surveys=["Gaia"])["Gaia"]
    inside = angular_separation_deg(ra, dec, cat.ra_deg, cat.dec_deg) <= 0.3
    assert len(result) == int(inside.sum())
    assert (result.ra_deg > 359).any() and (result.ra_deg < 1).any()
    assert len(set(store.tile_of(result.ra_deg, result.dec_deg).tolist())) >= 4


def test_warm_cone_of_two_surveys_takes_about_a_millisecond(
    store: TileStore, rng: np.random.Generator, sky: Any
) -> None:
    # realistic densities: APASS ~1,500 stars/deg^2 (5 bands), PS1 ~15,000 stars/deg^2 (9 bands)
    for survey, density, bands in (
        ("APASS", 1500, ("B", "V", "g", "r", "i")),
        ("PS1", 15000, ("g", "r", "i", "z", "y", "B", "V", "R", "I")),
    ):
        cat = sky.random_stars(rng, survey, RA0, DEC0, 1.0, int(density * np.pi * 1.0**2), bands=bands)
        sky.store_by_tiles(store, cat)
    service = ConeService(store, online=False)
    first = service.get_cone(RA0, DEC0, R10, surveys=["APASS", "PS1"])  # warms the LRU
    assert len(first["APASS"]) > 50 and len(first["PS1"]) > 700
    n = 200
    started = time.perf_counter()
    for _ in range(n):
        service.get_cone(RA0, DEC0, R10, surveys=["APASS", "PS1"])
    per_call_ms = (time.perf_counter() - started) / n * 1000.0
    print(f"warm 10' cone, APASS+PS1 ({len(first['APASS'])}+{len(first['PS1'])} stars): {per_call_ms:.3f} ms")
    assert per_call_ms < 10.0  # ~0.5-1 ms on the reference machine; loose bound for busy CI


def test_online_gaia_cone_keeps_proper_motions_through_the_store_and_the_wire(
    store: TileStore, sky: Any
) -> None:
    fetcher = sky.FakeFetcher()
    result = ConeService(store, online=True, fetcher=fetcher).get_cone(RA0, DEC0, R10, surveys=["Gaia"])
    gaia = result["Gaia"]
    assert gaia.epoch == 2016.0 and gaia.pmra_mas_yr is not None
    assert np.isfinite(gaia.pmra_mas_yr).all()  # every recorded Gaia star has one
    offline = ConeService(TileStore(store.root), online=False).get_cone(RA0, DEC0, R10, surveys=["Gaia"])[
        "Gaia"
    ]
    assert offline.epoch == 2016.0
    np.testing.assert_array_equal(np.sort(offline.pmdec_mas_yr), np.sort(gaia.pmdec_mas_yr))
    back = from_wire(to_wire(offline))
    assert back.epoch == 2016.0 and back.has_proper_motions
    moved_ra, moved_dec = back.positions_at(2024.6)  # what astrometric refinement does
    shift_mas = angular_separation_deg(back.ra_deg, back.dec_deg, moved_ra, moved_dec) * 3.6e6
    np.testing.assert_allclose(shift_mas, np.hypot(back.pmra_mas_yr, back.pmdec_mas_yr) * 8.6, rtol=1e-6)
