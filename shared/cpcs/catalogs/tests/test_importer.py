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
from cpcs.catalogs.model import (
    ReferenceCatalogue,
    angular_separation_deg,
    column_to_float,
    from_wire,
    to_wire,
)
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


# --------------------------------------------------------------------------------------------------
# Proper motions and epochs


def nearest(cat: Any, ra: float, dec: float) -> int:
    return int(np.argmin(angular_separation_deg(ra, dec, cat.ra_deg, cat.dec_deg)))


def test_import_gaia_votable_keeps_proper_motions(store: TileStore, recorded: Any) -> None:
    result = import_catalogue_file(store, "Gaia", recorded.paths["Gaia"])
    table = recorded.table("Gaia")
    assert result.epoch == 2016.0 and result.n_proper_motions == result.n_stars == len(table)
    assert result.to_dict()["epoch"] == 2016.0
    assert not {"pmRA", "pmDE"} & set(result.ignored_columns)
    cat = cone(store, "Gaia")
    assert cat.epoch == 2016.0 and cat.pmra_mas_yr is not None and cat.pmdec_mas_yr is not None
    ra, dec = column_to_float(table["RA_ICRS"]), column_to_float(table["DE_ICRS"])
    pmra, pmdec = column_to_float(table["pmRA"]), column_to_float(table["pmDE"])
    for k in range(len(table)):
        j = nearest(cat, ra[k], dec[k])
        assert cat.ra_deg[j] == ra[k] and cat.dec_deg[j] == dec[k]  # positions as given (2016.0)
        assert (cat.pmra_mas_yr[j], cat.pmdec_mas_yr[j]) == (pmra[k], pmdec[k])
    # what the catalogue-cache service sends keeps them
    back = from_wire(to_wire(cat))
    assert back.epoch == 2016.0
    np.testing.assert_array_equal(back.pmra_mas_yr, cat.pmra_mas_yr)


GAIA_ARCHIVE_CSV = """source_id,ra,dec,pmra,pmdec,Gmag,e_Gmag
2034213580146925568,295.0010,30.1300,-3.1,-5.2,14.1,0.001
2034213580146925575,295.0110,30.1400,12.5,,15.2,0.002
2034213580146925582,295.0210,30.1500,,,16.3,0.003
"""


def test_import_gaia_archive_csv_with_lowercase_proper_motions(store: TileStore) -> None:
    result = import_catalogue_file(store, "gaiadr3", GAIA_ARCHIVE_CSV.encode(), "gaia_archive.csv")
    assert result.survey == "Gaia" and result.n_stars == 3 and result.n_proper_motions == 1
    cat = cone(store, "Gaia")
    assert cat.epoch == 2016.0 and cat.pmra_mas_yr is not None and cat.pmdec_mas_yr is not None
    k = nearest(cat, 295.001, 30.13)
    assert (cat.pmra_mas_yr[k], cat.pmdec_mas_yr[k]) == (-3.1, -5.2)
    assert cat.ra_deg[k] == pytest.approx(295.001, abs=1e-12)  # ra/dec at 2016.0: not moved
    half = nearest(cat, 295.011, 30.14)  # pmdec missing: the star has no proper motion
    assert np.isnan(cat.pmra_mas_yr[half]) and np.isnan(cat.pmdec_mas_yr[half])


def test_proper_motion_names_are_case_insensitive(store: TileStore) -> None:
    content = b"RA_ICRS,DE_ICRS,PMRA,pmde,Gmag\n295.0,30.1,7.5,-2.5,14.0\n"
    result = import_catalogue_file(store, "Gaia", content, "vizier.csv")
    assert result.n_proper_motions == 1
    cat = cone(store, "Gaia")
    assert cat.pmra_mas_yr is not None and cat.pmdec_mas_yr is not None
    assert (cat.pmra_mas_yr[0], cat.pmdec_mas_yr[0]) == (7.5, -2.5)


def gaia_stars() -> ReferenceCatalogue:
    """A few stars at 2016.0, some of them fast."""
    return ReferenceCatalogue(
        "Gaia",
        [295.001, 295.011, 295.021, 295.031],
        [30.13, 30.14, 30.15, 30.16],
        {"G": [14.0, 15.0, 16.0, 17.0]},
        {"G": [0.001, 0.002, 0.003, 0.004]},
        [800.0, -3.0, np.nan, 150.0],
        [-600.0, 4.0, np.nan, 0.0],
        2016.0,
    )


