"""The filter registry: observers' filter names, standard bands, and what a calibrated band is called outside.

Three questions, one place:

* **What does an observer's filter name stand for?** :func:`standard_band` maps local names (``V``,
  ``Rc``, ``r'``, ``sdss_r``, ``Clear``...) to a :class:`StandardBand` with its effective wavelength
  (used by the calibration to prefer reference bands near the declared filter) and magnitude system.
* **What is a standard band called in sncosmo?** ``StandardBand.sncosmo`` (``bessellv``, ``sdssr``,
  ``2massks``, ``gaia::g``...), ``None`` for the unfiltered pseudo-band ``Clear``.
* **What is a calibrated point called outside CPCS?** A point is calibrated to a reference survey's
  band, ``(survey, band)``; :func:`export_band` gives its sncosmo bandpass, sncosmo magnitude system
  (``"ab"`` or ``"vega"``) and a label. The survey decides the family where it matters: PS1's r is
  ``ps1::r``, APASS's and SDSS's r are ``sdssr``; Johnson-Cousins bands of any survey (observed by
  APASS, derived from SDSS/PS1 or synthesised by Gaia XP) are Bessell (1990) ``bessell*``. RefCat2's
  griz are on the PS1 system (``ps1::*``), SkyMapper's ugriz have their own sncosmo bandpasses
  (``skymapper*``; its v has none), VST ATLAS ugriz are named as SDSS, OGLE-III V and I as Bessell;
  USNO-B1's photographic bands have no sncosmo counterpart.

Unfiltered data are named honestly: a ``Clear`` frame calibrated to Gaia G *is* a Gaia G point
(``gaia::g``), one calibrated to PS1 r is ``ps1::r``; the observer's filter travels alongside
(:func:`describe_calibrated_filter`), and no ``clear`` bandpass is ever invented. The sncosmo names
here are all registered in sncosmo 2.13 (the dev extra installs it and the tests check every name the
registry can emit); SkyPortal accepts exactly sncosmo's registered bandpass and magsystem names.

Effective wavelengths (nm) are rounded values of the usual passbands: Bessell (1990) for
Johnson-Cousins UBVRI, Fukugita et al. (1996) for SDSS ugriz, Tonry et al. (2012) for PS1,
Cohen et al. (2003) for 2MASS, and the Gaia DR3 passbands for G, BP, RP. Unfiltered (Clear) CCD
data peak near 600-650 nm, closest to Gaia G and r.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cpcs.catalogs.surveys import find_survey

__all__ = [
    "NO_SNCOSMO_BANDS",
    "SNCOSMO_MAGSYSTEMS",
    "STANDARD_BANDS",
    "SURVEY_BANDPASSES",
    "ExportBand",
    "StandardBand",
    "band_family",
    "describe_calibrated_filter",
    "emitted_sncosmo_names",
    "export_band",
    "filter_aliases",
    "is_unfiltered",
    "standard_band",
]

SncosmoMagsys = Literal["ab", "vega"]

#: Our magnitude systems and sncosmo's names for them.
SNCOSMO_MAGSYSTEMS: dict[str, SncosmoMagsys] = {"AB": "ab", "Vega": "vega"}


@dataclass(frozen=True)
class StandardBand:
    """A standard photometric band.

    Attributes
    ----------
    name : str
        Our name (``"V"``, ``"r"``, ``"K"``, ``"G"``, ``"Clear"``). Case matters: ``R`` is Cousins R,
        ``r`` is Sloan r.
    wavelength_nm : float
        Approximate effective wavelength.
    system : str
        ``"Vega"`` or ``"AB"``.
    sncosmo : str or None
        sncosmo's bandpass for the band's defining system (Bessell for Johnson-Cousins, SDSS for
        ugriz, PS1 for y which SDSS lacks); ``None`` for ``Clear``, which is no band of its own.
    """

    name: str
    wavelength_nm: float
    system: str  # "Vega" or "AB"
    sncosmo: str | None = None

    @property
    def magsys(self) -> SncosmoMagsys:
        """sncosmo's name of the band's magnitude system (``"ab"`` or ``"vega"``)."""
        return SNCOSMO_MAGSYSTEMS[self.system]


STANDARD_BANDS: dict[str, StandardBand] = {
    b.name: b
    for b in (
        StandardBand("U", 366.0, "Vega", "bessellux"),
        StandardBand("B", 438.0, "Vega", "bessellb"),
        StandardBand("V", 545.0, "Vega", "bessellv"),
        StandardBand("R", 641.0, "Vega", "bessellr"),
        StandardBand("I", 798.0, "Vega", "besselli"),
        StandardBand("u", 356.0, "AB", "sdssu"),
        StandardBand("g", 472.0, "AB", "sdssg"),
        StandardBand("r", 619.0, "AB", "sdssr"),
        StandardBand("i", 750.0, "AB", "sdssi"),
        StandardBand("z", 890.0, "AB", "sdssz"),
        StandardBand("y", 960.0, "AB", "ps1::y"),
        StandardBand("J", 1235.0, "Vega", "2massj"),
        StandardBand("H", 1662.0, "Vega", "2massh"),
        StandardBand("K", 2159.0, "Vega", "2massks"),
        StandardBand("G", 622.0, "Vega", "gaia::g"),
        StandardBand("BP", 511.0, "Vega", "gaia::gbp"),
        StandardBand("RP", 777.0, "Vega", "gaia::grp"),
        StandardBand("Clear", 620.0, "Vega", None),
    )
}

_ALIASES: dict[str, str] = {
    "johnson_u": "U",
    "bessell_u": "U",
    "bessellux": "U",
    "johnson_b": "B",
    "bessell_b": "B",
    "bessellb": "B",
    "johnson_v": "V",
    "bessell_v": "V",
    "bessellv": "V",
    "rc": "R",
    "cousins_r": "R",
    "bessell_r": "R",
    "bessellr": "R",
    "johnson_r": "R",
    "ic": "I",
    "cousins_i": "I",
    "bessell_i": "I",
    "besselli": "I",
    "johnson_i": "I",
    "u'": "u",
    "sdss_u": "u",
    "sdssu": "u",
    "up": "u",
    "g'": "g",
    "sdss_g": "g",
    "sdssg": "g",
    "gp": "g",
    "ps1_g": "g",
    "ps1::g": "g",
    "r'": "r",
    "sdss_r": "r",
    "sdssr": "r",
    "rp_sdss": "r",
    "ps1_r": "r",
    "ps1::r": "r",
    "i'": "i",
    "sdss_i": "i",
    "sdssi": "i",
    "ip": "i",
    "ps1_i": "i",
    "ps1::i": "i",
    "z'": "z",
    "sdss_z": "z",
    "sdssz": "z",
    "zp": "z",
    "zs": "z",
    "ps1_z": "z",
    "ps1::z": "z",
    "ps1_y": "y",
    "ps1::y": "y",
    "skymapperu": "u",
    "skymapperg": "g",
    "skymapperr": "r",
    "skymapperi": "i",
    "skymapperz": "z",
    "2massj": "J",
    "2massh": "H",
    "ks": "K",
    "k_s": "K",
    "2massks": "K",
    "gaia_g": "G",
    "gaia::g": "G",
    "bp": "BP",
    "gaia::gbp": "BP",
    "rp": "RP",
    "gaia::grp": "RP",
    "clear": "Clear",
    "c": "Clear",
    "cv": "Clear",
    "cr": "Clear",
    "cbb": "Clear",
    "l": "Clear",
    "lum": "Clear",
    "luminance": "Clear",
    "open": "Clear",
    "none": "Clear",
    "unfiltered": "Clear",
}


def standard_band(filter_name: str | None) -> StandardBand | None:
    """The standard band an observer's filter name stands for, or None if unknown.

    Single letters keep their case (``I`` is Cousins I, ``i`` is SDSS i), as CPCS had it; longer
    names (``Rc``, ``sdss_r``, ``Clear``, sncosmo names such as ``bessellv``) match in any case.
    """
    if not filter_name:
        return None
    name = filter_name.strip()
    if name in STANDARD_BANDS:
        return STANDARD_BANDS[name]
    alias = _ALIASES.get(name.lower())
    return STANDARD_BANDS[alias] if alias else None


#: The band families a declared filter fixes: a Johnson-Cousins band and its Sloan namesake (an
#: observer's "R" or "r" filter is calibrated to an R or an r band, whichever survey calibrates it
#: best), every other band alone. ``Clear`` fixes no family.
_FAMILIES: tuple[frozenset[str], ...] = tuple(
    frozenset(f)
    for f in (
        ("U", "u"),
        ("R", "r"),
        ("I", "i"),
        ("B",),
        ("V",),
        ("g",),
        ("z",),
        ("y",),
        ("J",),
        ("H",),
        ("K",),
        ("G",),
        ("BP",),
        ("RP",),
    )
)


def band_family(filter_name: str | None) -> frozenset[str] | None:
    """The standard bands a declared filter stands for, or None when it fixes none.

    ``"r'"`` and ``"Rc"`` give ``{"R", "r"}``, ``"V"`` gives ``{"V"}``; an unfiltered (``Clear``),
    unknown or missing filter name gives None: any band may then calibrate the frame. A reference
    band belongs to the family when :func:`standard_band` of its name is in it.
    """
    band = standard_band(filter_name)
    if band is None or band.name == "Clear":
        return None
    for family in _FAMILIES:
        if band.name in family:
            return family
    return frozenset({band.name})


def filter_aliases() -> dict[str, str]:
    """The local filter names :func:`standard_band` knows besides the band names (lower case -> band)."""
    return dict(_ALIASES)


def is_unfiltered(filter_name: str | None) -> bool:
    """True when the observer's filter name means no filter (``Clear``, ``C``, ``L``, ``open``...)."""
    band = standard_band(filter_name)
    return band is not None and band.name == "Clear"


