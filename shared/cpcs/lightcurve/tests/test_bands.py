"""The filter registry: local names, standard bands, survey bands, and every emitted name known to sncosmo.

sncosmo (a dev extra) is installed in the development environment: the names are checked against its
bandpass and magnitude-system registries, which is exactly what SkyPortal accepts
(``skyportal/enum_types.py`` builds ``ALLOWED_BANDPASSES`` and ``ALLOWED_MAGSYSTEMS`` from them).
The bandpass data of most filters is downloaded by sncosmo on first use, which tests cannot do;
the Bessell curves ship with sncosmo and are loaded for real. Without sncosmo, the registry is
checked against the names recorded below from sncosmo 2.13.1's registry.
"""

from __future__ import annotations

import importlib.util
import math

import pytest

from cpcs.catalogs.surveys import SURVEYS
from cpcs.science.bands import (
    NO_SNCOSMO_BANDS,
    STANDARD_BANDS,
    SURVEY_BANDPASSES,
    StandardBand,
    describe_calibrated_filter,
    emitted_sncosmo_names,
    export_band,
    filter_aliases,
    is_unfiltered,
    standard_band,
)

#: The bandpass families CPCS emits, as registered in sncosmo 2.13.1
#: (``sncosmo.bandpasses._BANDPASSES.get_loaders_metadata()``).
RECORDED_SNCOSMO_BANDPASSES = frozenset(
    {
        "bessellux", "bessellb", "bessellv", "bessellr", "besselli",
        "sdssu", "sdssg", "sdssr", "sdssi", "sdssz",
        "ps1::open", "ps1::g", "ps1::r", "ps1::i", "ps1::z", "ps1::y", "ps1::w",
        "2massj", "2massh", "2massks",
        "gaia::gbp", "gaia::g", "gaia::grp", "gaia::grvs",
        "skymapperu", "skymapperg", "skymapperr", "skymapperi", "skymapperz",
    }
)  # fmt: skip
RECORDED_SNCOSMO_MAGSYSTEMS = frozenset({"jla1", "ab", "vega", "bd17", "csp", "ab-b12"})

HAVE_SNCOSMO = importlib.util.find_spec("sncosmo") is not None


def _registered_bandpasses() -> set[str]:
    if not HAVE_SNCOSMO:
        return set(RECORDED_SNCOSMO_BANDPASSES)
    from sncosmo.bandpasses import _BANDPASSES

    return {meta["name"] for meta in _BANDPASSES.get_loaders_metadata()}


def _registered_magsystems() -> set[str]:
    if not HAVE_SNCOSMO:
        return set(RECORDED_SNCOSMO_MAGSYSTEMS)
    from sncosmo.magsystems import _MAGSYSTEMS

    return {meta["name"] for meta in _MAGSYSTEMS.get_loaders_metadata()}


def test_standard_band_keeps_its_old_interface() -> None:
    v = standard_band("V")
    assert v == StandardBand("V", 545.0, "Vega", "bessellv")
    assert (v.name, v.wavelength_nm, v.system) == ("V", 545.0, "Vega")
    assert standard_band("I") is STANDARD_BANDS["I"] and standard_band("i") is STANDARD_BANDS["i"]
    assert standard_band(None) is None and standard_band("") is None and standard_band("Halpha") is None
    assert {b.system for b in STANDARD_BANDS.values()} == {"Vega", "AB"}


@pytest.mark.parametrize(
    ("local", "band"),
    [
        ("V", "V"),
        ("R", "R"),
        ("Rc", "R"),
        ("r'", "r"),
        ("sdss_r", "r"),
        ("Clear", "Clear"),
        ("CV", "Clear"),
        ("L", "Clear"),
        ("Ic", "I"),
        ("Ks", "K"),
        ("bessellv", "V"),
        ("ps1::r", "r"),
        ("gaia::g", "G"),
        (" g' ", "g"),
    ],
)
def test_local_names_map_to_standard_bands(local: str, band: str) -> None:
    resolved = standard_band(local)
    assert resolved is not None and resolved.name == band


