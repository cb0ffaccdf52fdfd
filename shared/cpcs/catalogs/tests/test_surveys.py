"""The survey registry: Vizier names, colours, wavelengths, derived bands."""

from __future__ import annotations

import numpy as np
import pytest

from cpcs.catalogs.model import ReferenceCatalogue
from cpcs.catalogs.surveys import (
    JORDI_RMS,
    SURVEYS,
    TONRY_RMS,
    bands_by_wavelength,
    colour_of,
    custom_survey,
    definition_for,
    find_survey,
    get_survey,
    validate_survey_name,
)
from cpcs.errors import InputError


def test_registry_has_the_surveys_with_their_vizier_tables() -> None:
    assert list(SURVEYS) == [
        "GaiaSP", "RefCat2", "APASS", "PS1", "SkyMapper", "SDSS", "VST-ATLAS", "OGLE-III", "2MASS",
        "USNO-B1", "Gaia",
    ]  # fmt: skip
    tables = {name: s.vizier_table for name, s in SURVEYS.items()}
    assert tables == {
        "GaiaSP": "I/360/syntphot",
        "RefCat2": "J/ApJ/867/105/refcat2",
        "APASS": "II/336/apass9",
        "PS1": "II/349/ps1",
        "SkyMapper": "II/379/smssdr4",
        "SDSS": "V/147/sdss12",
        "VST-ATLAS": None,  # import only: no Vizier table of the whole survey
        "OGLE-III": None,  # import only: the maps are served by the OGLE archive
        "2MASS": "II/246/out",
        "USNO-B1": "I/284/out",
        "Gaia": "I/355/gaiadr3",
    }
    assert not SURVEYS["VST-ATLAS"].fetchable and not SURVEYS["OGLE-III"].custom
    assert SURVEYS["APASS"].vizier_catalogue == "II/336"


def test_vizier_column_names() -> None:
    apass = SURVEYS["APASS"]
    assert (apass.ra_column, apass.dec_column) == ("RAJ2000", "DEJ2000")
    assert [(b.name, b.mag_column, b.err_column) for b in apass.bands] == [
        ("B", "Bmag", "e_Bmag"),
        ("V", "Vmag", "e_Vmag"),
        ("g", "g'mag", "e_g'mag"),
        ("r", "r'mag", "e_r'mag"),
        ("i", "i'mag", "e_i'mag"),
    ]
    ps1 = SURVEYS["PS1"]
    assert [b.mag_column for b in ps1.catalogue_bands] == ["gmag", "rmag", "imag", "zmag", "ymag"]
    assert ps1.band("y").err_column == "e_ymag"
    sdss = SURVEYS["SDSS"]
    assert (sdss.ra_column, sdss.dec_column) == ("RA_ICRS", "DE_ICRS")
    assert dict(sdss.column_filters)["class"] == "=6" and dict(sdss.column_filters)["mode"] == "=1"
    assert {"class", "mode"} <= set(sdss.vizier_columns())
    tmass = SURVEYS["2MASS"]
    assert [(b.mag_column, b.err_column) for b in tmass.bands] == [
        ("Jmag", "e_Jmag"),
        ("Hmag", "e_Hmag"),
        ("Kmag", "e_Kmag"),
    ]
    gaia = SURVEYS["Gaia"]
    assert gaia.vizier_columns()[:2] == ["RA_ICRS", "DE_ICRS"]
    assert {"Gmag", "e_Gmag", "BPmag", "e_BPmag", "RPmag", "e_RPmag"} <= set(gaia.vizier_columns())
    assert gaia.position_epoch == 2016.0
    assert (gaia.pmra_column, gaia.pmdec_column) == ("pmRA", "pmDE") and gaia.has_proper_motions
    assert gaia.vizier_columns()[2:4] == ["pmRA", "pmDE"]
    assert gaia.epoch_of_columns("RA_ICRS") == 2016.0
    assert gaia.epoch_of_columns("RAJ2000") == gaia.epoch_of_columns("_raj2000") == 2000.0
    assert SURVEYS["APASS"].epoch_of_columns("RAJ2000") == 2000.0
    assert SURVEYS["GaiaSP"].epoch_of_columns("RA_ICRS") == 2016.0
    assert not any(SURVEYS[name].has_proper_motions for name in ("APASS", "PS1", "SDSS", "2MASS", "GaiaSP"))
    assert "pmRA" not in SURVEYS["APASS"].vizier_columns()
    sp = SURVEYS["GaiaSP"]
    assert sp.band_names == ["U", "B", "V", "R", "I", "u", "g", "r", "i", "z"]
    assert (sp.band("V").mag_column, sp.band("V").flux_column, sp.band("V").flag_column) == (
        "Vmag",
        "FV",
        "VFlag",
    )
    assert sp.vizier_columns() == ["**"]


def test_colours_systems_and_wavelengths() -> None:
    colour = {name: {b.name: b.colour for b in s.bands} for name, s in SURVEYS.items()}
    assert colour["APASS"] == {
        "B": ("B", "V"),
        "V": ("B", "V"),
        "g": ("g", "r"),
        "r": ("g", "r"),
        "i": ("r", "i"),
    }
    assert (
        colour["PS1"]["g"] == ("g", "r")
        and colour["PS1"]["z"] == ("r", "i")
        and colour["PS1"]["y"] == ("r", "i")
    )
    assert set(colour["2MASS"].values()) == {("J", "K")}
    assert set(colour["Gaia"].values()) == {("BP", "RP")}
    assert {colour["GaiaSP"][b] for b in "UBVRI"} == {("B", "V")}
    assert {colour["GaiaSP"][b] for b in "ugriz"} == {("g", "r")}
    apass = SURVEYS["APASS"]
    assert apass.band("V").system == "Vega" and apass.band("g").system == "AB"
    assert SURVEYS["2MASS"].band("K").system == "Vega"
    for survey in SURVEYS.values():
        for band in survey.bands:
            assert band.wavelength_nm is not None and 300 < band.wavelength_nm < 2500
            if band.colour is not None:
                assert survey.has_band(band.colour[0]) and survey.has_band(band.colour[1])
    assert bands_by_wavelength(apass, 550.0)[0] == "V"
    assert bands_by_wavelength(SURVEYS["PS1"], 620.0)[:2] == ["r", "R"]


