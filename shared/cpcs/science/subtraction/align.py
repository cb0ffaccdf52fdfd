"""Resampling of a template onto the science frame's pixel grid with the two WCS.

The science → template pixel mapping is computed once (an affine fit of the WCS mapping when its
error is negligible, else the exact transform of every pixel) and used by
``scipy.ndimage.map_coordinates`` for the image (cubic spline) and, in one bilinear pass, for the
variance and the mask: what ``reproject_interp`` does, without three WCS transforms of the frame.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS
from numpy.typing import NDArray
from scipy.ndimage import map_coordinates

__all__ = ["AlignedTemplate", "PixelMapping", "align_template", "pixel_mapping"]

_SPLINE_ORDER = {"bilinear": 1, "bicubic": 3}

FloatImage = NDArray[np.float32]
BoolImage = NDArray[np.bool_]


@dataclass(frozen=True, eq=False)
class AlignedTemplate:
    """A template resampled onto the science grid.

    Attributes
    ----------
    data : ndarray of float32
        Template, ADU of the template, on the science pixels (NaN off the template).
    noise : ndarray of float32
        Its per-pixel noise, ADU (resampled variance, square-rooted).
    mask : ndarray of bool
        Science pixels without valid template data (off the template or fed by a masked pixel).
    coverage : float
        Fraction of science pixels covered by valid template data.
    seconds : float
        Time taken.
    affine : bool
        The science → template pixel mapping was an affine fit of the WCS mapping (else exact).
    max_affine_error_px : float
        Largest error of that affine fit against the exact mapping, px (checked on a grid).
    """

    data: FloatImage
    noise: FloatImage
    mask: BoolImage
    coverage: float
    seconds: float
    affine: bool = False
    max_affine_error_px: float = math.nan


def align_template(
    template: NDArray[np.floating],
    template_wcs: WCS,
    science_wcs: WCS,
    science_shape: tuple[int, int],
    *,
    template_noise: NDArray[np.floating],
    template_mask: NDArray[np.bool_] | None = None,
    order: str = "bicubic",
    max_affine_error_px: float = 0.01,
) -> AlignedTemplate:
    """Resample the template, its noise and its mask onto the science frame.

    Parameters
    ----------
    template : ndarray
        Template image, ADU.
    template_wcs, science_wcs : astropy.wcs.WCS
        Solved celestial WCS of each frame.
    science_shape : (int, int)
        (ny, nx) of the science frame.
    template_noise : ndarray
        Per-pixel noise of the template, ADU (its variance is interpolated linearly: the
        resampled noise is close to, and slightly above, that of the interpolated pixels).
    template_mask : ndarray of bool, optional
        Bad template pixels; any science pixel that draws on one (bilinear footprint) is masked.
    order : str
        Interpolation of the image: "bilinear" or "bicubic" (a cubic spline, as reproject's).
    max_affine_error_px : float
        The pixel mapping is an affine fit when its error stays within this, px; else exact
        (see :func:`pixel_mapping`). 0 forces the exact mapping.

    Returns
    -------
    AlignedTemplate
    """
    start = time.perf_counter()
    if order not in _SPLINE_ORDER:
        raise ValueError(f"order must be one of {sorted(_SPLINE_ORDER)}, not {order!r}")
    data = np.asarray(template, dtype=np.float64)
    bad = np.zeros(data.shape, dtype=bool) if template_mask is None else np.asarray(template_mask, dtype=bool)
    bad |= ~np.isfinite(data)
    filled = np.where(bad, 0.0, data)
    shape_out = (int(science_shape[0]), int(science_shape[1]))
    mapping = pixel_mapping(template_wcs, science_wcs, shape_out, max_affine_error_px=max_affine_error_px)
    ty, tx = mapping.template_yx
    # reproject's footprint: science pixels whose centre falls on the template.
    tny, tnx = data.shape
    footprint = (tx >= -0.5) & (tx <= tnx - 0.5) & (ty >= -0.5) & (ty <= tny - 0.5)
    aligned = map_coordinates(filled, [ty, tx], order=_SPLINE_ORDER[order], mode="nearest")
    # Variance bilinearly, with bad pixels NaN: a science pixel drawing on one becomes NaN, so the
    # same pass gives the resampled variance and the mask.
    variance = np.where(bad, np.nan, np.asarray(template_noise, dtype=np.float64) ** 2)
    aligned_var = map_coordinates(variance, [ty, tx], order=1, mode="nearest")
    mask = ~footprint | ~np.isfinite(aligned) | ~np.isfinite(aligned_var)
    aligned = np.where(mask, np.nan, aligned)
    noise = np.sqrt(np.where(mask, np.nan, np.maximum(aligned_var, 0.0)))
    return AlignedTemplate(
        data=aligned.astype(np.float32),
        noise=noise.astype(np.float32),
        mask=mask,
        coverage=float(np.mean(~mask)),
        seconds=time.perf_counter() - start,
        affine=mapping.affine,
        max_affine_error_px=mapping.max_affine_error_px,
    )


@dataclass(frozen=True, eq=False)
class PixelMapping:
    """Where each science pixel falls on the template.

    Attributes
    ----------
    template_yx : ndarray, shape (2, ny, nx)
        Template (y, x) of every science pixel centre, 0-based.
    affine : bool
        True when the mapping is the affine fit (its error bounded by ``max_affine_error_px``).
    max_affine_error_px : float
        Largest distance between the affine fit and the exact WCS mapping over the check grid, px.
    """

    template_yx: NDArray[np.float64]
    affine: bool
    max_affine_error_px: float


def _exact(
    template_wcs: WCS, science_wcs: WCS, x: NDArray[np.float64], y: NDArray[np.float64]
) -> NDArray[np.float64]:
    world = science_wcs.pixel_to_world_values(x, y)
    tx, ty = template_wcs.world_to_pixel_values(*world)
    return np.stack([np.asarray(ty, dtype=np.float64), np.asarray(tx, dtype=np.float64)])


def pixel_mapping(
    template_wcs: WCS,
    science_wcs: WCS,
    science_shape: tuple[int, int],
    *,
    max_affine_error_px: float = 0.01,
) -> PixelMapping:
    """Science pixel → template pixel, through the two WCS, computed once for every pixel.

    Over a field of a few tens of arcminutes two tangent projections differ from an affine map by
    far less than a pixel. The exact mapping is evaluated on a 17 × 17 grid, an affine map fitted
    to it and checked on a 33 × 33 grid offset from it; when its largest error is at most
    ``max_affine_error_px`` it gives every pixel's position (cheap), otherwise the exact WCS
    transform of every pixel is used (as reproject does).
    """
    ny, nx = science_shape
    gy, gx = np.meshgrid(np.linspace(0, ny - 1, 17), np.linspace(0, nx - 1, 17), indexing="ij")
    fit_at = _exact(template_wcs, science_wcs, gx.ravel(), gy.ravel())
    design = np.column_stack([np.ones(gx.size), gx.ravel(), gy.ravel()])
    coeffs = np.linalg.lstsq(design, fit_at.T, rcond=None)[0]  # (3, 2): rows 1, x, y; columns ty, tx
    cy, cx = np.meshgrid(np.linspace(0.3, ny - 1.3, 33), np.linspace(0.7, nx - 1.7, 33), indexing="ij")
    check = _exact(template_wcs, science_wcs, cx.ravel(), cy.ravel())
    predicted = (np.column_stack([np.ones(cx.size), cx.ravel(), cy.ravel()]) @ coeffs).T
    error = float(np.nanmax(np.hypot(*(predicted - check)))) if np.all(np.isfinite(check)) else math.inf
    if error <= max_affine_error_px:
        x = np.arange(nx, dtype=np.float64)
        y = np.arange(ny, dtype=np.float64)[:, None]
        ty = coeffs[0, 0] + coeffs[1, 0] * x + coeffs[2, 0] * y
        tx = coeffs[0, 1] + coeffs[1, 1] * x + coeffs[2, 1] * y
        return PixelMapping(np.stack([ty, tx]), affine=True, max_affine_error_px=error)
    yy, xx = np.mgrid[:ny, :nx].astype(np.float64)
    return PixelMapping(_exact(template_wcs, science_wcs, xx, yy), affine=False, max_affine_error_px=error)
