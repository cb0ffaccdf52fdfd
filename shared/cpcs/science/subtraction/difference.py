"""PSF-matched difference image with sfft (Hu et al. 2022), and its noise map.

sfft fits a convolution kernel (a free pixel kernel, optionally varying as a polynomial over the
frame) and a differential background polynomial by linear least squares in Fourier space, then
convolves the sharper image. We use its CPU ("Numpy") backend on background-subtracted frames,
with masked pixels set to zero in the images it fits on.

* Template sharper than the science frame (the usual case): ``D = S - K ⊗ T``; ``D`` has the
  science PSF and flux scale (``flux_scale = 1``); its variance is ``σ_S² + K² ⊗ σ_T²``.
* Science sharper: ``D = K ⊗ S - T``; ``D`` has the template's PSF and ``flux_scale = ΣK``
  (divide fluxes measured on ``D`` by it to get science ADU); variance ``K² ⊗ σ_S² + σ_T²``.

The kernel sum is the photometric ratio of the two frames (template ADU per science ADU, or its
inverse). Pixel noise in ``D`` is correlated over the kernel's size; the noise map is per pixel.
"""

from __future__ import annotations

import contextlib
import io
import math
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy.signal import fftconvolve

from cpcs.science.imaging.background import estimate_background
from cpcs.science.subtraction.align import AlignedTemplate

__all__ = ["SubtractionResult", "subtract_template"]

FloatImage = NDArray[np.float32]
BoolImage = NDArray[np.bool_]


@dataclass(frozen=True, eq=False)
class SubtractionResult:
    """A difference image and what is needed to measure on it.

    Attributes
    ----------
    difference : ndarray of float32
        ``science - matched template`` (or ``matched science - template``), ADU, sky removed; NaN
        where masked.
    noise : ndarray of float32
        Per-pixel noise of ``difference``, ADU (NaN where masked).
    mask : ndarray of bool
        Pixels without a valid difference (masked in either frame, or off the template).
    psf_of : {"science", "template"}
        Which frame's PSF the difference has.
    flux_scale : float
        Flux on ``difference`` per science ADU (1 when the template was convolved).
    kernel : ndarray of float64
        The matching kernel at the frame centre, ``[y, x]``.
    kernel_sum : float
        ``ΣK``: template ADU per science ADU when the template was convolved, the inverse otherwise.
    convolved : {"template", "science"}
    seconds_background, seconds_fit, seconds_noise, seconds_total : float
        Timings of the steps (the fit includes sfft's one-off function compilation when its cache
        is cold).
    """

    difference: FloatImage
    noise: FloatImage
    mask: BoolImage
    psf_of: Literal["science", "template"]
    flux_scale: float
    kernel: NDArray[np.float64]
    kernel_sum: float
    convolved: Literal["template", "science"]
    seconds_background: float
    seconds_fit: float
    seconds_noise: float
    seconds_total: float


def _kernel_half_width(fwhm_science: float, fwhm_template: float) -> int:
    """Half-width of the kernel: ~2.5 FWHM of the broader frame, at least 3 pixels."""
    return max(3, math.ceil(1.25 * max(fwhm_science, fwhm_template)))


