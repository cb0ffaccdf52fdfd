"""Cached tiles carry their fetch date and release; stale fetched tiles can be fetched again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cpcs.catalogs.cone import ConeService
from cpcs.catalogs.surveys import SURVEYS
from cpcs.catalogs.tiles import TileStore
from cpcs.errors import ServiceUnavailable

RA0, DEC0, R10 = 295.00474, 30.13149, 10.0 / 60.0  # the recorded Vizier answers' field


def _age(store: TileStore, survey: str, fetched: str) -> None:
    """Backdate the fetch date of every stored tile of ``survey`` (as if fetched long ago)."""
    for path in (store.root / survey).glob("*.json"):
        if path.name == "survey.json":
            continue
        meta = json.loads(path.read_text())
        meta["fetched"] = fetched
        path.write_text(json.dumps(meta))
    for path in (store.root / survey).glob("*.npz"):
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        meta = json.loads(str(arrays["meta"]))
        meta["fetched"] = fetched
        arrays["meta"] = np.array(json.dumps(meta))
        np.savez(path, **arrays)
    store.clear_cache()


def test_fetched_tiles_carry_their_date_and_release(store: TileStore, sky: Any) -> None:
    service = ConeService(store, online=True, fetcher=sky.FakeFetcher())
    service.get_cone(RA0, DEC0, R10, surveys=["APASS"])
    tiles = service.provenance(RA0, DEC0, R10, ["APASS"])["APASS"]
    assert tiles and all(t["release"] == SURVEYS["APASS"].vizier_table for t in tiles)
    assert all(t["fetched"] and t["fetched"].startswith("20") for t in tiles)


def test_refresh_refetches_only_stale_fetched_tiles(store: TileStore, sky: Any) -> None:
    fetcher = sky.FakeFetcher()
    service = ConeService(store, online=True, fetcher=fetcher)
    service.get_cone(RA0, DEC0, R10, surveys=["APASS", "PS1"])
    _age(store, "APASS", "2020-01-01T00:00:00+00:00")
    n_apass = len(store.stored_tiles("APASS"))
    calls = len(fetcher.calls)

    report = service.refresh(max_age_days=30, surveys=["APASS", "PS1"])

    assert report.stale == {"APASS": n_apass} and report.refreshed == {"APASS": n_apass}
    assert len(fetcher.calls) == calls + n_apass  # one query per stale tile, none for fresh PS1
    fresh = service.provenance(RA0, DEC0, R10, ["APASS"])["APASS"]
    assert all(t["fetched"] > "2020-01-02" for t in fresh)
    assert service.refresh(max_age_days=30, surveys=["APASS"]).stale == {}


def test_refresh_offline_says_what_is_stale_and_how_to_fix_it(store: TileStore, sky: Any) -> None:
    ConeService(store, online=True, fetcher=sky.FakeFetcher()).get_cone(RA0, DEC0, R10, surveys=["APASS"])
    _age(store, "APASS", "2020-01-01T00:00:00+00:00")
    before = {p.name: p.read_bytes() for p in (store.root / "APASS").iterdir() if p.is_file()}
    offline = ConeService(TileStore(store.root), online=False)
    with pytest.raises(ServiceUnavailable) as raised:
        offline.refresh(max_age_days=30, surveys=["APASS"])
    assert raised.value.code == "catalogue_offline"
    assert "APASS: " in raised.value.message and "CPCS_CATALOG_ONLINE=true" in raised.value.message
    after = {p.name: p.read_bytes() for p in (store.root / "APASS").iterdir() if p.is_file()}
    assert after == before


def test_a_failed_refresh_keeps_the_old_tiles(store: TileStore, sky: Any) -> None:
    ConeService(store, online=True, fetcher=sky.FakeFetcher()).get_cone(RA0, DEC0, R10, surveys=["APASS"])
    _age(store, "APASS", "2020-01-01T00:00:00+00:00")
    failing = ConeService(TileStore(store.root), online=True, fetcher=sky.FakeFetcher(fail=True))
    report = failing.refresh(max_age_days=30, surveys=["APASS"])
    assert report.refreshed == {"APASS": 0} and "Vizier did not answer" in report.errors["APASS"]
    assert len(failing.get_cone(RA0, DEC0, R10, surveys=["APASS"])["APASS"]) > 0


def test_the_cone_answer_names_the_tiles_fetch_dates_and_releases(
    store: TileStore, sky: Any, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from cpcs.context import Context
    from cpcs.messaging.memory import InProcessBus
    from cpcs.settings import Settings
    from cpcs_catalog_cache.app import create_app

    context = Context(Settings(data_dir=tmp_path / "data"), bus=InProcessBus())
    cones = ConeService(store, online=True, fetcher=sky.FakeFetcher())
    with TestClient(create_app(context, cones)) as client:
        answer = client.get("/api/v1/cone", params={"ra_deg": RA0, "dec_deg": DEC0, "radius_deg": 0.1})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body["tiles"]) == set(body["catalogues"]) and body["tiles"]
    for survey, tiles in body["tiles"].items():
        assert tiles and all(t["release"] == SURVEYS[survey].vizier_table and t["fetched"] for t in tiles)
