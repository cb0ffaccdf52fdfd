"""RefCat2, SkyMapper DR4 and USNO-B1 read from recorded Vizier answers; VST ATLAS and OGLE-III imported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table

from cpcs.catalogs.importer import import_catalogue_file
from cpcs.catalogs.model import column_to_float
from cpcs.catalogs.surveys import SURVEYS, USNOB1_MAG_ERROR, find_survey
from cpcs.catalogs.tiles import TileStore
from cpcs.catalogs.vizier import parse_vizier_table
from cpcs.science.bands import export_band
from cpcs.science.photometric_systems import ab_offset, ab_offset_of


def _rows_of(table: Table, ra_column: str, ra_deg: np.ndarray) -> np.ndarray:
    ra = column_to_float(table[ra_column])
    return np.array([int(np.argmin(np.abs(ra - r))) for r in ra_deg])


def test_refcat2_answer_keeps_ps1_system_bands_and_drops_gaia_variables_and_duplicates(recorded: Any) -> None:
    table = recorded.table("RefCat2")
    definition = SURVEYS["RefCat2"]
    assert set(definition.vizier_columns()) <= set(table.colnames)  # the answer to our own column list
    cat = parse_vizier_table(definition, table)
    dupvar = column_to_float(table["dupvar"])
    assert {0.0, 1.0, 2.0, 4.0} <= set(dupvar.tolist())
    assert len(cat) == int(np.isin(dupvar, (0.0, 2.0)).sum()) < len(table)
    rows = _rows_of(table, "RA_ICRS", cat.ra_deg)
    assert np.all(np.isin(dupvar[rows], (0.0, 2.0)))
    for band in "griz":
        mag, err = (column_to_float(table[f"{band}mag"])[rows], column_to_float(table[f"e_{band}mag"])[rows])
        np.testing.assert_allclose(cat.mags[band], mag, equal_nan=True)
        np.testing.assert_allclose(cat.errs[band], err, equal_nan=True)
    assert np.isnan(cat.mags["z"]).any() and not np.isnan(cat.mags["r"]).any()
    # B V R I derived with Tonry et al. (2012), as for PS1 (RefCat2 is on the PS1 system)
    g, r = cat.mags["g"], cat.mags["r"]
    x = g - r
    np.testing.assert_allclose(cat.mags["V"], r + 0.005 + 0.462 * x + 0.013 * x**2)
    assert cat.epoch == 2015.5 and cat.pmra_mas_yr is not None
    np.testing.assert_allclose(cat.pmra_mas_yr, column_to_float(table["pmRA"])[rows])
    assert definition.band("r").system == "AB"
    assert export_band("RefCat2", "r").sncosmo == "ps1::r"
    assert export_band("RefCat2", "V").sncosmo == "bessellv"


def test_skymapper_answer_reads_psf_magnitudes_of_six_bands(recorded: Any) -> None:
    table = recorded.table("SkyMapper")
    definition = SURVEYS["SkyMapper"]
    assert set(definition.vizier_columns()) <= set(table.colnames)
    assert definition.column_filters == {"flags": "<4", "rPSF": "<20"}
    cat = parse_vizier_table(definition, table)
    assert cat.bands == ["u", "v", "g", "r", "i", "z"] and len(cat) == len(table)
    assert np.all(cat.dec_deg < -59.8) and np.all(cat.dec_deg > -60.2)
    rows = _rows_of(table, "RAICRS", cat.ra_deg)
    for band in "uvgriz":
        np.testing.assert_allclose(cat.mags[band], column_to_float(table[f"{band}PSF"])[rows], equal_nan=True)
        has = np.isfinite(cat.mags[band])
        assert np.all(np.isfinite(cat.errs[band][has]))
    assert np.isnan(cat.mags["u"]).any()  # faint stars without u
    assert all(b.system == "AB" for b in definition.bands)
    assert definition.band("v").wavelength_nm == 384.0
    assert export_band("SkyMapper", "g").sncosmo == "skymapperg"
    assert export_band("SkyMapper", "v").sncosmo is None  # sncosmo has no SkyMapper v


def test_usnob1_answer_takes_the_documented_photographic_accuracy_as_error(recorded: Any) -> None:
    table = recorded.table("USNO-B1")
    definition = SURVEYS["USNO-B1"]
    assert set(definition.vizier_columns()) <= set(table.colnames)
    assert not any(c.startswith("e_") for c in table.colnames)  # Vizier serves no magnitude errors
    cat = parse_vizier_table(definition, table)
    assert cat.bands == ["B1", "R1", "B2", "R2", "I"]
    rows = _rows_of(table, "RAJ2000", cat.ra_deg)
    for band in cat.bands:
        mag = column_to_float(table[f"{band}mag"])[rows]
        np.testing.assert_allclose(cat.mags[band], mag, equal_nan=True)
        np.testing.assert_array_equal(np.isfinite(cat.errs[band]), np.isfinite(mag))
        assert np.all(cat.errs[band][np.isfinite(mag)] == USNOB1_MAG_ERROR)
    assert np.isnan(cat.mags["B1"]).any()
    # photographic bands have no sncosmo name, not even the "I" (IV-N emulsion, not Cousins I)
    assert export_band("USNO-B1", "I").sncosmo is None and export_band("USNO-B1", "R2").sncosmo is None
    assert export_band("USNO-B1", "R2").system == "Vega"


def test_aliases_find_the_new_surveys() -> None:
    for alias, name in (
        ("atlas-refcat2", "RefCat2"), ("refcat", "RefCat2"), ("smssdr4", "SkyMapper"),
        ("skymapper", "SkyMapper"), ("vst_atlas", "VST-ATLAS"), ("ogle3", "OGLE-III"),
        ("usno-b1.0", "USNO-B1"), ("usnob1", "USNO-B1"),
    ):  # fmt: skip
        found = find_survey(alias)
        assert found is not None and found.name == name, alias


def _write_ecsv(path: Path, columns: dict[str, list[float]]) -> Path:
    Table(columns).write(path, format="ascii.ecsv", overwrite=True)
    return path


def test_import_only_surveys_keep_their_bands_systems_and_colours(tmp_path: Path) -> None:
    store = TileStore(tmp_path / "tiles")
    ra = [80.1, 80.2, 80.3]
    dec = [-69.5, -69.6, -69.7]
    ogle = _write_ecsv(
        tmp_path / "lmc.ecsv",
        {"RAJ2000": ra, "DEJ2000": dec, "Vmag": [15.1, 16.2, 17.3], "e_Vmag": [0.01, 0.02, 0.03],
         "Imag": [14.2, 15.0, 16.1], "e_Imag": [0.01, 0.02, 0.03]},
    )  # fmt: skip
    report = import_catalogue_file(store, "ogle3", ogle, ogle.name)
    assert report.survey == "OGLE-III" and not report.custom
    assert report.n_stars == 3 and report.bands == ("V", "I")
    definition = SURVEYS["OGLE-III"]
    assert [b.name for b in definition.bands] == ["V", "I"] and definition.band("V").colour == ("V", "I")
    assert export_band("OGLE-III", "I").sncosmo == "besselli"
    assert export_band("OGLE-III", "V").system == "Vega"
    vst = _write_ecsv(
        tmp_path / "vst.ecsv",
        {"RAJ2000": [180.0, 180.1], "DEJ2000": [-15.0, -15.1], "gmag": [16.0, 17.0], "e_gmag": [0.01, 0.02],
         "rmag": [15.5, 16.4], "e_rmag": [0.01, 0.02]},
    )  # fmt: skip
    report = import_catalogue_file(store, "VST-ATLAS", vst, vst.name)
    assert report.survey == "VST-ATLAS" and report.n_stars == 2
    assert export_band("VST-ATLAS", "r").sncosmo == "sdssr" and export_band("VST-ATLAS", "r").system == "AB"


def test_magnitude_systems_of_the_new_bands() -> None:
    assert ab_offset_of("SkyMapper", "v", "AB") == 0.0 and ab_offset_of("RefCat2", "r", "AB") == 0.0
    assert ab_offset_of("OGLE-III", "I", "Vega") == ab_offset("I", "Vega") == 0.45
    # photographic: no published Vega-to-AB offset, not even for the "I" named like Cousins I
    assert ab_offset_of("USNO-B1", "I", "Vega") is None and ab_offset_of("USNO-B1", "R2", "Vega") is None
