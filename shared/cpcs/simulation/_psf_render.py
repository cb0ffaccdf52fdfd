"""Pixel-integrated Moffat point sources for the image simulator (private helper).

The Moffat profile of total flux ``F`` is::

    I(r) = F * (beta - 1) / (pi * alpha**2) * (1 + r**2 / alpha**2) ** (-beta)

with ``FWHM = 2 * alpha * sqrt(2**(1/beta) - 1)``; it integrates to ``F`` over the plane and the
fraction of the flux outside radius ``R`` is ``(1 + R**2/alpha**2) ** (1 - beta)``.

A pixel value is the integral of ``I`` over the pixel square (pixel ``i`` covers
``[i - 0.5, i + 0.5]``, 0-based centres). Inside a small core box around the star the integral is
computed with an ``n x n`` Gauss-Legendre rule (n = 3 for FWHM >= 2.5 pixels, more for sharper
images); outside it, with the pixel-centre value plus the exact second-order term
``laplacian(I) / 24``. Against a 12 x 12 Gauss-Legendre reference the error is below 2e-4 of the
peak pixel for FWHM >= 1.2 pixels and below 1e-5 for FWHM >= 3 pixels; the summed flux is exact to
a few 1e-5.

Every star is drawn into a square stamp of half-size ``h`` pixels (``2h + 1`` on a side) around its
nearest pixel; the flux beyond the stamp is left out, and the caller picks ``h`` so that this is
negligible (:func:`stamp_half_size`). Stars are grouped by ``h`` and rendered in vectorised chunks,
then added to the frame with ``numpy.add.at``.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.polynomial.legendre import leggauss
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
Float32Array = NDArray[np.float32]
IntArray = NDArray[np.intp]

__all__ = [
    "moffat_alpha",
    "moffat_fraction_outside",
    "psf_snr",
    "psf_stamps",
    "render_stars",
    "stamp_half_size",
]

# Number of stamp pixels evaluated per vectorised chunk (about 8 MB per float32 temporary).
_CHUNK_PIXELS = 1 << 21


def moffat_alpha(fwhm_pix: FloatArray | float, beta: float) -> FloatArray:
    """Moffat core width ``alpha`` (pixels) for a FWHM (pixels) and index ``beta``."""
    return np.asarray(fwhm_pix, dtype=np.float64) / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))


def moffat_fraction_outside(
    radius_pix: FloatArray | float, alpha_pix: FloatArray | float, beta: float
) -> FloatArray:
    """Fraction of a Moffat's flux outside a circle of ``radius_pix`` (analytic, unpixelated)."""
    r = np.asarray(radius_pix, dtype=np.float64)
    a = np.asarray(alpha_pix, dtype=np.float64)
    return np.asarray((1.0 + (r / a) ** 2) ** (1.0 - beta), dtype=np.float64)


def stamp_half_size(
    flux_e: FloatArray,
    alpha_pix: FloatArray,
    beta: float,
    *,
    omitted_fraction: float,
    omitted_e: float,
    min_half_size: IntArray,
    max_half_size: int,
) -> IntArray:
    """Stamp half-size (pixels) so that the flux left outside is at most ``max(fraction * F, omitted_e)``.

    Parameters
    ----------
    flux_e : ndarray
        Total flux of each star, electrons.
    alpha_pix : ndarray
        Moffat ``alpha`` of each star, pixels.
    beta : float
        Moffat index.
    omitted_fraction : float
        Largest fraction of a bright star's flux that may fall outside its stamp.
    omitted_e : float
        Flux (electrons) that may always be left out, whatever the star's brightness.
    min_half_size : ndarray of int
        Smallest half-size of each star.
    max_half_size : int
        Largest half-size of any star.

    Returns
    -------
    ndarray of int
        The half-size of each star; the flux outside the inscribed circle of radius ``h + 0.5``
        bounds the omitted flux from above.
    """
    flux = np.maximum(np.asarray(flux_e, dtype=np.float64), 1e-30)
    allowed = np.clip(np.maximum(omitted_fraction * flux, omitted_e) / flux, 1e-12, 1.0)
    radius = np.asarray(alpha_pix, dtype=np.float64) * np.sqrt(
        np.maximum(allowed ** (1.0 / (1.0 - beta)) - 1.0, 0.0)
    )
    half = np.ceil(radius - 0.5).astype(np.intp)
    return np.asarray(np.clip(np.maximum(half, min_half_size), 0, max_half_size), dtype=np.intp)


