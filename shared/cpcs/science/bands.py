"""Observers' filter names mapped to standard bands with their effective wavelengths.

Effective wavelengths (nm) are rounded values of the usual passbands: Bessell (1990) for
Johnson-Cousins UBVRI, Fukugita et al. (1996) for SDSS ugriz, Tonry et al. (2012) for PS1,
Cohen et al. (2003) for 2MASS, and the Gaia DR3 passbands for G, BP, RP. Unfiltered (Clear)
CCD data peak near 600-650 nm, closest to Gaia G and r.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StandardBand:
    name: str
    wavelength_nm: float
    system: str  # "Vega" or "AB"


STANDARD_BANDS: dict[str, StandardBand] = {
    b.name: b
    for b in (
        StandardBand("U", 366.0, "Vega"),
        StandardBand("B", 438.0, "Vega"),
        StandardBand("V", 545.0, "Vega"),
        StandardBand("R", 641.0, "Vega"),
        StandardBand("I", 798.0, "Vega"),
        StandardBand("u", 356.0, "AB"),
        StandardBand("g", 472.0, "AB"),
        StandardBand("r", 619.0, "AB"),
        StandardBand("i", 750.0, "AB"),
        StandardBand("z", 890.0, "AB"),
        StandardBand("y", 960.0, "AB"),
        StandardBand("J", 1235.0, "Vega"),
        StandardBand("H", 1662.0, "Vega"),
        StandardBand("K", 2159.0, "Vega"),
        StandardBand("G", 622.0, "Vega"),
        StandardBand("BP", 511.0, "Vega"),
        StandardBand("RP", 777.0, "Vega"),
        StandardBand("Clear", 620.0, "Vega"),
    )
}

_ALIASES: dict[str, str] = {
    "johnson_u": "U",
    "bessell_u": "U",
    "johnson_b": "B",
    "bessell_b": "B",
    "johnson_v": "V",
    "bessell_v": "V",
    "rc": "R",
    "cousins_r": "R",
    "bessell_r": "R",
    "johnson_r": "R",
    "ic": "I",
    "cousins_i": "I",
    "bessell_i": "I",
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
    "r'": "r",
    "sdss_r": "r",
    "sdssr": "r",
    "rp_sdss": "r",
    "ps1_r": "r",
    "i'": "i",
    "sdss_i": "i",
    "sdssi": "i",
    "ip": "i",
    "ps1_i": "i",
    "z'": "z",
    "sdss_z": "z",
    "sdssz": "z",
    "zp": "z",
    "zs": "z",
    "ps1_z": "z",
    "ks": "K",
    "k_s": "K",
    "gaia_g": "G",
    "bp": "BP",
    "rp": "RP",
    "clear": "Clear",
    "c": "Clear",
    "cv": "Clear",
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

    Single letters keep their case (``I`` is Cousins I, ``i`` is SDSS i), as CPCS had it.
    """
    if not filter_name:
        return None
    name = filter_name.strip()
    if name in STANDARD_BANDS:
        return STANDARD_BANDS[name]
    alias = _ALIASES.get(name.lower())
    return STANDARD_BANDS[alias] if alias else None
