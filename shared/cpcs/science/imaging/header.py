"""Standardise the zoo of observatory FITS headers into one :class:`ImageHeader`.

Which keyword wins
------------------
Time (mid-exposure, MJD UTC), first match wins:

1. ``MJD-MID``; ``DATE-AVG`` (ISO) -- already mid-exposure, used as they are;
2. ``MJD-OBS``; ``DATE-OBS`` with a time (in the value, or in ``TIME-OBS`` / ``UT`` / ``UTSTART`` /
   ``TIME-BEG``, or ``TAIHMS`` -- SDSS's start time in TAI, converted to UTC); ``JD``; ``HJD`` --
   exposure *start*: half the exposure time is added.

``HJD`` is treated as a geocentric JD: the heliocentric correction is at most 8.3 minutes
(light travel time across 1 au), far below what matters for the light curve of a transient
sampled nightly; :attr:`ImageHeader.notes` says so when it happens. A ``DATE-OBS`` holding only a
date (no time anywhere) gives no time at all rather than a guess up to a day wrong.

Exposure time: ``EXPTIME``, ``EXPOSURE``, ``EXP_TIME``, ``ITIME``. Filter: ``FILTER``, ``FILTNAM``,
``FILTER1``, ``FILTER2``, ``FILTER3``, ``INSFLNAM``; a value such as ``OPEN`` or ``CLEAR`` is skipped
when another of these keywords names a real filter (an image taken with only a clear filter keeps
``CLEAR``). Gain (e-/ADU): ``GAIN``, ``EGAIN``, ``GAIN1``, ``CCDGAIN``. Saturation (ADU): ``SATURATE``,
``SATLEVEL``, ``SATUR``, ``MAXLIN``, ``DATAMAX``; when absent, :func:`estimate_saturation_level` looks
at the data. Pointing: ``RA``/``DEC``, ``OBJCTRA``/``OBJCTDEC``, ``TELRA``/``TELDEC``, ``RA-MNT``/``DEC-MNT``
(the mount, PANOPTES), then the WCS
reference point (``CRVAL``); numbers are degrees, sexagesimal strings are hours (RA) and degrees (Dec).
Pixel scale (arcsec/pixel): the WCS when it is valid, else ``PIXSCALE``, ``SECPIX``, ``PIXSCAL1``,
``SCALE``, then ``CDELT1`` / the ``CD`` matrix (degrees).

Numeric cards may be strings (``EXPTIME = '53.907456'``): a string that reads as a number counts as
that number. Pixel unit: ``BUNIT`` as written (``nanomaggy``, ``ADU``, ``e-/s``...); what it means
for the noise is decided in :mod:`~cpcs.science.imaging.noise`.

Colour mosaics: ``BAYERPAT`` or a colour-filter pattern as the ``FILTER`` value marks a raw Bayer
frame (:mod:`cpcs.science.imaging.bayer`); its green pixels are measured and, unless another filter
card names a real filter, calibrated as ``V``.

Headers win over :class:`InstrumentDefaults`, which only fill what the header lacks.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS, FITSFixedWarning

from cpcs.science.imaging.bayer import CFA_PATTERNS, DSLR_GREEN_BAND, bayer_pattern_from_cards

__all__ = [
    "JD_TO_MJD",
    "ImageHeader",
    "InstrumentDefaults",
    "estimate_saturation_level",
    "standardise_header",
    "validate_wcs",
]

#: MJD = JD - JD_TO_MJD.
JD_TO_MJD = 2400000.5
#: Largest pixel scale (deg/pixel) a WCS may have before it is rejected as absurd.
MAX_PIXEL_SCALE_DEG = 1.0
#: Smallest pixel scale (arcsec/pixel) a WCS may have before it is rejected as absurd.
MIN_PIXEL_SCALE_ARCSEC = 1e-3

_EXPTIME_KEYS = ("EXPTIME", "EXPOSURE", "EXP_TIME", "ITIME")
_FILTER_KEYS = ("FILTER", "FILTNAM", "FILTER1", "FILTER2", "FILTER3", "INSFLNAM")
_EMPTY_FILTERS = frozenset({"", "OPEN", "CLEAR", "CLR", "NONE", "EMPTY", "AIR", "NO FILTER", "N/A", "-"})
_GAIN_KEYS = ("GAIN", "EGAIN", "GAIN1", "CCDGAIN")
_SATURATION_KEYS = ("SATURATE", "SATLEVEL", "SATUR", "MAXLIN", "DATAMAX")
_TIME_OF_DAY_KEYS = ("TIME-OBS", "UT", "UTSTART", "UT-START", "TIME-BEG", "TAIHMS")
#: Time-of-day cards on another time scale than UTC.
_TIME_OF_DAY_SCALES = {"TAIHMS": "tai"}
_POINTING_KEYS = (("RA", "DEC"), ("OBJCTRA", "OBJCTDEC"), ("TELRA", "TELDEC"), ("RA-MNT", "DEC-MNT"))
_SCALE_KEYS_ARCSEC = ("PIXSCALE", "SECPIX", "PIXSCAL1", "SCALE")


@dataclass(frozen=True)
class InstrumentDefaults:
    """What an instrument record knows when the header does not say it.

    Attributes
    ----------
    gain : float or None
        Gain, e-/ADU.
    saturation : float or None
        Saturation (or end of linearity) level, ADU, on the raw pixel scale of the upload.
    pixel_scale : float or None
        Pixel scale, arcsec/pixel.
    filters : Mapping[str, str]
        Translation of the filter names written in headers (matched case-insensitively, spaces
        stripped) to the names the rest of CPCS uses, e.g. ``{"2": "V", "SDSS-R": "r"}``.
    default_filter : str or None
        Filter assumed when the header names none.
    """

    gain: float | None = None
    saturation: float | None = None
    pixel_scale: float | None = None
    filters: Mapping[str, str] = field(default_factory=dict)
    default_filter: str | None = None


@dataclass(frozen=True)
class ImageHeader:
    """The facts the image path needs, whatever the observatory called them.

    Attributes
    ----------
    mjd_mid : float or None
        Mid-exposure time, MJD (UTC); None when no usable time keyword exists.
    exptime_s : float or None
        Exposure time, seconds.
    filter_name : str or None
        Filter, translated by :attr:`InstrumentDefaults.filters` when it has an entry.
    gain_e_per_adu : float or None
        Gain, e-/ADU.
    saturation_adu : float or None
        Saturation level, ADU (None: estimate it from the data).
    ra_deg, dec_deg : float or None
        Telescope pointing (or WCS reference point), degrees.
    pixel_scale_arcsec : float or None
        Mean pixel scale, arcsec/pixel.
    wcs : astropy.wcs.WCS or None
        Celestial WCS as found (TAN, TAN-SIP, TPV...); None when absent or rejected (see ``notes``).
    date_source : str
        Which keyword(s) gave the time, e.g. ``"MJD-OBS+EXPTIME/2"``; ``"none"`` when none did.
    object_name : str or None
        ``OBJECT`` card.
    notes : tuple of str
        Human-readable remarks: rejected WCS and why, HJD taken as JD, values from defaults...
    pixel_unit : str or None
        ``BUNIT`` card as written (None when absent).
    bayer_pattern : str or None
        Colour-filter pattern of a raw mosaic (``"RGGB"``...), None for a monochrome frame.
    """

    mjd_mid: float | None
    exptime_s: float | None
    filter_name: str | None
    gain_e_per_adu: float | None
    saturation_adu: float | None
    ra_deg: float | None
    dec_deg: float | None
    pixel_scale_arcsec: float | None
    wcs: WCS | None
    date_source: str
    object_name: str | None
    notes: tuple[str, ...] = ()
    pixel_unit: str | None = None
    bayer_pattern: str | None = None


def _number(value: object) -> float | None:
    """A finite float from a card value, or None (strings such as ``'1.5 '`` are accepted)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _text(value: object) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None