# --------------------------------------------------------------------------------------------------
# Calibrated bands: (reference survey, band) -> sncosmo bandpass.

_BESSELL = {"U": "bessellux", "B": "bessellb", "V": "bessellv", "R": "bessellr", "I": "besselli"}
_SDSS = {"u": "sdssu", "g": "sdssg", "r": "sdssr", "i": "sdssi", "z": "sdssz"}
_PS1 = {"g": "ps1::g", "r": "ps1::r", "i": "ps1::i", "z": "ps1::z", "y": "ps1::y"}
_TWOMASS = {"J": "2massj", "H": "2massh", "K": "2massks", "Ks": "2massks"}
_GAIA = {"G": "gaia::g", "BP": "gaia::gbp", "RP": "gaia::grp"}
# sncosmo 2.13 registers SkyMapper u g r i z (skymapperu ...), not its v band.
_SKYMAPPER = {b: f"skymapper{b}" for b in "ugriz"}

#: sncosmo bandpass of each band of the known reference surveys (canonical survey names of
#: ``cpcs.catalogs.surveys``). APASS g'r'i' and the GaiaSP Sloan bands are on the SDSS system; the
#: Johnson-Cousins bands (observed, derived from SDSS/PS1, or synthesised from Gaia XP spectra) are
#: Bessell's representation of Johnson-Cousins UBVRI; 2MASS K is Ks.
SURVEY_BANDPASSES: dict[tuple[str, str], str] = {
    **{("APASS", b): _BESSELL[b] for b in ("B", "V")},
    **{("APASS", b): _SDSS[b] for b in ("g", "r", "i")},
    **{("PS1", b): name for b, name in _PS1.items()},
    **{("PS1", b): name for b, name in _BESSELL.items() if b != "U"},
    **{("SDSS", b): name for b, name in _SDSS.items()},
    **{("SDSS", b): name for b, name in _BESSELL.items() if b != "U"},
    **{("2MASS", b): name for b, name in _TWOMASS.items()},
    **{("GaiaSP", b): name for b, name in _BESSELL.items()},
    **{("GaiaSP", b): name for b, name in _SDSS.items()},
    **{("Gaia", b): name for b, name in _GAIA.items()},
    **{("RefCat2", b): name for b, name in _PS1.items() if b != "y"},
    **{("RefCat2", b): name for b, name in _BESSELL.items() if b != "U"},
    **{("SkyMapper", b): name for b, name in _SKYMAPPER.items()},
    **{("VST-ATLAS", b): name for b, name in _SDSS.items()},
    **{("OGLE-III", b): _BESSELL[b] for b in ("V", "I")},
}

