"""Importing catalogue files (VOTable, CSV, ECSV, FITS) into the tile store."""

from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy import units as u
from astropy.table import MaskedColumn, Table

from cpcs.catalogs.importer import import_catalogue_file, read_catalogue_table
from cpcs.catalogs.model import column_to_float
from cpcs.catalogs.surveys import colour_of
from cpcs.catalogs.tiles import TileStore
from cpcs.errors import InputError

RA0, DEC0 = 295.00474, 30.13149


def cone(store: TileStore, survey: str, radius: float = 0.2) -> Any:
    cat, _, _ = store.cone(survey, RA0, DEC0, radius)
    assert cat is not None
    return cat


def test_import_vizier_votable(store: TileStore, recorded: Any) -> None:
    path = recorded.paths["APASS"]
    result = import_catalogue_file(store, "apass", path)
    assert result.survey == "APASS" and not result.custom
    assert result.n_stars == 35 and result.n_tiles == 1 and result.n_added == 35
    assert result.bands == ("B", "V", "g", "r", "i")
    cat = cone(store, "APASS")
    assert len(cat) == 35
    table = recorded.table("APASS")
    assert sorted(cat.mags["r"][np.isfinite(cat.mags["r"])]) == pytest.approx(
        sorted(column_to_float(table["r'mag"]))
    )
    info = store.info("APASS", store.tile_of(RA0, DEC0).item())
    assert info is not None and not info.complete and info.source == f"import:{path.name}"
    assert result.to_dict()["bands"] == ["B", "V", "g", "r", "i"]


def test_reimport_updates_instead_of_duplicating(store: TileStore, recorded: Any) -> None:
    import_catalogue_file(store, "APASS", recorded.paths["APASS"])
    again = import_catalogue_file(store, "APASS", recorded.paths["APASS"].read_bytes(), "again.xml")
    assert again.n_added == 0 and again.n_updated == 35
    assert len(cone(store, "APASS")) == 35


def test_import_sdss_votable_filters_and_derives(store: TileStore, recorded: Any) -> None:
    result = import_catalogue_file(store, "SDSS", recorded.paths["SDSS"])
    table = recorded.table("SDSS")
    stars = int(((np.asarray(table["class"]) == 6) & (np.asarray(table["mode"]) == 1)).sum())
    assert result.n_stars == stars and result.n_skipped == len(table) - stars
    assert set("BVRI") <= set(result.bands)


def test_import_gaia_sp_download_applies_flags_and_flux_errors(store: TileStore, recorded: Any) -> None:
    result = import_catalogue_file(store, "GaiaSP", recorded.paths["GaiaSP"])
    parsed = recorded.catalogue("GaiaSP")
    assert result.n_stars == len(parsed)
    cat = cone(store, "GaiaSP")
    for band in ("U", "V", "z"):
        np.testing.assert_allclose(np.sort(cat.mags[band]), np.sort(parsed.mags[band]), equal_nan=True)
        np.testing.assert_allclose(np.sort(cat.errs[band]), np.sort(parsed.errs[band]), equal_nan=True)


def test_import_ps1_reports_ignored_columns(store: TileStore, recorded: Any) -> None:
    result = import_catalogue_file(store, "PS1", recorded.paths["PS1"])
    assert {"gKmag", "rKmag", "yKmag"} <= set(result.ignored_columns)
    assert result.bands[:5] == ("g", "r", "i", "z", "y")


VIZIER_CSV = """RAJ2000,DEJ2000,Vmag,e_Vmag,Bmag,e_Bmag,g'mag,e_g'mag,r'mag,e_r'mag,i'mag,e_i'mag
19:40:01.14,+30:07:53.4,14.101,0.021,14.902,0.030,14.470,0.020,13.870,0.025,,
19 40 05.00,+30 08 10.0,15.211,0.031,,,15.580,0.028,15.020,0.027,14.800,0.040
295.0100,30.1200,99.999,,16.100,0.050,,,,,,
,,12.0,0.01,,,,,,,,
295.0200,30.1400,,,,,,,,,,
"""


def test_import_vizier_style_csv_with_primes_sexagesimal_and_gaps(store: TileStore) -> None:
    result = import_catalogue_file(store, "APASS", VIZIER_CSV.encode(), "apass_field.csv")
    assert result.n_stars == 3  # row 4 has no position, row 5 no magnitude
    assert result.n_skipped == 2
    cat = cone(store, "APASS")
    k = int(np.argmin(np.abs(cat.dec_deg - (30 + 7 / 60 + 53.4 / 3600))))
    assert cat.ra_deg[k] == pytest.approx(295.00475, abs=1e-5)
    assert cat.mags["r"][k] == pytest.approx(13.870) and cat.errs["r"][k] == pytest.approx(0.025)
    assert np.isnan(cat.mags["i"][k])
    third = int(np.argmin(np.abs(cat.dec_deg - 30.12)))
    assert np.isnan(cat.mags["V"][third])  # 99.999 sentinel
    assert cat.mags["B"][third] == pytest.approx(16.1)


PLAIN_CSV = """ra,dec,V,e_V,B,B_err,comment
295.001,30.131,12.5,0.01,13.1,0.02,std1
295.011,30.141,13.5,0.02,14.3,0.03,std2
"""


