"""Parsing Vizier answers, and the online fetcher with the network replaced."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import numpy as np
import pytest
from astropy.table import MaskedColumn, Table

from cpcs.catalogs.model import angular_separation_deg, column_to_float
from cpcs.catalogs.surveys import SURVEYS, custom_survey
from cpcs.catalogs.vizier import fetch_cone_online, parse_vizier_table
from cpcs.errors import ServiceUnavailable

EXPECTED_BANDS = {
    "APASS": ["B", "V", "g", "r", "i"],
    "PS1": ["g", "r", "i", "z", "y", "B", "V", "R", "I"],
    "SDSS": ["u", "g", "r", "i", "z", "B", "V", "R", "I"],
    "2MASS": ["J", "H", "K"],
    "GaiaSP": ["U", "B", "V", "R", "I", "u", "g", "r", "i", "z"],
    "Gaia": ["G", "BP", "RP"],
}


@pytest.mark.parametrize("survey", list(EXPECTED_BANDS))
def test_parse_each_recorded_answer(recorded: Any, survey: str) -> None:
    table = recorded.table(survey)
    definition = SURVEYS[survey]
    cat = parse_vizier_table(definition, table)
    assert cat.survey == survey
    assert cat.bands == EXPECTED_BANDS[survey]
    assert 20 <= len(cat) <= len(table)
    assert np.all((cat.ra_deg > 294.8) & (cat.ra_deg < 295.2))
    assert np.all((cat.dec_deg > 29.9) & (cat.dec_deg < 30.3))
    # the catalogue values are the table's values, row for row (every recorded row is kept here
    # except the SDSS non-stars and the GaiaSP rows without any validated band)
    ra = column_to_float(table[definition.ra_column])
    rows = np.array([int(np.argmin(np.abs(ra - r))) for r in cat.ra_deg])
    for band in definition.catalogue_bands:
        table_mag = column_to_float(table[band.mag_column])[rows]
        if band.flag_column is not None:
            table_mag = np.where(column_to_float(table[band.flag_column])[rows] == 1, table_mag, np.nan)
        np.testing.assert_allclose(cat.mags[band.name], table_mag, equal_nan=True)
        if band.err_column is not None:
            table_err = column_to_float(table[band.err_column])[rows]
            np.testing.assert_allclose(cat.errs[band.name], table_err, equal_nan=True)
        has = np.isfinite(cat.mags[band.name])
        assert np.all(np.isfinite(cat.errs[band.name][has])), f"{survey} {band.name}: magnitude without error"


def test_apass_primes_and_missing_values(recorded: Any) -> None:
    table = recorded.table("APASS")
    assert "r'mag" in table.colnames and "e_g'mag" in table.colnames
    cat = parse_vizier_table(SURVEYS["APASS"], table)
    np.testing.assert_allclose(cat.mags["r"], column_to_float(table["r'mag"]))
    assert np.isnan(cat.mags["i"]).sum() == np.ma.getmaskarray(table["i'mag"]).sum() > 0
    assert np.isnan(cat.mags["B"]).sum() > 0
    assert np.all(np.isnan(cat.errs["i"][np.isnan(cat.mags["i"])]))


def test_sdss_keeps_primary_stars_and_derives_bvri(recorded: Any) -> None:
    table = recorded.table("SDSS")
    cat = parse_vizier_table(SURVEYS["SDSS"], table)
    stars = (np.asarray(table["class"]) == 6) & (np.asarray(table["mode"]) == 1)
    assert 0 < stars.sum() < len(table)
    assert len(cat) == int(stars.sum())
    g, r = cat.mags["g"], cat.mags["r"]
    np.testing.assert_allclose(cat.mags["V"], g - 0.565 * (g - r) - 0.016)
    assert np.all(cat.errs["V"] > cat.errs["g"])  # transformation scatter added


def test_gaia_sp_flags_and_flux_errors(recorded: Any) -> None:
    table = recorded.table("GaiaSP")
    cat = parse_vizier_table(SURVEYS["GaiaSP"], table)
    ra = column_to_float(table["RA_ICRS"])
    rows = np.array([int(np.argmin(np.abs(ra - r))) for r in cat.ra_deg])
    flux = column_to_float(table["FV"])[rows]
    flux_err = column_to_float(table["e_FV"])[rows]
    flag = column_to_float(table["VFlag"])[rows]
    good = flag == 1
    assert (~good & np.isfinite(column_to_float(table["Vmag"])[rows])).any()  # some were rejected
    assert np.all(np.isnan(cat.mags["V"][~good]))
    np.testing.assert_allclose(cat.errs["V"][good], 2.5 / np.log(10) * flux_err[good] / flux[good], rtol=1e-6)
    assert np.all(cat.errs["V"][good] < 2.5 / np.log(10) / 30 + 1e-9)  # GSPC keeps F/sigma_F > 30


def test_parse_empty_and_foreign_tables() -> None:
    empty = parse_vizier_table(SURVEYS["APASS"], Table(names=["RAJ2000", "DEJ2000", "Vmag"]))
    assert len(empty) == 0 and empty.bands == SURVEYS["APASS"].band_names
    foreign = Table({"x": [1.0], "y": [2.0]})
    with pytest.raises(ServiceUnavailable) as err:
        parse_vizier_table(SURVEYS["APASS"], foreign)
    assert err.value.code == "catalogue_source_unreachable"
    no_mags = Table({"RAJ2000": [1.0], "DEJ2000": [2.0], "foo": [3.0]})
    assert len(parse_vizier_table(SURVEYS["APASS"], no_mags)) == 0
    fallback = Table({"_RAJ2000": [295.0], "_DEJ2000": [30.1], "Vmag": [12.0], "e_Vmag": [0.01]})
    assert len(parse_vizier_table(SURVEYS["APASS"], fallback)) == 1


class _TableList(list):
    """What astroquery's query_region returns: a list of tables also indexable by name."""

    def __init__(self, tables: dict[str, Table]) -> None:
        super().__init__(tables.values())
        self._names = list(tables)

    def keys(self) -> list[str]:
        return self._names

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return list.__getitem__(self, self._names.index(key))
        return list.__getitem__(self, key)