#: Bands with no sncosmo bandpass at all, not even the standard band of the same name: the
#: photographic USNO-B1 magnitudes (its "I" is the IV-N emulsion, not Cousins I) and SkyMapper's v.
#: Points calibrated to them are left out of exports that need an sncosmo name.
NO_SNCOSMO_BANDS: frozenset[tuple[str, str]] = frozenset(
    {*(("USNO-B1", b) for b in ("B1", "R1", "B2", "R2", "I")), ("SkyMapper", "v")}
)

_SURVEY_LABELS = {
    "APASS": "APASS DR9",
    "PS1": "Pan-STARRS1",
    "SDSS": "SDSS DR12",
    "2MASS": "2MASS",
    "GaiaSP": "Gaia DR3 synthetic photometry",
    "Gaia": "Gaia DR3",
    "RefCat2": "ATLAS RefCat2",
    "SkyMapper": "SkyMapper DR4",
    "VST-ATLAS": "VST ATLAS",
    "OGLE-III": "OGLE-III maps",
    "USNO-B1": "USNO-B1.0 photographic",
}
_BAND_LABELS = {"G": "Gaia G", "BP": "Gaia BP", "RP": "Gaia RP", "K": "Ks", "y": "y"}


@dataclass(frozen=True)
class ExportBand:
    """What a point calibrated to ``(survey, band)`` is called outside CPCS.

    Attributes
    ----------
    survey, band : str
        The reference survey (canonical name when known) and band the point is calibrated to.
    sncosmo : str or None
        sncosmo's bandpass name; ``None`` when the band has no sncosmo counterpart (a site's own
        band): such points are left out of exports that need one (SkyPortal).
    system : str or None
        ``"AB"`` or ``"Vega"``; ``None`` when unknown.
    magsys : {"ab", "vega"} or None
        sncosmo's name of ``system``.
    label : str
        Human-readable, e.g. ``"r (Pan-STARRS1)"``, ``"V (derived from SDSS DR12)"``.
    """

    survey: str
    band: str
    sncosmo: str | None
    system: str | None
    magsys: SncosmoMagsys | None
    label: str


