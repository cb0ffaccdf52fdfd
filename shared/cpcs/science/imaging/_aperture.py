"""Aperture sums with a source-masked local sky annulus (sep-based, private)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sep
from numpy.typing import NDArray

from cpcs.science.imaging.background import ImageBackground

FloatArray = NDArray[np.float64]

#: Radius (in FWHM) of the large aperture that defines the "total" flux scale of the package.
REFERENCE_RADIUS_FWHM = 2.5
#: Default local sky annulus (in FWHM).
ANNULUS_FWHM = (3.0, 5.0)
#: Smallest number of unmasked annulus pixels for a usable local sky.
MIN_SKY_PIXELS = 20
#: Apertures and annuli scale with the FWHM, but never with less than this (px): the light of an
#: undersampled star (FWHM ~1 px) falls in a few pixels, and an aperture of 1 px would catch a
#: fraction of it that changes by tens of per cent with the star's position in its pixel.
MIN_APERTURE_SCALE_PX = 1.5


def aperture_scale_px(fwhm_px: FloatArray | float) -> FloatArray:
    """The FWHM (px) that apertures and annuli are scaled with: the FWHM, at least
    ``MIN_APERTURE_SCALE_PX``."""
    return np.maximum(np.asarray(fwhm_px, dtype=np.float64), MIN_APERTURE_SCALE_PX)


@dataclass(frozen=True)
class ApertureSums:
    """Sky-corrected aperture fluxes (ADU) and their parts."""

    flux: FloatArray
    flux_err: FloatArray
    area: FloatArray  # aperture area, px²
    sky: FloatArray  # local sky residual per pixel, ADU
    sky_err: FloatArray  # its error, ADU per pixel
    n_sky: FloatArray  # unmasked pixels in the annulus
    sep_flags: NDArray[np.int16]
    masked_frac: FloatArray  # fraction of the aperture masked


def source_mask(mask: NDArray[np.bool_] | None, segmap: NDArray[np.int32] | None) -> NDArray[np.bool_] | None:
    """Pixels excluded from sky annuli: bad pixels and every detected source's footprint."""
    if segmap is None:
        return mask
    sources = segmap > 0
    return sources if mask is None else (sources | mask)


@dataclass(frozen=True)
class ApertureImages:
    """Images prepared once for many aperture sums (no float copies of masks are needed: sep sums
    boolean images directly)."""

    data_sub: NDArray[np.float32]  # sky-map-subtracted data
    rms: NDArray[np.float32]  # sky noise map (smooth: read at the source centre)
    mask: NDArray[np.bool_] | None  # bad pixels
    sky_mask: NDArray[np.bool_] | None  # pixels that may not enter a sky annulus

    @classmethod
    def prepare(
        cls,
        data_sub: NDArray[np.float32],
        rms: NDArray[np.float32],
        mask: NDArray[np.bool_] | None,
        sky_mask: NDArray[np.bool_] | None,
    ) -> ApertureImages:
        return cls(data_sub, rms, mask, sky_mask)


