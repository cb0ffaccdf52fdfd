"""Fixtures of the catalogue tests: recorded Vizier answers, a tile store, a fake fetcher."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.table import Table

from cpcs.catalogs.model import ReferenceCatalogue, cone_mask
from cpcs.catalogs.surveys import SURVEYS, SurveyDefinition
from cpcs.catalogs.tiles import TileStore
from cpcs.catalogs.vizier import parse_vizier_table
from cpcs.errors import ServiceUnavailable

DATA = Path(__file__).resolve().parent / "data"

#: Vizier-shaped answers around Gaia16aye (see data/make_vizier_votables.py).
RECORDED = {
    "APASS": DATA / "vizier_II_336_apass9.xml",
    "PS1": DATA / "vizier_II_349_ps1.xml",
    "SDSS": DATA / "vizier_V_147_sdss12.xml",
    "2MASS": DATA / "vizier_II_246_out.xml",
    "GaiaSP": DATA / "vizier_I_360_syntphot.xml",
    "Gaia": DATA / "vizier_I_355_gaiadr3.xml",
    "RefCat2": DATA / "vizier_J_ApJ_867_105_refcat2.xml",
    "SkyMapper": DATA / "vizier_II_379_smssdr4.xml",  # around SOUTH_RA, SOUTH_DEC
    "USNO-B1": DATA / "vizier_I_284_out.xml",
}

FIELD_RA, FIELD_DEC = 295.00474, 30.13149  # Gaia16aye
SOUTH_RA, SOUTH_DEC = 150.0, -60.0  # a field in Carina, outside PS1 and SDSS


def read_recorded(survey: str) -> Table:
    """The recorded answer of ``survey`` read the way astroquery reads Vizier (names over IDs)."""
    from astropy.io.votable import parse

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        votable = parse(str(RECORDED[survey]))
    return votable.get_first_table().to_table(use_names_over_ids=True)


def recorded_catalogue(survey: str) -> ReferenceCatalogue:
    return parse_vizier_table(SURVEYS[survey], read_recorded(survey))


class FakeFetcher:
    """Stands in for Vizier (the only mock allowed: the internet). Answers from recorded data."""

    def __init__(self, *, fail: bool = False, empty: bool = False, row_limit_hit: bool = False) -> None:
        self.calls: list[tuple[str, float, float, float, dict[str, Any]]] = []
        self.fail = fail
        self.empty = empty
        self.row_limit_hit = row_limit_hit
        self._cache: dict[str, ReferenceCatalogue] = {}

    def __call__(
        self,
        survey_def: SurveyDefinition,
        ra_deg: float,
        dec_deg: float,
        radius_deg: float,
        *,
        timeout_s: float = 10.0,
        row_limit: int = 200_000,
    ) -> ReferenceCatalogue:
        self.calls.append(
            (survey_def.name, ra_deg, dec_deg, radius_deg, {"timeout_s": timeout_s, "row_limit": row_limit})
        )
        if self.fail:
            raise ServiceUnavailable(
                "Vizier did not answer: ConnectionError", code="catalogue_source_unreachable"
            )
        if self.empty or survey_def.name not in RECORDED:
            return ReferenceCatalogue.empty(survey_def.name, survey_def.band_names)
        if survey_def.name not in self._cache:
            self._cache[survey_def.name] = recorded_catalogue(survey_def.name)
        cat = self._cache[survey_def.name]
        out = cat.select(cone_mask(cat, ra_deg, dec_deg, radius_deg))
        if self.row_limit_hit:
            return out.select(slice(0, min(len(out), row_limit)))
        return out


@pytest.fixture
def store(tmp_path: Path) -> TileStore:
    return TileStore(tmp_path / "tiles")


def random_stars(
    rng: np.random.Generator,
    survey: str,
    ra: float,
    dec: float,
    radius_deg: float,
    n: int,
    bands: tuple[str, ...] = ("V",),
) -> ReferenceCatalogue:
    """Stars uniformly distributed in a cone (exact on the sphere)."""
    cos_r = np.cos(np.radians(radius_deg))
    z = rng.uniform(cos_r, 1.0, n)
    phi = rng.uniform(0.0, 2.0 * np.pi, n)
    s = np.sqrt(1.0 - z**2)
    local = np.column_stack([s * np.cos(phi), s * np.sin(phi), z])  # around the +z axis
    a, d = np.radians(ra), np.radians(dec)
    # rotate +z onto (ra, dec)
    east = np.array([-np.sin(a), np.cos(a), 0.0])
    north = np.array([-np.sin(d) * np.cos(a), -np.sin(d) * np.sin(a), np.cos(d)])
    centre = np.array([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)])
    vec = local[:, :1] * east + local[:, 1:2] * north + local[:, 2:] * centre
    out_ra = np.degrees(np.arctan2(vec[:, 1], vec[:, 0])) % 360.0
    out_dec = np.degrees(np.arcsin(np.clip(vec[:, 2], -1.0, 1.0)))
    mags = {b: rng.uniform(12.0, 18.0, n) for b in bands}
    errs = {b: rng.uniform(0.01, 0.05, n) for b in bands}
    return ReferenceCatalogue(survey, out_ra, out_dec, mags, errs)


def store_by_tiles(
    store: TileStore, cat: ReferenceCatalogue, *, complete: bool = True, source: str = "vizier"
) -> None:
    """Write a catalogue into the store, split by tile."""
    pix = store.tile_of(cat.ra_deg, cat.dec_deg)
    for ipix in np.unique(pix):
        store.write(cat.survey, int(ipix), cat.select(pix == ipix), source, complete)


class Recorded:
    """Access to the recorded answers (a fixture: test modules cannot import conftest)."""

    field_ra = FIELD_RA
    field_dec = FIELD_DEC
    south_ra = SOUTH_RA
    south_dec = SOUTH_DEC
    paths = RECORDED

    @staticmethod
    def table(survey: str) -> Table:
        return read_recorded(survey)

    @staticmethod
    def catalogue(survey: str) -> ReferenceCatalogue:
        return recorded_catalogue(survey)


class Sky:
    """Synthetic-star helpers."""

    random_stars = staticmethod(random_stars)
    store_by_tiles = staticmethod(store_by_tiles)
    FakeFetcher = FakeFetcher


@pytest.fixture
def recorded() -> type[Recorded]:
    return Recorded


@pytest.fixture
def sky() -> type[Sky]:
    return Sky


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20160806)