def test_import_custom_survey_with_plain_columns(store: TileStore) -> None:
    result = import_catalogue_file(store, "SiteStandards", PLAIN_CSV.encode(), "standards.csv")
    assert result.custom and result.survey == "SiteStandards"
    assert result.bands == ("V", "B")
    assert store.survey_bands("SiteStandards") == ["V", "B"]
    cat = cone(store, "SiteStandards")
    assert sorted(cat.mags["V"]) == [12.5, 13.5]
    colour, err = colour_of(cat, "V")
    np.testing.assert_allclose(sorted(colour), [0.6, 0.8])
    assert np.all(np.isfinite(err))
    assert "SiteStandards" in store.surveys()


def test_import_ecsv_with_hour_angle_ra(store: TileStore) -> None:
    table = Table(
        {
            "RA": np.array([19.6669827, 19.6672]) * u.hourangle,
            "DEC": np.array([30.13149, 30.135]) * u.deg,
            "Jmag": [12.0, 12.5],
            "e_Jmag": [0.02, 0.03],
            "Kmag": [11.2, 11.9],
        }
    )
    buffer = io.StringIO()
    table.write(buffer, format="ascii.ecsv")
    result = import_catalogue_file(store, "2MASS", buffer.getvalue().encode(), "field.ecsv")
    assert result.n_stars == 2 and result.bands == ("J", "K")
    cat = cone(store, "2MASS")
    assert cat.ra_deg.min() == pytest.approx(295.00474, abs=1e-5)
    assert np.isnan(cat.errs["K"]).all() and np.isfinite(cat.errs["J"]).all()


def test_import_fits_with_masked_values(store: TileStore, tmp_path: Path) -> None:
    table = Table(
        {
            "RA_ICRS": [295.0, 295.01, 295.02],
            "DE_ICRS": [30.1, 30.11, 30.12],
            "Gmag": [14.0, 15.0, 16.0],
            "e_Gmag": [0.001, 0.002, 0.003],
            "BPmag": MaskedColumn([14.5, 0.0, 16.6], mask=[False, True, False]),
            "e_BPmag": [0.01, np.nan, 0.02],
            "RPmag": [13.4, np.nan, 15.5],
        }
    )
    path = tmp_path / "gaia.fits"
    table.write(path)
    result = import_catalogue_file(store, "Gaia", path)
    assert result.n_stars == 3 and result.bands == ("G", "BP", "RP")
    cat = cone(store, "Gaia")
    assert np.isnan(cat.mags["BP"]).sum() == 1 and np.isnan(cat.mags["RP"]).sum() == 1


def test_import_gzipped_bytes(store: TileStore) -> None:
    result = import_catalogue_file(store, "APASS", gzip.compress(VIZIER_CSV.encode()), "apass.csv.gz")
    assert result.n_stars == 3


def test_read_table_sniffs_the_format(recorded: Any) -> None:
    data = recorded.paths["GaiaSP"].read_bytes()
    assert "E(BP/RP)corr" in read_catalogue_table(data, "download").colnames
    assert read_catalogue_table(PLAIN_CSV.encode(), "noext").colnames[:2] == ["ra", "dec"]
    tab = read_catalogue_table(b"ra\tdec\tVmag\n1.0\t2.0\t12.0\n", "x.tsv")
    assert tab.colnames == ["ra", "dec", "Vmag"]


@pytest.mark.parametrize(
    ("survey", "content", "filename", "code"),
    [
        ("APASS", b"x,y,Vmag\n1,2,12\n", "a.csv", "no_coordinate_columns"),
        ("APASS", b"ra,dec,flux\n1,2,12\n", "a.csv", "no_magnitude_columns"),
        ("MySite", b"ra,dec,flux\n1,2,12\n", "a.csv", "no_magnitude_columns"),
        ("2MASS", b"ra,dec,Vmag\n1,2,12\n", "a.csv", "no_magnitude_columns"),
        ("APASS", b"ra,dec,Vmag\n", "a.csv", "no_valid_rows"),
        ("APASS", b"ra,dec,Vmag\n1,95,12\n", "a.csv", "no_valid_rows"),
        ("APASS", b"SIMPLE  = garbage", "a.fits", "unreadable_catalogue_file"),
        ("APASS", b"<VOTABLE><broken", "a.xml", "unreadable_catalogue_file"),
        ("APASS", b"\x1f\x8bnot gzip", "a.csv.gz", "unreadable_catalogue_file"),
        ("../x", b"ra,dec,Vmag\n1,2,12\n", "a.csv", "invalid_survey_name"),
    ],
)
def test_bad_files_raise_input_errors(
    store: TileStore, survey: str, content: bytes, filename: str, code: str
) -> None:
    with pytest.raises(InputError) as err:
        import_catalogue_file(store, survey, content, filename)
    assert err.value.code == code
    assert err.value.http_status == 422


def test_unreadable_path(store: TileStore, tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        import_catalogue_file(store, "APASS", tmp_path / "missing.xml")
    assert err.value.code == "unreadable_catalogue_file"


def test_case_of_single_letter_bands_matters(store: TileStore) -> None:
    content = b"ra,dec,Rmag,e_Rmag,rmag\n295.0,30.1,13.0,0.02,13.2\n"
    result = import_catalogue_file(store, "APASS", content, "a.csv")
    assert result.bands == ("r",)  # Cousins R is not APASS r'
    assert "Rmag" in result.ignored_columns
    assert cone(store, "APASS").mags["r"][0] == pytest.approx(13.2)