def test_find_and_validate_names() -> None:
    assert find_survey("apass") is SURVEYS["APASS"]
    assert find_survey("PanSTARRS") is SURVEYS["PS1"]
    assert find_survey("2mass") is SURVEYS["2MASS"]
    assert find_survey("gspc") is SURVEYS["GaiaSP"]
    assert find_survey("MyStandards") is None
    with pytest.raises(InputError) as err:
        get_survey("nope")
    assert err.value.code == "unknown_survey"
    for bad in ("../etc", "", "a/b", ".hidden", "x" * 65):
        with pytest.raises(InputError) as err:
            validate_survey_name(bad)
        assert err.value.code == "invalid_survey_name"
    assert validate_survey_name(" Site-Std_1 ") == "Site-Std_1"


def test_jordi_sdss_to_bvri() -> None:
    sdss = SURVEYS["SDSS"]
    one = {b: np.array([v]) for b, v in {"u": 16.5, "g": 15.0, "r": 14.5, "i": 14.3, "z": 14.2}.items()}
    zero = {b: np.array([0.0]) for b in one}
    mags, errs = sdss.add_derived_bands(one, zero)
    assert mags["B"][0] == pytest.approx(15.0 + 0.313 * 0.5 + 0.219)
    assert mags["V"][0] == pytest.approx(15.0 - 0.565 * 0.5 - 0.016)
    assert mags["R"][0] == pytest.approx(14.5 - 0.153 * 0.2 - 0.117)
    assert mags["I"][0] == pytest.approx(14.3 - 0.386 * 0.1 - 0.397)
    for band, rms in JORDI_RMS.items():
        assert errs[band][0] == pytest.approx(rms)  # zero photometric error: only the scatter
    errs_g = {**zero, "g": np.array([0.1])}
    _, errs2 = sdss.add_derived_bands(one, errs_g)
    assert errs2["V"][0] == pytest.approx(np.hypot(0.435 * 0.1, JORDI_RMS["V"]))


def test_tonry_ps1_to_bvri_and_existing_band_kept() -> None:
    ps1 = SURVEYS["PS1"]
    one = {b: np.array([v]) for b, v in {"g": 15.0, "r": 14.4, "i": 14.2}.items()}
    zero = {b: np.array([0.0]) for b in one}
    mags, errs = ps1.add_derived_bands(one, zero)
    x = 0.6
    assert mags["B"][0] == pytest.approx(15.0 + 0.212 + 0.556 * x + 0.034 * x**2)
    assert mags["V"][0] == pytest.approx(14.4 + 0.005 + 0.462 * x + 0.013 * x**2)
    assert mags["R"][0] == pytest.approx(14.4 - 0.137 - 0.108 * x - 0.029 * x**2)
    assert mags["I"][0] == pytest.approx(14.2 - 0.366 - 0.136 * x - 0.018 * x**2)
    assert errs["V"][0] == pytest.approx(TONRY_RMS["V"])
    given = {**one, "V": np.array([99.0])}
    kept, _ = ps1.add_derived_bands(given, {**zero, "V": np.array([0.0])})
    assert kept["V"][0] == 99.0
    missing_r = {"g": np.array([15.0])}
    partial, _ = ps1.add_derived_bands(missing_r, {"g": np.array([0.0])})
    assert np.isnan(partial["V"][0])  # no r: derived V is missing, not wrong


def test_colour_of() -> None:
    cat = ReferenceCatalogue(
        "APASS",
        [1.0, 2.0],
        [1.0, 2.0],
        {"B": [15.0, np.nan], "V": [14.0, 13.0], "g": [14.5, 13.5], "r": [14.0, 13.2], "i": [13.9, 13.0]},
        {"B": [0.03, np.nan], "V": [0.04, 0.02], "g": [0.0, 0.0], "r": [0.0, 0.0], "i": [0.0, 0.0]},
    )
    colour, err = colour_of(cat, "V")
    assert colour[0] == pytest.approx(1.0) and np.isnan(colour[1])
    assert err[0] == pytest.approx(0.05)
    colour_i, _ = colour_of(cat, "i")
    np.testing.assert_allclose(colour_i, [0.1, 0.2])
    with pytest.raises(KeyError):
        colour_of(cat, "z")


def test_custom_survey_colours() -> None:
    site = custom_survey("SiteStd", ["V", "I", "Halpha"])
    assert site.custom and not site.fetchable
    assert site.band("V").colour == ("V", "I")
    assert site.band("Halpha").colour is None and site.band("Halpha").wavelength_nm is None
    assert definition_for("SiteStd", ["V"]).custom
    assert definition_for("apass").name == "APASS"
    cat = ReferenceCatalogue("SiteStd", [1.0], [1.0], {"V": [12.0], "I": [11.0], "Halpha": [12.5]})
    assert colour_of(cat, "V")[0][0] == pytest.approx(1.0)
    assert np.isnan(colour_of(cat, "Halpha")[0]).all()
