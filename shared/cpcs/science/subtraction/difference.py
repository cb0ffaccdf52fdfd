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
import functools
import io
import math
import os
import time
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.fft
import sep
from numpy.typing import NDArray
from scipy.ndimage import maximum_filter
from scipy.signal import fftconvolve

from cpcs.science.subtraction.align import AlignedTemplate
from cpcs.science.subtraction.stamps import stamp_mosaic

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
    fitted_on : {"stamps", "frame"}
        Where the kernel was fitted: a mosaic of stamps around bright isolated sources, or the
        whole frame.
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
    fitted_on: Literal["stamps", "frame"] = "frame"


def _kernel_half_width(fwhm_science: float, fwhm_template: float) -> int:
    """Half-width of the kernel: ~2.5 FWHM of the broader frame, at least 3 pixels."""
    return max(3, math.ceil(1.25 * max(fwhm_science, fwhm_template)))


def _global_sky(image: NDArray[np.float64], bad: BoolImage) -> tuple[float, float]:
    """Global sky level and rms, ADU: those of :func:`estimate_background` (same sep mesh), without
    its full-frame maps."""
    box = int(max(8, min(64, min(image.shape) // 4)))
    data = np.ascontiguousarray(image, dtype=np.float32)
    background = sep.Background(data, mask=bad if bad.any() else None, bw=box, bh=box, fw=3, fh=3)
    return float(background.globalback), float(background.globalrms)


def _convolve(image: NDArray[np.float64], kernel: NDArray[np.float64]) -> NDArray[np.float64]:
    """``image ⊗ kernel`` ("same" size), by FFT in single precision (errors ~1e-7 of the peak)."""
    return fftconvolve(image.astype(np.float32), kernel.astype(np.float32), mode="same").astype(np.float64)


def _mark_discs(mask: BoolImage, centres_xy: NDArray[np.float64], radius: float) -> None:
    """Set ``mask`` within ``radius`` of each (x, y) centre, in place."""
    ny, nx = mask.shape
    reach = math.ceil(radius)
    for cx, cy in centres_xy:
        x0, x1 = max(0, int(cx) - reach), min(nx, int(cx) + reach + 2)
        y0, y1 = max(0, int(cy) - reach), min(ny, int(cy) + reach + 2)
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        mask[y0:y1, x0:x1] |= (xx - cx) ** 2 + (yy - cy) ** 2 <= radius * radius


@functools.lru_cache(maxsize=16)
def _sfft_configuration(
    n0: int, n1: int, half: int, kernel_poly_order: int, background_poly_order: int, threads: int
) -> object:
    """sfft's configuration for one image size and kernel: it compiles its functions (tens of
    seconds), so one per size is kept for the life of the process.

    numba's on-disk cache stays off: sfft's functions are closures over the image size, and a
    process that configured two sizes got the other size's compiled code back from the cache
    (``SystemError ... returned a result with an exception set``)."""
    from sfft.sfftcore.SFFTConfigure import SingleSFFTConfigure

    with contextlib.redirect_stdout(io.StringIO()):
        return SingleSFFTConfigure.SSC(
            NX=n0,
            NY=n1,
            KerHW=half,
            KerPolyOrder=kernel_poly_order,
            BGPolyOrder=background_poly_order,
            ConstPhotRatio=True,
            BACKEND_4SUBTRACT="Numpy",
            NUM_CPU_THREADS_4SUBTRACT=threads,
            NUMBA_CACHE=False,
            VERBOSE_LEVEL=0,
        )


def _sfft_solve(
    pix_i: NDArray[np.float64],
    pix_j: NDArray[np.float64],
    fit_i: NDArray[np.float64],
    fit_j: NDArray[np.float64],
    half: int,
    kernel_poly_order: int,
    background_poly_order: int,
    threads: int,
    *,
    subtract: bool = False,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """sfft's solution vector (and ``J - K ⊗ I`` when ``subtract``) for ``[x, y]`` images."""
    from sfft.sfftcore.SFFTSubtract import ElementalSFFTSubtract, GeneralSFFTSubtract

    n0, n1 = pix_i.shape
    config = _sfft_configuration(n0, n1, half, kernel_poly_order, background_poly_order, threads)
    args = [np.ascontiguousarray(a, dtype=np.float64) for a in (pix_i, pix_j, fit_i, fit_j)]
    with contextlib.redirect_stdout(io.StringIO()):
        if not subtract:
            solution = ElementalSFFTSubtract.ESS(
                PixA_I=args[2],
                PixA_J=args[3],
                SFFTConfig=config,
                SFFTSolution=None,
                Subtract=False,
                BACKEND_4SUBTRACT="Numpy",
                NUM_CPU_THREADS_4SUBTRACT=threads,
                VERBOSE_LEVEL=0,
            )[0]
            return np.asarray(solution), np.zeros(0)
        solution, difference = GeneralSFFTSubtract.GSS(
            PixA_I=args[0],
            PixA_J=args[1],
            PixA_mI=args[2],
            PixA_mJ=args[3],
            SFFTConfig=config,
            ContamMask_I=None,
            BACKEND_4SUBTRACT="Numpy",
            NUM_CPU_THREADS_4SUBTRACT=threads,
            VERBOSE_LEVEL=0,
        )[:2]
    return np.asarray(solution), np.asarray(difference)


def _kernel_at_centre(
    solution: NDArray[np.float64],
    shape_yx: tuple[int, int],
    half: int,
    kernel_poly_order: int,
    background_poly_order: int,
) -> NDArray[np.float64]:
    """The matching kernel at the centre of the fitted image, ``[y, x]``."""
    from sfft.utils.SFFTSolutionReader import Realize_MatchingKernel

    ny, nx = shape_yx
    size = 2 * half + 1
    n_background = (background_poly_order + 1) * (background_poly_order + 2) // 2
    kernel_xy = Realize_MatchingKernel(np.array([[nx / 2.0 + 0.5, ny / 2.0 + 0.5]])).FromArray(
        Solution=solution, N0=nx, N1=ny, L0=size, L1=size, DK=kernel_poly_order, Fpq=n_background
    )[0]
    return np.asarray(kernel_xy.T, dtype=np.float64)


def _background_polynomial(
    residual: NDArray[np.float64], excluded: BoolImage, order: int
) -> NDArray[np.float64]:
    """A polynomial of ``order`` in (x, y) through 64 × 64 px block medians of ``residual``.

    Each block's median is over every 4th pixel of every 4th row, excluded pixels left out;
    sources are few per block, so the median follows the background.
    """
    block, step = 64, 4
    ny, nx = residual.shape
    by, bx = ny // block, nx // block
    terms = [(total - q, q) for total in range(order + 1) for q in range(total + 1)]  # x^p y^q
    if by * bx < 2 * len(terms):
        usable = residual[~excluded]
        return np.full(residual.shape, float(np.median(usable)) if usable.size else 0.0)
    sample = residual[: by * block : step, : bx * block : step].copy()
    sample[excluded[: by * block : step, : bx * block : step]] = np.nan
    blocks = sample.reshape(by, block // step, bx, block // step).transpose(0, 2, 1, 3).reshape(by, bx, -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks
        medians = np.nanmedian(blocks, axis=2)
    yc = (np.arange(by) + 0.5) * block / ny - 0.5
    xc = (np.arange(bx) + 0.5) * block / nx - 0.5
    gy, gx = np.meshgrid(yc, xc, indexing="ij")
    good = np.isfinite(medians)
    if good.sum() < 2 * len(terms):
        return np.zeros(residual.shape)
    design = np.column_stack([gx[good] ** p * gy[good] ** q for p, q in terms])
    coeffs = np.linalg.lstsq(design, medians[good], rcond=None)[0]
    yy = (np.arange(ny) + 0.5) / ny - 0.5
    xx = (np.arange(nx) + 0.5) / nx - 0.5
    surface = np.zeros(residual.shape)
    for (p, q), c in zip(terms, coeffs, strict=True):
        surface += c * np.outer(yy**q, xx**p)
    return surface


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
    threads: int | None = None,
    exclude_xy: NDArray[np.floating] | None = None,
    exclude_radius_px: float | None = None,
    fit_on: Literal["auto", "stamps", "frame"] = "auto",
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
    threads : int, optional
        CPU threads of sfft and of the FFT convolutions (default: all cores).
    exclude_xy : ndarray, shape (n, 2), optional
        (x, y) positions kept out of the kernel fit (the target: its light is not in the template).
    exclude_radius_px : float, optional
        Radius of those exclusions, px (default 3 FWHM of the broader frame).
    fit_on : {"auto", "stamps", "frame"}
        Fit the kernel on a mosaic of stamps around bright isolated sources (fast; one kernel,
        the differential background polynomial then fitted on the difference), or on the whole
        frame (sfft's full fit, needed for ``kernel_poly_order > 0``). "auto": stamps when the
        kernel is constant and at least 8 usable sources are found, else the frame.

    Returns
    -------
    SubtractionResult

    Raises
    ------
    ValueError
        If the shapes differ, fewer than half the pixels are usable, or ``fit_on="stamps"`` finds
        too few sources.
    """
    start = time.perf_counter()
    sci = np.asarray(science, dtype=np.float64)
    if sci.shape != template.data.shape:
        raise ValueError(f"science {sci.shape} and aligned template {template.data.shape} differ in shape")
    if fit_on not in ("auto", "stamps", "frame"):
        raise ValueError(f"fit_on must be 'auto', 'stamps' or 'frame', not {fit_on!r}")
    if fit_on == "stamps" and kernel_poly_order != 0:
        raise ValueError("a kernel fitted on stamps is one kernel: use kernel_poly_order=0 or fit_on='frame'")
    workers = threads if threads is not None else (os.cpu_count() or 1)
    sci_bad = ~np.isfinite(sci)
    if science_mask is not None:
        sci_bad = sci_bad | np.asarray(science_mask, dtype=bool)
    bad = template.mask | sci_bad
    if np.mean(bad) > 0.5:
        raise ValueError(f"only {100 * np.mean(~bad):.0f} % of the pixels are usable for subtraction")
    ref = np.where(bad, 0.0, np.nan_to_num(template.data.astype(np.float64)))
    sci = np.where(bad, 0.0, sci)
    level_sci, rms_sci = _global_sky(sci, bad)
    level_ref, rms_ref = _global_sky(ref, bad)
    # Only the global sky level is removed: a mesh background would eat part of a galaxy, and
    # differently in frames of other seeing; sfft's background polynomial fits what remains.
    sci = np.where(bad, 0.0, sci - level_sci)
    ref = np.where(bad, 0.0, ref - level_ref)
    t_background = time.perf_counter() - start

    convolve_template = template_fwhm_px <= science_fwhm_px
    broad_fwhm = max(science_fwhm_px, template_fwhm_px)
    half = kernel_half_width or _kernel_half_width(science_fwhm_px, template_fwhm_px)
    image_i, image_j = (ref, sci) if convolve_template else (sci, ref)
    # The fit ignores the surroundings of bad pixels (a saturated star's wings, a cosmic ray's
    # kernel footprint): unweighted least squares would follow their residuals.
    near_bad = maximum_filter(bad, size=4 * half + 1)
    if exclude_xy is not None:
        radius = exclude_radius_px or 3.0 * broad_fwhm
        _mark_discs(near_bad, np.asarray(exclude_xy, dtype=np.float64).reshape(-1, 2), radius)
    ny, nx = sci.shape
    fit_start = time.perf_counter()
    mosaic = None
    fitted_on: Literal["stamps", "frame"]
    if fit_on != "frame" and kernel_poly_order == 0:
        rms_i = rms_ref if convolve_template else rms_sci
        mosaic = stamp_mosaic(
            image_i, image_j, near_bad, rms=rms_i, fwhm_px=broad_fwhm, kernel_half_width=half
        )
        if mosaic is None and fit_on == "stamps":
            raise ValueError("too few bright isolated sources for a kernel fitted on stamps")
    if mosaic is not None:
        # One kernel from the stamps, a constant background in the mosaic (its blank gutters hold
        # it near zero); the differential background of the frame is fitted on the difference.
        # sfft works on [x, y] arrays.
        stamps_i, stamps_j = mosaic.image_i.T, mosaic.image_j.T
        solution, _ = _sfft_solve(stamps_i, stamps_j, stamps_i, stamps_j, half, 0, 0, workers)
        kernel = _kernel_at_centre(solution, mosaic.image_i.shape, half, 0, 0)
        with scipy.fft.set_workers(workers):
            residual_jk = image_j - _convolve(image_i, kernel)
        residual_jk -= _background_polynomial(residual_jk, near_bad, background_poly_order)
        fitted_on = "stamps"
    else:
        fit_i = np.where(near_bad, 0.0, image_i)
        fit_j = np.where(near_bad, 0.0, image_j)
        # sfft works on [x, y] arrays.
        solution, diff_xy = _sfft_solve(
            image_i.T,
            image_j.T,
            fit_i.T,
            fit_j.T,
            half,
            kernel_poly_order,
            background_poly_order,
            workers,
            subtract=True,
        )
        kernel = _kernel_at_centre(solution, (ny, nx), half, kernel_poly_order, background_poly_order)
        residual_jk = diff_xy.T
        fitted_on = "frame"
    t_fit = time.perf_counter() - fit_start
    size = 2 * half + 1
    kernel_sum = float(kernel.sum())
    # sfft gives J - K ⊗ I; a transient of the science frame is positive either way.
    difference = residual_jk if convolve_template else -residual_jk

    noise_start = time.perf_counter()
    var_sci = np.where(bad, 0.0, np.asarray(science_noise, dtype=np.float64) ** 2)
    var_ref = np.where(bad, 0.0, np.nan_to_num(template.noise.astype(np.float64)) ** 2)
    k2 = kernel * kernel
    with scipy.fft.set_workers(workers):
        convolved_var, other_var = (var_ref, var_sci) if convolve_template else (var_sci, var_ref)
        variance = _convolve(convolved_var, k2) + other_var
    # A masked pixel of the convolved frame spoils the kernel's footprint around it; one of the
    # other frame only itself.
    convolved_bad, other_bad = (template.mask, sci_bad) if convolve_template else (sci_bad, template.mask)
    grown = maximum_filter(convolved_bad, size=size) | other_bad
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
        fitted_on=fitted_on,
    )
