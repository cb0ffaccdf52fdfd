"""Forced photometry of the target at a fixed position, and the 5-sigma limiting magnitude.

The target is PSF-fitted at its (alert) pixel position, which stays fixed; detected neighbours
within ``neighbour_radius_fwhm`` are fitted with it (positions free; those within 2 FWHM in the
same group, the others subtracted), so a blended target is measured without its neighbours'
light. A detection closer than ``self_match_fwhm`` × FWHM to the position is the target itself and
is not a neighbour. The flux is on the aperture "total" scale (:mod:`~cpcs.science.imaging.psf`),
so the target's magnitude and the stars' aperture magnitudes share one zero point; the relative
error of that scale (``psf.flux_scale_err``) is added to the target's error. A target below the
threshold still gets its (possibly negative) flux and error; its magnitude is then NaN.

Limit
-----
The 5-sigma limit is the flux ``F`` whose PSF fit at that position would have ``F / σ(F) = 5``
with ``σ²(F) = σ0² + F Σp³ / (Σp²)² / gain``: ``σ0²`` the fit's variance from the sky noise
(``rms² / Σp²`` over the fit pixels, plus the local-sky error term) and the second term the
source's own photon noise (p: the PSF per unit total flux). This is the measurement actually made,
slightly above the Cramér-Rao bound of a PSF fit over all pixels with a perfectly known sky.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from cpcs.science.imaging._aperture import (
    ANNULUS_FWHM,
    REFERENCE_RADIUS_FWHM,
    aperture_scale_px,
    stamp_aperture_flux,
)
from cpcs.science.imaging.background import ImageBackground
from cpcs.science.imaging.detection import Detections
from cpcs.science.imaging.photometry import MAG_ERR_PER_INVERSE_SNR, instrumental_magnitude
from cpcs.science.imaging.psf import PsfModel, psf_photometry

__all__ = [
    "DETECTION_SNR",
    "ForcedMeasurement",
    "forced_photometry",
    "limiting_flux_5sigma",
    "limiting_magnitude_5sigma",
]

#: Signal-to-noise ratio of a detection and of the limiting magnitude.
DETECTION_SNR = 5.0


@dataclass(frozen=True)
class ForcedMeasurement:
    """Photometry of the target at a fixed position.

    Attributes
    ----------
    x, y : float
        Position measured at (px, 0-based; the fixed input position).
    flux, flux_err : float
        Flux on the total scale, ADU (may be negative).
    snr : float
        ``flux / flux_err``.
    mag_inst, magerr_inst : float
        Instrumental magnitude (convention of
        :func:`~cpcs.science.imaging.photometry.instrumental_magnitude`); NaN for flux ≤ 0.
    limit_mag_inst_5sigma : float
        Instrumental 5-sigma limiting magnitude at the position.
    method : str
        ``"psf"`` or ``"aperture"`` (fallback when the PSF fit fails, e.g. masked pixels).
    is_detection : bool
        ``snr >= 5``.
    n_neighbours : int
        Neighbours fitted or subtracted with the target.
    chi2_red : float
        Reduced chi-square of the fit (NaN for the aperture method).
    """

    x: float
    y: float
    flux: float
    flux_err: float
    snr: float
    mag_inst: float
    magerr_inst: float
    limit_mag_inst_5sigma: float
    method: str
    is_detection: bool
    n_neighbours: int = 0
    chi2_red: float = float("nan")


def _fit_weights(psf: PsfModel, x: float, y: float) -> tuple[float, float, float]:
    """Σp², Σp³ and Σp over the fit disc of a source centred on (x, y), p per unit total flux."""
    fwhm = float(psf.fwhm_at(x, y))
    radius = psf.fit_radius_fwhm * fwhm
    half = math.ceil(radius) + 1
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    fx, fy = x - math.floor(x), y - math.floor(y)
    dx, dy = xx - fx, yy - fy
    inside = dx * dx + dy * dy <= radius * radius
    p = psf.profile(dx, dy, x, y)[inside] / psf.flux_scale
    return float(np.sum(p**2)), float(np.sum(p**3)), float(np.sum(p))


def limiting_flux_5sigma(
    rms_adu: float,
    psf: PsfModel,
    *,
    gain_e_per_adu: float | None,
    x: float | None = None,
    y: float | None = None,
    sky_err_adu: float = 0.0,
    snr: float = DETECTION_SNR,
) -> float:
    """Flux (ADU, total scale) measured at S/N ``snr`` by a PSF fit at (x, y) (centre when None).

    ``rms_adu`` is the sky noise per pixel; ``sky_err_adu`` the error of the local sky level.
    """
    cx = (psf.shape[1] - 1) / 2.0 if x is None else float(x)
    cy = (psf.shape[0] - 1) / 2.0 if y is None else float(y)
    s2, s3, s1 = _fit_weights(psf, cx, cy)
    var0 = rms_adu**2 / s2 + (sky_err_adu * s1 / s2) ** 2
    poisson = s3 / s2**2 / gain_e_per_adu if gain_e_per_adu else 0.0
    k = snr * snr
    return float((k * poisson + math.sqrt((k * poisson) ** 2 + 4.0 * k * var0)) / 2.0)


def limiting_magnitude_5sigma(
    rms_adu: float,
    psf: PsfModel,
    *,
    gain_e_per_adu: float | None,
    exptime_s: float | None = None,
    x: float | None = None,
    y: float | None = None,
    sky_err_adu: float = 0.0,
) -> float:
    """Instrumental 5-sigma limiting magnitude of a PSF measurement (module docstring).

    Parameters
    ----------
    rms_adu : float
        Sky noise per pixel at the position (``background.rms[y, x]``) or the global rms, ADU.
    psf : PsfModel
    gain_e_per_adu : float or None
        None: no source photon noise (background-only noise model).
    exptime_s : float, optional
        Magnitudes per second when given (same convention as the sources).
    x, y : float, optional
        Position (PSF shape); the image centre when None.
    sky_err_adu : float
        Error of the local sky level, ADU/px (0: sky known).
    """
    flux = limiting_flux_5sigma(
        rms_adu, psf, gain_e_per_adu=gain_e_per_adu, x=x, y=y, sky_err_adu=sky_err_adu
    )
    mag, _ = instrumental_magnitude(flux, 0.0, gain_e_per_adu=gain_e_per_adu, exptime_s=exptime_s)
    return float(mag)


def _neighbour_positions(
    neighbours: Detections | ArrayLike | None, x: float, y: float, radius: float, self_radius: float
) -> NDArray[np.float64]:
    if neighbours is None:
        return np.zeros((0, 2))
    if isinstance(neighbours, Detections):
        pos = np.column_stack(
            [
                np.asarray(neighbours.table["x"], dtype=np.float64),
                np.asarray(neighbours.table["y"], dtype=np.float64),
            ]
        )
    else:
        pos = np.asarray(neighbours, dtype=np.float64).reshape(-1, 2)
    d = np.hypot(pos[:, 0] - x, pos[:, 1] - y)
    return pos[(d < radius) & (d >= self_radius)]


def forced_photometry(
    data: NDArray[np.floating],
    background: ImageBackground,
    rms: NDArray[np.floating] | None,
    psf: PsfModel,
    x: float,
    y: float,
    *,
    gain_e_per_adu: float | None,
    exptime_s: float | None = None,
    neighbours: Detections | ArrayLike | None = None,
    mask: NDArray[np.bool_] | NDArray[np.uint8] | None = None,
    segmap: NDArray[np.int32] | None = None,
    neighbour_radius_fwhm: float = 6.0,
    self_match_fwhm: float = 1.0,
    aperture_radius_fwhm: float = 1.0,
) -> ForcedMeasurement:
    """Measure the target at a fixed pixel position (PSF fit with its neighbours).

    Parameters
    ----------
    data : ndarray
        Image, ADU (sky not subtracted).
    background : ImageBackground
    rms : ndarray, optional
        Sky noise map, ADU (``background.rms`` when None).
    psf : PsfModel
    x, y : float
        Target position, px, 0-based (from the astrometric solution); kept fixed.
    gain_e_per_adu : float or None
        None: no source photon noise (background-only noise model).
    exptime_s : float, optional
    neighbours : Detections or array (N, 2), optional
        Detected sources; those within ``neighbour_radius_fwhm`` × FWHM (and not within
        ``self_match_fwhm`` × FWHM, i.e. not the target itself) are fitted along.
    mask : ndarray of bool or uint8, optional
        Bad pixels (zero weight).
    segmap : ndarray, optional
        sep segmentation map (sky annulus of the aperture fallback).
    aperture_radius_fwhm : float
        Aperture of the fallback method (corrected to total with the PSF model).

    Returns
    -------
    ForcedMeasurement
    """
    rms_map = background.rms if rms is None else np.asarray(rms)
    ny, nx = np.shape(data)
    ix = int(np.clip(round(x), 0, nx - 1))
    iy = int(np.clip(round(y), 0, ny - 1))
    fwhm = float(psf.fwhm_at(x, y))
    near = _neighbour_positions(neighbours, x, y, neighbour_radius_fwhm * fwhm, self_match_fwhm * fwhm)
    positions = np.vstack([[x, y], near])
    fixed = np.zeros(positions.shape[0], dtype=bool)
    fixed[0] = True
    fitted = psf_photometry(
        data, background, rms_map, psf, positions, fixed=fixed, gain_e_per_adu=gain_e_per_adu, mask=mask
    )
    rms_here = float(rms_map[iy, ix])
    method = "psf"
    flux = float(fitted["flux"][0])
    flux_err = float(fitted["flux_err"][0])
    chi2 = float(fitted["chi2_red"][0])
    if not bool(fitted["fit_ok"][0]) or not np.isfinite(flux_err):
        method = "aperture"
        chi2 = float("nan")
        scale = float(aperture_scale_px(fwhm))
        radius = aperture_radius_fwhm * scale
        sums = stamp_aperture_flux(
            data,
            background,
            mask,
            segmap,
            np.array([x]),
            np.array([y]),
            np.array([radius]),
            (np.array([ANNULUS_FWHM[0] * scale]), np.array([ANNULUS_FWHM[1] * scale])),
            gain_e_per_adu,
        )
        fraction = _encircled_ratio(psf, x, y, radius)
        flux = float(sums.flux[0]) / fraction
        flux_err = float(sums.flux_err[0]) / fraction
    flux_err = math.hypot(flux_err, psf.flux_scale_err * max(flux, 0.0))
    snr = flux / flux_err if flux_err > 0 else float("nan")
    mag, magerr = instrumental_magnitude(flux, flux_err, gain_e_per_adu=gain_e_per_adu, exptime_s=exptime_s)
    limit = limiting_magnitude_5sigma(
        rms_here,
        psf,
        gain_e_per_adu=gain_e_per_adu,
        exptime_s=exptime_s,
        x=x,
        y=y,
        sky_err_adu=rms_here / math.sqrt(max(_ring_pixels(float(aperture_scale_px(fwhm))), 1.0)),
    )
    return ForcedMeasurement(
        x=float(x),
        y=float(y),
        flux=flux,
        flux_err=flux_err,
        snr=float(snr),
        mag_inst=float(mag),
        magerr_inst=float(magerr)
        if np.isfinite(magerr)
        else float(MAG_ERR_PER_INVERSE_SNR / snr)
        if snr > 0
        else float("nan"),
        limit_mag_inst_5sigma=limit,
        method=method,
        is_detection=bool(np.isfinite(snr) and snr >= DETECTION_SNR),
        n_neighbours=int(near.shape[0]),
        chi2_red=chi2,
    )


def _ring_pixels(fwhm: float) -> float:
    """Pixels of the 3-5 FWHM sky ring (a little under half may be lost to sources)."""
    return math.pi * (ANNULUS_FWHM[1] ** 2 - ANNULUS_FWHM[0] ** 2) * fwhm**2 * 0.7


def _encircled_ratio(psf: PsfModel, x: float, y: float, radius: float) -> float:
    """Model flux inside ``radius`` over model flux inside the reference radius."""
    r_ref = REFERENCE_RADIUS_FWHM * float(aperture_scale_px(psf.fwhm_at(x, y)))
    half = math.ceil(max(radius, r_ref)) + 2
    sub = 5
    grid = (np.arange(-half * sub, (half + 1) * sub) + 0.5) / sub - 0.5 / sub - 0.5
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    p = psf.profile(xx, yy, x, y)
    r2 = xx * xx + yy * yy
    inner = float(np.sum(p[r2 <= radius * radius]))
    ref = float(np.sum(p[r2 <= r_ref * r_ref]))
    return inner / ref if ref > 0 else 1.0