def _quadrature_order(fwhm_pix: float) -> int:
    if fwhm_pix >= 2.5:
        return 3
    if fwhm_pix >= 1.2:
        return 4
    return 6


def _core_half_size(fwhm_pix: float, half_size: int) -> int:
    return min(half_size, math.ceil(1.2 * fwhm_pix + 1.0))


def psf_stamps(
    frac_x: FloatArray,
    frac_y: FloatArray,
    alpha_pix: FloatArray,
    beta: float,
    half_size: int,
) -> Float32Array:
    """Unit-flux pixel-integrated Moffat stamps.

    Parameters
    ----------
    frac_x, frac_y : ndarray, shape (n,)
        Star position minus the centre pixel of its stamp, pixels (in [-0.5, 0.5]).
    alpha_pix : ndarray, shape (n,)
        Moffat ``alpha`` of each star, pixels.
    beta : float
        Moffat index (> 1).
    half_size : int
        Stamp half-size ``h``; stamps are ``(2h + 1) x (2h + 1)``, indexed ``[star, y, x]``.

    Returns
    -------
    ndarray of float32, shape (n, 2h + 1, 2h + 1)
        Fraction of each star's flux falling in each pixel.
    """
    n = int(np.size(frac_x))
    size = 2 * half_size + 1
    alpha = np.asarray(alpha_pix, dtype=np.float64)
    inv_a2 = (1.0 / alpha**2).astype(np.float32)[:, None, None]
    amplitude = ((beta - 1.0) / (math.pi * alpha**2)).astype(np.float32)[:, None, None]
    b = np.float32(beta)
    offsets = np.arange(-half_size, half_size + 1, dtype=np.float32)
    dx = offsets[None, None, :] - np.asarray(frac_x, dtype=np.float32)[:, None, None]
    dy = offsets[None, :, None] - np.asarray(frac_y, dtype=np.float32)[:, None, None]
    u = (dx * dx + dy * dy) * inv_a2
    s = u + np.float32(1.0)
    stamp = s ** (-b)
    # Pixel average = centre value + laplacian / 24 (+ fourth-order terms, negligible outside the core).
    stamp *= np.float32(1.0) + (b / np.float32(6.0)) * inv_a2 * (b * u - np.float32(1.0)) / (s * s)
    del u, s
    if n:
        fwhm_max = float(np.max(alpha)) * 2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0)
        fwhm_min = float(np.min(alpha)) * 2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0)
        core = _core_half_size(fwhm_max, half_size)
        nodes, weights = leggauss(_quadrature_order(fwhm_min))
        nodes = (nodes / 2.0).astype(np.float32)
        weights = (weights / 2.0).astype(np.float32)
        lo, hi = half_size - core, half_size + core + 1
        cdx, cdy = dx[:, :, lo:hi], dy[:, lo:hi, :]
        accum = np.zeros((n, hi - lo, hi - lo), dtype=np.float32)
        for ty, wy in zip(nodes, weights, strict=True):
            dy2 = (cdy + ty) ** 2
            for tx, wx in zip(nodes, weights, strict=True):
                accum += (wy * wx) * ((dy2 + (cdx + tx) ** 2) * inv_a2 + np.float32(1.0)) ** (-b)
        stamp[:, lo:hi, lo:hi] = accum
    stamp *= amplitude
    assert stamp.shape == (n, size, size)
    return stamp