def subtract_template(
    science: NDArray[np.floating],
    science_noise: NDArray[np.floating],
    template: AlignedTemplate,
    *,
    science_fwhm_px: float,
    template_fwhm_px: float,
    science_mask: NDArray[np.bool_] | None = None,
    kernel_half_width: int | None = None,
    kernel_poly_order: int = 0,
    background_poly_order: int = 1,
    threads: int = 1,
    exclude_xy: NDArray[np.floating] | None = None,
    exclude_radius_px: float | None = None,
) -> SubtractionResult:
    """Match the PSFs of the science frame and an aligned template with sfft, and subtract.

    Parameters
    ----------
    science : ndarray
        Science frame, ADU (sky included).
    science_noise : ndarray
        Its per-pixel noise (sky and sources), ADU.
    template : AlignedTemplate
        The template on the science grid (:func:`~cpcs.science.subtraction.align_template`).
    science_fwhm_px, template_fwhm_px : float
        PSF FWHM of each frame on the science grid; the sharper frame is convolved.
    science_mask : ndarray of bool, optional
        Bad science pixels (saturated, cosmic rays, ...).
    kernel_half_width : int, optional
        Kernel half-width, px (default from the FWHMs).
    kernel_poly_order : int
        Polynomial order of the kernel's variation over the frame (0: one kernel).
    background_poly_order : int
        Polynomial order of the differential background.
    threads : int
        CPU threads of sfft.
    exclude_xy : ndarray, shape (n, 2), optional
        (x, y) positions kept out of the kernel fit (the target: its light is not in the template).
    exclude_radius_px : float, optional
        Radius of those exclusions, px (default 3 FWHM of the broader frame).

    Returns
    -------
    SubtractionResult

    Raises
    ------
    ValueError
        If the shapes differ or fewer than half the pixels are usable.
    """
    from sfft.sfftcore.SFFTConfigure import SingleSFFTConfigure
    from sfft.sfftcore.SFFTSubtract import GeneralSFFTSubtract
    from sfft.utils.SFFTSolutionReader import Realize_MatchingKernel

    start = time.perf_counter()
    sci = np.asarray(science, dtype=np.float64)
    if sci.shape != template.data.shape:
        raise ValueError(f"science {sci.shape} and aligned template {template.data.shape} differ in shape")
    sci_bad = ~np.isfinite(sci)
    if science_mask is not None:
        sci_bad = sci_bad | np.asarray(science_mask, dtype=bool)
    bad = template.mask | sci_bad
    if np.mean(bad) > 0.5:
        raise ValueError(f"only {100 * np.mean(~bad):.0f} % of the pixels are usable for subtraction")
    ref = np.where(bad, 0.0, np.nan_to_num(template.data.astype(np.float64)))
    sci = np.where(bad, 0.0, sci)
    bkg_sci = estimate_background(sci.astype(np.float32), bad)
    bkg_ref = estimate_background(ref.astype(np.float32), bad)
    # Only the global sky level is removed: a mesh background would eat part of a galaxy, and
    # differently in frames of other seeing; sfft's background polynomial fits what remains.
    sci = np.where(bad, 0.0, sci - bkg_sci.global_level)
    ref = np.where(bad, 0.0, ref - bkg_ref.global_level)
    t_background = time.perf_counter() - start

    convolve_template = template_fwhm_px <= science_fwhm_px
    half = kernel_half_width or _kernel_half_width(science_fwhm_px, template_fwhm_px)
    image_i, image_j = (ref, sci) if convolve_template else (sci, ref)
    # The fit ignores the surroundings of bad pixels (a saturated star's wings, a cosmic ray's
    # kernel footprint): unweighted least squares would follow their residuals.
    near_bad = fftconvolve(bad.astype(np.float64), np.ones((4 * half + 1, 4 * half + 1)), mode="same") > 0.5
    if exclude_xy is not None:
        radius = exclude_radius_px or 3.0 * max(science_fwhm_px, template_fwhm_px)
        yy, xx = np.mgrid[: sci.shape[0], : sci.shape[1]]
        for ex, ey in np.asarray(exclude_xy, dtype=np.float64).reshape(-1, 2):
            near_bad |= (xx - ex) ** 2 + (yy - ey) ** 2 <= radius * radius
    # sfft works on [x, y] arrays.
    pix_i = np.ascontiguousarray(image_i.T)
    pix_j = np.ascontiguousarray(image_j.T)
    fit_i = np.ascontiguousarray(np.where(near_bad, 0.0, image_i).T)
    fit_j = np.ascontiguousarray(np.where(near_bad, 0.0, image_j).T)
    ny, nx = sci.shape
    fit_start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        config = SingleSFFTConfigure.SSC(
            NX=nx,
            NY=ny,
            KerHW=half,
            KerPolyOrder=kernel_poly_order,
            BGPolyOrder=background_poly_order,
            ConstPhotRatio=True,
            BACKEND_4SUBTRACT="Numpy",
            NUM_CPU_THREADS_4SUBTRACT=threads,
            NUMBA_CACHE=True,
            VERBOSE_LEVEL=0,
        )
        solution, diff_xy = GeneralSFFTSubtract.GSS(
            PixA_I=pix_i,
            PixA_J=pix_j,
            PixA_mI=fit_i,
            PixA_mJ=fit_j,
            SFFTConfig=config,
            ContamMask_I=None,
            BACKEND_4SUBTRACT="Numpy",
            NUM_CPU_THREADS_4SUBTRACT=threads,
            VERBOSE_LEVEL=0,
        )[:2]
    t_fit = time.perf_counter() - fit_start
    size = 2 * half + 1
    n_background = (background_poly_order + 1) * (background_poly_order + 2) // 2
    kernel_xy = Realize_MatchingKernel(np.array([[nx / 2.0 + 0.5, ny / 2.0 + 0.5]])).FromArray(
        Solution=solution, N0=nx, N1=ny, L0=size, L1=size, DK=kernel_poly_order, Fpq=n_background
    )[0]
    kernel = np.asarray(kernel_xy.T, dtype=np.float64)
    kernel_sum = float(kernel.sum())
    # sfft gives J - K ⊗ I; a transient of the science frame is positive either way.
    residual_jk = diff_xy.T
    difference = residual_jk if convolve_template else -residual_jk

    noise_start = time.perf_counter()
    var_sci = np.where(bad, 0.0, np.asarray(science_noise, dtype=np.float64) ** 2)
    var_ref = np.where(bad, 0.0, np.nan_to_num(template.noise.astype(np.float64)) ** 2)
    k2 = kernel * kernel
    if convolve_template:
        variance = var_sci + fftconvolve(var_ref, k2, mode="same")
    else:
        variance = fftconvolve(var_sci, k2, mode="same") + var_ref
    # A masked pixel of the convolved frame spoils the kernel's footprint around it; one of the
    # other frame only itself.
    convolved_bad, other_bad = (template.mask, sci_bad) if convolve_template else (sci_bad, template.mask)
    grown = (
        fftconvolve(convolved_bad.astype(np.float64), np.ones((size, size)), mode="same") > 0.5
    ) | other_bad
    t_noise = time.perf_counter() - noise_start
    difference = np.where(grown, np.nan, difference)
    noise = np.where(grown, np.nan, np.sqrt(np.maximum(variance, 0.0)))
    return SubtractionResult(
        difference=difference.astype(np.float32),
        noise=noise.astype(np.float32),
        mask=grown,
        psf_of="science" if convolve_template else "template",
        flux_scale=1.0 if convolve_template else kernel_sum,
        kernel=kernel,
        kernel_sum=kernel_sum,
        convolved="template" if convolve_template else "science",
        seconds_background=t_background,
        seconds_fit=t_fit,
        seconds_noise=t_noise,
        seconds_total=time.perf_counter() - start,
    )