def test_fetch_cone_online_network_error_becomes_service_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    import requests

    created: list[dict[str, Any]] = []

    class NoNetworkVizier:
        def __init__(self, **kwargs: Any) -> None:
            created.append(kwargs)

        def query_region(self, *args: Any, **kwargs: Any) -> Any:
            raise requests.exceptions.ConnectionError("Failed to resolve 'vizier.cds.unistra.fr'")

    monkeypatch.setattr("astroquery.vizier.Vizier", NoNetworkVizier)
    started = time.perf_counter()
    with pytest.raises(ServiceUnavailable) as err:
        fetch_cone_online(SURVEYS["APASS"], 295.0, 30.1, 0.2, timeout_s=3)
    assert time.perf_counter() - started < 1.0
    assert err.value.code == "catalogue_source_unreachable"
    assert err.value.http_status == 503
    assert "APASS" in err.value.message and "ConnectionError" in err.value.message
    assert created[0]["timeout"] == 3.0


def test_fetch_cone_online_timeout_becomes_service_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    class SlowVizier:
        def __init__(self, **kwargs: Any) -> None:
            pass

        def query_region(self, *args: Any, **kwargs: Any) -> Any:
            raise TimeoutError("read timed out")

    monkeypatch.setattr("astroquery.vizier.Vizier", SlowVizier)
    with pytest.raises(ServiceUnavailable):
        fetch_cone_online(SURVEYS["PS1"], 10.0, 10.0, 0.1)


def test_fetch_cone_online_parses_the_answer(monkeypatch: pytest.MonkeyPatch, recorded: Any) -> None:
    seen: dict[str, Any] = {}

    class RecordedVizier:
        def __init__(self, **kwargs: Any) -> None:
            seen["init"] = kwargs

        def query_region(self, coord: Any, **kwargs: Any) -> Any:
            seen["coord"] = coord
            seen["query"] = kwargs
            return _TableList({"II/336/apass9": recorded.table("APASS")})

    monkeypatch.setattr("astroquery.vizier.Vizier", RecordedVizier)
    cat = fetch_cone_online(SURVEYS["APASS"], 295.00474, 30.13149, 0.1, timeout_s=4, row_limit=5000)
    assert len(cat) == 35 and cat.survey == "APASS"
    assert seen["init"]["columns"] == SURVEYS["APASS"].vizier_columns()
    assert seen["init"]["row_limit"] == 5000 and seen["init"]["timeout"] == 4.0
    assert seen["query"]["catalog"] == "II/336/apass9"
    assert seen["query"]["radius"].to_value("deg") == pytest.approx(0.1)
    assert seen["coord"].ra.deg == pytest.approx(295.00474)


def test_fetch_cone_online_sends_sdss_filters_and_handles_no_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    class EmptyVizier:
        def __init__(self, **kwargs: Any) -> None:
            seen.update(kwargs)

        def query_region(self, *args: Any, **kwargs: Any) -> Any:
            return _TableList({})

    monkeypatch.setattr("astroquery.vizier.Vizier", EmptyVizier)
    cat = fetch_cone_online(SURVEYS["SDSS"], 10.0, 0.0, 0.1)
    assert len(cat) == 0
    assert seen["column_filters"]["class"] == "=6" and seen["column_filters"]["mode"] == "=1"


def test_fetch_cone_online_refuses_custom_surveys() -> None:
    with pytest.raises(ValueError):
        fetch_cone_online(custom_survey("Site", ["V"]), 1.0, 1.0, 0.1)