def render_stars(
    image: Float32Array,
    x: FloatArray,
    y: FloatArray,
    flux_e: FloatArray,
    alpha_pix: FloatArray,
    beta: float,
    half_size: IntArray,
) -> tuple[FloatArray, FloatArray]:
    """Add stars to a frame, each in its own stamp.

    Parameters
    ----------
    image : ndarray of float32, shape (ny, nx)
        Frame (electrons), modified in place; C-contiguous.
    x, y : ndarray
        0-based pixel positions of the stars (pixel centres are integers).
    flux_e : ndarray
        Total flux of each star, electrons.
    alpha_pix : ndarray
        Moffat ``alpha`` of each star, pixels.
    beta : float
        Moffat index.
    half_size : ndarray of int
        Stamp half-size of each star (see :func:`stamp_half_size`).

    Returns
    -------
    stamp_flux_e, frame_flux_e : ndarray of float64
        Flux drawn in each star's stamp, and the part of it that landed inside the frame, electrons.
    """
    if not image.flags.c_contiguous or image.dtype != np.float32:
        raise ValueError("image must be a C-contiguous float32 array")
    ny, nx = image.shape
    flat = image.reshape(-1)
    n = int(np.size(x))
    stamp_flux = np.zeros(n, dtype=np.float64)
    frame_flux = np.zeros(n, dtype=np.float64)
    if n == 0:
        return stamp_flux, frame_flux
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    centre_x = np.floor(x + 0.5).astype(np.intp)
    centre_y = np.floor(y + 0.5).astype(np.intp)
    frac_x, frac_y = x - centre_x, y - centre_y
    flux = np.asarray(flux_e, dtype=np.float64)
    alpha = np.asarray(alpha_pix, dtype=np.float64)
    half = np.asarray(half_size, dtype=np.intp)
    for h in np.unique(half):
        members = np.flatnonzero(half == h)
        size = 2 * int(h) + 1
        per_chunk = max(1, _CHUNK_PIXELS // (size * size))
        offsets = np.arange(-int(h), int(h) + 1, dtype=np.intp)
        for start in range(0, members.size, per_chunk):
            idx = members[start : start + per_chunk]
            stamps = psf_stamps(frac_x[idx], frac_y[idx], alpha[idx], beta, int(h))
            stamps *= flux[idx].astype(np.float32)[:, None, None]
            stamp_flux[idx] = stamps.sum(axis=(1, 2), dtype=np.float64)
            cols = centre_x[idx][:, None, None] + offsets[None, None, :]
            rows = centre_y[idx][:, None, None] + offsets[None, :, None]
            inside = (cols >= 0) & (cols < nx) & (rows >= 0) & (rows < ny)
            if inside.all():
                np.add.at(flat, (rows * nx + cols).reshape(-1), stamps.reshape(-1))
                frame_flux[idx] = stamp_flux[idx]
            else:
                stamps *= inside
                frame_flux[idx] = stamps.sum(axis=(1, 2), dtype=np.float64)
                pixel = np.broadcast_to(rows * nx + cols, inside.shape)
                np.add.at(flat, pixel[inside], stamps[inside])
    return stamp_flux, frame_flux


def psf_snr(
    flux_e: FloatArray,
    frac_x: FloatArray,
    frac_y: FloatArray,
    alpha_pix: FloatArray,
    beta: float,
    background_var_e2: FloatArray | float,
) -> FloatArray:
    """S/N of an optimal (PSF-weighted) flux measurement: the Cramér-Rao bound.

    ``SNR**2 = F**2 * sum_i p_i**2 / (sigma**2 + F p_i)`` for a fit of the flux alone with known
    position, PSF and background (``p_i``: pixelated unit-flux PSF; ``sigma**2``: background plus
    read-noise variance per pixel, electrons**2). Sums run over a stamp of ``4 * FWHM``.

    Parameters
    ----------
    flux_e : ndarray
        Total flux, electrons.
    frac_x, frac_y : ndarray
        Sub-pixel position of each source relative to its nearest pixel centre, pixels.
    alpha_pix : ndarray
        Moffat ``alpha`` at each source, pixels.
    beta : float
        Moffat index.
    background_var_e2 : ndarray
        Background variance per pixel at each source (sky + read noise**2), electrons**2.

    Returns
    -------
    ndarray of float64
    """
    flux = np.atleast_1d(np.asarray(flux_e, dtype=np.float64))
    out = np.zeros(flux.size, dtype=np.float64)
    if flux.size == 0:
        return out
    alpha = np.broadcast_to(np.asarray(alpha_pix, dtype=np.float64), flux.shape)
    fx = np.broadcast_to(np.asarray(frac_x, dtype=np.float64), flux.shape)
    fy = np.broadcast_to(np.asarray(frac_y, dtype=np.float64), flux.shape)
    var = np.broadcast_to(np.asarray(background_var_e2, dtype=np.float64), flux.shape)
    fwhm_max = float(np.max(alpha)) * 2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0)
    h = max(2, math.ceil(4.0 * fwhm_max))
    per_chunk = max(1, _CHUNK_PIXELS // (2 * h + 1) ** 2)
    for start in range(0, flux.size, per_chunk):
        sl = slice(start, start + per_chunk)
        p = psf_stamps(fx[sl], fy[sl], alpha[sl], beta, h).astype(np.float64)
        f = flux[sl][:, None, None]
        information = np.sum(p * p / (var[sl][:, None, None] + np.maximum(f, 0.0) * p), axis=(1, 2))
        out[sl] = flux[sl] * np.sqrt(information)
    return out