def test_gaia_file_with_vizier_j2000_positions_is_moved_back_to_2016(store: TileStore) -> None:
    truth = gaia_stars()
    j2000 = truth.at_epoch(2000.0)  # what Vizier's RAJ2000/DEJ2000 hold for Gaia DR3
    table = Table(
        {
            "RAJ2000": j2000.ra_deg,
            "DEJ2000": j2000.dec_deg,
            "pmRA": truth.pmra_mas_yr,
            "pmDE": truth.pmdec_mas_yr,
            "Gmag": truth.mags["G"],
        }
    )
    buffer = io.StringIO()
    table.write(buffer, format="ascii.ecsv")
    result = import_catalogue_file(store, "Gaia", buffer.getvalue().encode(), "gaia_j2000.ecsv")
    assert result.epoch == 2016.0 and result.n_proper_motions == 3
    cat = cone(store, "Gaia")
    for k in range(len(truth)):
        j = nearest(cat, truth.ra_deg[k], truth.dec_deg[k])
        sep_mas = (
            angular_separation_deg(truth.ra_deg[k], truth.dec_deg[k], cat.ra_deg[j], cat.dec_deg[j]) * 3.6e6
        )
        # the file's proper motions are those of 2016, not 2000: exact to second order in the
        # motion (0.6 mas for the 1 arcsec/yr star, 0.02 mas at 150 mas/yr, nothing for slow stars)
        assert sep_mas < (1.0 if k == 0 else 0.05)


def test_gaia_file_prefers_its_own_2016_positions(store: TileStore) -> None:
    truth = gaia_stars()
    j2000 = truth.at_epoch(2000.0)
    table = Table(
        {
            "RAJ2000": j2000.ra_deg,  # listed first, as in some Vizier downloads
            "DEJ2000": j2000.dec_deg,
            "RA_ICRS": truth.ra_deg,
            "DE_ICRS": truth.dec_deg,
            "pmRA": truth.pmra_mas_yr,
            "pmDE": truth.pmdec_mas_yr,
            "Gmag": truth.mags["G"],
        }
    )
    buffer = io.StringIO()
    table.write(buffer, format="ascii.ecsv")
    import_catalogue_file(store, "Gaia", buffer.getvalue().encode(), "gaia_both.ecsv")
    cat = cone(store, "Gaia")
    np.testing.assert_array_equal(np.sort(cat.ra_deg), np.sort(truth.ra_deg))


def test_other_known_surveys_get_their_epoch_and_no_proper_motions(store: TileStore, recorded: Any) -> None:
    result = import_catalogue_file(store, "APASS", recorded.paths["APASS"])
    assert result.epoch == 2000.0 and result.n_proper_motions == 0
    cat = cone(store, "APASS")
    assert cat.epoch == 2000.0 and cat.pmra_mas_yr is None
    sp = import_catalogue_file(store, "GaiaSP", recorded.paths["GaiaSP"])
    assert sp.epoch == 2016.0 and sp.n_proper_motions == 0


def test_site_survey_with_proper_motions_epoch_column_and_units(store: TileStore) -> None:
    table = Table(
        {
            "ra": [295.001, 295.011],
            "dec": [30.13, 30.14],
            "pmra": np.array([0.5, -0.25]) * u.arcsec / u.yr,
            "pmdec": np.array([0.1, 0.0]) * u.arcsec / u.yr,
            "ref_epoch": [2015.5, 2015.5],
            "V": [12.5, 13.5],
        }
    )
    buffer = io.StringIO()
    table.write(buffer, format="ascii.ecsv")
    result = import_catalogue_file(store, "SiteDR2", buffer.getvalue().encode(), "site.ecsv")
    assert result.custom and result.epoch == 2015.5 and result.n_proper_motions == 2
    assert result.bands == ("V",)
    cat = cone(store, "SiteDR2")
    assert cat.epoch == 2015.5 and cat.pmra_mas_yr is not None
    assert sorted(cat.pmra_mas_yr) == pytest.approx([-250.0, 500.0])
    # no epoch column: unknown epoch, proper motions still kept
    plain = b"ra,dec,pmRA,pmDE,V\n295.05,30.2,1.0,2.0,12.0\n"
    other = import_catalogue_file(store, "SiteNoEpoch", plain, "site.csv")
    assert other.epoch is None and other.n_proper_motions == 1


def test_proper_motions_in_an_unusable_unit_are_ignored(store: TileStore) -> None:
    table = Table(
        {
            "ra": [295.001],
            "dec": [30.13],
            "pmRA": np.array([0.01]) * u.s / u.yr,  # seconds of time of RA per year: not mas/yr
            "pmDE": np.array([0.1]) * u.arcsec / u.yr,
            "Gmag": [14.0],
        }
    )
    buffer = io.StringIO()
    table.write(buffer, format="ascii.ecsv")
    result = import_catalogue_file(store, "Gaia", buffer.getvalue().encode(), "odd.ecsv")
    assert result.n_stars == 1 and result.n_proper_motions == 0
    assert cone(store, "Gaia").pmra_mas_yr is None