def _first_positive(header: Mapping[str, object], keys: tuple[str, ...]) -> tuple[float | None, str | None]:
    for key in keys:
        number = _number(header.get(key))
        if number is not None and number > 0:
            return number, key
    return None, None


def _parse_date_only(text: str) -> str | None:
    """ISO date ``YYYY-MM-DD`` from ISO or the old ``DD/MM/YY`` FITS form, or None."""
    text = text.strip()
    if match := re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", text):
        return f"{int(match[1]):04d}-{int(match[2]):02d}-{int(match[3]):02d}"
    if match := re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{2})", text):
        year = int(match[3])
        year += 1900 if year >= 50 else 2000
        return f"{year:04d}-{int(match[2]):02d}-{int(match[1]):02d}"
    return None


def _time_of_day(value: object) -> str | None:
    """``HH:MM:SS[.s]`` from a sexagesimal string or decimal hours, or None."""
    text = _text(value)
    if text is None:
        return None
    if match := re.fullmatch(r"(\d{1,2})[: ](\d{1,2})[: ](\d{1,2}(?:\.\d*)?)", text):
        return f"{int(match[1]):02d}:{int(match[2]):02d}:{float(match[3]):09.6f}"
    hours = _number(text)
    if hours is not None and 0 <= hours < 24:
        seconds = hours * 3600.0
        return f"{int(seconds // 3600):02d}:{int(seconds % 3600 // 60):02d}:{seconds % 60:09.6f}"
    return None