def test_library_import_does_not_import_astroquery() -> None:
    code = (
        "import sys\n"
        "import cpcs.catalogs.cone, cpcs.catalogs.importer, cpcs.catalogs.vizier, cpcs.catalogs.tiles\n"
        "print('astroquery' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------------------------------
# Proper motions and epochs


def test_gaia_answer_carries_proper_motions_and_epoch(recorded: Any) -> None:
    table = recorded.table("Gaia")
    cat = parse_vizier_table(SURVEYS["Gaia"], table)
    assert cat.epoch == 2016.0 and cat.has_proper_motions
    assert cat.pmra_mas_yr is not None and cat.pmdec_mas_yr is not None
    ra = column_to_float(table["RA_ICRS"])
    rows = np.array([int(np.argmin(np.abs(ra - r))) for r in cat.ra_deg])
    np.testing.assert_array_equal(cat.ra_deg, ra[rows])  # positions as served, at 2016.0
    np.testing.assert_array_equal(cat.pmra_mas_yr, column_to_float(table["pmRA"])[rows])
    np.testing.assert_array_equal(cat.pmdec_mas_yr, column_to_float(table["pmDE"])[rows])


@pytest.mark.parametrize(("survey", "epoch"), [("APASS", 2000.0), ("PS1", 2000.0), ("GaiaSP", 2016.0)])
def test_other_answers_carry_their_epoch_without_proper_motions(
    recorded: Any, survey: str, epoch: float
) -> None:
    cat = parse_vizier_table(SURVEYS[survey], recorded.table(survey))
    assert cat.epoch == epoch and cat.pmra_mas_yr is None and cat.pmdec_mas_yr is None


def test_gaia_answer_edge_cases() -> None:
    gaia = SURVEYS["Gaia"]
    base = {"RA_ICRS": [295.0, 295.01], "DE_ICRS": [30.1, 30.2], "Gmag": [14.0, 15.0]}
    no_pm = parse_vizier_table(gaia, Table(base))  # an answer without the columns: no pm
    assert len(no_pm) == 2 and no_pm.pmra_mas_yr is None and no_pm.epoch == 2016.0
    gaps = parse_vizier_table(
        gaia, Table({**base, "pmRA": MaskedColumn([1.0, 2.0], mask=[False, True]), "pmDE": [3.0, 4.0]})
    )
    assert gaps.pmra_mas_yr is not None and gaps.pmdec_mas_yr is not None
    assert (gaps.pmra_mas_yr[0], gaps.pmdec_mas_yr[0]) == (1.0, 3.0)
    assert np.isnan(gaps.pmra_mas_yr[1]) and np.isnan(gaps.pmdec_mas_yr[1])
    empty = parse_vizier_table(gaia, Table(names=["RA_ICRS", "DE_ICRS", "Gmag", "pmRA", "pmDE"]))
    assert len(empty) == 0 and empty.epoch == 2016.0
    # only Vizier's J2000 columns: positions at 2000, moved back to the survey's 2016.0
    ra16, dec16 = 295.0, 30.1
    j2000 = parse_vizier_table(gaia, Table({**base, "pmRA": [100.0, 0.0], "pmDE": [-50.0, 0.0]}))
    at2000 = j2000.at_epoch(2000.0)
    only_j2000 = Table(
        {
            "RAJ2000": at2000.ra_deg,
            "DEJ2000": at2000.dec_deg,
            "Gmag": [14.0, 15.0],
            "pmRA": [100.0, 0.0],
            "pmDE": [-50.0, 0.0],
        }
    )
    back = parse_vizier_table(gaia, only_j2000)
    assert back.epoch == 2016.0
    # exact to second order in the motion (the file's proper motions are those of 2016)
    assert angular_separation_deg(ra16, dec16, back.ra_deg[0], back.dec_deg[0]) * 3.6e6 < 0.01


def test_fetch_cone_online_asks_gaia_for_proper_motions(
    monkeypatch: pytest.MonkeyPatch, recorded: Any
) -> None:
    seen: dict[str, Any] = {}

    class RecordedVizier:
        def __init__(self, **kwargs: Any) -> None:
            seen["init"] = kwargs

        def query_region(self, coord: Any, **kwargs: Any) -> Any:
            return _TableList({"I/355/gaiadr3": recorded.table("Gaia")})

    monkeypatch.setattr("astroquery.vizier.Vizier", RecordedVizier)
    cat = fetch_cone_online(SURVEYS["Gaia"], 295.00474, 30.13149, 0.1)
    assert {"pmRA", "pmDE"} <= set(seen["init"]["columns"])
    assert cat.epoch == 2016.0 and cat.has_proper_motions


def test_fetch_cone_online_empty_answer_has_the_survey_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    class EmptyVizier:
        def __init__(self, **kwargs: Any) -> None:
            pass

        def query_region(self, *args: Any, **kwargs: Any) -> Any:
            return _TableList({})

    monkeypatch.setattr("astroquery.vizier.Vizier", EmptyVizier)
    assert fetch_cone_online(SURVEYS["Gaia"], 10.0, 0.0, 0.1).epoch == 2016.0
