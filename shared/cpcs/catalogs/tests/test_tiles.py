"""The HEALPix tile store: round trip, atomic writes, merge, cone geometry, coverage."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cpcs.catalogs.model import ReferenceCatalogue, angular_separation_deg, concatenate, cone_mask
from cpcs.catalogs.tiles import NSIDE, TileStore
from cpcs.errors import InputError


def one_tile(
    store: TileStore, rng: np.random.Generator, sky: Any, survey: str = "APASS", n: int = 200
) -> tuple[int, ReferenceCatalogue]:
    ipix = store.tile_of(295.0, 30.1).item()
    ra_c, dec_c = store.tile_center(ipix)
    cat = sky.random_stars(rng, survey, ra_c, dec_c, 0.5, n, bands=("B", "V"))
    assert np.all(store.tile_of(cat.ra_deg, cat.dec_deg) == ipix)
    return ipix, cat


def test_geometry_constants(store: TileStore) -> None:
    assert store.nside == NSIDE == 32
    assert store.npix == 12 * 32**2
    assert store.tile_area_deg2 == pytest.approx(41252.96 / 12288, rel=1e-4)


def test_round_trip(store: TileStore, rng: np.random.Generator, sky: Any) -> None:
    ipix, cat = one_tile(store, rng, sky)
    info = store.write("APASS", ipix, cat, "vizier", complete=True)
    assert info.n_stars == 200 and info.complete and info.source == "vizier" and info.bands == ("B", "V")
    fresh = TileStore(store.root)  # another process: no cache
    back = fresh.read("APASS", ipix)
    assert back is not None and len(back) == 200
    assert np.all(np.diff(back.dec_deg) >= 0)  # stored sorted by Dec
    order = np.argsort(cat.dec_deg, kind="stable")
    np.testing.assert_array_equal(back.ra_deg, cat.ra_deg[order])
    np.testing.assert_array_equal(back.mags["V"], cat.mags["V"][order])
    np.testing.assert_array_equal(back.errs["B"], cat.errs["B"][order])
    side = json.loads((store.root / "APASS" / f"{ipix:05d}.json").read_text())
    assert side["n_stars"] == 200 and side["complete"] is True and side["source"] == "vizier"
    assert side["created"] and side["updated"]
    assert json.loads((store.root / "store.json").read_text())["nside"] == 32
    assert store.survey_bands("APASS") == ["B", "V"]
    assert fresh.info("APASS", ipix) == info
    assert store.read("APASS", ipix + 1) is None and store.info("PS1", ipix) is None


def test_empty_tile_is_remembered(store: TileStore) -> None:
    store.write("SDSS", 100, ReferenceCatalogue.empty("SDSS", ["g"]), "vizier", complete=True)
    cat = store.read("SDSS", 100)
    assert cat is not None and len(cat) == 0
    info = store.info("SDSS", 100)
    assert info is not None and info.complete


def test_write_rejects_stars_outside_the_tile(store: TileStore, rng: np.random.Generator, sky: Any) -> None:
    ipix, cat = one_tile(store, rng, sky)
    with pytest.raises(ValueError, match="do not lie in tile"):
        store.write("APASS", ipix + 1, cat, "vizier", complete=True)
    with pytest.raises(ValueError):
        store.write("APASS", store.npix, cat, "vizier", complete=True)
    with pytest.raises(InputError):
        store.write("../evil", ipix, cat, "vizier", complete=True)


def test_cache_is_used_and_invalidated_by_another_writer(
    store: TileStore, rng: np.random.Generator, sky: Any
) -> None:
    ipix, cat = one_tile(store, rng, sky)
    store.write("APASS", ipix, cat, "vizier", complete=True)
    first = store.read("APASS", ipix)
    assert store.read("APASS", ipix) is first  # served from the LRU
    other = TileStore(store.root)
    other.write("APASS", ipix, cat.select(slice(0, 50)), "import:x.csv", complete=False)
    again = store.read("APASS", ipix)
    assert again is not first and len(again) == 50  # file changed: re-read
    info = store.info("APASS", ipix)
    assert info is not None and not info.complete and info.sources == ("vizier", "import:x.csv")
    os.unlink(store.root / "APASS" / f"{ipix:05d}.npz")
    assert store.read("APASS", ipix) is None


def test_damaged_tile_is_treated_as_missing_and_rewritten(
    store: TileStore, rng: np.random.Generator, sky: Any
) -> None:
    ipix, cat = one_tile(store, rng, sky)
    store.write("APASS", ipix, cat, "vizier", complete=True)
    (store.root / "APASS" / f"{ipix:05d}.npz").write_bytes(b"PK\x03\x04 not really a zip")
    fresh = TileStore(store.root)
    assert fresh.read("APASS", ipix) is None
    assert fresh.cone("APASS", 295.0, 30.1, 0.1)[1] == [ipix]  # reported missing
    fresh.write("APASS", ipix, cat, "vizier", complete=True)
    assert len(fresh.read("APASS", ipix)) == 200


def test_lru_respects_its_row_budget(tmp_path: Path, rng: np.random.Generator, sky: Any) -> None:
    store = TileStore(tmp_path, cache_rows=250)
    ipix, cat = one_tile(store, rng, sky)
    store.write("A", ipix, cat, "vizier", True)
    store.write("B", ipix, cat, "vizier", True)
    store.read("A", ipix)
    store.read("B", ipix)
    assert len(store._cache) == 1 and store._cached_rows == 200


def test_failed_write_leaves_the_old_tile_and_no_temp_file(
    store: TileStore, rng: np.random.Generator, sky: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ipix, cat = one_tile(store, rng, sky)
    store.write("APASS", ipix, cat, "vizier", complete=True)
    before = (store.root / "APASS" / f"{ipix:05d}.npz").read_bytes()

    def broken_savez(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        store.write("APASS", ipix, cat.select(slice(0, 10)), "vizier", complete=True)
    monkeypatch.undo()
    assert (store.root / "APASS" / f"{ipix:05d}.npz").read_bytes() == before
    assert not [p for p in (store.root / "APASS").iterdir() if p.name.endswith(".tmp")]
    assert len(TileStore(store.root).read("APASS", ipix)) == 200


def test_concurrent_reader_never_sees_half_a_tile(
    store: TileStore, rng: np.random.Generator, sky: Any
) -> None:
    ipix, cat = one_tile(store, rng, sky, n=3000)
    small = cat.select(slice(0, 7))
    store.write("APASS", ipix, cat, "vizier", complete=True)
    seen: set[int] = set()
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        reader_store = TileStore(store.root)
        while not stop.is_set():
            try:
                reader_store.clear_cache()
                tile = reader_store.read("APASS", ipix)
                assert tile is not None
                seen.add(len(tile))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
                return

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for k in range(30):
            store.write("APASS", ipix, small if k % 2 else cat, "vizier", complete=True)
    finally:
        stop.set()
        thread.join(10)
    assert not errors, errors
    assert seen <= {3000, 7} and seen


def test_merge_deduplicates_within_half_an_arcsec(
    store: TileStore, rng: np.random.Generator, sky: Any
) -> None:
    ipix, cat = one_tile(store, rng, sky, n=100)
    store.write("APASS", ipix, cat, "vizier", complete=True)
    dec_shift = np.array([0.3, 0.7]) / 3600.0  # one within 0.5", one beyond
    near = ReferenceCatalogue(
        "APASS",
        cat.ra_deg[:2],
        cat.dec_deg[:2] + dec_shift,
        {"V": [10.0, 11.0], "g": [10.5, np.nan]},
        {"V": [0.001, 0.002], "g": [0.003, np.nan]},
    )
    result = store.merge("APASS", ipix, near, "import:mine.csv")
    assert (result.n_updated, result.n_added) == (1, 1)
    tile = store.read("APASS", ipix)
    assert tile is not None and len(tile) == 101
    assert tile.bands == ["B", "V", "g"]
    k = int(np.argmin(angular_separation_deg(cat.ra_deg[0], cat.dec_deg[0], tile.ra_deg, tile.dec_deg)))
    assert tile.mags["V"][k] == 10.0 and tile.errs["V"][k] == 0.001  # updated
    assert tile.mags["B"][k] == cat.mags["B"][0]  # band the import lacks: kept
    assert tile.mags["g"][k] == 10.5
    assert np.isnan(tile.mags["g"]).sum() == 100  # stars without g in the import
    info = result.info
    assert info.complete  # stays complete
    assert info.sources == ("vizier", "import:mine.csv")
    again = store.merge("APASS", ipix, near, "import:mine.csv")  # idempotent
    assert again.n_added == 0 and again.n_updated == 2
    assert len(store.read("APASS", ipix)) == 101


def test_merge_into_missing_tile_and_self_duplicates(
    store: TileStore, rng: np.random.Generator, sky: Any
) -> None:
    ipix, cat = one_tile(store, rng, sky, n=20)
    doubled = ReferenceCatalogue(
        "Site",
        np.concatenate([cat.ra_deg, cat.ra_deg]),
        np.concatenate([cat.dec_deg, cat.dec_deg + 0.1 / 3600]),
        {"V": np.concatenate([cat.mags["V"], cat.mags["V"]])},
    )
    result = store.merge("Site", ipix, doubled, "import:a.csv")
    assert result.n_added == 20 and not result.info.complete
    assert store.coverage("Site").custom


def _stars_found(store: TileStore, survey: str, ra: float, dec: float, radius: float) -> ReferenceCatalogue:
    cat, missing, _ = store.cone(survey, ra, dec, radius)
    assert not missing
    assert cat is not None
    return cat


@pytest.mark.parametrize(
    ("ra", "dec", "radius"),
    [
        (295.00474, 30.13149, 1.2),  # several tiles
        (0.02, 5.0, 0.4),  # RA = 0/360
        (359.98, -3.0, 0.3),
        (123.0, 89.8, 0.5),  # around the north pole
        (10.0, -89.95, 0.2),  # at the south pole
        (45.0, 41.81, 0.25),  # a base-pixel boundary
    ],
)
def test_cones_across_tile_boundaries_wrap_and_poles(
    store: TileStore, rng: np.random.Generator, sky: Any, ra: float, dec: float, radius: float
) -> None:
    cat = sky.random_stars(rng, "PS1", ra, dec, radius * 1.5, 3000, bands=("g",))
    sky.store_by_tiles(store, cat)
    tiles = store.tiles_for_cone(ra, dec, radius)
    inside = cone_mask(cat, ra, dec, radius)
    assert set(store.tile_of(cat.ra_deg[inside], cat.dec_deg[inside]).tolist()) <= set(tiles)
    found = _stars_found(store, "PS1", ra, dec, radius)
    assert len(found) == int(inside.sum()) > 0
    key = lambda c: sorted(zip(np.round(c.ra_deg, 9), np.round(c.dec_deg, 9), strict=True))  # noqa: E731
    assert key(found) == key(cat.select(inside))


def test_cone_reports_missing_and_partial_tiles(store: TileStore, rng: np.random.Generator, sky: Any) -> None:
    ra, dec, radius = 0.0, 0.0, 1.0  # a tile corner: several tiles
    tiles = store.tiles_for_cone(ra, dec, radius)
    assert len(tiles) >= 4
    cat = sky.random_stars(rng, "APASS", ra, dec, radius, 500)
    pix = store.tile_of(cat.ra_deg, cat.dec_deg)
    store.write("APASS", tiles[0], cat.select(pix == tiles[0]), "vizier", complete=True)
    store.write("APASS", tiles[1], cat.select(pix == tiles[1]), "import:f.xml", complete=False)
    found, missing, partial = store.cone("APASS", ra, dec, radius)
    assert found is not None
    assert missing == tiles[2:] and partial == [tiles[1]]
    assert store.cone("PS1", ra, dec, radius)[0] is None


def test_enclosing_cone_covers_the_tiles(store: TileStore) -> None:
    tiles = store.tiles_for_cone(295.0, 30.1, 1.0)
    ra, dec, radius = store.enclosing_cone(tiles)
    for t in tiles:
        c_ra, c_dec = store.tile_corners(t)
        assert np.all(angular_separation_deg(ra, dec, c_ra, c_dec) < radius)
    single = store.enclosing_cone([tiles[0]])
    assert 0.9 < single[2] < 1.6  # a 1.8 deg tile


@pytest.mark.parametrize(
    ("ra", "dec", "radius"), [(np.nan, 0, 1), (0, 91, 1), (0, 0, 0), (0, 0, -1), (0, 0, 181), ("x", 0, 1)]
)
def test_invalid_cones(store: TileStore, ra: Any, dec: Any, radius: Any) -> None:
    with pytest.raises(InputError) as err:
        store.tiles_for_cone(ra, dec, radius)
    assert err.value.code == "invalid_cone"


def test_surveys_and_coverage(store: TileStore, rng: np.random.Generator, sky: Any) -> None:
    assert store.surveys() == []
    cat = sky.random_stars(rng, "2MASS", 10.0, 10.0, 1.0, 400, bands=("J", "K"))
    sky.store_by_tiles(store, cat)
    centre = store.tile_of(10.0, 10.0).item()
    site = cat.select(store.tile_of(cat.ra_deg, cat.dec_deg) == centre).with_survey("Site")
    store.merge("Site", centre, site, "import:s.csv")
    assert store.surveys() == ["2MASS", "Site"]
    cov = store.coverage("2MASS")
    assert cov.n_tiles == len(set(store.tile_of(cat.ra_deg, cat.dec_deg).tolist()))
    assert cov.n_stars == 400 and cov.n_complete == cov.n_tiles and not cov.custom
    assert cov.area_deg2 == pytest.approx(cov.n_tiles * store.tile_area_deg2)
    d = cov.to_dict()
    assert d["order"] == "nested" and len(d["tiles"]) == cov.n_tiles
    json.dumps(d)
    assert "tiles" not in cov.to_dict(with_tiles=False)
    assert store.coverage("Nothing").n_tiles == 0


def test_store_refuses_another_nside(store: TileStore, rng: np.random.Generator, sky: Any) -> None:
    ipix, cat = one_tile(store, rng, sky)
    store.write("APASS", ipix, cat, "vizier", True)
    with pytest.raises(ValueError, match="nside"):
        TileStore(store.root, nside=64)


# --------------------------------------------------------------------------------------------------
# Proper motions and epochs


def with_motions(
    cat: ReferenceCatalogue, rng: np.random.Generator, epoch: float | None = 2016.0
) -> ReferenceCatalogue:
    n = len(cat)
    pmra = rng.normal(0.0, 20.0, n)
    pmdec = rng.normal(0.0, 20.0, n)
    pmra[::7] = np.nan  # two-parameter solutions: no proper motion
    pmdec[::7] = np.nan
    return ReferenceCatalogue("Gaia", cat.ra_deg, cat.dec_deg, cat.mags, cat.errs, pmra, pmdec, epoch)


def test_round_trip_keeps_proper_motions_and_epoch(
    store: TileStore, rng: np.random.Generator, sky: Any
) -> None:
    ipix, plain = one_tile(store, rng, sky, survey="Gaia")
    cat = with_motions(plain, rng)
    store.write("Gaia", ipix, cat, "vizier", complete=True)
    back = TileStore(store.root).read("Gaia", ipix)
    assert back is not None and back.epoch == 2016.0 and back.has_proper_motions
    assert back.pmra_mas_yr is not None and back.pmdec_mas_yr is not None
    order = np.argsort(cat.dec_deg, kind="stable")
    np.testing.assert_array_equal(back.pmra_mas_yr, np.asarray(cat.pmra_mas_yr)[order])
    np.testing.assert_array_equal(back.pmdec_mas_yr, np.asarray(cat.pmdec_mas_yr)[order])
    with np.load(store.root / "Gaia" / f"{ipix:05d}.npz") as npz:
        assert {"pmra", "pmdec"} <= set(npz.files)
        assert json.loads(str(npz["meta"]))["epoch"] == 2016.0
    side = json.loads((store.root / "Gaia" / f"{ipix:05d}.json").read_text())
    assert side["epoch"] == 2016.0 and side["proper_motions"] is True
    info = store.info("Gaia", ipix)
    assert info is not None and info.n_stars == 200  # the manifest is unchanged otherwise
    cone, _, _ = TileStore(store.root).cone("Gaia", *store.tile_center(ipix), 0.3)
    assert cone is not None and cone.epoch == 2016.0 and cone.has_proper_motions


def test_tiles_without_proper_motions_have_no_pm_columns(
    store: TileStore, rng: np.random.Generator, sky: Any
) -> None:
    ipix, cat = one_tile(store, rng, sky)
    store.write("APASS", ipix, cat, "vizier", complete=True)
    with np.load(store.root / "APASS" / f"{ipix:05d}.npz") as npz:
        assert "pmra" not in npz.files and "pmdec" not in npz.files
        assert "epoch" not in json.loads(str(npz["meta"]))
    back = TileStore(store.root).read("APASS", ipix)
    assert back is not None and back.pmra_mas_yr is None and back.epoch is None


def write_old_tile(store: TileStore, survey: str, ipix: int, cat: ReferenceCatalogue) -> None:
    """A tile exactly as the store wrote it before proper motions and epochs existed."""
    directory = store.root / survey
    directory.mkdir(parents=True, exist_ok=True)
    (store.root / "store.json").write_text(json.dumps({"format": 1, "nside": 32, "order": "nested"}))
    meta = {
        "survey": survey,
        "ipix": ipix,
        "n_stars": len(cat),
        "source": "vizier",
        "sources": ["vizier"],
        "complete": True,
        "created": "2024-05-01T00:00:00+00:00",
        "updated": "2024-05-01T00:00:00+00:00",
        "bands": cat.bands,
    }
    order = np.argsort(cat.dec_deg, kind="stable")
    arrays: dict[str, np.ndarray] = {
        "meta": np.array(json.dumps(meta)),
        "ra": cat.ra_deg[order],
        "dec": cat.dec_deg[order],
    }
    for k, band in enumerate(cat.bands):
        arrays[f"mag_{k}"] = cat.mags[band][order]
        arrays[f"err_{k}"] = cat.errs[band][order]
    np.savez(directory / f"{ipix:05d}.npz", **arrays)  # type: ignore[arg-type]
    (directory / f"{ipix:05d}.json").write_text(json.dumps(meta))


def test_old_tiles_still_load_and_take_proper_motions_on_merge(
    store: TileStore, rng: np.random.Generator, sky: Any
) -> None:
    ipix, plain = one_tile(store, rng, sky, survey="Gaia", n=50)
    write_old_tile(store, "Gaia", ipix, plain)
    old = TileStore(store.root).read("Gaia", ipix)
    assert old is not None and len(old) == 50 and old.epoch is None and old.pmra_mas_yr is None
    info = store.info("Gaia", ipix)
    assert info is not None and info.complete
    # a Vizier answer with proper motions: the same 50 stars plus 10 new ones
    extra = sky.random_stars(rng, "Gaia", *store.tile_center(ipix), 0.3, 10, bands=("B", "V"))
    fresh = with_motions(concatenate([plain, extra]), rng)
    result = store.merge("Gaia", ipix, fresh, "vizier", complete=True)
    assert (result.n_updated, result.n_added) == (50, 10)
    tile = TileStore(store.root).read("Gaia", ipix)
    assert tile is not None and len(tile) == 60 and tile.epoch == 2016.0
    assert tile.pmra_mas_yr is not None and tile.pmdec_mas_yr is not None
    for k in range(len(fresh)):
        j = int(
            np.argmin(angular_separation_deg(fresh.ra_deg[k], fresh.dec_deg[k], tile.ra_deg, tile.dec_deg))
        )
        np.testing.assert_array_equal(
            [tile.pmra_mas_yr[j], tile.pmdec_mas_yr[j]],
            [np.asarray(fresh.pmra_mas_yr)[k], np.asarray(fresh.pmdec_mas_yr)[k]],
        )


def test_merge_keeps_stored_proper_motions_and_fills_new_ones(
    store: TileStore, rng: np.random.Generator, sky: Any
) -> None:
    ipix, plain = one_tile(store, rng, sky, survey="Gaia", n=30)
    stored = with_motions(plain, rng)
    store.write("Gaia", ipix, stored, "vizier", complete=True)
    # an import without proper motions, matching the first 3 stars and adding 2
    extra = sky.random_stars(rng, "Gaia", *store.tile_center(ipix), 0.3, 2, bands=("V",))
    incoming = concatenate([plain.select([0, 1, 2]), extra]).at_epoch(2016.0)
    result = store.merge("Gaia", ipix, incoming, "import:x.xml")
    assert (result.n_updated, result.n_added) == (3, 2)
    tile = store.read("Gaia", ipix)
    assert tile is not None and tile.pmra_mas_yr is not None and tile.pmdec_mas_yr is not None
    assert tile.epoch == 2016.0
    for k in range(30):
        j = int(
            np.argmin(angular_separation_deg(stored.ra_deg[k], stored.dec_deg[k], tile.ra_deg, tile.dec_deg))
        )
        np.testing.assert_array_equal(tile.pmra_mas_yr[j], np.asarray(stored.pmra_mas_yr)[k])  # kept
    for k in range(2):
        j = int(
            np.argmin(angular_separation_deg(extra.ra_deg[k], extra.dec_deg[k], tile.ra_deg, tile.dec_deg))
        )
        assert np.isnan(tile.pmra_mas_yr[j]) and np.isnan(tile.pmdec_mas_yr[j])
    # duplicates inside an incoming catalogue keep the first star's proper motion
    twice = with_motions(concatenate([extra, extra.select([0])]), rng)
    assert len(_dedupe(twice)) == 2


def _dedupe(cat: ReferenceCatalogue) -> ReferenceCatalogue:
    from cpcs.catalogs.tiles import _dedupe_within

    out = _dedupe_within(cat, 0.5 / 3600.0)
    assert out.pmra_mas_yr is not None
    np.testing.assert_array_equal(out.pmra_mas_yr, np.asarray(cat.pmra_mas_yr)[: len(out)])
    return out


def test_merge_moves_incoming_stars_to_the_tile_epoch(
    store: TileStore, rng: np.random.Generator, sky: Any
) -> None:
    ipix, plain = one_tile(store, rng, sky, survey="Gaia", n=20)
    stored = with_motions(plain, rng)
    stored = ReferenceCatalogue(
        "Gaia",
        stored.ra_deg,
        stored.dec_deg,
        stored.mags,
        stored.errs,
        np.asarray(stored.pmra_mas_yr) * 50.0,  # fast movers: ~1" per 1000 mas/yr and year
        np.asarray(stored.pmdec_mas_yr) * 50.0,
        2016.0,
    )
    store.write("Gaia", ipix, stored, "vizier", complete=True)
    # the same stars at epoch 2000: several arcsec away, yet recognised once moved back to 2016
    result = store.merge("Gaia", ipix, stored.at_epoch(2000.0), "import:j2000.csv")
    assert (result.n_updated, result.n_added) == (20, 0)
    tile = store.read("Gaia", ipix)
    assert tile is not None and len(tile) == 20 and tile.epoch == 2016.0