def aperture_sums(
    images: ApertureImages,
    x: FloatArray,
    y: FloatArray,
    radius: FloatArray | float,
    annulus: tuple[FloatArray | float, FloatArray | float],
    gain: float | None,
) -> ApertureSums:
    """Circular aperture sums with the local residual sky (mean of unmasked annulus pixels) removed.

    ``images.data_sub`` has the smooth sky map subtracted already; the annulus corrects what is
    left (without a usable annulus, the mesh sky stays and its error is taken as rms/10, the
    error of a mean over ~100 pixels). The sky noise map varies on the mesh scale (tens of
    pixels), so its value at the centre stands for the whole aperture. Variance = area × rms²
    + flux/gain (Poisson of the source, when ``gain``) + (area × σ_rms / √n_sky)². Masked pixels
    in the aperture are replaced by the mean of the unmasked ones (sep's correction) and flagged
    ``sep.APER_HASMASKED``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    radius_arr = np.broadcast_to(np.asarray(radius, dtype=np.float64), x.shape)
    rin = np.broadcast_to(np.asarray(annulus[0], dtype=np.float64), x.shape)
    rout = np.broadcast_to(np.asarray(annulus[1], dtype=np.float64), x.shape)
    if x.size == 0:
        empty = np.zeros(0)
        return ApertureSums(empty, empty, empty, empty, empty, empty, np.zeros(0, np.int16), empty)
    ny, nx = images.data_sub.shape
    ix = np.clip(np.rint(x).astype(np.intp), 0, nx - 1)
    iy = np.clip(np.rint(y).astype(np.intp), 0, ny - 1)
    rms = images.rms[iy, ix].astype(np.float64)
    flux, _, flags = sep.sum_circle(images.data_sub, x, y, radius_arr, mask=images.mask, subpix=5)
    area = np.pi * radius_arr**2
    if images.mask is not None:
        masked_area, _, _ = sep.sum_circle(images.mask, x, y, radius_arr, subpix=5)
    else:
        masked_area = np.zeros_like(area)
    ann_area = np.pi * (rout**2 - rin**2)
    # sep scales a masked sum up by total/unmasked area: sum / total area = mean of unmasked pixels
    sky_scaled, _, ann_flags = sep.sum_circann(
        images.data_sub, x, y, rin, rout, mask=images.sky_mask, subpix=0
    )
    if images.sky_mask is not None:
        sky_masked, _, _ = sep.sum_circann(images.sky_mask, x, y, rin, rout, subpix=0)
    else:
        sky_masked = np.zeros_like(ann_area)
    n_sky = np.asarray(ann_area - sky_masked, dtype=np.float64)
    usable = n_sky >= MIN_SKY_PIXELS
    with np.errstate(invalid="ignore", divide="ignore"):
        sky = np.where(usable, sky_scaled / ann_area, 0.0)
        sky_err = np.where(usable, rms / np.sqrt(n_sky), rms / 10.0)
    flux = flux - sky * area
    variance = area * rms**2 + area**2 * sky_err**2
    if gain is not None and gain > 0:
        variance = variance + np.maximum(flux, 0.0) / gain
    return ApertureSums(
        flux=np.asarray(flux, dtype=np.float64),
        flux_err=np.sqrt(variance),
        area=np.asarray(area, dtype=np.float64),
        sky=np.asarray(sky, dtype=np.float64),
        sky_err=np.asarray(sky_err, dtype=np.float64),
        n_sky=n_sky,
        sep_flags=np.asarray(flags, dtype=np.int16) | np.asarray(ann_flags, dtype=np.int16),
        masked_frac=np.asarray(masked_area / np.maximum(area, 1e-9), dtype=np.float64),
    )


def _subpixel_fraction(dx: FloatArray, dy: FloatArray, radius: FloatArray, sub: int = 5) -> FloatArray:
    """Fraction of each pixel (offsets dx, dy of its centre) inside a circle of ``radius``."""
    offsets = (np.arange(sub) + 0.5) / sub - 0.5
    inside = np.zeros(np.broadcast_shapes(dx.shape, dy.shape, radius.shape))
    r2 = radius**2
    for ox in offsets:
        for oy in offsets:
            inside += (dx + ox) ** 2 + (dy + oy) ** 2 <= r2
    return inside / sub**2


def stamp_aperture_flux(
    data: NDArray[np.floating],
    background: ImageBackground,
    mask: NDArray[np.bool_] | NDArray[np.uint8] | None,
    segmap: NDArray[np.int32] | None,
    x: FloatArray,
    y: FloatArray,
    radius: FloatArray,
    annulus: tuple[FloatArray, FloatArray],
    gain: float | None,
) -> ApertureSums:
    """:func:`aperture_sums` for a few sources, vectorised over cut-outs (no full-image arrays).

    Same definitions, with 5×5 sub-pixel sampling of the aperture edge; the annulus takes whole
    pixels whose centre lies in it and excludes bad pixels, pixels outside the image and other
    sources' segments (the source's own segment is not excluded).
    """
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    y = np.atleast_1d(np.asarray(y, dtype=np.float64))
    n = x.size
    radius = np.broadcast_to(np.asarray(radius, dtype=np.float64), x.shape)
    rin = np.broadcast_to(np.asarray(annulus[0], dtype=np.float64), x.shape)
    rout = np.broadcast_to(np.asarray(annulus[1], dtype=np.float64), x.shape)
    if n == 0:
        empty = np.zeros(0)
        return ApertureSums(empty, empty, empty, empty, empty, empty, np.zeros(0, np.int16), empty)
    ny, nx = np.shape(data)
    half = int(np.ceil(max(float(np.max(rout)), float(np.max(radius))))) + 1
    offs = np.arange(-half, half + 1)
    cx = np.rint(np.nan_to_num(x)).astype(np.intp)  # NaN positions (failed fits) give NaN sums
    cy = np.rint(np.nan_to_num(y)).astype(np.intp)
    rows = cy[:, None, None] + offs[None, :, None]
    cols = cx[:, None, None] + offs[None, None, :]
    outside = (rows < 0) | (rows >= ny) | (cols < 0) | (cols >= nx)
    rows_c = np.clip(rows, 0, ny - 1)
    cols_c = np.clip(cols, 0, nx - 1)
    cut = np.asarray(data[rows_c, cols_c], dtype=np.float64) - background.level[rows_c, cols_c]
    var = np.asarray(background.rms[rows_c, cols_c], dtype=np.float64) ** 2
    bad = outside | ~np.isfinite(cut)
    if mask is not None:
        bad |= np.asarray(mask)[rows_c, cols_c] != 0
    cut = np.where(bad, 0.0, cut)
    dx = cols - x[:, None, None]
    dy = rows - y[:, None, None]
    frac = _subpixel_fraction(dx, dy, radius[:, None, None])
    area = frac.sum(axis=(1, 2))
    good_frac = np.where(bad, 0.0, frac)
    good_area = good_frac.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        flux = (good_frac * cut).sum(axis=(1, 2)) * np.where(good_area > 0, area / good_area, np.nan)
    var_sum = (frac * var).sum(axis=(1, 2))
    r2 = dx**2 + dy**2
    ring = (r2 >= rin[:, None, None] ** 2) & (r2 <= rout[:, None, None] ** 2) & ~bad
    if segmap is not None:
        seg = segmap[rows_c, cols_c]
        own = segmap[np.clip(cy, 0, ny - 1), np.clip(cx, 0, nx - 1)]
        ring &= (seg == 0) | (seg == own[:, None, None])
    n_sky = ring.sum(axis=(1, 2)).astype(np.float64)
    usable = n_sky >= MIN_SKY_PIXELS
    with np.errstate(invalid="ignore", divide="ignore"):
        sky = np.where(usable, (cut * ring).sum(axis=(1, 2)) / n_sky, 0.0)
        sky_err = np.where(
            usable, np.sqrt((var * ring).sum(axis=(1, 2))) / n_sky, np.sqrt(var_sum / area) / 10.0
        )
    flux = flux - sky * area
    variance = var_sum + area**2 * sky_err**2
    if gain is not None and gain > 0:
        variance = variance + np.maximum(flux, 0.0) / gain
    truncated = (outside & (r2 <= rout[:, None, None] ** 2)).any(axis=(1, 2))
    flags = np.where(truncated, sep.APER_TRUNC, 0).astype(np.int16)
    return ApertureSums(
        flux=flux,
        flux_err=np.sqrt(variance),
        area=area,
        sky=sky,
        sky_err=sky_err,
        n_sky=n_sky,
        sep_flags=flags,
        masked_frac=1.0 - good_area / np.maximum(area, 1e-9),
    )