@pytest.mark.parametrize(
    ("survey", "band", "sncosmo", "magsys"),
    [
        ("PS1", "r", "ps1::r", "ab"),
        ("PS1", "y", "ps1::y", "ab"),
        ("PS1", "V", "bessellv", "vega"),
        ("APASS", "V", "bessellv", "vega"),
        ("APASS", "g", "sdssg", "ab"),
        ("SDSS", "r", "sdssr", "ab"),
        ("SDSS", "I", "besselli", "vega"),
        ("GaiaSP", "R", "bessellr", "vega"),
        ("GaiaSP", "U", "bessellux", "vega"),
        ("GaiaSP", "z", "sdssz", "ab"),
        ("Gaia", "G", "gaia::g", "vega"),
        ("Gaia", "BP", "gaia::gbp", "vega"),
        ("2MASS", "K", "2massks", "vega"),
        ("ps1", "g", "ps1::g", "ab"),  # survey names as the catalogue store spells them
        ("SiteStandards", "V", "bessellv", "vega"),  # a site's own survey: the standard band
        ("SiteStandards", "r", "sdssr", "ab"),
    ],
)
def test_survey_bands_are_named_for_sncosmo(survey: str, band: str, sncosmo: str, magsys: str) -> None:
    named = export_band(survey, band)
    assert (named.sncosmo, named.magsys) == (sncosmo, magsys)


def test_every_band_of_every_known_survey_is_named_with_its_system() -> None:
    for survey in SURVEYS.values():
        for band in survey.bands:
            named = export_band(survey.name, band.name)
            assert named.system == band.system, (survey.name, band.name)
            if (survey.name, band.name) in NO_SNCOSMO_BANDS:
                assert named.sncosmo is None, (survey.name, band.name)
                continue
            assert named.sncosmo is not None, (survey.name, band.name)
            assert (survey.name, band.name) in SURVEY_BANDPASSES
    # only USNO-B1's photographic bands and SkyMapper's v lack an sncosmo bandpass
    assert {s for s, _ in NO_SNCOSMO_BANDS} == {"USNO-B1", "SkyMapper"}


def test_a_band_without_an_sncosmo_counterpart_has_no_name() -> None:
    named = export_band("SiteStandards", "Halpha")
    assert named.sncosmo is None and named.magsys is None


def test_clear_is_never_a_bandpass() -> None:
    assert STANDARD_BANDS["Clear"].sncosmo is None
    assert export_band("Gaia", "Clear").sncosmo is None
    assert not any("clear" in name or "open" in name for name in emitted_sncosmo_names())


def test_unfiltered_data_are_named_honestly() -> None:
    assert (
        is_unfiltered("Clear") and is_unfiltered("C") and not is_unfiltered("V") and not is_unfiltered(None)
    )
    assert export_band("Gaia", "G").sncosmo == "gaia::g"
    assert (
        describe_calibrated_filter("Clear", "Gaia", "G")
        == "unfiltered (Clear), calibrated to Gaia G (Gaia DR3)"
    )
    assert (
        describe_calibrated_filter("Clear", "PS1", "r") == "unfiltered (Clear), calibrated to r (Pan-STARRS1)"
    )
    assert describe_calibrated_filter("Rc", "PS1", "R") == "Rc, calibrated to R (derived from Pan-STARRS1)"
    assert describe_calibrated_filter(None, "APASS", "V") == "calibrated to V (APASS DR9)"


def test_aliases_are_lower_case_and_point_at_standard_bands() -> None:
    aliases = filter_aliases()
    assert all(key == key.lower() for key in aliases)
    assert set(aliases.values()) <= set(STANDARD_BANDS)


def test_every_emitted_name_is_registered_in_sncosmo() -> None:
    registered = _registered_bandpasses()
    emitted = emitted_sncosmo_names()
    assert emitted <= registered, sorted(emitted - registered)
    assert emitted <= RECORDED_SNCOSMO_BANDPASSES  # the recorded fallback list covers the registry
    magsystems = {b.magsys for b in STANDARD_BANDS.values()}
    magsystems |= {export_band(s, b).magsys for s, b in SURVEY_BANDPASSES}
    assert magsystems == {"ab", "vega"} and magsystems <= _registered_magsystems()


def test_bessell_bandpasses_load_and_match_our_wavelengths() -> None:
    """The Bessell curves ship inside sncosmo (the others are downloaded on first use: not in a test)."""
    import sncosmo

    for band in "UBVRI":
        ours = STANDARD_BANDS[band]
        assert ours.sncosmo is not None
        bandpass = sncosmo.get_bandpass(ours.sncosmo)
        assert math.isclose(bandpass.wave_eff / 10.0, ours.wavelength_nm, rel_tol=0.03), band
        assert sncosmo.get_magsystem("ab").zpbandflux(bandpass) > 0
