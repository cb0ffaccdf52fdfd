"""Forced photometry of the target on a difference image, with the limit from its noise map."""

from __future__ import annotations

import dataclasses
import math
import weakref

import numpy as np
from numpy.typing import NDArray

from cpcs.science.imaging.background import ImageBackground
from cpcs.science.imaging.forced import ForcedMeasurement, forced_photometry
from cpcs.science.imaging.photometry import instrumental_magnitude
from cpcs.science.imaging.psf import PsfModel
from cpcs.science.subtraction.difference import SubtractionResult

__all__ = ["difference_photometry"]

# The filled difference, noise and zero background of a subtraction, made once for all its targets
# (the frame-wide median of the noise costs more than a fit); dropped with the subtraction.
_PREPARED: weakref.WeakKeyDictionary[
    SubtractionResult, tuple[NDArray[np.float32], NDArray[np.float32], ImageBackground]
] = weakref.WeakKeyDictionary()


def _prepared(
    subtraction: SubtractionResult,
) -> tuple[NDArray[np.float32], NDArray[np.float32], ImageBackground]:
    cached = _PREPARED.get(subtraction)
    if cached is not None:
        return cached
    noise = np.nan_to_num(subtraction.noise, nan=float(np.nanmedian(subtraction.noise)))
    data = np.nan_to_num(subtraction.difference, nan=0.0)
    rms = noise.astype(np.float32)
    background = ImageBackground(
        level=np.zeros_like(rms),
        rms=rms,
        global_level=0.0,
        global_rms=float(np.median(rms)),
    )
    _PREPARED[subtraction] = (data, rms, background)
    return data, rms, background


def difference_photometry(
    subtraction: SubtractionResult,
    psf: PsfModel,
    x: float,
    y: float,
    *,
    gain_e_per_adu: float | None,
    exptime_s: float | None = None,
) -> ForcedMeasurement:
    """PSF photometry of the target at a fixed position on the difference image.

    Calls :func:`cpcs.science.imaging.forced.forced_photometry` on the difference (sky zero, noise
    from ``subtraction.noise``, no neighbours: the static sky is subtracted), then rescales the flux
    by ``1 / subtraction.flux_scale`` so it is in science ADU.

    Parameters
    ----------
    subtraction : SubtractionResult
    psf : PsfModel
        The PSF of the difference image (``subtraction.psf_of``'s frame, on the science grid).
    x, y : float
        Target position on the science frame, 0-based px.
    gain_e_per_adu : float or None
        Gain of the science frame (the target's own photon noise).
    exptime_s : float, optional
        Magnitudes per second when given.

    Returns
    -------
    ForcedMeasurement
        Flux, error and 5-sigma limit of the target on the difference, in science units.
    """
    data, rms, background = _prepared(subtraction)
    measured = forced_photometry(
        data,
        background,
        rms,
        psf,
        x,
        y,
        gain_e_per_adu=gain_e_per_adu,
        exptime_s=exptime_s,
        mask=subtraction.mask,
    )
    scale = subtraction.flux_scale
    if scale == 1.0:
        return measured
    flux, flux_err = measured.flux / scale, measured.flux_err / scale
    mag, magerr = instrumental_magnitude(flux, flux_err, gain_e_per_adu=gain_e_per_adu, exptime_s=exptime_s)
    return dataclasses.replace(
        measured,
        flux=flux,
        flux_err=flux_err,
        mag_inst=float(mag),
        magerr_inst=float(magerr),
        limit_mag_inst_5sigma=measured.limit_mag_inst_5sigma + 2.5 * math.log10(scale),
    )
