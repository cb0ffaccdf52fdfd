"""Resampling of a template onto the science frame's pixel grid with the two WCS (reproject)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS
from numpy.typing import NDArray
from reproject import reproject_interp

__all__ = ["AlignedTemplate", "align_template"]

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
    """

    data: FloatImage
    noise: FloatImage
    mask: BoolImage
    coverage: float
    seconds: float


def align_template(
    template: NDArray[np.floating],
    template_wcs: WCS,
    science_wcs: WCS,
    science_shape: tuple[int, int],
    *,
    template_noise: NDArray[np.floating],
    template_mask: NDArray[np.bool_] | None = None,
    order: str = "bicubic",
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
        Interpolation of the image (``reproject_interp`` order: "bilinear", "bicubic").

    Returns
    -------
    AlignedTemplate
    """
    start = time.perf_counter()
    data = np.asarray(template, dtype=np.float64)
    bad = np.zeros(data.shape, dtype=bool) if template_mask is None else np.asarray(template_mask, dtype=bool)
    bad |= ~np.isfinite(data)
    filled = np.where(bad, 0.0, data)
    shape_out = (int(science_shape[0]), int(science_shape[1]))
    aligned, footprint = reproject_interp(
        (filled, template_wcs), science_wcs, shape_out=shape_out, order=order
    )
    variance = np.where(bad, 0.0, np.asarray(template_noise, dtype=np.float64) ** 2)
    aligned_var, _ = reproject_interp(
        (variance, template_wcs), science_wcs, shape_out=shape_out, order="bilinear"
    )
    touched, _ = reproject_interp(
        (bad.astype(np.float64), template_wcs), science_wcs, shape_out=shape_out, order="bilinear"
    )
    mask = (footprint < 1.0) | ~np.isfinite(aligned) | (np.nan_to_num(touched, nan=1.0) > 0.0)
    aligned = np.where(mask, np.nan, aligned)
    noise = np.sqrt(np.where(mask, np.nan, np.maximum(aligned_var, 0.0)))
    return AlignedTemplate(
        data=aligned.astype(np.float32),
        noise=noise.astype(np.float32),
        mask=mask,
        coverage=float(np.mean(~mask)),
        seconds=time.perf_counter() - start,
    )