def _iso_to_mjd(text: str, scale: str = "utc") -> float | None:
    """MJD (UTC) of an ISO date-time on the given time scale."""
    try:
        return float(Time(text.strip().replace(" ", "T"), format="isot", scale=scale).utc.mjd)
    except ValueError:
        return None


def _start_from_date_obs(header: Mapping[str, object]) -> tuple[float | None, str | None]:
    """Exposure start (MJD) from DATE-OBS, with a separate time card when needed."""
    date = _text(header.get("DATE-OBS"))
    if date is None:
        return None, None
    if "T" in date or " " in date.strip():
        mjd = _iso_to_mjd(date)
        return (mjd, "DATE-OBS") if mjd is not None else (None, None)
    day = _parse_date_only(date)
    if day is None:
        return None, None
    for key in _TIME_OF_DAY_KEYS:
        clock = _time_of_day(header.get(key))
        if clock is not None:
            mjd = _iso_to_mjd(f"{day}T{clock}", _TIME_OF_DAY_SCALES.get(key, "utc"))
            if mjd is not None:
                return mjd, f"DATE-OBS+{key}"
    return None, "DATE-OBS without time"


def _times(header: Mapping[str, object], exptime: float | None, notes: list[str]) -> tuple[float | None, str]:
    mid = _number(header.get("MJD-MID"))
    if mid is not None:
        return mid, "MJD-MID"
    if (avg := _text(header.get("DATE-AVG"))) is not None and (mjd := _iso_to_mjd(avg)) is not None:
        return mjd, "DATE-AVG"
    start: float | None = None
    source: str | None = None
    if (mjd_obs := _number(header.get("MJD-OBS"))) is not None:
        start, source = mjd_obs, "MJD-OBS"
    if start is None:
        start, source = _start_from_date_obs(header)
    if start is None and (jd := _number(header.get("JD"))) is not None and jd > JD_TO_MJD:
        start, source = jd - JD_TO_MJD, "JD"
    if start is None and (hjd := _number(header.get("HJD"))) is not None and hjd > JD_TO_MJD:
        start, source = hjd - JD_TO_MJD, "HJD"
        notes.append("time from HJD taken as JD (heliocentric correction < 8.3 min ignored)")
    if start is None:
        if source == "DATE-OBS without time":
            notes.append("DATE-OBS has a date but no time; no time card found")
        return None, "none"
    if exptime is None:
        notes.append(f"no exposure time: mid-exposure taken as the start ({source})")
        return start, f"{source} (start)"
    return start + exptime / 2.0 / 86400.0, f"{source}+EXPTIME/2"


def _filter(header: Mapping[str, object], instrument: InstrumentDefaults | None) -> str | None:
    values = [text for key in _FILTER_KEYS if (text := _text(header.get(key))) is not None]
    real = [value for value in values if value.upper() not in _EMPTY_FILTERS]
    chosen = real[0] if real else next((v for v in values if v.upper() not in {"", "NONE", "N/A", "-"}), None)
    if instrument is None:
        return chosen
    if chosen is None:
        return instrument.default_filter
    translation = {key.strip().upper(): value for key, value in instrument.filters.items()}
    return translation.get(chosen.strip().upper(), chosen)


