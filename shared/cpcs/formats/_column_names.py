"""Column names CPCS looks for in uploaded catalogues, and the aliases it accepts for them.

Names are compared upper-cased. Besides the aliases listed explicitly, a SExtractor parameter name
cut short by a tool with a fixed field width (``MAGERR_AUT`` for ``MAGERR_AUTO``, ``ALPHA_J200`` for
``ALPHA_J2000``) is accepted when the cut keeps at least eight characters and still identifies a
single SExtractor parameter: ``MAGERR_AU`` means ``MAGERR_AUTO`` but ``MAGERR_A`` could be
``MAGERR_APER`` too, so it is not accepted.
"""

from __future__ import annotations

#: Right-ascension columns in order of preference.
RA_NAMES: tuple[str, ...] = ("ALPHA_J2000", "ALPHAWIN_J2000", "ALPHAPSF_J2000", "X_WORLD", "RA", "RAJ2000")
#: Declination columns, paired index by index with :data:`RA_NAMES`.
DEC_NAMES: tuple[str, ...] = ("DELTA_J2000", "DELTAWIN_J2000", "DELTAPSF_J2000", "Y_WORLD", "DEC", "DEJ2000")
#: (magnitude, error) pairs used when the upload does not name a magnitude column, in order of preference.
MAGNITUDE_PAIRS: tuple[tuple[str, str], ...] = (("MAG_AUTO", "MAGERR_AUTO"), ("MAG_APER", "MAGERR_APER"))
#: SExtractor's extraction flags.
FLAGS_NAME = "FLAGS"
#: Aperture columns that may be written as one header line per element (``MAG_APER_2``).
VECTOR_NAMES: tuple[str, ...] = ("MAG_APER", "MAGERR_APER", "FLUX_APER", "FLUXERR_APER")
#: Pixel-position columns, only used to explain what is wrong when sky coordinates are missing.
PIXEL_NAMES: tuple[str, ...] = ("X_IMAGE", "Y_IMAGE", "XWIN_IMAGE", "YWIN_IMAGE", "X", "Y")

# SExtractor parameters that share prefixes with the ones above; they decide which truncations are
# unambiguous. Not exhaustive, only the relevant families.
_SEXTRACTOR_PARAMETERS: tuple[str, ...] = (
    *(f"{base}{system}" for base in ("ALPHA", "DELTA") for system in ("_SKY", "_J2000", "_B1950")),
    *(
        f"{base}{kind}{system}"
        for base in ("ALPHA", "DELTA")
        for kind in ("PEAK", "WIN", "PSF")
        for system in ("_SKY", "_J2000", "_B1950")
    ),
    *(
        f"{prefix}_{kind}"
        for prefix in ("MAG", "MAGERR", "FLUX", "FLUXERR")
        for kind in (
            "AUTO", "APER", "ISO", "ISOCOR", "BEST", "PETRO", "PSF", "WIN", "MODEL", "HYBRID",
            "POINTSOURCE", "SPHEROID", "DISK", "MAX", "RADIUS", "GROWTH", "GROWTHSTEP",
        )
    ),
    "X_WORLD", "Y_WORLD", "XWIN_WORLD", "YWIN_WORLD", "XPEAK_WORLD", "YPEAK_WORLD", "XPSF_WORLD",
    "YPSF_WORLD", "FLAGS", "FLAGS_WEIGHT", "FLAGS_WIN", "FLAGS_MODEL", "IMAFLAGS_ISO",
)  # fmt: skip

_TARGETS: tuple[str, ...] = (
    *RA_NAMES, *DEC_NAMES, *(name for pair in MAGNITUDE_PAIRS for name in pair), FLAGS_NAME, *VECTOR_NAMES
)  # fmt: skip

_MIN_TRUNCATED_LENGTH = 8


def _truncations() -> dict[str, str]:
    known = set(_SEXTRACTOR_PARAMETERS) | set(_TARGETS)
    aliases: dict[str, str] = {}
    for name in _TARGETS:
        for length in range(_MIN_TRUNCATED_LENGTH, len(name)):
            prefix = name[:length]
            if prefix in known:
                continue
            if sum(other.startswith(prefix) for other in known) == 1:
                aliases[prefix] = name
    return aliases


#: Truncated spelling -> full SExtractor name, e.g. ``"MAGERR_AUT" -> "MAGERR_AUTO"``.
TRUNCATED_ALIASES: dict[str, str] = _truncations()


def canonical_name(name: str) -> str:
    """Upper-case ``name`` and expand an accepted truncation to the full SExtractor name."""
    upper = name.strip().upper()
    return TRUNCATED_ALIASES.get(upper, upper)


def is_known_name(name: str) -> bool:
    """True if ``name`` (any case, possibly truncated) is a column CPCS looks for."""
    return canonical_name(name) in _TARGETS
