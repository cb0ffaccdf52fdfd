"""Which noise model an image gets: a real gain, an effective gain from the data, or the sky alone.

The error of a flux measured on an image is ``area × rms² + flux / gain`` (+ the local-sky term):
the sky noise comes from the background rms map of the data in every case, and only the source's
own photon noise needs a gain (electrons per pixel unit). :func:`choose_noise_model` decides where
that gain comes from, first match wins:

1. **gain** -- the pixels are counts (``BUNIT`` absent, ``ADU``, ``COUNTS``, ``DN``) and a gain is
   known (``GAIN`` card or the instrument record); or the pixels are electrons (``BUNIT`` ``e-``,
   ``ELECTRONS``: gain 1) or electrons per second (gain = exposure time); counts per second with a
   known gain give gain × exposure time.
2. **effective_gain** -- no usable gain, but the sky is still in the data: for photon noise the
   sky's variance equals its mean divided by the gain in any pixel unit, so
   ``gain_eff = sky level / rms²`` holds for ADU, scaled, flat-fielded or normalised frames alike.
   It is used only when the sky level is at least :data:`MIN_SKY_LEVEL_RMS` times its rms (a sky of
   ≥ 100 photo-electrons a pixel; a sky-subtracted frame has a level near 0 and never qualifies).
   Limits: read noise and dark current add variance, so the estimate is a lower limit of the gain
   (the source noise is over-, never under-estimated); a pedestal left in the data (bias not
   removed, a constant added by a stacking program) raises the level and so the estimate, making
   the source noise too small -- which matters only for stars well above the sky noise, whose
   errors are small anyway.
3. **background_only** -- pixels in physical units (``nanomaggy``, ``Jy``, ``MJy/sr``, ...) or
   counts without a gain, on a sky-subtracted frame: the errors are the sky noise of the rms map
   alone. That is exact for sources fainter than the sky within their aperture (the faint stars
   and the limit, what matters for detections and upper limits) and too small for bright stars,
   whose S/N is overestimated (by 30 % for an r = 19 star on an SDSS frame, which still has
   S/N ≈ 100). A gain card on a frame in physical units is ignored: it describes the raw counts.

   **Raw colour mosaics** (``header.bayer_pattern``) without a gain are background-only too: their
   level holds the camera's black-level pedestal, which raw DSLR frames do not record (the PANOPTES
   Canon frames carry no PEDESTAL/BLKLEVEL-like card; Canon's 14-bit pedestal is 2048 ADU), and at
   base ISO their sky is read-noise dominated, so ``level / rms²`` is no gain: on the PANOPTES frame
   it gives 4.5 e-/ADU with the pedestal in and 0.36 with 2048 per green pixel taken out, where a
   Canon sensor at ISO 100 has roughly 2-3 e-/ADU.
Not handled: the average of N frames that kept one frame's ``GAIN`` card has an effective gain N
times larger (its sources' noise is then overestimated; ``NCOMBINE`` is not read).

The chosen model is recorded with the reduction (``kind``, the gain used and where it came from),
and magnitudes are ``-2.5 log10(flux × gain / exptime)`` with gain 1 for ``background_only``
(:func:`~cpcs.science.imaging.photometry.instrumental_magnitude`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from cpcs.science.imaging.background import ImageBackground
from cpcs.science.imaging.header import ImageHeader

__all__ = [
    "MIN_SKY_LEVEL_RMS",
    "NoiseModel",
    "choose_noise_model",
    "pixel_unit_kind",
    "sky_effective_gain",
]

#: The sky must be at least this many rms above zero for ``level / rms²`` to be its gain.
MIN_SKY_LEVEL_RMS = 10.0

NoiseKind = Literal["gain", "effective_gain", "background_only"]
UnitKind = Literal["counts", "counts_per_second", "electrons", "electrons_per_second", "physical"]

_COUNTS = {"", "ADU", "ADUS", "COUNT", "COUNTS", "DN", "DATA NUMBER", "CTS"}
_ELECTRONS = {"E", "E-", "ELECTRON", "ELECTRONS", "PHOTOELECTRONS"}
_PER_SECOND = ("/S", "/SEC", "/SECOND", " S-1", " S^-1", "/S-1")


@dataclass(frozen=True)
class NoiseModel:
    """Where the photon noise of the sources comes from.

    Attributes
    ----------
    kind : str
        ``"gain"``, ``"effective_gain"`` or ``"background_only"`` (module docstring).
    gain_e_per_adu : float or None
        Electrons per pixel unit used for the source photon noise and the magnitude scale; None for
        ``background_only`` (no source noise, magnitudes of the pixel values themselves).
    source : str
        What gave it: ``"GAIN card"``, ``"BUNIT electrons"``, ``"sky level / variance"``...
    note : str
        One sentence for the reduction record.
    """

    kind: NoiseKind
    gain_e_per_adu: float | None
    source: str
    note: str


def pixel_unit_kind(bunit: str | None) -> UnitKind:
    """What a ``BUNIT`` value means for the noise: counts, electrons (per second) or physical."""
    text = (bunit or "").strip().upper()
    per_second = text.endswith(_PER_SECOND)
    if per_second:
        text = next(text[: -len(end)] for end in _PER_SECOND if text.endswith(end)).strip()
    if text in _COUNTS:
        return "counts_per_second" if per_second else "counts"
    if text in _ELECTRONS:
        return "electrons_per_second" if per_second else "electrons"
    return "physical"


def sky_effective_gain(background: ImageBackground) -> float | None:
    """``sky level / rms²`` (pixel units⁻¹ per electron), or None when no sky is left in the data.

    Valid when the sky's photon noise dominates its rms; see the module docstring for its limits.
    """
    level, rms = background.global_level, background.global_rms
    if not (math.isfinite(level) and math.isfinite(rms)) or rms <= 0 or level < MIN_SKY_LEVEL_RMS * rms:
        return None
    return float(level / rms**2)


def choose_noise_model(header: ImageHeader, background: ImageBackground) -> NoiseModel:
    """The noise model of an image (rules in the module docstring)."""
    unit = pixel_unit_kind(header.pixel_unit)
    exptime = header.exptime_s
    gain = header.gain_e_per_adu
    if unit == "electrons":
        return NoiseModel("gain", 1.0, "BUNIT electrons", "pixels are electrons: gain 1")
    if unit == "electrons_per_second" and exptime:
        return NoiseModel(
            "gain",
            float(exptime),
            "BUNIT electrons/s",
            f"pixels are electrons/s: gain = exposure {exptime:g} s",
        )
    where = "instrument record" if "gain from instrument defaults" in header.notes else "GAIN card"
    if unit == "counts" and gain is not None:
        return NoiseModel("gain", float(gain), where, f"gain {gain:g} e-/ADU from the {where}")
    if unit == "counts_per_second" and gain is not None and exptime:
        return NoiseModel(
            "gain",
            float(gain * exptime),
            f"{where} × EXPTIME",
            f"pixels are counts/s: gain {gain:g} e-/ADU × exposure {exptime:g} s",
        )
    why = f"pixels in {header.pixel_unit!r}" if unit == "physical" else "no gain"
    if unit == "physical" and gain is not None:
        why += f" (GAIN {gain:g} ignored: it describes raw counts)"
    if header.bayer_pattern is not None and unit == "counts":
        return NoiseModel(
            "background_only",
            None,
            "background rms map",
            f"raw {header.bayer_pattern} mosaic with no gain: its sky level holds the black-level "
            "pedestal and its sky noise the read noise, so no gain can be measured from it; errors "
            "from the background rms map alone (bright stars' errors are underestimated)",
        )
    effective = sky_effective_gain(background)
    if effective is not None:
        return NoiseModel(
            "effective_gain",
            effective,
            "sky level / variance",
            f"{why}: effective gain {effective:.4g} per pixel unit from the sky's level / variance",
        )
    return NoiseModel(
        "background_only",
        None,
        "background rms map",
        f"{why} and no sky left in the data to measure a gain: errors from the background rms map "
        "alone (bright stars' errors are underestimated)",
    )