def export_band(survey: str, band: str) -> ExportBand:
    """Name the band a point is calibrated to: sncosmo bandpass, magnitude system, label.

    Known surveys use :data:`SURVEY_BANDPASSES`; a site's own survey (or a band a known survey does
    not define) falls back on the standard band of the same name (``V`` is Johnson V, ``r`` Sloan r,
    as everywhere in CPCS), else it has no sncosmo name.
    """
    definition = find_survey(survey)
    canonical = definition.name if definition is not None else survey
    standard = STANDARD_BANDS.get("K" if band == "Ks" else band) if band != "Clear" else None
    name = SURVEY_BANDPASSES.get((canonical, band))
    if name is None and standard is not None and (canonical, band) not in NO_SNCOSMO_BANDS:
        name = standard.sncosmo
    system: str | None = None
    if definition is not None and definition.has_band(band):
        system = definition.band(band).system
    if system is None and standard is not None:
        system = standard.system
    magsys = SNCOSMO_MAGSYSTEMS.get(system) if system is not None else None
    derived = definition is not None and definition.has_band(band) and definition.band(band).derived
    source = _SURVEY_LABELS.get(canonical, canonical)
    label = f"{_BAND_LABELS.get(band, band)} ({'derived from ' if derived else ''}{source})"
    return ExportBand(canonical, band, name, system, magsys, label)


def describe_calibrated_filter(declared: str | None, survey: str, band: str) -> str:
    """One honest sentence: the observer's filter and what it was calibrated to.

    ``("Clear", "Gaia", "G")`` gives ``"unfiltered (Clear), calibrated to Gaia G (Gaia DR3)"``;
    ``("V", "APASS", "V")`` gives ``"V, calibrated to V (APASS DR9)"``.
    """
    target = export_band(survey, band).label
    if is_unfiltered(declared):
        return f"unfiltered ({declared}), calibrated to {target}"
    if declared:
        return f"{declared}, calibrated to {target}"
    return f"calibrated to {target}"


def emitted_sncosmo_names() -> set[str]:
    """Every sncosmo bandpass name the registry can emit (for tests against sncosmo)."""
    names = set(SURVEY_BANDPASSES.values())
    names.update(b.sncosmo for b in STANDARD_BANDS.values() if b.sncosmo is not None)
    return names
