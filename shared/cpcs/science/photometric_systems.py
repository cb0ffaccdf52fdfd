"""Magnitude systems: Vega-to-AB offsets and AB magnitudes as fluxes in microjansky.

Offsets m_AB - m_Vega are those of Blanton & Roweis (2007, AJ 133, 734, table 1) for the
Johnson-Cousins and 2MASS bands, and Gaia EDR3's published zero points (Riello et al. 2021)
for G, BP and RP. Bands already on the AB system (SDSS, PS1, APASS g'r'i', RefCat2 griz, SkyMapper
uvgriz, VST ATLAS ugriz) have offset 0; OGLE-III V and I take the Johnson-Cousins offsets. The
photographic USNO-B1 bands (B1, R1, B2, R2 and the IV-N "I" of :func:`ab_offset_of`) have no
published offset: a point calibrated to them carries no AB flux.
"""

from __future__ import annotations

import math

AB_ZERO_POINT_UJY_MAG = 23.9  # m_AB = 23.9 - 2.5 log10(f / uJy)

VEGA_TO_AB_OFFSET: dict[str, float] = {
    "U": 0.79,
    "B": -0.09,
    "V": 0.02,
    "R": 0.21,
    "I": 0.45,
    "J": 0.91,
    "H": 1.39,
    "K": 1.85,
    "G": 0.115,
    "BP": 0.035,
    "RP": 0.361,
}


#: Bands of a known survey whose name matches a Johnson-Cousins band but whose passband does not:
#: no Vega-to-AB offset applies to them.
_NO_OFFSET: frozenset[tuple[str, str]] = frozenset({("USNO-B1", "I")})


def ab_offset(band: str, system: str) -> float:
    """m_AB - m for a band on the given system ("AB" or "Vega"); unknown Vega bands raise KeyError."""
    if system.upper() == "AB":
        return 0.0
    return VEGA_TO_AB_OFFSET[band]


def ab_offset_of(survey: str, band: str, system: str) -> float | None:
    """m_AB - m for a survey's band, or None when no offset is known (photographic bands)."""
    if (survey, band) in _NO_OFFSET:
        return None
    try:
        return ab_offset(band, system)
    except KeyError:
        return None


def ab_flux_ujy(
    mag: float, mag_err: float, offset_to_ab: float, is_upper_limit: bool
) -> tuple[float | None, float | None]:
    """Flux and its 1-sigma error in uJy from a magnitude on a system ``offset_to_ab`` from AB.

    For an upper limit (a 5-sigma limiting magnitude) the flux is unknown (None) and the error
    is the 1-sigma noise, a fifth of the limiting flux.
    """
    if not math.isfinite(mag):
        return None, None
    flux = 10 ** (-0.4 * (mag + offset_to_ab - AB_ZERO_POINT_UJY_MAG))
    if is_upper_limit:
        return None, flux / 5.0
    error = flux * math.log(10) / 2.5 * mag_err if math.isfinite(mag_err) and mag_err >= 0 else None
    return flux, error