def _angle(value: object, *, hours: bool) -> float | None:
    """Degrees from a number (degrees) or a sexagesimal string (hours when ``hours``)."""
    number = _number(value)
    if number is not None:
        return number
    text = _text(value)
    if text is None:
        return None
    parts = re.split(r"[:\s hdms°'\"]+", text.strip().lower())
    parts = [p for p in parts if p]
    if not 2 <= len(parts) <= 3:
        return None
    try:
        sign = -1.0 if parts[0].startswith("-") else 1.0
        values = [abs(float(parts[0]))] + [float(p) for p in parts[1:]]
    except ValueError:
        return None
    degrees = values[0] + values[1] / 60.0 + (values[2] / 3600.0 if len(values) == 3 else 0.0)
    return sign * degrees * (15.0 if hours else 1.0)


def _pointing(header: Mapping[str, object], wcs: WCS | None) -> tuple[float | None, float | None]:
    for ra_key, dec_key in _POINTING_KEYS:
        if ra_key in header and dec_key in header:
            sexagesimal = isinstance(header[ra_key], str) and _number(header[ra_key]) is None
            ra = _angle(header[ra_key], hours=sexagesimal)
            dec = _angle(header[dec_key], hours=False)
            if ra is not None and dec is not None and 0 <= ra < 360 and -90 <= dec <= 90:
                return ra, dec
    if wcs is not None:
        ra, dec = (float(v) for v in wcs.wcs.crval[:2])
        return ra % 360.0, dec
    return None, None


def validate_wcs(wcs: WCS) -> str | None:
    """Why a celestial WCS is unusable, or None when it is fine.

    Rejected: no celestial axes, a non-finite or (near-)singular linear part, a pixel scale above
    1 deg/pixel or below 1e-3 arcsec/pixel.
    """
    if not wcs.has_celestial or wcs.naxis != 2:
        return "no celestial WCS"
    try:
        matrix = wcs.pixel_scale_matrix
    except Exception as exc:  # wcslib raises many kinds
        return f"WCS linear part unusable: {exc}"
    if not np.all(np.isfinite(matrix)):
        return "WCS matrix not finite"
    det = float(abs(np.linalg.det(matrix)))
    if det == 0.0 or not math.isfinite(det):
        return "WCS matrix singular"
    scales = np.sqrt((matrix**2).sum(axis=0))
    if np.max(scales) > MAX_PIXEL_SCALE_DEG:
        return f"WCS pixel scale absurd ({np.max(scales):.3g} deg/pixel)"
    if np.min(scales) * 3600.0 < MIN_PIXEL_SCALE_ARCSEC:
        return f"WCS pixel scale absurd ({np.min(scales) * 3600:.3g} arcsec/pixel)"
    if det / float(np.max(scales)) ** 2 < 1e-3:
        return "WCS matrix nearly singular (axes almost parallel)"
    return None


def _wcs(header: fits.Header, notes: list[str]) -> WCS | None:
    if not any(str(header.get(f"CTYPE{i}", "")).upper().startswith(("RA", "DEC")) for i in (1, 2)):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(header, naxis=2, relax=True).celestial
            reason = validate_wcs(wcs)
            if reason is None:
                wcs.all_pix2world([[0.0, 0.0]], 0)  # distortion terms must evaluate
    except Exception as exc:  # astropy/wcslib raise many kinds on broken headers
        notes.append(f"WCS rejected: {type(exc).__name__}: {exc}")
        return None
    if reason is not None:
        notes.append(f"WCS rejected: {reason}")
        return None
    return wcs


def _scale_from_keywords(header: Mapping[str, object]) -> float | None:
    scale, _ = _first_positive(header, _SCALE_KEYS_ARCSEC)
    if scale is not None:
        return scale
    cd = [_number(header.get(k)) for k in ("CD1_1", "CD1_2", "CD2_1", "CD2_2")]
    if all(v is not None for v in cd):
        c11, c12, c21, c22 = (float(v) for v in cd if v is not None)
        det = abs(c11 * c22 - c12 * c21)
        if det > 0:
            return math.sqrt(det) * 3600.0
    cdelt = _number(header.get("CDELT1"))
    if cdelt is not None and cdelt != 0:
        return abs(cdelt) * 3600.0
    return None


def standardise_header(header: fits.Header, *, instrument: InstrumentDefaults | None = None) -> ImageHeader:
    """Read the observation facts from a FITS header, whatever its dialect.

    Parameters
    ----------
    header : astropy.io.fits.Header
        Primary (or image-extension) header of the upload.
    instrument : InstrumentDefaults, optional
        Values used only where the header has none (headers win).

    Returns
    -------
    ImageHeader
        Missing facts are None; ``notes`` explains rejected or guessed values. Never raises on
        malformed cards: a card that cannot be read counts as absent.
    """
    notes: list[str] = []
    cards: dict[str, object] = {}
    for key in header:
        if key and key not in cards:
            try:
                cards[key.upper()] = header[key]
            except Exception:  # an unreadable card counts as absent
                continue
    exptime, _ = _first_positive(cards, _EXPTIME_KEYS)
    if exptime is None and any(_number(cards.get(k)) == 0 for k in _EXPTIME_KEYS):
        notes.append("exposure time is 0")
    mjd_mid, date_source = _times(cards, exptime, notes)
    gain, _ = _first_positive(cards, _GAIN_KEYS)
    saturation, _ = _first_positive(cards, _SATURATION_KEYS)
    if gain is not None and gain > 1000:
        notes.append(f"gain {gain} e-/ADU ignored as absurd")
        gain = None
    wcs = _wcs(header, notes)
    ra, dec = _pointing(cards, wcs)
    scale: float | None = None
    if wcs is not None:
        scale = float(np.sqrt(abs(np.linalg.det(wcs.pixel_scale_matrix)))) * 3600.0
    if scale is None:
        scale = _scale_from_keywords(cards)
    filter_name = _filter(cards, instrument)
    bayer_pattern = bayer_pattern_from_cards(cards)
    if bayer_pattern is not None and (filter_name is None or filter_name.strip().upper() in CFA_PATTERNS):
        filter_name = DSLR_GREEN_BAND
        notes.append(f"Bayer {bayer_pattern} mosaic: its green pixels measured, calibrated as {filter_name}")
    if instrument is not None:
        if gain is None and instrument.gain is not None:
            gain = instrument.gain
            notes.append("gain from instrument defaults")
        if saturation is None and instrument.saturation is not None:
            saturation = instrument.saturation
            notes.append("saturation from instrument defaults")
        if scale is None and instrument.pixel_scale is not None:
            scale = instrument.pixel_scale
            notes.append("pixel scale from instrument defaults")
    return ImageHeader(
        mjd_mid=mjd_mid,
        exptime_s=exptime,
        filter_name=filter_name,
        gain_e_per_adu=gain,
        saturation_adu=saturation,
        ra_deg=ra,
        dec_deg=dec,
        pixel_scale_arcsec=scale,
        wcs=wcs,
        date_source=date_source,
        object_name=_text(cards.get("OBJECT")),
        notes=tuple(notes),
        pixel_unit=_text(cards.get("BUNIT")),
        bayer_pattern=bayer_pattern,
    )


def estimate_saturation_level(
    data: np.ndarray, *, min_pixels: int = 4, max_hot_pixels: int = 16
) -> float | None:
    """Guess the saturation level (ADU) of an image whose header does not give it.

    A saturated image shows a plateau: several pixels sharing (within 0.1 %) the largest value.
    A raw frame whose white level lies below a few hot pixels (DSLRs) shows it just below them: a
    value held exactly by at least ``min_pixels`` pixels and by four times as many pixels as lie
    above it, with at most ``max_hot_pixels`` above. Returns 98 % of the plateau's value (pixels
    near saturation are already non-linear), or None when no plateau exists (nothing saturated, so
    nothing needs masking). NaN pixels are ignored.

    Parameters
    ----------
    data : ndarray
        Image, ADU (before background subtraction).
    min_pixels : int
        Fewest pixels at the maximum that make a plateau.
    max_hot_pixels : int
        Most pixels above a plateau below the maximum.
    """
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return None
    top = float(finite.max())
    if top <= 0:
        return None
    n_top = int(np.count_nonzero(finite >= top - 1e-3 * abs(top)))
    if n_top >= min_pixels:
        return 0.98 * top
    count = min(finite.size, max_hot_pixels + 1)
    highest = np.partition(finite, finite.size - count)[finite.size - count :]
    for value in np.unique(highest)[::-1]:
        above = int(np.count_nonzero(highest > value))
        if above > max_hot_pixels or value <= 0:
            break
        exact = int(np.count_nonzero(finite == value))
        if exact >= max(min_pixels, 4 * above):
            return 0.98 * float(value)
    return None
